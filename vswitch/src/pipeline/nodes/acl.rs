//! ACL: the flow rules (`[[flow]]`, `vswitchctl flow add`), after parse and VLAN ingress and
//! before L3 input and L2.
//!
//! For every packet still in play, the first rule in priority order whose match holds
//! ([`crate::tables::acl`]) acts: its counters take the packet; its meter (a policer, one per
//! rule and worker) may refuse it (`acl_meter`); then `set_vlan` moves it to another VLAN, and
//! the action drops it (`acl_drop`), sends it out of a port (verdict `Output`, so L2 and L3
//! leave it alone), or lets it be switched as usual. A packet no rule matches goes on
//! untouched.
//!
//! The stage runs only when the snapshot has rules (one branch per batch otherwise). Its cost
//! with rules is the linear scan described in [`crate::tables::acl`], plus one relaxed atomic
//! add per counter of the matching rule.

use std::sync::Arc;

use crate::packet::{flags, Batch, Pool, Verdict};
use crate::qos::Policer;
use crate::tables::acl::{AclTable, Action, Fields};
use crate::telemetry::DropReason;
use crate::types::MacAddr;
use crate::wire::ip_proto;

use std::sync::atomic::Ordering;

/// The ACL stage's per-worker state: the meters of the table it last ran.
#[derive(Default)]
pub struct Acl {
    /// The table the meters were built for.
    table: Option<Arc<AclTable>>,
    /// One policer per rule with a meter, by rule index.
    meters: Vec<Option<Policer>>,
}

impl Acl {
    /// Runs the rules of `table` over the batch at time `now`.
    pub fn run<const N: usize>(
        &mut self,
        batch: &mut Batch<N>,
        pool: &Pool,
        table: &Arc<AclTable>,
        now: u64,
    ) {
        if !self.table.as_ref().is_some_and(|t| Arc::ptr_eq(t, table)) {
            // A new rule set (a snapshot change, not per packet): fresh meters, full buckets.
            self.meters = table.rules().iter().map(|r| r.meter.map(|m| m.policer(now))).collect();
            self.table = Some(table.clone());
        }
        let (pkts, metas) = batch.split_mut();
        for (p, m) in pkts.iter().zip(metas.iter_mut()) {
            if m.verdict != Verdict::Continue {
                continue;
            }
            let d = pool.data(p);
            let f = fields(d, m);
            let Some(i) = table.lookup(&f) else { continue };
            let r = &table.rules()[i];
            r.counters.packets.fetch_add(1, Ordering::Relaxed);
            r.counters.bytes.fetch_add(d.len() as u64, Ordering::Relaxed);
            if let Some(Some(pol)) = self.meters.get_mut(i) {
                if pol.check(d.len() as u32, now).is_err() {
                    r.counters.meter_drops.fetch_add(1, Ordering::Relaxed);
                    m.drop(DropReason::AclMeter);
                    continue;
                }
            }
            if let Some(v) = r.set_vlan {
                m.vlan = v;
            }
            match r.action {
                Action::Drop => m.drop(DropReason::AclDrop),
                Action::Output(port) => m.verdict = Verdict::Output(port),
                Action::Normal => {}
            }
        }
    }
}

