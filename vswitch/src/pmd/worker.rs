//! The poll-mode worker: one thread, its own buffer pool, its ports, its pipeline.
//!
//! One iteration ([`Worker::poll_once`]): load the current snapshot (one atomic load), then for
//! every port: receive a batch, run it through the pipeline to completion, flush the outputs.
//! Every `housekeeping_interval` iterations the ports get their housekeeping call (refill
//! rings, reap completions). Time comes in from the caller, read once per iteration, so tests
//! drive the worker with a fake clock.
//!
//! The worker owns the egress schedulers of its shaped ports ([`crate::pipeline::nodes::qos`]):
//! when the snapshot's generation changes it applies the new QoS plans (queues kept), and
//! after the receive loop of every iteration it releases what the schedulers allow at that
//! iteration's time. [`Worker::qos_wake`] tells the idle loop when a throttled class can send
//! again, so the worker does not sleep past it. It also owns the local limiters of the ports
//! it receives from whose traffic is a QoS class ([`crate::pipeline::nodes::qos::limit_local`]):
//! one per class, kept across generation changes with their tokens and queues, and releases
//! what they queued every iteration, right after the receive loop.
//!
//! Ports whose receive is a system call even when nothing waits (TAP) are read only when the
//! kernel said they became readable ([`crate::pmd::ready`]), so idle pods cost a pass nothing.
//!
//! A capture armed on a port ([`Worker::set_capture`], see [`crate::pipeline::capture`])
//! records the batches the port receives, right after its rx, and (in output) those it sends.
//! Once a second, at housekeeping, the worker publishes up to [`FLOW_REPORT_MAX`] entries of
//! its L2 flow cache for `vswitchctl show flows` (a `try_lock`: skipped while the control
//! plane reads them).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::packet::{Batch, Pool};
use crate::pipeline::capture::Tap;
use crate::pipeline::nodes::l2::{L2Flow, LearnEvent};
use crate::pipeline::nodes::output::Egress;
use crate::pipeline::nodes::qos::{EgressQos, LocalLimiter, QosPortReport};
use crate::pipeline::{Ctx, Pipeline, Snapshot};
use crate::pmd::handoff::{self, Inbox, Outbox};
use crate::pmd::ready::Readiness;
use crate::port::Port;
use crate::tables::fdb::Fdb;
use crate::tables::neigh::{NeighEvent, Neighbors};
use crate::telemetry::{DropReason, WorkerCounters};
use crate::types::{PortId, MAX_PORTS};

/// The pipeline's context over the worker's state: a macro rather than a method, so that the
/// caller can borrow `self.pipeline` and `self.batch` beside it.
macro_rules! ctx {
    ($w:ident, $snap:expr, $neigh:expr, $now:expr, $guard:expr, $local:expr) => {
        Ctx {
            now: $now,
            pool: &mut $w.pool,
            snap: $snap,
            fdb: &$w.fdb,
            ports: &mut $w.ports,
            counters: &$w.counters,
            me: $w.cfg.id,
            outboxes: &mut $w.outboxes,
            neigh: $neigh,
            guard: $guard,
            local: $local,
        }
    };
}

/// A worker's tunables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerConfig {
    /// The worker's index (its place in the snapshot's port owners).
    pub id: u16,
    /// Flow cache entries (a power of two).
    pub flow_cache_entries: usize,
    /// Iterations between housekeeping calls.
    pub housekeeping_interval: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig { id: 0, flow_cache_entries: 8192, housekeeping_interval: 1024 }
    }
}

/// Why a port could not be attached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    #[error("port id {0} is out of range (0..{MAX_PORTS})")]
    PortId(PortId),
    #[error("port id {0} is already attached to this worker")]
    PortBusy(PortId),
}

