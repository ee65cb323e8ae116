//! The scheduler's wake-up times: a timing wheel with exact times, and a heap beyond it.
//!
//! Every class that is not green waits for the nanosecond its tokens suffice. At line rate
//! with thousands of classes, about one class in three changes colour per packet, so this
//! structure is on the per-packet path: a 4-ary heap cost a pop of log4(n) levels of four
//! comparisons (about 130 instructions per packet at 10 000 classes). The wheel makes both
//! ends O(1):
//!
//! * times are split into buckets of [`GRAIN_NS`]; [`BUCKETS`] of them from `base` (the
//!   bucket of the latest time looked at) form the wheel, a ring indexed by
//!   `(t / GRAIN_NS) % BUCKETS`. Each bucket is an intrusive singly linked list over the
//!   slots (no allocation; O(1) insert at the head, and an insert writes only the new
//!   entry, not a neighbour's line), and a two-level bitmap finds the next bucket with
//!   entries in two word operations. Removing an entry from the middle of a list walks its
//!   bucket, which only moving an entry earlier does (rare: the scheduler's wake times only
//!   grow while a class keeps its colour), and a bucket holds few entries (those of one
//!   microsecond);
//! * an entry keeps its exact time, so [`WaitWheel::pop_due`] hands out exactly the entries
//!   at or before `now`. The first call that finds the first bucket due walks its list once
//!   and moves every due entry to a *due list* (one more list, after the buckets), which the
//!   following calls empty: a bucket of k due entries costs one walk, not k. Due entries
//!   come in no particular order: the scheduler's decisions do not depend on the order in
//!   which due classes change colour, only on the set;
//! * times beyond the wheel's horizon (rare: a slow class deep in debt) wait in a
//!   [`WaitHeap`] and move into the wheel as `base` comes near them;
//! * `lower` is a time at or before every entry, so "is anything due?" is one comparison.

use super::sets::WaitHeap;

/// Width of a bucket, ns (a power of two).
const GRAIN_NS: u64 = 1 << GRAIN_SHIFT;
const GRAIN_SHIFT: u32 = 10;
/// Buckets in the wheel (a power of two; 4 096 x 1 024 ns: 4.2 ms ahead).
const BUCKETS: usize = 4096;
const HORIZON_NS: u64 = GRAIN_NS * BUCKETS as u64;
const WORDS: usize = BUCKETS / 64;
/// The due list's index in `heads` (and `Link::bucket` of its entries), after the buckets.
const DUE: usize = BUCKETS;

/// Marks an absent link or slot.
const NONE: u32 = u32::MAX;
/// `Link::bucket` of a slot waiting in the far heap.
const FAR: u32 = u32::MAX - 1;

/// A slot's entry: its time and its place in a bucket's list (16 bytes).
#[derive(Clone, Copy, Debug)]
struct Link {
    when: u64,
    next: u32,
    /// The bucket, `DUE`, `FAR`, or `NONE` (no entry).
    bucket: u32,
}

const EMPTY: Link = Link { when: 0, next: NONE, bucket: NONE };

/// An indexed set of (slot, time), at most one entry per slot (see the module docs).
#[derive(Debug)]
pub(crate) struct WaitWheel {
    links: Vec<Link>,
    /// The buckets' list heads, then the due list's (`DUE`).
    heads: Vec<u32>,
    /// Bit `b % 64` of word `b / 64`: bucket `b` has entries; bit `w` of `summary`: word `w`
    /// is non-zero.
    occupied: [u64; WORDS],
    summary: u64,
    /// The start of the wheel's first bucket (a multiple of `GRAIN_NS`). Wheel entries are
    /// in `base..base + HORIZON_NS`, far entries at or beyond `base + HORIZON_NS` when
    /// they were added.
    base: u64,
    far: WaitHeap,
    /// At or before every entry's time (`u64::MAX`: none).
    lower: u64,
    /// At or before the time of every entry not in the due list: `lower` once it is empty.
    rest: u64,
}

