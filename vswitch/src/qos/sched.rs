//! The hierarchical scheduler (HTB semantics; see the module documentation of [`crate::qos`]).
//!
//! Data structures, after Linux `sch_htb.c`:
//!
//! * every class has a rate bucket (guarantee), a ceil bucket and optionally a packet bucket,
//!   and a colour: green (rate and ceil non-negative: may send on its own), yellow (rate
//!   short, ceil not: may borrow), red (ceil or pps short: waits);
//! * an *active* class is one with backlog below it, per priority (`prio_activity`). An active
//!   class that is not red sits in its parent's *feed* for each active priority (and the
//!   parent becomes active for it); a green one also sits in the row of its level; a red one
//!   sits nowhere. (HTB takes green classes out of the feed; keeping them there keeps their
//!   DRR place across green/yellow flips, and changes nothing else: see `gain`.) Rows and
//!   feeds are intrusive circular lists (O(1) insert, remove, rotate);
//! * every class that is not green is in a min-heap keyed by a time at or before the one its
//!   colour will change (the wait queue, O(log n); lazy: see `update_color`);
//! * dequeue runs the due colour changes, then takes the lowest level with a non-empty row
//!   and in it the highest priority (bit masks: O(1)), and walks down the feeds to a leaf
//!   (O(depth)); each list on the way is served deficit round robin, quantum proportional to
//!   the weight;
//! * the sent packet is charged to the leaf and every ancestor: ceil always, rate only at and
//!   above the level it was served from (below it, the bytes were borrowed).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;

use super::bucket::{ByteBucket, PacketBucket, MAX_BURST_BYTES, MAX_BURST_PACKETS};
use super::policer::{PoliceVerdict, Policer};

/// Priorities: 0 (served first) to `NPRIO - 1`.
pub const NPRIO: usize = 8;
/// Classes on a path from a root to a leaf, at most.
pub const MAX_DEPTH: usize = 8;
/// The largest class id.
pub const MAX_CLASS_ID: u32 = (1 << 24) - 1;
/// Bytes of DRR quantum per unit of weight (one full-size Ethernet frame).
pub const QUANTUM_PER_WEIGHT: u32 = 1514;

/// The largest weight (keeps the quantum in an `i32`).
pub const MAX_WEIGHT: u32 = 1_000_000;

const NONE: u32 = u32::MAX;

/// A class's id, chosen by the control plane (at most [`MAX_CLASS_ID`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClassId(pub u32);

impl fmt::Display for ClassId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a class does with traffic above its limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Delay it in the class's queue (until the queue is full).
    #[default]
    Shape,
    /// Drop it at enqueue (counted as policed or pps_limit): packets above the ceiling
    /// (burst included) or the pps limit never enter the queue. Admitted packets are still
    /// scheduled (the queue only absorbs contention with siblings).
    Police,
}

/// A class's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassConfig {
    /// The parent (`None`: a root, e.g. the node uplink).
    pub parent: Option<ClassId>,
    /// Guaranteed rate, bits per second.
    pub rate_bps: u64,
    /// Ceiling, bits per second (at least the rate).
    pub ceil_bps: u64,
    /// Burst of the rate and ceil buckets, bytes.
    pub burst_bytes: u64,
    /// Borrowing priority, 0 (first) to 7.
    pub prio: u8,
    /// Share of spare capacity among borrowers of equal priority (DRR quantum =
    /// `weight * QUANTUM_PER_WEIGHT` bytes).
    pub weight: u32,
    /// Packets-per-second limit.
    pub pps: Option<u64>,
    /// Burst of the pps limit, packets (used when `pps` is set).
    pub pps_burst: u64,
    /// Minimum bytes charged per packet.
    pub mpu: u32,
    /// Queue bound, packets (leaves).
    pub queue_limit: u32,
    /// Shape or police.
    pub mode: Mode,
}

impl ClassConfig {
    /// A shaping class with the given guarantee and ceiling, a 15 000-byte burst, priority 0,
    /// weight 1, no pps limit, no MPU, a 1 024-packet queue.
    pub fn new(parent: Option<ClassId>, rate_bps: u64, ceil_bps: u64) -> Self {
        ClassConfig {
            parent,
            rate_bps,
            ceil_bps,
            burst_bytes: 15_000,
            prio: 0,
            weight: 1,
            pps: None,
            pps_burst: 1,
            mpu: 0,
            queue_limit: 1024,
            mode: Mode::Shape,
        }
    }
}

/// A change to the set of classes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Create the class or change it (its queue, tokens and counters are kept).
    Set(ClassId, ClassConfig),
    /// Remove the class (its queued items are handed back).
    Remove(ClassId),
}

/// The setting an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// The class id (unknown, or above [`MAX_CLASS_ID`]).
    Id,
    /// The parent (unknown, a cycle, too deep, or a leaf with a backlog).
    Parent,
    /// The guaranteed rate (zero, or below the sum of the children's rates).
    Rate,
    /// The ceiling (zero, or below the rate).
    Ceil,
    /// The burst (zero or too large).
    Burst,
    /// The priority (above 7).
    Prio,
    /// The weight (zero or above [`MAX_WEIGHT`]).
    Weight,
    /// The pps limit (zero).
    Pps,
    /// The pps burst (zero or too large).
    PpsBurst,
    /// The queue limit (zero).
    QueueLimit,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Id => "id",
            Field::Parent => "parent",
            Field::Rate => "rate",
            Field::Ceil => "ceil",
            Field::Burst => "burst",
            Field::Prio => "prio",
            Field::Weight => "weight",
            Field::Pps => "pps",
            Field::PpsBurst => "pps_burst",
            Field::QueueLimit => "queue_limit",
        })
    }
}

/// An inconsistent setting; nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("class {class}: {reason}")]
pub struct QosError {
    /// The class at fault.
    pub class: ClassId,
    /// The setting at fault.
    pub field: Field,
    /// What is wrong, starting with the field's name.
    pub reason: String,
}

/// Why a packet was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The class's queue was at its limit.
    QueueFull,
    /// A policing class's byte limit.
    Policed,
    /// A policing class's pps limit.
    PpsLimit,
    /// No such class.
    UnknownClass,
    /// The class has children (only leaves queue).
    NotLeaf,
}

/// A class's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Bytes sent by the class (or through it, for an inner class).
    pub sent_bytes: u64,
    /// Packets sent by or through the class.
    pub sent_packets: u64,
    /// Packets in the queue now.
    pub queued_packets: u64,
    /// Bytes in the queue now.
    pub queued_bytes: u64,
    /// Drops because the queue was full.
    pub dropped_queue_full: u64,
    /// Drops by the policer's byte limit.
    pub dropped_policed: u64,
    /// Drops by the policer's pps limit.
    pub dropped_pps: u64,
    /// Bytes (as charged, MPU applied) sent while the class was over its rate, on an
    /// ancestor's spare capacity.
    pub borrowed_bytes: u64,
    /// Bytes (as charged) this class lent to borrowing descendants.
    pub lent_bytes: u64,
}

/// Totals over the scheduler (conservation: `enqueued == dequeued + removed + queued`;
/// drops are packets refused at enqueue and never counted as enqueued).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedStats {
    /// Packets accepted by [`Scheduler::enqueue`].
    pub enqueued: u64,
    /// Packets handed out by [`Scheduler::dequeue`].
    pub dequeued: u64,
    /// Packets refused by [`Scheduler::enqueue`] (every reason).
    pub dropped: u64,
    /// Packets handed back because their class was removed.
    pub removed: u64,
    /// Packets queued now.
    pub queued: u64,
    /// Packets refused because their class did not exist.
    pub dropped_unknown_class: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Color {
    Green,
    Yellow,
    Red,
}

#[derive(Clone, Copy, Debug)]
struct Link {
    prev: u32,
    next: u32,
}

const UNLINKED: Link = Link { prev: NONE, next: NONE };

