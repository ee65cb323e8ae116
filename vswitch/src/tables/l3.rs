//! The node's routing state, compiled by the control plane from `[node]` and `[[peer]]` and
//! published inside the forwarding [`Snapshot`](crate::pipeline::Snapshot): who this node is
//! (pod CIDR, gateway, underlay address, router MAC, uplink port, VXLAN parameters), its peers
//! with the forwarding mode chosen for each and why, and the route table over them.
//!
//! ```text
//!   route table (LPM)               peers[i]
//!   10.244.1.0/24 -> Local          name, underlay IP, pod CIDR
//!   10.244.2.0/24 -> Peer(0) ─────► mode: Direct (next hop = its underlay IP)
//!   10.244.3.0/24 -> Peer(1) ─────► mode: Vxlan  (next hop = its underlay IP, or the underlay
//!                                                  gateway when it is off our subnet)
//! ```
//!
//! Static routes (`[[route]]`, `vswitchctl route add`) add prefixes outside the pod CIDRs: to a
//! gateway on the underlay subnet (`Route::Gateway`, sent like a direct peer's packets), or to a
//! peer (`Route::Peer`, e.g. a second CIDR that node hosts), in whatever mode that peer uses.
//!
//! The mode is chosen per peer as Flannel's DirectRouting and Calico's CrossSubnet do: direct
//! routing when the peer's underlay address is on the uplink's L2 subnet (its pods' packets can
//! be sent to its MAC as they are), VXLAN otherwise (the underlay between us would not know our
//! pod CIDRs). Configuration can force either, per peer.

use std::net::Ipv4Addr;

use crate::tables::route::{Ipv4Cidr, Ipv4Net, Lpm};
use crate::types::{MacAddr, PortId, VlanId};

/// Where a routed packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// This node's pod CIDR: to the pod, resolved by ARP on the pod network.
    Local,
    /// A peer's pod CIDR (or a static route to that peer): index into [`L3Table::peers`].
    Peer(u16),
    /// A static route to a gateway on the underlay subnet: index into [`L3Table::statics`].
    Gateway(u16),
}

/// Where the route table sends a destination: the one decision the route stage acts on and
/// `trace` describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// A pod of this node, resolved by ARP on the pod network.
    Pod,
    /// Out of the uplink, as it is, to this underlay address's MAC.
    Uplink(Ipv4Addr),
    /// VXLAN to peer `0` (index into [`L3Table::peers`]), outer next hop `1`.
    Tunnel(u16, Ipv4Addr),
    /// No route.
    Unreachable,
}

/// What a static route points at.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StaticVia {
    /// A router on the underlay subnet.
    Gateway(Ipv4Addr),
    /// A peer, by name.
    Peer(String),
}

/// A static route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRoute {
    pub prefix: Ipv4Net,
    pub via: StaticVia,
}

/// How packets reach a peer's pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerMode {
    /// The inner packet as it is, to the peer's MAC on the shared L2 underlay (host-gw).
    Direct,
    /// Encapsulated in VXLAN to the peer's underlay address.
    Vxlan,
}

impl PeerMode {
    pub fn name(self) -> &'static str {
        match self {
            PeerMode::Direct => "direct",
            PeerMode::Vxlan => "vxlan",
        }
    }
}

/// The mode a peer asks for in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModeSetting {
    Auto,
    Direct,
    Vxlan,
}

/// One peer node, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub underlay_ip: Ipv4Addr,
    pub pod_cidr: Ipv4Net,
    pub setting: ModeSetting,
    pub mode: PeerMode,
    /// Why this mode (shown by `vswitchctl show peers`).
    pub reason: String,
    /// Inner destination MAC of VXLAN packets (a Flannel peer's `flannel.1` MAC).
    pub vtep_mac: MacAddr,
    /// The underlay address whose MAC the packets are sent to: the peer itself when it is on
    /// our subnet, else the underlay gateway.
    pub next_hop: Ipv4Addr,
}

/// The node's whole routing state.
#[derive(Debug, Clone)]
pub struct L3Table {
    pub node_name: String,
    pub router_mac: MacAddr,
    pub pod_cidr: Ipv4Net,
    /// The pods' default gateway, answered by the switch.
    pub gateway: Ipv4Addr,
    /// VLAN of the pod ports the gateway serves.
    pub pod_vlan: VlanId,
    pub uplink: PortId,
    /// The uplink port's access VLAN (packets sent there carry it inside the switch).
    pub uplink_vlan: VlanId,
    pub uplink_mtu: u16,
    pub underlay: Ipv4Cidr,
    pub underlay_gateway: Option<Ipv4Addr>,
    pub vni: u32,
    pub vxlan_port: u16,
    pub peers: Vec<Peer>,
    /// The static routes, as configured (gateway ones are indexed by [`Route::Gateway`]).
    pub statics: Vec<StaticRoute>,
    pub routes: Lpm<Route>,
}

