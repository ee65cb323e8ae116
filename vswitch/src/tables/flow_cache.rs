//! A per-worker exact-match flow cache, in front of the slow-path tables (like OVS's EMC).
//!
//! Each worker owns one [`FlowCache`] (`&mut self`, never shared, so no atomics). It maps a
//! flow key `K` (whatever the parser extracts: addresses, ports, VLAN, in-port...) to the
//! pipeline's decision `V` for that flow, so that the second and later packets of a flow skip
//! the FDB and snapshot lookups.
//!
//! # Layout
//!
//! `capacity` entries (a power of two, at least [`WAYS`]) allocated once by [`FlowCache::new`];
//! nothing allocates afterwards. The entries form `capacity / WAYS` buckets of [`WAYS`] (4)
//! ways. The bucket of a flow is chosen by the low bits of the caller's 32-bit flow hash (the
//! one the parser already computed, e.g. the NIC's RSS hash or a software hash of the 5-tuple);
//! the full hash is also stored in the entry and compared before the key, so most misses cost
//! no key comparison.
//!
//! # Generations
//!
//! Every entry remembers the generation it was computed under. The caller folds the
//! generations its decision depends on (the config snapshot's and the FDB's, see
//! [`crate::tables::fdb::Fdb::generation`]) into one `u64` and passes it to every call; the cache
//! only compares it for equality. A lookup that finds its key under another generation counts a
//! miss and an invalidation and drops the entry. Load the generations *before* computing a
//! decision to insert, and insert it under those, so that a table change racing with the
//! computation leaves a stale, never a wrong, entry.
//!
//! # Replacement
//!
//! An insert of a key already in its bucket overwrites that entry. Otherwise it takes, in
//! order: an empty way; a way holding an entry of another generation (dead anyway: counted as
//! an invalidation); else the least recently used way of the bucket (counted as an eviction).
//! Recency is a per-cache `u64` tick stamped on every hit and insert: exact LRU within the
//! bucket for the price of four comparisons, and a `u64` never wraps.

/// Ways per bucket.
pub const WAYS: usize = 4;

#[derive(Clone, Copy)]
struct Entry<K, V> {
    hash: u32,
    key: K,
    value: V,
    generation: u64,
    hits: u64,
    last_used: u64,
}

/// Counters since construction (`clear` keeps them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowCacheStats {
    pub hits: u64,
    pub misses: u64,
    pub inserts: u64,
    /// Live entries replaced to make room (LRU victims).
    pub evictions: u64,
    /// Entries dropped because their generation was no longer current (found by a lookup, or
    /// replaced by an insert).
    pub invalidations: u64,
}

/// One live entry, as dumped by `vswitchctl show flows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowCacheEntry<K, V> {
    pub hash: u32,
    pub key: K,
    pub value: V,
    /// Lookups that hit this entry since it was inserted.
    pub hits: u64,
}

/// A set-associative exact-match cache. See the module doc.
pub struct FlowCache<K, V> {
    entries: Box<[Option<Entry<K, V>>]>,
    bucket_mask: usize,
    tick: u64,
    stats: FlowCacheStats,
}

