//! An in-memory port on two lock-free SPSC rings (`rtrb`).
//!
//! [`RingPort`] is the switch's side; [`RingPeer`] is the outside world's: it injects packets
//! the switch will receive and collects those the switch sends. Both sides move [`Pkt`] handles
//! of the same pool, so tests and benchmarks run the whole pipeline with no copies and no
//! kernel. The peer must run on the worker's thread (it uses the worker's pool); the rings keep
//! the two sides' views consistent all the same.

use rtrb::{Consumer, Producer, RingBuffer};

use super::{Port, TxReport};
use crate::packet::{Batch, Meta, Pkt, Pool};
use crate::types::PortId;

/// The switch's end of an in-memory port.
pub struct RingPort {
    name: String,
    from_peer: Consumer<Pkt>,
    to_peer: Producer<Pkt>,
}

/// The outside end of an in-memory port.
pub struct RingPeer {
    to_switch: Producer<Pkt>,
    from_switch: Consumer<Pkt>,
}

/// Creates a port named `name` whose rings hold `capacity` packets each way.
pub fn pair(name: &str, capacity: usize) -> (RingPort, RingPeer) {
    let (to_switch, from_peer) = RingBuffer::new(capacity);
    let (to_peer, from_switch) = RingBuffer::new(capacity);
    (RingPort { name: name.to_string(), from_peer, to_peer }, RingPeer { to_switch, from_switch })
}

impl RingPeer {
    /// Offers a packet to the switch; hands it back if the ring is full.
    pub fn inject(&mut self, p: Pkt) -> Result<(), Pkt> {
        self.to_switch.push(p).map_err(|rtrb::PushError::Full(p)| p)
    }

    /// Takes the next packet the switch sent, if any.
    pub fn collect(&mut self) -> Option<Pkt> {
        self.from_switch.pop().ok()
    }

    /// Packets waiting to be collected.
    pub fn pending(&self) -> usize {
        self.from_switch.slots()
    }

    /// Free slots towards the switch.
    pub fn room(&self) -> usize {
        self.to_switch.slots()
    }

    /// Frees every packet the switch sent; returns how many.
    pub fn discard(&mut self, pool: &mut Pool) -> usize {
        let n = self.from_switch.slots();
        if let Ok(chunk) = self.from_switch.read_chunk(n) {
            pool.free_all(chunk);
        }
        n
    }
}

impl<const N: usize> Port<N> for RingPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> String {
        "ring".to_string()
    }

    #[inline]
    fn rx(&mut self, id: PortId, pool: &mut Pool, batch: &mut Batch<N>) -> usize {
        let n = self.from_peer.slots().min(batch.room());
        let Ok(chunk) = self.from_peer.read_chunk(n) else { return 0 };
        for p in chunk {
            // Cannot fail: at most `room` packets were taken.
            if let Err(p) = batch.push(p, Meta::rx(id)) {
                pool.free(p);
            }
        }
        n
    }

    #[inline]
    fn tx(&mut self, pool: &mut Pool, batch: &mut Batch<N>) -> TxReport {
        let mut r = TxReport::default();
        batch.drain(|p, _| {
            let len = p.len() as u64;
            match self.to_peer.push(p) {
                Ok(()) => {
                    r.sent += 1;
                    r.sent_bytes += len;
                }
                Err(rtrb::PushError::Full(p)) => {
                    pool.free(p);
                    r.ring_full += 1;
                }
            }
        });
        r
    }

    fn drain(&mut self, pool: &mut Pool) {
        let n = self.from_peer.slots();
        if let Ok(chunk) = self.from_peer.read_chunk(n) {
            pool.free_all(chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::PoolConfig;

    #[test]
    fn rx_respects_room_and_tx_reports_full_ring() {
        let mut pool = Pool::new(PoolConfig { frames: 16, ..PoolConfig::default() }).unwrap();
        let (mut port, mut peer) = pair("p", 4);
        for i in 0..4u8 {
            let p = pool.alloc_from(&[i; 60]).unwrap();
            peer.inject(p).unwrap();
        }
        let extra = pool.alloc().unwrap();
        pool.free(peer.inject(extra).unwrap_err());
        let mut b: Batch<2> = Batch::new();
        assert_eq!(Port::<2>::rx(&mut port, 7, &mut pool, &mut b), 2);
        assert_eq!(b.meta()[0].in_port, 7);
        let r = port.tx(&mut pool, &mut b);
        assert_eq!((r.sent, r.sent_bytes, r.ring_full), (2, 120, 0));
        // Fill the peer's ring to its capacity of 4, then overflow by 2.
        assert_eq!(Port::<2>::rx(&mut port, 7, &mut pool, &mut b), 2);
        let _ = port.tx(&mut pool, &mut b);
        for _ in 0..2 {
            let p = pool.alloc().unwrap();
            b.push(p, Meta::rx(0)).unwrap();
        }
        let r = port.tx(&mut pool, &mut b);
        assert_eq!((r.sent, r.ring_full), (0, 2));
        assert_eq!(peer.discard(&mut pool), 4);
        assert_eq!(pool.in_use(), 0);
    }
}