#[derive(Debug)]
/// Laid out for the fast path (`repr(C)`, 128-byte aligned so the first two cache lines are a
/// pair the adjacent-line prefetcher fetches together): line 0 is all enqueue reads and
/// writes; line 1 the shaping buckets; line 2 the send counters; then the per-priority blocks
/// (priorities 0 and 1 share line 3); the rest is cold.
#[repr(C, align(128))]
struct Class<T> {
    // line 0
    queue: VecDeque<(T, u32)>,
    /// Copies of `cfg.queue_limit`, `cfg.prio` and `cfg.mode == Police`, for the fast path.
    queue_limit: u32,
    children: u32,
    parent: u32,
    id: ClassId,
    prio: u8,
    police: bool,
    level: u8,
    color: Color,
    /// Priorities with backlog reachable through this class (HTB's `prio_activity`).
    prio_activity: u8,
    queued_bytes: u64,
    // line 1
    rate: ByteBucket,
    ceil: ByteBucket,
    // line 2
    mpu: u32,
    quantum: i32,
    sent_bytes: u64,
    sent_packets: u64,
    borrowed_bytes: u64,
    lent_bytes: u64,
    pps: Option<Box<PacketBucket>>,
    /// Per priority: list links, DRR deficits, feed head (one 32-byte block each).
    pp: [PerPrio; NPRIO],
    // cold
    dropped_queue_full: u64,
    dropped_policed: u64,
    dropped_pps: u64,
    policer: Option<Box<Policer>>,
    cfg: Box<ClassConfig>,
}

/// A class's state for one priority.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(32))]
struct PerPrio {
    /// Links in a row ([0]) and in the parent's feed ([1]).
    links: [Link; 2],
    /// DRR deficit for the class's place in a row ([0]) or in its parent's feed ([1]): kept
    /// apart so sends on its own rate do not spend its borrowing turns.
    deficit: [i32; 2],
    /// Head of this (inner) class's feed.
    feed: u32,
}

const PER_PRIO: PerPrio = PerPrio { links: [UNLINKED; 2], deficit: [0; 2], feed: NONE };

/// Which list a class is in for a priority: a row (per level) or a parent's feed.
#[derive(Clone, Copy)]
enum List {
    Row(usize),
    Feed(u32),
}

impl List {
    #[inline]
    fn index(self) -> usize {
        match self {
            List::Row(_) => 0,
            List::Feed(_) => 1,
        }
    }
}

/// An indexed binary min-heap of (wake time, slot): the classes that are not green.
#[derive(Debug, Default)]
struct WaitHeap {
    heap: Vec<(u64, u32)>,
    pos: Vec<u32>,
}

impl WaitHeap {
    fn ensure(&mut self, slots: usize) {
        if self.pos.len() < slots {
            self.pos.resize(slots, NONE);
        }
        let want = slots.saturating_sub(self.heap.len());
        self.heap.reserve(want);
    }

    fn clear(&mut self) {
        for &(_, s) in &self.heap {
            self.pos[s as usize] = NONE;
        }
        self.heap.clear();
    }

    #[inline]
    fn peek(&self) -> Option<(u64, u32)> {
        self.heap.first().copied()
    }

    /// Adds `slot` at `t`, or moves its entry to `t` if that is earlier.
    #[inline]
    fn set_earlier(&mut self, slot: u32, t: u64) {
        let p = self.pos[slot as usize];
        if p == NONE {
            self.heap.push((t, slot));
            let i = self.heap.len() - 1;
            self.pos[slot as usize] = i as u32;
            self.up(i);
        } else if t < self.heap[p as usize].0 {
            self.heap[p as usize].0 = t;
            self.up(p as usize);
        }
    }

    #[inline]
    fn remove(&mut self, slot: u32) {
        let p = self.pos[slot as usize];
        if p == NONE {
            return;
        }
        let i = p as usize;
        self.pos[slot as usize] = NONE;
        let last = self.heap.pop().expect("heap holds the slot");
        if i < self.heap.len() {
            let old = self.heap[i].0;
            self.heap[i] = last;
            self.pos[last.1 as usize] = i as u32;
            if last.0 < old {
                self.up(i);
            } else {
                self.down(i);
            }
        }
    }

    fn up(&mut self, mut i: usize) {
        let x = self.heap[i];
        while i > 0 {
            let p = (i - 1) / 2;
            if self.heap[p].0 <= x.0 {
                break;
            }
            self.heap[i] = self.heap[p];
            self.pos[self.heap[i].1 as usize] = i as u32;
            i = p;
        }
        self.heap[i] = x;
        self.pos[x.1 as usize] = i as u32;
    }

    fn down(&mut self, mut i: usize) {
        let x = self.heap[i];
        let n = self.heap.len();
        loop {
            let l = 2 * i + 1;
            if l >= n {
                break;
            }
            let r = l + 1;
            let c = if r < n && self.heap[r].0 < self.heap[l].0 { r } else { l };
            if self.heap[c].0 >= x.0 {
                break;
            }
            self.heap[i] = self.heap[c];
            self.pos[self.heap[i].1 as usize] = i as u32;
            i = c;
        }
        self.heap[i] = x;
        self.pos[x.1 as usize] = i as u32;
    }
}

#[inline]
fn bits(mut m: u8) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if m == 0 {
            None
        } else {
            let b = m.trailing_zeros() as usize;
            m &= m - 1;
            Some(b)
        }
    })
}

/// The hierarchical scheduler of one egress port, generic over the queued item.
#[derive(Debug)]
pub struct Scheduler<T> {
    classes: Vec<Option<Class<T>>>,
    free: Vec<u32>,
    slot_of: Vec<u32>,
    rows: [[u32; NPRIO]; MAX_DEPTH],
    row_mask: [u8; MAX_DEPTH],
    level_mask: u8,
    wait: WaitHeap,
    now: u64,
    stats: SchedStats,
}

impl<T> Default for Scheduler<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Scheduler<T> {
    /// An empty scheduler.
    pub fn new() -> Self {
        Scheduler {
            classes: Vec::new(),
            free: Vec::new(),
            slot_of: Vec::new(),
            rows: [[NONE; NPRIO]; MAX_DEPTH],
            row_mask: [0; MAX_DEPTH],
            level_mask: 0,
            wait: WaitHeap::default(),
            now: 0,
            stats: SchedStats::default(),
        }
    }

    #[inline]
    fn cls(&self, s: u32) -> &Class<T> {
        self.classes[s as usize].as_ref().expect("live slot")
    }

    #[inline]
    fn cls_mut(&mut self, s: u32) -> &mut Class<T> {
        self.classes[s as usize].as_mut().expect("live slot")
    }

    #[inline]
    fn slot(&self, id: ClassId) -> Option<u32> {
        match self.slot_of.get(id.0 as usize) {
            Some(&s) if s != NONE => Some(s),
            _ => None,
        }
    }

    #[inline]
    fn advance(&mut self, now_ns: u64) -> u64 {
        self.now = self.now.max(now_ns);
        self.now
    }

    // ----- intrusive lists -----

    #[inline]
    fn head(&self, l: List, prio: usize) -> u32 {
        match l {
            List::Row(level) => self.rows[level][prio],
            List::Feed(p) => self.cls(p).pp[prio].feed,
        }
    }

    #[inline]
    fn set_head(&mut self, l: List, prio: usize, h: u32) {
        match l {
            List::Row(level) => {
                self.rows[level][prio] = h;
                if h == NONE {
                    self.row_mask[level] &= !(1 << prio);
                    if self.row_mask[level] == 0 {
                        self.level_mask &= !(1 << level);
                    }
                } else {
                    self.row_mask[level] |= 1 << prio;
                    self.level_mask |= 1 << level;
                }
            }
            List::Feed(p) => self.cls_mut(p).pp[prio].feed = h,
        }
    }

    /// Appends `c` at the tail (just before the DRR position).
    fn list_insert(&mut self, l: List, prio: usize, c: u32) {
        let x = l.index();
        let h = self.head(l, prio);
        if h == NONE {
            self.cls_mut(c).pp[prio].links[x] = Link { prev: c, next: c };
            self.set_head(l, prio, c);
        } else {
            let tail = self.cls(h).pp[prio].links[x].prev;
            self.cls_mut(c).pp[prio].links[x] = Link { prev: tail, next: h };
            self.cls_mut(tail).pp[prio].links[x].next = c;
            self.cls_mut(h).pp[prio].links[x].prev = c;
        }
    }

