//! The hierarchical scheduler (HTB semantics; see the module documentation of [`crate::qos`]).
//!
//! Data structures, after Linux `sch_htb.c`:
//!
//! * every class has a rate bucket (guarantee), a ceil bucket and optionally a packet bucket,
//!   and a colour: green (rate and ceil non-negative: may send on its own), yellow (rate
//!   short, ceil not: may borrow), red (ceil or pps short: waits);
//! * an *active* class is one with backlog below it, per priority (`active`). An active class
//!   that is not red sits in its parent's *feed* for each active priority (and the parent
//!   becomes active for it); a green one also sits in the row of its level; a red one sits
//!   nowhere. (HTB takes green classes out of the feed; keeping them there keeps their DRR
//!   place across green/yellow flips, and changes nothing else: see `gain`.)
//! * classes live in slots numbered breadth first at every [`Scheduler::apply`], so a class's
//!   children are a contiguous range of slots. Rows and feeds are bitmaps over the slots
//!   (`ActiveSet`: one per row, one per priority for all feeds, a parent's feed being its
//!   children's range), so joining or leaving a list touches no other class; each list is a
//!   round robin in slot order from a cursor (O(1) word operations to find the next member).
//!   As HTB's pointer into its lists, the cursor stands at the class last served, moves
//!   past it when it spends its quantum, and wraps to the first member when nothing follows;
//! * every class that is not green waits in a timing wheel (`WaitWheel`: buckets of 1 µs,
//!   4 ms ahead, a heap beyond) at a time at or before the one its colour will change (O(1);
//!   lazy: see `recolor`). The times are exact nanoseconds: a class waiting for tokens is
//!   served at the nanosecond they suffice;
//! * rows are lazy about debt: a charge that puts a green class over its rate or ceiling
//!   leaves it where it is, and dequeue recolours a class it picks from a row if its tokens
//!   are negative (choosing again if it left). Decisions are those of eager recolouring (a
//!   stale green class only stays a member of rows, and no class is served from a row without
//!   that check), but a class whose debt is repaid before its next turn, the common case near
//!   a guarantee, never leaves its row. A leaf still backlogged after a send whose debt
//!   takes more than `EAGER_DEBT_NS` (10 µs) to repay turns yellow at once instead: with
//!   thousands of slow classes the row's round robin comes back to it long before that, and
//!   finding it in debt then costs a second choice;
//! * dequeue runs the due colour changes, then takes the lowest level with a non-empty row
//!   and in it the highest priority (bit masks: O(1)), and walks down the feeds to a leaf
//!   (O(depth); a green leaf, the common case, needs no walk); each list on the way is served
//!   deficit round robin, quantum proportional to the weight;
//! * the sent packet is charged to the leaf and every ancestor: ceil always, rate only at and
//!   above the level it was served from (below it, the bytes were borrowed).
//!
//! Per class, what a packet reads and writes is one cache line (`Hot`: tokens, DRR deficit,
//! send counters, colour, the ends of its queue) and the packet's node in the scheduler's
//! pool of queued packets (`queue::Pool`: one pool for all queues, whose freed nodes are
//! reused first, so the memory packets go through follows the backlog, not the classes'
//! bounds); what it only reads (rates, burst, tree, flags) is in a `Profile` shared by the
//! classes with equal settings. At 10 000 classes the hot lines are 640 KiB. What only
//! borrowing writes is apart (`Lent`), and so are settings, policers and drop counters
//! (`Cold`). Nothing on the fast path allocates: the pool is reserved at `apply` for every
//! queue's bound (address space only, until used), the wheel and the bitmaps too.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

#[cfg(doc)]
use super::bucket::ByteBucket;
use super::bucket::{refilled, PacketBucket, BYTE_UNIT, MAX_BURST_BYTES, MAX_BURST_PACKETS};
use super::policer::{PoliceVerdict, Policer};
use super::queue::{Fifo, Pool};
use super::sets::ActiveSet;
use super::wheel::WaitWheel;

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
/// The largest queue limit, packets (the config's bound too; a queue's length is 16 bits of its
/// class's hot line).
pub const MAX_QUEUE_LIMIT: u32 = u16::MAX as u32;

const NONE: u32 = u32::MAX;
/// A leaf that keeps a backlog and whose debt takes longer than this to repay turns yellow
/// at once (see `dequeue_from`).
const EAGER_DEBT_NS: u64 = 10_000;

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
    /// Burst, bytes: the depth of the ceil bucket, what the class may send at once beyond its
    /// ceiling's pace. The rate bucket holds as long at the rate ([`rate_burst`]).
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
#[repr(u8)]
enum Color {
    Green,
    Yellow,
    Red,
}

/// A class's scheduling state: one cache line, all a packet reads and writes of its class
/// on the common path but the packet's own node (tokens, DRR deficit, send counters, colour,
/// the ends and length of its queue). What a class only reads (rates, burst, tree, flags) is
/// in its [`Profile`], shared by the classes whose settings are equal; the queued packets
/// are in `Scheduler::pool`. At 10 000 classes the hot state is 640 KiB.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Hot {
    rate_tokens: i64,
    ceil_tokens: i64,
    /// When both buckets were last refilled.
    last_ns: u64,
    /// Bytes and packets sent by or through the class.
    sent_bytes: u64,
    sent_packets: u64,
    /// A leaf's DRR deficit in its row (in its parent's feed: [`Lent::feed_deficit`], apart
    /// so that sends on its own rate do not spend its borrowing turns; an inner class's are
    /// per priority, in [`Inner`]).
    deficit: i32,
    /// Index in `Scheduler::profiles`.
    profile: u32,
    /// The class's id: what dequeue hands out, from the line it has.
    id: ClassId,
    /// A leaf's queue (its nodes are in `Scheduler::pool`) and its length.
    queue: Fifo,
    queued: u16,
    color: Color,
    /// Priorities with backlog reachable through this class (HTB's `prio_activity`).
    active: u8,
}

const _: () = assert!(std::mem::size_of::<Hot>() == 64);

/// What the fast path reads but never writes of a class: its rates, burst, place in the tree
/// and flags. Classes with equal profiles share one (interned at [`Scheduler::apply`]), so
/// 10 000 pods with a handful of distinct settings read a handful of profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Profile {
    rate: u64,
    ceil: u64,
    /// The depths of the rate and ceil buckets, in units (see [`rate_burst`]).
    rate_cap: i64,
    ceil_cap: i64,
    /// The parent's slot, or `NONE`.
    parent: u32,
    mpu: u32,
    /// DRR quantum, bytes.
    quantum: i32,
    /// Packets a leaf may queue.
    queue_limit: u32,
    prio: u8,
    /// 0 for leaves; an inner class `MAX_DEPTH - 1 - depth`.
    level: u8,
    /// `cfg.mode == Police`.
    police: bool,
    /// Whether `Cold::pps` holds a shaping pps bucket.
    has_pps: bool,
    /// Whether the class has children (only leaves queue).
    inner_class: bool,
    /// An inner class's index in `Scheduler::inner` (`NONE` for a leaf; inner classes are
    /// few, so their profiles need not be shared).
    inner: u32,
}

impl Hot {
    /// Refills both buckets to `now` at the rates of `p`.
    #[inline(always)]
    fn refill(&mut self, p: &Profile, now: u64) {
        if now > self.last_ns {
            let dt = now - self.last_ns;
            self.rate_tokens = refilled(self.rate_tokens, p.rate_cap, p.rate, dt);
            self.ceil_tokens = refilled(self.ceil_tokens, p.ceil_cap, p.ceil, dt);
            self.last_ns = now;
        }
    }
}

/// The depth of a class's rate bucket, bytes: the time its burst lasts at the ceiling, at the
/// rate (`burst * rate / ceil`, as Linux HTB's default burst and cburst are each a tick at
/// their rates), at least ten full-size frames (15 000 bytes, so that TCP's initial window
/// leaves at once; the whole burst if that is smaller). A class whose guarantee is a small
/// part of its ceiling, e.g. a pod with a token guarantee and a large ceiling, so never sends
/// a ceiling's burst as if it were guaranteed, ahead of other classes' guarantees: a
/// backlogged class loses at most the other classes' rate buckets of its guarantee.
pub fn rate_burst(cfg: &ClassConfig) -> u64 {
    let scaled =
        u128::from(cfg.burst_bytes) * u128::from(cfg.rate_bps) / u128::from(cfg.ceil_bps.max(1));
    let scaled = u64::try_from(scaled).unwrap_or(u64::MAX).min(cfg.burst_bytes);
    scaled.max(MIN_RATE_BURST.min(cfg.burst_bytes))
}

/// The smallest rate bucket, bytes (see [`rate_burst`]).
const MIN_RATE_BURST: u64 = 15_000;

/// The bucket depth in units for `burst` bytes (as [`ByteBucket`] computes it).
fn cap_for(burst: u64) -> i64 {
    i64::try_from(u128::from(burst) * u128::from(BYTE_UNIT)).unwrap_or(i64::MAX)
}

/// What `bytes` cost in units, saturated (as [`ByteBucket::consume`] charges them).
#[inline]
fn cost_units(bytes: u32) -> i64 {
    const EXACT: u64 = i64::MAX as u64 / BYTE_UNIT;
    let b = u64::from(bytes);
    if b <= EXACT {
        (b * BYTE_UNIT) as i64
    } else {
        i64::MAX
    }
}

