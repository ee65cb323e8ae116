//! Packets crossing from one worker to another.
//!
//! Each worker has its own pool (its UMEM), so a packet received by worker A whose egress port
//! belongs to worker B cannot simply be queued on B's port. A pushes the handle, with its
//! metadata and egress port, onto an SPSC ring to B ([`Outbox`]). B copies the bytes into a
//! buffer of its own pool (reading A's frame through a [`PoolReader`]), queues the copy on the
//! port, and gives the handle back on a second ring, so A frees its own buffer: no pool is ever
//! touched by two threads, and neither side takes a lock or allocates.
//!
//! B takes a hand-off only when its give-back ring has room, so a handle always has somewhere
//! to go; when A's ring to B is full, A drops the packet and counts `tx_ring_full` on the port.
//!
//! An idle worker sleeps in poll(2) on its ports; hand-offs must wake it. Each link has a
//! datagram socket pair: B polls its end, and A sends one byte after a batch of hand-offs, but
//! only while B says it sleeps, so a busy pair of workers makes no syscalls for this. The flag
//! and the ring are checked in opposite orders on the two sides with a SeqCst fence between
//! (A: push, fence, read flag; B: set flag, fence, check ring), so either A sees B asleep and
//! wakes it, or B sees the packet and does not sleep.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

use rtrb::{Consumer, Producer, RingBuffer};

use crate::packet::{Batch, Meta, Pkt, Pool, PoolReader, Verdict};
use crate::telemetry::{DropReason, WorkerCounters};
use crate::types::PortId;

/// Packets in flight from one worker to another.
pub const HANDOFF_RING: usize = 1024;

/// A packet on its way to the worker that owns its egress port.
pub struct Handoff {
    pub pkt: Pkt,
    pub meta: Meta,
    pub port: PortId,
}

/// The sending worker's end towards one other worker.
pub struct Outbox {
    tx: Producer<Handoff>,
    returned: Consumer<Pkt>,
    /// Whether the receiving worker is (about to be) asleep in poll(2).
    peer_sleeping: Arc<AtomicBool>,
    wake: UnixDatagram,
    sent: bool,
}

/// The receiving worker's end from one other worker.
pub struct Inbox {
    rx: Consumer<Handoff>,
    give_back: Producer<Pkt>,
    reader: PoolReader,
    wake: UnixDatagram,
}

/// A one-way link from the worker owning `sender_pool` to the worker whose sleeping flag is
/// `receiver_sleeping`.
pub fn link(
    sender_pool: &Pool,
    receiver_sleeping: Arc<AtomicBool>,
) -> std::io::Result<(Outbox, Inbox)> {
    let (tx, rx) = RingBuffer::new(HANDOFF_RING);
    let (give_back, returned) = RingBuffer::new(HANDOFF_RING);
    let (a, b) = UnixDatagram::pair()?;
    a.set_nonblocking(true)?;
    b.set_nonblocking(true)?;
    Ok((
        Outbox { tx, returned, peer_sleeping: receiver_sleeping, wake: a, sent: false },
        Inbox { rx, give_back, reader: sender_pool.reader(), wake: b },
    ))
}

impl Outbox {
    /// Hands a packet over, or gives it back when the ring is full.
    #[inline]
    pub fn send(&mut self, h: Handoff) -> Result<(), Handoff> {
        self.tx.push(h).map_err(|rtrb::PushError::Full(h)| h)?;
        self.sent = true;
        Ok(())
    }

    /// After a batch: wakes the receiving worker if it sleeps and we sent it something.
    #[inline]
    pub fn wake_if_sleeping(&mut self) {
        if !std::mem::take(&mut self.sent) {
            return;
        }
        // Pairs with the receiver's fence in `Inbox::ready_to_sleep` (see the module doc).
        fence(Ordering::SeqCst);
        if self.peer_sleeping.load(Ordering::Relaxed) {
            // A full socket buffer means a wake-up is already pending: nothing lost.
            let _ = self.wake.send(&[1]);
        }
    }

