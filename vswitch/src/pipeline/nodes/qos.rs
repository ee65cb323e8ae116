//! QoS at egress: a port whose snapshot entry has a [`QosPlan`] sends through a hierarchical
//! scheduler ([`crate::qos::Scheduler`]) instead of straight from its output batch.
//!
//! ```text
//!  output: emit ─► classify (leaf of the ingress port, or the default leaf) ─► enqueue
//!                     │ sent first anyway: charged, passed │ full / policed: dropped, counted
//!                     ▼                                    │ else queued
//!  worker, every iteration: release ◄──────────────────────┘ up to a batch, at `now`
//!                     └─► the port's output batch ─► tx
//! ```
//!
//! A packet that the scheduler would hand out first anyway (no class waits to send on its
//! own rate, and the packet's class is under its guarantee) is charged and goes straight to
//! the output batch ([`crate::qos::Scheduler::offer`], the decision taken before the packet
//! moves): the decisions are those of queueing it and releasing at once, and a port whose
//! classes are all under their limits, the common case, queues nothing.
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
//!
//! # A pod's limit on traffic its scheduler does not see
//!
//! A class's scheduler sits on the egress of the port its tree shapes (the uplink): a pod's
//! traffic to another pod of the node never reaches it. [`limit_local`] closes that gap on
//! the ingress side. For a port whose traffic is a leaf class (its
//! [`LocalLimit`]), every packet received from it whose
//! exit is *not* a port shaped by that class's tree (another pod, an unshaped port, a flood)
//! goes through a [`LocalLimiter`] at the class's ceiling, burst, pps limit and MPU. Traffic
//! to the shaped port is left to its scheduler, so nothing is limited twice. The limiter
//! follows the class's `mode`:
//!
//! * `shape` (the default, and what the CNI plugin's `egressRate` makes): a packet over the
//!   limit waits in a FIFO of at most [`LOCAL_QUEUE_MAX`] packets and [`LOCAL_QUEUE_BYTES`]
//!   bytes, released at the class's rate by the worker every iteration and then switched as
//!   decided (through output, with the snapshot of the moment); a full queue drops
//!   (`qos_local_queue_full`).
//! * `police`: a packet over the limit is dropped (`qos_local_policed`,
//!   `qos_local_pps_limit`), as the class's scheduler does.
//!
//! Drops count on the pod's port and with the class in `vswitchctl show qos`.
//!
//! **Why shaping by default.** Policing was tried first: it holds no buffers and no state
//! but two buckets. Measured through it (the pods of `tests/qos.rs`, a 50 Mbit/s class), a
//! pod's UDP to a neighbour got exactly its rate (48.6 Mbit/s of payload, 50 of frames), but
//! its TCP got 1.0 Mbit/s: inside a node the round trip is tens of microseconds, so even
//! TCP's smallest window (two segments per round trip) is hundreds of Mbit/s; without a queue
//! to lengthen the round trip, TCP can only back off by timing out, again and again. A short
//! queue gives it the delay its window needs to match the rate: through the shaper, UDP got
//! 48.5 Mbit/s and TCP 47.9 (47.8 expected once framing is counted). The
//! costs, bounded: the queued frames come out of the worker's pool (the control plane counts
//! [`LOCAL_QUEUE_MAX`] per limited port when sizing it), and a queued packet is delayed by up
//! to the queue's length at the rate (64 full frames at 50 Mbit/s: 15 ms). Backpressure
//! (leaving frames in the pod's ring, as Firecracker does) cannot work here: it cannot tell
//! what goes to the uplink, which the scheduler already limits, from what goes to a
//! neighbour, since the destination is known only once the frame is switched.
//!
//! **Conformance.** Shaping is the scheduler's: a packet leaves while the buckets are not in
//! debt and is charged whole, possibly into debt (over any window, what leaves is at most
//! `ceil * window + burst` plus one packet). Policing is `mode = "police"`'s: a packet passes
//! when the bucket holds its cost; one larger than the whole burst (a GSO packet) passes from
//! a full bucket only, into debt. A GSO packet is charged as the segments it becomes (headers
//! repeated, MPU per segment, one pps token per segment).
//!
//! **State.** The limiters live on the worker that receives from the port, one per class
//! (ports of one class on one worker share it), and run on the iteration's time: no sharing,
//! no lock, no allocation per packet (the queue is reserved at its bound). They follow the
//! class live, keeping their tokens and queue. Limits of this design: a class whose ports sit
//! on several workers gets its ceiling on each; packets held for ARP by the L3 stage (the
//! first few towards an unresolved next hop) are not charged; a flooded packet is charged
//! once, before its copies are made; a limiter that goes away (its class loses its tree)
//! frees what it queued, counted as `qos_class_removed`.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::packet::{flags, Batch, GsoType, Meta, Pkt, Pool, Verdict};
use crate::pipeline::snapshot::{LocalLimit, QosPlan, Snapshot};
pub use crate::pipeline::snapshot::{LOCAL_QUEUE_BYTES, LOCAL_QUEUE_MAX};
use crate::qos::{self, ByteBucket, Change, ClassId, Mode, PacketBucket, QosError, Scheduler};
use crate::telemetry::{DropReason, WorkerCounters};

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

