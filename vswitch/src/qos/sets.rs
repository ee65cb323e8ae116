//! The scheduler's two index structures, over class slots (`0..n`):
//!
//! * [`ActiveSet`]: a hierarchical bitmap (64-way, four levels, so up to 2^24 slots).
//!   Insert and remove touch one word per level and stop as soon as a word stays non-zero
//!   (they report whether the set was or became empty); [`ActiveSet::next_from`] finds the
//!   first member at or after a position in at most four word operations each way. The
//!   scheduler keeps its rows and feeds in these, so a class joining or leaving a list
//!   touches only the bitmap, never another class (as the links of an intrusive list
//!   would), and a DRR round visits members in slot order from a cursor.
//! * [`WaitHeap`]: an indexed 4-ary min-heap of (time, slot), for the wake-up times beyond
//!   the wait wheel's horizon (`super::wheel`): half the depth of a binary heap, and the
//!   smallest of four children picked with selects rather than branches (a pop is about
//!   log4(n) steps, without a mispredicted comparison at each).

/// Marks an empty position (in [`WaitHeap`]'s index).
const NONE: u32 = u32::MAX;

/// A set of slots `0..n` (`n` at most 2^24) as a four-level 64-way bitmap: bit `i` of a
/// level's words says whether word `i` of the level below is non-zero. The levels are fixed
/// (small sets have one-word upper levels), so every operation is straight-line code.
#[derive(Clone, Debug, Default)]
pub(crate) struct ActiveSet {
    /// Levels 0, 1 and 2, one after another.
    words: Vec<u64>,
    /// Where levels 1 and 2 start in `words`.
    off1: usize,
    off2: usize,
    /// Level 3: one word.
    top: u64,
}

/// The bits of a word at and above position `p`'s.
#[inline]
fn from_bit(p: usize) -> u64 {
    !0u64 << (p & 63)
}

impl ActiveSet {
    /// An empty set over slots `0..n` (`n` at most 2^24).
    pub(crate) fn new(n: usize) -> Self {
        assert!(n <= 1 << 24, "{n} slots");
        let l0 = n.div_ceil(64).max(1);
        let l1 = l0.div_ceil(64);
        let l2 = l1.div_ceil(64);
        ActiveSet { words: vec![0; l0 + l1 + l2], off1: l0, off2: l0 + l1, top: 0 }
    }

    /// Adds `i` (not a member); returns whether the set was empty.
    #[inline(always)]
    pub(crate) fn insert(&mut self, i: u32) -> bool {
        let i = i as usize;
        debug_assert!(!self.contains(i as u32), "{i} is already a member");
        let w = &mut self.words[i >> 6];
        let was = *w;
        *w = was | 1 << (i & 63);
        if was != 0 {
            return false;
        }
        let w = &mut self.words[self.off1 + (i >> 12)];
        let was = *w;
        *w = was | 1 << ((i >> 6) & 63);
        if was != 0 {
            return false;
        }
        let w = &mut self.words[self.off2 + (i >> 18)];
        let was = *w;
        *w = was | 1 << ((i >> 12) & 63);
        if was != 0 {
            return false;
        }
        let was = self.top;
        self.top = was | 1 << (i >> 18);
        was == 0
    }

    /// Removes `i` (a member); returns whether the set is now empty.
    #[inline(always)]
    pub(crate) fn remove(&mut self, i: u32) -> bool {
        let i = i as usize;
        debug_assert!(self.contains(i as u32), "{i} is not a member");
        let w = &mut self.words[i >> 6];
        *w &= !(1 << (i & 63));
        if *w != 0 {
            return false;
        }
        let w = &mut self.words[self.off1 + (i >> 12)];
        *w &= !(1 << ((i >> 6) & 63));
        if *w != 0 {
            return false;
        }
        let w = &mut self.words[self.off2 + (i >> 18)];
        *w &= !(1 << ((i >> 12) & 63));
        if *w != 0 {
            return false;
        }
        self.top &= !(1 << (i >> 18));
        self.top == 0
    }

    /// Whether `i` is a member.
    #[inline]
    pub(crate) fn contains(&self, i: u32) -> bool {
        let i = i as usize;
        i >> 6 < self.off1 && self.words[i >> 6] & (1 << (i & 63)) != 0
    }