/// The fields rules match on, read at the offsets parse recorded (no re-checking: parse
/// validated the headers those offsets point to).
#[inline]
pub(crate) fn fields(d: &[u8], m: &crate::packet::Meta) -> Fields {
    let ipv4 = (m.flags & flags::IPV4 != 0).then(|| {
        let l3 = m.l3_off as usize;
        let at =
            |o: usize| u32::from_be_bytes([d[l3 + o], d[l3 + o + 1], d[l3 + o + 2], d[l3 + o + 3]]);
        (at(12), at(16))
    });
    let ports = (m.l4_off != 0 && matches!(m.ip_proto, ip_proto::TCP | ip_proto::UDP)).then(|| {
        let l4 = m.l4_off as usize;
        (u16::from_be_bytes([d[l4], d[l4 + 1]]), u16::from_be_bytes([d[l4 + 2], d[l4 + 3]]))
    });
    Fields {
        in_port: m.in_port,
        vlan: m.vlan,
        dst_mac: MacAddr::from_bytes(&d[0..6]).to_u64(),
        src_mac: MacAddr::from_bytes(&d[6..12]).to_u64(),
        ethertype: m.ethertype,
        ipv4,
        proto: m.ip_proto,
        ports,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Meta, PoolConfig};
    use crate::tables::acl::{Match, Meter, Rule, RuleCounters};
    use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
    use pnet_packet::ip::IpNextHeaderProtocols;
    use pnet_packet::ipv4::MutableIpv4Packet;
    use pnet_packet::udp::MutableUdpPacket;

    /// An Ethernet/IPv4 frame from 10.0.0.`src` of protocol `proto` (UDP 1000 -> `dport`).
    fn frame(src: u8, proto: u8, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8 + 18];
        {
            let mut e = MutableEthernetPacket::new(&mut f).unwrap();
            e.set_destination([2, 0, 0, 0, 0, 2].into());
            e.set_source([2, 0, 0, 0, 0, 1].into());
            e.set_ethertype(EtherTypes::Ipv4);
        }
        {
            let mut ip = MutableIpv4Packet::new(&mut f[14..]).unwrap();
            ip.set_version(4);
            ip.set_header_length(5);
            ip.set_total_length(46);
            ip.set_ttl(64);
            ip.set_next_level_protocol(pnet_packet::ip::IpNextHeaderProtocol(proto));
            ip.set_source([10, 0, 0, src].into());
            ip.set_destination([10, 0, 0, 2].into());
        }
        if proto == IpNextHeaderProtocols::Udp.0 {
            let mut u = MutableUdpPacket::new(&mut f[34..]).unwrap();
            u.set_source(1000);
            u.set_destination(dport);
            u.set_length(26);
        }
        f
    }

    fn rule(name: &str, prio: u16, m: Match, action: Action) -> Rule {
        Rule {
            name: name.into(),
            priority: prio,
            m,
            action,
            set_vlan: None,
            meter: None,
            counters: Arc::new(RuleCounters::default()),
        }
    }

    /// Runs `frames` (from port 0) through parse and the ACL; the verdicts and VLANs.
    fn run(
        acl: &mut Acl,
        table: &Arc<AclTable>,
        frames: &[Vec<u8>],
        now: u64,
    ) -> Vec<(Verdict, u16)> {
        let mut pool = Pool::new(PoolConfig { frames: 256, ..PoolConfig::default() }).unwrap();
        let mut b: Batch<32> = Batch::new();
        for f in frames {
            let p = pool.alloc_from(f).unwrap();
            let mut m = Meta::rx(0);
            m.vlan = 10;
            b.push(p, m).unwrap();
        }
        crate::pipeline::nodes::parse::run(&mut b, &pool);
        acl.run(&mut b, &pool, table, now);
        let out = b.meta().iter().map(|m| (m.verdict, m.vlan)).collect();
        b.drain(|p, _| pool.free(p));
        out
    }

    #[test]
    fn first_matching_rule_by_priority_acts_and_counts() {
        let udp = IpNextHeaderProtocols::Udp.0;
        let icmp = IpNextHeaderProtocols::Icmp.0;
        let drop_icmp =
            rule("no-icmp", 100, Match { proto: Some(icmp), ..Match::default() }, Action::Drop);
        let mut to_p3 = rule(
            "dns",
            50,
            Match { proto: Some(udp), dst_port: Some(53), ..Match::default() },
            Action::Output(3),
        );
        to_p3.set_vlan = Some(20);
        let catch = rule(
            "from-9",
            10,
            Match { src_ip: Some((0x0a00_0009, u32::MAX)), ..Match::default() },
            Action::Normal,
        );
        let table = Arc::new(AclTable::new(vec![catch, to_p3, drop_icmp]));
        let mut acl = Acl::default();
        let v = run(
            &mut acl,
            &table,
            &[
                frame(1, icmp, 0),
                frame(1, udp, 53),
                frame(1, udp, 54),
                frame(9, udp, 54),
                frame(9, icmp, 0),
            ],
            0,
        );
        assert_eq!(
            v,
            vec![
                (Verdict::Drop(DropReason::AclDrop), 10),
                (Verdict::Output(3), 20),
                (Verdict::Continue, 10),
                (Verdict::Continue, 10),
                (Verdict::Drop(DropReason::AclDrop), 10),
            ]
        );
        let counts: Vec<_> =
            table.rules().iter().map(|r| (r.name.as_str(), r.counters.get().0)).collect();
        assert_eq!(counts, vec![("no-icmp", 2), ("dns", 1), ("from-9", 1)]);
        assert_eq!(table.rules()[0].counters.get().1, 2 * 60);
    }

    #[test]
    fn a_meter_polices_per_rule_and_refills_with_time() {
        let mut r = rule("slow", 1, Match::default(), Action::Normal);
        r.meter = Some(Meter { bps: 0, pps: 100 });
        let table = Arc::new(AclTable::new(vec![r]));
        let mut acl = Acl::default();
        let udp = IpNextHeaderProtocols::Udp.0;
        let burst: Vec<_> = (0..10).map(|_| frame(1, udp, 1)).collect();
        // The bucket holds one packet (100 pps / 100): one passes, the rest are metered out.
        let v = run(&mut acl, &table, &burst, 1_000_000_000);
        let passed = v.iter().filter(|(v, _)| *v == Verdict::Continue).count();
        assert_eq!(passed, 1);
        assert!(v.iter().skip(1).all(|(v, _)| *v == Verdict::Drop(DropReason::AclMeter)));
        assert_eq!(table.rules()[0].counters.get(), (10, 600, 9));
        // 20 ms later two more tokens (capped at the burst of one).
        let v = run(&mut acl, &table, &burst[..2], 1_020_000_000);
        assert_eq!(v[0].0, Verdict::Continue);
    }

    #[test]
    fn packets_already_decided_and_non_matching_ones_are_left_alone() {
        let table = Arc::new(AclTable::new(vec![rule(
            "p9",
            1,
            Match { in_port: Some(9), ..Match::default() },
            Action::Drop,
        )]));
        let mut acl = Acl::default();
        let v = run(&mut acl, &table, &[frame(1, 17, 1), vec![0u8; 5]], 0);
        assert_eq!(v[0].0, Verdict::Continue);
        assert_eq!(v[1].0, Verdict::Drop(DropReason::EthTruncated));
    }
}
