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
//!
//! A port with a QoS plan queues on its scheduler instead ([`super::qos`]): the packet is
//! classified and enqueued (or dropped and counted on the egress port: `qos_queue_full`,
//! `qos_policed`, `qos_pps_limit`), and each flush moves what the scheduler releases at the
//! iteration's time into the output batch. A packet the scheduler would release first anyway
//! is charged to its class and joins the output batch at once.

use super::qos::EgressQos;
use super::reply;
use crate::packet::{flags, gso, Batch, GsoType, Meta, Offload, Pkt, Pool, Verdict};
use crate::pipeline::snapshot::Snapshot;
use crate::pmd::handoff::{Handoff, Outbox};
use crate::port::Port;
use crate::qos::Offer;
use crate::tables::neigh::Neighbors;
use crate::telemetry::{DropReason, WorkerCounters};
use crate::types::PortId;
use crate::wire;

const TPID_8021Q: u16 = 0x8100;

/// A port owned by this worker, with its pending output.
pub struct Egress<const N: usize> {
    pub port: Box<dyn Port<N>>,
    pub queue: Box<Batch<N>>,
    /// The port's egress scheduler, when its snapshot entry has a QoS plan.
    pub qos: Option<Box<EgressQos>>,
    /// A packet capture armed on the port (`vswitchctl capture`): it sees the batches the
    /// port receives and, here, those it transmits.
    pub tap: Option<Box<crate::pipeline::capture::Tap>>,
}

impl<const N: usize> Egress<N> {
    pub fn new(port: Box<dyn Port<N>>) -> Self {
        Egress { port, queue: Box::new(Batch::new()), qos: None, tap: None }
    }

    /// Moves what the scheduler (if any) releases at `now` into the pending queue, transmits
    /// it, and counts the outcome on port `id`. Returns how many packets the scheduler
    /// released.
    #[inline]
    pub fn flush(
        &mut self,
        id: PortId,
        pool: &mut Pool,
        counters: &WorkerCounters,
        now: u64,
    ) -> usize {
        let released = match self.qos.as_deref_mut() {
            Some(q) => {
                q.listed = false;
                q.release(&mut self.queue, now)
            }
            None => 0,
        };
        self.transmit(id, pool, counters, now);
        released
    }

    /// Transmits the pending queue and counts the outcome on port `id`; a capture armed on
    /// the port records the batch first, as it goes on the wire (one branch when there is
    /// none).
    #[inline]
    fn transmit(&mut self, id: PortId, pool: &mut Pool, counters: &WorkerCounters, now: u64) {
        if self.queue.is_empty() {
            return;
        }
        if let Some(t) = self.tap.as_deref_mut() {
            if t.direction().tx() {
                t.record(now, self.queue.pkts().iter().map(|p| pool.data(p)));
            }
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
        if r.link_down > 0 {
            c.drops[DropReason::TxLinkDown.index()].add(r.link_down as u64);
        }
    }
}

/// The output stage's scratch state.
#[derive(Default)]
pub struct Output {
    /// Ports with queued packets since the last flush.
    dirty: Vec<PortId>,
    /// Segments of the GSO packet being cut (capacity for the most a packet may make).
    segs: Vec<Pkt>,
    /// IPv4 identification of the next VXLAN packet.
    ident: u16,
}

/// What the output stage needs besides the batch.
pub struct OutputCtx<'a, const N: usize> {
    /// The iteration's time (the QoS schedulers' clock).
    pub now: u64,
    pub pool: &'a mut Pool,
    pub snap: &'a Snapshot,
    pub ports: &'a mut [Option<Egress<N>>],
    pub counters: &'a WorkerCounters,
    /// This worker's id, and its links to the other workers, indexed by worker id.
    pub me: u16,
    pub outboxes: &'a mut [Option<Outbox>],
    /// Next hops' MACs, for the outer header of VXLAN packets.
    pub neigh: &'a Neighbors,
}

impl Output {
    pub fn new() -> Output {
        Output {
            dirty: Vec::with_capacity(crate::types::MAX_PORTS),
            segs: Vec::with_capacity(gso::MAX_SEGS),
            ident: 0,
        }
    }

    /// Dispatches every packet of `batch` (which is left empty), then flushes the output queues.
    pub fn run<const N: usize>(&mut self, batch: &mut Batch<N>, cx: &mut OutputCtx<'_, N>) {
        batch.drain(|p, m| self.send(cx, p, m));
        self.flush(cx);
    }