/// A packet waiting in a [`LocalLimiter`]'s queue, with its charge.
#[derive(Debug)]
struct Queued {
    pkt: Pkt,
    meta: Meta,
    bytes: u64,
    segs: u64,
}

/// What a [`LocalLimiter`] decides for a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// It goes on now (charged).
    Pass,
    /// It waits in the queue (charged when it leaves).
    Queue,
    /// It is dropped, for this reason.
    Drop(DropReason),
}

/// The limiter of one class's local traffic (see the module documentation) on one worker: a
/// byte bucket at the class's ceiling and burst, a packet bucket at its pps limit, and, for a
/// shaping class, the queue of what waits.
#[derive(Debug)]
pub struct LocalLimiter {
    class: ClassId,
    mode: Mode,
    bytes: ByteBucket,
    /// The byte bucket's depth, bytes.
    burst: u64,
    /// The packet bucket and its depth, packets, when the class has a pps limit.
    pps: Option<(PacketBucket, u64)>,
    mpu: u32,
    /// Packets waiting, FIFO, reserved at `queue_limit` (so pushing never allocates).
    queue: VecDeque<Queued>,
    queue_limit: usize,
    /// Bytes waiting (packet lengths).
    queued_bytes: u64,
}

impl LocalLimiter {
    /// A limiter for `limit`, its buckets full at `now`.
    pub fn new(limit: &LocalLimit, now: u64) -> LocalLimiter {
        LocalLimiter {
            class: limit.class,
            mode: limit.mode,
            bytes: ByteBucket::bytes(limit.ceil_bps, limit.burst_bytes, now),
            burst: limit.burst_bytes,
            pps: limit.pps.map(|(r, b)| (PacketBucket::packets(r, b, now), b)),
            mpu: limit.mpu,
            queue: VecDeque::with_capacity(limit.queue_limit as usize),
            queue_limit: limit.queue_limit as usize,
            queued_bytes: 0,
        }
    }

    /// Follows a change of the class's limits at `now`, keeping the tokens (refilled at the
    /// old rate up to `now`, capped at the new burst) and the queue (a lower bound applies to
    /// packets to come); a new pps limit starts full. Allocates only when the bound grows.
    pub fn update(&mut self, limit: &LocalLimit, now: u64) {
        self.class = limit.class;
        self.mode = limit.mode;
        self.bytes.set(limit.ceil_bps, limit.burst_bytes, now);
        self.burst = limit.burst_bytes;
        self.mpu = limit.mpu;
        self.pps = match (self.pps.take(), limit.pps) {
            (Some((mut b, _)), Some((r, burst))) => {
                b.set(r, burst, now);
                Some((b, burst))
            }
            (None, Some((r, burst))) => Some((PacketBucket::packets(r, burst, now), burst)),
            (_, None) => None,
        };
        self.queue_limit = limit.queue_limit as usize;
        self.queue.reserve(self.queue_limit.saturating_sub(self.queue.len()));
    }

    /// The class it limits.
    pub fn class(&self) -> ClassId {
        self.class
    }

    /// Packets waiting.
    #[inline]
    pub fn backlog(&self) -> usize {
        self.queue.len()
    }

    /// The byte bucket's tokens, whole bytes (negative in debt).
    pub fn tokens(&self) -> i64 {
        self.bytes.items()
    }

