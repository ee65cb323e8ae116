//! The FDB's single writer.
//!
//! Workers find MACs to learn on the data path but never write the FDB: they push
//! [`LearnEvent`]s onto an SPSC ring each, and the learner (a control-plane task) drains the
//! rings, applies them through the [`FdbWriter`], and ages entries out. One writer keeps the
//! FDB's readers lock-free and makes the size limit and move detection exact.

use rtrb::{Consumer, Producer, RingBuffer};

use crate::pipeline::nodes::l2::LearnEvent;
use crate::tables::fdb::{FdbWriter, LearnOutcome};

/// Ring size between one worker and the learner: a burst of new MACs larger than this within
/// one learner pass is counted (`learn_overflow`) and retried by the next packet.
pub const LEARN_RING: usize = 4096;

/// A worker's end and the learner's end of a learn ring.
pub fn learn_ring() -> (Producer<LearnEvent>, Consumer<LearnEvent>) {
    RingBuffer::new(LEARN_RING)
}

/// Drains workers' learn rings into the FDB and ages it.
pub struct Learner {
    writer: FdbWriter,
    rings: Vec<Consumer<LearnEvent>>,
    aging_ns: u64,
    next_aging: u64,
}

impl Learner {
    /// A learner that ages out dynamic entries unseen for `aging_ns`.
    pub fn new(writer: FdbWriter, aging_ns: u64) -> Learner {
        Learner { writer, rings: Vec::new(), aging_ns, next_aging: 0 }
    }

    /// Adds a worker's ring.
    pub fn attach(&mut self, ring: Consumer<LearnEvent>) {
        self.rings.push(ring);
    }

    pub fn writer(&mut self) -> &mut FdbWriter {
        &mut self.writer
    }

    /// Applies every pending learn event and, once a second, ages the table. Returns the
    /// number of events applied.
    pub fn run_once(&mut self, now: u64) -> usize {
        let mut n = 0;
        for ring in &mut self.rings {
            while let Ok(ev) = ring.pop() {
                match self.writer.learn(ev.vlan, ev.mac, ev.port, now) {
                    LearnOutcome::Moved { from } => {
                        tracing::debug!(vlan = ev.vlan, mac = %ev.mac, from, to = ev.port, "MAC moved");
                    }
                    LearnOutcome::TableFull => {
                        tracing::debug!(vlan = ev.vlan, mac = %ev.mac, "FDB full, MAC not learned");
                    }
                    _ => {}
                }
                n += 1;
            }
        }
        if now >= self.next_aging {
            self.writer.age(now, self.aging_ns);
            self.next_aging = now + 1_000_000_000;
        }
        n
    }
}