/// A poll-mode worker with batches of `N` packets.
pub struct Worker<const N: usize> {
    pool: Pool,
    ports: Vec<Option<Egress<N>>>,
    /// Ids of the attached ports, in polling order.
    rx_order: Vec<PortId>,
    /// Which ports to read on a pass.
    ready: Readiness,
    pipeline: Pipeline,
    snapshot: Arc<ArcSwap<Snapshot>>,
    neigh: Arc<ArcSwap<Neighbors>>,
    fdb: Arc<Fdb>,
    counters: Arc<WorkerCounters>,
    batch: Box<Batch<N>>,
    cfg: WorkerConfig,
    /// Links to the other workers: out, indexed by worker id; in, one per linked worker.
    outboxes: Vec<Option<Outbox>>,
    inboxes: Vec<Inbox>,
    /// Set while the worker sleeps in poll(2), so others wake it with their hand-offs.
    sleeping: Arc<AtomicBool>,
    /// When the ports' kernel drop statistics are next read.
    next_drop_stats: u64,
    iterations: u64,
    last_now: u64,
    last_busy: bool,
    /// The snapshot generation whose QoS plans the schedulers run (0: resync).
    qos_gen: u64,
    /// Ports with a scheduler.
    qos_ports: Vec<PortId>,
    /// A scheduler released a full batch in the last iteration (it may have more now).
    qos_more: bool,
    /// The schedulers' classes and counters, for the control plane (refreshed every 100 ms).
    qos_report: Arc<Mutex<Vec<QosPortReport>>>,
    next_qos_report: u64,
    /// The last published QoS report was not empty.
    qos_reported: bool,
    /// The DDoS guard of each guarded port (by id), with the limits it was built with.
    guards: Vec<Option<(crate::qos::GuardConfig, Box<crate::qos::DdosGuard>)>>,
    /// The local limiters, one per class with a port here, and each port's (by id) index
    /// into them ([`NO_LIMITER`]: none).
    limiters: Vec<LocalLimiter>,
    limiter_of: Vec<u32>,
    /// A local limiter released a full batch in the last iteration (it may have more now).
    local_more: bool,
    /// The L2 flow cache entries, for the control plane (refreshed every second).
    flow_report: Arc<Mutex<Vec<L2Flow>>>,
    next_flow_report: u64,
    /// Ports with a capture armed (usually none).
    taps: usize,
}

/// A port without a local limiter.
const NO_LIMITER: u32 = u32::MAX;
/// How often a worker publishes its QoS counters.
const QOS_REPORT_NS: u64 = 100_000_000;
/// How often a worker publishes its flow cache entries.
const FLOW_REPORT_NS: u64 = 1_000_000_000;
/// The most flow cache entries a worker publishes.
pub const FLOW_REPORT_MAX: usize = 4096;

impl<const N: usize> Worker<N> {
    pub fn new(
        cfg: WorkerConfig,
        pool: Pool,
        snapshot: Arc<ArcSwap<Snapshot>>,
        fdb: Arc<Fdb>,
        learn: rtrb::Producer<LearnEvent>,
    ) -> Self {
        Worker {
            pool,
            ports: Vec::new(),
            rx_order: Vec::new(),
            ready: Readiness::default(),
            // No neighbour learning until `set_neighbors` connects the learner: a node without
            // `[node]` never routes.
            pipeline: Pipeline::new(cfg.flow_cache_entries, learn, rtrb::RingBuffer::new(1).0),
            snapshot,
            neigh: Arc::new(ArcSwap::from_pointee(Neighbors::default())),
            fdb,
            counters: Arc::new(WorkerCounters::default()),
            batch: Box::new(Batch::new()),
            cfg,
            outboxes: Vec::new(),
            inboxes: Vec::new(),
            sleeping: Arc::new(AtomicBool::new(false)),
            next_drop_stats: 0,
            iterations: 0,
            last_now: 0,
            last_busy: false,
            qos_gen: 0,
            qos_ports: Vec::new(),
            qos_more: false,
            qos_report: Arc::new(Mutex::new(Vec::new())),
            next_qos_report: 0,
            qos_reported: false,
            guards: Vec::new(),
            limiters: Vec::new(),
            limiter_of: Vec::new(),
            local_more: false,
            flow_report: Arc::new(Mutex::new(Vec::new())),
            next_flow_report: 0,
            taps: 0,
        }
    }

