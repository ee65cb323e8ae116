//! The neighbour table: IPv4 address -> MAC address and port, for the L3 stage's next hops
//! (local pods, and peers or the underlay gateway on the uplink).
//!
//! Like the FDB it has one writer, the control thread's learner, fed by the workers through
//! SPSC rings of [`NeighEvent`]s (a worker sees ARP packets; it never writes a table). Unlike
//! the FDB it changes at the rate of ARP exchanges, not of packets, so it reaches the workers
//! as an immutable [`Neighbors`] snapshot swapped in whole (`ArcSwap`): the writer keeps the
//! master copy with refresh times, and publishes a new snapshot only when a mapping appears,
//! changes or expires, never for a mere refresh.
//!
//! Entries are learned by gleaning ARP: requests and replies that reach the switch's gateway
//! or underlay address, and every ARP on the pod network. An entry not refreshed for the
//! configured timeout is forgotten; the next packet to it waits in the worker's resolution
//! queue while the worker asks again. Linux hosts refresh their own entry for the gateway by
//! a unicast ARP probe every few minutes, which refreshes ours through the same gleaning.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::types::{MacAddr, PortId};

/// A neighbour learned by a worker, on its way to the learner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighEvent {
    /// IPv4 address, host byte order.
    pub ip: u32,
    pub mac: MacAddr,
    pub port: PortId,
}

/// One resolved neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbor {
    pub mac: MacAddr,
    pub port: PortId,
}

/// Hashes a `u32` key with one multiplication (Fibonacci hashing): keys are IPv4 addresses
/// the switch's own control plane admits, and a collision only costs a probe.
#[derive(Default)]
pub struct IpHasher(u64);

impl Hasher for IpHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, v: u32) {
        self.0 = u64::from(v).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(32);
    }
}

type IpMap<V> = HashMap<u32, V, BuildHasherDefault<IpHasher>>;

/// The neighbours the workers read: an immutable snapshot.
#[derive(Debug, Clone, Default)]
pub struct Neighbors {
    map: IpMap<Neighbor>,
    /// Increases with every published change, so a worker can tell that its queued packets
    /// may now resolve.
    pub generation: u64,
}

impl Neighbors {
    #[inline]
    pub fn get(&self, ip: u32) -> Option<Neighbor> {
        self.map.get(&ip).copied()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every entry, sorted by address.
    pub fn entries(&self) -> Vec<(u32, Neighbor)> {
        let mut v: Vec<_> = self.map.iter().map(|(k, n)| (*k, *n)).collect();
        v.sort_by_key(|e| e.0);
        v
    }
}

/// The writer's master copy: every neighbour with the time it was last confirmed.
#[derive(Debug, Default)]
pub struct NeighTable {
    map: IpMap<(Neighbor, u64)>,
    generation: u64,
    changed: bool,
}

impl NeighTable {
    /// Records that `ev` was seen at `now` (ns). True if the mapping is new or changed.
    pub fn learn(&mut self, ev: NeighEvent, now: u64) -> bool {
        let n = Neighbor { mac: ev.mac, port: ev.port };
        let changed = match self.map.insert(ev.ip, (n, now)) {
            Some((old, _)) => old != n,
            None => true,
        };
        self.changed |= changed;
        changed
    }

    /// Forgets entries not confirmed within `timeout` ns of `now`; returns how many.
    pub fn expire(&mut self, now: u64, timeout: u64) -> usize {
        let before = self.map.len();
        self.map.retain(|_, (_, seen)| now.saturating_sub(*seen) < timeout);
        let n = before - self.map.len();
        self.changed |= n > 0;
        n
    }

    /// Forgets every neighbour behind `port` (the port was removed).
    pub fn purge_port(&mut self, port: PortId) -> usize {
        let before = self.map.len();
        self.map.retain(|_, (n, _)| n.port != port);
        let n = before - self.map.len();
        self.changed |= n > 0;
        n
    }

    /// Forgets everything (the node's L3 configuration changed).
    pub fn clear(&mut self) {
        self.changed |= !self.map.is_empty();
        self.map.clear();
    }

    /// A new snapshot if anything changed since the last one.
    pub fn publish(&mut self) -> Option<Neighbors> {
        if !std::mem::take(&mut self.changed) {
            return None;
        }
        self.generation += 1;
        Some(Neighbors {
            map: self.map.iter().map(|(k, (n, _))| (*k, *n)).collect(),
            generation: self.generation,
        })
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn ev(ip: u32, m: u8, port: PortId) -> NeighEvent {
        NeighEvent { ip, mac: MacAddr([2, 0, 0, 0, 0, m]), port }
    }

    #[test]
    fn publishes_only_on_change_and_expires_unrefreshed_entries() {
        let mut t = NeighTable::default();
        assert!(t.publish().is_none());
        assert!(t.learn(ev(1, 1, 3), 0));
        let s = t.publish().expect("new entry");
        assert_eq!(s.get(1), Some(Neighbor { mac: MacAddr([2, 0, 0, 0, 0, 1]), port: 3 }));
        assert_eq!(s.generation, 1);
        // A refresh is not a change.
        assert!(!t.learn(ev(1, 1, 3), 10 * S));
        assert!(t.publish().is_none());
        // A move is.
        assert!(t.learn(ev(1, 2, 4), 20 * S));
        assert!(t.learn(ev(2, 5, 4), 20 * S));
        assert_eq!(t.publish().unwrap().get(1).unwrap().port, 4);
        // Refreshed at 20 s: still there at 49 s with a 30 s timeout, gone at 50 s.
        assert_eq!(t.expire(49 * S, 30 * S), 0);
        assert_eq!(t.expire(50 * S, 30 * S), 2);
        let s = t.publish().unwrap();
        assert!(s.is_empty());
        assert_eq!(s.generation, 3);
    }

    #[test]
    fn purge_removes_a_ports_neighbours() {
        let mut t = NeighTable::default();
        t.learn(ev(1, 1, 3), 0);
        t.learn(ev(2, 2, 4), 0);
        assert_eq!(t.purge_port(3), 1);
        let s = t.publish().unwrap();
        assert_eq!(s.entries().len(), 1);
        assert_eq!(s.get(2).unwrap().port, 4);
    }
}
