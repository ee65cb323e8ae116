//! L2 forwarding: source learning and destination lookup, behind a per-worker flow cache.
//!
//! For every packet still in play:
//! 1. Look up `(in_port, vlan, dst, src)` in the exact-match flow cache. A hit under the current
//!    generation gives the verdict at once.
//! 2. On a miss, the slow path: the source MAC must be unicast (`src_mac_invalid`); if the FDB
//!    does not know it on this port (new or moved) a learn event goes to the learner over an
//!    SPSC ring (the FDB has one writer; a full ring is counted, the next packet retries); a
//!    static entry on another port is spoofing (`static_mac_moved`). The destination decides:
//!    group address or unknown unicast floods the VLAN, a known MAC outputs to its port, and a
//!    MAC known on the ingress port is dropped (`same_port`).
//! 3. The verdict is cached once the source is known, so a flow's packets after its first take
//!    the fast path.
//!
//! The cache generation mixes the snapshot generation, the FDB generation and the current
//! second: any table change invalidates every entry, and each flow takes the slow path once a
//! second, which is what refreshes its source MAC's age in the FDB while it keeps sending.

use rtrb::Producer;

use crate::packet::{flags, Batch, Pool, Verdict};
use crate::tables::fdb::{Fdb, SourceCheck};
use crate::tables::flow_cache::FlowCache;
use crate::telemetry::{DropReason, WorkerCounters};
use crate::types::{MacAddr, PortId, VlanId};

/// A MAC to learn, sent from a worker to the FDB's single writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnEvent {
    pub vlan: VlanId,
    pub mac: MacAddr,
    pub port: PortId,
}

/// The flow cache key of the L2 stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Key {
    pub src: u64,
    /// Destination MAC in the low 48 bits, VLAN in bits 48..60.
    pub dst_vlan: u64,
    pub in_port: PortId,
}

impl L2Key {
    #[inline]
    fn hash(&self) -> u32 {
        // Multiply-xorshift over the two words: cheap, and the high bits it keeps mix every
        // input bit. Not for adversaries; the cache only loses hit rate on collisions.
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let h = (self.src ^ u64::from(self.in_port) << 48).wrapping_mul(K) ^ self.dst_vlan;
        let h = h.wrapping_mul(K);
        (h >> 32) as u32
    }
}

/// One flow of the L2 stage's cache, as published for `vswitchctl show flows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Flow {
    pub in_port: PortId,
    pub vlan: VlanId,
    pub src: MacAddr,
    pub dst: MacAddr,
    /// The cached decision.
    pub verdict: Verdict,
    /// Packets that took it from the cache since it was cached.
    pub hits: u64,
}

/// The L2 stage's per-worker state.
pub struct L2 {
    cache: FlowCache<L2Key, Verdict>,
    learn: Producer<LearnEvent>,
}

/// Per-call inputs of the L2 stage.
pub struct L2Ctx<'a> {
    pub fdb: &'a Fdb,
    pub snapshot_generation: u64,
    pub now: u64,
    pub counters: &'a WorkerCounters,
}

impl L2 {
    /// A stage with a flow cache of `cache_entries` entries that sends learn events to `learn`.
    pub fn new(cache_entries: usize, learn: Producer<LearnEvent>) -> L2 {
        L2 { cache: FlowCache::new(cache_entries), learn }
    }

    /// The flow cache, for `vswitchctl show flows`.
    pub fn cache(&self) -> &FlowCache<L2Key, Verdict> {
        &self.cache
    }

    /// Replaces `out` with the flows cached within the last second or two at `now` (the
    /// generations of this second and the one before, under the current snapshot and FDB),
    /// at most `max` of them. For `vswitchctl show flows`, from housekeeping: `out` keeps its
    /// allocation from one report to the next.
    pub fn report_flows(
        &self,
        snapshot_generation: u64,
        fdb_generation: u64,
        now: u64,
        max: usize,
        out: &mut Vec<L2Flow>,
    ) {
        out.clear();
        let gens = [
            Self::generation(snapshot_generation, fdb_generation, now),
            Self::generation(
                snapshot_generation,
                fdb_generation,
                now.saturating_sub(1_000_000_000),
            ),
        ];
        for g in gens {
            let room = max.saturating_sub(out.len());
            out.extend(self.cache.iter_live(g).take(room).map(|e| L2Flow {
                in_port: e.key.in_port,
                vlan: (e.key.dst_vlan >> 48) as VlanId & 0xfff,
                src: MacAddr::from_u64(e.key.src),
                dst: MacAddr::from_u64(e.key.dst_vlan & 0xffff_ffff_ffff),
                verdict: e.value,
                hits: e.hits,
            }));
        }
    }