    /// The L2 flow cache entries this worker publishes (every second of its time).
    pub fn flow_report(&self) -> &Arc<Mutex<Vec<L2Flow>>> {
        &self.flow_report
    }

    /// Arms a capture on the tap's port (replacing one armed there before); hands the tap
    /// back if this worker does not have the port, which ends the capture.
    pub fn set_capture(&mut self, tap: Box<Tap>) -> Result<(), Box<Tap>> {
        match self.ports.get_mut(tap.port() as usize) {
            Some(Some(e)) => {
                if e.tap.replace(tap).is_none() {
                    self.taps += 1;
                }
                Ok(())
            }
            _ => Err(tap),
        }
    }

    /// Removes the taps whose control end went away (their capture is over).
    fn reap_taps(&mut self) {
        for e in self.ports.iter_mut().flatten() {
            if e.tap.as_ref().is_some_and(|t| t.abandoned()) {
                e.tap = None;
                self.taps -= 1;
            }
        }
    }

    /// Publishes the flow cache entries (skipped if the control plane is reading them).
    fn publish_flows(&mut self, now: u64) {
        if now < self.next_flow_report {
            return;
        }
        self.next_flow_report = now + FLOW_REPORT_NS;
        let snap_gen = self.snapshot.load().generation;
        if let Ok(mut r) = self.flow_report.try_lock() {
            self.pipeline.l2.report_flows(
                snap_gen,
                self.fdb.generation(),
                now,
                FLOW_REPORT_MAX,
                &mut r,
            );
        }
    }

    /// The QoS counters this worker publishes (every 100 ms of its time).
    pub fn qos_report(&self) -> &Arc<Mutex<Vec<QosPortReport>>> {
        &self.qos_report
    }

    /// Port `id`'s scheduler, if it has one.
    pub fn qos(&self, id: PortId) -> Option<&EgressQos> {
        self.ports.get(id as usize)?.as_ref()?.qos.as_deref()
    }

    /// When the idle loop must wake up at the latest for a throttled QoS class: `Some(t)`
    /// (ns, monotonic) while a scheduler holds packets none of which may leave before `t`.
    /// Local limiters holding packets count too.
    pub fn qos_wake(&self) -> Option<u64> {
        let local = self.limiters.iter().filter_map(LocalLimiter::next_wake_ns);
        self.qos_ports.iter().filter_map(|&id| self.qos(id)?.next_wake_ns()).chain(local).min()
    }

    /// Whether a scheduler or a local limiter may release more packets right now (the worker
    /// should not sleep).
    pub fn qos_busy(&self) -> bool {
        self.qos_more || self.local_more
    }

    /// The local limiter of port `id`'s class, if the port's traffic has a local limit.
    pub fn local_limiter(&self, id: PortId) -> Option<&LocalLimiter> {
        let i = *self.limiter_of.get(id as usize)?;
        self.limiters.get(i as usize)
    }

    /// Gives every port this worker receives from whose traffic has a local limit the
    /// limiter of its class: kept (tokens, queue and all, limits updated) for a class it had,
    /// new and full for a class it did not. A limiter no port needs any more frees its queue
    /// (`qos_class_removed`). Allocates: only on a snapshot change.
    fn sync_local(&mut self, snap: &Snapshot, now: u64) {
        let mut old = std::mem::take(&mut self.limiters);
        self.limiter_of.clear();
        self.limiter_of.resize(self.ports.len(), NO_LIMITER);
        for &id in &self.rx_order {
            let Some(limit) = snap.local_limit(id) else { continue };
            let i = match self.limiters.iter().position(|l| l.class() == limit.class) {
                Some(i) => i,
                None => {
                    let lim = match old.iter().position(|l| l.class() == limit.class) {
                        Some(j) => {
                            let mut lim = old.swap_remove(j);
                            lim.update(limit, now);
                            lim
                        }
                        None => LocalLimiter::new(limit, now),
                    };
                    self.limiters.push(lim);
                    self.limiters.len() - 1
                }
            };
            if let Some(slot) = self.limiter_of.get_mut(id as usize) {
                *slot = i as u32;
            }
        }
        for mut lim in old {
            lim.clear(&mut self.pool, &self.counters);
        }
    }