    /// What `bytes` in `segs` packets are charged (the MPU per packet at least).
    #[inline]
    fn cost(&self, bytes: u64, segs: u64) -> u64 {
        bytes.max(segs.saturating_mul(u64::from(self.mpu)))
    }

    /// Refills both buckets to `now`.
    #[inline]
    fn refill(&mut self, now: u64) {
        self.bytes.refill(now);
        if let Some((p, _)) = &mut self.pps {
            p.refill(now);
        }
    }

    /// Whether the buckets are out of debt (a shaper may send).
    #[inline]
    fn conforms(&self) -> bool {
        self.bytes.conforms() && self.pps.as_ref().is_none_or(|(p, _)| p.conforms())
    }

    /// Charges `cost` bytes and `segs` packets, possibly into debt.
    #[inline]
    fn charge(&mut self, cost: u64, segs: u64) {
        self.bytes.consume(cost);
        if let Some((p, _)) = &mut self.pps {
            p.consume(segs);
        }
    }

    /// Policing: admits `segs` packets of `bytes` bytes in all at `now`, charging them; or
    /// says which limit refused them (charging nothing). A bucket must hold the charge, or be
    /// full when the charge exceeds its whole depth (then it goes into debt).
    #[inline]
    pub fn admit(&mut self, bytes: u64, segs: u64, now: u64) -> Result<(), DropReason> {
        let cost = self.cost(bytes, segs);
        self.refill(now);
        if !self.bytes.has(cost.min(self.burst)) {
            return Err(DropReason::QosLocalPoliced);
        }
        if let Some((p, burst)) = &self.pps {
            if !p.has(segs.min(*burst)) {
                return Err(DropReason::QosLocalPpsLimit);
            }
        }
        self.charge(cost, segs);
        Ok(())
    }

    /// Decides for a packet of `len` bytes (`bytes` on the wire in `segs` packets) at `now`,
    /// when `pending` packets of `pending_bytes` bytes of the same batch are to be queued
    /// ahead of it: a shaper passes it if nothing waits and the buckets are out of debt
    /// (charging it), queues it if the queue has room, drops it otherwise; a policer admits
    /// or drops.
    #[inline]
    pub fn offer(
        &mut self,
        len: u64,
        bytes: u64,
        segs: u64,
        pending: (usize, u64),
        now: u64,
    ) -> Offer {
        if self.mode == Mode::Police {
            return match self.admit(bytes, segs, now) {
                Ok(()) => Offer::Pass,
                Err(r) => Offer::Drop(r),
            };
        }
        if self.queue.is_empty() && pending.0 == 0 {
            self.refill(now);
            if self.conforms() {
                self.charge(self.cost(bytes, segs), segs);
                return Offer::Pass;
            }
        }
        if self.queue.len() + pending.0 < self.queue_limit
            && self.queued_bytes + pending.1 + len <= LOCAL_QUEUE_BYTES
        {
            Offer::Queue
        } else {
            Offer::Drop(DropReason::QosLocalQueueFull)
        }
    }

    /// Queues a packet [`LocalLimiter::offer`] chose to queue. The room was checked there,
    /// so this does not allocate.
    #[inline]
    pub fn push(&mut self, pkt: Pkt, meta: Meta, bytes: u64, segs: u64) {
        self.queued_bytes += pkt.len() as u64;
        self.queue.push_back(Queued { pkt, meta, bytes, segs });
    }

    /// Hands `out` the queued packets the buckets allow at `now`, oldest first, at most `max`;
    /// returns how many.
    #[inline]
    pub fn release(&mut self, now: u64, max: usize, mut out: impl FnMut(Pkt, Meta)) -> usize {
        if self.queue.is_empty() {
            return 0;
        }
        self.refill(now);
        let mut n = 0;
        while n < max && self.conforms() {
            let Some(q) = self.queue.pop_front() else { break };
            self.charge(self.cost(q.bytes, q.segs), q.segs);
            self.queued_bytes = self.queued_bytes.saturating_sub(q.pkt.len() as u64);
            out(q.pkt, q.meta);
            n += 1;
        }
        n
    }

    /// When the head of the queue may leave, if packets wait and none may now.
    #[inline]
    pub fn next_wake_ns(&self) -> Option<u64> {
        if self.queue.is_empty() || self.conforms() {
            return None;
        }
        let at = |last: u64, wait: u64| last.saturating_add(wait);
        let bytes = at(self.bytes.last_ns(), self.bytes.ns_until_conform());
        let pkts = self.pps.as_ref().map_or(0, |(p, _)| at(p.last_ns(), p.ns_until_conform()));
        Some(bytes.max(pkts))
    }