    /// Dispatches one packet by its verdict (queued; [`Output::flush`] transmits).
    #[inline]
    pub fn send<const N: usize>(&mut self, cx: &mut OutputCtx<'_, N>, p: Pkt, m: Meta) {
        match m.verdict {
            Verdict::Output(port) => self.emit(cx, p, m, port),
            Verdict::Flood => self.flood(cx, p, m),
            Verdict::Tunnel(peer) => self.tunnel(cx, p, m, peer),
            Verdict::Drop(r) => {
                cx.counters.drop(m.in_port, r);
                cx.pool.free(p);
            }
            Verdict::Consumed => {
                cx.counters.local_consumed.add(1);
                cx.pool.free(p);
            }
            Verdict::Continue | Verdict::Held => {
                cx.counters.drop(m.in_port, DropReason::Unhandled);
                cx.pool.free(p);
            }
        }
    }

    /// Encapsulates a packet routed to VXLAN peer `peer` and sends it out of the uplink. A GSO
    /// packet is cut first into segments that fit the uplink's MTU less the 50 bytes of outer
    /// headers (the uplink takes no offloads); a partial checksum is completed, since the
    /// receiver cannot finish it through the tunnel.
    fn tunnel<const N: usize>(&mut self, cx: &mut OutputCtx<'_, N>, p: Pkt, m: Meta, peer: u16) {
        let Some(t) = cx.snap.l3() else {
            cx.counters.drop(m.in_port, DropReason::NoRoute);
            return cx.pool.free(p);
        };
        let Some(pe) = t.peers.get(peer as usize) else {
            cx.counters.drop(m.in_port, DropReason::NoRoute);
            return cx.pool.free(p);
        };
        let Some(n) = cx.neigh.get(u32::from(pe.next_hop)) else {
            cx.counters.drop(m.in_port, DropReason::NeighborUnresolved);
            return cx.pool.free(p);
        };
        let tun = reply::Tunnel {
            src_mac: t.router_mac,
            dst_mac: n.mac,
            src_ip: t.underlay.addr,
            dst_ip: pe.underlay_ip,
            vni: t.vni,
            dst_port: t.vxlan_port,
        };
        let (uplink, uplink_vlan) = (t.uplink, t.uplink_vlan);
        let one = |out: &mut Output, cx: &mut OutputCtx<'_, N>, mut q: Pkt, mut qm: Meta| {
            let inner = qm.offload;
            let inner_l3 = qm.l3_off;
            if reply::vxlan_encap(cx.pool, &mut q, &mut qm, &tun, out.ident).is_err() {
                cx.counters.drop(uplink, DropReason::NoHeadroom);
                return cx.pool.free(q);
            }
            if inner.gso_type != GsoType::None {
                // Whole, as UDP tunnel GSO: the kernel segments it, outer headers and all.
                let outer = wire::vxlan::OVERHEAD_V4 as u16;
                qm.offload = Offload {
                    csum_start: inner.csum_start + outer,
                    tunnel_inner: inner_l3 + outer,
                    ..inner
                };
            }
            out.ident = out.ident.wrapping_add(1);
            qm.vlan = uplink_vlan;
            cx.counters.vxlan_encap.add(1);
            out.emit(cx, q, qm, uplink);
        };
        if m.offload.gso_type != GsoType::None {
            let mss = gso::mss_for_mtu(cx.pool.data(&p), &m, usize::from(t.tunnel_mtu()));
            let tunnel_gso = matches!(cx.ports.get(uplink as usize),
                Some(Some(e)) if e.port.offloads().udp_tunnel);
            if tunnel_gso && mss > 0 {
                // Segments must still fit the tunnel's MTU once the kernel cuts them.
                let mut m = m;
                m.offload.gso_size = m.offload.gso_size.min(mss.min(usize::from(u16::MAX)) as u16);
                return one(self, cx, p, m);
            }
            let seg_meta = gso::segment_meta(&m);
            let mut segs = std::mem::take(&mut self.segs);
            let r = gso::segment(cx.pool, &p, &m, mss, &mut |s| segs.push(s));
            cx.pool.free(p);
            if let Err(err) = r {
                cx.counters.drop(uplink, err.into());
                cx.pool.free_all(segs.drain(..));
            }
            for s in segs.drain(..) {
                one(self, cx, s, seg_meta);
            }
            self.segs = segs;
            return;
        }
        let mut m = m;
        if m.offload.csum_partial {
            if let Err(err) = gso::complete_checksum(cx.pool.data_mut(&p), &m.offload) {
                cx.counters.drop(uplink, err.into());
                return cx.pool.free(p);
            }
            m.offload.csum_partial = false;
        }
        one(self, cx, p, m);
    }

    /// Transmits every queued packet.
    pub fn flush<const N: usize>(&mut self, cx: &mut OutputCtx<'_, N>) {
        for id in self.dirty.drain(..) {
            if let Some(Some(e)) = cx.ports.get_mut(id as usize) {
                e.flush(id, cx.pool, cx.counters, cx.now);
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
        let tag = match egress_check(cx.snap, port, &m, p.len()) {
            Ok(tag) => tag,
            Err(r) => {
                // MTU drops are the egress port's; the others mean the packet never got there.
                let at = if r == DropReason::MtuExceeded { port } else { m.in_port };
                cx.counters.drop(at, r);
                return cx.pool.free(p);
            }
        };
        if let Err(r) = fix_tag(cx.pool, &mut p, &mut m, tag) {
            cx.counters.drop(port, r);
            return cx.pool.free(p);
        }
        let Some(Some(e)) = cx.ports.get_mut(port as usize) else {
            // Another worker's port: hand the packet over (it copies it into its own pool).
            let owner = cx.snap.owner(port);
            match cx.outboxes.get_mut(owner as usize) {
                Some(Some(out)) if owner != cx.me => {
                    if let Err(h) = out.send(Handoff { pkt: p, meta: m, port }) {
                        cx.counters.drop(port, DropReason::TxRingFull);
                        cx.pool.free(h.pkt);
                    }
                }
                // Configured, but its worker has not attached it yet.
                _ => {
                    cx.counters.drop(m.in_port, DropReason::PortUnknown);
                    cx.pool.free(p);
                }
            }
            return;
        };
        // Offloads the egress port cannot finish are finished here: a GSO packet is cut into
        // MTU-sized segments, a partial checksum is completed. Ports that take them (TAP) get
        // the packet whole.
        if m.offload.gso_type != GsoType::None || m.offload.csum_partial {
            let caps = e.port.offloads();
            if m.offload.tunnel_inner != 0 && !caps.udp_tunnel {
                // Only the uplink sends these, and only VXLAN encapsulation makes them.
                cx.counters.drop(port, DropReason::TunnelGsoUnexpected);
                return cx.pool.free(p);
            }
            if m.offload.gso_type != GsoType::None && !caps.tso {
                let mtu = cx.snap.port(port).map_or(1500, |entry| entry.mtu as usize);
                let mss = gso::mss_for_mtu(cx.pool.data(&p), &m, mtu);
                let seg_meta = gso::segment_meta(&m);
                let segs = &mut self.segs;
                let r = gso::segment(cx.pool, &p, &m, mss, &mut |s| segs.push(s));
                cx.pool.free(p);
                if let Err(err) = r {
                    return cx.counters.drop(port, err.into());
                }
                for s in self.segs.drain(..) {
                    enqueue(&mut self.dirty, e, port, s, seg_meta, cx.pool, cx.counters, cx.now);
                }
                return;
            }
            if m.offload.csum_partial && !caps.csum {
                if let Err(err) = gso::complete_checksum(cx.pool.data_mut(&p), &m.offload) {
                    cx.counters.drop(port, err.into());
                    return cx.pool.free(p);
                }
                m.offload.csum_partial = false;
            }
        }
        enqueue(&mut self.dirty, e, port, p, m, cx.pool, cx.counters, cx.now);
    }
}

/// Queues `p` on port `port`'s scheduler if it has one (and the packet a class), else on its
/// output batch, flushing that first when full.
#[inline]
#[allow(clippy::too_many_arguments)]
fn enqueue<const N: usize>(
    dirty: &mut Vec<PortId>,
    e: &mut Egress<N>,
    port: PortId,
    p: Pkt,
    m: Meta,
    pool: &mut Pool,
    counters: &WorkerCounters,
    now: u64,
) {
    let mut m = m;
    if let Some((class, q)) = e.qos.as_deref_mut().and_then(|q| Some((q.classify(&m)?, q))) {
        m.class = class.0;
        match q.offer(class, p.len() as u32, now) {
            // Sent at once (charged to its class): out with the unshaped packets.
            Ok(Offer::Pass) => {}
            Ok(Offer::Queue(a)) => {
                a.queue((p, m));
                // Listed once (not per packet): the list never outgrows its capacity.
                if !q.listed && e.queue.is_empty() {
                    dirty.push(port);
                }
                q.listed = true;
                return;
            }
            Err(r) => {
                counters.drop(port, r);
                return pool.free(p);
            }
        }
    }
    if e.queue.is_empty() && !e.qos.as_ref().is_some_and(|q| q.listed) {
        dirty.push(port);
    }
    if let Err(p) = e.queue.push(p, m) {
        // Queue full: send what is queued, then queue this one.
        e.transmit(port, pool, counters, now);
        if let Err(p) = e.queue.push(p, m) {
            counters.drop(port, DropReason::TxRingFull);
            pool.free(p);
        }
    }
}

/// What egress does to a packet's 802.1Q tag so that the wire matches the egress port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagAction {
    /// Untagged in, untagged out.
    Untouched,
    /// Tagged in, tagged out: the TCI is written with the packet's VLAN (a priority-tagged
    /// frame gets its VID; otherwise the tag is unchanged).
    Rewrite,
    /// Untagged in, tagged out: a tag is pushed into the headroom.
    Push,
    /// Tagged in, untagged out: the tag is removed.
    Pop,
}