    /// Frees the handles the other worker is done with.
    #[inline]
    pub fn reclaim(&mut self, pool: &mut Pool) {
        let n = self.returned.slots();
        if n > 0 {
            if let Ok(chunk) = self.returned.read_chunk(n) {
                pool.free_all(chunk);
            }
        }
    }

    /// Handles not yet given back (sent, or waiting to be reclaimed).
    pub fn in_flight(&self) -> usize {
        HANDOFF_RING - self.tx.slots() + self.returned.slots()
    }
}

impl Inbox {
    /// Called after the worker set its sleeping flag: whether it may sleep (nothing waiting).
    #[inline]
    pub fn ready_to_sleep(&self) -> bool {
        // Pairs with the sender's fence in `Outbox::wake_if_sleeping`.
        fence(Ordering::SeqCst);
        self.rx.is_empty()
    }

    /// The descriptor that becomes readable when the sender wakes us.
    pub fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Empties the wake-up socket after a sleep.
    pub fn clear_wake(&self) {
        let mut buf = [0u8; 64];
        while self.wake.recv(&mut buf).is_ok() {}
    }

    /// Copies waiting packets into `pool` and appends them to `batch` with an `Output` verdict
    /// for their port; a packet that finds `pool` empty is dropped and counted (`no_buffer` on
    /// its egress port). Returns the packets taken.
    #[inline]
    pub fn receive<const N: usize>(
        &mut self,
        pool: &mut Pool,
        batch: &mut Batch<N>,
        counters: &WorkerCounters,
    ) -> usize {
        let n = self.rx.slots().min(self.give_back.slots()).min(batch.room());
        for _ in 0..n {
            let Ok(h) = self.rx.pop() else { break };
            let copy = pool.alloc_from(self.reader.data(&h.pkt));
            // Cannot fail: there was room for `n` give-backs.
            let _ = self.give_back.push(h.pkt);
            match copy {
                Some(p) => {
                    let meta = Meta { verdict: Verdict::Output(h.port), ..h.meta };
                    if let Err(p) = batch.push(p, meta) {
                        pool.free(p);
                    }
                }
                None => counters.drop(h.port, DropReason::NoBuffer),
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::PoolConfig;

    #[test]
    fn a_packet_crosses_and_its_buffer_comes_home() {
        let cfg = PoolConfig { frames: 256, big_buffers: 0, ..PoolConfig::default() };
        let (mut a, mut b) = (Pool::new(cfg).unwrap(), Pool::new(cfg).unwrap());
        let sleeping = Arc::new(AtomicBool::new(true));
        let (mut out, mut inbox) = link(&a, sleeping.clone()).unwrap();
        let p = a.alloc_from(&[1, 2, 3, 4]).unwrap();
        assert!(inbox.ready_to_sleep());
        assert!(out.send(Handoff { pkt: p, meta: Meta::rx(3), port: 7 }).is_ok());
        assert!(!inbox.ready_to_sleep(), "a waiting packet keeps the receiver awake");
        out.wake_if_sleeping();
        let mut byte = [0u8; 1];
        assert_eq!(inbox.wake.recv(&mut byte).unwrap(), 1, "a sleeping receiver is woken");
        inbox.clear_wake();
        assert_eq!(a.in_use(), 1);
        let mut batch: Batch<32> = Batch::new();
        let counters = WorkerCounters::default();
        let taken = std::thread::scope(|s| {
            s.spawn(|| inbox.receive(&mut b, &mut batch, &counters)).join().unwrap()
        });
        assert_eq!(taken, 1);
        assert_eq!(batch.meta()[0].verdict, Verdict::Output(7));
        assert_eq!(batch.meta()[0].in_port, 3);
        assert_eq!(b.data(&batch.pkts()[0]), &[1, 2, 3, 4]);
        batch.free_all(&mut b);
        out.reclaim(&mut a);
        assert_eq!((a.in_use(), b.in_use()), (0, 0));
    }
}
