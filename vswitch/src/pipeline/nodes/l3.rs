//! L3: the node's router, for nodes with a `[node]` table. Two passes over the batch, around
//! L2:
//!
//! ```text
//!  input (before L2)                                   route (after L2)
//!   uplink  ARP for our underlay IP  -> reply / glean     ROUTED packets:
//!           VXLAN to us, our VNI     -> decap, ROUTED      to our own address: echo reply
//!           IPv4 to our router MAC   -> ROUTED             TTL <= 1: ICMP time exceeded
//!           anything else            -> drop, by reason    LPM: Local | Peer(direct|vxlan)
//!   pods    ARP for the gateway      -> reply / glean          | none: ICMP unreachable
//!           other ARP                -> glean, then L2     MTU: ICMP frag needed (DF)
//!           IPv4 to our router MAC   -> ROUTED             TTL-1, MACs rewritten, tag popped
//!           anything else            -> L2                 next hop's MAC unknown: held,
//! ```                                                       ARP asked, released on reply
//!
//! The gateway address is answered by the switch itself (proxy-ARP style, as Calico does):
//! no kernel bridge or gateway device. Next hops (local pods, peers and the underlay gateway on
//! the uplink) resolve through the [`Neighbors`] table, filled by gleaning ARP: every ARP the
//! stage sees goes to the learner as a [`NeighEvent`]. A packet whose next hop is unknown waits
//! in a bounded per-worker queue while the stage asks by ARP (again every second, three times);
//! [`L3::service`] releases it when the answer is in, or drops it after 3 s
//! (`neighbor_unresolved`).
//!
//! VXLAN packets leave as [`Verdict::Tunnel`]: output encapsulates them (after cutting a GSO
//! packet into segments that fit the tunnel's MTU). ICMP errors and echo replies are written
//! into the packet that caused them and routed again; at most 1000 ICMP errors a second per
//! worker, the rest counted as drops.

use std::net::Ipv4Addr;

use rtrb::Producer;

use super::reply::{self, fresh_meta};
use crate::packet::{flags, Batch, GsoType, Meta, Offload, Pkt, Pool, Verdict};
use crate::pipeline::Snapshot;
use crate::tables::l3::{L3Table, NextHop};
use crate::tables::neigh::{NeighEvent, Neighbor, Neighbors};
use crate::telemetry::{DropReason, WorkerCounters};
use crate::types::{MacAddr, PortId};
use crate::wire::{self, ethertype, icmp, ip_proto};

/// Packets a worker holds while their next hops resolve.
pub const PENDING_MAX: usize = 256;
/// Next hops a worker asks for at once.
const ASKED_MAX: usize = 64;
/// A held packet is dropped after this.
const RESOLVE_TIMEOUT_NS: u64 = 3_000_000_000;
/// ARP requests are repeated this often, this many times.
const ARP_RETRY_NS: u64 = 1_000_000_000;
const ARP_TRIES: u8 = 3;
/// ICMP errors per worker per second.
const ICMP_PER_SEC: u32 = 1000;

/// Where a routed packet leaves once its next hop's MAC is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// To a local pod on the pod network.
    Pod,
    /// As it is, to the next hop on the uplink (direct routing, or the underlay itself).
    Uplink,
    /// In VXLAN to peer `.0`.
    Tunnel(u16),
}

struct Pending {
    pkt: Pkt,
    meta: Meta,
    next_hop: u32,
    via: Via,
    since: u64,
}

struct Asked {
    ip: u32,
    on_uplink: bool,
    next: u64,
    tries: u8,
}

/// The L3 stage's per-worker state.
pub struct L3 {
    neigh_tx: Producer<NeighEvent>,
    pending: Vec<Pending>,
    asked: Vec<Asked>,
    /// Next hop and exit of each packet marked `Held` in the current batch, in batch order.
    held: Vec<(u32, Via)>,
    /// Packets the stage made (ARP requests) or released, for output.
    out: Vec<(Pkt, Meta)>,
    icmp_tokens: u32,
    icmp_refill: u64,
}

/// What the L3 passes read besides the batch.
pub struct L3Ctx<'a> {
    pub snap: &'a Snapshot,
    pub neigh: &'a Neighbors,
    pub now: u64,
    pub counters: &'a WorkerCounters,
}

impl L3 {
    pub fn new(neigh_tx: Producer<NeighEvent>) -> L3 {
        L3 {
            neigh_tx,
            pending: Vec::with_capacity(PENDING_MAX),
            asked: Vec::with_capacity(ASKED_MAX),
            held: Vec::with_capacity(crate::packet::MAX_BATCH),
            out: Vec::with_capacity(PENDING_MAX + ASKED_MAX),
            icmp_tokens: ICMP_PER_SEC,
            icmp_refill: 0,
        }
    }

    /// Whether [`L3::service`] has work: held packets or ARP requests to repeat.
    #[inline]
    pub fn busy(&self) -> bool {
        !self.pending.is_empty() || !self.asked.is_empty()
    }

    /// Packets held for resolution now.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Takes the packets the stage made or released (for output).
    pub fn take_out(&mut self, mut f: impl FnMut(Pkt, Meta)) {
        for (p, m) in self.out.drain(..) {
            f(p, m);
        }
    }