impl Default for WaitWheel {
    fn default() -> Self {
        WaitWheel {
            links: Vec::new(),
            heads: vec![NONE; BUCKETS + 1],
            occupied: [0; WORDS],
            summary: 0,
            base: 0,
            far: WaitHeap::default(),
            lower: u64::MAX,
            rest: u64::MAX,
        }
    }
}

#[inline]
fn bucket_of(t: u64) -> usize {
    (t >> GRAIN_SHIFT) as usize & (BUCKETS - 1)
}

impl WaitWheel {
    /// Empties the wheel, makes room for slots `0..slots` and starts it at `now` (allocates;
    /// not for the fast path).
    pub(crate) fn reset(&mut self, slots: usize, now: u64) {
        self.links.clear();
        self.links.resize(slots, EMPTY);
        self.heads.iter_mut().for_each(|h| *h = NONE);
        self.occupied = [0; WORDS];
        self.summary = 0;
        self.base = now & !(GRAIN_NS - 1);
        self.far.reset(slots);
        self.lower = u64::MAX;
        self.rest = u64::MAX;
    }

    /// Whether `slot` has an entry.
    #[inline]
    pub(crate) fn contains(&self, slot: u32) -> bool {
        self.links[slot as usize].bucket != NONE
    }

    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.links.iter().filter(|l| l.bucket != NONE).count()
    }

    /// A time at or before every entry's (`u64::MAX` when empty): nothing is due before it.
    #[inline]
    pub(crate) fn lower_bound(&self) -> u64 {
        self.lower
    }

    /// Adds `slot` at `t`, or moves its entry to `t` if that is earlier. Never allocates.
    #[inline(always)]
    pub(crate) fn set_earlier(&mut self, slot: u32, t: u64) {
        let l = self.links[slot as usize];
        if l.bucket != NONE {
            if t >= l.when {
                return;
            }
            self.remove(slot);
        }
        self.insert(slot, t);
    }

    #[inline(always)]
    fn insert(&mut self, slot: u32, t: u64) {
        self.lower = self.lower.min(t);
        self.rest = self.rest.min(t);
        if t >= self.base + HORIZON_NS {
            self.links[slot as usize] = Link { when: t, next: NONE, bucket: FAR };
            self.far.set_earlier(slot, t);
            return;
        }
        // A time before `base` (not made by the scheduler, whose times only grow) is filed
        // in the first bucket, where it is found first.
        let b = bucket_of(t.max(self.base));
        if self.heads[b] == NONE {
            self.occupied[b / 64] |= 1 << (b % 64);
            self.summary |= 1 << (b / 64);
        }
        self.link(slot, t, b);
    }

    /// Puts `slot` (no entry) at the head of list `b` (a bucket or `DUE`) at time `t`.
    #[inline]
    fn link(&mut self, slot: u32, t: u64, b: usize) {
        let next = self.heads[b];
        self.links[slot as usize] = Link { when: t, next, bucket: b as u32 };
        self.heads[b] = slot;
    }

    /// Takes `slot`'s entry out (it has one): from the middle of its list, which walks the
    /// list to the entry before it.
    fn remove(&mut self, slot: u32) {
        let l = self.links[slot as usize];
        self.links[slot as usize].bucket = NONE;
        if l.bucket == FAR {
            self.far.remove(slot);
            return;
        }
        let b = l.bucket as usize;
        let mut prev = NONE;
        let mut i = self.heads[b];
        while i != slot {
            prev = i;
            i = self.links[i as usize].next;
        }
        self.unlink(prev, l.next, b);
        if b != DUE {
            self.clear_if_empty(b);
        }
    }

    /// Clears bucket `b`'s occupancy bits if its list is empty.
    #[inline(always)]
    fn clear_if_empty(&mut self, b: usize) {
        if self.heads[b] == NONE {
            self.occupied[b / 64] &= !(1 << (b % 64));
            if self.occupied[b / 64] == 0 {
                self.summary &= !(1 << (b / 64));
            }
        }
    }

    /// Takes the entry after `prev` (the head when `prev` is `NONE`) out of list `b`, given
    /// the entry after it, `next` (the occupancy bit is the caller's).
    #[inline]
    fn unlink(&mut self, prev: u32, next: u32, b: usize) {
        if prev == NONE {
            self.heads[b] = next;
        } else {
            self.links[prev as usize].next = next;
        }
    }

    /// Takes out and returns one entry at or before `now`, if there is one.
    #[inline]
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<u32> {
        if now < self.lower {
            return None;
        }
        self.take_due().or_else(|| self.pop_due_slow(now))
    }

    /// Takes the due list's head out, if any; the bound is the rest's once the list is empty.
    #[inline]
    fn take_due(&mut self) -> Option<u32> {
        let d = self.heads[DUE];
        if d == NONE {
            return None;
        }
        let l = &mut self.links[d as usize];
        l.bucket = NONE;
        self.heads[DUE] = l.next;
        if self.heads[DUE] == NONE {
            self.lower = self.rest;
        }
        Some(d)
    }

    fn pop_due_slow(&mut self, now: u64) -> Option<u32> {
        loop {
            let b = bucket_of(self.base);
            let mut i = self.heads[b];
            if i != NONE {
                // One walk: every due entry moves to the due list; the earliest of the
                // others bounds the rest (all else is in later buckets, from
                // `base + GRAIN_NS` on).
                let mut later = self.base + GRAIN_NS;
                let mut prev = NONE;
                while i != NONE {
                    let l = self.links[i as usize];
                    if l.when <= now {
                        self.unlink(prev, l.next, b);
                        self.link(i, l.when, DUE);
                    } else {
                        later = later.min(l.when);
                        prev = i;
                    }
                    i = l.next;
                }
                self.clear_if_empty(b);
                self.rest = later;
                // Nothing due: the bound is the rest's, and the next call returns at once.
                if self.heads[DUE] == NONE {
                    self.lower = later;
                }
                return self.take_due();
            }
            // The first bucket is empty: move `base` to the next time with entries, or to
            // `now`'s bucket if that comes first.
            let next = self.first_bucket().map_or(u64::MAX, |n| self.bucket_start(n));
            let far = self.far.peek().map_or(u64::MAX, |(t, _)| t);
            let first = next.min(far & !(GRAIN_NS - 1));
            if first > now {
                self.advance_to(now & !(GRAIN_NS - 1));
                self.lower = next.min(far);
                self.rest = self.lower;
                return None;
            }
            self.advance_to(first);
        }
    }

    /// The first non-empty bucket from `base`'s on, round the wheel.
    #[inline]
    fn first_bucket(&self) -> Option<usize> {
        let b = bucket_of(self.base);
        self.first_from(b).or_else(|| self.first_from(0))
    }

    /// The start time of bucket `n` (within the horizon from `base`).
    #[inline]
    fn bucket_start(&self, n: usize) -> u64 {
        let ahead = (n + BUCKETS - bucket_of(self.base)) % BUCKETS;
        self.base + ahead as u64 * GRAIN_NS
    }

    /// The first non-empty bucket at or after `p` (no wrap).
    #[inline]
    fn first_from(&self, p: usize) -> Option<usize> {
        if p >= BUCKETS {
            return None;
        }
        let w = p / 64;
        let m = self.occupied[w] & (!0u64 << (p % 64));
        if m != 0 {
            return Some(w * 64 + m.trailing_zeros() as usize);
        }
        let s = if w + 1 >= 64 { 0 } else { self.summary & (!0u64 << (w + 1)) };
        if s == 0 {
            return None;
        }
        let w = s.trailing_zeros() as usize;
        Some(w * 64 + self.occupied[w].trailing_zeros() as usize)
    }

    /// Moves `base` forward to `to` (a multiple of `GRAIN_NS`; every bucket before it is
    /// empty) and brings the far entries now within the horizon into the wheel.
    fn advance_to(&mut self, to: u64) {
        if to <= self.base {
            return;
        }
        self.base = to;
        while let Some((t, slot)) = self.far.peek() {
            if t >= self.base + HORIZON_NS {
                break;
            }
            self.far.pop();
            self.insert(slot, t);
        }
    }

    /// The earliest entry's time (exact; a scan of one bucket).
    pub(crate) fn earliest(&self) -> Option<u64> {
        let far = self.far.peek().map(|(t, _)| t);
        let mut wheel = None;
        for b in [Some(DUE), self.first_bucket()].into_iter().flatten() {
            let mut i = self.heads[b];
            while i != NONE {
                let l = &self.links[i as usize];
                wheel = Some(wheel.map_or(l.when, |w: u64| w.min(l.when)));
                i = l.next;
            }
        }
        match (wheel, far) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn entries_come_due_exactly_at_their_time() {
        let mut w = WaitWheel::default();
        w.reset(8, 5_000);
        w.set_earlier(0, 5_100);
        w.set_earlier(1, 5_110); // same bucket as slot 0, later
        w.set_earlier(4, 5_900); // the next bucket
        w.set_earlier(2, 5_000 + 3 * HORIZON_NS); // far
        assert_eq!(w.earliest(), Some(5_100));
        assert_eq!(w.pop_due(5_099), None);
        assert_eq!(w.pop_due(5_100), Some(0));
        assert_eq!(w.pop_due(5_100), None);
        assert_eq!(w.lower_bound(), 5_110); // exact within the first bucket
        assert_eq!(w.pop_due(5_200), Some(1));
        assert_eq!(w.pop_due(5_200), None);
        assert_eq!(w.lower_bound(), 5_900); // the next bucket is now the first
        assert_eq!(w.pop_due(6_000), Some(4));
        assert_eq!(w.earliest(), Some(5_000 + 3 * HORIZON_NS));
        assert_eq!(w.pop_due(5_000 + 3 * HORIZON_NS - 1), None);
        assert_eq!(w.pop_due(5_000 + 3 * HORIZON_NS), Some(2));
        assert_eq!((w.len(), w.earliest()), (0, None));
        // Moving an entry earlier, from far into the wheel.
        w.set_earlier(3, 10 * HORIZON_NS);
        w.set_earlier(3, 4 * HORIZON_NS);
        w.set_earlier(3, 5 * HORIZON_NS); // later: ignored
        assert_eq!(w.earliest(), Some(4 * HORIZON_NS));
        assert_eq!(w.pop_due(4 * HORIZON_NS), Some(3));
        assert!(!w.contains(3));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Against a map of slot -> time, with time moving forward by small and large steps:
        /// `pop_due` hands out only entries due, and all of them; `earliest` and `contains`
        /// agree with the model.
        #[test]
        fn wait_wheel_matches_a_model(
            start in 0..10_000_000u64,
            ops in prop::collection::vec(
                (0..4u8, 0..64u32, prop_oneof![0..3_000u64, 0..20_000_000u64]), 1..600),
        ) {
            let mut w = WaitWheel::default();
            w.reset(64, start);
            let mut m: HashMap<u32, u64> = HashMap::new();
            let mut now = start;
            for (op, slot, d) in ops {
                match op {
                    0 | 1 => {
                        let t = now + d;
                        w.set_earlier(slot, t);
                        let e = m.entry(slot).or_insert(t);
                        *e = (*e).min(t);
                    }
                    2 => now += d / 4,
                    _ => {
                        now += d / 64;
                        while let Some(s) = w.pop_due(now) {
                            let t = m.remove(&s);
                            prop_assert!(t.is_some_and(|t| t <= now), "{s} at {t:?}, now {now}");
                        }
                        prop_assert!(m.values().all(|&t| t > now), "left due at {now}");
                    }
                }
                prop_assert_eq!(w.len(), m.len());
                prop_assert_eq!(w.earliest(), m.values().min().copied());
                prop_assert!(w.lower_bound() <= m.values().min().copied().unwrap_or(u64::MAX));
                for s in 0..64 {
                    prop_assert_eq!(w.contains(s), m.contains_key(&s));
                }
            }
        }
    }
}