    /// Sends what the local limiters release at `now` (a batch each at most).
    #[inline]
    fn service_local(&mut self, snap: &Snapshot, neigh: &Neighbors, now: u64) {
        self.local_more = false;
        if self.limiters.iter().all(|l| l.backlog() == 0) {
            return;
        }
        let mut cx = ctx!(self, snap, neigh, now, None, None);
        for lim in self.limiters.iter_mut().filter(|l| l.backlog() > 0) {
            let n = self.pipeline.release_local(lim, N, &mut cx);
            self.local_more |= n == N;
        }
    }

    /// Applies the snapshot's QoS plans to the schedulers of the ports this worker owns:
    /// creates, updates (queues kept) or removes them. A plan a scheduler refuses is counted
    /// (`qos_apply_errors`) and the previous classes keep running. The local limiters follow.
    fn sync_qos(&mut self, snap: &Snapshot, now: u64) {
        self.qos_gen = snap.generation;
        self.qos_ports.clear();
        self.sync_local(snap, now);
        // DDoS guards: kept (with their per-source state) while their limits stay the same.
        self.guards.resize_with(self.ports.len(), || None);
        for (id, g) in self.guards.iter_mut().enumerate() {
            let want = snap.guard(id as PortId).filter(|_| self.rx_order.contains(&(id as PortId)));
            match (want, g.as_ref()) {
                (None, _) => *g = None,
                (Some(w), Some((have, _))) if w == have => {}
                (Some(w), _) => {
                    *g = Some((w.clone(), Box::new(crate::qos::DdosGuard::new(w, now))));
                }
            }
        }
        let (pool, counters) = (&mut self.pool, &self.counters);
        for &id in &self.rx_order {
            let Some(Some(e)) = self.ports.get_mut(id as usize) else { continue };
            match (snap.qos(id), e.qos.as_deref_mut()) {
                (None, None) => continue,
                (None, Some(q)) => {
                    let n = q.clear(pool);
                    counters.port(id).drops[DropReason::QosClassRemoved.index()].add(n as u64);
                    e.qos = None;
                    continue;
                }
                (Some(plan), None) => match EgressQos::new(plan.clone(), now) {
                    Ok(q) => e.qos = Some(Box::new(q)),
                    Err(err) => {
                        counters.qos_apply_errors.add(1);
                        tracing::error!(port = id, "QoS plan refused by the scheduler: {err}");
                        continue;
                    }
                },
                (Some(plan), Some(q)) => {
                    if !Arc::ptr_eq(plan, q.plan()) {
                        let removed = &counters.port(id).drops[DropReason::QosClassRemoved.index()];
                        let r = q.update(plan.clone(), now, |p| {
                            removed.add(1);
                            pool.free(p);
                        });
                        if let Err(err) = r {
                            counters.qos_apply_errors.add(1);
                            tracing::error!(
                                port = id,
                                "QoS change refused by the scheduler, previous classes kept: {err}"
                            );
                        }
                    }
                }
            }
            self.qos_ports.push(id);
        }
    }

    /// Releases what every scheduler allows at `now` (a batch per port) and transmits it.
    #[inline]
    fn service_qos(&mut self, now: u64) {
        self.qos_more = false;
        for &id in &self.qos_ports {
            let Some(Some(e)) = self.ports.get_mut(id as usize) else { continue };
            if e.qos.as_ref().is_some_and(|q| q.backlog() > 0) {
                let n = e.flush(id, &mut self.pool, &self.counters, now);
                self.qos_more |= n == N;
            }
        }
    }

    /// Publishes the schedulers' counters (skipped if the control plane is reading them).
    fn publish_qos(&mut self, now: u64) {
        if now < self.next_qos_report {
            return;
        }
        self.next_qos_report = now + QOS_REPORT_NS;
        let reports: Vec<QosPortReport> =
            self.qos_ports.iter().filter_map(|&id| Some(self.qos(id)?.report(id))).collect();
        if let Ok(mut r) = self.qos_report.try_lock() {
            // Once the last shaped port is gone, one empty report clears what was shown.
            self.qos_reported = !reports.is_empty();
            *r = reports;
        }
    }

