//! The packet pipeline: stages over whole batches.
//!
//! ```text
//!  port rx ─► parse ─► vlan ingress ─► l2 (flow cache │ FDB) ─► output ─► port tx
//!             offsets,   VLAN from      learn src, look up      egress checks,
//!             flow hash  port mode      dst: output/flood/drop  tag fix-up, flood copies
//! ```
//!
//! Each stage runs one small per-packet body over the whole batch and records its decision in
//! the packet's [`Meta`](crate::packet::Meta) (`verdict`); a dropped packet is skipped by the
//! later stages and counted once, by reason, in output. The stages read the forwarding state
//! from an immutable [`Snapshot`] the worker loaded once for the iteration, and the FDB through
//! its lock-free reader side: no locks, no allocation, no syscalls per packet.

pub mod nodes;
pub mod snapshot;
pub mod trace;

use crate::packet::{Batch, Pool};
use crate::tables::fdb::Fdb;
use crate::telemetry::WorkerCounters;
use nodes::l2::{L2Ctx, LearnEvent, L2};
use nodes::output::{Egress, Output, OutputCtx};
pub use snapshot::{PortEntry, Snapshot, VlanMode, VlanSet};

/// A worker's pipeline: the stages and their per-worker state.
pub struct Pipeline {
    pub l2: L2,
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
}

impl Pipeline {
    /// A pipeline whose flow cache holds `cache_entries` flows and whose learn events go to
    /// `learn`.
    pub fn new(cache_entries: usize, learn: rtrb::Producer<LearnEvent>) -> Pipeline {
        Pipeline { l2: L2::new(cache_entries, learn), output: Output::new() }
    }

    /// Runs every stage over `batch`; the batch is empty afterwards (every packet was queued
    /// for transmission, transmitted, or dropped and counted).
    pub fn process<const N: usize>(&mut self, batch: &mut Batch<N>, cx: &mut Ctx<'_, N>) {
        nodes::parse::run(batch, cx.pool);
        nodes::vlan::run(batch, cx.snap);
        let l2cx = L2Ctx {
            fdb: cx.fdb,
            snapshot_generation: cx.snap.generation,
            now: cx.now,
            counters: cx.counters,
        };
        self.l2.run(batch, cx.pool, &l2cx);
        self.dispatch(batch, cx);
    }

    /// Runs only the output stage: for packets whose verdict is already decided (handed over
    /// by another worker).
    pub fn dispatch<const N: usize>(&mut self, batch: &mut Batch<N>, cx: &mut Ctx<'_, N>) {
        let mut ocx = OutputCtx {
            pool: cx.pool,
            snap: cx.snap,
            ports: cx.ports,
            counters: cx.counters,
            me: cx.me,
            outboxes: cx.outboxes,
        };
        self.output.run(batch, &mut ocx);
    }
}
