//! Output: turns verdicts into transmissions.
//!
//! Every packet of the batch leaves this stage: dropped packets are counted by reason and
//! freed; the others are queued on their egress port's output batch, after the egress checks
//! (port known and up, VLAN carried, MTU) and the VLAN tag fix-up the port needs (push into the
//! headroom, pop, or rewrite the VID). Flooding copies the packet for every member of its VLAN
//! but the ingress port, and sends the original to the last one. Output batches are flushed
//! when full and at the end of each received batch, so a port's transmit is one call per batch,
//! not per packet.
//!
//! Drops before egress count on the ingress port; drops at egress (MTU, tx ring) count on the
//! egress port.

use crate::packet::{flags, Batch, Meta, Pkt, Pool, Verdict};
use crate::pipeline::snapshot::Snapshot;
use crate::port::Port;
use crate::telemetry::{DropReason, WorkerCounters};
use crate::types::PortId;

const TPID_8021Q: u16 = 0x8100;

/// A port owned by this worker, with its pending output.
pub struct Egress<const N: usize> {
    pub port: Box<dyn Port<N>>,
    pub queue: Box<Batch<N>>,
}

impl<const N: usize> Egress<N> {
    pub fn new(port: Box<dyn Port<N>>) -> Self {
        Egress { port, queue: Box::new(Batch::new()) }
    }

    /// Transmits the pending queue and counts the outcome on port `id`.
    #[inline]
    pub fn flush(&mut self, id: PortId, pool: &mut Pool, counters: &WorkerCounters) {
        if self.queue.is_empty() {
            return;
        }
        let r = self.port.tx(pool, &mut self.queue);
        let c = counters.port(id);
        c.tx_packets.add(r.sent as u64);
        c.tx_bytes.add(r.sent_bytes);
        if r.ring_full > 0 {
            c.drops[DropReason::TxRingFull.index()].add(r.ring_full as u64);
        }
        if r.errors > 0 {
            c.drops[DropReason::TxError.index()].add(r.errors as u64);
        }
    }
}

/// The output stage's scratch state.
#[derive(Default)]
pub struct Output {
    /// Ports with queued packets since the last flush.
    dirty: Vec<PortId>,
}

/// What the output stage needs besides the batch.
pub struct OutputCtx<'a, const N: usize> {
    pub pool: &'a mut Pool,
    pub snap: &'a Snapshot,
    pub ports: &'a mut [Option<Egress<N>>],
    pub counters: &'a WorkerCounters,
}

impl Output {
    pub fn new() -> Output {
        Output { dirty: Vec::with_capacity(crate::types::MAX_PORTS) }
    }

    /// Dispatches every packet of `batch` (which is left empty), then flushes the output queues.
    pub fn run<const N: usize>(&mut self, batch: &mut Batch<N>, cx: &mut OutputCtx<'_, N>) {
        batch.drain(|p, m| match m.verdict {
            Verdict::Output(port) => self.emit(cx, p, m, port),
            Verdict::Flood => self.flood(cx, p, m),
            Verdict::Drop(r) => {
                cx.counters.drop(m.in_port, r);
                cx.pool.free(p);
            }
            Verdict::Continue => {
                cx.counters.drop(m.in_port, DropReason::Unhandled);
                cx.pool.free(p);
            }
        });
        self.flush(cx);
    }

    /// Transmits every queued packet.
    pub fn flush<const N: usize>(&mut self, cx: &mut OutputCtx<'_, N>) {
        for id in self.dirty.drain(..) {
            if let Some(Some(e)) = cx.ports.get_mut(id as usize) {
                e.flush(id, cx.pool, cx.counters);
            }
        }
    }

