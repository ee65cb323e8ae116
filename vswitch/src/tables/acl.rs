//! The flow rule table (ACL) the workers read: an immutable, priority-ordered list of compiled
//! rules, built by the control plane from `[[flow]]` / `POST /v1/flows` (see
//! [`crate::control::flows`]) and published inside the snapshot.
//!
//! # Cost, and what comes next
//!
//! A lookup is a linear scan in priority order, first match wins: each rule is a handful of
//! compares against fields the parser already located (ports, VLAN, MACs, EtherType, IPv4
//! addresses under masks, protocol, L4 ports), so a packet costs about `rules x 10` compares
//! in the worst case (no match). That is right for the few to few dozen rules an operator
//! writes by hand, and it keeps the table a plain slice with no allocation or hashing on the
//! fast path. [`MAX_RULES`] bounds it. Beyond that, the next step is OVS's: a tuple-space
//! search classifier (one hash table per distinct mask, searched in priority order with
//! early exit), with the exact-match flow cache in front.
//!
//! A switch with no rule does not pay for any of this: the snapshot carries no table and the
//! pipeline skips the stage with one branch per batch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::types::{PortId, VlanId};

/// The most rules a table holds (a linear scan; see the module doc).
pub const MAX_RULES: usize = 1024;

/// What a rule matches; `None` matches anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Match {
    pub in_port: Option<PortId>,
    pub vlan: Option<VlanId>,
    /// MACs as `MacAddr::to_u64`.
    pub src_mac: Option<u64>,
    pub dst_mac: Option<u64>,
    pub ethertype: Option<u16>,
    /// IPv4 `(network, mask)` in host byte order; only IPv4 packets match.
    pub src_ip: Option<(u32, u32)>,
    pub dst_ip: Option<(u32, u32)>,
    pub proto: Option<u8>,
    /// TCP/UDP ports; only packets with a parsed L4 header match.
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
}

/// A packet's fields, as the ACL stage reads them once per packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fields {
    pub in_port: PortId,
    pub vlan: VlanId,
    pub src_mac: u64,
    pub dst_mac: u64,
    pub ethertype: u16,
    /// `Some((src, dst))` for an IPv4 packet.
    pub ipv4: Option<(u32, u32)>,
    pub proto: u8,
    /// `Some((src, dst))` when a TCP or UDP header was parsed.
    pub ports: Option<(u16, u16)>,
}

impl Match {
    /// Whether the packet with fields `f` matches.
    #[inline]
    pub fn matches(&self, f: &Fields) -> bool {
        fn eq<T: PartialEq>(want: Option<T>, have: T) -> bool {
            want.is_none_or(|w| w == have)
        }
        if !(eq(self.in_port, f.in_port)
            && eq(self.vlan, f.vlan)
            && eq(self.src_mac, f.src_mac)
            && eq(self.dst_mac, f.dst_mac)
            && eq(self.ethertype, f.ethertype))
        {
            return false;
        }
        if self.src_ip.is_some() || self.dst_ip.is_some() || self.proto.is_some() {
            let Some((s, d)) = f.ipv4 else { return false };
            let in_net = |n: Option<(u32, u32)>, a: u32| n.is_none_or(|(net, m)| a & m == net);
            if !(in_net(self.src_ip, s) && in_net(self.dst_ip, d) && eq(self.proto, f.proto)) {
                return false;
            }
        }
        if self.src_port.is_some() || self.dst_port.is_some() {
            let Some((s, d)) = f.ports else { return false };
            return eq(self.src_port, s) && eq(self.dst_port, d);
        }
        true
    }
}

/// What a matching packet gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Dropped and counted (`acl_drop`).
    Drop,
    /// Switched as usual (after the rule's VLAN change and meter).
    Normal,
    /// Sent out of this port, bypassing L2 and L3.
    Output(PortId),
}

/// A policer's limits: bits and packets per second (0: no such limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Meter {
    pub bps: u64,
    pub pps: u64,
}

