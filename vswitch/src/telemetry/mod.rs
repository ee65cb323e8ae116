//! Counters and drop reasons.
//!
//! Every worker owns one [`WorkerCounters`], shared with the control plane through an `Arc`.
//! Only that worker writes it, so a counter update is a relaxed load and store (no locked
//! read-modify-write, no cache-line ping-pong between workers); readers on the control side see
//! values at most one batch old. The data path counts, it never logs.

mod drop;

pub use drop::DropReason;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::types::{PortId, MAX_PORTS};

/// A counter with one writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker calls this: a plain load and store suffice because no
    /// other thread writes the counter; `Relaxed` because readers need no ordering with other
    /// memory, only an eventually current value.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Overwrites the value (for gauges, owner only).
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
}

/// Traffic and drops of one port as seen by one worker.
#[derive(Debug)]
pub struct PortCounters {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
    /// Drops attributed to this port (the ingress port, or the egress port for tx-side drops),
    /// indexed by [`DropReason::index`].
    pub drops: [Counter; DropReason::COUNT],
}

impl Default for PortCounters {
    fn default() -> Self {
        PortCounters {
            rx_packets: Counter::default(),
            rx_bytes: Counter::default(),
            tx_packets: Counter::default(),
            tx_bytes: Counter::default(),
            drops: std::array::from_fn(|_| Counter::default()),
        }
    }
}

impl PortCounters {
    /// Total drops over every reason.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().map(Counter::get).sum()
    }

    /// A plain copy of the values.
    pub fn snapshot(&self) -> PortStats {
        PortStats {
            rx_packets: self.rx_packets.get(),
            rx_bytes: self.rx_bytes.get(),
            tx_packets: self.tx_packets.get(),
            tx_bytes: self.tx_bytes.get(),
            drops: std::array::from_fn(|i| self.drops[i].get()),
        }
    }
}

/// Plain values of a [`PortCounters`], summed over workers by the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: [u64; DropReason::COUNT],
}

impl Default for PortStats {
    fn default() -> Self {
        PortStats {
            rx_packets: 0,
            rx_bytes: 0,
            tx_packets: 0,
            tx_bytes: 0,
            drops: [0; DropReason::COUNT],
        }
    }
}

impl PortStats {
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops[r.index()]
    }

    /// Adds another worker's view of the same port.
    pub fn merge(&mut self, o: &PortStats) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += b;
        }
    }
}

/// Everything one worker counts.
#[derive(Debug)]
pub struct WorkerCounters {
    ports: Box<[PortCounters]>,
    /// Loop iterations.
    pub iterations: Counter,
    /// Iterations that moved at least one packet.
    pub busy_iterations: Counter,
    /// Time spent in iterations that moved packets, and in the others (ns).
    pub busy_ns: Counter,
    pub idle_ns: Counter,
    /// Packets received by this worker, all ports.
    pub packets: Counter,
    /// Learn events lost because the learner's ring was full.
    pub learn_overflow: Counter,
    /// Flow cache outcomes.
    pub flow_hits: Counter,
    pub flow_misses: Counter,
    /// Free frames in the worker's pool (a gauge, refreshed at housekeeping).
    pub pool_free: Counter,
    /// Packets addressed to the switch itself and consumed (ARP replies to its requests).
    pub local_consumed: Counter,
    /// Packets the switch generated or answered itself: ARP replies and requests, ICMP echo
    /// replies and ICMP errors.
    pub arp_replies: Counter,
    pub arp_requests: Counter,
    pub icmp_echo_replies: Counter,
    pub icmp_errors: Counter,
    /// Packets routed (L3) and VXLAN packets encapsulated and decapsulated.
    pub routed: Counter,
    pub vxlan_encap: Counter,
    pub vxlan_decap: Counter,
    /// QoS plans a worker's scheduler refused (the previous classes kept running).
    pub qos_apply_errors: Counter,
}

impl Default for WorkerCounters {
    fn default() -> Self {
        WorkerCounters {
            ports: (0..MAX_PORTS).map(|_| PortCounters::default()).collect(),
            iterations: Counter::default(),
            busy_iterations: Counter::default(),
            busy_ns: Counter::default(),
            idle_ns: Counter::default(),
            packets: Counter::default(),
            learn_overflow: Counter::default(),
            flow_hits: Counter::default(),
            flow_misses: Counter::default(),
            pool_free: Counter::default(),
            local_consumed: Counter::default(),
            arp_replies: Counter::default(),
            arp_requests: Counter::default(),
            icmp_echo_replies: Counter::default(),
            icmp_errors: Counter::default(),
            routed: Counter::default(),
            vxlan_encap: Counter::default(),
            vxlan_decap: Counter::default(),
            qos_apply_errors: Counter::default(),
        }
    }
}

impl WorkerCounters {
    /// The counters of `port`. Port ids are below [`MAX_PORTS`] by construction (the control
    /// plane assigns them); an id past it maps to the last row rather than panicking.
    #[inline]
    pub fn port(&self, port: PortId) -> &PortCounters {
        let i = (port as usize).min(MAX_PORTS - 1);
        &self.ports[i]
    }

    /// Counts one drop of `reason` on `port`.
    #[inline]
    pub fn drop(&self, port: PortId, reason: DropReason) {
        self.port(port).drops[reason.index()].add(1);
    }

    /// Zeroes a port's row (a port id is being reused for a new port).
    pub fn reset_port(&self, port: PortId) {
        let p = self.port(port);
        for c in [&p.rx_packets, &p.rx_bytes, &p.tx_packets, &p.tx_bytes] {
            c.set(0);
        }
        for c in &p.drops {
            c.set(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_and_merge() {
        let w = WorkerCounters::default();
        w.port(3).rx_packets.add(2);
        w.drop(3, DropReason::EthTruncated);
        w.drop(3, DropReason::EthTruncated);
        let s = w.port(3).snapshot();
        assert_eq!(s.rx_packets, 2);
        assert_eq!(s.drop_count(DropReason::EthTruncated), 2);
        let mut t = PortStats::default();
        t.merge(&s);
        t.merge(&s);
        assert_eq!(t.dropped(), 4);
        w.reset_port(3);
        assert_eq!(w.port(3).dropped(), 0);
        // Out-of-range ids do not panic.
        w.drop(u16::MAX, DropReason::TxError);
    }
}