    fn list_remove(&mut self, l: List, prio: usize, c: u32) {
        let x = l.index();
        let Link { prev, next } = self.cls(c).pp[prio].links[x];
        debug_assert!(next != NONE, "removing an unlinked class");
        self.cls_mut(c).pp[prio].links[x] = UNLINKED;
        if next == c {
            self.set_head(l, prio, NONE);
            return;
        }
        self.cls_mut(prev).pp[prio].links[x].next = next;
        self.cls_mut(next).pp[prio].links[x].prev = prev;
        if self.head(l, prio) == c {
            self.set_head(l, prio, next);
        }
    }

    // ----- activity (after HTB's activate_prios / deactivate_prios) -----
    //
    // An active class (backlog below it for the priorities in `prio_activity`) that is not
    // red is in its parent's feed for those priorities; a green one is also in its level's
    // row. Unlike HTB, a class stays in its parent's feed while it flips between green and
    // yellow, so its DRR place survives the flips (a class flips each time it earns a packet's
    // worth of its own rate). It is still never *served* from a feed while green: green active
    // classes sit in rows of lower levels, which are served first.

    fn row_add(&mut self, c: u32, m: u8) {
        let level = self.cls(c).level as usize;
        for prio in bits(m) {
            self.list_insert(List::Row(level), prio, c);
        }
    }

    fn row_remove(&mut self, c: u32, m: u8) {
        let level = self.cls(c).level as usize;
        for prio in bits(m) {
            self.list_remove(List::Row(level), prio, c);
        }
    }

    /// `c` (not red) became active for the priorities `m`.
    fn gain(&mut self, mut c: u32, mut m: u8) {
        while m != 0 {
            let (color, parent) = (self.cls(c).color, self.cls(c).parent);
            if color == Color::Red {
                return;
            }
            if color == Color::Green {
                self.row_add(c, m);
            }
            if parent == NONE {
                return;
            }
            let mut newly = 0u8;
            for prio in bits(m) {
                if self.cls(parent).pp[prio].feed == NONE {
                    newly |= 1 << prio;
                }
                self.list_insert(List::Feed(parent), prio, c);
            }
            self.cls_mut(parent).prio_activity |= newly;
            c = parent;
            m = newly;
        }
    }

    /// `c` (not red) stopped being active for the priorities `m`.
    fn lose(&mut self, mut c: u32, mut m: u8) {
        while m != 0 {
            let (color, parent) = (self.cls(c).color, self.cls(c).parent);
            if color == Color::Red {
                return;
            }
            if color == Color::Green {
                self.row_remove(c, m);
            }
            if parent == NONE {
                return;
            }
            let mut emptied = 0u8;
            for prio in bits(m) {
                self.list_remove(List::Feed(parent), prio, c);
                if self.cls(parent).pp[prio].feed == NONE {
                    emptied |= 1 << prio;
                }
            }
            self.cls_mut(parent).prio_activity &= !emptied;
            c = parent;
            m = emptied;
        }
    }

    /// Refills `c`'s buckets to `now`, recomputes its colour (moving it between lists) and its
    /// place in the wait heap.
    #[inline]
    fn update_color(&mut self, c: u32, now: u64) {
        let k = self.cls_mut(c);
        k.rate.refill(now);
        k.ceil.refill(now);
        let mut pps_ok = true;
        if let Some(p) = &mut k.pps {
            p.refill(now);
            pps_ok = p.conforms();
        }
        let new = if !k.ceil.conforms() || !pps_ok {
            Color::Red
        } else if k.rate.conforms() {
            Color::Green
        } else {
            Color::Yellow
        };
        let old = k.color;
        let m = k.prio_activity;
        if new != old {
            if m == 0 {
                k.color = new;
            } else {
                match (old, new) {
                    (Color::Green, Color::Yellow) => self.row_remove(c, m),
                    (Color::Yellow, Color::Green) => self.row_add(c, m),
                    (_, Color::Red) => self.lose(c, m),
                    _ => {}
                }
                self.cls_mut(c).color = new;
                if old == Color::Red {
                    self.gain(c, m);
                }
            }
        }
        // The wait heap is lazy: a class turning green keeps its entry (dropped when it comes
        // due), and while a class keeps its colour its wake time only moves later (charges add
        // debt), so its earlier entry stands (it comes due early, and is pushed again). Only a
        // new entry or a change of colour computes the wake time (a division).
        if new != Color::Green {
            let queued = self.wait.pos[c as usize] != NONE;
            if !queued || new != old {
                let k = self.cls(c);
                let wake = match new {
                    Color::Red => k
                        .ceil
                        .ns_until_conform()
                        .max(k.pps.as_ref().map_or(0, |p| p.ns_until_conform())),
                    _ => k.rate.ns_until_conform(),
                };
                self.wait.set_earlier(c, now + wake);
            }
        }
    }

    fn run_events(&mut self, now: u64) {
        while let Some((t, c)) = self.wait.peek() {
            if t > now {
                break;
            }
            self.wait.remove(c);
            self.update_color(c, now);
        }
    }

    // ----- the fast path -----

    /// Queues `item` (a packet of `len` bytes) on leaf `class` at `now_ns`, or hands it back
    /// with the reason it was dropped (counted). Allocates nothing.
    pub fn enqueue(
        &mut self,
        class: ClassId,
        item: T,
        len: u32,
        now_ns: u64,
    ) -> Result<(), (T, DropReason)> {
        let now = self.advance(now_ns);
        let Some(s) = self.slot(class) else {
            self.stats.dropped += 1;
            self.stats.dropped_unknown_class += 1;
            return Err((item, DropReason::UnknownClass));
        };
        let k = self.cls_mut(s);
        let reason = if k.children > 0 {
            Some(DropReason::NotLeaf)
        } else if k.queue.len() >= k.queue_limit as usize {
            k.dropped_queue_full += 1;
            Some(DropReason::QueueFull)
        } else if k.police {
            match k.policer.as_mut().expect("policing class").check(len, now) {
                Ok(()) => None,
                Err(PoliceVerdict::Bytes) => {
                    k.dropped_policed += 1;
                    Some(DropReason::Policed)
                }
                Err(PoliceVerdict::Packets) => {
                    k.dropped_pps += 1;
                    Some(DropReason::PpsLimit)
                }
            }
        } else {
            None
        };
        if let Some(r) = reason {
            self.stats.dropped += 1;
            return Err((item, r));
        }
        debug_assert!(k.queue.len() < k.queue.capacity(), "queue would grow");
        k.queue.push_back((item, len));
        k.queued_bytes += u64::from(len);
        let was_idle = k.queue.len() == 1;
        let prio = k.prio;
        self.stats.enqueued += 1;
        self.stats.queued += 1;
        if was_idle {
            self.cls_mut(s).prio_activity = 1 << prio;
            self.gain(s, 1 << prio);
        }
        Ok(())
    }

    /// The next packet to send at `now_ns`, with its class and length, or `None` when every
    /// backlogged class must wait (see [`Scheduler::next_wake_ns`]). Allocates nothing.
    pub fn dequeue(&mut self, now_ns: u64) -> Option<(ClassId, T, u32)> {
        let now = self.advance(now_ns);
        if self.stats.queued == 0 {
            return None;
        }
        self.run_events(now);
        let level = self.level_mask.trailing_zeros() as usize;
        if level >= MAX_DEPTH {
            return None;
        }
        let prio = self.row_mask[level].trailing_zeros() as usize;
        Some(self.dequeue_tree(level, prio, now))
    }

    /// Dequeues up to `max` packets at `now_ns`, handing each to `out`; returns how many.
    pub fn dequeue_batch(
        &mut self,
        now_ns: u64,
        max: usize,
        mut out: impl FnMut(ClassId, T, u32),
    ) -> usize {
        let mut n = 0;
        while n < max {
            match self.dequeue(now_ns) {
                Some((c, t, l)) => out(c, t, l),
                None => break,
            }
            n += 1;
        }
        n
    }

