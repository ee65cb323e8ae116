//! Packet tracing, like `ovs-appctl ofproto/trace`: one frame run through the pipeline's
//! per-packet logic against the current forwarding state, reporting each stage's decision and
//! the final action, without sending anything, learning anything or touching a flow cache.
//!
//! The tracer calls the stages' own per-packet functions ([`parse::parse`],
//! `vlan::classify`, the ACL's field extraction and rule lookup, the route table's
//! `next_hop`, `l2::decide`, `output::egress_check`), so it cannot drift from what the
//! workers do. What it cannot see, because it depends on a worker's state at the moment
//! the packet arrives, is left out: the flow cache (which only memoizes the same decision), the
//! buffer pool (`no_buffer`, `no_headroom`), transmit rings (`tx_ring_full`) and whether an
//! egress port is attached to the worker yet.
//!
//! [`build_frame`] makes the frame from a few fields (MACs, VLAN, IPs, protocol, ports, length)
//! for `vswitchctl trace`, or decodes it from hex.

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use crate::packet::{flags, Meta, Verdict};
use crate::pipeline::nodes::output::{egress_check, TagAction};
use crate::pipeline::nodes::{acl, l2, parse, vlan};
use crate::pipeline::snapshot::{Snapshot, VlanMode};
use crate::tables::acl::Action;
use crate::tables::fdb::{Fdb, SourceCheck};
use crate::telemetry::DropReason;
use crate::types::{MacAddr, PortId, VlanId};
use crate::wire::{self, ethertype, ip_proto};

/// One stage's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceStep {
    /// `"parse"`, `"vlan"`, `"l2"` or `"output"`.
    pub stage: &'static str,
    /// What the stage saw and decided, for a person.
    pub detail: String,
}

/// A copy of the packet leaving a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceOutput {
    pub port: PortId,
    pub name: String,
    /// What egress does to the 802.1Q tag.
    pub tag: TagAction,
    /// The VLAN of the packet (the VID of the tag it leaves with, if tagged).
    pub vlan: VlanId,
    /// Frame length on the wire after the tag fix-up.
    pub len: usize,
    /// The port's MTU, which the frame was checked against.
    pub mtu: u16,
}

/// What the switch does with the packet in the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceVerdict {
    /// Sent out of one port.
    Output(TraceOutput),
    /// Flooded to the VLAN's other ports that are up: the copies sent, and those dropped at
    /// egress with the reason.
    Flood { vlan: VlanId, outputs: Vec<TraceOutput>, dropped: Vec<(String, DropReason)> },
    /// Dropped by `stage`.
    Drop { stage: &'static str, reason: DropReason },
    /// Handled by the node's router (L3): answered, or routed as described (the next hop's
    /// MAC and the tunnel's outer headers depend on ARP state the trace does not read).
    Routed(String),
}

impl TraceVerdict {
    /// Names of the ports a copy of the packet leaves on.
    pub fn outputs(&self) -> Vec<String> {
        match self {
            TraceVerdict::Output(o) => vec![o.name.clone()],
            TraceVerdict::Flood { outputs, .. } => outputs.iter().map(|o| o.name.clone()).collect(),
            TraceVerdict::Drop { .. } | TraceVerdict::Routed(_) => Vec::new(),
        }
    }

    /// The drop reason, if the packet is dropped.
    pub fn drop_reason(&self) -> Option<DropReason> {
        match self {
            TraceVerdict::Drop { reason, .. } => Some(*reason),
            _ => None,
        }
    }
}

impl fmt::Display for TraceOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.tag {
            TagAction::Untouched => "untagged".to_string(),
            TagAction::Push => format!("push VID {}", self.vlan),
            TagAction::Pop => "pop tag".to_string(),
            TagAction::Rewrite => format!("tagged VID {}", self.vlan),
        };
        write!(f, "{} ({tag})", self.name)
    }
}

impl fmt::Display for TraceVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceVerdict::Output(o) => write!(f, "output to {o}"),
            TraceVerdict::Flood { vlan, outputs, dropped } => {
                write!(f, "flood on VLAN {vlan} to ")?;
                if outputs.is_empty() {
                    f.write_str("no port")?;
                }
                for (i, o) in outputs.iter().enumerate() {
                    write!(f, "{}{o}", if i > 0 { ", " } else { "" })?;
                }
                if !dropped.is_empty() {
                    let d: Vec<String> =
                        dropped.iter().map(|(p, r)| format!("{p}: {}", r.name())).collect();
                    write!(f, "; dropped at {}", d.join(", "))?;
                }
                Ok(())
            }
            TraceVerdict::Drop { stage, reason } => {
                write!(f, "drop in {stage}: {} ({})", reason.name(), reason.help())
            }
            TraceVerdict::Routed(what) => write!(f, "l3: {what}"),
        }
    }
}

/// A traced packet: every stage it went through, and the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub steps: Vec<TraceStep>,
    pub verdict: TraceVerdict,
}

/// `check_source` uses the time only to refresh the last-seen age of a dynamic source MAC
/// already known on the ingress port, and never for a time before that last sighting; time 0
/// is before every sighting, so the trace leaves ages alone (a test below holds it to that).
const NO_AGE_REFRESH: u64 = 0;

/// Runs `frame`, received on `in_port`, through the pipeline's decisions against `snap` and
/// `fdb`. Reads only: nothing is learned, refreshed, cached, counted or sent.
pub fn trace(frame: &[u8], in_port: PortId, snap: &Snapshot, fdb: &Fdb) -> Trace {
    let mut steps = Vec::new();
    let mut step = |stage: &'static str, detail: String| steps.push(TraceStep { stage, detail });
    let verdict = run(frame, in_port, snap, fdb, &mut step);
    Trace { steps, verdict }
}

fn dropped(stage: &'static str, reason: DropReason) -> TraceVerdict {
    TraceVerdict::Drop { stage, reason }
}

fn drop_text(r: DropReason) -> String {
    format!("drop {}: {}", r.name(), r.help())
}