/// Nanoseconds until `tokens` at `rate` are non-negative (as [`ByteBucket::ns_until_conform`]).
#[inline]
fn ns_until(tokens: i64, rate: u64) -> u64 {
    if tokens >= 0 {
        0
    } else {
        tokens.unsigned_abs().div_ceil(rate.max(1))
    }
}

/// What a class lent and borrowed, and a leaf's DRR deficit in its parent's feed (written
/// only on the borrowing path).
#[derive(Clone, Copy, Debug, Default)]
struct Lent {
    borrowed: u64,
    lent: u64,
    feed_deficit: i32,
}

/// What the fast path reads only for policing or pps classes, and the settings.
#[derive(Debug)]
struct Cold {
    cfg: ClassConfig,
    /// A shaping class's pps bucket (a policing class's is in its policer).
    pps: Option<PacketBucket>,
    policer: Option<Policer>,
    dropped_queue_full: u64,
    dropped_policed: u64,
    dropped_pps: u64,
}

/// An inner class's children and per-priority DRR state of its feeds.
#[derive(Clone, Copy, Debug)]
struct Inner {
    /// Its children are the slots `lo..hi`; its feed for a priority is that range of the
    /// priority's feed set.
    lo: u32,
    hi: u32,
    /// Per priority: children in the feed, and where the feed's round robin stands.
    count: [u32; NPRIO],
    cursor: [u32; NPRIO],
    /// Per priority: its own DRR deficits in its row ([0]) and its parent's feed ([1]).
    deficit: [[i32; 2]; NPRIO],
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

/// What [`Scheduler::offer`] decided for a packet it admitted.
#[derive(Debug)]
pub enum Offer<'a, T> {
    /// Charged to its class: send it now.
    Pass,
    /// Queue it on its class with [`Admitted::queue`].
    Queue(Admitted<'a, T>),
}

/// A packet admitted to a class's queue, not queued yet: [`Admitted::queue`] queues it. It
/// borrows the scheduler, so no other call comes between the decision and the queueing.
#[derive(Debug)]
pub struct Admitted<'a, T> {
    sched: &'a mut Scheduler<T>,
    slot: u32,
    prio: usize,
    len: u32,
}

impl<T> Admitted<'_, T> {
    /// Queues `item` (the packet admitted).
    #[inline]
    pub fn queue(self, item: T) {
        self.sched.push(self.slot, self.prio, item, self.len);
    }
}

