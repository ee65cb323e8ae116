//! QoS at egress: a port whose snapshot entry has a [`QosPlan`] sends through a hierarchical
//! scheduler ([`crate::qos::Scheduler`]) instead of straight from its output batch.
//!
//! ```text
//!  output: emit ─► classify (leaf of the ingress port, or the default leaf) ─► enqueue
//!                                                 │ full / policed: dropped, counted
//!  worker, every iteration: release ◄─────────────┘ up to a batch, at the iteration's `now`
//!                            └─► the port's output batch ─► tx
//! ```
//!
//! The worker that owns the port owns its scheduler (no lock, no sharing); packets other
//! workers hand over for the port go through it the same way. Time is the worker's iteration
//! time, passed in: no clock is read per packet. A new plan (a configuration change) is
//! applied with [`EgressQos::update`], which keeps the queues, tokens and counters of the
//! classes that stay; packets of removed classes are freed and counted
//! (`qos_class_removed`).
//!
//! Classification is by ingress port: a pod's ports name its leaf class (`qos_class`), so
//! every packet of the pod, bridged, routed, or tunnelled to the uplink, is charged to it.

use std::sync::Arc;

use crate::packet::{flags, Batch, Meta, Pkt, Pool};
use crate::pipeline::snapshot::QosPlan;
use crate::qos::{self, Change, ClassId, QosError, Scheduler};
use crate::telemetry::DropReason;

/// The counted drop reason of a scheduler refusal.
#[inline]
pub fn drop_reason(r: qos::DropReason) -> DropReason {
    match r {
        qos::DropReason::QueueFull => DropReason::QosQueueFull,
        qos::DropReason::Policed => DropReason::QosPoliced,
        qos::DropReason::PpsLimit => DropReason::QosPpsLimit,
        qos::DropReason::UnknownClass | qos::DropReason::NotLeaf => DropReason::QosNoClass,
    }
}

/// The DDoS guard on a port's ingress, after parse: per-source packet rate and the SYN rate
/// ([`qos::DdosGuard`]). Dropped packets are marked (`ddos_source_rate`, `ddos_syn_flood`)
/// and counted on the ingress port by output. Non-IP frames (ARP) pass. Runs on the
/// iteration's `now`; reads the addresses at the offsets parse recorded.
///
/// On a node uplink, traffic from a peer node arrives from that peer's underlay address (one
/// source for all its pods, VXLAN or direct): `source_pps` must allow a whole node's traffic.
#[inline]
pub fn guard<const N: usize>(batch: &mut Batch<N>, pool: &Pool, g: &mut qos::DdosGuard, now: u64) {
    let (pkts, metas) = batch.split_mut();
    for (p, m) in pkts.iter().zip(metas.iter_mut()) {
        if m.is_dropped() {
            continue;
        }
        let d = pool.data(p);
        let l3 = m.l3_off as usize;
        let src = if m.flags & flags::IPV4 != 0 {
            let a: [u8; 4] = d[l3 + 12..l3 + 16].try_into().unwrap_or_default();
            qos::source_key(std::net::Ipv4Addr::from(a).into())
        } else if m.flags & flags::IPV6 != 0 {
            let a: [u8; 16] = d[l3 + 8..l3 + 24].try_into().unwrap_or_default();
            u128::from_be_bytes(a)
        } else {
            continue;
        };
        let l4 = m.l4_off as usize;
        let syn = m.ip_proto == crate::wire::ip_proto::TCP
            && l4 != 0
            && d.get(l4 + 13).is_some_and(|f| f & 0x12 == 0x02);
        match g.check(src, syn, now) {
            Ok(()) => {}
            Err(qos::GuardDrop::SourceRate) => m.drop(DropReason::DdosSourceRate),
            Err(qos::GuardDrop::SynFlood) => m.drop(DropReason::DdosSynFlood),
        }
    }
}

/// One shaped egress port's scheduler and the plan it runs.
pub struct EgressQos {
    sched: Scheduler<(Pkt, Meta)>,
    plan: Arc<QosPlan>,
    /// On the output stage's list of ports to flush.
    pub(crate) listed: bool,
}