impl TagAction {
    /// The action for a frame that has a tag (`have`) leaving a port that wants one (`want`).
    #[inline]
    pub fn new(have: bool, want: bool) -> TagAction {
        match (have, want) {
            (false, false) => TagAction::Untouched,
            (true, true) => TagAction::Rewrite,
            (false, true) => TagAction::Push,
            (true, false) => TagAction::Pop,
        }
    }
}

/// The egress checks for sending a packet with metadata `m`, `len` bytes long as it reached
/// output, out of `port`: the port is configured and up, carries the packet's VLAN, and the
/// packet fits its MTU. The tag fix-up it needs, or why it is dropped (`mtu_exceeded` counts on
/// the egress port, the others on the ingress port). Pure: used by the stage and the tracer.
#[inline]
pub(crate) fn egress_check(
    snap: &Snapshot,
    port: PortId,
    m: &Meta,
    len: usize,
) -> Result<TagAction, DropReason> {
    let Some(entry) = snap.port(port) else {
        return Err(DropReason::PortUnknown);
    };
    if !entry.up {
        return Err(DropReason::PortDown);
    }
    if !entry.mode.carries(m.vlan) {
        return Err(DropReason::VlanNotAllowed);
    }
    let have = m.flags & flags::TAGGED != 0;
    // The MTU bounds what follows the Ethernet header and tag, which the tag fix-up does not
    // change, so checking before it gives the same answer and skips fixing doomed packets.
    let l2 = if have { 18 } else { 14 };
    // A GSO packet leaves as segments that fit the MTU (cut here, or by the receiving stack).
    if m.offload.gso_type == GsoType::None && len > l2 + entry.mtu as usize {
        return Err(DropReason::MtuExceeded);
    }
    Ok(TagAction::new(have, entry.mode.egress_tagged(m.vlan)))
}