    fn dequeue_tree(&mut self, level: usize, prio: usize, now: u64) -> (ClassId, T, u32) {
        let mut path = [NONE; MAX_DEPTH];
        let mut n = 0;
        let mut c = self.rows[level][prio];
        loop {
            path[n] = c;
            n += 1;
            let k = self.cls(c);
            if k.level == 0 {
                break;
            }
            c = k.pp[prio].feed;
            debug_assert!(c != NONE, "active inner class with an empty feed");
        }
        let leaf = c;
        let k = self.cls_mut(leaf);
        let (item, len) = k.queue.pop_front().expect("active leaf has a backlog");
        k.queued_bytes -= u64::from(len);
        let empty = k.queue.is_empty();
        let id = k.id;
        self.stats.dequeued += 1;
        self.stats.queued -= 1;
        // DRR along the path: a class that has spent its quantum yields its list's head.
        for i in 0..n {
            let c = path[i];
            let k = self.cls_mut(c);
            let d = &mut k.pp[prio].deficit[usize::from(i > 0)];
            *d = d.saturating_sub(i32::try_from(len).unwrap_or(i32::MAX));
            if *d < 0 {
                *d += k.quantum;
                let list = if i == 0 { List::Row(level) } else { List::Feed(path[i - 1]) };
                let next = k.pp[prio].links[usize::from(i > 0)].next;
                self.set_head(list, prio, next);
            }
        }
        if empty {
            let m = self.cls(leaf).prio_activity;
            self.lose(leaf, m);
            self.cls_mut(leaf).prio_activity = 0;
        }
        self.charge(leaf, level as u8, len, now);
        (id, item, len)
    }

    fn charge(&mut self, leaf: u32, level: u8, len: u32, now: u64) {
        let mut c = leaf;
        while c != NONE {
            let k = self.cls_mut(c);
            let cost = u64::from(len.max(k.mpu));
            k.rate.refill(now);
            k.ceil.refill(now);
            if k.level >= level {
                k.rate.consume(cost);
                if k.level == level && level > 0 {
                    k.lent_bytes += cost;
                }
            } else {
                k.borrowed_bytes += cost;
            }
            k.ceil.consume(cost);
            if let Some(p) = &mut k.pps {
                p.refill(now);
                p.consume(1);
            }
            k.sent_bytes += u64::from(len);
            k.sent_packets += 1;
            let parent = k.parent;
            self.update_color(c, now);
            c = parent;
        }
    }

    /// When the earliest waiting class changes colour, if anything is queued: the time to call
    /// [`Scheduler::dequeue`] again after it returned `None`.
    pub fn next_wake_ns(&self) -> Option<u64> {
        if self.stats.queued == 0 {
            return None;
        }
        self.wait.peek().map(|(t, _)| t)
    }

    // ----- control path -----

    /// Validates `changes` as a whole against the running classes and applies them all, or
    /// none (the error names the class and the setting). Running classes keep their queues,
    /// tokens (refilled at the old rate up to `now_ns`) and counters; items queued on removed
    /// classes are handed back.
    pub fn apply(
        &mut self,
        changes: impl IntoIterator<Item = Change>,
        now_ns: u64,
    ) -> Result<Vec<T>, QosError> {
        let now = self.advance(now_ns);
        let mut want: BTreeMap<ClassId, ClassConfig> = self.configs();
        let mut touched = HashSet::new();
        for ch in changes {
            match ch {
                Change::Set(id, cfg) => {
                    touched.insert(id);
                    want.insert(id, cfg);
                }
                Change::Remove(id) => {
                    if want.remove(&id).is_none() {
                        return Err(err(id, Field::Id, "id: no such class".into()));
                    }
                }
            }
        }
        self.validate(&want)?;

        // Commit. Clear every list and the wait heap; they are rebuilt below.
        self.rows = [[NONE; NPRIO]; MAX_DEPTH];
        self.row_mask = [0; MAX_DEPTH];
        self.level_mask = 0;
        self.wait.clear();
        let mut handed_back = Vec::new();
        let live: Vec<ClassId> = self.configs().into_keys().collect();
        for id in live {
            if !want.contains_key(&id) {
                let s = self.slot(id).expect("live class");
                let k = self.classes[s as usize].take().expect("live slot");
                self.slot_of[id.0 as usize] = NONE;
                self.free.push(s);
                self.stats.removed += k.queue.len() as u64;
                self.stats.queued -= k.queue.len() as u64;
                handed_back.extend(k.queue.into_iter().map(|(t, _)| t));
            }
        }
        for (&id, cfg) in &want {
            match self.slot(id) {
                Some(s) if touched.contains(&id) => {
                    let k = self.cls_mut(s);
                    k.rate.set(cfg.rate_bps, cfg.burst_bytes, now);
                    k.ceil.set(cfg.ceil_bps, cfg.burst_bytes, now);
                    k.pps = match (k.pps.take(), cfg.pps) {
                        (Some(mut b), Some(r)) => {
                            b.set(r, cfg.pps_burst, now);
                            Some(b)
                        }
                        (None, Some(r)) => {
                            Some(Box::new(PacketBucket::packets(r, cfg.pps_burst, now)))
                        }
                        (_, None) => None,
                    };
                    k.policer = match (k.policer.take(), cfg.mode) {
                        (Some(mut p), Mode::Police) => {
                            p.set(cfg.ceil_bps, cfg.burst_bytes, cfg.mpu, police_pps(cfg), now);
                            Some(p)
                        }
                        (None, Mode::Police) => Some(Box::new(new_policer(cfg, now))),
                        (_, Mode::Shape) => None,
                    };
                    if cfg.mode == Mode::Police {
                        k.pps = None; // the policer enforces it
                    }
                    let want_cap = cfg.queue_limit as usize;
                    if k.queue.capacity() < want_cap {
                        k.queue.reserve_exact(want_cap - k.queue.len());
                    }
                    k.quantum = quantum(cfg);
                    k.queue_limit = cfg.queue_limit;
                    k.prio = cfg.prio;
                    k.police = cfg.mode == Mode::Police;
                    k.mpu = cfg.mpu;
                    *k.cfg = cfg.clone();
                }
                Some(_) => {}
                None => {
                    let s = match self.free.pop() {
                        Some(s) => s,
                        None => {
                            self.classes.push(None);
                            (self.classes.len() - 1) as u32
                        }
                    };
                    if self.slot_of.len() <= id.0 as usize {
                        self.slot_of.resize(id.0 as usize + 1, NONE);
                    }
                    self.slot_of[id.0 as usize] = s;
                    let pps = match cfg.mode {
                        Mode::Shape => {
                            cfg.pps.map(|r| Box::new(PacketBucket::packets(r, cfg.pps_burst, now)))
                        }
                        Mode::Police => None,
                    };
                    self.classes[s as usize] = Some(Class {
                        id,
                        cfg: Box::new(cfg.clone()),
                        parent: NONE,
                        children: 0,
                        level: 0,
                        color: Color::Green,
                        prio_activity: 0,
                        quantum: quantum(cfg),
                        queue_limit: cfg.queue_limit,
                        prio: cfg.prio,
                        police: cfg.mode == Mode::Police,
                        mpu: cfg.mpu,
                        rate: ByteBucket::bytes(cfg.rate_bps, cfg.burst_bytes, now),
                        ceil: ByteBucket::bytes(cfg.ceil_bps, cfg.burst_bytes, now),
                        pps,
                        policer: (cfg.mode == Mode::Police)
                            .then(|| Box::new(new_policer(cfg, now))),
                        pp: [PER_PRIO; NPRIO],
                        queue: VecDeque::with_capacity(cfg.queue_limit as usize),
                        queued_bytes: 0,
                        sent_bytes: 0,
                        sent_packets: 0,
                        borrowed_bytes: 0,
                        lent_bytes: 0,
                        dropped_queue_full: 0,
                        dropped_policed: 0,
                        dropped_pps: 0,
                    });
                }
            }
        }
        self.wait.ensure(self.classes.len());

        // Structure: parents, children, levels (leaves 0; inner MAX_DEPTH - 1 - depth).
        let slots: Vec<u32> = want.keys().map(|&id| self.slot(id).expect("live")).collect();
        for &s in &slots {
            let parent = self.cls(s).cfg.parent.map_or(NONE, |p| self.slot(p).expect("valid"));
            let k = self.cls_mut(s);
            k.parent = parent;
            k.children = 0;
            k.prio_activity = 0;
            for pp in &mut k.pp {
                pp.links = [UNLINKED; 2];
                pp.feed = NONE;
            }
        }
        for &s in &slots {
            let p = self.cls(s).parent;
            if p != NONE {
                self.cls_mut(p).children += 1;
            }
        }
        for &s in &slots {
            let mut depth = 0;
            let mut p = self.cls(s).parent;
            while p != NONE {
                depth += 1;
                p = self.cls(p).parent;
            }
            let k = self.cls_mut(s);
            k.level = if k.children == 0 { 0 } else { (MAX_DEPTH - 1 - depth) as u8 };
            k.color = Color::Green;
        }
        for &s in &slots {
            self.update_color(s, now);
        }
        for &s in &slots {
            let k = self.cls(s);
            if k.children == 0 && !k.queue.is_empty() {
                let prio = k.cfg.prio;
                self.cls_mut(s).prio_activity = 1 << prio;
                self.gain(s, 1 << prio);
            }
        }
        Ok(handed_back)
    }