    /// Frees every queued packet (the limiter is going away), counting each as
    /// `qos_class_removed` on the port it came from; returns how many.
    pub fn clear(&mut self, pool: &mut Pool, counters: &WorkerCounters) -> usize {
        let n = self.queue.len();
        for q in self.queue.drain(..) {
            counters.drop(q.meta.in_port, DropReason::QosClassRemoved);
            pool.free(q.pkt);
        }
        self.queued_bytes = 0;
        n
    }
}

/// The bytes a packet puts on the wire and how many packets it is: for a GSO packet, its
/// segments, each with a copy of the headers. Reads the TCP data offset at the offset parse
/// recorded; a header that is not there counts as 20 bytes (nothing panics).
#[inline]
fn wire_cost(d: &[u8], m: &Meta) -> (u64, u64) {
    let len = d.len() as u64;
    let o = &m.offload;
    if o.gso_type == GsoType::None || o.gso_size == 0 || m.l4_off == 0 {
        return (len, 1);
    }
    let l4 = usize::from(m.l4_off);
    let l4_hdr = match o.gso_type {
        GsoType::UdpL4 => 8,
        _ => d.get(l4 + 12).map_or(20, |b| usize::from(b >> 4) * 4).max(20),
    };
    let hdr = (l4 + l4_hdr) as u64;
    let segs = len.saturating_sub(hdr).div_ceil(u64::from(o.gso_size)).max(1);
    (len + (segs - 1) * hdr, segs)
}