    fn glean(&mut self, ip: u32, mac: MacAddr, port: PortId, counters: &WorkerCounters) {
        if !mac.is_unicast() {
            return;
        }
        if self.neigh_tx.push(NeighEvent { ip, mac, port }).is_err() {
            counters.learn_overflow.add(1);
        }
    }

    /// The input pass: ARP for the node's addresses, VXLAN decapsulation, and marking what
    /// is routed. Runs before L2.
    pub fn input<const N: usize>(&mut self, batch: &mut Batch<N>, pool: &mut Pool, cx: &L3Ctx<'_>) {
        let Some(t) = cx.snap.l3() else { return };
        let (pkts, metas) = batch.split_mut();
        for (p, m) in pkts.iter_mut().zip(metas.iter_mut()) {
            if m.verdict != Verdict::Continue {
                continue;
            }
            if m.ethertype == ethertype::ARP {
                self.arp(pool, p, m, t, cx.counters);
            } else if m.in_port == t.uplink {
                self.uplink_input(pool, p, m, t, cx.counters);
            } else if m.vlan == t.pod_vlan && pool.data(p)[0..6] == t.router_mac.0 {
                m.flags |= flags::ROUTED;
            }
        }
    }

    #[inline]
    fn arp(&mut self, pool: &mut Pool, p: &Pkt, m: &mut Meta, t: &L3Table, c: &WorkerCounters) {
        let l3 = m.l3_off as usize;
        let from_uplink = m.in_port == t.uplink;
        let d = pool.data(p);
        let a = wire::ArpPacket::new_unchecked(&d[l3..]);
        if !a.is_ethernet_ipv4() || a.check_len().is_err() {
            if from_uplink {
                m.drop(DropReason::ArpNotForUs);
            }
            return;
        }
        let (op, sha, spa, tpa) = (
            a.operation(),
            a.source_hardware_addr(),
            u32::from(a.source_protocol_addr()),
            u32::from(a.target_protocol_addr()),
        );
        let ours = if from_uplink {
            if t.underlay.network().contains_u32(spa) {
                self.glean(spa, sha, m.in_port, c);
            }
            if tpa != u32::from(t.underlay.addr) {
                m.drop(DropReason::ArpNotForUs);
                return;
            }
            true
        } else {
            if m.vlan != t.pod_vlan {
                return;
            }
            if t.pod_cidr.contains_u32(spa) && spa != u32::from(t.gateway) {
                self.glean(spa, sha, m.in_port, c);
            }
            tpa == u32::from(t.gateway)
        };
        if !ours {
            return; // Pods resolving each other: switched by L2.
        }
        if op == wire::arp::operation::REQUEST {
            reply::arp_reply(pool.data_mut(p), l3, t.router_mac);
            m.verdict = Verdict::Output(m.in_port);
            c.arp_replies.add(1);
        } else {
            m.verdict = Verdict::Consumed;
        }
    }

    #[inline]
    fn uplink_input(
        &mut self,
        pool: &mut Pool,
        p: &mut Pkt,
        m: &mut Meta,
        t: &L3Table,
        c: &WorkerCounters,
    ) {
        let d = pool.data(p);
        if d[0..6] != t.router_mac.0 || m.ethertype != ethertype::IPV4 {
            return m.drop(DropReason::UplinkNotForUs);
        }
        let l3 = m.l3_off as usize;
        let ip = wire::Ipv4Packet::new_unchecked(&d[l3..]);
        let l4 = m.l4_off as usize;
        let vxlan = ip.dst_addr() == t.underlay.addr
            && m.ip_proto == ip_proto::UDP
            && l4 != 0
            && u16::from_be_bytes([d[l4 + 2], d[l4 + 3]]) == t.vxlan_port;
        if m.offload.tunnel_inner != 0 && !vxlan {
            return m.drop(DropReason::TunnelGsoUnexpected);
        }
        if ip.dst_addr() != t.underlay.addr {
            m.flags |= flags::ROUTED; // Direct routing: a peer sends our pods' packets to us.
            return;
        }
        if vxlan {
            let end = l3 + ip.total_len() as usize;
            return self.decap(pool, p, m, t, end, c);
        }
        // Ping to our underlay address; the route pass answers it.
        m.flags |= flags::ROUTED;
    }