    /// Creates or changes one class (see [`Scheduler::apply`]); a queue is kept.
    pub fn set_class(
        &mut self,
        id: ClassId,
        cfg: ClassConfig,
        now_ns: u64,
    ) -> Result<(), QosError> {
        self.apply([Change::Set(id, cfg)], now_ns).map(|_| ())
    }

    fn validate(&self, want: &BTreeMap<ClassId, ClassConfig>) -> Result<(), QosError> {
        let mut child_rates: BTreeMap<ClassId, (u64, Vec<ClassId>)> = BTreeMap::new();
        for (&id, c) in want {
            if id.0 > MAX_CLASS_ID {
                return Err(err(id, Field::Id, format!("id {id} is above {MAX_CLASS_ID}")));
            }
            if c.rate_bps == 0 {
                return Err(err(id, Field::Rate, "rate is zero".into()));
            }
            if c.ceil_bps == 0 {
                return Err(err(id, Field::Ceil, "ceil is zero".into()));
            }
            if c.ceil_bps < c.rate_bps {
                let r = format!("ceil {} is below rate {}", c.ceil_bps, c.rate_bps);
                return Err(err(id, Field::Ceil, r));
            }
            if c.burst_bytes == 0 || c.burst_bytes > MAX_BURST_BYTES {
                let r = format!("burst {} is not in 1..={MAX_BURST_BYTES}", c.burst_bytes);
                return Err(err(id, Field::Burst, r));
            }
            if usize::from(c.prio) >= NPRIO {
                let r = format!("prio {} is above {}", c.prio, NPRIO - 1);
                return Err(err(id, Field::Prio, r));
            }
            if c.weight == 0 || c.weight > MAX_WEIGHT {
                let r = format!("weight {} is not in 1..={MAX_WEIGHT}", c.weight);
                return Err(err(id, Field::Weight, r));
            }
            if c.pps == Some(0) {
                return Err(err(id, Field::Pps, "pps is zero".into()));
            }
            if c.pps.is_some() && (c.pps_burst == 0 || c.pps_burst > MAX_BURST_PACKETS) {
                let r = format!("pps_burst {} is not in 1..={MAX_BURST_PACKETS}", c.pps_burst);
                return Err(err(id, Field::PpsBurst, r));
            }
            if c.queue_limit == 0 {
                return Err(err(id, Field::QueueLimit, "queue_limit is zero".into()));
            }
            if let Some(p) = c.parent {
                if !want.contains_key(&p) {
                    return Err(err(id, Field::Parent, format!("parent {p} is unknown")));
                }
                let e = child_rates.entry(p).or_default();
                e.0 = e.0.saturating_add(c.rate_bps);
                e.1.push(id);
            }
        }
        for (&id, c) in want {
            // Depth and cycles.
            let mut p = c.parent;
            let mut depth = 0;
            while let Some(q) = p {
                depth += 1;
                if q == id || depth >= MAX_DEPTH {
                    let r = format!("parent {}: a cycle or deeper than {MAX_DEPTH} levels", q);
                    return Err(err(id, Field::Parent, r));
                }
                p = want[&q].parent;
            }
            // A leaf with a backlog cannot become a parent.
            if let Some(p) = c.parent {
                if let Some(s) = self.slot(p) {
                    if !self.cls(s).queue.is_empty() {
                        let r = format!("parent {p} is a leaf with queued packets");
                        return Err(err(id, Field::Parent, r));
                    }
                }
            }
        }
        for (p, (sum, kids)) in &child_rates {
            let rate = want[p].rate_bps;
            if *sum > rate {
                let kids: Vec<String> = kids.iter().map(|k| k.to_string()).collect();
                let r = format!(
                    "rate {rate} is below the sum {sum} of its children's rates (classes {})",
                    kids.join(", ")
                );
                return Err(err(*p, Field::Rate, r));
            }
        }
        Ok(())
    }

    // ----- inspection -----

    /// The running classes' settings.
    pub fn configs(&self) -> BTreeMap<ClassId, ClassConfig> {
        self.classes.iter().flatten().map(|k| (k.id, (*k.cfg).clone())).collect()
    }

    /// A class's settings.
    pub fn config(&self, id: ClassId) -> Option<&ClassConfig> {
        self.slot(id).map(|s| &*self.cls(s).cfg)
    }

    /// A class's counters.
    pub fn class_stats(&self, id: ClassId) -> Option<ClassStats> {
        self.slot(id).map(|s| {
            let k = self.cls(s);
            ClassStats {
                sent_bytes: k.sent_bytes,
                sent_packets: k.sent_packets,
                queued_packets: k.queue.len() as u64,
                queued_bytes: k.queued_bytes,
                dropped_queue_full: k.dropped_queue_full,
                dropped_policed: k.dropped_policed,
                dropped_pps: k.dropped_pps,
                borrowed_bytes: k.borrowed_bytes,
                lent_bytes: k.lent_bytes,
            }
        })
    }

    /// The totals.
    pub fn stats(&self) -> SchedStats {
        self.stats
    }

    /// Packets queued in all classes.
    pub fn backlog(&self) -> u64 {
        self.stats.queued
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.classes.len() - self.free.len()
    }

    /// Whether there are no classes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn err(class: ClassId, field: Field, reason: String) -> QosError {
    QosError { class, field, reason }
}

fn quantum(cfg: &ClassConfig) -> i32 {
    (cfg.weight * QUANTUM_PER_WEIGHT) as i32
}

fn police_pps(cfg: &ClassConfig) -> Option<(u64, u64)> {
    cfg.pps.map(|r| (r, cfg.pps_burst))
}

