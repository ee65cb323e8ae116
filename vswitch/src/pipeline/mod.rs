//! The packet pipeline: stages over whole batches.
//!
//! ```text
//!  port rx ─► parse ─► vlan ingress ─► acl ─► l3 input ─► l2 (flow cache │ FDB) ─► l3 route ─► [local limit] ─► output ─► port tx
//!             offsets,   VLAN from      flow     ARP for us,  learn src, look up       LPM, TTL,     the pod's class's  egress checks,
//!             flow hash  port mode      rules    VXLAN decap, dst: output/flood/drop   ICMP, next    limit on what its  tag fix-up, flood
//!                                       (if any) mark ROUTED                           hop MAC       scheduler misses   copies, VXLAN encap
//! ```
//!
//! A capture armed on a port ([`capture`]) sees its received batches before parse and its
//! transmitted ones right before the port's tx; the ACL stage ([`nodes::acl`]) runs only when
//! the snapshot has flow rules, the local limiter ([`nodes::qos::limit_local`]) only on
//! batches from a port whose QoS class limits it; what the limiter queues comes back through
//! [`Pipeline::release_local`].
//!
//! Each stage runs one small per-packet body over the whole batch and records its decision in
//! the packet's [`Meta`](crate::packet::Meta) (`verdict`); a dropped packet is skipped by the
//! later stages and counted once, by reason, in output. The stages read the forwarding state
//! from an immutable [`Snapshot`] the worker loaded once for the iteration, and the FDB through
//! its lock-free reader side: no locks, no allocation, no syscalls per packet. The L3 stages
//! run only on a node that routes (`[node]` in the configuration); packets for the router's MAC
//! bypass L2, the others bypass L3.

pub mod capture;
pub mod nodes;
pub mod snapshot;
pub mod trace;

use crate::packet::{Batch, Pool};
use crate::tables::fdb::Fdb;
use crate::tables::neigh::{NeighEvent, Neighbors};
use crate::telemetry::WorkerCounters;
use nodes::l2::{L2Ctx, LearnEvent, L2};
use nodes::l3::{L3Ctx, L3};
use nodes::output::{Egress, Output, OutputCtx};
pub use snapshot::{PortEntry, Snapshot, VlanMode, VlanSet};

/// A worker's pipeline: the stages and their per-worker state.
pub struct Pipeline {
    pub acl: nodes::acl::Acl,
    pub l2: L2,
    pub l3: L3,
    output: Output,
}

/// What one run of the pipeline reads besides the batch.
pub struct Ctx<'a, const N: usize> {
    pub now: u64,
    pub pool: &'a mut Pool,
    pub snap: &'a Snapshot,
    pub fdb: &'a Fdb,
    pub ports: &'a mut [Option<Egress<N>>],
    pub counters: &'a WorkerCounters,
    /// This worker's id and its links to the other workers (see [`crate::pmd::handoff`]).
    pub me: u16,
    pub outboxes: &'a mut [Option<crate::pmd::handoff::Outbox>],
    /// Next hops' MACs (the L3 stages), loaded once per iteration like the snapshot.
    pub neigh: &'a Neighbors,
    /// The DDoS guard of the port the batch came in on, if it has one.
    pub guard: Option<&'a mut crate::qos::DdosGuard>,
    /// The limiter of the class of the port the batch came in on, if that port's traffic has
    /// a local limit ([`nodes::qos::limit_local`]).
    pub local: Option<&'a mut nodes::qos::LocalLimiter>,
}

impl<const N: usize> Ctx<'_, N> {
    /// The part of the context the output stage works with, reborrowed.
    fn output(&mut self) -> OutputCtx<'_, N> {
        OutputCtx {
            now: self.now,
            pool: self.pool,
            snap: self.snap,
            ports: self.ports,
            counters: self.counters,
            me: self.me,
            outboxes: self.outboxes,
            neigh: self.neigh,
        }
    }
}