    /// Connects the L3 stage to the neighbour table the workers read and to the learner that
    /// writes it (`events`).
    pub fn set_neighbors(
        &mut self,
        table: Arc<ArcSwap<Neighbors>>,
        events: rtrb::Producer<NeighEvent>,
    ) {
        self.neigh = table;
        self.pipeline.l3 = crate::pipeline::nodes::l3::L3::new(events);
    }

    /// Whether the L3 stage holds packets waiting for ARP (the worker should not sleep long).
    pub fn l3_waiting(&self) -> bool {
        self.pipeline.l3.busy()
    }

    /// Attaches a port under `id` (the id the snapshot knows it by).
    pub fn add_port(&mut self, id: PortId, port: Box<dyn Port<N>>) -> Result<(), WorkerError> {
        let i = id as usize;
        if i >= MAX_PORTS {
            return Err(WorkerError::PortId(id));
        }
        if self.ports.len() <= i {
            self.ports.resize_with(i + 1, || None);
        }
        if self.ports[i].is_some() {
            return Err(WorkerError::PortBusy(id));
        }
        self.counters.reset_port(id);
        let mut e = Egress::new(port);
        // Fill kernel rings now: a port whose rings start empty would never receive.
        e.port.housekeep(&mut self.pool);
        self.ready.add(id, &*e.port);
        self.ports[i] = Some(e);
        self.rx_order.push(id);
        // Give it its scheduler, if the snapshot has a plan for it.
        self.qos_gen = 0;
        Ok(())
    }

    /// Detaches port `id`, giving back every buffer it held, and returns it.
    pub fn remove_port(&mut self, id: PortId) -> Option<Box<dyn Port<N>>> {
        let mut e = self.ports.get_mut(id as usize)?.take()?;
        if e.tap.take().is_some() {
            self.taps -= 1;
        }
        self.rx_order.retain(|&p| p != id);
        self.ready.remove(id, &*e.port);
        self.qos_ports.retain(|&p| p != id);
        if let Some(g) = self.guards.get_mut(id as usize) {
            *g = None;
        }
        if let Some(i) = self.limiter_of.get_mut(id as usize) {
            *i = NO_LIMITER;
        }
        if let Some(q) = e.qos.as_deref_mut() {
            let n = q.clear(&mut self.pool);
            self.counters.port(id).drops[DropReason::QosClassRemoved.index()].add(n as u64);
        }
        e.queue.free_all(&mut self.pool);
        e.port.drain(&mut self.pool);
        Some(e.port)
    }

    /// Ids of the attached ports.
    pub fn port_ids(&self) -> &[PortId] {
        &self.rx_order
    }