impl EgressQos {
    /// A scheduler running `plan` from `now`.
    pub fn new(plan: Arc<QosPlan>, now: u64) -> Result<EgressQos, QosError> {
        let mut sched = Scheduler::new();
        let changes = plan.classes.iter().map(|(&id, c)| Change::Set(id, c.clone()));
        sched.apply(changes, now)?;
        Ok(EgressQos { sched, plan, listed: false })
    }

    /// Runs `plan` from `now` on: changed classes keep their queues, tokens and counters;
    /// queued packets of removed classes are handed to `removed`. On an error nothing
    /// changes (the control plane validated the plan, so this means a state the library
    /// refuses for a running scheduler, such as a leaf with queued packets becoming a parent).
    pub fn update(
        &mut self,
        plan: Arc<QosPlan>,
        now: u64,
        mut removed: impl FnMut(Pkt),
    ) -> Result<(), QosError> {
        if plan.classes != self.plan.classes {
            let mut changes: Vec<Change> = plan
                .classes
                .iter()
                .filter(|(id, c)| self.sched.config(**id) != Some(*c))
                .map(|(&id, c)| Change::Set(id, c.clone()))
                .collect();
            changes.extend(
                self.plan
                    .classes
                    .keys()
                    .filter(|id| !plan.classes.contains_key(id))
                    .map(|&id| Change::Remove(id)),
            );
            for (p, _) in self.sched.apply(changes, now)? {
                removed(p);
            }
        }
        self.plan = plan;
        Ok(())
    }

    /// The plan running now.
    pub fn plan(&self) -> &Arc<QosPlan> {
        &self.plan
    }

    /// The scheduler (counters, backlog).
    pub fn scheduler(&self) -> &Scheduler<(Pkt, Meta)> {
        &self.sched
    }

    /// The leaf class of a packet, or `None` to send it unshaped.
    #[inline]
    pub fn classify(&self, m: &Meta) -> Option<ClassId> {
        self.plan.classify(m.in_port)
    }

    /// Queues a packet on leaf `class`, or hands it back with the counted reason.
    #[inline]
    pub fn enqueue(
        &mut self,
        class: ClassId,
        p: Pkt,
        mut m: Meta,
        now: u64,
    ) -> Result<(), (Pkt, DropReason)> {
        m.class = class.0;
        let len = p.len() as u32;
        self.sched.enqueue(class, (p, m), len, now).map_err(|((p, _), r)| (p, drop_reason(r)))
    }

    /// Moves what the scheduler releases at `now` into `queue`, up to its room; returns how
    /// many packets moved.
    #[inline]
    pub fn release<const N: usize>(&mut self, queue: &mut Batch<N>, now: u64) -> usize {
        if self.sched.backlog() == 0 {
            return 0;
        }
        let room = queue.room();
        self.sched.dequeue_batch(now, room, |_, (p, m), _| {
            // `room` bounds the count, so the push cannot fail.
            let _ = queue.push(p, m);
        })
    }

    /// Packets queued.
    #[inline]
    pub fn backlog(&self) -> u64 {
        self.sched.backlog()
    }

    /// When a class can send again, if packets are queued and none can now.
    #[inline]
    pub fn next_wake_ns(&self) -> Option<u64> {
        self.sched.next_wake_ns()
    }

    /// Frees every queued packet (the port is going away); returns how many.
    pub fn clear(&mut self, pool: &mut Pool) -> usize {
        let all: Vec<Change> = self.plan.classes.keys().map(|&id| Change::Remove(id)).collect();
        let mut n = 0;
        // Removing every class at once cannot fail validation (nothing is left to check).
        if let Ok(items) = self.sched.apply(all, 0) {
            n = items.len();
            for (p, _) in items {
                pool.free(p);
            }
        }
        n
    }
}

/// One class of a shaped port as the control plane shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QosClassReport {
    pub id: ClassId,
    pub name: String,
    pub config: qos::ClassConfig,
    pub stats: qos::ClassStats,
}

/// A shaped port's classes and their counters, published by its worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QosPortReport {
    pub port: crate::types::PortId,
    /// Packets queued in the scheduler.
    pub backlog: u64,
    pub classes: Vec<QosClassReport>,
}