impl Pipeline {
    /// A pipeline whose flow cache holds `cache_entries` flows, whose learn events go to
    /// `learn` and whose gleaned neighbours go to `neigh`.
    pub fn new(
        cache_entries: usize,
        learn: rtrb::Producer<LearnEvent>,
        neigh: rtrb::Producer<NeighEvent>,
    ) -> Pipeline {
        Pipeline {
            acl: nodes::acl::Acl::default(),
            l2: L2::new(cache_entries, learn),
            l3: L3::new(neigh),
            output: Output::new(),
        }
    }

    /// Runs every stage over `batch`; the batch is empty afterwards (every packet was queued
    /// for transmission, transmitted, or dropped and counted).
    pub fn process<const N: usize>(&mut self, batch: &mut Batch<N>, cx: &mut Ctx<'_, N>) {
        nodes::parse::run(batch, cx.pool);
        if let Some(g) = cx.guard.as_deref_mut() {
            nodes::qos::guard(batch, cx.pool, g, cx.now);
        }
        nodes::vlan::run(batch, cx.snap);
        if let Some(t) = cx.snap.acl() {
            self.acl.run(batch, cx.pool, t, cx.now);
        }
        let routes = cx.snap.l3().is_some();
        let l3cx = L3Ctx { snap: cx.snap, neigh: cx.neigh, now: cx.now, counters: cx.counters };
        if routes {
            self.l3.input(batch, cx.pool, &l3cx);
        }
        let l2cx = L2Ctx {
            fdb: cx.fdb,
            snapshot_generation: cx.snap.generation,
            now: cx.now,
            counters: cx.counters,
        };
        self.l2.run(batch, cx.pool, &l2cx);
        if routes {
            self.l3.route(batch, cx.pool, &l3cx);
        }
        if let Some(lim) = cx.local.as_deref_mut() {
            nodes::qos::limit_local(batch, cx.pool, cx.snap, lim, cx.now);
        }
        self.dispatch(batch, cx);
    }

    /// The L3 stage's own work between batches: held packets whose next hop resolved, ARP
    /// requests to repeat. Cheap to call when there is none.
    pub fn service<const N: usize>(&mut self, cx: &mut Ctx<'_, N>) {
        if self.l3.busy() {
            let l3cx = L3Ctx { snap: cx.snap, neigh: cx.neigh, now: cx.now, counters: cx.counters };
            self.l3.service(cx.pool, &l3cx);
            self.send_generated(cx);
        }
    }

    /// Sends what the L3 stage generated or released.
    fn send_generated<const N: usize>(&mut self, cx: &mut Ctx<'_, N>) {
        let mut ocx = cx.output();
        let out = &mut self.output;
        self.l3.take_out(|p, m| out.send(&mut ocx, p, m));
        out.flush(&mut ocx);
    }

    /// Sends what the local limiter `lim` releases at the iteration's time (at most `max`
    /// packets) through output, as they were decided; returns how many.
    pub fn release_local<const N: usize>(
        &mut self,
        lim: &mut nodes::qos::LocalLimiter,
        max: usize,
        cx: &mut Ctx<'_, N>,
    ) -> usize {
        let mut ocx = cx.output();
        let out = &mut self.output;
        let n = lim.release(ocx.now, max, |p, m| out.send(&mut ocx, p, m));
        out.flush(&mut ocx);
        n
    }

    /// Frees every packet the pipeline holds (the worker is stopping).
    pub fn clear(&mut self, pool: &mut Pool) {
        self.l3.clear(pool);
    }

    /// Runs only the output stage: for packets whose verdict is already decided (handed over
    /// by another worker).
    pub fn dispatch<const N: usize>(&mut self, batch: &mut Batch<N>, cx: &mut Ctx<'_, N>) {
        let mut ocx = cx.output();
        self.output.run(batch, &mut ocx);
        // ARP requests the L3 stage made for this batch's held packets.
        let out = &mut self.output;
        self.l3.take_out(|p, m| out.send(&mut ocx, p, m));
        out.flush(&mut ocx);
    }
}