/// The hierarchical scheduler of one egress port, generic over the queued item.
///
/// Classes live in slots `0..n`, numbered breadth first from the roots at every
/// [`Scheduler::apply`], so each class's children are a contiguous range of slots.
#[derive(Debug)]
pub struct Scheduler<T> {
    hot: Vec<Hot>,
    /// The distinct profiles (see [`Profile`]).
    profiles: Vec<Profile>,
    /// The queued packets of every leaf (see [`Pool`]), with room reserved for every queue
    /// to fill to its bound. `apply` moves no packet: a queue's ends move with its class.
    pool: Pool<T>,
    lent: Vec<Lent>,
    cold: Vec<Cold>,
    inner: Vec<Inner>,
    slot_of: Vec<u32>,
    /// Rows, `level * NPRIO + prio`: the green classes of a level active at a priority.
    rows: Vec<ActiveSet>,
    row_cursor: [[u32; NPRIO]; MAX_DEPTH],
    row_mask: [u8; MAX_DEPTH],
    level_mask: u8,
    /// Feeds, per priority: the classes in their parent's feed (see [`Inner`]).
    feeds: Vec<ActiveSet>,
    wait: WaitWheel,
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
            hot: Vec::new(),
            profiles: Vec::new(),
            pool: Pool::default(),
            lent: Vec::new(),
            cold: Vec::new(),
            inner: Vec::new(),
            slot_of: Vec::new(),
            rows: Vec::new(),
            row_cursor: [[0; NPRIO]; MAX_DEPTH],
            row_mask: [0; MAX_DEPTH],
            level_mask: 0,
            feeds: Vec::new(),
            wait: WaitWheel::default(),
            now: 0,
            stats: SchedStats::default(),
        }
    }

    #[inline]
    fn slot(&self, id: ClassId) -> Option<u32> {
        match self.slot_of.get(id.0 as usize) {
            Some(&s) if s != NONE => Some(s),
            _ => None,
        }
    }

    /// Class `c`'s profile.
    #[inline]
    fn prof(&self, c: u32) -> &Profile {
        &self.profiles[self.hot[c as usize].profile as usize]
    }

    #[inline]
    fn advance(&mut self, now_ns: u64) -> u64 {
        self.now = self.now.max(now_ns);
        self.now
    }

    // ----- rows and feeds -----

    #[inline(always)]
    fn row_insert(&mut self, level: usize, prio: usize, c: u32) {
        if self.rows[level * NPRIO + prio].insert(c) {
            self.row_mask[level] |= 1 << prio;
            self.level_mask |= 1 << level;
        }
    }

    #[inline(always)]
    fn row_delete(&mut self, level: usize, prio: usize, c: u32) {
        if self.rows[level * NPRIO + prio].remove(c) {
            self.row_mask[level] &= !(1 << prio);
            if self.row_mask[level] == 0 {
                self.level_mask &= !(1 << level);
            }
        }
    }

    #[inline]
    fn row_add(&mut self, c: u32, m: u8) {
        let level = usize::from(self.prof(c).level);
        for prio in bits(m) {
            self.row_insert(level, prio, c);
        }
    }

    #[inline]
    fn row_remove(&mut self, c: u32, m: u8) {
        let level = usize::from(self.prof(c).level);
        for prio in bits(m) {
            self.row_delete(level, prio, c);
        }
    }

    /// Puts `c` in its parent's feed for `prio`; returns whether the feed was empty.
    #[inline(always)]
    fn feed_insert(&mut self, parent: u32, prio: usize, c: u32) -> bool {
        self.feeds[prio].insert(c);
        let i = self.prof(parent).inner as usize;
        let k = &mut self.inner[i];
        k.count[prio] += 1;
        k.count[prio] == 1
    }

    /// Takes `c` out of its parent's feed for `prio`; returns whether the feed is now empty.
    #[inline(always)]
    fn feed_remove(&mut self, parent: u32, prio: usize, c: u32) -> bool {
        self.feeds[prio].remove(c);
        let i = self.prof(parent).inner as usize;
        let k = &mut self.inner[i];
        k.count[prio] -= 1;
        k.count[prio] == 0
    }

    // ----- activity (after HTB's activate_prios / deactivate_prios) -----
    //
    // An active class (backlog below it for the priorities in `active`) that is not red is in
    // its parent's feed for those priorities; a green one is also in its level's row. Unlike
    // HTB, a class stays in its parent's feed while it flips between green and yellow, so its
    // DRR place survives the flips (a class flips each time it earns a packet's worth of its
    // own rate). It is still never *served* from a feed while green: green active classes sit
    // in rows of lower levels, which are served first.

    /// `c` (not red) became active for the priorities `m`.
    fn gain(&mut self, mut c: u32, mut m: u8) {
        while m != 0 {
            let (color, parent) = (self.hot[c as usize].color, self.prof(c).parent);
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
                if self.feed_insert(parent, prio, c) {
                    newly |= 1 << prio;
                }
            }
            self.hot[parent as usize].active |= newly;
            c = parent;
            m = newly;
        }
    }

    /// `c` (not red) stopped being active for the priorities `m`.
    fn lose(&mut self, mut c: u32, mut m: u8) {
        while m != 0 {
            let (color, parent) = (self.hot[c as usize].color, self.prof(c).parent);
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
                if self.feed_remove(parent, prio, c) {
                    emptied |= 1 << prio;
                }
            }
            self.hot[parent as usize].active &= !emptied;
            c = parent;
            m = emptied;
        }
    }

    /// Leaf `c` got a backlog: [`Self::gain`] for its one priority, the first step inline.
    #[inline(always)]
    fn leaf_gain(&mut self, c: u32, prio: usize) {
        let h = &mut self.hot[c as usize];
        h.active = 1 << prio;
        let (color, parent) = (h.color, self.profiles[h.profile as usize].parent);
        if color == Color::Red {
            return;
        }
        if color == Color::Green {
            self.row_insert(0, prio, c);
        }
        if parent != NONE && self.feed_insert(parent, prio, c) {
            self.hot[parent as usize].active |= 1 << prio;
            self.gain(parent, 1 << prio);
        }
    }

    /// Leaf `c` ran out of backlog: [`Self::lose`] for its one priority, the first step
    /// inline.
    #[inline(always)]
    fn leaf_lose(&mut self, c: u32, prio: usize) {
        let h = &mut self.hot[c as usize];
        h.active = 0;
        let (color, parent) = (h.color, self.profiles[h.profile as usize].parent);
        if color == Color::Red {
            return;
        }
        if color == Color::Green {
            self.row_delete(0, prio, c);
        }
        if parent != NONE && self.feed_remove(parent, prio, c) {
            self.hot[parent as usize].active &= !(1 << prio);
            self.lose(parent, 1 << prio);
        }
    }

    /// Refills `c`'s buckets to `now`, then recomputes its colour (see [`Self::recolor`]).
    ///
    /// The common case has a path of its own: a leaf without a pps limit turning between
    /// green and yellow (at line rate, nearly every packet turns one leaf yellow and another
    /// green). Such a leaf is active for its one priority or none, sits in the row of level
    /// 0 when green, and stays in its parent's feed either way, so the change is one row
    /// bit and, turning yellow, one wait entry.
    #[inline(always)]
    fn update_color(&mut self, c: u32, now: u64) {
        let h = &mut self.hot[c as usize];
        let p = &self.profiles[h.profile as usize];
        h.refill(p, now);
        if p.has_pps {
            self.cold[c as usize].pps.as_mut().expect("pps class").refill(now);
        } else if !p.inner_class && h.ceil_tokens >= 0 && h.color != Color::Red {
            let green = h.rate_tokens >= 0;
            let was_green = h.color == Color::Green;
            // As in `recolor_slow`: a yellow leaf that already waits keeps its entry.
            let wake = (!green && (was_green || !self.wait.contains(c)))
                .then(|| now + ns_until(h.rate_tokens, p.rate));
            if green != was_green {
                h.color = if green { Color::Green } else { Color::Yellow };
                let active = h.active;
                if active != 0 {
                    let prio = active.trailing_zeros() as usize;
                    if green {
                        self.row_insert(0, prio, c);
                    } else {
                        self.row_delete(0, prio, c);
                    }
                }
            }
            if let Some(t) = wake {
                self.wait.set_earlier(c, t);
            }
            return;
        }
        self.recolor(c, now);
    }

    /// Recomputes `c`'s colour from its buckets (refilled to `now`), moving it between rows
    /// and feeds, and its place in the wait wheel. Inline only the common case: the colour
    /// stays, and the class is green or already waits.
    #[inline]
    fn recolor(&mut self, c: u32, now: u64) {
        let h = &self.hot[c as usize];
        let pps_short = self.profiles[h.profile as usize].has_pps
            && !self.cold[c as usize].pps.as_ref().is_some_and(|p| p.conforms());
        let new = if h.ceil_tokens < 0 || pps_short {
            Color::Red
        } else if h.rate_tokens >= 0 {
            Color::Green
        } else {
            Color::Yellow
        };
        let old = h.color;
        if new != old || (new != Color::Green && !self.wait.contains(c)) {
            self.recolor_slow(c, old, new, now);
        }
    }

    #[inline(never)]
    fn recolor_slow(&mut self, c: u32, old: Color, new: Color, now: u64) {
        if new != old {
            self.change_color(c, old, new);
        }
        // The wait wheel is lazy: a class turning green keeps its entry (dropped when it comes
        // due), and while a class keeps its colour its wake time only moves later (charges add
        // debt), so its earlier entry stands (it comes due early, and is pushed again). Only a
        // new entry or a change of colour computes the wake time (a division).
        if new != Color::Green {
            self.wait_for(c, new, now);
        }
    }

    /// Moves `c` between rows and feeds for a change of colour.
    #[inline]
    fn change_color(&mut self, c: u32, old: Color, new: Color) {
        let m = self.hot[c as usize].active;
        if m != 0 {
            match (old, new) {
                (Color::Green, Color::Yellow) => self.row_remove(c, m),
                (Color::Yellow, Color::Green) => self.row_add(c, m),
                (_, Color::Red) => self.lose(c, m),
                _ => {}
            }
        }
        self.hot[c as usize].color = new;
        if m != 0 && old == Color::Red {
            self.gain(c, m);
        }
    }

    /// Enters `c` (`color`, not green) in the wait wheel at the time its colour changes.
    #[inline]
    fn wait_for(&mut self, c: u32, color: Color, now: u64) {
        let h = &self.hot[c as usize];
        let p = &self.profiles[h.profile as usize];
        let wake = match color {
            Color::Red => {
                let pps = p.has_pps.then(|| self.cold[c as usize].pps.as_ref()).flatten();
                ns_until(h.ceil_tokens, p.ceil).max(pps.map_or(0, |b| b.ns_until_conform()))
            }
            _ => ns_until(h.rate_tokens, p.rate),
        };
        self.wait.set_earlier(c, now + wake);
    }

    /// Applies the colour changes due at `now` (only a comparison when none is).
    #[inline(always)]
    fn run_events(&mut self, now: u64) {
        if self.wait.lower_bound() <= now {
            self.run_due_events(now);
        }
    }

    #[inline(never)]
    fn run_due_events(&mut self, now: u64) {
        while let Some(c) = self.wait.pop_due(now) {
            self.update_color(c, now);
        }
    }

    // ----- the fast path -----

    /// Queues `item` (a packet of `len` bytes) on leaf `class` at `now_ns`, or hands it back
    /// with the reason it was dropped (counted). Allocates nothing.
    #[inline]
    pub fn enqueue(
        &mut self,
        class: ClassId,
        item: T,
        len: u32,
        now_ns: u64,
    ) -> Result<(), (T, DropReason)> {
        let now = self.advance(now_ns);
        match self.admit(class, len, now) {
            Ok((s, prio, _)) => {
                self.push(s, prio, item, len);
                Ok(())
            }
            Err(r) => Err((item, r)),
        }
    }

    /// As [`Scheduler::enqueue`], but a packet that the next dequeue would hand out first is
    /// handed back at once (`Ok(Some(item))`, to send now) instead of queued (`Ok(None)`).
    ///
    /// That is the case when no leaf of the same or a higher priority waits to send on its
    /// own rate (is in a row of level 0, which dequeue serves before any borrower, highest
    /// priority first) and `class` may send on its own rate now (green, its queue empty).
    /// The packet is then charged exactly as a dequeue right after the enqueue would charge
    /// it (tokens of the leaf and its ancestors, DRR deficit and round robin, counters,
    /// colours), so decisions are those of `enqueue` + `dequeue`; only the queue, the
    /// activity bookkeeping it would undo at once and the search for the class are skipped.
    /// A port whose classes are all under their limits (the common case) sends without
    /// queueing at all, and a class of priority 0 under its guarantee passes even while
    /// classes of lower priority keep queues.
    #[inline]
    pub fn enqueue_or_pass(
        &mut self,
        class: ClassId,
        item: T,
        len: u32,
        now_ns: u64,
    ) -> Result<Option<T>, (T, DropReason)> {
        match self.offer(class, len, now_ns) {
            Ok(Offer::Pass) => Ok(Some(item)),
            Ok(Offer::Queue(a)) => {
                a.queue(item);
                Ok(None)
            }
            Err(r) => Err((item, r)),
        }
    }

    /// [`Scheduler::enqueue_or_pass`] before the item moves: the decision for a packet of
    /// `len` bytes to leaf `class` at `now_ns`. A passed packet is charged at once, as there;
    /// one to queue is queued by [`Admitted::queue`]; a dropped one is counted. The caller
    /// keeps the item until it knows where it goes, so a packet sent at once is never moved
    /// into the scheduler and back. (Dropping an `Admitted` queues nothing and counts
    /// nothing, but a policing class has already spent the packet's tokens.)
    #[inline]
    pub fn offer(
        &mut self,
        class: ClassId,
        len: u32,
        now_ns: u64,
    ) -> Result<Offer<'_, T>, DropReason> {
        let now = self.advance(now_ns);
        let (s, prio, idle) = self.admit(class, len, now)?;
        // The rows of level 0 at this priority and above (bit `p` for priority `p`).
        let ahead = !(0xfeu8 << prio);
        if self.row_mask[0] & ahead == 0 && idle {
            // What dequeue starts with: the colour changes due now (one comparison when none
            // is; they may put a leaf in a row of level 0).
            self.run_events(now);
            if self.row_mask[0] & ahead == 0 && self.may_send_own(s, now) {
                // As `pick` and `dequeue_from` would serve it from the row of level 0.
                self.row_cursor[0][prio] = s;
                if self.drr(s, prio, 0, len) {
                    self.row_cursor[0][prio] = s + 1;
                }
                self.stats.enqueued += 1;
                self.stats.dequeued += 1;
                self.charge::<true>(s, 0, len, now);
                return Ok(Offer::Pass);
            }
        }
        Ok(Offer::Queue(Admitted { sched: self, slot: s, prio, len }))
    }

    /// Whether leaf `s` is green at `now`, recoloured first if it is in debt (as `pick`
    /// checks a class it finds in a row). `pick` keeps its own copy of the check: a class
    /// in a row is green unless in debt, so it reads no colour on the common path (calling
    /// this there cost 8-12 instructions per packet).
    #[inline(always)]
    fn may_send_own(&mut self, s: u32, now: u64) -> bool {
        let h = &self.hot[s as usize];
        if (h.rate_tokens | h.ceil_tokens) < 0 {
            self.update_color(s, now);
        }
        self.hot[s as usize].color == Color::Green
    }

    /// Admission of a packet of `len` bytes to leaf `class` at `now`: its slot, priority and
    /// whether its queue is empty, or why it is dropped (counted).
    #[inline(always)]
    fn admit(
        &mut self,
        class: ClassId,
        len: u32,
        now: u64,
    ) -> Result<(u32, usize, bool), DropReason> {
        let Some(s) = self.slot(class) else {
            self.stats.dropped += 1;
            self.stats.dropped_unknown_class += 1;
            return Err(DropReason::UnknownClass);
        };
        let h = &self.hot[s as usize];
        let p = &self.profiles[h.profile as usize];
        let queued = u32::from(h.queued);
        let ok = Ok((s, usize::from(p.prio), queued == 0));
        let reason = if p.inner_class {
            DropReason::NotLeaf
        } else if queued >= p.queue_limit {
            self.cold[s as usize].dropped_queue_full += 1;
            DropReason::QueueFull
        } else if p.police {
            let k = &mut self.cold[s as usize];
            match k.policer.as_mut().expect("policing class").check(len, now) {
                Ok(()) => return ok,
                Err(PoliceVerdict::Bytes) => {
                    k.dropped_policed += 1;
                    DropReason::Policed
                }
                Err(PoliceVerdict::Packets) => {
                    k.dropped_pps += 1;
                    DropReason::PpsLimit
                }
            }
        } else {
            return ok;
        };
        self.stats.dropped += 1;
        Err(reason)
    }

    /// Queues an admitted packet on leaf `s` (of priority `prio`).
    #[inline(always)]
    fn push(&mut self, s: u32, prio: usize, item: T, len: u32) {
        // `apply` reserved room for every queue's bound.
        debug_assert!(self.pool.has_room(), "the pool would grow");
        let h = &mut self.hot[s as usize];
        self.pool.push(&mut h.queue, item, len);
        h.queued += 1;
        let first = h.queued == 1;
        self.stats.enqueued += 1;
        self.stats.queued += 1;
        if first {
            self.leaf_gain(s, prio);
        }
    }

    /// The next packet to send at `now_ns`, with its class and length, or `None` when every
    /// backlogged class must wait (see [`Scheduler::next_wake_ns`]). Allocates nothing.
    pub fn dequeue(&mut self, now_ns: u64) -> Option<(ClassId, T, u32)> {
        let now = self.ready(now_ns)?;
        self.pick(now)
    }

    /// Moves the time to `now_ns` and, if anything is queued, runs the colour changes due
    /// then and returns the time: what a dequeue or a batch of them starts with.
    #[inline]
    fn ready(&mut self, now_ns: u64) -> Option<u64> {
        let now = self.advance(now_ns);
        if self.stats.queued == 0 {
            return None;
        }
        self.run_events(now);
        Some(now)
    }

    /// The next packet at `now`, the due colour changes run. (Nothing comes due at the
    /// time it is entered: a wake-up is at least a nanosecond ahead, so one run serves a
    /// whole batch at one time.)
    #[inline]
    fn pick(&mut self, now: u64) -> Option<(ClassId, T, u32)> {
        loop {
            let level = self.level_mask.trailing_zeros() as usize;
            if level >= MAX_DEPTH {
                return None;
            }
            let prio = self.row_mask[level].trailing_zeros() as usize;
            let first = self.rows[level * NPRIO + prio]
                .next_in(0, self.hot.len() as u32, self.row_cursor[level][prio])
                .expect("active row");
            // Rows are lazy (see `charge`): a class in one may have gone over its rate or
            // ceiling since it was last coloured. Tokens only grow with time, so non-negative
            // ones need no refill; otherwise recolour it at `now` and choose again if it left.
            let h = &self.hot[first as usize];
            if (h.rate_tokens | h.ceil_tokens) < 0 {
                self.update_color(first, now);
                if self.hot[first as usize].color != Color::Green {
                    continue;
                }
            }
            // The round robin stands at the class it serves (HTB's pointer into the list),
            // also when it wrapped: the next search starts there, not past the list's end.
            // (Not at a class found in debt, which an eager recolouring would have taken
            // out of the row.)
            self.row_cursor[level][prio] = first;
            return Some(self.dequeue_from(first, level, prio, now));
        }
    }

    /// Dequeues up to `max` packets at `now_ns`, handing each to `out`; returns how many.
    pub fn dequeue_batch(
        &mut self,
        now_ns: u64,
        max: usize,
        mut out: impl FnMut(ClassId, T, u32),
    ) -> usize {
        let Some(now) = self.ready(now_ns) else { return 0 };
        let mut n = 0;
        while n < max {
            match self.pick(now) {
                Some((c, t, l)) => out(c, t, l),
                None => break,
            }
            n += 1;
        }
        n
    }

    /// Charges `len` bytes to `c`'s DRR deficit at `prio` in a row (`x` 0) or its parent's
    /// feed (`x` 1); returns whether it spent its quantum (its list's round robin moves past
    /// it, and the deficit gets a new quantum).
    #[inline(always)]
    fn drr(&mut self, c: u32, prio: usize, x: usize, len: u32) -> bool {
        let h = &mut self.hot[c as usize];
        let p = &self.profiles[h.profile as usize];
        let quantum = p.quantum;
        let d = if p.inner_class {
            &mut self.inner[p.inner as usize].deficit[prio][x]
        } else if x == 0 {
            &mut h.deficit
        } else {
            &mut self.lent[c as usize].feed_deficit
        };
        *d = d.saturating_sub(i32::try_from(len).unwrap_or(i32::MAX));
        let spent = *d < 0;
        if spent {
            *d += quantum;
        }
        spent
    }

    /// Takes the head of leaf `c`'s queue.
    #[inline(always)]
    fn pop(&mut self, c: u32) -> (T, u32, bool) {
        let h = &mut self.hot[c as usize];
        let (item, len) = self.pool.pop(&mut h.queue).expect("active leaf has a backlog");
        h.queued -= 1;
        self.stats.dequeued += 1;
        self.stats.queued -= 1;
        (item, len, h.queued == 0)
    }

    /// Serves `first`, a green class in the row of `level` at `prio`.
    #[inline]
    fn dequeue_from(
        &mut self,
        first: u32,
        level: usize,
        prio: usize,
        now: u64,
    ) -> (ClassId, T, u32) {
        if level == 0 {
            // A green leaf sending on its own rate (the common case): no walk.
            let (item, len, empty) = self.pop(first);
            if self.drr(first, prio, 0, len) {
                self.row_cursor[0][prio] = first + 1;
            }
            if empty {
                self.leaf_lose(first, prio);
            }
            self.charge::<true>(first, 0, len, now);
            // Still backlogged and deep in debt: yellow now (see the module docs).
            let h = &self.hot[first as usize];
            if !empty && h.rate_tokens < 0 && h.color == Color::Green {
                let rate = self.profiles[h.profile as usize].rate;
                if h.rate_tokens.unsigned_abs() > rate.saturating_mul(EAGER_DEBT_NS) {
                    self.update_color(first, now);
                }
            }
            return (self.hot[first as usize].id, item, len);
        }
        self.dequeue_walk(first, level, prio, now)
    }

    /// Serves a borrower: from `first` in the row of `level` down the feeds to a leaf.
    fn dequeue_walk(
        &mut self,
        first: u32,
        level: usize,
        prio: usize,
        now: u64,
    ) -> (ClassId, T, u32) {
        let mut path = [NONE; MAX_DEPTH];
        let mut n = 0;
        let mut c = first;
        loop {
            path[n] = c;
            n += 1;
            if !self.prof(c).inner_class {
                break;
            }
            let i = self.prof(c).inner as usize;
            let k = &mut self.inner[i];
            c = self.feeds[prio].next_in(k.lo, k.hi, k.cursor[prio]).expect("active feed");
            k.cursor[prio] = c;
        }
        let leaf = c;
        let (item, len, empty) = self.pop(leaf);
        // DRR along the path: a class that has spent its quantum moves its list's round robin
        // past itself.
        for i in 0..n {
            let c = path[i];
            if self.drr(c, prio, usize::from(i > 0), len) {
                if i == 0 {
                    self.row_cursor[level][prio] = c + 1;
                } else {
                    let p = self.prof(path[i - 1]).inner as usize;
                    self.inner[p].cursor[prio] = c + 1;
                }
            }
        }
        if empty {
            self.leaf_lose(leaf, prio);
        }
        self.charge::<false>(leaf, level as u8, len, now);
        (self.hot[leaf as usize].id, item, len)
    }

    /// Charges a packet of `len` bytes served from `level` to `leaf` and its ancestors: the
    /// ceil of each, the rate of those at or above `level`. `OWN`: served from level 0 (on
    /// the leaf's own rate), so every class pays with its rate and none lends.
    #[inline(always)]
    fn charge<const OWN: bool>(&mut self, leaf: u32, level: u8, len: u32, now: u64) {
        debug_assert!(!OWN || level == 0);
        let mut c = leaf;
        while c != NONE {
            let h = &mut self.hot[c as usize];
            let p = &self.profiles[h.profile as usize];
            h.refill(p, now);
            let cost = len.max(p.mpu);
            let units = cost_units(cost);
            let own = OWN || p.level >= level;
            if own {
                h.rate_tokens = h.rate_tokens.saturating_sub(units);
            }
            h.ceil_tokens = h.ceil_tokens.saturating_sub(units);
            let parent = p.parent;
            let lender = !OWN && p.level == level && level > 0;
            // A green class without a pps limit stays where it is even when this charge puts
            // it over its rate or ceiling: rows are lazy, and `dequeue` recolours a class it
            // finds in debt before serving it. Most such debts are repaid by then (a class at
            // about its guarantee flips at nearly every packet), which saves taking it out of
            // its row, a wait entry and putting it back. Borrowing is unaffected: a stale
            // green class sits in a row of a lower level than any lender's, and rows are
            // served lowest level first, so it is recoloured before any walk could reach it.
            let (has_pps, green) = (p.has_pps, h.color == Color::Green);
            h.sent_bytes += u64::from(len);
            h.sent_packets += 1;
            if !own {
                self.lent[c as usize].borrowed += u64::from(cost);
            } else if lender {
                self.lent[c as usize].lent += u64::from(cost);
            }
            if has_pps {
                self.charge_pps(c, now);
            } else if !green {
                // Inline: a yellow class that borrowed (nearly every packet of a class whose
                // guarantee is a token, as a pod's is) stays yellow, and `recolor`'s common
                // case is a comparison.
                self.recolor(c, now);
            }
            c = parent;
        }
    }

    /// The rest of a charge to `c`, a class with a pps limit: its packet, and its colour.
    #[inline(never)]
    fn charge_pps(&mut self, c: u32, now: u64) {
        let p = self.cold[c as usize].pps.as_mut().expect("pps class");
        p.refill(now);
        p.consume(1);
        self.recolor(c, now);
    }

    /// When the earliest waiting class changes colour, if anything is queued: the time to call
    /// [`Scheduler::dequeue`] again after it returned `None`.
    pub fn next_wake_ns(&self) -> Option<u64> {
        if self.stats.queued == 0 {
            return None;
        }
        self.wait.earliest()
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
        self.make_room(&want)?;

        // Commit. The new slots: breadth first from the roots, children in id order, so each
        // class's children are contiguous.
        let mut kids: BTreeMap<ClassId, Vec<ClassId>> = BTreeMap::new();
        let mut order: Vec<ClassId> = Vec::with_capacity(want.len());
        for (&id, cfg) in &want {
            match cfg.parent {
                None => order.push(id),
                Some(p) => kids.entry(p).or_default().push(id),
            }
        }
        let mut i = 0;
        while i < order.len() {
            if let Some(k) = kids.get(&order[i]) {
                order.extend_from_slice(k);
            }
            i += 1;
        }
        debug_assert_eq!(order.len(), want.len(), "validation leaves no cycle");

        // Every running class's buckets are refilled to `now` at its old rates, so new rates
        // count from `now` on.
        for h in &mut self.hot {
            h.refill(&self.profiles[h.profile as usize], now);
        }
        let old_hot = std::mem::take(&mut self.hot);
        let old_profiles = std::mem::take(&mut self.profiles);
        let mut old_cold: Vec<Option<Cold>> =
            std::mem::take(&mut self.cold).into_iter().map(Some).collect();
        let old_lent = std::mem::take(&mut self.lent);
        let old_inner = std::mem::take(&mut self.inner);

        // Removed classes hand back their items, in id order.
        let mut handed_back = Vec::new();
        let mut gone: Vec<(ClassId, usize)> = old_hot
            .iter()
            .enumerate()
            .filter(|(_, h)| !want.contains_key(&h.id))
            .map(|(s, h)| (h.id, s))
            .collect();
        gone.sort_unstable();
        for (id, s) in gone {
            self.slot_of[id.0 as usize] = NONE;
            let mut q = old_hot[s].queue;
            while let Some((t, _)) = self.pool.pop(&mut q) {
                self.stats.removed += 1;
                self.stats.queued -= 1;
                handed_back.push(t);
            }
        }

        // Structure: each class's old slot, parent slot and depth (parents come before their
        // children), whether it has children.
        let n = order.len();
        let old_slot: Vec<Option<u32>> = order.iter().map(|&id| self.slot(id)).collect();
        for (s, &id) in order.iter().enumerate() {
            if self.slot_of.len() <= id.0 as usize {
                self.slot_of.resize(id.0 as usize + 1, NONE);
            }
            self.slot_of[id.0 as usize] = s as u32;
        }
        let mut parent = vec![NONE; n];
        let mut depth = vec![0usize; n];
        let mut inner = vec![NONE; n];
        for (s, &id) in order.iter().enumerate() {
            let Some(p) = want[&id].parent else { continue };
            let p = self.slot(p).expect("valid") as usize;
            parent[s] = p as u32;
            depth[s] = depth[p] + 1;
            if inner[p] == NONE {
                // The parent's first child: its children are the slots from here on.
                let deficit = old_slot[p]
                    .map(|o| &old_hot[o as usize])
                    .filter(|h| old_profiles[h.profile as usize].inner_class)
                    .map_or([[0; 2]; NPRIO], |h| {
                        old_inner[old_profiles[h.profile as usize].inner as usize].deficit
                    });
                inner[p] = self.inner.len() as u32;
                let lo = s as u32;
                self.inner.push(Inner {
                    lo,
                    hi: lo + 1,
                    count: [0; NPRIO],
                    cursor: [lo; NPRIO],
                    deficit,
                });
            } else {
                self.inner[inner[p] as usize].hi = s as u32 + 1;
            }
        }

        // State and profiles, slot by slot (a queue moves with its class's state).
        let mut interned: HashMap<Profile, u32> = HashMap::new();
        for (s, &id) in order.iter().enumerate() {
            let cfg = &want[&id];
            let (mut h, mut k, lent) = match old_slot[s] {
                Some(o) => {
                    let o = o as usize;
                    let k = old_cold[o].take().expect("live slot");
                    (old_hot[o], k, old_lent[o])
                }
                None => (new_hot(cfg, now), new_cold(cfg, now), Lent::default()),
            };
            let (rate_cap, ceil_cap) = (cap_for(rate_burst(cfg)), cap_for(cfg.burst_bytes));
            if touched.contains(&id) {
                update_class(&mut k, cfg, now);
                // Refilled at the old rates above; now capped at the new bursts.
                h.rate_tokens = h.rate_tokens.min(rate_cap);
                h.ceil_tokens = h.ceil_tokens.min(ceil_cap);
            }
            let inner_class = inner[s] != NONE;
            let prof = Profile {
                rate: cfg.rate_bps,
                ceil: cfg.ceil_bps,
                rate_cap,
                ceil_cap,
                parent: parent[s],
                mpu: cfg.mpu,
                quantum: quantum(cfg),
                queue_limit: cfg.queue_limit,
                prio: cfg.prio,
                level: if inner_class { (MAX_DEPTH - 1 - depth[s]) as u8 } else { 0 },
                police: cfg.mode == Mode::Police,
                has_pps: k.pps.is_some(),
                inner_class,
                inner: inner[s],
            };
            h.profile = *interned.entry(prof).or_insert_with(|| {
                self.profiles.push(prof);
                (self.profiles.len() - 1) as u32
            });
            h.color = Color::Green;
            h.active = 0;
            h.id = id;
            self.hot.push(h);
            self.cold.push(k);
            self.lent.push(lent);
        }

        // Every list and the wait wheel anew.
        self.rows = vec![ActiveSet::new(n); MAX_DEPTH * NPRIO];
        self.feeds = vec![ActiveSet::new(n); NPRIO];
        self.row_cursor = [[0; NPRIO]; MAX_DEPTH];
        self.row_mask = [0; MAX_DEPTH];
        self.level_mask = 0;
        self.wait.reset(n, now);
        for s in 0..n as u32 {
            self.update_color(s, now);
        }
        for s in 0..n as u32 {
            if self.hot[s as usize].queued != 0 {
                let prio = usize::from(self.prof(s).prio);
                self.leaf_gain(s, prio);
            }
        }
        Ok(handed_back)
    }

    /// Reserves room in the pool for every leaf of `want` to fill its queue to its bound (a
    /// limit lowered below a backlog keeps the backlog), so that enqueue never allocates; an
    /// idle pool is laid out anew first, which gives back the room of removed classes. Fails,
    /// changing nothing, when the memory cannot be had (naming the leaf with the largest
    /// bound): one allocation for all queues, where a queue each could have overcommitted.
    fn make_room(&mut self, want: &BTreeMap<ClassId, ClassConfig>) -> Result<(), QosError> {
        let parents: HashSet<ClassId> = want.values().filter_map(|c| c.parent).collect();
        let leaves = want.iter().filter(|(id, _)| !parents.contains(id));
        let mut room = 0usize;
        let mut largest = None;
        for (&id, cfg) in leaves {
            let queued = self.slot(id).map_or(0, |s| self.hot[s as usize].queued);
            room = room.saturating_add(usize::from(queued).max(cfg.queue_limit as usize));
            largest = largest.max(Some((cfg.queue_limit, id)));
        }
        let refused = |e| {
            let (limit, id) = largest.unwrap_or((0, ClassId(0)));
            let r = format!(
                "queue_limit {limit}: room for {room} queued packets in all ({} bytes each) \
                 cannot be allocated: {e}",
                Pool::<T>::node_size()
            );
            err(id, Field::QueueLimit, r)
        };
        if self.stats.queued == 0 {
            let mut fresh = Pool::default();
            fresh.try_reserve(room).map_err(refused)?;
            self.pool = fresh;
            Ok(())
        } else {
            self.pool.try_reserve(room).map_err(refused)
        }
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
            if c.queue_limit == 0 || c.queue_limit > MAX_QUEUE_LIMIT {
                let r = format!("queue_limit {} is not in 1..={MAX_QUEUE_LIMIT}", c.queue_limit);
                return Err(err(id, Field::QueueLimit, r));
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
                    if self.hot[s as usize].queued != 0 {
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
        self.hot.iter().zip(&self.cold).map(|(h, k)| (h.id, k.cfg.clone())).collect()
    }

    /// A class's settings.
    pub fn config(&self, id: ClassId) -> Option<&ClassConfig> {
        self.slot(id).map(|s| &self.cold[s as usize].cfg)
    }

    /// A class's counters.
    pub fn class_stats(&self, id: ClassId) -> Option<ClassStats> {
        self.slot(id).map(|s| {
            let (h, k, t) = (&self.hot[s as usize], &self.cold[s as usize], self.lent[s as usize]);
            let queued_bytes = self.pool.lens(h.queue).map(u64::from).sum();
            ClassStats {
                sent_bytes: h.sent_bytes,
                sent_packets: h.sent_packets,
                queued_packets: u64::from(h.queued),
                queued_bytes,
                dropped_queue_full: k.dropped_queue_full,
                dropped_policed: k.dropped_policed,
                dropped_pps: k.dropped_pps,
                borrowed_bytes: t.borrowed,
                lent_bytes: t.lent,
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
        self.hot.len()
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

/// A new class's state: buckets full at `now`, nothing queued or sent (its profile, queue
/// and tree are set by [`Scheduler::apply`]).
fn new_hot(cfg: &ClassConfig, now: u64) -> Hot {
    Hot {
        rate_tokens: cap_for(rate_burst(cfg)),
        ceil_tokens: cap_for(cfg.burst_bytes),
        last_ns: now,
        sent_bytes: 0,
        sent_packets: 0,
        deficit: 0,
        profile: 0,
        id: ClassId(0),
        queue: Fifo::EMPTY,
        queued: 0,
        color: Color::Green,
        active: 0,
    }
}

/// A new class's settings, policer and pps bucket (full at `now`).
fn new_cold(cfg: &ClassConfig, now: u64) -> Cold {
    let police = cfg.mode == Mode::Police;
    Cold {
        cfg: cfg.clone(),
        pps: cfg.pps.filter(|_| !police).map(|r| PacketBucket::packets(r, cfg.pps_burst, now)),
        policer: police.then(|| new_policer(cfg, now)),
        dropped_queue_full: 0,
        dropped_policed: 0,
        dropped_pps: 0,
    }
}

/// Changes a running class's pps bucket, policer and settings to `cfg` at `now` (its tokens,
/// queue and counters are kept by [`Scheduler::apply`]).
fn update_class(k: &mut Cold, cfg: &ClassConfig, now: u64) {
    k.pps = match (k.pps.take(), cfg.pps) {
        (Some(mut b), Some(r)) => {
            b.set(r, cfg.pps_burst, now);
            Some(b)
        }
        (None, Some(r)) => Some(PacketBucket::packets(r, cfg.pps_burst, now)),
        (_, None) => None,
    };
    k.policer = match (k.policer.take(), cfg.mode) {
        (Some(mut p), Mode::Police) => {
            p.set(cfg.ceil_bps, cfg.burst_bytes, cfg.mpu, police_pps(cfg), now);
            Some(p)
        }
        (None, Mode::Police) => Some(new_policer(cfg, now)),
        (_, Mode::Shape) => None,
    };
    if cfg.mode == Mode::Police {
        k.pps = None; // the policer enforces it
    }
    k.cfg = cfg.clone();
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, VecDeque};

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
    fn a_packet_passes_only_when_dequeue_would_send_it_first() {
        // y sends 500-byte packets at 1 Mbit/s from a 600-byte burst; x is idle.
        let (y, x) = (ClassId(2), ClassId(3));
        let classes =
            [(y, ClassConfig { burst_bytes: 600, ..leaf(M, M) }), (x, leaf(10 * M, 10 * M))];
        let (mut a, mut b) = (sched(100 * M, &classes), sched(100 * M, &classes));
        for s in [&mut a, &mut b] {
            (0..3).for_each(|i| s.enqueue(y, i, 500, 0).unwrap());
            // Two packets, then y is 400 bytes in debt (red for 3.2 ms) with one queued. It
            // has not spent its DRR quantum: the round robin stays at it.
            assert_eq!(s.dequeue(0), Some((y, 0, 500)));
            assert_eq!(s.dequeue(0), Some((y, 1, 500)));
            assert_eq!(s.dequeue(0), None);
        }
        let wake = a.next_wake_ns().unwrap();
        assert_eq!(wake, 3_200_000);
        // Nothing waits to send on its own rate: x's packet passes, charged as a dequeue.
        assert_eq!(b.enqueue_or_pass(x, 10, 100, 1), Ok(Some(10)));
        a.enqueue(x, 10, 100, 1).unwrap();
        assert_eq!(a.dequeue(1), Some((x, 10, 100)));
        // At y's wake-up y is green again, and first in the round robin: x queues behind it.
        assert_eq!(b.enqueue_or_pass(x, 11, 100, wake), Ok(None));
        a.enqueue(x, 11, 100, wake).unwrap();
        for s in [&mut a, &mut b] {
            assert_eq!(s.dequeue(wake), Some((y, 2, 500)));
            assert_eq!(s.dequeue(wake), Some((x, 11, 100)));
            assert_eq!(s.class_stats(x).unwrap().sent_packets, 2);
        }
        assert_eq!(a.stats(), b.stats());
        // A refused packet comes back with its reason, as from `enqueue`.
        assert_eq!(
            b.enqueue_or_pass(ClassId(9), 12, 100, wake),
            Err((12, DropReason::UnknownClass))
        );
    }

    #[test]
    fn a_higher_priority_passes_a_lower_ones_queue() {
        // Both under their guarantees; bulk (priority 3) keeps a queue.
        let (urgent, bulk) = (ClassId(2), ClassId(3));
        let bulk_cfg = ClassConfig { prio: 3, ..leaf(50 * M, 50 * M) };
        let classes = [(urgent, ClassConfig { prio: 0, ..leaf(50 * M, 50 * M) }), (bulk, bulk_cfg)];
        let mut s = sched(100 * M, &classes);
        (0..4).for_each(|i| s.enqueue(bulk, i, 1000, 0).unwrap());
        // Dequeue would send urgent's packet before bulk's queue: it passes.
        assert_eq!(s.enqueue_or_pass(urgent, 10, 1000, 0), Ok(Some(10)));
        assert_eq!(s.class_stats(urgent).unwrap().sent_packets, 1);
        // Bulk's own next packet waits behind its queue.
        assert_eq!(s.enqueue_or_pass(bulk, 4, 1000, 0), Ok(None));
        assert_eq!(s.dequeue(0), Some((bulk, 0, 1000)));
        // A class of lower priority than a queue's waits too, even with an empty queue.
        let mut classes = classes;
        classes[0].1.prio = 4;
        let mut t = sched(100 * M, &classes);
        (0..2).for_each(|i| t.enqueue(bulk, i, 1000, 0).unwrap());
        assert_eq!(t.enqueue_or_pass(urgent, 10, 1000, 0), Ok(None));
        assert_eq!(t.dequeue(0), Some((bulk, 0, 1000)));
    }

    #[test]
    fn an_offer_leaves_the_item_with_the_caller_until_it_is_queued() {
        let (urgent, bulk) = (ClassId(2), ClassId(3));
        let bulk_cfg = ClassConfig { prio: 3, ..leaf(50 * M, 50 * M) };
        let classes = [(urgent, ClassConfig { prio: 0, ..leaf(50 * M, 50 * M) }), (bulk, bulk_cfg)];
        let mut s = sched(100 * M, &classes);
        s.enqueue(bulk, 0, 1000, 0).unwrap();
        // Passed: charged at once, nothing queued.
        assert!(matches!(s.offer(urgent, 1000, 0), Ok(Offer::Pass)));
        assert_eq!(s.class_stats(urgent).unwrap().sent_packets, 1);
        assert_eq!(s.backlog(), 1);
        // To queue: an `Admitted` dropped queues and counts nothing (the pass counted as
        // enqueued and dequeued).
        assert_eq!((s.stats().enqueued, s.stats().dequeued), (2, 1));
        assert!(matches!(s.offer(bulk, 1000, 0), Ok(Offer::Queue(_))));
        assert_eq!((s.backlog(), s.stats().enqueued), (1, 2));
        // Queued: behind the first, in order.
        match s.offer(bulk, 1000, 0) {
            Ok(Offer::Queue(a)) => a.queue(1),
            other => panic!("want a queue, got {other:?}"),
        }
        assert_eq!((s.backlog(), s.stats().enqueued), (2, 3));
        assert_eq!(s.dequeue(0), Some((bulk, 0, 1000)));
        assert_eq!(s.dequeue(0), Some((bulk, 1, 1000)));
        assert!(matches!(s.offer(ClassId(99), 1000, 0), Err(DropReason::UnknownClass)));
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
    fn a_large_burst_on_a_small_guarantee_does_not_take_a_guarantee() {
        // As vswitchd makes them: twenty pods with a token guarantee, the uplink as ceiling
        // and 4 ms of it as burst; A with half the uplink guaranteed, the same burst.
        let burst = ClassConfig { burst_bytes: 50_000, ..leaf(10_000, 100 * M) };
        let mut classes = vec![(A, ClassConfig { burst_bytes: 50_000, ..leaf(50 * M, 100 * M) })];
        classes.extend((0..20).map(|i| (ClassId(100 + i), burst.clone())));
        let mut s = sched(100 * M, &classes);
        let sources: Vec<_> = classes.iter().map(|(c, _)| (*c, 1500)).collect();
        // A pod's rate bucket: its burst for as long at its rate, at least ten frames.
        assert_eq!(rate_burst(&burst), 15_000);
        assert_eq!(rate_burst(&classes[0].1), 25_000);
        // All backlogged from the start, with full buckets. Green classes are served before
        // borrowers, so the others' green bytes over a window are at most their rates' worth
        // and their rate buckets: A, backlogged, gets its guarantee less those buckets (and a
        // frame of timing). Measured at 200 ms, where that is 1.25 MB - 0.3 MB.
        let ns = 200_000_000;
        let (bytes, _) = run(&mut s, &sources, 100 * M, 0, ns);
        let lost = 20 * rate_burst(&burst) + 1500;
        let floor = (50 * M * ns / NS_PER_SEC / 8 - lost) as f64 * 8.0 / ns as f64 * 1e3;
        let a = mbps(&bytes, A, ns);
        assert!(a >= floor, "A {a} Mbit/s, guaranteed at least {floor}");
        assert_eq!(rate_burst(&ClassConfig { burst_bytes: 1000, ..burst }), 1000);
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

    /// A queue limit lowered below the backlog keeps every queued packet, in order (the
    /// queue keeps its room), and refuses new ones until the queue is below the new limit.
    #[test]
    fn lowering_the_queue_limit_keeps_the_backlog() {
        let a = ClassConfig { queue_limit: 8, ..leaf(90 * M, 100 * M) };
        let mut s = sched(100 * M, &[(A, a.clone()), (B, leaf(M, M))]);
        for i in 0..8 {
            s.enqueue(A, i, 100, 0).unwrap();
        }
        // Three out, three in.
        let mut out: Vec<u64> = (0..3).filter_map(|_| s.dequeue(0).map(|x| x.1)).collect();
        for i in 8..11 {
            s.enqueue(A, i, 100, 0).unwrap();
        }
        s.apply([Change::Set(A, ClassConfig { queue_limit: 2, ..a })], 0).unwrap();
        let st = s.class_stats(A).unwrap();
        assert_eq!((st.queued_packets, st.queued_bytes), (8, 800));
        assert_eq!(s.enqueue(A, 99, 100, 0), Err((99, DropReason::QueueFull)));
        for _ in 0..6 {
            out.extend(s.dequeue(0).map(|x| x.1));
        }
        assert_eq!(s.enqueue(A, 98, 100, 0), Err((98, DropReason::QueueFull))); // 2 left
        out.extend(s.dequeue(0).map(|x| x.1));
        s.enqueue(A, 11, 100, 0).unwrap();
        assert_eq!(s.enqueue(A, 12, 100, 0), Err((12, DropReason::QueueFull)));
        while let Some((_, x, _)) = s.dequeue(0) {
            out.push(x);
        }
        assert_eq!(out, (0..12).collect::<Vec<_>>());
        let st = s.stats();
        assert_eq!((st.enqueued, st.dequeued, st.queued, st.dropped), (12, 12, 0, 3));
        let too_long = ClassConfig { queue_limit: MAX_QUEUE_LIMIT + 1, ..leaf(M, M) };
        let e = s.set_class(B, too_long, 0).unwrap_err();
        assert_eq!((e.class, e.field), (B, Field::QueueLimit));
        assert_eq!(e.reason, "queue_limit 65536 is not in 1..=65535");
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
    fn queue_bounds_whose_room_cannot_be_allocated_are_refused_whole() {
        // Linux refuses one allocation larger than memory and swap unless it overcommits
        // always (vm.overcommit_memory = 1): bounds that need twice that must be refused.
        let overcommit = std::fs::read_to_string("/proc/sys/vm/overcommit_memory");
        if overcommit.is_ok_and(|o| o.trim() == "1") {
            eprintln!("skipped: this kernel grants any allocation (vm.overcommit_memory = 1)");
            return;
        }
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let kib = |key: &str| -> u64 {
            let line = meminfo.lines().find(|l| l.starts_with(key)).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        };
        let memory = (kib("MemTotal:") + kib("SwapTotal:")) * 1024;
        let mut s: Scheduler<[u8; 4096]> = Scheduler::new();
        let per_leaf = u64::from(MAX_QUEUE_LIMIT) * Pool::<[u8; 4096]>::node_size() as u64;
        let leaves = (2 * memory).div_ceil(per_leaf) as u32;
        let rate = u64::from(leaves + 1) * M;
        let root = ClassConfig::new(None, rate, rate);
        let small = |limit| ClassConfig { queue_limit: limit, ..leaf(M, M) };
        s.apply([Change::Set(ROOT, root), Change::Set(A, small(1))], 0).unwrap();
        let before = s.configs();
        let big = (0..leaves).map(|i| Change::Set(ClassId(100 + i), small(MAX_QUEUE_LIMIT)));
        let e = s.apply(big, 0).unwrap_err();
        assert_eq!((e.class.0, e.field), (100 + leaves - 1, Field::QueueLimit), "{e}");
        let room = u64::from(leaves) * u64::from(MAX_QUEUE_LIMIT) + 1;
        let want = format!("queue_limit 65535: room for {room} queued packets in all");
        assert!(e.reason.starts_with(&want), "{e}");
        assert_eq!(s.configs(), before, "nothing changed");
        assert!(s.pool.capacity() >= 1, "A keeps the room for its bound");
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
        let bounded = |limit| ClassConfig { queue_limit: limit, ..leaf(M, M) };
        let mut s = sched(100 * M, &[(A, bounded(16)), (B, bounded(8))]);
        let cap = s.pool.capacity();
        assert!(cap >= 24);
        for round in 0..4u64 {
            for i in 0..20 {
                let _ = s.enqueue(A, i, 64, round * NS_PER_SEC);
                let _ = s.enqueue(B, i, 64, round * NS_PER_SEC);
            }
            assert_eq!(s.backlog(), 24);
            while s.dequeue(round * NS_PER_SEC + NS_PER_SEC / 2).is_some() {}
        }
        assert_eq!(s.pool.capacity(), cap);
        // A limit lowered below the backlog keeps it, and a new class still finds room for
        // its whole bound beside the others' bounds.
        let t = 10 * NS_PER_SEC;
        (0..16).for_each(|i| s.enqueue(A, i, 64, t).unwrap());
        let c = ClassId(12);
        s.apply([Change::Set(A, bounded(4)), Change::Set(c, bounded(8))], t).unwrap();
        let cap = s.pool.capacity();
        assert!(cap >= 32, "16 queued on A, 8 for B and for C: {cap}");
        for i in 0..20 {
            let _ = s.enqueue(A, i, 64, t);
            let _ = s.enqueue(B, i, 64, t);
            let _ = s.enqueue(c, i, 64, t);
        }
        assert_eq!(s.backlog(), 32);
        assert_eq!(s.pool.capacity(), cap);
    }

    /// Each of many classes, in debt, is served at exactly the nanosecond its rate pays the
    /// debt back (the wait wheel's times are exact), never before.
    #[test]
    fn a_waiting_class_is_served_exactly_when_its_time_comes() {
        const N: u32 = 300;
        let mut s: Scheduler<u64> = Scheduler::new();
        let root =
            ClassConfig { burst_bytes: 10 << 20, ..ClassConfig::new(None, 10_000 * M, 10_000 * M) };
        let mut ch = vec![Change::Set(ROOT, root)];
        let rate = |i: u32| M + 7_919 * u64::from(i);
        for i in 0..N {
            let c = ClassConfig { burst_bytes: 1500, ..leaf(rate(i), rate(i)) };
            ch.push(Change::Set(ClassId(100 + i), c));
        }
        s.apply(ch, 0).unwrap();
        for i in 0..N {
            for k in 0..3u64 {
                s.enqueue(ClassId(100 + i), k, 1500, 0).unwrap();
            }
        }
        // The burst, then one packet of debt: two each at 0, the third waits.
        assert_eq!(s.dequeue_batch(0, 10_000, |_, _, _| {}), 2 * N as usize);
        let mut sent_at = BTreeMap::new();
        while let Some(t) = s.next_wake_ns() {
            let mut any = false;
            s.dequeue_batch(t, 10_000, |c, k, _| {
                assert_eq!(k, 2);
                sent_at.insert(c, t);
                any = true;
            });
            if !any {
                assert!(s.next_wake_ns().is_none_or(|w| w > t), "no progress at {t}");
            }
        }
        assert_eq!(sent_at.len(), N as usize);
        for i in 0..N {
            let due = (1500 * 8 * NS_PER_SEC).div_ceil(rate(i));
            assert_eq!(sent_at[&ClassId(100 + i)], due, "class {}", 100 + i);
        }
    }

    /// Saturating senders, prio 0 (weights 1 and 3 alternating) and prio 1: the spare goes to
    /// prio 0 alone, split 1:3 by weight; prio 1 gets its guarantees.
    #[test]
    fn priority_then_weight_with_many_classes() {
        const N: u32 = 300;
        let mut s: Scheduler<u64> = Scheduler::new();
        let mut ch = vec![Change::Set(ROOT, ClassConfig::new(None, 100 * M, 100 * M))];
        for i in 0..N {
            let c = ClassConfig {
                prio: u8::from(i >= N / 2),
                weight: 1 + 2 * (i % 2),
                burst_bytes: 1500,
                ..leaf(50 * M / u64::from(N), 100 * M)
            };
            ch.push(Change::Set(ClassId(100 + i), c));
        }
        s.apply(ch, 0).unwrap();
        let mut seq = 0;
        for i in 0..N {
            for _ in 0..4 {
                seq += 1;
                s.enqueue(ClassId(100 + i), seq, 1500, 0).unwrap();
            }
        }
        let totals = |s: &Scheduler<u64>| -> Vec<(u64, u64)> {
            (0..N)
                .map(|i| s.class_stats(ClassId(100 + i)).unwrap())
                .map(|st| (st.sent_bytes, st.borrowed_bytes))
                .collect()
        };
        // A 1 Gbit/s link, each sender topped up as it sends; measured from 0.2 s to 1.2 s.
        let mut t = 0;
        let mut start = None;
        while t < 6 * NS_PER_SEC / 5 {
            if start.is_none() && t >= NS_PER_SEC / 5 {
                start = Some(totals(&s));
            }
            match s.dequeue(t) {
                Some((c, _, len)) => {
                    seq += 1;
                    s.enqueue(c, seq, 1500, t).unwrap();
                    t += u64::from(len) * 8;
                }
                None => t = s.next_wake_ns().expect("backlog"),
            }
        }
        let (start, end) = (start.unwrap(), totals(&s));
        let sum = |f: &dyn Fn(u32) -> bool, borrowed: bool| -> u64 {
            (0..N)
                .filter(|&i| f(i))
                .map(|i| {
                    let (a, b) = (start[i as usize], end[i as usize]);
                    if borrowed {
                        b.1 - a.1
                    } else {
                        b.0 - a.0
                    }
                })
                .sum()
        };
        let total = sum(&|_| true, false) as f64;
        assert!((total * 8.0 / 1e6 - 100.0).abs() < 1.0, "{total} bytes in 1 s");
        let low = sum(&|i| i >= N / 2, false) as f64 / total;
        assert!((low - 0.25).abs() < 0.01, "prio 1 share {low}");
        assert_eq!(sum(&|i| i >= N / 2, true), 0, "prio 1 borrowed");
        let b1 = sum(&|i| i < N / 2 && i % 2 == 0, true) as f64;
        let b3 = sum(&|i| i < N / 2 && i % 2 == 1, true) as f64;
        let r = b1 / (b1 + b3);
        assert!((r - 0.25).abs() < 0.02, "weight 1 share of the spare {r}");
    }

    /// Classes are renumbered (breadth first) at every apply: adding and removing classes
    /// around backlogged ones keeps their queues in order, their counters, and their tokens.
    #[test]
    fn apply_renumbering_keeps_queues_counters_and_tokens() {
        let a = ClassConfig { burst_bytes: 3000, ..leaf(8 * M, 8 * M) };
        let mut s = sched(100 * M, &[(A, a.clone()), (B, leaf(M, M))]);
        for i in 0..10 {
            s.enqueue(A, i, 1000, 0).unwrap();
        }
        let mut out = Vec::new();
        s.dequeue_batch(0, 100, |_, x, _| out.push(x)); // burst 3000 B: 3 packets, then debt
        assert_eq!(out, vec![0, 1, 2, 3]);
        let before = s.class_stats(A).unwrap();
        // A group with a low id (ahead of A in the new order) and a leaf under it; B goes.
        let g = ClassId(2);
        let back = s
            .apply(
                [
                    Change::Set(g, ClassConfig::new(Some(ROOT), 10 * M, 100 * M)),
                    Change::Set(ClassId(3), ClassConfig::new(Some(g), M, M)),
                    Change::Remove(B),
                ],
                0,
            )
            .unwrap();
        assert!(back.is_empty());
        assert_eq!(s.class_stats(A), Some(before));
        // Still in debt: nothing until A's 1000 bytes of debt are paid (1 ms at 1 MB/s).
        assert!(s.dequeue(NS_PER_SEC / 1000 - 1).is_none());
        out.extend(s.dequeue(NS_PER_SEC / 1000).map(|x| x.1));
        assert_eq!(out.last(), Some(&4));
        s.enqueue(ClassId(3), 99, 100, NS_PER_SEC / 1000).unwrap();
        let mut t = NS_PER_SEC / 1000;
        while s.backlog() > 0 {
            s.dequeue_batch(t, 100, |_, x, _| out.push(x));
            t += 100_000;
        }
        out.retain(|&x| x != 99);
        assert_eq!(out, (0..10).collect::<Vec<_>>());
        assert_eq!(s.class_stats(A).unwrap().sent_packets, 10);
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
        Enqueue {
            leaf: usize,
            len: u32,
            n: u8,
        },
        Dequeue {
            n: u8,
        },
        Advance {
            ns: u64,
        },
        /// A live change: a leaf's priority and weight, and class 50 added or removed (the
        /// slots are renumbered around the backlog).
        Reconfigure {
            leaf: usize,
            prio: u8,
            weight: u32,
        },
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
            (0..12usize, 0..3u8, 1..4u32).prop_map(|(leaf, prio, weight)| Op::Reconfigure {
                leaf,
                prio,
                weight
            }),
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
            s.apply(changes.clone(), 0).unwrap();
            // A twin fed the same, that dequeues in batches: it must hand out the same.
            let mut twin: Scheduler<u64> = Scheduler::new();
            twin.apply(changes.clone(), 0).unwrap();
            // Another that sends what it may at once (`enqueue_or_pass`): what it passes
            // must be what `s` hands out right after the enqueue, and all else the same.
            let mut pass: Scheduler<u64> = Scheduler::new();
            pass.apply(changes, 0).unwrap();

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
                            let id = ClassId(100 + leaf as u32);
                            let twin_ok = twin.enqueue(id, seq, len, t).is_ok();
                            let passed = pass.enqueue_or_pass(id, seq, len, t);
                            let r = s.enqueue(id, seq, len, t);
                            prop_assert_eq!(r.is_ok(), twin_ok);
                            prop_assert_eq!(r.is_ok(), passed.is_ok());
                            match r {
                                Ok(()) => {
                                    ok += 1;
                                    expect[leaf].push_back(seq);
                                    if let Ok(Some(item)) = passed {
                                        prop_assert_eq!(item, seq);
                                        let one = s.dequeue(t);
                                        prop_assert_eq!(one, Some((id, seq, len)));
                                        let mut batch = None;
                                        twin.dequeue_batch(t, 1, |c, i, l| batch = Some((c, i, l)));
                                        prop_assert_eq!(batch, one);
                                        expect[leaf].pop_back();
                                        out += 1;
                                        log.push((t, id, len));
                                    }
                                }
                                Err((item, _)) => {
                                    prop_assert_eq!(item, seq);
                                    dropped += 1;
                                }
                            }
                        }
                    }
                    Op::Dequeue { n } => {
                        let mut batch = Vec::new();
                        twin.dequeue_batch(t, usize::from(n), |c, item, len| {
                            batch.push((c, item, len));
                        });
                        let mut one_by_one = Vec::new();
                        for _ in 0..n {
                            let one = s.dequeue(t);
                            prop_assert_eq!(pass.dequeue(t), one);
                            let Some((c, item, len)) = one else { break };
                            one_by_one.push((c, item, len));
                            out += 1;
                            let i = (c.0 - 100) as usize;
                            // FIFO per class, and only what was queued.
                            prop_assert_eq!(expect[i].pop_front(), Some(item));
                            log.push((t, c, len));
                        }
                        prop_assert_eq!(batch, one_by_one);
                    }
                    Op::Advance { ns } => t += ns,
                    Op::Reconfigure { leaf, prio, weight } => {
                        let leaf = leaf % leaves.len();
                        cfgs[leaf] = ClassConfig { prio, weight, ..cfgs[leaf].clone() };
                        let extra = ClassId(50);
                        let toggle = if s.config(extra).is_some() {
                            Change::Remove(extra)
                        } else {
                            Change::Set(extra, ClassConfig::new(Some(ClassId(3)), 1000, 1000))
                        };
                        let set = Change::Set(ClassId(100 + leaf as u32), cfgs[leaf].clone());
                        let twin_set = [set.clone(), toggle.clone()];
                        prop_assert_eq!(twin.apply(twin_set.clone(), t).map(|b| b.len()), Ok(0));
                        prop_assert_eq!(pass.apply(twin_set, t).map(|b| b.len()), Ok(0));
                        prop_assert_eq!(s.apply([set, toggle], t).map(|b| b.len()), Ok(0));
                    }
                }
                let st = s.stats();
                prop_assert_eq!(pass.stats(), st);
                for id in s.configs().keys() {
                    prop_assert_eq!(pass.class_stats(*id), s.class_stats(*id));
                }
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
                    let mut twin_out = None;
                    twin.dequeue_batch(t, 1, |c, item, len| twin_out = Some((c, item, len)));
                    let one = s.dequeue(t);
                    prop_assert_eq!(twin_out, one);
                    prop_assert_eq!(pass.dequeue(t), one);
                    match twin_out {
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