impl EgressQos {
    /// The classes with their settings and counters (control path: allocates).
    pub fn report(&self, port: crate::types::PortId) -> QosPortReport {
        let classes = self
            .plan
            .classes
            .iter()
            .filter_map(|(&id, c)| {
                Some(QosClassReport {
                    id,
                    name: self.plan.name(id),
                    config: c.clone(),
                    stats: self.sched.class_stats(id)?,
                })
            })
            .collect();
        QosPortReport { port, backlog: self.sched.backlog(), classes }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::pipeline::snapshot::QosPlan;
    use crate::pipeline::VlanMode;
    use crate::qos::{ClassConfig, Mode};
    use crate::testkit::Rig;
    use crate::types::PortId;

    const M: u64 = 1_000_000;
    const A: PortId = 0;
    const B: PortId = 1;
    const UP: PortId = 2;
    const UP_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x99];

    fn frame(src: u8, dst: [u8; 6], len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[0..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, src]);
        f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes()); // local experimental: no L3
        f
    }

    /// Pods `a` and `b` and an uplink on VLAN 1; the FDB knows the uplink's MAC.
    fn rig() -> Rig<32> {
        let v = VlanMode::Access(1);
        let mut rig: Rig<32> = Rig::new(&[("a", v.clone()), ("b", v.clone()), ("up", v)]);
        rig.send(UP, &frame(0x99, [0xff; 6], 60));
        rig.run(10);
        rig.discard_all();
        rig
    }

    /// Root 1 (`root_bps`) with leaves 2 (for port a) and 3 (for port b).
    fn plan(root_bps: u64, a: ClassConfig, b: ClassConfig) -> QosPlan {
        let classes = BTreeMap::from([
            (ClassId(1), ClassConfig::new(None, root_bps, root_bps)),
            (ClassId(2), a),
            (ClassId(3), b),
        ]);
        let names = BTreeMap::from([
            (ClassId(1), "root".to_string()),
            (ClassId(2), "pod-a".to_string()),
            (ClassId(3), "pod-b".to_string()),
        ]);
        QosPlan::new(classes, names, [(A, ClassId(2)), (B, ClassId(3))], None)
    }

    fn leaf(rate: u64, ceil: u64) -> ClassConfig {
        ClassConfig { queue_limit: 64, ..ClassConfig::new(Some(ClassId(1)), rate, ceil) }
    }

    /// Floods from a and b (`per_step` frames of `len` bytes each per 100 µs) for `steps`
    /// steps; returns the bytes the uplink sent from each.
    fn flood(rig: &mut Rig<32>, steps: usize, per_step: (usize, usize), len: usize) -> (u64, u64) {
        let (mut a, mut b) = (0u64, 0u64);
        for _ in 0..steps {
            for _ in 0..per_step.0 {
                rig.send(A, &frame(1, UP_MAC, len));
            }
            for _ in 0..per_step.1 {
                rig.send(B, &frame(2, UP_MAC, len));
            }
            rig.step();
            rig.advance(99_000);
            for f in rig.recv(UP) {
                match f[11] {
                    1 => a += f.len() as u64,
                    2 => b += f.len() as u64,
                    _ => {}
                }
            }
        }
        (a, b)
    }

    #[test]
    fn guarantees_share_a_saturated_uplink_60_40() {
        let mut rig = rig();
        rig.set_qos(UP, Some(plan(100 * M, leaf(60 * M, 100 * M), leaf(40 * M, 100 * M))));
        // One second of fake time, both pods offering far more than the uplink's 100 Mbit/s.
        let (a, b) = flood(&mut rig, 10_000, (3, 3), 1000);
        let share = a as f64 / (a + b) as f64;
        assert!((share - 0.6).abs() < 0.02 * 0.6, "a's share {share:.4} ({a} vs {b} bytes)");
        // The uplink sent its rate (plus the initial bursts) and no more.
        let total_bits = (a + b) * 8;
        assert!((99 * M..=101 * M).contains(&total_bits), "{total_bits} bits in 1 s");
        // The excess was dropped at the classes' queues, and counted on the uplink.
        let st = rig.stats(UP);
        assert!(st.drop_count(DropReason::QosQueueFull) > 0);
        let q = rig.worker.qos(UP).expect("scheduler");
        let ca = q.scheduler().class_stats(ClassId(2)).unwrap();
        assert_eq!(ca.sent_bytes, a);
        let dropped = q.scheduler().class_stats(ClassId(2)).unwrap().dropped_queue_full
            + q.scheduler().class_stats(ClassId(3)).unwrap().dropped_queue_full;
        assert_eq!(dropped, st.drop_count(DropReason::QosQueueFull));
    }

    #[test]
    fn an_idle_pod_lends_its_guarantee() {
        let mut rig = rig();
        rig.set_qos(UP, Some(plan(100 * M, leaf(60 * M, 100 * M), leaf(40 * M, 100 * M))));
        let (a, b) = flood(&mut rig, 10_000, (0, 3), 1000);
        assert_eq!(a, 0);
        assert!((98 * M..=101 * M).contains(&(b * 8)), "b sent {} bits", b * 8);
        let q = rig.worker.qos(UP).unwrap();
        assert!(q.scheduler().class_stats(ClassId(3)).unwrap().borrowed_bytes > 0);
    }

    #[test]
    fn borrowers_of_equal_priority_share_the_spare_by_weight() {
        // The namespace test's second phase: root 300M; a 100M weight 2 and b 50M weight 1
        // at the same priority borrow the idle 150M 2:1, so 200M and 100M.
        let mut rig = rig();
        let a = ClassConfig { prio: 1, weight: 2, ..leaf(100 * M, 300 * M) };
        let b = ClassConfig { prio: 1, weight: 1, ..leaf(50 * M, 300 * M) };
        rig.set_qos(UP, Some(plan(300 * M, a, b)));
        let (a, b) = flood(&mut rig, 10_000, (6, 6), 1000);
        let (a, b) = ((a * 8) as f64 / 1e6, (b * 8) as f64 / 1e6);
        assert!((a - 200.0).abs() < 4.0 && (b - 100.0).abs() < 2.0, "{a:.1} / {b:.1} Mbit/s");
    }

    #[test]
    fn a_police_class_drops_and_counts_instead_of_queueing() {
        let mut rig = rig();
        let police = ClassConfig { mode: Mode::Police, ..leaf(10 * M, 10 * M) };
        rig.set_qos(UP, Some(plan(100 * M, police, leaf(40 * M, 100 * M))));
        // 10 kB per 100 µs = 800 Mbit/s offered, for 1 s.
        let (a, _) = flood(&mut rig, 10_000, (10, 0), 1000);
        let bits = a * 8;
        assert!((9 * M..=11 * M).contains(&bits), "{bits} bits through a 10 Mbit/s policer");
        let st = rig.stats(UP);
        assert!(
            st.drop_count(DropReason::QosPoliced) > 90_000,
            "{:?}",
            st.drop_count(DropReason::QosPoliced)
        );
        assert_eq!(st.drop_count(DropReason::QosQueueFull), 0);
    }

    #[test]
    fn live_change_keeps_the_queue_and_takes_effect() {
        let mut rig = rig();
        rig.set_qos(UP, Some(plan(100 * M, leaf(60 * M, 100 * M), leaf(40 * M, 100 * M))));
        let _ = flood(&mut rig, 100, (3, 3), 1000);
        let queued = rig.worker.qos(UP).unwrap().backlog();
        assert!(queued > 0);
        // Swap the guarantees: 20 / 80.
        rig.set_qos(UP, Some(plan(100 * M, leaf(20 * M, 100 * M), leaf(80 * M, 100 * M))));
        rig.step();
        let q = rig.worker.qos(UP).unwrap();
        assert_eq!(q.scheduler().config(ClassId(2)).unwrap().rate_bps, 20 * M);
        assert!(q.backlog() + 64 >= queued, "queue lost on a live change");
        assert_eq!(rig.stats(UP).drop_count(DropReason::QosClassRemoved), 0);
        let (a, b) = flood(&mut rig, 10_000, (3, 3), 1000);
        let share = a as f64 / (a + b) as f64;
        assert!((share - 0.2).abs() < 0.02 * 0.2 + 0.002, "a's share {share:.4}");
    }

    #[test]
    fn unclassified_traffic_goes_to_the_default_leaf_or_direct() {
        let mut rig = rig();
        let mut p = plan(100 * M, leaf(10 * M, 10 * M), leaf(10 * M, 10 * M));
        // Port b has no class of its own: with a default leaf it is shaped there.
        let mut classes = p.classes.clone();
        classes.remove(&ClassId(3));
        classes.insert(crate::pipeline::snapshot::DEFAULT_CLASS, leaf(10 * M, 10 * M));
        p = QosPlan::new(
            classes,
            p.names.clone(),
            [(A, ClassId(2))],
            Some(crate::pipeline::snapshot::DEFAULT_CLASS),
        );
        rig.set_qos(UP, Some(p));
        let (_, b) = flood(&mut rig, 10_000, (0, 3), 1000);
        assert!((9 * M..=11 * M).contains(&(b * 8)), "default leaf sent {} bits", b * 8);
        // Without a default leaf it is not shaped.
        rig.set_qos(UP, Some(plan(100 * M, leaf(10 * M, 10 * M), leaf(10 * M, 10 * M))));
        let mut q = plan(100 * M, leaf(10 * M, 10 * M), leaf(10 * M, 10 * M));
        q = QosPlan::new(q.classes.clone(), q.names.clone(), [(A, ClassId(2))], None);
        rig.set_qos(UP, Some(q));
        let (_, b) = flood(&mut rig, 1000, (3, 0), 1000);
        assert_eq!(b, 0);
        let (_, b) = flood(&mut rig, 1000, (0, 3), 1000);
        assert_eq!(b, 3 * 1000 * 1000, "direct traffic shaped");
    }

    #[test]
    fn the_ddos_guard_limits_each_source_and_syns() {
        use crate::pipeline::trace::{build_frame, FrameSpec};
        let mut rig = rig();
        let cfg = crate::qos::GuardConfig {
            slots: 64,
            source_pps: 1000,
            source_burst: 10,
            syn_pps: 100,
            syn_burst: 5,
            seed: 1,
        };
        rig.set_guard(Some((cfg, vec![UP])));
        let tcp = |src: &str, syn: bool| {
            let mut f = build_frame(&FrameSpec {
                src_mac: Some("02:00:00:00:00:99"),
                dst_mac: Some("02:00:00:00:00:01"),
                src_ip: Some(src),
                dst_ip: Some("10.244.1.11"),
                proto: Some("tcp"),
                src_port: Some(1234),
                dst_port: Some(80),
                ..Default::default()
            })
            .unwrap();
            f[14 + 20 + 13] = if syn { 0x02 } else { 0x10 };
            f
        };
        // 100 packets from one source over 0.9 ms: its burst (10) passes; 1000 pps earns
        // 0.9 of a packet more in that time, so nothing else.
        for i in 0..100 {
            rig.send(UP, &tcp("198.18.0.7", false));
            if i % 10 == 9 {
                rig.step();
                rig.advance(99_000);
            }
        }
        // 50 SYNs from 50 sources at once: the SYN burst (5) passes.
        for i in 0..50 {
            rig.send(UP, &tcp(&format!("198.18.1.{i}"), true));
        }
        rig.run(10);
        let st = rig.stats(UP);
        assert_eq!(st.drop_count(DropReason::DdosSourceRate), 100 - 10);
        assert_eq!(st.drop_count(DropReason::DdosSynFlood), 45);
        // ARP and other non-IP frames are not the guard's business; pods' ports are unguarded.
        rig.send(A, &tcp("10.244.1.11", true));
        rig.run(10);
        assert_eq!(rig.stats(A).dropped(), 0);
    }

    #[test]
    fn no_buffer_is_lost_when_a_shaped_port_goes_away() {
        let mut rig = rig();
        let free0 = rig.worker.pool().free_frames();
        rig.set_qos(UP, Some(plan(100 * M, leaf(M, M), leaf(M, M))));
        let _ = flood(&mut rig, 50, (3, 3), 1000);
        let queued = rig.worker.qos(UP).unwrap().backlog();
        assert!(queued > 0);
        // Dropping the plan frees the queues, counted.
        rig.set_qos(UP, None);
        rig.step();
        assert!(rig.worker.qos(UP).is_none());
        assert_eq!(rig.stats(UP).drop_count(DropReason::QosClassRemoved), queued);
        rig.discard_all();
        assert_eq!(rig.worker.pool().free_frames(), free0);
        // And so does removing the port while packets are queued.
        rig.set_qos(UP, Some(plan(100 * M, leaf(M, M), leaf(M, M))));
        let _ = flood(&mut rig, 50, (3, 3), 1000);
        assert!(rig.worker.qos(UP).unwrap().backlog() > 0);
        let port = rig.worker.remove_port(UP).expect("port");
        drop(port);
        rig.discard_all();
        assert_eq!(rig.worker.pool().free_frames(), free0);
    }
}