/// Why the routing state could not be compiled (the configuration validates these first;
/// this is the last line of defence, with the same precise messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum L3Error {
    #[error("peer {peer:?}: pod_cidr {cidr} overlaps {other}")]
    Overlap { peer: String, cidr: Ipv4Net, other: String },
    #[error("peer {peer:?}: {why}")]
    Peer { peer: String, why: String },
    #[error("route {prefix}: {why}")]
    Static { prefix: Ipv4Net, why: String },
}

/// The default MAC of a node with underlay address `ip`: `0a:58` (locally administered, the
/// prefix Kubernetes' own network plugins use) followed by the address.
pub fn default_mac(ip: Ipv4Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x0a, 0x58, o[0], o[1], o[2], o[3]])
}

/// What a peer is configured as, before the mode is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    pub name: String,
    pub underlay_ip: Ipv4Addr,
    pub pod_cidr: Ipv4Net,
    pub setting: ModeSetting,
    pub vtep_mac: Option<MacAddr>,
}

/// Picks the mode for a peer and the underlay address to send its packets to.
pub fn choose_mode(
    p: &PeerSpec,
    underlay: Ipv4Cidr,
    gateway: Option<Ipv4Addr>,
) -> Result<(PeerMode, Ipv4Addr, String), String> {
    let on_link = underlay.network().contains(p.underlay_ip);
    let subnet = underlay.network();
    match (p.setting, on_link) {
        (ModeSetting::Auto, true) => Ok((
            PeerMode::Direct,
            p.underlay_ip,
            format!("auto: {} is on the uplink's subnet {subnet}", p.underlay_ip),
        )),
        (ModeSetting::Direct, true) => Ok((
            PeerMode::Direct,
            p.underlay_ip,
            format!("configured: direct ({} is on {subnet})", p.underlay_ip),
        )),
        (ModeSetting::Direct, false) => Err(format!(
            "mode = \"direct\" needs the peer on the uplink's subnet {subnet}, but {} is not",
            p.underlay_ip
        )),
        (setting, on_link) => {
            let next_hop = if on_link {
                p.underlay_ip
            } else {
                gateway.ok_or_else(|| {
                    format!(
                        "{} is not on the uplink's subnet {subnet} and [node] has no underlay_gateway",
                        p.underlay_ip
                    )
                })?
            };
            let reason = match setting {
                ModeSetting::Auto => {
                    format!(
                        "auto: {} is off the uplink's subnet {subnet}, via {next_hop}",
                        p.underlay_ip
                    )
                }
                _ => format!("configured: vxlan, via {next_hop}"),
            };
            Ok((PeerMode::Vxlan, next_hop, reason))
        }
    }
}