    /// Checks and strips the outer headers of a VXLAN packet for us (UDP at `m.l4_off`,
    /// IP packet ending at `end`), then parses the inner frame as if it had just arrived.
    #[inline]
    fn decap(
        &mut self,
        pool: &mut Pool,
        p: &mut Pkt,
        m: &mut Meta,
        t: &L3Table,
        end: usize,
        c: &WorkerCounters,
    ) {
        let vx = m.l4_off as usize + wire::udp::HEADER_LEN;
        let inner = vx + wire::vxlan::HEADER_LEN;
        let d = pool.data(p);
        if end < inner + wire::ethernet::HEADER_LEN || d.len() < end {
            return m.drop(DropReason::VxlanTruncated);
        }
        let h = wire::vxlan::Header::new_unchecked(&d[vx..inner]);
        if h.flags() & wire::vxlan::FLAG_I == 0 {
            return m.drop(DropReason::VxlanBadFlags);
        }
        if h.vni() != t.vni {
            return m.drop(DropReason::VxlanBadVni);
        }
        let mut im = Meta::rx(m.in_port);
        let o = m.offload;
        if o.tunnel_inner != 0 {
            // UDP tunnel GSO: the offload state is the inner packet's, counted from the outer
            // frame's start. It must begin inside the inner frame; parse checks the rest
            // against the inner packet as for any port's offload state.
            let start = usize::from(o.csum_start);
            if usize::from(o.tunnel_inner) != inner + wire::ethernet::HEADER_LEN || start < inner {
                return m.drop(DropReason::TunnelGsoUnexpected);
            }
            im.offload = Offload { csum_start: (start - inner) as u16, tunnel_inner: 0, ..o };
        }
        pool.truncate(p, end);
        pool.pull_front(p, inner);
        if let Err(r) = super::parse::parse(pool.data(p), &mut im) {
            // With tunnel offload state the reason may be the state's (it names it).
            return m.drop(if o.tunnel_inner != 0 { r } else { DropReason::VxlanInnerMalformed });
        }
        if im.ethertype != ethertype::IPV4 {
            return m.drop(DropReason::NotIpv4);
        }
        im.flags |= flags::ROUTED;
        im.vlan = t.uplink_vlan;
        *m = im;
        c.vxlan_decap.add(1);
    }

    /// The route pass over the packets marked `ROUTED`. Runs after L2. Packets whose next hop
    /// is unresolved are marked `Held`, then taken out of the batch to wait for the neighbour
    /// (at most `PENDING_MAX`; beyond that they are dropped, counted as `NeighborQueueFull`).
    pub fn route<const N: usize>(&mut self, batch: &mut Batch<N>, pool: &mut Pool, cx: &L3Ctx<'_>) {
        let Some(t) = cx.snap.l3() else { return };
        self.held.clear();
        let (pkts, metas) = batch.split_mut();
        for (p, m) in pkts.iter_mut().zip(metas.iter_mut()) {
            if m.verdict != Verdict::Continue || m.flags & flags::ROUTED == 0 {
                continue;
            }
            self.route_one(pool, p, m, t, cx, 0);
        }
        if self.held.is_empty() {
            return;
        }
        let mut i = 0;
        let held = std::mem::take(&mut self.held);
        batch.take_where(
            |m| m.verdict == Verdict::Held,
            |pkt, meta| {
                let (next_hop, via) = held[i];
                i += 1;
                if self.pending.len() == PENDING_MAX {
                    cx.counters.drop(meta.in_port, DropReason::NeighborQueueFull);
                    pool.free(pkt);
                } else {
                    self.pending.push(Pending { pkt, meta, next_hop, via, since: cx.now });
                }
            },
        );
        self.held = held;
    }