    /// Whether the set is empty.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.top == 0
    }

    /// The lowest set bit of level-0 word `w`, which is non-zero.
    #[inline]
    fn low0(&self, w: usize) -> u32 {
        ((w << 6) | self.words[w].trailing_zeros() as usize) as u32
    }

    /// The level-0 word of the lowest bit of level-1 word `w1`, which is non-zero.
    #[inline]
    fn low1(&self, w1: usize) -> usize {
        (w1 << 6) | self.words[self.off1 + w1].trailing_zeros() as usize
    }

    /// The level-1 word of the lowest bit of level-2 word `w2`, which is non-zero.
    #[inline]
    fn low2(&self, w2: usize) -> usize {
        (w2 << 6) | self.words[self.off2 + w2].trailing_zeros() as usize
    }

    /// The smallest member at or after `from`.
    #[inline(always)]
    pub(crate) fn next_from(&self, from: u32) -> Option<u32> {
        let p0 = from as usize;
        let w0 = p0 >> 6;
        if w0 < self.off1 {
            let m = self.words[w0] & from_bit(p0);
            if m != 0 {
                return Some(((w0 << 6) | m.trailing_zeros() as usize) as u32);
            }
        }
        self.next_word_from(w0 + 1)
    }

    /// The smallest member in the level-0 words from `p1` on (the slow half of `next_from`).
    #[inline(never)]
    fn next_word_from(&self, p1: usize) -> Option<u32> {
        let w1 = p1 >> 6;
        if self.off1 + w1 < self.off2 {
            let m = self.words[self.off1 + w1] & from_bit(p1);
            if m != 0 {
                return Some(self.low0((w1 << 6) | m.trailing_zeros() as usize));
            }
        }
        let p2 = w1 + 1;
        let w2 = p2 >> 6;
        if self.off2 + w2 < self.words.len() {
            let m = self.words[self.off2 + w2] & from_bit(p2);
            if m != 0 {
                let w1 = (w2 << 6) | m.trailing_zeros() as usize;
                return Some(self.low0(self.low1(w1)));
            }
        }
        let p3 = w2 + 1;
        if p3 >= 64 {
            return None;
        }
        let m = self.top & from_bit(p3);
        if m == 0 {
            return None;
        }
        Some(self.low0(self.low1(self.low2(m.trailing_zeros() as usize))))
    }

    /// The first member in `lo..hi` at or after `cursor`, else the first from `lo` (a round
    /// robin over the range that starts at the cursor).
    #[inline]
    pub(crate) fn next_in(&self, lo: u32, hi: u32, cursor: u32) -> Option<u32> {
        match self.next_from(cursor) {
            Some(s) if s < hi => Some(s),
            _ => self.next_from(lo).filter(|&s| s < hi),
        }
    }
}

/// An indexed 4-ary min-heap of (time, slot), at most one entry per slot.
#[derive(Debug, Default)]
pub(crate) struct WaitHeap {
    heap: Vec<(u64, u32)>,
    /// Each slot's index in `heap`, or `NONE`.
    pos: Vec<u32>,
}

impl WaitHeap {
    /// Empties the heap and makes room for slots `0..slots` (allocates; not for the fast path).
    pub(crate) fn reset(&mut self, slots: usize) {
        self.heap.clear();
        self.heap.reserve(slots);
        self.pos.clear();
        self.pos.resize(slots, NONE);
    }

    /// The earliest entry.
    #[inline]
    pub(crate) fn peek(&self) -> Option<(u64, u32)> {
        self.heap.first().copied()
    }

    /// Whether `slot` has an entry.
    #[cfg(test)]
    pub(crate) fn contains(&self, slot: u32) -> bool {
        self.pos[slot as usize] != NONE
    }

    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Adds `slot` at `t`, or moves its entry to `t` if that is earlier. Never allocates
    /// (room for every slot is reserved by [`WaitHeap::reset`]).
    #[inline]
    pub(crate) fn set_earlier(&mut self, slot: u32, t: u64) {
        let p = self.pos[slot as usize];
        if p == NONE {
            debug_assert!(self.heap.len() < self.heap.capacity(), "heap would grow");
            self.heap.push((t, slot));
            self.up(self.heap.len() - 1);
        } else if t < self.heap[p as usize].0 {
            self.heap[p as usize].0 = t;
            self.up(p as usize);
        }
    }