    /// The worker's counters (shared with the control plane).
    pub fn counters(&self) -> &Arc<WorkerCounters> {
        &self.counters
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn pool_mut(&mut self) -> &mut Pool {
        &mut self.pool
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Links two workers both ways, so each can hand packets to the other's ports.
    pub fn link(a: &mut Worker<N>, b: &mut Worker<N>) {
        let (ai, bi) = (a.cfg.id as usize, b.cfg.id as usize);
        assert_ne!(ai, bi, "a worker is not linked to itself");
        let ab = handoff::link(&a.pool, b.sleeping.clone()).expect("socketpair for wake-ups");
        let ba = handoff::link(&b.pool, a.sleeping.clone()).expect("socketpair for wake-ups");
        for (w, to, out) in [(&mut *a, bi, ab.0), (&mut *b, ai, ba.0)] {
            if w.outboxes.len() <= to {
                w.outboxes.resize_with(to + 1, || None);
            }
            w.outboxes[to] = Some(out);
        }
        b.inboxes.push(ab.1);
        a.inboxes.push(ba.1);
    }

    /// One iteration at time `now` (ns, monotonic). Returns the packets received.
    pub fn poll_once(&mut self, now: u64) -> usize {
        let snap = self.snapshot.load();
        let neigh = self.neigh.load();
        if snap.generation != self.qos_gen {
            self.sync_qos(&snap, now);
        }
        let mut moved = 0;
        // Packets other workers handed over for our ports, and buffers they gave back.
        for out in self.outboxes.iter_mut().flatten() {
            out.reclaim(&mut self.pool);
        }
        for i in 0..self.inboxes.len() {
            let n = self.inboxes[i].receive(&mut self.pool, &mut self.batch, &self.counters);
            if n == 0 {
                continue;
            }
            moved += n;
            self.run_batch(&snap, &neigh, now, None);
        }
        self.ready.refresh();
        for i in 0..self.rx_order.len() {
            let id = self.rx_order[i];
            if !self.ready.may_rx(id) {
                continue;
            }
            let Some(Some(e)) = self.ports.get_mut(id as usize) else { continue };
            let n = e.port.rx(id, &mut self.pool, &mut self.batch);
            if n == 0 {
                // Nothing, with room in the batch and the pool: the port's queues are empty.
                let drained = self.batch.room() > 0 && self.pool.free_frames() > 0;
                self.ready.found_nothing(id, drained);
                continue;
            }
            if let Some(t) = e.tap.as_deref_mut() {
                if t.direction().rx() {
                    t.record(now, self.batch.pkts().iter().map(|p| self.pool.data(p)));
                }
            }
            let c = self.counters.port(id);
            c.rx_packets.add(n as u64);
            c.rx_bytes.add(self.batch.pkts().iter().map(|p| p.len() as u64).sum());
            moved += n;
            self.run_batch(&snap, &neigh, now, Some(id));
        }
        if self.pipeline.l3.busy() {
            let mut cx = ctx!(self, &snap, &neigh, now, None, None);
            self.pipeline.service(&mut cx);
        }
        if !self.limiters.is_empty() {
            self.service_local(&snap, &neigh, now);
        }
        if !self.qos_ports.is_empty() {
            self.service_qos(now);
        }
        for out in self.outboxes.iter_mut().flatten() {
            out.wake_if_sleeping();
        }
        self.account(now, moved);
        if self.iterations.is_multiple_of(self.cfg.housekeeping_interval) {
            self.housekeep(now);
        }
        moved
    }

    /// Runs the batch received on port `rx` through the pipeline, or only through output when
    /// its packets were decided already (`None`: handed over by another worker).
    #[inline]
    fn run_batch(&mut self, snap: &Snapshot, neigh: &Neighbors, now: u64, rx: Option<PortId>) {
        let guard = rx
            .and_then(|id| self.guards.get_mut(id as usize))
            .and_then(|g| g.as_mut())
            .map(|(_, g)| &mut **g);
        let local = match rx.and_then(|id| self.limiter_of.get(id as usize)) {
            Some(&i) if i != NO_LIMITER => self.limiters.get_mut(i as usize),
            _ => None,
        };
        let mut cx = ctx!(self, snap, neigh, now, guard, local);
        if rx.is_none() {
            self.pipeline.dispatch(&mut self.batch, &mut cx);
        } else {
            self.pipeline.process(&mut self.batch, &mut cx);
        }
    }

    fn account(&mut self, now: u64, moved: usize) {
        let c = &self.counters;
        let elapsed = now.saturating_sub(self.last_now);
        if self.iterations > 0 {
            if self.last_busy {
                c.busy_ns.add(elapsed);
            } else {
                c.idle_ns.add(elapsed);
            }
        }
        self.last_now = now;
        self.last_busy = moved > 0;
        self.iterations += 1;
        c.iterations.add(1);
        if moved > 0 {
            c.busy_iterations.add(1);
            c.packets.add(moved as u64);
        }
    }

    /// The descriptors to sleep on while idle: every port's readable-when-packets fds (one
    /// epoll descriptor for all the ports read on readiness), and the wake-ups of other
    /// workers' hand-offs.
    pub fn poll_fds(&self, out: &mut Vec<std::os::fd::RawFd>) {
        for (id, e) in self.ports.iter().enumerate() {
            let Some(e) = e else { continue };
            if !self.ready.gated(id as PortId) {
                e.port.poll_fds(out);
            }
        }
        out.extend(self.ready.sleep_fd());
        out.extend(self.inboxes.iter().map(Inbox::wake_fd));
    }

    /// Announces that the worker is about to sleep; false (and still awake) if a hand-off is
    /// already waiting. Call [`Worker::woke`] after the sleep.
    pub fn prepare_sleep(&self) -> bool {
        self.sleeping.store(true, Ordering::Relaxed);
        if self.inboxes.iter().all(Inbox::ready_to_sleep) {
            return true;
        }
        self.sleeping.store(false, Ordering::Relaxed);
        false
    }

    /// Back from sleep: clear the flag and the wake-ups.
    pub fn woke(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
        for i in &self.inboxes {
            i.clear_wake();
        }
    }

    /// Housekeeping for every port at time `now`. The ports' kernel drop statistics cost a
    /// syscall each, so they are read at most once a second.
    pub fn housekeep(&mut self, now: u64) {
        let read_drops = now >= self.next_drop_stats;
        if read_drops {
            self.next_drop_stats = now + 1_000_000_000;
        }
        for (id, e) in self.ports.iter_mut().enumerate() {
            let Some(e) = e else { continue };
            e.port.housekeep(&mut self.pool);
            if !read_drops {
                continue;
            }
            let d = e.port.rx_drops();
            let c = self.counters.port(id as PortId);
            c.drops[DropReason::RxRingFull.index()].set(d.ring_full);
            c.drops[DropReason::RxKernelDropped.index()].set(d.kernel);
            c.drops[DropReason::RxPortDropped.index()].set(d.port);
        }
        self.counters.pool_free.set(self.pool.free_frames() as u64);
        if !self.qos_ports.is_empty() || self.qos_reported {
            self.publish_qos(now);
        }
        if self.taps > 0 {
            self.reap_taps();
        }
        self.publish_flows(now);
    }
}

impl<const N: usize> Drop for Worker<N> {
    fn drop(&mut self) {
        self.pipeline.clear(&mut self.pool);
        for lim in &mut self.limiters {
            lim.clear(&mut self.pool, &self.counters);
        }
        for id in self.rx_order.clone() {
            self.remove_port(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::packet::Verdict;
    use crate::pipeline::VlanMode;
    use crate::testkit::Rig;
    use crate::types::MacAddr;

    fn frame(dst: u8, src: u8) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, dst]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, src]);
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        f
    }

    #[test]
    fn housekeeping_publishes_the_cached_flows_with_hits() {
        let mut rig: Rig<32> =
            Rig::new(&[("a", VlanMode::Access(10)), ("b", VlanMode::Access(10))]);
        // Learn both MACs, then a -> b three times (cached after the first).
        rig.send(0, &frame(2, 1));
        rig.run(5);
        rig.send(1, &frame(1, 2));
        rig.run(5);
        for _ in 0..3 {
            rig.send(0, &frame(2, 1));
            rig.run(5);
        }
        rig.discard_all();
        rig.worker.housekeep(rig.now);
        let flows = rig.worker.flow_report().lock().unwrap().clone();
        let ab = flows
            .iter()
            .find(|f| f.in_port == 0 && f.dst == MacAddr::from_u64(0x0200_0000_0002))
            .unwrap_or_else(|| panic!("a -> b cached: {flows:?}"));
        assert_eq!(
            (ab.vlan, ab.verdict, ab.src),
            (10, Verdict::Output(1), MacAddr::from_u64(0x0200_0000_0001))
        );
        assert_eq!(ab.hits, 2, "the first packet filled the entry, the next two hit it");
        // At most once a second.
        rig.worker.flow_report().lock().unwrap().clear();
        rig.worker.housekeep(rig.now + 1);
        assert!(rig.worker.flow_report().lock().unwrap().is_empty());
    }
}