fn new_policer(cfg: &ClassConfig, now: u64) -> Policer {
    Policer::new(cfg.ceil_bps, cfg.burst_bytes, cfg.mpu, police_pps(cfg), now)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::qos::bucket::NS_PER_SEC;

    const M: u64 = 1_000_000;
    const ROOT: ClassId = ClassId(1);
    const A: ClassId = ClassId(10);
    const B: ClassId = ClassId(11);

    fn leaf(rate: u64, ceil: u64) -> ClassConfig {
        ClassConfig::new(Some(ROOT), rate, ceil)
    }

    /// A root of `root` bit/s (rate = ceil) and the given classes.
    fn sched(root: u64, classes: &[(ClassId, ClassConfig)]) -> Scheduler<u64> {
        let mut s = Scheduler::new();
        let mut ch = vec![Change::Set(ROOT, ClassConfig::new(None, root, root))];
        ch.extend(classes.iter().map(|(id, c)| Change::Set(*id, c.clone())));
        s.apply(ch, 0).unwrap();
        s
    }

    /// One send: time, class, length.
    type Log = Vec<(u64, ClassId, u32)>;

    /// Runs a link of `link_bps` from `from` to `to`, keeping each source's queue topped up
    /// with packets of its length (saturating senders); returns bytes per class and the log.
    fn run(
        s: &mut Scheduler<u64>,
        sources: &[(ClassId, u32)],
        link_bps: u64,
        from: u64,
        to: u64,
    ) -> (BTreeMap<ClassId, u64>, Log) {
        let mut t = from;
        let mut bytes = BTreeMap::new();
        let mut log = Vec::new();
        let mut n = 0;
        while t < to {
            for &(c, len) in sources {
                while s.class_stats(c).unwrap().queued_packets < 8 {
                    n += 1;
                    s.enqueue(c, n, len, t).unwrap();
                }
            }
            match s.dequeue(t) {
                Some((c, _, len)) => {
                    *bytes.entry(c).or_insert(0) += u64::from(len);
                    log.push((t, c, len));
                    t += (u64::from(len) * 8 * NS_PER_SEC).div_ceil(link_bps);
                }
                None => t = s.next_wake_ns().expect("backlog").max(t + 1),
            }
        }
        (bytes, log)
    }

    fn share(bytes: &BTreeMap<ClassId, u64>, c: ClassId) -> f64 {
        let total: u64 = bytes.values().sum();
        bytes.get(&c).copied().unwrap_or(0) as f64 / total as f64
    }

    fn mbps(bytes: &BTreeMap<ClassId, u64>, c: ClassId, ns: u64) -> f64 {
        bytes.get(&c).copied().unwrap_or(0) as f64 * 8.0 / ns as f64 * 1e3
    }

    #[test]
    fn guarantee_held_under_contention() {
        let mut s = sched(100 * M, &[(A, leaf(30 * M, 100 * M)), (B, leaf(70 * M, 100 * M))]);
        let (bytes, _) = run(&mut s, &[(A, 1500), (B, 1500)], 1000 * M, 0, NS_PER_SEC);
        let (a, b) = (share(&bytes, A), share(&bytes, B));
        assert!((a - 0.30).abs() < 0.01 && (b - 0.70).abs() < 0.01, "shares {a} {b}");
        let total = mbps(&bytes, A, NS_PER_SEC) + mbps(&bytes, B, NS_PER_SEC);
        assert!((total - 100.0).abs() < 1.0, "total {total} Mbit/s");
    }

    #[test]
    fn idle_share_is_borrowed_up_to_the_ceiling() {
        let mut s = sched(100 * M, &[(A, leaf(30 * M, 100 * M)), (B, leaf(70 * M, 100 * M))]);
        let (bytes, _) = run(&mut s, &[(A, 1500)], 1000 * M, 0, NS_PER_SEC);
        let a = mbps(&bytes, A, NS_PER_SEC);
        assert!((a - 100.0).abs() < 1.0, "A {a} Mbit/s");
        let st = s.class_stats(A).unwrap();
        assert!(st.borrowed_bytes > 8_000_000, "borrowed {}", st.borrowed_bytes);
        assert!(s.class_stats(ROOT).unwrap().lent_bytes > 8_000_000);

        let mut s = sched(100 * M, &[(A, leaf(30 * M, 80 * M)), (B, leaf(70 * M, 100 * M))]);
        let (bytes, _) = run(&mut s, &[(A, 1500)], 1000 * M, 0, NS_PER_SEC);
        let a = mbps(&bytes, A, NS_PER_SEC);
        assert!((a - 80.0).abs() < 0.8, "A {a} Mbit/s");
    }

    #[test]
    fn priority_order_for_borrowers() {
        let a = ClassConfig { prio: 0, ..leaf(10 * M, 100 * M) };
        let b = ClassConfig { prio: 1, ..leaf(10 * M, 100 * M) };
        let mut s = sched(100 * M, &[(A, a), (B, b)]);
        let (bytes, _) = run(&mut s, &[(A, 1500), (B, 1500)], 1000 * M, 0, NS_PER_SEC);
        let (a, b) = (share(&bytes, A), share(&bytes, B));
        assert!((a - 0.90).abs() < 0.01 && (b - 0.10).abs() < 0.01, "shares {a} {b}");
    }

    #[test]
    fn weighted_split_of_the_spare() {
        let a = ClassConfig { weight: 1, ..leaf(10 * M, 100 * M) };
        let b = ClassConfig { weight: 3, ..leaf(10 * M, 100 * M) };
        let mut s = sched(100 * M, &[(A, a), (B, b)]);
        let (bytes, _) = run(&mut s, &[(A, 1500), (B, 1500)], 1000 * M, 0, NS_PER_SEC);
        // Guarantees 10 + 10, spare 80 split 1:3 -> 30 and 70.
        let (a, b) = (share(&bytes, A), share(&bytes, B));
        assert!((a - 0.30).abs() < 0.02 && (b - 0.70).abs() < 0.02, "shares {a} {b}");
        // The spare itself, 1:3.
        let (ba, bb) =
            (s.class_stats(A).unwrap().borrowed_bytes, s.class_stats(B).unwrap().borrowed_bytes);
        let r = ba as f64 / (ba + bb) as f64;
        assert!((r - 0.25).abs() < 0.02, "borrowed split {r}");
    }

    #[test]
    fn weights_and_priorities_across_groups() {
        // root 100 -> G1 (rate 20, w1), G2 (rate 20, w3); a leaf each; spare 60 split 1:3.
        let (g1, g2, l1, l2) = (ClassId(2), ClassId(3), ClassId(20), ClassId(30));
        let g = |w| ClassConfig { weight: w, ..ClassConfig::new(Some(ROOT), 20 * M, 100 * M) };
        let l = |p| ClassConfig::new(Some(p), 20 * M, 100 * M);
        let mut s = sched(100 * M, &[(g1, g(1)), (g2, g(3)), (l1, l(g1)), (l2, l(g2))]);
        let (bytes, _) = run(&mut s, &[(l1, 1500), (l2, 1500)], 1000 * M, 0, NS_PER_SEC);
        let (a, b) = (share(&bytes, l1), share(&bytes, l2));
        assert!((a - 0.35).abs() < 0.02 && (b - 0.65).abs() < 0.02, "shares {a} {b}");
        assert!(s.class_stats(g1).unwrap().borrowed_bytes > 0);
    }

    /// For every pair of sends i <= j of class `c`: cost(i..=j) <= ceil * (tj - ti) + burst +
    /// the largest cost.
    fn check_ceiling(log: &Log, c: ClassId, cfg: &ClassConfig) {
        let ev: Vec<(u64, u64)> =
            log.iter().filter(|e| e.1 == c).map(|e| (e.0, u64::from(e.2.max(cfg.mpu)))).collect();
        let max_cost = ev.iter().map(|e| e.1).max().unwrap_or(0);
        for i in 0..ev.len() {
            let mut sum = 0u128;
            for e in &ev[i..] {
                sum += u128::from(e.1);
                let allowed = u128::from(cfg.ceil_bps) * u128::from(e.0 - ev[i].0)
                    / u128::from(8 * NS_PER_SEC)
                    + u128::from(cfg.burst_bytes + max_cost);
                assert!(sum <= allowed, "class {c}: {sum} bytes from {} to {}", ev[i].0, e.0);
            }
        }
    }

    #[test]
    fn ceiling_never_exceeded() {
        let a = ClassConfig { burst_bytes: 3000, ..leaf(10 * M, 50 * M) };
        let mut s = sched(100 * M, &[(A, a.clone()), (B, leaf(10 * M, 100 * M))]);
        // A alone for 200 ms (borrows up to its ceiling), then with B.
        let (bytes, log) = run(&mut s, &[(A, 1000)], 1000 * M, 0, NS_PER_SEC / 5);
        let rate = mbps(&bytes, A, NS_PER_SEC / 5);
        assert!((rate - 50.0).abs() < 0.5, "A {rate} Mbit/s");
        check_ceiling(&log, A, &a);
        let (_, log) =
            run(&mut s, &[(A, 700), (B, 1500)], 1000 * M, NS_PER_SEC / 5, NS_PER_SEC / 2);
        check_ceiling(&log, A, &a);
    }

    #[test]
    fn mpu_makes_small_packets_cost_what_they_should() {
        let a = ClassConfig { mpu: 512, burst_bytes: 1024, ..leaf(M, M) };
        let mut s = sched(1000 * M, &[(A, a)]);
        let (_, log) = run(&mut s, &[(A, 64)], 10_000 * M, 0, NS_PER_SEC);
        // 1 Mbit/s at 512 bytes a packet: 244 packets/s, plus the burst (2) and one of debt.
        assert!((244..=247).contains(&log.len()), "{} packets", log.len());
        // Without the MPU: 1953 packets/s.
        let mut s = sched(1000 * M, &[(A, ClassConfig { burst_bytes: 1024, ..leaf(M, M) })]);
        let (_, log) = run(&mut s, &[(A, 64)], 10_000 * M, 0, NS_PER_SEC);
        assert!((1953..=1971).contains(&log.len()), "{} packets", log.len());
    }

    #[test]
    fn pps_limit_holds() {
        let a = ClassConfig { pps: Some(1000), pps_burst: 10, ..leaf(100 * M, 100 * M) };
        let mut s = sched(100 * M, &[(A, a)]);
        let (_, log) = run(&mut s, &[(A, 64)], 10_000 * M, 0, NS_PER_SEC);
        // 1000 per second, the burst of 10, one of debt.
        assert!((1000..=1011).contains(&log.len()), "{} packets", log.len());
        // Over any 100 ms window: at most 100, the burst and one of debt.
        let times: Vec<u64> = log.iter().map(|e| e.0).collect();
        for (i, &t) in times.iter().enumerate() {
            let n = times[i..].iter().take_while(|&&u| u < t + NS_PER_SEC / 10).count();
            assert!(n <= 100 + 10 + 1, "{n} packets in 100 ms from {t}");
        }
    }

    #[test]
    fn policer_drops_and_counts_instead_of_queueing() {
        let a = ClassConfig { mode: Mode::Police, burst_bytes: 3000, ..leaf(8 * M, 8 * M) };
        let mut s = sched(100 * M, &[(A, a)]);
        let mut drops = 0;
        for i in 0..10 {
            match s.enqueue(A, i, 1000, 0) {
                Ok(()) => {}
                Err((item, r)) => {
                    assert_eq!((item, r), (i, DropReason::Policed));
                    drops += 1;
                }
            }
        }
        assert_eq!(drops, 7);
        let st = s.class_stats(A).unwrap();
        assert_eq!((st.queued_packets, st.dropped_policed), (3, 7));
        // 1 MB/s: 1000 more bytes admitted 1 ms later.
        assert!(s.enqueue(A, 10, 1000, NS_PER_SEC / 1000).is_ok());
        assert_eq!(s.enqueue(A, 11, 1000, NS_PER_SEC / 1000), Err((11, DropReason::Policed)));
        let mut out = Vec::new();
        s.dequeue_batch(NS_PER_SEC, 100, |c, t, _| out.push((c, t)));
        assert_eq!(out, vec![(A, 0), (A, 1), (A, 2), (A, 10)]);

        let p = ClassConfig {
            mode: Mode::Police,
            pps: Some(100),
            pps_burst: 2,
            ..leaf(100 * M, 100 * M)
        };
        let mut s = sched(100 * M, &[(B, p)]);
        let res: Vec<_> = (0..4).map(|i| s.enqueue(B, i, 64, 0).err().map(|e| e.1)).collect();
        assert_eq!(res, vec![None, None, Some(DropReason::PpsLimit), Some(DropReason::PpsLimit)]);
        assert_eq!(s.class_stats(B).unwrap().dropped_pps, 2);
    }

    #[test]
    fn queue_full_is_counted() {
        let mut s = sched(100 * M, &[(A, ClassConfig { queue_limit: 4, ..leaf(M, M) })]);
        for i in 0..6 {
            let r = s.enqueue(A, i, 100, 0);
            assert_eq!(r.is_ok(), i < 4);
        }
        assert_eq!(s.class_stats(A).unwrap().dropped_queue_full, 2);
        assert_eq!(s.enqueue(ClassId(99), 7, 100, 0), Err((7, DropReason::UnknownClass)));
        assert_eq!(s.enqueue(ROOT, 8, 100, 0), Err((8, DropReason::NotLeaf)));
        assert_eq!(s.stats().dropped, 4);
    }

    #[test]
    fn live_update_keeps_queued_packets() {
        let a = ClassConfig { burst_bytes: 1500, ..leaf(M, M) };
        let mut s = sched(100 * M, &[(A, a.clone())]);
        for i in 0..10 {
            s.enqueue(A, i, 1500, 0).unwrap();
        }
        let mut out = Vec::new();
        s.dequeue_batch(0, 100, |_, t, _| out.push(t));
        assert_eq!(out, vec![0, 1]); // the burst, then one packet of debt
        assert!(s.dequeue(NS_PER_SEC / 1000).is_none());
        // Faster, borrowing allowed, another priority: nothing dropped, order kept.
        let faster = ClassConfig { rate_bps: 2 * M, ceil_bps: 3 * M, prio: 2, ..a };
        s.set_class(A, faster.clone(), NS_PER_SEC / 1000).unwrap();
        assert_eq!(s.class_stats(A).unwrap().queued_packets, 8);
        assert_eq!(s.config(A), Some(&faster));
        let mut t = NS_PER_SEC / 1000;
        while t <= NS_PER_SEC / 25 {
            s.dequeue_batch(t, 100, |_, x, _| out.push(x));
            t += 100_000;
        }
        // At 1 Mbit/s this would take 108 ms; at the new 3 Mbit/s ceiling, 36 ms.
        assert_eq!(out, (0..10).collect::<Vec<_>>());
        assert_eq!(s.stats().dropped, 0);
    }

    #[test]
    fn validation_refuses_inconsistent_settings_and_changes_nothing() {
        let g = ClassId(2);
        let mut s = sched(
            100 * M,
            &[(g, ClassConfig::new(Some(ROOT), 60 * M, 100 * M)), (A, leaf(30 * M, 100 * M))],
        );
        s.apply([Change::Set(B, ClassConfig::new(Some(g), 20 * M, 50 * M))], 0).unwrap();
        for i in 0..5 {
            s.enqueue(B, i, 1000, 0).unwrap();
        }
        let before = s.configs();
        let cases: Vec<(Vec<Change>, ClassId, Field)> = vec![
            (vec![Change::Set(ClassId(7), leaf(2 * M, M))], ClassId(7), Field::Ceil),
            (vec![Change::Set(ClassId(7), leaf(0, M))], ClassId(7), Field::Rate),
            (vec![Change::Set(ClassId(7), leaf(M, 0))], ClassId(7), Field::Ceil),
            (vec![Change::Set(ClassId(7), leaf(20 * M, 20 * M))], ROOT, Field::Rate),
            (vec![Change::Set(B, ClassConfig::new(Some(g), 61 * M, 70 * M))], g, Field::Rate),
            (
                vec![Change::Set(ClassId(7), ClassConfig::new(Some(ClassId(99)), M, M))],
                ClassId(7),
                Field::Parent,
            ),
            (vec![Change::Set(ROOT, ClassConfig::new(Some(g), M, M))], ROOT, Field::Parent),
            (vec![Change::Remove(g)], B, Field::Parent),
            (vec![Change::Remove(ClassId(42))], ClassId(42), Field::Id),
            (
                vec![Change::Set(ClassId(7), ClassConfig::new(Some(B), M, M))],
                ClassId(7),
                Field::Parent,
            ),
            (
                vec![Change::Set(ClassId(7), ClassConfig { prio: 8, ..leaf(M, M) })],
                ClassId(7),
                Field::Prio,
            ),
            (
                vec![Change::Set(ClassId(7), ClassConfig { weight: 0, ..leaf(M, M) })],
                ClassId(7),
                Field::Weight,
            ),
            (
                vec![Change::Set(ClassId(7), ClassConfig { pps: Some(0), ..leaf(M, M) })],
                ClassId(7),
                Field::Pps,
            ),
            (
                vec![Change::Set(ClassId(7), ClassConfig { burst_bytes: 0, ..leaf(M, M) })],
                ClassId(7),
                Field::Burst,
            ),
            (
                vec![Change::Set(ClassId(7), ClassConfig { queue_limit: 0, ..leaf(M, M) })],
                ClassId(7),
                Field::QueueLimit,
            ),
            (vec![Change::Set(ClassId(1 << 24), leaf(M, M))], ClassId(1 << 24), Field::Id),
            // A valid change followed by an invalid one: neither applies.
            (
                vec![
                    Change::Set(A, leaf(10 * M, 100 * M)),
                    Change::Set(ClassId(8), leaf(2 * M, M)),
                ],
                ClassId(8),
                Field::Ceil,
            ),
        ];
        for (changes, class, field) in cases {
            let e = s.apply(changes.clone(), 0).unwrap_err();
            assert_eq!((e.class, e.field), (class, field), "{changes:?}: {e}");
            assert_eq!(s.configs(), before, "{changes:?} changed the running config");
            assert_eq!(s.class_stats(B).unwrap().queued_packets, 5);
        }
        let e = s.apply([Change::Set(ClassId(7), leaf(2 * M, M))], 0).unwrap_err();
        assert_eq!(e.to_string(), "class 7: ceil 1000000 is below rate 2000000");
        // The running classes still work.
        let mut n = 0;
        s.dequeue_batch(0, 100, |c, _, _| {
            assert_eq!(c, B);
            n += 1;
        });
        assert_eq!(n, 5);
    }

    #[test]
    fn remove_hands_back_queued_items() {
        let mut s = sched(100 * M, &[(A, leaf(M, M)), (B, leaf(M, M))]);
        for i in 0..3 {
            s.enqueue(A, i, 100, 0).unwrap();
        }
        s.enqueue(B, 9, 100, 0).unwrap();
        let back = s.apply([Change::Remove(A)], 0).unwrap();
        assert_eq!(back, vec![0, 1, 2]);
        let st = s.stats();
        assert_eq!((st.enqueued, st.removed, st.queued), (4, 3, 1));
        assert_eq!(s.dequeue(0).map(|x| x.1), Some(9));
        assert!(s.class_stats(A).is_none());
    }

    #[test]
    fn no_allocation_queue_keeps_its_capacity() {
        let mut s = sched(100 * M, &[(A, ClassConfig { queue_limit: 16, ..leaf(M, M) })]);
        let cap = s.cls(s.slot(A).unwrap()).queue.capacity();
        for round in 0..4u64 {
            for i in 0..20 {
                let _ = s.enqueue(A, i, 64, round * NS_PER_SEC);
            }
            while s.dequeue(round * NS_PER_SEC + NS_PER_SEC / 2).is_some() {}
        }
        assert_eq!(s.cls(s.slot(A).unwrap()).queue.capacity(), cap);
    }

    // ----- property: random hierarchies and traffic -----

    #[derive(Clone, Debug)]
    struct LeafSpec {
        group: usize,
        rate_pct: u64,
        ceil_pct: u64,
        prio: u8,
        weight: u32,
        mpu: u32,
        pps: Option<u64>,
        police: bool,
        burst: u64,
    }

    fn leaf_spec() -> impl Strategy<Value = LeafSpec> {
        (
            0..3usize,
            1..30u64,
            0..100u64,
            0..3u8,
            1..4u32,
            prop_oneof![Just(0u32), Just(128), Just(512)],
            prop_oneof![Just(None), (100..20_000u64).prop_map(Some)],
            prop::bool::weighted(0.2),
            1000..20_000u64,
        )
            .prop_map(|(group, rate_pct, extra, prio, weight, mpu, pps, police, burst)| {
                LeafSpec {
                    group,
                    rate_pct,
                    ceil_pct: (rate_pct + extra).min(100),
                    prio,
                    weight,
                    mpu,
                    pps,
                    police,
                    burst,
                }
            })
    }

    #[derive(Clone, Debug)]
    enum Op {
        Enqueue { leaf: usize, len: u32, n: u8 },
        Dequeue { n: u8 },
        Advance { ns: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..12usize, 40..1500u32, 1..20u8).prop_map(|(leaf, len, n)| Op::Enqueue {
                leaf,
                len,
                n
            }),
            (1..40u8).prop_map(|n| Op::Dequeue { n }),
            (1..2_000_000u64).prop_map(|ns| Op::Advance { ns }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_traffic_keeps_ceilings_and_conservation(
            leaves in prop::collection::vec(leaf_spec(), 1..12),
            ops in prop::collection::vec(op(), 1..400),
        ) {
            const ROOT_BPS: u64 = 100 * M;
            // Groups 2, 3, 4 (a third of the root each); leaf i is 100 + i. Leaf rates are
            // scaled so each group's children fit its rate.
            let mut changes = vec![Change::Set(ROOT, ClassConfig::new(None, ROOT_BPS, ROOT_BPS))];
            let group_rate = ROOT_BPS / 3;
            for g in 0..3 {
                let c = ClassConfig::new(Some(ClassId(2 + g)), 0, 0);
                let c = ClassConfig { parent: Some(ROOT), rate_bps: group_rate, ceil_bps: ROOT_BPS, ..c };
                changes.push(Change::Set(ClassId(2 + g), c));
            }
            let mut cfgs = Vec::new();
            for (i, l) in leaves.iter().enumerate() {
                let n_in_group = leaves.iter().filter(|x| x.group == l.group).count() as u64;
                let rate = (group_rate / n_in_group * l.rate_pct / 100).max(1);
                let ceil = (ROOT_BPS * l.ceil_pct / 100).max(rate);
                let c = ClassConfig {
                    parent: Some(ClassId(2 + l.group as u32)),
                    rate_bps: rate,
                    ceil_bps: ceil,
                    burst_bytes: l.burst,
                    prio: l.prio,
                    weight: l.weight,
                    pps: l.pps,
                    pps_burst: 4,
                    mpu: l.mpu,
                    queue_limit: 32,
                    mode: if l.police { Mode::Police } else { Mode::Shape },
                };
                cfgs.push(c.clone());
                changes.push(Change::Set(ClassId(100 + i as u32), c));
            }
            let mut s: Scheduler<u64> = Scheduler::new();
            s.apply(changes, 0).unwrap();

            let mut t = 0u64;
            let mut seq = 0u64;
            let mut log: Log = Vec::new();
            let mut expect: Vec<VecDeque<u64>> = vec![VecDeque::new(); leaves.len()];
            let (mut ok, mut dropped, mut out) = (0u64, 0u64, 0u64);
            for op in ops {
                match op {
                    Op::Enqueue { leaf, len, n } => {
                        let leaf = leaf % leaves.len();
                        for _ in 0..n {
                            seq += 1;
                            match s.enqueue(ClassId(100 + leaf as u32), seq, len, t) {
                                Ok(()) => {
                                    ok += 1;
                                    expect[leaf].push_back(seq);
                                }
                                Err((item, _)) => {
                                    prop_assert_eq!(item, seq);
                                    dropped += 1;
                                }
                            }
                        }
                    }
                    Op::Dequeue { n } => {
                        for _ in 0..n {
                            let Some((c, item, len)) = s.dequeue(t) else { break };
                            out += 1;
                            let i = (c.0 - 100) as usize;
                            // FIFO per class, and only what was queued.
                            prop_assert_eq!(expect[i].pop_front(), Some(item));
                            log.push((t, c, len));
                        }
                    }
                    Op::Advance { ns } => t += ns,
                }
                let st = s.stats();
                prop_assert_eq!(st.enqueued, ok);
                prop_assert_eq!(st.dropped, dropped);
                prop_assert_eq!(st.dequeued, out);
                prop_assert_eq!(st.enqueued, st.dequeued + st.queued + st.removed);
                let queued: u64 = (0..leaves.len())
                    .map(|i| s.class_stats(ClassId(100 + i as u32)).unwrap().queued_packets)
                    .sum();
                prop_assert_eq!(queued, st.queued);
                prop_assert_eq!(queued, expect.iter().map(|q| q.len() as u64).sum::<u64>());
                if st.queued > 0 {
                    // Either something is sendable now, or a future wake time is named.
                    match s.dequeue(t) {
                        None => prop_assert!(s.next_wake_ns().is_some_and(|w| w > t)),
                        Some((c, item, len)) => {
                            out += 1;
                            let i = (c.0 - 100) as usize;
                            prop_assert_eq!(expect[i].pop_front(), Some(item));
                            log.push((t, c, len));
                        }
                    }
                }
            }
            // Ceilings per leaf over every window.
            for (i, c) in cfgs.iter().enumerate() {
                check_ceiling(&log, ClassId(100 + i as u32), c);
            }
        }
    }
}