    fn flood<const N: usize>(&mut self, cx: &mut OutputCtx<'_, N>, p: Pkt, m: Meta) {
        let snap = cx.snap;
        let members = snap.flood_members(m.vlan);
        let usable = |id: &PortId| *id != m.in_port && snap.port(*id).is_some_and(|e| e.up);
        let Some(last) = members.iter().rposition(usable) else {
            cx.counters.drop(m.in_port, DropReason::NoFloodMembers);
            return cx.pool.free(p);
        };
        for &id in members[..last].iter().filter(|id| usable(id)) {
            match cx.pool.copy(&p) {
                Some(q) => self.emit(cx, q, m, id),
                None => cx.counters.drop(m.in_port, DropReason::NoBuffer),
            }
        }
        self.emit(cx, p, m, members[last]);
    }

    #[inline]
    fn emit<const N: usize>(
        &mut self,
        cx: &mut OutputCtx<'_, N>,
        mut p: Pkt,
        mut m: Meta,
        port: PortId,
    ) {
        let snap = cx.snap;
        let Some(entry) = snap.port(port) else {
            cx.counters.drop(m.in_port, DropReason::PortUnknown);
            return cx.pool.free(p);
        };
        if !entry.up {
            cx.counters.drop(m.in_port, DropReason::PortDown);
            return cx.pool.free(p);
        }
        if !entry.mode.carries(m.vlan) {
            cx.counters.drop(m.in_port, DropReason::VlanNotAllowed);
            return cx.pool.free(p);
        }
        let want_tag = entry.mode.egress_tagged(m.vlan);
        if let Err(r) = fix_tag(cx.pool, &mut p, &mut m, want_tag) {
            cx.counters.drop(port, r);
            return cx.pool.free(p);
        }
        let l2 = if m.flags & flags::TAGGED != 0 { 18 } else { 14 };
        if p.len() > l2 + entry.mtu as usize {
            cx.counters.drop(port, DropReason::MtuExceeded);
            return cx.pool.free(p);
        }
        let Some(Some(e)) = cx.ports.get_mut(port as usize) else {
            // Configured but not attached to this worker.
            cx.counters.drop(m.in_port, DropReason::PortUnknown);
            return cx.pool.free(p);
        };
        if e.queue.is_empty() {
            self.dirty.push(port);
        }
        if let Err(p) = e.queue.push(p, m) {
            // Queue full: send what is queued, then queue this one.
            e.flush(port, cx.pool, cx.counters);
            if let Err(p) = e.queue.push(p, m) {
                cx.counters.drop(port, DropReason::TxRingFull);
                cx.pool.free(p);
            }
        }
    }
}

/// Makes the wire tag match what the egress port wants: push a tag into the headroom, pop it,
/// or rewrite its VID (a priority-tagged frame leaving on a tagged port).
#[inline]
fn fix_tag(pool: &mut Pool, p: &mut Pkt, m: &mut Meta, want: bool) -> Result<(), DropReason> {
    let have = m.flags & flags::TAGGED != 0;
    let tci = (u16::from(m.pcp) << 13) | (m.vlan & 0x0fff);
    match (have, want) {
        (false, false) => {}
        (true, true) => {
            pool.data_mut(p)[14..16].copy_from_slice(&tci.to_be_bytes());
        }
        (false, true) => {
            if pool.push_front(p, 4).is_none() {
                return Err(DropReason::NoHeadroom);
            }
            let d = pool.data_mut(p);
            d.copy_within(4..16, 0);
            d[12..14].copy_from_slice(&TPID_8021Q.to_be_bytes());
            d[14..16].copy_from_slice(&tci.to_be_bytes());
            m.flags |= flags::TAGGED;
            m.l3_off += 4;
            if m.l4_off != 0 {
                m.l4_off += 4;
            }
        }
        (true, false) => {
            let d = pool.data_mut(p);
            d.copy_within(0..12, 4);
            pool.pull_front(p, 4);
            m.flags &= !flags::TAGGED;
            m.l3_off -= 4;
            if m.l4_off != 0 {
                m.l4_off -= 4;
            }
        }
    }
    Ok(())
}