    fn route_one(
        &mut self,
        pool: &mut Pool,
        p: &mut Pkt,
        m: &mut Meta,
        t: &L3Table,
        cx: &L3Ctx<'_>,
        depth: u8,
    ) {
        if m.ethertype != ethertype::IPV4 {
            return m.drop(DropReason::NotIpv4);
        }
        let l3 = m.l3_off as usize;
        let d = pool.data(p);
        let ip = wire::Ipv4Packet::new_unchecked(&d[l3..]);
        let (dst, total, df, ttl) =
            (u32::from(ip.dst_addr()), ip.total_len(), ip.dont_frag(), ip.ttl());
        if t.is_own(dst) {
            let l4 = m.l4_off as usize;
            let echo = m.ip_proto == ip_proto::ICMP
                && l4 != 0
                && d[l4] == icmp::msg_type::ECHO_REQUEST
                && !ip.more_frags()
                && depth == 0;
            if !echo {
                return m.drop(DropReason::ToNodeUnsupported);
            }
            reply::echo_reply(pool.data_mut(p), l3);
            cx.counters.icmp_echo_replies.add(1);
            return self.route_one(pool, p, m, t, cx, depth + 1);
        }
        if depth == 0 && ttl <= 1 {
            return self.icmp_error(
                pool,
                p,
                m,
                t,
                cx,
                depth,
                icmp::msg_type::TIME_EXCEEDED,
                0,
                0,
                DropReason::TtlExpired,
            );
        }
        let own = depth > 0 && ip.src_addr() == t.underlay.addr;
        let (next_hop, via, mtu) = match t.next_hop(Ipv4Addr::from(dst), own).1 {
            NextHop::Pod => (dst, Via::Pod, None),
            NextHop::Uplink(nh) => (u32::from(nh), Via::Uplink, Some(t.uplink_mtu)),
            NextHop::Tunnel(i, nh) => (u32::from(nh), Via::Tunnel(i), Some(t.tunnel_mtu())),
            NextHop::Unreachable => {
                return self.icmp_error(
                    pool,
                    p,
                    m,
                    t,
                    cx,
                    depth,
                    icmp::msg_type::DEST_UNREACHABLE,
                    icmp::unreachable::NET,
                    0,
                    DropReason::NoRoute,
                );
            }
        };
        if let Some(mtu) = mtu {
            if m.offload.gso_type == GsoType::None && total > mtu {
                if !df {
                    return m.drop(DropReason::MtuNoFrag);
                }
                return self.icmp_error(
                    pool,
                    p,
                    m,
                    t,
                    cx,
                    depth,
                    icmp::msg_type::DEST_UNREACHABLE,
                    icmp::unreachable::FRAG_NEEDED,
                    u32::from(mtu),
                    DropReason::FragNeeded,
                );
            }
        }
        if depth == 0 {
            wire::Ipv4Packet::new_unchecked(&mut pool.data_mut(p)[l3..]).decrement_ttl();
            cx.counters.routed.add(1);
        }
        match cx.neigh.get(next_hop) {
            Some(n) => finish(pool, p, m, t, n, via),
            None => {
                m.verdict = Verdict::Held;
                self.held.push((next_hop, via));
                self.ask(pool, t, next_hop, via != Via::Pod, cx);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn icmp_error(
        &mut self,
        pool: &mut Pool,
        p: &mut Pkt,
        m: &mut Meta,
        t: &L3Table,
        cx: &L3Ctx<'_>,
        depth: u8,
        ty: u8,
        code: u8,
        rest: u32,
        reason: DropReason,
    ) {
        if depth > 0 || !self.icmp_token(cx.now) {
            return m.drop(reason);
        }
        match reply::icmp_error(pool, p, m, t.gateway, ty, code, rest) {
            Ok(()) => {
                cx.counters.icmp_errors.add(1);
                self.route_one(pool, p, m, t, cx, depth + 1);
            }
            Err(_) => m.drop(reason),
        }
    }

    fn icmp_token(&mut self, now: u64) -> bool {
        if now >= self.icmp_refill {
            self.icmp_tokens = ICMP_PER_SEC;
            self.icmp_refill = now + 1_000_000_000;
        }
        if self.icmp_tokens == 0 {
            return false;
        }
        self.icmp_tokens -= 1;
        true
    }

    /// Asks for `ip`'s MAC by ARP, unless already asking.
    fn ask(&mut self, pool: &mut Pool, t: &L3Table, ip: u32, on_uplink: bool, cx: &L3Ctx<'_>) {
        if self.asked.iter().any(|a| a.ip == ip) || self.asked.len() == ASKED_MAX {
            return;
        }
        self.asked.push(Asked { ip, on_uplink, next: cx.now + ARP_RETRY_NS, tries: 1 });
        self.send_request(pool, t, ip, on_uplink, cx.counters);
    }

    fn send_request(
        &mut self,
        pool: &mut Pool,
        t: &L3Table,
        ip: u32,
        on_uplink: bool,
        c: &WorkerCounters,
    ) {
        let spa = if on_uplink { t.underlay.addr } else { t.gateway };
        let Some(p) = reply::arp_request(pool, t.router_mac, spa, ip.into()) else {
            return c.drop(t.uplink, DropReason::NoBuffer);
        };
        let mut m = fresh_meta(t.uplink, ethertype::ARP, false);
        if on_uplink {
            m.vlan = t.uplink_vlan;
            m.verdict = Verdict::Output(t.uplink);
        } else {
            m.vlan = t.pod_vlan;
            m.verdict = Verdict::Flood;
        }
        c.arp_requests.add(1);
        self.out.push((p, m));
    }

    /// Releases held packets whose next hop resolved, drops those that waited too long, and
    /// repeats ARP requests. Call every iteration while [`L3::busy`]; the packets to send are
    /// then in [`L3::take_out`].
    pub fn service(&mut self, pool: &mut Pool, cx: &L3Ctx<'_>) {
        let Some(t) = cx.snap.l3() else {
            for e in self.pending.drain(..) {
                cx.counters.drop(e.meta.in_port, DropReason::NeighborUnresolved);
                pool.free(e.pkt);
            }
            self.asked.clear();
            return;
        };
        let mut keep = 0;
        for i in 0..self.pending.len() {
            let e = &self.pending[i];
            let resolved = cx.neigh.get(e.next_hop);
            if resolved.is_none() && cx.now.saturating_sub(e.since) < RESOLVE_TIMEOUT_NS {
                self.pending.swap(keep, i);
                keep += 1;
            }
        }
        // Entries past `keep` are resolved or expired: hand them on or drop them.
        for mut e in self.pending.drain(keep..) {
            match cx.neigh.get(e.next_hop) {
                Some(n) => {
                    finish(pool, &mut e.pkt, &mut e.meta, t, n, e.via);
                    self.out.push((e.pkt, e.meta));
                }
                None => {
                    cx.counters.drop(e.meta.in_port, DropReason::NeighborUnresolved);
                    pool.free(e.pkt);
                }
            }
        }
        let mut resend = [(0u32, false); ASKED_MAX];
        let mut n_resend = 0;
        let pending = &self.pending;
        self.asked.retain_mut(|a| {
            if cx.neigh.get(a.ip).is_some() || !pending.iter().any(|e| e.next_hop == a.ip) {
                return false;
            }
            if cx.now < a.next {
                return true;
            }
            if a.tries >= ARP_TRIES {
                return true; // Its packets expire on their own.
            }
            a.tries += 1;
            a.next = cx.now + ARP_RETRY_NS;
            resend[n_resend] = (a.ip, a.on_uplink);
            n_resend += 1;
            true
        });
        for &(ip, on_uplink) in &resend[..n_resend] {
            self.send_request(pool, t, ip, on_uplink, cx.counters);
        }
    }

    /// Frees everything held (the worker is stopping).
    pub fn clear(&mut self, pool: &mut Pool) {
        for e in self.pending.drain(..) {
            pool.free(e.pkt);
        }
        for (p, _) in self.out.drain(..) {
            pool.free(p);
        }
        self.asked.clear();
    }
}

/// Readdresses a routed packet for its exit: the next hop's MAC (or the peer's VTEP MAC inside
/// a tunnel) from the router's MAC, untagged, in the exit's VLAN.
fn finish(pool: &mut Pool, p: &mut Pkt, m: &mut Meta, t: &L3Table, n: Neighbor, via: Via) {
    if m.flags & flags::TAGGED != 0 {
        super::output::pop_tag(pool, p, m);
    }
    let d = pool.data_mut(p);
    d[6..12].copy_from_slice(&t.router_mac.0);
    match via {
        Via::Pod | Via::Uplink => {
            d[0..6].copy_from_slice(&n.mac.0);
            m.vlan = if n.port == t.uplink { t.uplink_vlan } else { t.pod_vlan };
            m.verdict = Verdict::Output(n.port);
        }
        Via::Tunnel(i) => {
            d[0..6].copy_from_slice(&t.peers[i as usize].vtep_mac.0);
            m.vlan = t.uplink_vlan;
            m.verdict = Verdict::Tunnel(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, ArpPacket, MutableArpPacket};
    use pnet_packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};
    use pnet_packet::icmp::{IcmpPacket, IcmpTypes};
    use pnet_packet::ip::IpNextHeaderProtocols;
    use pnet_packet::ipv4::{self, Ipv4Flags, Ipv4Packet, MutableIpv4Packet};
    use pnet_packet::udp::{MutableUdpPacket, UdpPacket};
    use pnet_packet::Packet as _;

    use crate::pipeline::VlanMode;
    use crate::tables::l3::{default_mac, L3Table, ModeSetting, PeerSpec};
    use crate::telemetry::DropReason;
    use crate::testkit::Rig;
    use crate::types::MacAddr;

    const UPLINK: u16 = 0;
    const A1: u16 = 1;
    const A1_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x11];
    const N2_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn router() -> MacAddr {
        default_mac(ip("198.18.0.1"))
    }

    /// A rig routing for node n1: uplink on port 0, pods a1 and a2 on ports 1 and 2; peer n2
    /// on the subnet (direct), n3 behind the underlay gateway (VXLAN).
    fn rig() -> Rig<32> {
        let mut rig = Rig::new(&[
            ("uplink", VlanMode::Access(1)),
            ("a1", VlanMode::Access(1)),
            ("a2", VlanMode::Access(1)),
        ]);
        let peer = |name: &str, u: &str, c: &str| PeerSpec {
            name: name.into(),
            underlay_ip: ip(u),
            pod_cidr: c.parse().unwrap(),
            setting: ModeSetting::Auto,
            vtep_mac: None,
        };
        let t = L3Table::build(
            "n1".into(),
            router(),
            "10.244.1.0/24".parse().unwrap(),
            ip("10.244.1.1"),
            1,
            (UPLINK, 1, 1500),
            "198.18.0.1/24".parse().unwrap(),
            Some(ip("198.18.0.254")),
            (1, 8472),
            &[peer("n2", "198.18.0.2", "10.244.2.0/24"), peer("n3", "198.19.0.3", "10.244.3.0/24")],
        )
        .unwrap();
        rig.route(t);
        rig
    }

    fn eth(
        dst: [u8; 6],
        src: [u8; 6],
        et: pnet_packet::ethernet::EtherType,
        body: &[u8],
    ) -> Vec<u8> {
        let mut b = vec![0u8; 14 + body.len()];
        let mut e = MutableEthernetPacket::new(&mut b).unwrap();
        e.set_destination(dst.into());
        e.set_source(src.into());
        e.set_ethertype(et);
        e.set_payload(body);
        b
    }

    fn arp(
        op: pnet_packet::arp::ArpOperation,
        sha: [u8; 6],
        spa: &str,
        tha: [u8; 6],
        tpa: &str,
    ) -> Vec<u8> {
        let mut b = vec![0u8; 28];
        let mut a = MutableArpPacket::new(&mut b).unwrap();
        a.set_hardware_type(ArpHardwareTypes::Ethernet);
        a.set_protocol_type(EtherTypes::Ipv4);
        a.set_hw_addr_len(6);
        a.set_proto_addr_len(4);
        a.set_operation(op);
        a.set_sender_hw_addr(sha.into());
        a.set_sender_proto_addr(ip(spa));
        a.set_target_hw_addr(tha.into());
        a.set_target_proto_addr(ip(tpa));
        let dst = if op == ArpOperations::Request { [0xff; 6] } else { tha };
        eth(dst, sha, EtherTypes::Arp, &b)
    }

    fn ipv4(
        src: &str,
        dst: &str,
        ttl: u8,
        proto: pnet_packet::ip::IpNextHeaderProtocol,
        body: &[u8],
        df: bool,
    ) -> Vec<u8> {
        let mut b = vec![0u8; 20 + body.len()];
        let mut p = MutableIpv4Packet::new(&mut b).unwrap();
        p.set_version(4);
        p.set_header_length(5);
        p.set_total_length((20 + body.len()) as u16);
        p.set_ttl(ttl);
        p.set_flags(if df { Ipv4Flags::DontFragment } else { 0 });
        p.set_next_level_protocol(proto);
        p.set_source(ip(src));
        p.set_destination(ip(dst));
        p.set_payload(body);
        let c = ipv4::checksum(&p.to_immutable());
        p.set_checksum(c);
        b
    }

    fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 8 + payload.len()];
        let mut u = MutableUdpPacket::new(&mut b).unwrap();
        u.set_source(sport);
        u.set_destination(dport);
        u.set_length((8 + payload.len()) as u16);
        u.set_payload(payload);
        b
    }

    /// A UDP packet from pod a1 to `dst` through the gateway.
    fn from_a1(dst: &str, ttl: u8, payload: usize, df: bool) -> Vec<u8> {
        let l4 = udp(4000, 5000, &vec![7u8; payload]);
        eth(
            router().0,
            A1_MAC,
            EtherTypes::Ipv4,
            &ipv4("10.244.1.11", dst, ttl, IpNextHeaderProtocols::Udp, &l4, df),
        )
    }

    fn vxlan(vni: u32, flags: u8, inner: &[u8]) -> Vec<u8> {
        let mut v = vec![flags, 0, 0, 0];
        v.extend_from_slice(&(vni << 8).to_be_bytes());
        v.extend_from_slice(inner);
        let l4 = udp(40000, 8472, &v);
        eth(
            router().0,
            GW_MAC,
            EtherTypes::Ipv4,
            &ipv4("198.19.0.3", "198.18.0.1", 62, IpNextHeaderProtocols::Udp, &l4, false),
        )
    }

    /// a1 asks for its gateway (so the router knows a1), and the underlay gateway asks for
    /// our underlay address (so the router knows it).
    fn resolve_neighbours(rig: &mut Rig<32>) {
        rig.send(A1, &arp(ArpOperations::Request, A1_MAC, "10.244.1.11", [0; 6], "10.244.1.1"));
        rig.send(
            UPLINK,
            &arp(ArpOperations::Request, GW_MAC, "198.18.0.254", [0; 6], "198.18.0.1"),
        );
        rig.run(10);
        rig.discard_all();
    }

    #[test]
    fn the_gateway_answers_arp_and_learns_the_pod() {
        let mut rig = rig();
        rig.send(A1, &arp(ArpOperations::Request, A1_MAC, "10.244.1.11", [0; 6], "10.244.1.1"));
        rig.run(10);
        let out = rig.recv(A1);
        assert_eq!(out.len(), 1, "one reply to the asking port");
        let e = EthernetPacket::new(&out[0]).unwrap();
        assert_eq!(e.get_destination().octets(), A1_MAC);
        let a = ArpPacket::new(e.payload()).unwrap();
        assert_eq!(a.get_operation(), ArpOperations::Reply);
        assert_eq!(a.get_sender_hw_addr().octets(), router().0);
        assert_eq!(a.get_sender_proto_addr(), ip("10.244.1.1"));
        assert!(rig.recv(2).is_empty() && rig.recv(UPLINK).is_empty(), "not flooded");
        let n = rig.neigh.load().get(u32::from(ip("10.244.1.11"))).unwrap();
        assert_eq!((n.mac.0, n.port), (A1_MAC, A1));
        // An ARP for another address on the uplink is not ours.
        rig.send(UPLINK, &arp(ArpOperations::Request, N2_MAC, "198.18.0.2", [0; 6], "198.18.0.9"));
        rig.run(10);
        assert!(rig.recv(UPLINK).is_empty());
        assert_eq!(rig.stats(UPLINK).drop_count(DropReason::ArpNotForUs), 1);
    }

    #[test]
    fn a_routed_packet_waits_for_arp_then_leaves_rewritten() {
        let mut rig = rig();
        let f = from_a1("10.244.2.11", 64, 100, false);
        rig.send(A1, &f);
        rig.run(10);
        let asked = rig.recv(UPLINK);
        assert_eq!(asked.len(), 1, "only the ARP request so far");
        let e = EthernetPacket::new(&asked[0]).unwrap();
        let a = ArpPacket::new(e.payload()).unwrap();
        assert_eq!(
            (a.get_sender_proto_addr(), a.get_target_proto_addr()),
            (ip("198.18.0.1"), ip("198.18.0.2"))
        );
        assert_eq!(rig.worker.pipeline().l3.pending(), 1);
        rig.send(
            UPLINK,
            &arp(ArpOperations::Reply, N2_MAC, "198.18.0.2", router().0, "198.18.0.1"),
        );
        rig.run(10);
        rig.step();
        let out = rig.recv(UPLINK);
        assert_eq!(out.len(), 1, "the held packet is released");
        let e = EthernetPacket::new(&out[0]).unwrap();
        assert_eq!((e.get_destination().octets(), e.get_source().octets()), (N2_MAC, router().0));
        let p = Ipv4Packet::new(e.payload()).unwrap();
        assert_eq!(p.get_ttl(), 63);
        assert_eq!(p.get_checksum(), ipv4::checksum(&p));
        assert_eq!(&out[0][34..], &f[34..], "payload untouched");
        assert_eq!(rig.worker.pipeline().l3.pending(), 0);
        assert_eq!(rig.worker.counters().local_consumed.get(), 1, "the ARP reply");
    }

    #[test]
    fn vxlan_encapsulates_to_the_peer_and_decapsulates_to_the_pod() {
        let mut rig = rig();
        resolve_neighbours(&mut rig);
        let f = from_a1("10.244.3.11", 64, 200, false);
        rig.send(A1, &f);
        rig.run(10);
        let out = rig.recv(UPLINK);
        assert_eq!(out.len(), 1);
        let e = EthernetPacket::new(&out[0]).unwrap();
        assert_eq!(e.get_destination().octets(), GW_MAC, "outer next hop: the underlay gateway");
        let outer = Ipv4Packet::new(e.payload()).unwrap();
        assert_eq!(
            (outer.get_source(), outer.get_destination()),
            (ip("198.18.0.1"), ip("198.19.0.3"))
        );
        assert_eq!(outer.get_checksum(), ipv4::checksum(&outer));
        let u = UdpPacket::new(outer.payload()).unwrap();
        assert_eq!(u.get_destination(), 8472);
        assert_eq!(&u.payload()[..8], &[0x08, 0, 0, 0, 0, 0, 1, 0]);
        let inner = EthernetPacket::new(&u.payload()[8..]).unwrap();
        assert_eq!(inner.get_destination().octets(), default_mac(ip("198.19.0.3")).0);
        assert_eq!(inner.get_source().octets(), router().0);
        assert_eq!(Ipv4Packet::new(inner.payload()).unwrap().get_ttl(), 63);

        // And back: n3's pod answers a1.
        let l4 = udp(5000, 4000, &[9u8; 50]);
        let back = eth(
            [2, 0, 0, 0, 0, 3],
            [2, 0, 0, 0, 0, 4],
            EtherTypes::Ipv4,
            &ipv4("10.244.3.11", "10.244.1.11", 63, IpNextHeaderProtocols::Udp, &l4, false),
        );
        rig.send(UPLINK, &vxlan(1, 0x08, &back));
        rig.run(10);
        let got = rig.recv(A1);
        assert_eq!(got.len(), 1);
        let e = EthernetPacket::new(&got[0]).unwrap();
        assert_eq!((e.get_destination().octets(), e.get_source().octets()), (A1_MAC, router().0));
        let p = Ipv4Packet::new(e.payload()).unwrap();
        assert_eq!((p.get_ttl(), p.get_source()), (62, ip("10.244.3.11")));
        assert_eq!(p.get_checksum(), ipv4::checksum(&p));
        assert_eq!(rig.worker.counters().vxlan_decap.get(), 1);
        assert_eq!(rig.worker.counters().vxlan_encap.get(), 1);
    }

    #[test]
    fn bad_vxlan_is_dropped_by_reason() {
        let mut rig = rig();
        resolve_neighbours(&mut rig);
        let l4 = udp(5000, 4000, &[9u8; 50]);
        let inner = eth(
            [2; 6],
            [4; 6],
            EtherTypes::Ipv4,
            &ipv4("10.244.3.11", "10.244.1.11", 63, IpNextHeaderProtocols::Udp, &l4, false),
        );
        rig.send(UPLINK, &vxlan(7, 0x08, &inner));
        rig.send(UPLINK, &vxlan(1, 0x00, &inner));
        rig.send(UPLINK, &vxlan(1, 0x08, &inner[..10]));
        let mut broken = inner.clone();
        broken[14] = 0x44; // IPv4 with a 16-byte header
        rig.send(UPLINK, &vxlan(1, 0x08, &broken));
        let arp_inside = arp(ArpOperations::Request, [2; 6], "10.244.3.11", [0; 6], "10.244.1.11");
        rig.send(UPLINK, &vxlan(1, 0x08, &arp_inside));
        // Not for our MAC at all.
        let mut other = vxlan(1, 0x08, &inner);
        other[0..6].copy_from_slice(&[2, 9, 9, 9, 9, 9]);
        rig.send(UPLINK, &other);
        rig.run(10);
        assert!(rig.recv(A1).is_empty());
        let s = rig.stats(UPLINK);
        for r in [
            DropReason::VxlanBadVni,
            DropReason::VxlanBadFlags,
            DropReason::VxlanTruncated,
            DropReason::VxlanInnerMalformed,
            DropReason::NotIpv4,
            DropReason::UplinkNotForUs,
        ] {
            assert_eq!(s.drop_count(r), 1, "{}", r.name());
        }
    }

    #[test]
    fn icmp_errors_go_back_to_the_sender() {
        let mut rig = rig();
        resolve_neighbours(&mut rig);
        let cases = [
            (from_a1("10.244.2.11", 1, 100, false), IcmpTypes::TimeExceeded, 0, None),
            (from_a1("10.9.9.9", 64, 100, false), IcmpTypes::DestinationUnreachable, 0, None),
            (
                from_a1("10.244.3.11", 64, 1500 - 28, true),
                IcmpTypes::DestinationUnreachable,
                4,
                Some(1450u16),
            ),
        ];
        for (f, ty, code, mtu) in cases {
            rig.send(A1, &f);
            rig.run(10);
            let got = rig.recv(A1);
            assert_eq!(got.len(), 1, "{ty:?}");
            let e = EthernetPacket::new(&got[0]).unwrap();
            assert_eq!(e.get_destination().octets(), A1_MAC);
            let p = Ipv4Packet::new(e.payload()).unwrap();
            assert_eq!(
                (p.get_source(), p.get_destination()),
                (ip("10.244.1.1"), ip("10.244.1.11"))
            );
            assert_eq!(p.get_checksum(), ipv4::checksum(&p));
            let ic = IcmpPacket::new(p.payload()).unwrap();
            assert_eq!((ic.get_icmp_type(), ic.get_icmp_code().0), (ty, code));
            assert_eq!(ic.get_checksum(), pnet_packet::icmp::checksum(&ic));
            if let Some(m) = mtu {
                assert_eq!(&ic.payload()[2..4], &m.to_be_bytes());
            }
            assert_eq!(&ic.payload()[4..24], &f[14..34], "the original IP header is quoted");
        }
        assert!(rig.recv(UPLINK).is_empty());
        assert_eq!(rig.worker.counters().icmp_errors.get(), 3);
        // Without DF the switch does not fragment: dropped and counted.
        rig.send(A1, &from_a1("10.244.3.11", 64, 1500 - 28, false));
        rig.run(10);
        assert_eq!(rig.stats(A1).drop_count(DropReason::MtuNoFrag), 1);
    }

    #[test]
    fn an_unanswered_next_hop_is_asked_three_times_then_dropped() {
        let mut rig = rig();
        let base = rig.worker.pool().in_use();
        rig.send(A1, &from_a1("10.244.2.11", 64, 100, false));
        rig.run(10);
        assert_eq!(rig.recv(UPLINK).len(), 1);
        for _ in 0..2 {
            rig.advance(1_000_000_000);
            rig.step();
            assert_eq!(rig.recv(UPLINK).len(), 1, "asked again after a second");
        }
        rig.advance(1_100_000_000);
        rig.step();
        assert!(rig.recv(UPLINK).is_empty());
        assert_eq!(rig.stats(A1).drop_count(DropReason::NeighborUnresolved), 1);
        assert_eq!(rig.worker.pipeline().l3.pending(), 0);
        assert!(!rig.worker.pipeline().l3.busy());
        assert_eq!(rig.worker.pool().in_use(), base, "no buffer lost");
    }

    #[test]
    fn ping_to_the_gateway_and_to_the_underlay_address_is_answered() {
        let mut rig = rig();
        resolve_neighbours(&mut rig);
        let mut echo = vec![8u8, 0, 0, 0, 0, 1, 0, 1];
        echo.extend_from_slice(&[0x55; 32]);
        let c = pnet_packet::icmp::checksum(&IcmpPacket::new(&echo).unwrap());
        echo[2..4].copy_from_slice(&c.to_be_bytes());
        let f = eth(
            router().0,
            A1_MAC,
            EtherTypes::Ipv4,
            &ipv4("10.244.1.11", "10.244.1.1", 64, IpNextHeaderProtocols::Icmp, &echo, false),
        );
        rig.send(A1, &f);
        let g = eth(
            router().0,
            GW_MAC,
            EtherTypes::Ipv4,
            &ipv4("198.18.0.254", "198.18.0.1", 64, IpNextHeaderProtocols::Icmp, &echo, false),
        );
        rig.send(UPLINK, &g);
        rig.run(10);
        for (port, to, mac) in [(A1, "10.244.1.11", A1_MAC), (UPLINK, "198.18.0.254", GW_MAC)] {
            let got = rig.recv(port);
            assert_eq!(got.len(), 1);
            let e = EthernetPacket::new(&got[0]).unwrap();
            assert_eq!(e.get_destination().octets(), mac);
            let p = Ipv4Packet::new(e.payload()).unwrap();
            assert_eq!(p.get_destination(), ip(to));
            assert_eq!(p.get_checksum(), ipv4::checksum(&p));
            let ic = IcmpPacket::new(p.payload()).unwrap();
            assert_eq!(ic.get_icmp_type(), IcmpTypes::EchoReply);
            assert_eq!(ic.get_checksum(), pnet_packet::icmp::checksum(&ic));
        }
    }
}