impl<K: Copy + Eq, V: Copy> FlowCache<K, V> {
    /// A cache of `capacity` entries, rounded up to a power of two of at least [`WAYS`].
    /// Allocates here, and never again.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(WAYS).next_power_of_two();
        let entries: Box<[Option<Entry<K, V>>]> = (0..capacity).map(|_| None).collect();
        FlowCache {
            entries,
            bucket_mask: capacity / WAYS - 1,
            tick: 0,
            stats: FlowCacheStats::default(),
        }
    }

    /// The number of entries.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    #[inline]
    fn bucket(&mut self, hash: u32) -> &mut [Option<Entry<K, V>>] {
        let start = (hash as usize & self.bucket_mask) * WAYS;
        &mut self.entries[start..start + WAYS]
    }

    /// The cached value of `key` (whose flow hash is `hash`) if it was computed under
    /// `generation`. A match under another generation is a miss, and drops the entry.
    #[inline]
    pub fn lookup(&mut self, hash: u32, key: &K, generation: u64) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        let mut result = None;
        let mut invalidated = false;
        for way in self.bucket(hash).iter_mut() {
            if let Some(e) = way {
                if e.hash == hash && e.key == *key {
                    if e.generation == generation {
                        e.hits += 1;
                        e.last_used = tick;
                        result = Some(e.value);
                    } else {
                        *way = None;
                        invalidated = true;
                    }
                    break;
                }
            }
        }
        if result.is_some() {
            self.stats.hits += 1;
        } else {
            self.stats.misses += 1;
            if invalidated {
                self.stats.invalidations += 1;
            }
        }
        result
    }

    /// Caches `value` for `key` under `generation`, replacing as the module doc says.
    pub fn insert(&mut self, hash: u32, key: K, value: V, generation: u64) {
        self.tick += 1;
        let entry = Entry { hash, key, value, generation, hits: 0, last_used: self.tick };
        let bucket = self.bucket(hash);
        // Same key first, then empty, then stale, then LRU: pick the way with the lowest rank.
        let mut victim = 0;
        let mut best = (u8::MAX, u64::MAX);
        for (i, way) in bucket.iter().enumerate() {
            let rank = match way {
                Some(e) if e.hash == hash && e.key == key => (0, 0),
                None => (1, 0),
                Some(e) if e.generation != generation => (2, 0),
                Some(e) => (3, e.last_used),
            };
            if rank < best {
                best = rank;
                victim = i;
                if rank.0 == 0 {
                    break;
                }
            }
        }
        bucket[victim] = Some(entry);
        self.stats.inserts += 1;
        match best.0 {
            2 => self.stats.invalidations += 1,
            3 => self.stats.evictions += 1,
            _ => {}
        }
    }

    /// Empties the cache (keeps the counters and the allocation).
    pub fn clear(&mut self) {
        self.entries.iter_mut().for_each(|e| *e = None);
    }

    /// The counters.
    pub fn stats(&self) -> FlowCacheStats {
        self.stats
    }

    /// The entries computed under `generation`, with their hit counts, for dumping.
    pub fn iter_live(&self, generation: u64) -> impl Iterator<Item = FlowCacheEntry<K, V>> + '_ {
        self.entries.iter().filter_map(move |e| match e {
            Some(e) if e.generation == generation => {
                Some(FlowCacheEntry { hash: e.hash, key: e.key, value: e.value, hits: e.hits })
            }
            _ => None,
        })
    }

    /// How many entries were computed under `generation`.
    pub fn len_live(&self, generation: u64) -> usize {
        self.entries.iter().filter(|e| matches!(e, Some(e) if e.generation == generation)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Key {
        src: u32,
        dst: u32,
        port: u16,
    }

    fn k(n: u32) -> Key {
        Key { src: n, dst: !n, port: 80 }
    }

    #[test]
    fn sizes_round_up() {
        assert_eq!(FlowCache::<u32, u32>::new(0).capacity(), WAYS);
        assert_eq!(FlowCache::<u32, u32>::new(1000).capacity(), 1024);
        assert_eq!(FlowCache::<u32, u32>::new(4096).capacity(), 4096);
    }

    #[test]
    fn hit_after_insert() {
        let mut c = FlowCache::new(1024);
        assert_eq!(c.lookup(7, &k(1), 1), None);
        c.insert(7, k(1), 42u16, 1);
        assert_eq!(c.lookup(7, &k(1), 1), Some(42));
        // Same hash, other key: a miss, not a false hit.
        assert_eq!(c.lookup(7, &k(2), 1), None);
        // Same key, other hash (a caller bug, but must not alias).
        assert_eq!(c.lookup(8, &k(1), 1), None);
        // Re-insert overwrites in place.
        c.insert(7, k(1), 43, 1);
        assert_eq!(c.lookup(7, &k(1), 1), Some(43));
        assert_eq!(c.len_live(1), 1);
        assert_eq!(
            c.stats(),
            FlowCacheStats { hits: 2, misses: 3, inserts: 2, evictions: 0, invalidations: 0 }
        );
    }

    #[test]
    fn generation_change_is_a_miss_and_invalidates() {
        let mut c = FlowCache::new(64);
        c.insert(1, k(1), 'a', 10);
        c.insert(2, k(2), 'b', 10);
        assert_eq!(c.lookup(1, &k(1), 10), Some('a'));
        assert_eq!(c.lookup(1, &k(1), 11), None);
        assert_eq!(c.stats().invalidations, 1);
        // The entry is gone, even under the old generation.
        assert_eq!(c.lookup(1, &k(1), 10), None);
        assert_eq!(c.stats().invalidations, 1);
        assert_eq!(c.len_live(10), 1);
        assert_eq!(c.len_live(11), 0);
        c.insert(1, k(1), 'c', 11);
        assert_eq!(c.lookup(1, &k(1), 11), Some('c'));
    }

    #[test]
    fn full_bucket_evicts_least_recently_used() {
        let mut c = FlowCache::new(16); // 4 buckets
        let h = 5; // every key in one bucket
        for i in 0..WAYS as u32 {
            c.insert(h, k(i), i, 1);
        }
        // Touch all but k(1): it becomes the LRU.
        for i in [0, 2, 3] {
            assert_eq!(c.lookup(h, &k(i), 1), Some(i));
        }
        c.insert(h, k(9), 9, 1);
        assert_eq!(c.stats().evictions, 1);
        assert_eq!(c.lookup(h, &k(1), 1), None);
        for i in [0, 2, 3, 9] {
            assert_eq!(c.lookup(h, &k(i), 1), Some(i));
        }
        // Other buckets were untouched.
        assert_eq!(c.len_live(1), WAYS);
        c.insert(h + 1, k(100), 100, 1);
        assert_eq!(c.stats().evictions, 1);
    }

    #[test]
    fn stale_entries_are_replaced_before_live_ones() {
        let mut c = FlowCache::new(4); // one bucket
        for i in 0..3u32 {
            c.insert(i, k(i), i, 1);
        }
        c.insert(3, k(3), 3, 2);
        // k(0..3) are stale under generation 2: replaced first, no eviction of k(3).
        c.insert(4, k(4), 4, 2);
        c.insert(5, k(5), 5, 2);
        c.insert(6, k(6), 6, 2);
        assert_eq!(c.stats().evictions, 0);
        assert_eq!(c.stats().invalidations, 3);
        assert_eq!(c.len_live(2), 4);
        assert_eq!(c.lookup(3, &k(3), 2), Some(3));
        c.insert(7, k(7), 7, 2);
        assert_eq!(c.stats().evictions, 1);
        // k(4) was the least recently used.
        assert_eq!(c.lookup(4, &k(4), 2), None);
    }

    #[test]
    fn hit_counters_and_dump() {
        let mut c = FlowCache::new(256);
        c.insert(10, k(1), 1u8, 3);
        c.insert(20, k(2), 2u8, 3);
        c.insert(30, k(3), 3u8, 2);
        for _ in 0..5 {
            c.lookup(10, &k(1), 3);
        }
        c.lookup(20, &k(2), 3);
        let mut live: Vec<_> = c.iter_live(3).collect();
        live.sort_by_key(|e| e.hash);
        assert_eq!(
            live,
            vec![
                FlowCacheEntry { hash: 10, key: k(1), value: 1, hits: 5 },
                FlowCacheEntry { hash: 20, key: k(2), value: 2, hits: 1 },
            ]
        );
        // A re-insert starts counting again.
        c.insert(10, k(1), 1, 3);
        assert_eq!(c.iter_live(3).find(|e| e.hash == 10).unwrap().hits, 0);
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.inserts), (6, 0, 4));
    }

    #[test]
    fn clear_keeps_stats_and_capacity() {
        let mut c = FlowCache::new(32);
        for i in 0..32u32 {
            c.insert(i, i, i, 0);
        }
        assert_eq!(c.len_live(0), 32);
        c.clear();
        assert_eq!(c.len_live(0), 0);
        assert_eq!(c.lookup(1, &1, 0), None);
        assert_eq!(c.capacity(), 32);
        assert_eq!(c.stats().inserts, 32);
    }

    #[test]
    fn many_flows_stay_consistent() {
        // Random traffic over more flows than fit: whatever is found is the right value.
        let mut c = FlowCache::new(256);
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..100_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let flow = (rng % 1000) as u32;
            let hash = flow.wrapping_mul(0x9e37_79b9);
            match c.lookup(hash, &k(flow), 7) {
                Some(v) => assert_eq!(v, flow * 3),
                None => c.insert(hash, k(flow), flow * 3, 7),
            }
        }
        let s = c.stats();
        assert_eq!(s.hits + s.misses, 100_000);
        assert_eq!(s.inserts, s.misses);
        assert!(s.hits > 0 && s.evictions > 0);
        assert_eq!(c.len_live(7), 256);
    }
}