impl L3Table {
    /// Compiles the routing state. `peers` are checked against each other and the node.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        node_name: String,
        router_mac: MacAddr,
        pod_cidr: Ipv4Net,
        gateway: Ipv4Addr,
        pod_vlan: VlanId,
        uplink: (PortId, VlanId, u16),
        underlay: Ipv4Cidr,
        underlay_gateway: Option<Ipv4Addr>,
        vxlan: (u32, u16),
        peers: &[PeerSpec],
    ) -> Result<L3Table, L3Error> {
        let mut compiled = Vec::with_capacity(peers.len());
        let mut routes = vec![(pod_cidr, Route::Local)];
        for (i, p) in peers.iter().enumerate() {
            if p.pod_cidr.overlaps(&pod_cidr) {
                return Err(L3Error::Overlap {
                    peer: p.name.clone(),
                    cidr: p.pod_cidr,
                    other: format!("this node's pod_cidr {pod_cidr}"),
                });
            }
            if let Some(o) = peers[..i].iter().find(|o| o.pod_cidr.overlaps(&p.pod_cidr)) {
                return Err(L3Error::Overlap {
                    peer: p.name.clone(),
                    cidr: p.pod_cidr,
                    other: format!("peer {:?}'s pod_cidr {}", o.name, o.pod_cidr),
                });
            }
            if p.underlay_ip == underlay.addr {
                return Err(L3Error::Peer {
                    peer: p.name.clone(),
                    why: format!("underlay_ip {} is this node's own address", p.underlay_ip),
                });
            }
            let (mode, next_hop, reason) = choose_mode(p, underlay, underlay_gateway)
                .map_err(|why| L3Error::Peer { peer: p.name.clone(), why })?;
            routes.push((p.pod_cidr, Route::Peer(i as u16)));
            compiled.push(Peer {
                name: p.name.clone(),
                underlay_ip: p.underlay_ip,
                pod_cidr: p.pod_cidr,
                setting: p.setting,
                mode,
                reason,
                vtep_mac: p.vtep_mac.unwrap_or_else(|| default_mac(p.underlay_ip)),
                next_hop,
            });
        }
        let routes = Lpm::build(routes)
            .map_err(|e| L3Error::Peer { peer: String::new(), why: e.to_string() })?;
        Ok(L3Table {
            node_name,
            router_mac,
            pod_cidr,
            gateway,
            pod_vlan,
            uplink: uplink.0,
            uplink_vlan: uplink.1,
            uplink_mtu: uplink.2,
            underlay,
            underlay_gateway,
            vni: vxlan.0,
            vxlan_port: vxlan.1,
            peers: compiled,
            statics: Vec::new(),
            routes,
        })
    }

    /// Adds static routes. None may lie inside a pod CIDR (ours or a peer's: it would take that
    /// CIDR's traffic; a shorter prefix covering pod CIDRs is fine, the longest match wins), name a known peer or a gateway on the
    /// underlay subnet other than ourselves, and not repeat another route's prefix.
    pub fn with_statics(mut self, statics: &[StaticRoute]) -> Result<L3Table, L3Error> {
        let mut routes: Vec<(Ipv4Net, Route)> = self.routes.iter().map(|(n, r)| (n, *r)).collect();
        for (i, s) in statics.iter().enumerate() {
            let bad = |why: String| L3Error::Static { prefix: s.prefix, why };
            let inside = |pods: &Ipv4Net| {
                pods.overlaps(&s.prefix) && s.prefix.prefix_len() >= pods.prefix_len()
            };
            if inside(&self.pod_cidr) {
                return Err(bad(format!("is inside this node's pod_cidr {}", self.pod_cidr)));
            }
            if let Some(p) = self.peers.iter().find(|p| inside(&p.pod_cidr)) {
                return Err(bad(format!("is inside peer {:?}'s pod_cidr {}", p.name, p.pod_cidr)));
            }
            if statics[..i].iter().any(|o| o.prefix == s.prefix) {
                return Err(bad("is given twice".into()));
            }
            let route = match &s.via {
                StaticVia::Gateway(gw) => {
                    let subnet = self.underlay.network();
                    if !subnet.contains(*gw) || *gw == self.underlay.addr {
                        return Err(bad(format!(
                            "via {gw} is not another address on the uplink's subnet {subnet}"
                        )));
                    }
                    Route::Gateway(i as u16)
                }
                StaticVia::Peer(name) => match self.peers.iter().position(|p| &p.name == name) {
                    Some(p) => Route::Peer(p as u16),
                    None => return Err(bad(format!("peer {name:?} does not exist"))),
                },
            };
            routes.push((s.prefix, route));
        }
        self.routes = Lpm::build(routes)
            .map_err(|e| L3Error::Peer { peer: String::new(), why: e.to_string() })?;
        self.statics = statics.to_vec();
        Ok(self)
    }

    /// Where `dst` goes, with the route that matched. `own` is true for the switch's own
    /// packets (replies from its underlay address), which may leave through the underlay
    /// gateway without a route.
    pub fn next_hop(&self, dst: Ipv4Addr, own: bool) -> (Option<(Ipv4Net, Route)>, NextHop) {
        let d = u32::from(dst);
        let Some((net, &route)) = self.routes.lookup(d) else {
            let hop = if self.underlay.network().contains_u32(d) {
                // Other nodes' addresses on the subnet (the switch's own replies to them).
                NextHop::Uplink(dst)
            } else {
                match self.underlay_gateway {
                    Some(gw) if own => NextHop::Uplink(gw),
                    _ => NextHop::Unreachable,
                }
            };
            return (None, hop);
        };
        let hop = match route {
            Route::Local => NextHop::Pod,
            Route::Peer(i) => match self.peers.get(usize::from(i)) {
                Some(p) if p.mode == PeerMode::Direct => NextHop::Uplink(p.next_hop),
                Some(p) => NextHop::Tunnel(i, p.next_hop),
                None => NextHop::Unreachable,
            },
            Route::Gateway(i) => match self.statics.get(usize::from(i)).map(|s| &s.via) {
                Some(StaticVia::Gateway(gw)) => NextHop::Uplink(*gw),
                _ => NextHop::Unreachable,
            },
        };
        (Some((net, route)), hop)
    }

    /// The largest inner IP packet a VXLAN tunnel carries over the uplink: its MTU less the
    /// 50 bytes of outer Ethernet, IPv4, UDP and VXLAN headers (the inner Ethernet header rides
    /// inside the outer IP payload, the outer one outside the MTU).
    #[inline]
    pub fn tunnel_mtu(&self) -> u16 {
        self.uplink_mtu.saturating_sub(crate::wire::vxlan::OVERHEAD_V4 as u16)
    }

    /// The node's own addresses: the gateway and the underlay address.
    #[inline]
    pub fn is_own(&self, ip: u32) -> bool {
        ip == u32::from(self.gateway) || ip == u32::from(self.underlay.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, ip: &str, cidr: &str, setting: ModeSetting) -> PeerSpec {
        PeerSpec {
            name: name.into(),
            underlay_ip: ip.parse().unwrap(),
            pod_cidr: cidr.parse().unwrap(),
            setting,
            vtep_mac: None,
        }
    }

    fn build(peers: &[PeerSpec], gw: Option<&str>) -> Result<L3Table, L3Error> {
        L3Table::build(
            "n1".into(),
            default_mac("198.18.0.1".parse().unwrap()),
            "10.244.1.0/24".parse().unwrap(),
            "10.244.1.1".parse().unwrap(),
            1,
            (0, 1, 1500),
            "198.18.0.1/24".parse().unwrap(),
            gw.map(|g| g.parse().unwrap()),
            (1, 8472),
            peers,
        )
    }

    #[test]
    fn auto_mode_is_direct_on_the_subnet_and_vxlan_off_it() {
        let t = build(
            &[
                spec("n2", "198.18.0.2", "10.244.2.0/24", ModeSetting::Auto),
                spec("n3", "198.19.0.3", "10.244.3.0/24", ModeSetting::Auto),
                spec("n4", "198.18.0.4", "10.244.4.0/24", ModeSetting::Vxlan),
            ],
            Some("198.18.0.254"),
        )
        .unwrap();
        assert_eq!(t.peers[0].mode, PeerMode::Direct);
        assert_eq!(t.peers[0].next_hop, "198.18.0.2".parse::<Ipv4Addr>().unwrap());
        assert_eq!(t.peers[1].mode, PeerMode::Vxlan);
        assert_eq!(t.peers[1].next_hop, "198.18.0.254".parse::<Ipv4Addr>().unwrap());
        assert!(t.peers[1].reason.contains("off the uplink's subnet"), "{}", t.peers[1].reason);
        assert_eq!(t.peers[2].mode, PeerMode::Vxlan);
        assert_eq!(t.peers[2].next_hop, "198.18.0.4".parse::<Ipv4Addr>().unwrap());
        assert_eq!(t.peers[2].vtep_mac, MacAddr([0x0a, 0x58, 198, 18, 0, 4]));
        let ip = |s: &str| u32::from(s.parse::<Ipv4Addr>().unwrap());
        assert_eq!(t.routes.lookup(ip("10.244.3.9")).map(|r| *r.1), Some(Route::Peer(1)));
        assert_eq!(t.routes.lookup(ip("10.244.1.9")).map(|r| *r.1), Some(Route::Local));
        assert_eq!(t.routes.lookup(ip("10.244.9.9")), None);
    }

    #[test]
    fn bad_peers_are_refused_by_name() {
        let e = build(&[spec("n2", "198.18.0.2", "10.244.1.128/25", ModeSetting::Auto)], None)
            .unwrap_err();
        assert!(e.to_string().contains("\"n2\"") && e.to_string().contains("overlaps"), "{e}");
        let e = build(
            &[
                spec("n2", "198.18.0.2", "10.244.2.0/24", ModeSetting::Auto),
                spec("n3", "198.18.0.3", "10.244.0.0/16", ModeSetting::Auto),
            ],
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"n3\""), "{e}");
        let e = build(&[spec("n2", "198.18.0.1", "10.244.2.0/24", ModeSetting::Auto)], None)
            .unwrap_err();
        assert!(e.to_string().contains("own address"), "{e}");
        let e = build(&[spec("n3", "198.19.0.3", "10.244.3.0/24", ModeSetting::Auto)], None)
            .unwrap_err();
        assert!(e.to_string().contains("underlay_gateway"), "{e}");
        let e = build(&[spec("n3", "198.19.0.3", "10.244.3.0/24", ModeSetting::Direct)], None)
            .unwrap_err();
        assert!(e.to_string().contains("direct"), "{e}");
    }
}