/// Makes the wire tag match what the egress port wants: push a tag into the headroom, pop it,
/// or rewrite its VID (a priority-tagged frame leaving on a tagged port).
#[inline]
fn fix_tag(pool: &mut Pool, p: &mut Pkt, m: &mut Meta, tag: TagAction) -> Result<(), DropReason> {
    let tci = (u16::from(m.pcp) << 13) | (m.vlan & 0x0fff);
    match tag {
        TagAction::Untouched => {}
        TagAction::Rewrite => {
            pool.data_mut(p)[14..16].copy_from_slice(&tci.to_be_bytes());
        }
        TagAction::Push => {
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
            if m.offload.csum_partial {
                m.offload.csum_start += 4;
            }
        }
        TagAction::Pop => pop_tag(pool, p, m),
    }
    Ok(())
}

/// Removes the packet's 802.1Q tag (it must have one: `flags::TAGGED`).
#[inline]
pub(crate) fn pop_tag(pool: &mut Pool, p: &mut Pkt, m: &mut Meta) {
    let d = pool.data_mut(p);
    d.copy_within(0..12, 4);
    pool.pull_front(p, 4);
    m.flags &= !flags::TAGGED;
    m.l3_off -= 4;
    if m.l4_off != 0 {
        m.l4_off -= 4;
    }
    if m.offload.csum_partial {
        m.offload.csum_start = m.offload.csum_start.saturating_sub(4);
    }
}