    /// The generation flow cache entries are valid for at time `now`.
    #[inline]
    pub fn generation(snapshot_generation: u64, fdb_generation: u64, now: u64) -> u64 {
        let secs = now / 1_000_000_000;
        snapshot_generation
            .wrapping_mul(0x0100_0000_01b3)
            .wrapping_add(fdb_generation)
            .rotate_left(24)
            ^ secs
    }

    pub fn run<const N: usize>(&mut self, batch: &mut Batch<N>, pool: &Pool, cx: &L2Ctx<'_>) {
        let gen = Self::generation(cx.snapshot_generation, cx.fdb.generation(), cx.now);
        let (mut hits, mut misses) = (0u64, 0u64);
        let (pkts, metas) = batch.split_mut();
        for (p, m) in pkts.iter().zip(metas.iter_mut()) {
            if m.verdict != Verdict::Continue || m.flags & flags::ROUTED != 0 {
                continue;
            }
            // Parse guaranteed at least an Ethernet header.
            let d = pool.data(p);
            let dst = MacAddr::from_bytes(&d[0..6]);
            let src = MacAddr::from_bytes(&d[6..12]);
            let key = L2Key {
                src: src.to_u64(),
                dst_vlan: dst.to_u64() | u64::from(m.vlan) << 48,
                in_port: m.in_port,
            };
            let h = key.hash();
            if let Some(v) = self.cache.lookup(h, &key, gen) {
                hits += 1;
                m.verdict = v;
                continue;
            }
            misses += 1;
            let (v, cacheable) = self.slow_path(m.vlan, m.in_port, src, dst, cx);
            m.verdict = v;
            if cacheable {
                self.cache.insert(h, key, v, gen);
            }
        }
        cx.counters.flow_hits.add(hits);
        cx.counters.flow_misses.add(misses);
    }

    #[inline]
    fn slow_path(
        &mut self,
        vlan: VlanId,
        in_port: PortId,
        src: MacAddr,
        dst: MacAddr,
        cx: &L2Ctx<'_>,
    ) -> (Verdict, bool) {
        let (v, source) = decide(cx.fdb, vlan, in_port, src, dst, cx.now);
        let cacheable = match source {
            Some(SourceCheck::Unknown | SourceCheck::Moved { .. }) => {
                if self.learn.push(LearnEvent { vlan, mac: src, port: in_port }).is_err() {
                    cx.counters.learn_overflow.add(1);
                }
                false
            }
            _ => true,
        };
        (v, cacheable)
    }
}

/// The L2 decision for one packet, without side effects of its own: the verdict, and how the
/// FDB classifies the source (`None` when the source MAC is not unicast, so nothing was
/// checked). `Unknown` and `Moved` mean the source is to be learned; the caller does that (the
/// stage sends a learn event, the packet tracer reports it). `now` only refreshes the age of a
/// dynamic source already known on `in_port` (see [`Fdb::check_source`]).
#[inline]
pub(crate) fn decide(
    fdb: &Fdb,
    vlan: VlanId,
    in_port: PortId,
    src: MacAddr,
    dst: MacAddr,
    now: u64,
) -> (Verdict, Option<SourceCheck>) {
    if !src.is_unicast() {
        return (Verdict::Drop(DropReason::SrcMacInvalid), None);
    }
    let source = fdb.check_source(vlan, src, in_port, now);
    if matches!(source, SourceCheck::Static) {
        return (Verdict::Drop(DropReason::StaticMacMoved), Some(source));
    }
    let v = if dst.is_multicast() {
        Verdict::Flood
    } else {
        match fdb.lookup(vlan, dst) {
            Some(p) if p == in_port => Verdict::Drop(DropReason::SamePort),
            Some(p) => Verdict::Output(p),
            None => Verdict::Flood,
        }
    };
    (v, Some(source))
}