/// Limits the traffic of a batch received from a port whose class has a [`LocalLimit`] (see
/// the module documentation), with that class's limiter `lim` at the iteration's `now`. A
/// packet leaving through a port that the class's tree shapes is left to that scheduler, as
/// is the switch's own answer to the sender (ARP and ICMP replies go back out of the port
/// they came in on); packets output would switch elsewhere (another pod, an unshaped port, a
/// flood) pass, wait in the limiter's queue (taken out of the batch), or are dropped (marked,
/// counted by output). Runs after the forwarding decision and before output, on the
/// receiving worker only (packets handed over by another worker were limited there).
#[inline]
pub fn limit_local<const N: usize>(
    batch: &mut Batch<N>,
    pool: &Pool,
    snap: &Snapshot,
    lim: &mut LocalLimiter,
    now: u64,
) {
    let mut pending = (0usize, 0u64);
    let (pkts, metas) = batch.split_mut();
    for (p, m) in pkts.iter().zip(metas.iter_mut()) {
        let Some(limit) = snap.local_limit(m.in_port) else { continue };
        let exit = match m.verdict {
            Verdict::Output(port) if port == m.in_port => continue,
            Verdict::Output(port) => Some(port),
            Verdict::Tunnel(_) => snap.l3().map(|t| t.uplink),
            Verdict::Flood => None,
            _ => continue,
        };
        if exit.is_some_and(|port| limit.shaped_at(port)) {
            continue;
        }
        let (bytes, segs) = wire_cost(pool.data(p), m);
        let len = p.len() as u64;
        match lim.offer(len, bytes, segs, pending, now) {
            Offer::Pass => {}
            Offer::Queue => {
                m.flags |= flags::LOCAL_QUEUED;
                pending = (pending.0 + 1, pending.1 + len);
            }
            Offer::Drop(r) => m.drop(r),
        }
    }
    if pending.0 > 0 {
        batch.take_where(
            |m| m.flags & flags::LOCAL_QUEUED != 0,
            |p, mut m| {
                m.flags &= !flags::LOCAL_QUEUED;
                let (bytes, segs) = wire_cost(pool.data(&p), &m);
                lim.push(p, m, bytes, segs);
            },
        );
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

    /// The scheduler's decision for a packet of `len` bytes to leaf `class` (see
    /// [`Scheduler::offer`]): send it at once (`Offer::Pass`, charged: nothing waits to send
    /// on its own rate and the class is under its guarantee), queue it with
    /// [`qos::Admitted::queue`], or drop it for the counted reason. The packet stays with the
    /// caller until then, so one sent at once never moves into the scheduler and back.
    #[inline]
    pub fn offer(
        &mut self,
        class: ClassId,
        len: u32,
        now: u64,
    ) -> Result<qos::Offer<'_, (Pkt, Meta)>, DropReason> {
        self.sched.offer(class, len, now).map_err(drop_reason)
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

    const B_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

    /// The rig with b's MAC learned too, and the uplink shaped by the tree of [`plan`] with
    /// `a` as pod a's leaf (b's leaf: 10M guaranteed, 100M ceiling).
    fn local_rig(a: ClassConfig) -> Rig<32> {
        let mut rig = rig();
        rig.send(B, &frame(2, UP_MAC, 60));
        rig.run(10);
        rig.discard_all();
        rig.set_qos(UP, Some(plan(100 * M, a, leaf(10 * M, 100 * M))));
        rig
    }

    /// Sends `n` frames of `len` bytes from a to `dst` and steps once (one batch, one time).
    fn burst_from_a(rig: &mut Rig<32>, dst: [u8; 6], n: usize, len: usize) {
        for _ in 0..n {
            rig.send(A, &frame(1, dst, len));
        }
        rig.step();
    }

    #[test]
    fn a_pods_ceiling_shapes_its_traffic_to_another_pod_exactly() {
        // 8 Mbit/s = 1000 bytes per ms, 3000 bytes of burst.
        let mut rig = local_rig(ClassConfig { burst_bytes: 3000, ..leaf(M, 8 * M) });
        let t0 = rig.now;
        // The buckets start full when the worker takes the plan: the burst passes at once, and
        // one packet more (a shaper's bucket goes one packet into debt, as the scheduler's
        // does); the rest waits.
        burst_from_a(&mut rig, B_MAC, 10, 1000);
        assert_eq!(rig.recv(B).len(), 4);
        let lim = rig.worker.local_limiter(A).map(|l| (l.class(), l.backlog(), l.tokens()));
        assert_eq!(lim, Some((ClassId(2), 6, -1000)));
        // The worker knows when to wake up for it: when the debt is paid, 1 ms on.
        assert_eq!(rig.worker.qos_wake(), Some(t0 + 1_000_000));
        // Then one frame per ms (each step moves the clock 1 µs), in order, none lost.
        for _ in 0..6 {
            rig.advance(999_000);
            rig.step();
            assert_eq!(rig.recv(B).len(), 1);
        }
        assert_eq!(rig.worker.local_limiter(A).map(LocalLimiter::backlog), Some(0));
        assert_eq!(rig.worker.qos_wake(), None);
        assert_eq!(rig.stats(A).dropped(), 0);
        // Traffic to the shaped uplink is its scheduler's, not the limiter's: all 10 reach
        // the class (sent within its burst, or queued there), none waits here.
        burst_from_a(&mut rig, UP_MAC, 10, 1000);
        assert_eq!(rig.worker.local_limiter(A).map(LocalLimiter::backlog), Some(0));
        let st = rig.worker.qos(UP).unwrap().scheduler().class_stats(ClassId(2)).unwrap();
        assert_eq!(st.sent_packets + st.queued_packets, 10);
        // A flood reaches other pods: limited like them (the bucket is in debt: it waits).
        burst_from_a(&mut rig, [0xff; 6], 1, 1000);
        assert!(rig.recv(B).is_empty());
        assert_eq!(rig.worker.local_limiter(A).map(LocalLimiter::backlog), Some(1));
        // Pod b's class has a 100 Mbit/s ceiling: its traffic to a goes at once.
        rig.send(B, &frame(2, [2, 0, 0, 0, 0, 1], 1000));
        rig.step();
        assert_eq!(rig.recv(A).len(), 1);
        assert_eq!(rig.stats(B).dropped(), 0);
    }

    #[test]
    fn the_local_queue_is_bounded_and_given_back_when_the_limit_goes() {
        let mut rig = local_rig(ClassConfig { burst_bytes: 3000, ..leaf(M, 8 * M) });
        let free0 = rig.worker.pool().free_frames();
        for _ in 0..100 {
            rig.send(A, &frame(1, B_MAC, 1000));
        }
        rig.run(10);
        // 4 pass, the queue takes its bound (64), the rest is dropped and counted.
        assert_eq!(rig.recv(B).len(), 4);
        assert_eq!(rig.worker.local_limiter(A).map(LocalLimiter::backlog), Some(64));
        assert_eq!(rig.stats(A).drop_count(DropReason::QosLocalQueueFull), 32);
        // Its class loses its tree: the limit goes, the queue is freed and counted, and
        // nothing is limited any more.
        rig.set_qos(UP, None);
        rig.step();
        assert!(rig.worker.local_limiter(A).is_none());
        assert_eq!(rig.stats(A).drop_count(DropReason::QosClassRemoved), 64);
        assert_eq!(rig.worker.pool().free_frames(), free0);
        burst_from_a(&mut rig, B_MAC, 10, 1000);
        assert_eq!(rig.recv(B).len(), 10);
    }

    #[test]
    fn local_shaping_holds_the_ceiling_over_a_second() {
        let mut rig = local_rig(leaf(M, 10 * M)); // 15 000 bytes of burst
        let mut got = 0u64;
        // 10 kB per 100 µs from a to b (800 Mbit/s offered) for one second of fake time.
        for _ in 0..10_000 {
            burst_from_a(&mut rig, B_MAC, 10, 1000);
            rig.advance(99_000);
            got += rig.recv(B).iter().map(|f| f.len() as u64).sum::<u64>();
        }
        // 10 Mbit/s for 1 s is 1 250 000 bytes, plus the burst and one frame at most.
        assert!((1_249_000..=1_266_000).contains(&got), "{got} bytes through 10 Mbit/s");
        let dropped = rig.stats(A).drop_count(DropReason::QosLocalQueueFull);
        let queued = rig.worker.local_limiter(A).map_or(0, LocalLimiter::backlog) as u64;
        assert_eq!(got / 1000 + dropped + queued, 100_000, "every frame is accounted for");
    }

    #[test]
    fn a_police_class_polices_local_traffic_with_its_pps_and_mpu() {
        let police = |c: ClassConfig| ClassConfig { mode: Mode::Police, ..c };
        // 8 Mbit/s = 1000 bytes per ms, 3000 bytes of burst: exactly the burst passes.
        let mut rig = local_rig(police(ClassConfig { burst_bytes: 3000, ..leaf(M, 8 * M) }));
        burst_from_a(&mut rig, B_MAC, 10, 1000);
        assert_eq!(rig.recv(B).len(), 3);
        assert_eq!(rig.stats(A).drop_count(DropReason::QosLocalPoliced), 7);
        assert_eq!(rig.worker.local_limiter(A).map(LocalLimiter::backlog), Some(0));
        rig.advance(999_000); // 1 ms on: 1000 bytes
        burst_from_a(&mut rig, B_MAC, 2, 1000);
        assert_eq!(rig.recv(B).len(), 1);
        assert_eq!(rig.stats(A).drop_count(DropReason::QosLocalPoliced), 8);
        // The pps limit: its burst passes.
        let pps = police(ClassConfig { pps: Some(1000), pps_burst: 5, ..leaf(M, 1000 * M) });
        let mut rig = local_rig(pps);
        burst_from_a(&mut rig, B_MAC, 10, 100);
        assert_eq!(rig.recv(B).len(), 5);
        assert_eq!(rig.stats(A).drop_count(DropReason::QosLocalPpsLimit), 5);
        // 1000 bytes charged for each 100-byte frame: 3 fit 3000 bytes of burst.
        let mpu = police(ClassConfig { burst_bytes: 3000, mpu: 1000, ..leaf(M, 8 * M) });
        let mut rig = local_rig(mpu);
        burst_from_a(&mut rig, B_MAC, 10, 100);
        assert_eq!(rig.recv(B).len(), 3);
        assert_eq!(rig.stats(A).drop_count(DropReason::QosLocalPoliced), 7);
    }

    #[test]
    fn live_changes_follow_the_class_keeping_tokens_and_queue() {
        let mut rig = local_rig(ClassConfig { burst_bytes: 3000, ..leaf(M, 8 * M) });
        burst_from_a(&mut rig, B_MAC, 10, 1000); // 4 pass, 6 wait, 1000 bytes of debt
        assert_eq!(rig.recv(B).len(), 4);
        // The ceiling doubles: the queue and the debt stay (1 byte repaid at the old rate,
        // in the microsecond before the change), then 2 bytes per µs repay it.
        let fast = ClassConfig { burst_bytes: 3000, ..leaf(M, 16 * M) };
        rig.set_qos(UP, Some(plan(100 * M, fast, leaf(10 * M, 100 * M))));
        rig.step();
        assert_eq!(rig.worker.local_limiter(A).map(|l| (l.backlog(), l.tokens())), Some((6, -999)));
        // One frame every 500 µs from the change on, twice the old pace.
        for _ in 0..6 {
            rig.advance(499_000);
            rig.step();
            assert_eq!(rig.recv(B).len(), 1);
        }
        // A pps limit added live starts full (its burst: 1 packet).
        let pps = ClassConfig { burst_bytes: 3000, pps: Some(10), pps_burst: 1, ..leaf(M, 16 * M) };
        rig.set_qos(UP, Some(plan(100 * M, pps, leaf(10 * M, 100 * M))));
        rig.advance(10_000_000);
        burst_from_a(&mut rig, B_MAC, 3, 100);
        // The first goes (the packet bucket then 0: out of debt), the second too (into debt).
        assert_eq!(rig.recv(B).len(), 2);
        rig.advance(100_000_000); // 100 ms: one packet at 10 pps
        rig.step();
        assert_eq!(rig.recv(B).len(), 1);
        assert_eq!(rig.stats(A).dropped(), 0);
    }

    #[test]
    fn a_gso_packet_is_charged_as_its_segments() {
        // TCP with 12 bytes of options (32-byte header) behind Ethernet and IPv4: 66 bytes of
        // headers, 4000 of payload cut at 1000 per segment.
        let mut d = vec![0u8; 66 + 4000];
        d[34 + 12] = 8 << 4;
        let mut m = Meta { l3_off: 14, l4_off: 34, ..Meta::default() };
        assert_eq!(wire_cost(&d, &m), (4066, 1));
        m.offload.gso_type = crate::packet::GsoType::TcpV4;
        m.offload.gso_size = 1000;
        assert_eq!(wire_cost(&d, &m), (4066 + 3 * 66, 4));
        // A truncated header counts as 20 bytes; nothing panics.
        assert_eq!(wire_cost(&d[..40], &m), (40, 1));
        m.offload.gso_type = crate::packet::GsoType::UdpL4;
        assert_eq!(wire_cost(&d, &m), (4066 + 4 * 42, 5));
        // Policing one larger than the whole burst: it passes from a full bucket only, into
        // debt.
        let limit = LocalLimit {
            class: ClassId(7),
            ceil_bps: 8 * M,
            burst_bytes: 3000,
            pps: Some((1000, 2)),
            mpu: 0,
            mode: Mode::Police,
            queue_limit: 64,
            shaped_by: vec![UP],
        };
        let mut lim = LocalLimiter::new(&limit, 0);
        assert_eq!(lim.admit(100, 1, 0), Ok(()));
        assert_eq!(lim.admit(4264, 4, 0), Err(DropReason::QosLocalPoliced));
        // Both buckets full again 3 ms later: it passes, into debt in both.
        let ms = 1_000_000;
        assert_eq!(lim.admit(4264, 4, 3 * ms), Ok(()));
        assert_eq!(lim.tokens(), 3000 - 4264);
        assert_eq!(lim.admit(100, 1, 3 * ms), Err(DropReason::QosLocalPoliced));
        // 1364 µs later the bytes are back to 100, the packets still short (2 in debt, 1.364
        // earned); 3 ms after the debt, both hold enough.
        assert_eq!(lim.admit(100, 1, 3 * ms + 1364 * ms / 1000), Err(DropReason::QosLocalPpsLimit));
        assert_eq!(lim.admit(100, 1, 6 * ms), Ok(()));
        // Shaping: out of debt, it passes whole; then the next waits.
        let mut lim = LocalLimiter::new(&LocalLimit { mode: Mode::Shape, ..limit }, 0);
        assert_eq!(lim.offer(4066, 4264, 4, (0, 0), 0), Offer::Pass);
        assert_eq!(lim.offer(100, 100, 1, (0, 0), 0), Offer::Queue);
        // The queue's bytes are bounded (a few GSO packets fill it).
        assert_eq!(
            lim.offer(LOCAL_QUEUE_BYTES, LOCAL_QUEUE_BYTES, 1, (1, 100), 0),
            Offer::Drop(DropReason::QosLocalQueueFull)
        );
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