    /// Takes the earliest entry.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<(u64, u32)> {
        let top = *self.heap.first()?;
        self.pos[top.1 as usize] = NONE;
        let last = self.heap.pop().expect("non-empty");
        if !self.heap.is_empty() {
            self.heap[0] = last;
            self.down(0);
        }
        Some(top)
    }

    /// Takes `slot`'s entry out (it has one).
    pub(crate) fn remove(&mut self, slot: u32) {
        let p = self.pos[slot as usize] as usize;
        self.pos[slot as usize] = NONE;
        let last = self.heap.pop().expect("non-empty");
        if p < self.heap.len() {
            self.heap[p] = last;
            self.up(p);
            let i = self.pos[last.1 as usize] as usize;
            self.down(i);
        }
    }

    #[inline]
    fn place(&mut self, i: usize, e: (u64, u32)) {
        self.heap[i] = e;
        self.pos[e.1 as usize] = i as u32;
    }

    #[inline]
    fn up(&mut self, mut i: usize) {
        let x = self.heap[i];
        while i > 0 {
            let p = (i - 1) / 4;
            if self.heap[p].0 <= x.0 {
                break;
            }
            self.place(i, self.heap[p]);
            i = p;
        }
        self.place(i, x);
    }

    #[inline]
    fn down(&mut self, mut i: usize) {
        let x = self.heap[i];
        let n = self.heap.len();
        loop {
            let c = 4 * i + 1;
            if c >= n {
                break;
            }
            // The smallest child, by selects rather than branches (ties: the first).
            let (mut m, mut mk) = (c, self.heap[c].0);
            for j in c + 1..(c + 4).min(n) {
                let k = self.heap[j].0;
                let less = k < mk;
                m = if less { j } else { m };
                mk = if less { k } else { mk };
            }
            if mk >= x.0 {
                break;
            }
            self.place(i, self.heap[m]);
            i = m;
        }
        self.place(i, x);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn set_sizes_and_bounds() {
        for n in [0, 1, 64, 65, 4096, 4097, 10_000, 1 << 18, (1 << 18) + 1] {
            let mut s = ActiveSet::new(n);
            assert!(s.is_empty());
            assert_eq!(s.next_from(0), None);
            let last = n.max(1) as u32 - 1;
            assert!(s.insert(last), "{n}: empty before");
            assert_eq!(s.next_from(0), Some(last), "{n}");
            assert_eq!(s.next_from(last + 1), None, "{n}");
            if last > 0 {
                assert!(!s.insert(0));
                assert_eq!(s.next_from(1), Some(last), "{n}");
                assert!(!s.remove(last));
                assert_eq!(s.next_from(1), None, "{n}");
            }
        }
        let mut s = ActiveSet::new(1 << 24);
        assert!(s.insert((1 << 24) - 1));
        assert!(!s.insert(5));
        assert_eq!(s.next_from(6), Some((1 << 24) - 1));
        assert!(!s.remove((1 << 24) - 1));
        assert_eq!(s.next_from(6), None);
        assert!(s.remove(5));
        assert_eq!(s.next_from(1 << 24), None);
    }

    #[test]
    fn next_in_wraps_within_the_range() {
        let mut s = ActiveSet::new(10_000);
        for i in [3, 700, 4100, 4200, 9999] {
            s.insert(i);
        }
        assert_eq!(s.next_in(700, 4200, 701), Some(4100));
        assert_eq!(s.next_in(700, 4200, 4101), Some(700)); // 4200 is outside: wraps
        assert_eq!(s.next_in(4101, 9999, 4101), Some(4200));
        assert_eq!(s.next_in(4201, 9999, 4201), None);
        assert_eq!(s.next_in(0, 10_000, 10_000), Some(3));
        s.remove(4100);
        s.remove(4200);
        assert_eq!(s.next_from(701), Some(9999));
        assert!(!s.contains(4100) && s.contains(9999));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Against a `BTreeSet`: every operation, on sizes across one to three levels.
        #[test]
        fn active_set_matches_a_btreeset(
            n in prop_oneof![1..64usize, 64..5000usize, 5000..20_000usize, 260_000..270_000usize],
            ops in prop::collection::vec((any::<bool>(), any::<u32>()), 1..400),
        ) {
            let mut s = ActiveSet::new(n);
            let mut m = BTreeSet::new();
            for (add, x) in ops {
                let i = x % n as u32;
                if add && !m.contains(&i) {
                    prop_assert_eq!(s.insert(i), m.is_empty());
                    m.insert(i);
                } else if !add && m.contains(&i) {
                    m.remove(&i);
                    prop_assert_eq!(s.remove(i), m.is_empty());
                }
                let from = (x >> 7) % (n as u32 + 1);
                prop_assert_eq!(s.next_from(from), m.range(from..).next().copied());
                prop_assert_eq!(s.is_empty(), m.is_empty());
                prop_assert_eq!(s.contains(i), m.contains(&i));
                let (lo, hi) = (i.min(from), i.max(from) + 1);
                let want = m.range(from.max(lo)..hi).next().or_else(|| m.range(lo..hi).next());
                prop_assert_eq!(s.next_in(lo, hi, from.max(lo)), want.copied());
            }
        }

        /// Against a map of slot -> time: pops come out in time order, earlier-only moves,
        /// removals.
        #[test]
        fn wait_heap_matches_a_model(
            ops in prop::collection::vec((0..4u8, 0..50u32, 0..1000u64), 1..500),
        ) {
            let mut h = WaitHeap::default();
            h.reset(50);
            let mut m: HashMap<u32, u64> = HashMap::new();
            for (op, slot, t) in ops {
                if op < 2 {
                    h.set_earlier(slot, t);
                    let e = m.entry(slot).or_insert(t);
                    *e = (*e).min(t);
                } else if op == 2 {
                    if m.remove(&slot).is_some() {
                        h.remove(slot);
                    }
                } else {
                    let got = h.pop();
                    let min = m.values().min().copied();
                    prop_assert_eq!(got.map(|g| g.0), min);
                    if let Some((t, s)) = got {
                        prop_assert_eq!(m.remove(&s), Some(t));
                    }
                }
                prop_assert_eq!(h.len(), m.len());
                prop_assert_eq!(h.peek().map(|p| p.0), m.values().min().copied());
                for s in 0..50 {
                    prop_assert_eq!(h.contains(s), m.contains_key(&s));
                }
            }
        }
    }
}