fn run(
    frame: &[u8],
    in_port: PortId,
    snap: &Snapshot,
    fdb: &Fdb,
    step: &mut dyn FnMut(&'static str, String),
) -> TraceVerdict {
    // parse
    let mut m = Meta::rx(in_port);
    if let Err(r) = parse::parse(frame, &mut m) {
        step("parse", format!("{} bytes: {}", frame.len(), drop_text(r)));
        return dropped("parse", r);
    }
    step("parse", describe_frame(frame, &m));
    let wire_vid = (m.flags & flags::TAGGED != 0).then_some(m.vlan);

    // vlan
    vlan::classify(&mut m, snap);
    let port = port_text(snap, in_port);
    if let Verdict::Drop(r) = m.verdict {
        let tag = wire_vid.map_or("untagged frame".to_string(), |v| format!("VID {v}"));
        step("vlan", format!("{tag} on {port}: {}", drop_text(r)));
        return dropped("vlan", r);
    }
    let how = match wire_vid {
        None => "untagged frame".to_string(),
        Some(0) => "priority-tagged frame (VID 0)".to_string(),
        Some(v) => format!("tagged VID {v}"),
    };
    step("vlan", format!("{how} on {port}: VLAN {}", m.vlan));

    // acl
    let mut acl_output = None;
    if let Some(table) = snap.acl().filter(|t| !t.is_empty()) {
        let f = acl::fields(frame, &m);
        match table.lookup(&f) {
            None => step("acl", format!("no rule matches (of {})", table.rules().len())),
            Some(i) => {
                let r = &table.rules()[i];
                let mut what = format!("rule {:?} (priority {}) matches", r.name, r.priority);
                if let Some(mt) = r.meter {
                    let _ = write!(
                        what,
                        "; meter {} bit/s, {} pkt/s (0: none; not evaluated here: its bucket is the worker's)",
                        mt.bps, mt.pps
                    );
                }
                if let Some(v) = r.set_vlan {
                    m.vlan = v;
                    let _ = write!(what, "; set VLAN {v}");
                }
                match r.action {
                    Action::Drop => {
                        step("acl", format!("{what}; {}", drop_text(DropReason::AclDrop)));
                        return dropped("acl", DropReason::AclDrop);
                    }
                    Action::Output(p) => {
                        step("acl", format!("{what}; output to {} (no L2/L3)", port_name(snap, p)));
                        acl_output = Some(p);
                    }
                    Action::Normal => step("acl", format!("{what}; switched as usual")),
                }
            }
        }
    }

    let name = |p: PortId| port_name(snap, p);
    let v = match acl_output {
        Some(p) => Verdict::Output(p),
        None => {
            // l3
            if let Some(t) = snap.l3() {
                match l3_decision(frame, &m, t) {
                    Ok(None) => {}
                    Ok(Some(what)) => {
                        step("l3", what.clone());
                        return TraceVerdict::Routed(what);
                    }
                    Err((what, r)) => {
                        step("l3", format!("{what}: {}", drop_text(r)));
                        return dropped("l3", r);
                    }
                }
            }

            // l2
            let dst = MacAddr::from_bytes(&frame[0..6]);
            let src = MacAddr::from_bytes(&frame[6..12]);
            let (v, source) = l2::decide(fdb, m.vlan, in_port, src, dst, NO_AGE_REFRESH);
            let src_text = match source {
                None => format!("source {src} is not a unicast address"),
                Some(SourceCheck::Known) => format!("source {src} known on {}", name(in_port)),
                Some(SourceCheck::Unknown) => {
                    format!("source {src} is new: would be learned on {}", name(in_port))
                }
                Some(SourceCheck::Moved { from }) => {
                    format!(
                        "source {src} is on {}: would move to {} (learned)",
                        name(from),
                        name(in_port)
                    )
                }
                Some(SourceCheck::Static) => {
                    format!("source {src} is static on another port (spoofing)")
                }
            };
            let dst_text = match v {
                Verdict::Drop(DropReason::SamePort) => {
                    format!("destination {dst} is on the ingress port {}", name(in_port))
                }
                Verdict::Drop(_) => String::new(),
                Verdict::Flood if dst.is_multicast() => {
                    format!("destination {dst} is a group address")
                }
                Verdict::Flood => format!("destination {dst} unknown on VLAN {}", m.vlan),
                Verdict::Output(p) => format!("destination {dst} on {}", name(p)),
                _ => String::new(),
            };
            let decision = match v {
                Verdict::Drop(r) => drop_text(r),
                Verdict::Flood => "flood".to_string(),
                Verdict::Output(p) => format!("output to {}", name(p)),
                _ => drop_text(DropReason::Unhandled),
            };
            let parts: Vec<&str> = [src_text.as_str(), dst_text.as_str(), decision.as_str()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect();
            step("l2", parts.join("; "));
            v
        }
    };

    // output
    match v {
        Verdict::Drop(r) => dropped("l2", r),
        Verdict::Continue | Verdict::Tunnel(_) | Verdict::Held | Verdict::Consumed => {
            dropped("l2", DropReason::Unhandled)
        }
        Verdict::Output(p) => match egress(snap, p, &m, frame.len(), wire_vid, step) {
            Ok(o) => TraceVerdict::Output(o),
            Err(r) => dropped("output", r),
        },
        Verdict::Flood => {
            let members = snap.flood_members(m.vlan);
            let list = |ids: &[PortId]| ids.iter().map(|p| name(*p)).collect::<Vec<_>>().join(", ");
            let (usable, skipped): (Vec<PortId>, Vec<PortId>) = members
                .iter()
                .partition(|id| **id != in_port && snap.port(**id).is_some_and(|e| e.up));
            let mut detail = format!(
                "flood VLAN {}: members {}",
                m.vlan,
                if members.is_empty() { "none".into() } else { list(members) }
            );
            if !skipped.is_empty() {
                let why: Vec<String> = skipped
                    .iter()
                    .map(|p| {
                        let n = name(*p);
                        if *p == in_port {
                            format!("{n} (ingress)")
                        } else {
                            format!("{n} (down)")
                        }
                    })
                    .collect();
                let _ = write!(detail, "; skipping {}", why.join(", "));
            }
            if usable.is_empty() {
                let r = DropReason::NoFloodMembers;
                let _ = write!(detail, "; {}", drop_text(r));
                step("output", detail);
                return dropped("output", r);
            }
            step("output", detail);
            let (mut outputs, mut lost) = (Vec::new(), Vec::new());
            for p in usable {
                match egress(snap, p, &m, frame.len(), wire_vid, step) {
                    Ok(o) => outputs.push(o),
                    Err(r) => lost.push((name(p), r)),
                }
            }
            TraceVerdict::Flood { vlan: m.vlan, outputs, dropped: lost }
        }
    }
}

/// What the L3 stage does with a frame, if it takes it: `Ok(None)` when it leaves it to L2.
/// Mirrors [`crate::pipeline::nodes::l3`] without touching the neighbour table.
fn l3_decision(
    frame: &[u8],
    m: &Meta,
    t: &crate::tables::l3::L3Table,
) -> Result<Option<String>, (String, DropReason)> {
    use crate::tables::l3::{NextHop, Route};
    let l3 = m.l3_off as usize;
    let from_uplink = m.in_port == t.uplink;
    if m.ethertype == ethertype::ARP {
        let a = wire::ArpPacket::new_unchecked(&frame[l3..]);
        if !a.is_ethernet_ipv4() || a.check_len().is_err() {
            return if from_uplink {
                Err(("ARP on the uplink".into(), DropReason::ArpNotForUs))
            } else {
                Ok(None)
            };
        }
        let tpa = a.target_protocol_addr();
        let ours = if from_uplink {
            if tpa != t.underlay.addr {
                return Err((format!("ARP for {tpa} on the uplink"), DropReason::ArpNotForUs));
            }
            true
        } else {
            m.vlan == t.pod_vlan && tpa == t.gateway
        };
        if !ours {
            return Ok(None);
        }
        return Ok(Some(if a.operation() == wire::arp::operation::REQUEST {
            format!(
                "ARP request for {tpa}: answered with {} ({} learned)",
                t.router_mac,
                a.source_protocol_addr()
            )
        } else {
            format!(
                "ARP reply for {tpa}: {} at {} learned",
                a.source_protocol_addr(),
                a.source_hardware_addr()
            )
        }));
    }
    let to_router = frame[0..6] == t.router_mac.0;
    if !(from_uplink || to_router && m.vlan == t.pod_vlan) {
        return Ok(None);
    }
    if from_uplink && !to_router {
        return Err((
            format!("destination {} is not the router", MacAddr::from_bytes(&frame[0..6])),
            DropReason::UplinkNotForUs,
        ));
    }
    if m.ethertype != ethertype::IPV4 {
        let r = if from_uplink { DropReason::UplinkNotForUs } else { DropReason::NotIpv4 };
        return Err((format!("EtherType {:#06x} to the router", m.ethertype), r));
    }
    let ip = wire::Ipv4Packet::new_unchecked(&frame[l3..]);
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if from_uplink && dst == t.underlay.addr && m.ip_proto == ip_proto::UDP && m.l4_off != 0 {
        let l4 = m.l4_off as usize;
        if u16::from_be_bytes([frame[l4 + 2], frame[l4 + 3]]) == t.vxlan_port {
            return Ok(Some(format!(
                "VXLAN to {dst}: decapsulated if VNI {} and routed (the inner frame is not traced)",
                t.vni
            )));
        }
    }
    if t.is_own(u32::from(dst)) {
        let l4 = m.l4_off as usize;
        if m.ip_proto == ip_proto::ICMP
            && l4 != 0
            && frame[l4] == wire::icmp::msg_type::ECHO_REQUEST
        {
            return Ok(Some(format!("ping to the node's {dst}: echo reply to {src}")));
        }
        return Err((format!("{dst} is the node's own address"), DropReason::ToNodeUnsupported));
    }
    if ip.ttl() <= 1 {
        return Ok(Some(format!("TTL {} to {dst}: ICMP time exceeded to {src}", ip.ttl())));
    }
    let (matched, hop) = t.next_hop(dst, false);
    let route = match matched {
        Some((net, Route::Local)) => format!("{dst} in {net}"),
        Some((net, Route::Peer(i))) => {
            let p = &t.peers[usize::from(i)];
            if net == p.pod_cidr {
                format!("{dst} in {net}: peer {:?}", p.name)
            } else {
                format!("{dst} in {net}: static route to peer {:?}", p.name)
            }
        }
        Some((net, Route::Gateway(_))) => format!("{dst} in {net}: static route"),
        None => format!("{dst}"),
    };
    let what = match hop {
        NextHop::Pod => {
            format!("{route}: to the local pod (MAC by ARP on VLAN {})", t.pod_vlan)
        }
        NextHop::Uplink(nh) if matched.is_none() => {
            format!("{route} on the underlay subnet: to {nh} on the uplink")
        }
        NextHop::Uplink(nh) => format!("{route}, direct routing to {nh} on the uplink"),
        NextHop::Tunnel(i, nh) => {
            let p = &t.peers[usize::from(i)];
            format!(
                "{route}, VXLAN VNI {} to {} (outer next hop {nh}), inner destination {}",
                t.vni, p.underlay_ip, p.vtep_mac
            )
        }
        NextHop::Unreachable => format!("no route to {dst}: ICMP net unreachable to {src}"),
    };
    Ok(Some(format!("routed, TTL {} -> {}: {what}", ip.ttl(), ip.ttl() - 1)))
}

/// One egress port's checks, reported as an `output` step.
fn egress(
    snap: &Snapshot,
    port: PortId,
    m: &Meta,
    len: usize,
    wire_vid: Option<VlanId>,
    step: &mut dyn FnMut(&'static str, String),
) -> Result<TraceOutput, DropReason> {
    let name = port_name(snap, port);
    let mtu = snap.port(port).map_or(0, |e| e.mtu);
    match egress_check(snap, port, m, len) {
        Ok(tag) => {
            let (len_out, what) = match tag {
                TagAction::Untouched => (len, "untagged, untouched".to_string()),
                TagAction::Push => (len + 4, format!("push 802.1Q tag VID {}", m.vlan)),
                TagAction::Pop => {
                    (len - 4, format!("pop the 802.1Q tag (VID {})", wire_vid.unwrap_or(0)))
                }
                TagAction::Rewrite if wire_vid == Some(m.vlan) => {
                    (len, format!("keep the 802.1Q tag VID {}", m.vlan))
                }
                TagAction::Rewrite => {
                    (len, format!("rewrite the tag VID {} -> {}", wire_vid.unwrap_or(0), m.vlan))
                }
            };
            step(
                "output",
                format!("{}: {what}; {len_out} bytes, within MTU {mtu}", port_text(snap, port)),
            );
            Ok(TraceOutput { port, name, tag, vlan: m.vlan, len: len_out, mtu })
        }
        Err(r) => {
            let extra = if r == DropReason::MtuExceeded {
                let l2 = if m.flags & flags::TAGGED != 0 { 18 } else { 14 };
                format!(" ({} bytes after the Ethernet header > MTU {mtu})", len - l2)
            } else {
                String::new()
            };
            step("output", format!("{}: {}{extra}", port_text(snap, port), drop_text(r)));
            Err(r)
        }
    }
}

fn port_name(snap: &Snapshot, id: PortId) -> String {
    snap.port(id).map_or_else(|| format!("#{id}"), |e| e.name.clone())
}

/// `p1 (access VLAN 10)`, `uplink (trunk 10,20-30 native 1, down)`.
fn port_text(snap: &Snapshot, id: PortId) -> String {
    let Some(e) = snap.port(id) else {
        return format!("port #{id} (not configured)");
    };
    let mut s = match &e.mode {
        VlanMode::Access(v) => format!("{} (access VLAN {v}", e.name),
        VlanMode::Trunk { allowed, native } => {
            let mut s = format!("{} (trunk {}", e.name, vlan_ranges(allowed.iter()));
            if let Some(n) = native {
                let _ = write!(s, " native {n}");
            }
            s
        }
    };
    if !e.up {
        s.push_str(", down");
    }
    s.push(')');
    s
}

/// VLANs in ascending order as `10,20-30`.
fn vlan_ranges(vlans: impl Iterator<Item = VlanId>) -> String {
    let mut runs: Vec<(VlanId, VlanId)> = Vec::new();
    for v in vlans {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == v => *last = v,
            _ => runs.push((v, v)),
        }
    }
    if runs.is_empty() {
        return "none".into();
    }
    let parts: Vec<String> =
        runs.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
    parts.join(",")
}

fn proto_name(p: u8) -> String {
    match p {
        ip_proto::TCP => "tcp".into(),
        ip_proto::UDP => "udp".into(),
        ip_proto::ICMP => "icmp".into(),
        ip_proto::ICMPV6 => "icmpv6".into(),
        n => format!("proto {n}"),
    }
}

/// What parse found, from the frame and the metadata it filled in (so every header read here
/// was length-checked by parse).
fn describe_frame(d: &[u8], m: &Meta) -> String {
    let mut s = format!(
        "{} bytes, {} -> {}",
        d.len(),
        MacAddr::from_bytes(&d[6..12]),
        MacAddr::from_bytes(&d[0..6])
    );
    if m.flags & flags::TAGGED != 0 {
        let _ = write!(s, ", 802.1Q VID {} PCP {}", m.vlan, m.pcp);
    } else {
        s.push_str(", untagged");
    }
    let l3 = &d[m.l3_off as usize..];
    let ip = if m.flags & flags::IPV4 != 0 {
        let ip = wire::Ipv4Packet::new_unchecked(l3);
        let _ = write!(s, ", IPv4 {} -> {}", ip.src_addr(), ip.dst_addr());
        true
    } else if m.flags & flags::IPV6 != 0 {
        let ip = wire::Ipv6Packet::new_unchecked(l3);
        let _ = write!(s, ", IPv6 {} -> {}", ip.src_addr(), ip.dst_addr());
        true
    } else if m.ethertype == ethertype::ARP {
        s.push_str(", ARP");
        false
    } else {
        let _ = write!(s, ", ethertype 0x{:04x}", m.ethertype);
        false
    };
    if ip {
        let _ = write!(s, " {}", proto_name(m.ip_proto));
        if m.flags & flags::FRAGMENT != 0 {
            s.push_str(" (non-first fragment)");
        } else if m.l4_off != 0 {
            let l4 = &d[m.l4_off as usize..];
            let be16 = |at: usize| u16::from_be_bytes([l4[at], l4[at + 1]]);
            match m.ip_proto {
                ip_proto::TCP | ip_proto::UDP => {
                    let _ = write!(s, " {} -> {}", be16(0), be16(2));
                }
                _ => {
                    let _ = write!(s, " type {} code {}", l4[0], l4[1]);
                }
            }
        }
    }
    s
}

/// A frame to trace, as the API and `vswitchctl trace` describe it: either `frame_hex`, or
/// fields from which a frame is built (see [`build_frame`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameSpec<'a> {
    pub frame_hex: Option<&'a str>,
    pub src_mac: Option<&'a str>,
    pub dst_mac: Option<&'a str>,
    pub vlan: Option<u16>,
    pub ethertype: Option<u16>,
    pub src_ip: Option<&'a str>,
    pub dst_ip: Option<&'a str>,
    pub proto: Option<&'a str>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub len: Option<usize>,
}

/// The largest frame [`build_frame`] makes or accepts.
pub const MAX_TRACE_FRAME: usize = 65_535;

/// Ethertype of a frame built without IP addresses or an ethertype: IEEE 802 local
/// experimental, which the switch forwards as plain L2.
pub const DEFAULT_ETHERTYPE: u16 = 0x88b5;

/// The frame `spec` describes. With `frame_hex`, its bytes (hex digits, optionally separated by
/// spaces, `:` or `-`, with an optional `0x`), taken as they are: a malformed frame is what a
/// trace is for. Otherwise built from the fields:
///
/// - `src_mac`, `dst_mac` (required); `vlan`: an 802.1Q tag with that VID (0..=4095);
/// - `src_ip`, `dst_ip` (both or neither, same family): an IPv4 or IPv6 packet with `proto`
///   `tcp`, `udp` (the default) or `icmp` (an echo request), and `src_port`/`dst_port` (0 if
///   left out) for TCP and UDP, checksums filled in;
/// - `ethertype`: defaults to the IP version, or [`DEFAULT_ETHERTYPE`] without IPs;
/// - `len`: the frame length in bytes (tag included, FCS not), padded with zeros and
///   counted in the IP length; 60 by default, or the headers' length if longer.
///
/// Errors name the field: `dst_mac: "zz" is not a MAC address`.
pub fn build_frame(spec: &FrameSpec<'_>) -> Result<Vec<u8>, String> {
    if let Some(hex) = spec.frame_hex {
        let fields = [
            ("src_mac", spec.src_mac.is_some()),
            ("dst_mac", spec.dst_mac.is_some()),
            ("vlan", spec.vlan.is_some()),
            ("ethertype", spec.ethertype.is_some()),
            ("src_ip", spec.src_ip.is_some()),
            ("dst_ip", spec.dst_ip.is_some()),
            ("proto", spec.proto.is_some()),
            ("src_port", spec.src_port.is_some()),
            ("dst_port", spec.dst_port.is_some()),
            ("len", spec.len.is_some()),
        ];
        if let Some((f, _)) = fields.iter().find(|(_, set)| *set) {
            return Err(format!(
                "frame_hex: give either frame_hex or fields such as {f}, not both"
            ));
        }
        return parse_hex(hex);
    }
    let mac = |field: &str, v: Option<&str>| -> Result<MacAddr, String> {
        let v = v.ok_or_else(|| format!("{field}: required unless frame_hex is given"))?;
        v.parse().map_err(|_| format!("{field}: {v:?} is not a MAC address"))
    };
    let src = mac("src_mac", spec.src_mac)?;
    let dst = mac("dst_mac", spec.dst_mac)?;
    if let Some(v) = spec.vlan {
        if v > 4095 {
            return Err(format!("vlan: {v} is out of range 0..=4095"));
        }
    }
    let ip = |field: &str, v: Option<&str>| -> Result<Option<IpAddr>, String> {
        v.map(|v| v.parse().map_err(|_| format!("{field}: {v:?} is not an IP address"))).transpose()
    };
    let ips = match (ip("src_ip", spec.src_ip)?, ip("dst_ip", spec.dst_ip)?) {
        (None, None) => None,
        (Some(_), None) => return Err("dst_ip: required with src_ip".into()),
        (None, Some(_)) => return Err("src_ip: required with dst_ip".into()),
        (Some(s), Some(d)) if s.is_ipv4() != d.is_ipv4() => {
            return Err(format!("dst_ip: {d} is not of the same IP version as src_ip {s}"))
        }
        (Some(s), Some(d)) => Some((s, d)),
    };
    let proto = match spec.proto.map(str::to_ascii_lowercase).as_deref() {
        None | Some("udp") => ip_proto::UDP,
        Some("tcp") => ip_proto::TCP,
        Some("icmp") => match ips {
            Some((IpAddr::V6(_), _)) => ip_proto::ICMPV6,
            _ => ip_proto::ICMP,
        },
        Some(_) => {
            return Err(format!(
                "proto: {:?} is not tcp, udp or icmp",
                spec.proto.unwrap_or_default()
            ))
        }
    };
    if ips.is_none() {
        let given = [
            ("proto", spec.proto.is_some()),
            ("src_port", spec.src_port.is_some()),
            ("dst_port", spec.dst_port.is_some()),
        ];
        if let Some((f, _)) = given.iter().find(|(_, set)| *set) {
            return Err(format!("{f}: needs src_ip and dst_ip"));
        }
    } else if proto != ip_proto::TCP && proto != ip_proto::UDP {
        if let Some(f) = [("src_port", spec.src_port), ("dst_port", spec.dst_port)]
            .iter()
            .find_map(|(f, p)| p.map(|_| f))
        {
            return Err(format!("{f}: ICMP has no ports"));
        }
    }
    let inner_type = match (ips, spec.ethertype) {
        (Some((s, _)), Some(t)) => {
            let want = if s.is_ipv4() { ethertype::IPV4 } else { ethertype::IPV6 };
            if t != want {
                return Err(format!(
                    "ethertype: 0x{t:04x} does not match the IP addresses (0x{want:04x})"
                ));
            }
            t
        }
        (Some((IpAddr::V4(_), _)), None) => ethertype::IPV4,
        (Some((IpAddr::V6(_), _)), None) => ethertype::IPV6,
        (None, Some(t)) if ethertype::is_vlan_tpid(t) => {
            return Err(format!("ethertype: 0x{t:04x} is a VLAN tag; use vlan instead"))
        }
        (None, Some(t)) => t,
        (None, None) => DEFAULT_ETHERTYPE,
    };

    let l2 = wire::ethernet::HEADER_LEN + if spec.vlan.is_some() { 4 } else { 0 };
    let l3_hdr = match ips {
        Some((IpAddr::V4(_), _)) => wire::ipv4::HEADER_LEN,
        Some((IpAddr::V6(_), _)) => wire::ipv6::HEADER_LEN,
        None => 0,
    };
    let l4_hdr = match (ips, proto) {
        (None, _) => 0,
        (_, ip_proto::TCP) => wire::tcp::HEADER_LEN,
        (_, ip_proto::UDP) => wire::udp::HEADER_LEN,
        _ => 8,
    };
    let headers = l2 + l3_hdr + l4_hdr;
    let len = match spec.len {
        Some(n) if n < headers => {
            return Err(format!("len: {n} is shorter than the headers ({headers} bytes)"))
        }
        Some(n) if n > MAX_TRACE_FRAME => {
            return Err(format!("len: {n} is longer than {MAX_TRACE_FRAME}"))
        }
        Some(n) => n,
        None => headers.max(60),
    };
    // Without an explicit length, the padding to 60 bytes is Ethernet padding, not IP payload.
    let ip_end = if spec.len.is_some() { len } else { headers };

    let mut f = vec![0u8; len];
    let mut eth = wire::EthernetFrame::new_unchecked(&mut f[..]);
    eth.set_dst_addr(dst);
    eth.set_src_addr(src);
    if let Some(vid) = spec.vlan {
        wire::vlan::write_tag(&mut f[12..16], ethertype::VLAN, wire::vlan::tci(0, false, vid));
    }
    f[l2 - 2..l2].copy_from_slice(&inner_type.to_be_bytes());
    let Some((s, d)) = ips else {
        return Ok(f);
    };
    let l4_off = l2 + l3_hdr;
    let l4_len = ip_end - l4_off;
    match (s, d) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut ip = wire::Ipv4Packet::new_unchecked(&mut f[l2..ip_end]);
            ip.set_version(4);
            ip.set_header_len(wire::ipv4::HEADER_LEN as u8);
            ip.set_total_len((ip_end - l2) as u16);
            ip.set_ttl(64);
            ip.set_next_header(proto);
            ip.set_src_addr(s);
            ip.set_dst_addr(d);
            ip.fill_checksum();
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut ip = wire::Ipv6Packet::new_unchecked(&mut f[l2..ip_end]);
            ip.set_version(6);
            ip.set_payload_len(l4_len as u16);
            ip.set_next_header(proto);
            ip.set_hop_limit(64);
            ip.set_src_addr(s);
            ip.set_dst_addr(d);
        }
        _ => unreachable!("IP versions were checked to match"),
    }
    let l4 = &mut f[l4_off..ip_end];
    match proto {
        ip_proto::TCP => {
            let mut t = wire::TcpPacket::new_unchecked(l4);
            t.set_src_port(spec.src_port.unwrap_or(0));
            t.set_dst_port(spec.dst_port.unwrap_or(0));
            t.set_header_len(wire::tcp::HEADER_LEN as u8);
            t.set_syn(true);
            t.set_window_len(65_535);
            t.fill_checksum(s, d);
        }
        ip_proto::UDP => {
            let mut u = wire::UdpPacket::new_unchecked(l4);
            u.set_src_port(spec.src_port.unwrap_or(0));
            u.set_dst_port(spec.dst_port.unwrap_or(0));
            u.set_len(l4_len as u16);
            u.fill_checksum(s, d);
        }
        ip_proto::ICMP => {
            let mut i = wire::IcmpPacket::new_unchecked(l4);
            i.set_msg_type(8);
            i.fill_checksum();
        }
        _ => {
            // ICMPv6 echo request; its checksum covers a pseudo header.
            l4[0] = 128;
            let pseudo = wire::checksum::pseudo_header(s, d, ip_proto::ICMPV6, l4_len as u32);
            let c = !wire::checksum::fold(pseudo + wire::checksum::sum(l4));
            l4[2..4].copy_from_slice(&c.to_be_bytes());
        }
    }
    Ok(f)
}