impl Meter {
    /// A policer with a burst of 10 ms of its rate (at least one full frame and one packet),
    /// full at `now`.
    pub fn policer(&self, now: u64) -> crate::qos::Policer {
        let bps = if self.bps == 0 { u64::MAX / 16 } else { self.bps };
        let burst = (bps / 8 / 100).max(9216);
        let pps = (self.pps > 0).then(|| (self.pps, (self.pps / 100).max(1)));
        crate::qos::Policer::new(bps, burst, 0, pps, now)
    }
}

/// A rule's counters, shared by every worker (one relaxed add per matched packet and field)
/// and kept by the control plane across recompiles while the rule stays the same.
#[derive(Debug, Default)]
pub struct RuleCounters {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub meter_drops: AtomicU64,
}

impl RuleCounters {
    /// `(packets, bytes, meter drops)`.
    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.packets.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.meter_drops.load(Ordering::Relaxed),
        )
    }
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub priority: u16,
    pub m: Match,
    pub action: Action,
    pub set_vlan: Option<VlanId>,
    pub meter: Option<Meter>,
    pub counters: Arc<RuleCounters>,
}

/// The rules in evaluation order: priority high to low, then name.
#[derive(Debug, Clone, Default)]
pub struct AclTable {
    rules: Box<[Rule]>,
}

impl AclTable {
    /// A table of `rules` (at most [`MAX_RULES`]: the rest are left out), sorted for
    /// evaluation.
    pub fn new(mut rules: Vec<Rule>) -> AclTable {
        rules.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name)));
        rules.truncate(MAX_RULES);
        AclTable { rules: rules.into_boxed_slice() }
    }

    /// The rules, in evaluation order.
    #[inline]
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The index of the first rule (in evaluation order) that matches `f`.
    #[inline]
    pub fn lookup(&self, f: &Fields) -> Option<usize> {
        self.rules.iter().position(|r| r.m.matches(f))
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, priority: u16, m: Match) -> Rule {
        Rule {
            name: name.into(),
            priority,
            m,
            action: Action::Drop,
            set_vlan: None,
            meter: None,
            counters: Arc::default(),
        }
    }

    fn icmp(src: u32) -> Fields {
        Fields {
            in_port: 1,
            vlan: 10,
            src_mac: 0x0200_0000_0001,
            dst_mac: 0x0200_0000_0002,
            ethertype: 0x0800,
            ipv4: Some((src, 0x0a00_0002)),
            proto: 1,
            ports: None,
        }
    }

    #[test]
    fn fields_match_under_masks_and_absent_fields_match_anything() {
        let any = Match::default();
        assert!(any.matches(&icmp(1)));
        let net = Match { src_ip: Some((0x0a00_0000, 0xff00_0000)), ..any };
        assert!(net.matches(&icmp(0x0a01_0203)));
        assert!(!net.matches(&icmp(0x0b00_0001)));
        let arp = Fields { ethertype: 0x0806, ipv4: None, ..icmp(1) };
        assert!(!net.matches(&arp), "an IP match never matches a non-IP packet");
        assert!(!Match { proto: Some(1), ..any }.matches(&arp));
        let port = Match { proto: Some(6), dst_port: Some(80), ..any };
        assert!(!port.matches(&icmp(1)));
        let tcp = Fields { proto: 6, ports: Some((4000, 80)), ..icmp(1) };
        assert!(port.matches(&tcp));
        assert!(!port.matches(&Fields { ports: Some((4000, 81)), ..tcp }));
        assert!(!Match { in_port: Some(2), ..any }.matches(&tcp));
        assert!(Match { vlan: Some(10), src_mac: Some(0x0200_0000_0001), ..any }.matches(&tcp));
    }

    #[test]
    fn higher_priority_first_then_by_name() {
        let t = AclTable::new(vec![
            rule("b", 10, Match::default()),
            rule("z", 100, Match { proto: Some(6), ..Match::default() }),
            rule("a", 10, Match::default()),
        ]);
        let names: Vec<_> = t.rules().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["z", "a", "b"]);
        assert_eq!(t.lookup(&icmp(1)), Some(1), "ICMP skips the TCP rule, takes a");
    }
}