/// Bytes from hex digits, separators (whitespace, `:`, `-`) and a leading `0x` allowed.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let t = text.trim();
    let t = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    let mut digits = Vec::with_capacity(t.len());
    for (i, c) in t.char_indices() {
        match c.to_digit(16) {
            Some(v) => digits.push(v as u8),
            None if c.is_whitespace() || c == ':' || c == '-' => {}
            None => {
                return Err(format!("frame_hex: {c:?} at offset {i} is not a hex digit"));
            }
        }
    }
    if digits.is_empty() {
        return Err("frame_hex: no bytes".into());
    }
    if digits.len() % 2 != 0 {
        return Err(format!("frame_hex: odd number of hex digits ({})", digits.len()));
    }
    if digits.len() / 2 > MAX_TRACE_FRAME {
        return Err(format!("frame_hex: longer than {MAX_TRACE_FRAME} bytes"));
    }
    Ok(digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect())
}

/// The frame as lowercase hex, no separators.
pub fn to_hex(frame: &[u8]) -> String {
    let mut s = String::with_capacity(frame.len() * 2);
    for b in frame {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::VlanSet;
    use crate::testkit::Rig;
    use pnet_packet::ethernet::{EtherType, EtherTypes, MutableEthernetPacket};
    use pnet_packet::ip::IpNextHeaderProtocols;
    use pnet_packet::ipv4::{Ipv4Packet, MutableIpv4Packet};
    use pnet_packet::udp::{MutableUdpPacket, UdpPacket};
    use pnet_packet::vlan::MutableVlanPacket;
    use pnet_packet::Packet as _;

    const A: &str = "02:00:00:00:00:0a";
    const B: &str = "02:00:00:00:00:0b";
    const T: &str = "02:00:00:00:00:0f";

    /// An Ethernet frame of `len` bytes from `src` to `dst`, tagged with `vid` if given, with an
    /// IEEE local experimental payload of zeros; built by pnet.
    fn frame(dst: &str, src: &str, vid: Option<u16>, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        let mut e = MutableEthernetPacket::new(&mut buf[..]).unwrap();
        e.set_destination(dst.parse().unwrap());
        e.set_source(src.parse().unwrap());
        let local = EtherType(DEFAULT_ETHERTYPE);
        match vid {
            None => e.set_ethertype(local),
            Some(v) => {
                e.set_ethertype(EtherTypes::Vlan);
                let mut t = MutableVlanPacket::new(&mut buf[14..]).unwrap();
                t.set_vlan_identifier(v);
                t.set_ethertype(local);
            }
        }
        buf
    }

    /// Ports 0 `a` and 1 `b` access VLAN 10, 2 `c` access VLAN 20, 3 `t` trunk 10,20 native
    /// 1, all MTU 1500.
    fn rig() -> Rig<32> {
        let mut allowed = VlanSet::default();
        allowed.insert(10);
        allowed.insert(20);
        Rig::new(&[
            ("a", VlanMode::Access(10)),
            ("b", VlanMode::Access(10)),
            ("c", VlanMode::Access(20)),
            ("t", VlanMode::Trunk { allowed, native: Some(1) }),
        ])
    }

    fn trace_on(rig: &Rig<32>, f: &[u8], port: PortId) -> Trace {
        trace(f, port, &rig.snapshot.load(), &rig.fdb)
    }

    /// Sends `f` for real; the number of frames each port sent.
    fn switch(rig: &mut Rig<32>, port: PortId, f: &[u8]) -> Vec<Vec<Vec<u8>>> {
        assert!(rig.send(port, f));
        rig.run(10);
        (0..4).map(|p| rig.recv(p)).collect()
    }

    /// Teaches the switch `mac` on `port` (tagged with `vid` if given) with a broadcast.
    fn learn(rig: &mut Rig<32>, port: PortId, mac: &str, vid: Option<u16>) {
        switch(rig, port, &frame("ff:ff:ff:ff:ff:ff", mac, vid, 60));
    }

    fn stages(t: &Trace) -> Vec<&str> {
        t.steps.iter().map(|s| s.stage).collect()
    }

    #[test]
    fn unknown_unicast_floods_the_vlan_members_only() {
        let mut rig = rig();
        let f = frame(B, A, None, 60);
        let t = trace_on(&rig, &f, 0);
        assert_eq!(stages(&t), ["parse", "vlan", "l2", "output", "output", "output"], "{t:#?}");
        let TraceVerdict::Flood { vlan, outputs, dropped } = &t.verdict else { panic!("{t:#?}") };
        assert_eq!(*vlan, 10);
        assert!(dropped.is_empty());
        assert_eq!(t.verdict.outputs(), ["b", "t"]);
        assert_eq!(outputs[0].tag, TagAction::Untouched);
        assert_eq!((outputs[1].tag, outputs[1].len), (TagAction::Push, 64));
        assert!(t.steps[2].detail.contains("is new: would be learned on a"), "{t:#?}");
        assert!(t.steps[2].detail.contains("unknown on VLAN 10; flood"), "{t:#?}");
        assert_eq!(t.verdict.to_string(), "flood on VLAN 10 to b (untagged), t (push VID 10)");
        // Nothing was learned by the trace.
        assert_eq!(rig.fdb.len(), 0);

        // The switch does what the trace says.
        let out = switch(&mut rig, 0, &f);
        let sent: Vec<usize> = out.iter().map(Vec::len).collect();
        assert_eq!(sent, [0, 1, 0, 1]);
        assert_eq!(out[3][0].len(), outputs[1].len);
    }

    #[test]
    fn known_mac_outputs_with_a_tag_pushed_onto_the_trunk() {
        let mut rig = rig();
        learn(&mut rig, 3, T, Some(10));
        learn(&mut rig, 0, A, None);
        let f = frame(T, A, None, 60);
        let t = trace_on(&rig, &f, 0);
        let TraceVerdict::Output(o) = &t.verdict else { panic!("{t:#?}") };
        assert_eq!(
            (o.name.as_str(), o.tag, o.vlan, o.len, o.mtu),
            ("t", TagAction::Push, 10, 64, 1500)
        );
        assert!(t.steps[2].detail.contains(&format!("source {A} known on a")), "{t:#?}");
        assert!(t.steps[3].detail.contains("push 802.1Q tag VID 10; 64 bytes"), "{t:#?}");
        assert_eq!(t.verdict.to_string(), "output to t (push VID 10)");

        let out = switch(&mut rig, 0, &f);
        assert_eq!(out[3].len(), 1);
        assert_eq!(out[3][0].len(), 64);
        assert_eq!(&out[3][0][12..16], &[0x81, 0x00, 0x00, 10]);
        assert!(out[1].is_empty());

        // Back the other way the tag is popped.
        let t = trace_on(&rig, &frame(A, T, Some(10), 64), 3);
        let TraceVerdict::Output(o) = &t.verdict else { panic!("{t:#?}") };
        assert_eq!((o.name.as_str(), o.tag, o.len), ("a", TagAction::Pop, 60));
    }

    #[test]
    fn flow_rules_show_as_an_acl_step_and_act_as_the_switch_does() {
        use crate::tables::acl::{AclTable, Action, Match, Rule, RuleCounters};
        use std::sync::Arc;
        let mut rig = rig();
        let rule = |name: &str, priority, m, action, set_vlan| Rule {
            name: String::from(name),
            priority,
            m,
            action,
            set_vlan,
            meter: None,
            counters: Arc::new(RuleCounters::default()),
        };
        let from_a =
            Match { src_mac: Some(A.parse::<MacAddr>().unwrap().to_u64()), ..Match::default() };
        let table = AclTable::new(vec![
            rule(
                "steer",
                200,
                Match { in_port: Some(1), ..Match::default() },
                Action::Output(2),
                Some(20),
            ),
            rule("block-a", 100, from_a, Action::Drop, None),
        ]);
        let mut snap = Snapshot::clone(&rig.snapshot.load());
        snap.set_acl(Some(Arc::new(table)));
        rig.snapshot.store(Arc::new(snap));

        let f = frame(B, A, None, 60);
        let t = trace_on(&rig, &f, 0);
        assert_eq!(t.verdict, TraceVerdict::Drop { stage: "acl", reason: DropReason::AclDrop });
        assert_eq!(stages(&t), ["parse", "vlan", "acl"]);
        assert!(t.steps[2].detail.starts_with("rule \"block-a\" (priority 100) matches"), "{t:#?}");
        assert_eq!(switch(&mut rig, 0, &f).iter().map(Vec::len).collect::<Vec<_>>(), [0, 0, 0, 0]);

        // From b: steered to c, on VLAN 20, without L2 (c is not on b's VLAN 10).
        let f = frame(A, B, None, 60);
        let t = trace_on(&rig, &f, 1);
        assert_eq!(stages(&t), ["parse", "vlan", "acl", "output"], "{t:#?}");
        assert!(t.steps[2].detail.contains("set VLAN 20; output to c (no L2/L3)"), "{t:#?}");
        assert_eq!(t.verdict.outputs(), ["c"]);
        assert_eq!(switch(&mut rig, 1, &f).iter().map(Vec::len).collect::<Vec<_>>(), [0, 0, 1, 0]);

        // No rule matches a frame from c.
        let t = trace_on(&rig, &frame(A, "02:00:00:00:00:0c", None, 60), 2);
        assert_eq!(t.steps[2].detail, "no rule matches (of 2)");
    }

    #[test]
    fn tagged_frame_on_an_access_port_is_dropped_by_vlan() {
        let rig = rig();
        let t = trace_on(&rig, &frame(B, A, Some(20), 64), 0);
        let reason = DropReason::VlanTaggedOnAccess;
        assert_eq!(t.verdict, TraceVerdict::Drop { stage: "vlan", reason });
        assert_eq!(stages(&t), ["parse", "vlan"]);
        assert!(t.steps[0].detail.contains("802.1Q VID 20 PCP 0"), "{t:#?}");
        assert!(t.steps[1].detail.contains("drop vlan_tagged_on_access"), "{t:#?}");
        assert_eq!(
            t.verdict.to_string(),
            "drop in vlan: vlan_tagged_on_access (tagged frame on an access port)"
        );
    }

    #[test]
    fn truncated_frame_is_dropped_by_parse() {
        let rig = rig();
        let t = trace_on(&rig, &frame(B, A, None, 60)[..10], 0);
        assert_eq!(
            t.verdict,
            TraceVerdict::Drop { stage: "parse", reason: DropReason::EthTruncated }
        );
        assert_eq!(t.steps.len(), 1);
        assert!(t.steps[0].detail.starts_with("10 bytes: drop eth_truncated"), "{t:#?}");
    }

    #[test]
    fn mtu_exceeded_is_dropped_at_output() {
        let mut rig = rig();
        rig.reconfigure(1, |e| e.mtu = 1000);
        learn(&mut rig, 1, B, None);
        let f = frame(B, A, None, 14 + 1001);
        let t = trace_on(&rig, &f, 0);
        let reason = DropReason::MtuExceeded;
        assert_eq!(t.verdict, TraceVerdict::Drop { stage: "output", reason }, "{t:#?}");
        assert!(t.steps[3].detail.contains("(1001 bytes after the Ethernet header > MTU 1000)"));
        // Exactly the MTU fits.
        let t = trace_on(&rig, &f[..14 + 1000], 0);
        assert!(matches!(t.verdict, TraceVerdict::Output(_)), "{t:#?}");

        let out = switch(&mut rig, 0, &f);
        assert!(out.iter().all(Vec::is_empty));
        assert_eq!(rig.stats(1).drop_count(reason), 1);
    }

    #[test]
    fn same_port_is_dropped_by_l2() {
        let mut rig = rig();
        learn(&mut rig, 0, B, None);
        let t = trace_on(&rig, &frame(B, A, None, 60), 0);
        let reason = DropReason::SamePort;
        assert_eq!(t.verdict, TraceVerdict::Drop { stage: "l2", reason });
        assert!(t.steps[2].detail.contains("is on the ingress port a; drop same_port"), "{t:#?}");
    }

    #[test]
    fn moved_and_spoofed_sources_are_reported_not_learned() {
        let mut rig = rig();
        learn(&mut rig, 1, A, None);
        let t = trace_on(&rig, &frame(B, A, None, 60), 0);
        assert!(t.steps[2].detail.contains(&format!("source {A} is on b: would move to a")));
        assert_eq!(rig.fdb.lookup(10, A.parse().unwrap()), Some(1), "not moved by the trace");

        rig.learner.writer().add_static(10, B.parse().unwrap(), 3).unwrap();
        let t = trace_on(&rig, &frame(A, B, None, 60), 0);
        let reason = DropReason::StaticMacMoved;
        assert_eq!(t.verdict, TraceVerdict::Drop { stage: "l2", reason });
    }

    #[test]
    fn tracing_does_not_refresh_ages() {
        let mut rig = rig();
        learn(&mut rig, 0, A, None);
        let later = rig.now + 30_000_000_000;
        let age = |rig: &mut Rig<32>| rig.learner.writer().entries(later)[0].age_secs;
        assert_eq!(age(&mut rig), 30);
        trace_on(&rig, &frame(B, A, None, 60), 0);
        assert_eq!(age(&mut rig), 30);
    }

    #[test]
    fn flood_skips_down_ports_and_reports_none_left() {
        let mut rig = rig();
        rig.reconfigure(1, |e| e.up = false);
        rig.reconfigure(3, |e| e.up = false);
        let t = trace_on(&rig, &frame(B, A, None, 60), 0);
        let reason = DropReason::NoFloodMembers;
        assert_eq!(t.verdict, TraceVerdict::Drop { stage: "output", reason }, "{t:#?}");
        assert!(t.steps[3].detail.contains("skipping a (ingress), b (down), t (down)"), "{t:#?}");
    }

    #[test]
    fn builds_frames_from_fields() {
        let spec = FrameSpec {
            src_mac: Some(A),
            dst_mac: Some(B),
            vlan: Some(10),
            src_ip: Some("10.0.0.1"),
            dst_ip: Some("10.0.0.2"),
            src_port: Some(1234),
            dst_port: Some(53),
            ..FrameSpec::default()
        };
        let f = build_frame(&spec).unwrap();
        assert_eq!(f.len(), 60);
        let ip = Ipv4Packet::new(&f[18..]).unwrap();
        assert_eq!(ip.get_total_length(), 28);
        assert_eq!(ip.get_next_level_protocol(), IpNextHeaderProtocols::Udp);
        assert_eq!(ip.get_checksum(), pnet_packet::ipv4::checksum(&ip));
        let udp = UdpPacket::new(ip.payload()).unwrap();
        assert_eq!((udp.get_source(), udp.get_destination(), udp.get_length()), (1234, 53, 8));
        let sum = pnet_packet::udp::ipv4_checksum(&udp, &ip.get_source(), &ip.get_destination());
        assert_eq!(udp.get_checksum(), sum);

        let mut m = Meta::rx(0);
        parse::parse(&f, &mut m).unwrap();
        assert_eq!(
            describe_frame(&f, &m),
            format!("60 bytes, {A} -> {B}, 802.1Q VID 10 PCP 0, IPv4 10.0.0.1 -> 10.0.0.2 udp 1234 -> 53")
        );

        // A length counts in the IP packet; every protocol and family parses.
        for (src, dst, proto) in [
            ("10.0.0.1", "10.0.0.2", "tcp"),
            ("10.0.0.1", "10.0.0.2", "icmp"),
            ("fd00::1", "fd00::2", "tcp"),
            ("fd00::1", "fd00::2", "udp"),
            ("fd00::1", "fd00::2", "icmp"),
        ] {
            let spec = FrameSpec {
                src_ip: Some(src),
                dst_ip: Some(dst),
                proto: Some(proto),
                vlan: None,
                src_port: None,
                dst_port: None,
                len: Some(200),
                ..spec
            };
            let f = build_frame(&spec).unwrap();
            assert_eq!(f.len(), 200);
            let mut m = Meta::rx(0);
            parse::parse(&f, &mut m).unwrap_or_else(|r| panic!("{proto} {src}: {r:?}"));
            assert_ne!(m.l4_off, 0);
        }
        let v6 = FrameSpec { src_ip: Some("fd00::1"), dst_ip: Some("fd00::2"), ..spec };
        let f =
            build_frame(&FrameSpec { proto: Some("icmp"), src_port: None, dst_port: None, ..v6 })
                .unwrap();
        let l4 = &f[18 + 40..];
        let pseudo = crate::wire::checksum::pseudo_header(
            "fd00::1".parse().unwrap(),
            "fd00::2".parse().unwrap(),
            ip_proto::ICMPV6,
            l4.len() as u32,
        );
        assert_eq!(crate::wire::checksum::fold(pseudo + crate::wire::checksum::sum(l4)), 0xffff);

        // Plain L2 by default.
        let f =
            build_frame(&FrameSpec { src_mac: Some(A), dst_mac: Some(B), ..FrameSpec::default() })
                .unwrap();
        assert_eq!(f, frame(B, A, None, 60));
    }

    #[test]
    fn frame_errors_name_the_field() {
        let ok = FrameSpec { src_mac: Some(A), dst_mac: Some(B), ..FrameSpec::default() };
        let err = |spec: FrameSpec<'_>| build_frame(&spec).unwrap_err();
        assert_eq!(
            err(FrameSpec { dst_mac: Some("zz"), ..ok }),
            "dst_mac: \"zz\" is not a MAC address"
        );
        assert_eq!(
            err(FrameSpec { src_mac: None, ..ok }),
            "src_mac: required unless frame_hex is given"
        );
        assert_eq!(
            err(FrameSpec { vlan: Some(5000), ..ok }),
            "vlan: 5000 is out of range 0..=4095"
        );
        assert_eq!(
            err(FrameSpec { src_ip: Some("10.0.0.300"), dst_ip: Some("10.0.0.1"), ..ok }),
            "src_ip: \"10.0.0.300\" is not an IP address"
        );
        assert_eq!(
            err(FrameSpec { src_ip: Some("10.0.0.1"), ..ok }),
            "dst_ip: required with src_ip"
        );
        assert!(err(FrameSpec { src_ip: Some("10.0.0.1"), dst_ip: Some("::1"), ..ok })
            .starts_with("dst_ip: ::1 is not of the same IP version"));
        let ips = FrameSpec { src_ip: Some("10.0.0.1"), dst_ip: Some("10.0.0.2"), ..ok };
        assert_eq!(
            err(FrameSpec { proto: Some("sctp"), ..ips }),
            "proto: \"sctp\" is not tcp, udp or icmp"
        );
        assert_eq!(
            err(FrameSpec { proto: Some("icmp"), dst_port: Some(1), ..ips }),
            "dst_port: ICMP has no ports"
        );
        assert_eq!(
            err(FrameSpec { dst_port: Some(80), ..ok }),
            "dst_port: needs src_ip and dst_ip"
        );
        assert_eq!(
            err(FrameSpec { len: Some(30), ..ips }),
            "len: 30 is shorter than the headers (42 bytes)"
        );
        assert_eq!(
            err(FrameSpec { ethertype: Some(0x0806), ..ips }),
            "ethertype: 0x0806 does not match the IP addresses (0x0800)"
        );
        assert_eq!(
            err(FrameSpec { frame_hex: Some("00"), ..ok }),
            "frame_hex: give either frame_hex or fields such as src_mac, not both"
        );
    }

    #[test]
    fn hex_round_trips() {
        let f = frame(B, A, Some(10), 64);
        let hex = to_hex(&f);
        assert_eq!(
            build_frame(&FrameSpec { frame_hex: Some(&hex), ..FrameSpec::default() }),
            Ok(f)
        );
        assert_eq!(parse_hex("0x01:02-03 0a\n0B"), Ok(vec![1, 2, 3, 10, 11]));
        assert_eq!(parse_hex("012"), Err("frame_hex: odd number of hex digits (3)".into()));
        assert_eq!(parse_hex("01zz"), Err("frame_hex: 'z' at offset 2 is not a hex digit".into()));
        assert_eq!(parse_hex(" "), Err("frame_hex: no bytes".into()));
    }

    #[test]
    fn pnet_udp_frame_traces_with_its_ports() {
        let rig = rig();
        let mut buf = vec![0u8; 14 + 20 + 8 + 4];
        {
            let mut e = MutableEthernetPacket::new(&mut buf[..]).unwrap();
            e.set_destination(B.parse().unwrap());
            e.set_source(A.parse().unwrap());
            e.set_ethertype(EtherTypes::Ipv4);
        }
        {
            let mut ip = MutableIpv4Packet::new(&mut buf[14..]).unwrap();
            ip.set_version(4);
            ip.set_header_length(5);
            ip.set_total_length(32);
            ip.set_next_level_protocol(IpNextHeaderProtocols::Udp);
            ip.set_source("192.168.1.1".parse().unwrap());
            ip.set_destination("192.168.1.2".parse().unwrap());
        }
        {
            let mut u = MutableUdpPacket::new(&mut buf[34..]).unwrap();
            u.set_source(5000);
            u.set_destination(6000);
            u.set_length(12);
        }
        let t = trace_on(&rig, &buf, 0);
        assert!(
            t.steps[0]
                .detail
                .ends_with("untagged, IPv4 192.168.1.1 -> 192.168.1.2 udp 5000 -> 6000"),
            "{t:#?}"
        );
        assert_eq!(t.steps[1].detail, "untagged frame on a (access VLAN 10): VLAN 10");
    }
}
