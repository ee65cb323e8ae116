//! The L2 forwarding database: which port a (VLAN, MAC) lives behind.
//!
//! # Shape
//!
//! [`Fdb`] is a fixed-capacity open-addressing hash table made only of atomics, shared through
//! an `Arc` between one writer and many readers:
//!
//! * the **readers** are the workers: [`Fdb::lookup`] for the destination MAC and
//!   [`Fdb::check_source`] for the source MAC of every packet. They take no lock, allocate
//!   nothing, and at worst see a miss (which costs one flooded packet or one redundant learn
//!   event), never a port that was not at some moment mapped to the key they asked about;
//! * the **writer** is [`FdbWriter`], owned by the control thread's learner, which drains the
//!   learn events the workers push through their SPSC rings and serves the control plane
//!   (static entries, flushes, aging, dumps). There is exactly one: it is created together with
//!   the table by [`Fdb::new`], is not `Clone`, and all its methods take `&mut self`.
//!
//! The table has `capacity` slots, the next power of two at or above `2 * max_entries` (and at
//! least 256), so it is never more than half full: [`FdbConfig::max_entries`] is the size limit
//! that learning hits (`LearnOutcome::TableFull`), the capacity is what keeps probe chains short.
//!
//! # Slots
//!
//! Each slot holds three atomics:
//!
//! * `key: AtomicU64`: `0` is EMPTY; a live key is `VALID (bit 63) | vlan << 48 | mac` (12-bit
//!   VLAN, 48-bit MAC), so it can never equal EMPTY;
//! * `value: AtomicU64`: bits 0..16 the port, bit 16 the STATIC flag, bits 24..64 a 40-bit
//!   *version* that makes the value word the slot's seqlock: odd while the writer is changing
//!   the slot's key, even when the slot is stable, and different after every change;
//! * `last_seen: AtomicU32`: whole seconds of the `now` the entry was last seen at (Relaxed
//!   only: it is a hint for aging, never used to decide which port a key maps to).
//!
//! # The read protocol (and why not "key, value, key")
//!
//! Re-reading the key after the value is not enough on its own: a reader stalled between its
//! loads can see key A, then the value written for a key B that later replaced A in the same
//! slot, then key A again after A came back (ABA), and return B's port for A. So the value word
//! carries a version and a reader does *value, key, value*:
//!
//! 1. probe: load `key` (Relaxed); EMPTY ends the search, another key moves on;
//! 2. `v1 = value.load(Acquire)`; an odd version means the slot is mid-change: retry;
//! 3. `k = key.load(Acquire)`; 4. `v2 = value.load(Relaxed)`;
//! 5. if `v1 == v2` and `k` is the key we want, `v1` is its value.
//!
//! The writer changes a slot's key as: `value := v + 1 version (odd, "busy")`, then
//! `key := new` (Release), then `value := new payload, version + 2` (Release). Why this is
//! sound: if the reader's `v1` came from some write `W` (its Acquire load synchronizes with
//! `W`'s Release store), every key store before `W` is visible to step 3, so `k` is the key `W`
//! was written for, *or* a key stored later; a later key store is preceded by its busy store,
//! and since step 3 read that key store with Acquire, the busy store is visible to step 4, so
//! `v2 != v1`. The Acquire on step 3 also keeps step 4 from being performed before it.
//! A changed port for an unchanged key (a MAC move, a static flag) is a single Release store of
//! the value with the version bumped by 2: a reader then returns the old or the new port, both
//! right for that key at some moment. The 40-bit version could only alias if a reader stalled
//! between two of its own loads while the writer changed that one slot 2^39 times.
//!
//! After a bounded number of retries (the writer keeps a slot busy for three stores) a reader
//! reports a miss.
//!
//! # Deletion: backward shift instead of tombstones
//!
//! Linear probing with tombstones needs periodic rebuilds as tombstones pile up, and a rebuild
//! in place under concurrent readers is delicate. This table deletes with **backward-shift
//! deletion** instead, so there are no tombstones at all: to delete slot `i`, the writer walks
//! the rest of the cluster and moves each entry that may legally sit at the current hole (the
//! hole lies between the entry's home slot and its current slot) into the hole, which moves
//! the hole forward; at the end of the cluster it empties the last hole. Consequences:
//!
//! * probe chains never grow through churn: an entry's distance from its home only ever
//!   shrinks, so the bound `MAX_PROBE` (128) set at insert time holds forever, and a lookup
//!   stops at the first EMPTY slot;
//! * the copy into the hole is published before the old slot is reused, and no slot inside
//!   the cluster becomes EMPTY until the end, so a concurrent reader may at worst miss an entry
//!   that is being moved (it passed the new slot before the copy and reached the old one after
//!   it was reused): a transient miss, never a wrong port;
//! * a deleted key stays visible with its old port until its slot is overwritten, which is
//!   within the same writer call, before the generation bump.
//!
//! # Hashing
//!
//! The slot of a key is `fmix64(key) & (capacity - 1)`, where `fmix64` is MurmurHash3's 64-bit
//! finalizer (two multiplications and three xor-shifts): fast, and every input bit affects
//! every output bit, so MACs that differ only in their last octet (the common case for virtual
//! NICs) spread over the whole table. It is not keyed: a sender that can choose source MACs can
//! build long clusters. The probe bound caps what that costs readers (128 slots), and an insert
//! that finds no free slot within it is refused as `TableFull` (counted in both `table_full`
//! and `probe_limit`).
//!
//! Why 128 and not 32: linear probing clusters. At the worst load this table allows (one half,
//! when `max_entries` is a power of two), a churn test of 2 million delete/insert pairs on a
//! full 2048- or 65536-entry table saw entries up to ~50 slots from home, so a bound of 32
//! would refuse legitimate inserts; cluster lengths fall off exponentially (about
//! `e^(-0.19 L)` at load one half), which puts 128 far out of reach of chance. The bound is
//! only a worst case: a lookup stops at the first EMPTY slot, a few slots on average.
//!
//! # Generation
//!
//! [`Fdb::generation`] is bumped by the writer (Release) after every change of any key-to-port
//! mapping: an insert, a move, a removal, a flush, an aging pass that removed something, a
//! static entry added or changed. A worker that caches decisions derived from the FDB loads
//! the generation (Acquire) *before* the lookups whose results it caches, and tags the cached
//! result with it: a change made after that load bumps the generation, so the cached result
//! is dropped at its next use.
//!
//! # Flapping
//!
//! A MAC that moves between ports many times a second is a loop or a spoofer. The writer counts
//! each entry's moves in one-second windows; an entry that moves more than
//! [`FdbConfig::flap_threshold`] times within one window is *flapping*: that is counted once
//! per window in [`FdbStats::flaps`] and shown by [`FdbWriter::entries`] and
//! [`FdbWriter::is_flapping`].

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::types::{vlan_is_valid, MacAddr, PortId, VlanId, MAX_PORTS, VLAN_MAX, VLAN_MIN};

/// The aging time a switch should use when its config does not say (the caller runs
/// [`FdbWriter::age`] with it; the table itself has no notion of a default age).
pub const DEFAULT_AGING_SECS: u64 = 300;

/// The default size limit of the table.
pub const DEFAULT_MAX_ENTRIES: usize = 65_536;

/// The default number of moves within one second above which an entry is flapping.
pub const DEFAULT_FLAP_THRESHOLD: u16 = 5;

/// The largest `max_entries` accepted (the table then has 8 Mi slots, 192 MiB).
pub const MAX_ENTRIES_LIMIT: usize = 1 << 22;

/// How many slots from its home slot an entry may be placed; readers never probe further.
pub const MAX_PROBE: usize = 128;

/// How often a reader retries a lookup that raced with the writer before reporting a miss.
const READ_RETRIES: usize = 8;

/// The smallest capacity: keeps `MAX_PROBE` well below the number of slots.
const MIN_CAPACITY: usize = 2 * MAX_PROBE;

const NANOS_PER_SEC: u64 = 1_000_000_000;

// ---- key word ----
const EMPTY: u64 = 0;
const KEY_VALID: u64 = 1 << 63;
const KEY_VLAN_SHIFT: u32 = 48;
const KEY_MAC_MASK: u64 = (1 << 48) - 1;

// ---- value word ----
const VAL_PORT_MASK: u64 = 0xffff;
const VAL_STATIC: u64 = 1 << 16;
const VAL_PAYLOAD_MASK: u64 = (1 << 24) - 1;
/// One step of the version kept in bits 24..64 of the value word.
const VER_ONE: u64 = 1 << 24;

#[inline]
fn make_key(vlan: VlanId, mac: MacAddr) -> u64 {
    KEY_VALID | (u64::from(vlan & 0x0fff) << KEY_VLAN_SHIFT) | mac.to_u64()
}

#[inline]
fn key_vlan(key: u64) -> VlanId {
    ((key >> KEY_VLAN_SHIFT) & 0x0fff) as VlanId
}

#[inline]
fn key_mac(key: u64) -> MacAddr {
    MacAddr::from_u64(key & KEY_MAC_MASK)
}

#[inline]
fn val_port(v: u64) -> PortId {
    (v & VAL_PORT_MASK) as PortId
}

#[inline]
fn val_is_static(v: u64) -> bool {
    v & VAL_STATIC != 0
}

#[inline]
fn val_is_busy(v: u64) -> bool {
    v & VER_ONE != 0
}

#[inline]
fn payload(port: PortId, is_static: bool) -> u64 {
    u64::from(port) | if is_static { VAL_STATIC } else { 0 }
}

/// MurmurHash3's fmix64 finalizer over the whole key word.
#[inline]
fn hash_key(key: u64) -> u64 {
    let mut x = key;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}

/// Whole seconds of a nanosecond timestamp, as kept in `last_seen` (wraps after 136 years).
#[inline]
fn secs(now: u64) -> u32 {
    (now / NANOS_PER_SEC) as u32
}

/// Seconds from `then` to `now`, or 0 if `then` is later (clocks of different threads).
#[inline]
fn elapsed_secs(now_s: u32, then_s: u32) -> u32 {
    let d = now_s.wrapping_sub(then_s);
    if (d as i32) < 0 {
        0
    } else {
        d
    }
}

/// Why a request to the FDB was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FdbError {
    #[error("VLAN {0} is out of range {min}..={max}", min = VLAN_MIN, max = VLAN_MAX)]
    VlanOutOfRange(VlanId),
    #[error("MAC {0} is multicast and cannot be a static FDB entry")]
    MulticastMac(MacAddr),
    #[error("MAC {0} is all-zero and cannot be a static FDB entry")]
    ZeroMac(MacAddr),
    #[error("port {0} is out of range 0..{max}", max = MAX_PORTS)]
    PortOutOfRange(PortId),
    #[error("FDB is full (limit {limit})")]
    Full { limit: usize },
    #[error(
        "no free FDB slot within {probe} slots of the home slot of VLAN {vlan} MAC {mac}",
        probe = MAX_PROBE
    )]
    NoSlot { vlan: VlanId, mac: MacAddr },
    #[error("FDB max_entries {0} is out of range 1..={max}", max = MAX_ENTRIES_LIMIT)]
    InvalidMaxEntries(usize),
}

/// How the table is sized and when an entry counts as flapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbConfig {
    /// The most entries (static and dynamic) the table holds; `1..=MAX_ENTRIES_LIMIT`.
    pub max_entries: usize,
    /// An entry that moves more than this many times within one second is flapping.
    pub flap_threshold: u16,
}

impl Default for FdbConfig {
    fn default() -> Self {
        FdbConfig { max_entries: DEFAULT_MAX_ENTRIES, flap_threshold: DEFAULT_FLAP_THRESHOLD }
    }
}

/// What a worker should do about a packet's source MAC ([`Fdb::check_source`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceCheck {
    /// Known on the port the packet came in on: nothing to learn.
    Known,
    /// Not in the table (or a lookup lost a race with the writer): send a learn event.
    Unknown,
    /// Known on another port: send a learn event (the learner records the move).
    Moved { from: PortId },
    /// A static entry puts this MAC on another port: do not learn; the caller may count the
    /// packet as a spoof drop.
    Static,
}

/// What [`FdbWriter::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LearnOutcome {
    /// A new dynamic entry.
    Inserted,
    /// Already known on that port; its last-seen time was refreshed.
    Refreshed,
    /// Was known on port `from`, now on the new port.
    Moved { from: PortId },
    /// Not learned: the size limit is reached (or no free slot near its hash). Counted.
    TableFull,
    /// Not learned: a static entry puts the MAC on another port. Counted.
    StaticConflict,
    /// Not learned: a group or all-zero MAC, a VLAN outside 1..=4094, or a port outside
    /// `0..MAX_PORTS`.
    NotLearnable,
}

/// One entry, as shown by `vswitchctl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbEntry {
    pub vlan: VlanId,
    pub mac: MacAddr,
    pub port: PortId,
    pub is_static: bool,
    /// Seconds since the entry was last seen (0 for static entries).
    pub age_secs: u32,
    /// Moves within the current one-second window.
    pub recent_moves: u16,
    /// More than `flap_threshold` moves within the current one-second window.
    pub flapping: bool,
}

/// Counters of the table since it was created (except `entries`, the current size).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FdbStats {
    /// Dynamic entries inserted by learning.
    pub learned: u64,
    /// Dynamic entries that moved to another port.
    pub moved: u64,
    /// Dynamic entries removed by aging.
    pub aged: u64,
    /// Entries removed by `flush_port`, `flush_vlan` or `purge_port`.
    pub flushed: u64,
    /// Entries removed one by one with `remove`.
    pub removed: u64,
    /// Learn requests refused because the table was full.
    pub table_full: u64,
    /// Learn requests refused because a static entry puts the MAC on another port.
    pub static_conflicts: u64,
    /// Times an entry started flapping (at most once per entry per one-second window).
    pub flaps: u64,
    /// Learn requests refused because no slot within `MAX_PROBE` of the key's home slot was
    /// free although the size limit was not reached (also counted in `table_full`).
    pub probe_limit: u64,
    /// Entries in the table now.
    pub entries: usize,
}

#[derive(Default)]
struct Slot {
    key: AtomicU64,
    value: AtomicU64,
    last_seen: AtomicU32,
}

/// Counters kept as atomics so any thread (telemetry) can read them; only the writer
/// updates them. All Relaxed: each counter is independent and only needs to be eventually
/// visible, not ordered with the table or with the other counters.
#[derive(Default)]
struct Counters {
    learned: AtomicU64,
    moved: AtomicU64,
    aged: AtomicU64,
    flushed: AtomicU64,
    removed: AtomicU64,
    table_full: AtomicU64,
    static_conflicts: AtomicU64,
    flaps: AtomicU64,
    probe_limit: AtomicU64,
    entries: AtomicUsize,
}

impl Counters {
    #[inline]
    fn add(c: &AtomicU64, n: u64) {
        // Relaxed: see the struct doc.
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// The shared, lock-free-to-read forwarding database. See the module doc.
pub struct Fdb {
    slots: Box<[Slot]>,
    mask: usize,
    max_entries: usize,
    generation: AtomicU64,
    counters: Counters,
}

impl Fdb {
    /// Creates an empty table and its one writer.
    pub fn new(config: FdbConfig) -> Result<(Arc<Fdb>, FdbWriter), FdbError> {
        if config.max_entries == 0 || config.max_entries > MAX_ENTRIES_LIMIT {
            return Err(FdbError::InvalidMaxEntries(config.max_entries));
        }
        let capacity = (config.max_entries * 2).next_power_of_two().max(MIN_CAPACITY);
        let slots: Box<[Slot]> = (0..capacity).map(|_| Slot::default()).collect();
        let fdb = Arc::new(Fdb {
            slots,
            mask: capacity - 1,
            max_entries: config.max_entries,
            generation: AtomicU64::new(0),
            counters: Counters::default(),
        });
        let writer = FdbWriter {
            fdb: Arc::clone(&fdb),
            meta: vec![SlotMeta::default(); capacity].into_boxed_slice(),
            len: 0,
            flap_threshold: config.flap_threshold,
        };
        Ok((fdb, writer))
    }

    /// The number of slots (a power of two, at least twice `max_entries`).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The size limit.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Entries in the table now (as last published by the writer).
    pub fn len(&self) -> usize {
        // Relaxed: an informational count, not used to reason about the slots.
        self.counters.entries.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The generation of the key-to-port mappings; changes after every change of one. Load it
    /// before the lookups whose results you cache (see the module doc).
    #[inline]
    pub fn generation(&self) -> u64 {
        // Acquire: pairs with the writer's Release bump, so lookups made after seeing a
        // generation see at least the mappings that generation stands for.
        self.generation.load(Ordering::Acquire)
    }

    /// The counters, readable from any thread.
    pub fn stats(&self) -> FdbStats {
        let c = &self.counters;
        // Relaxed throughout: see `Counters`.
        FdbStats {
            learned: c.learned.load(Ordering::Relaxed),
            moved: c.moved.load(Ordering::Relaxed),
            aged: c.aged.load(Ordering::Relaxed),
            flushed: c.flushed.load(Ordering::Relaxed),
            removed: c.removed.load(Ordering::Relaxed),
            table_full: c.table_full.load(Ordering::Relaxed),
            static_conflicts: c.static_conflicts.load(Ordering::Relaxed),
            flaps: c.flaps.load(Ordering::Relaxed),
            probe_limit: c.probe_limit.load(Ordering::Relaxed),
            entries: c.entries.load(Ordering::Relaxed),
        }
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        (hash_key(key) as usize) & self.mask
    }

    /// The reader protocol of the module doc: the slot index and a consistent value word of
    /// `key`, or `None` for a miss (absent, or too many races with the writer).
    #[inline]
    fn read(&self, key: u64) -> Option<(usize, u64)> {
        let home = self.home(key);
        'attempt: for _ in 0..READ_RETRIES {
            for d in 0..MAX_PROBE {
                let idx = (home + d) & self.mask;
                let slot = &self.slots[idx];
                // Relaxed: only steers the probe; a stale EMPTY is a miss (allowed), a stale
                // match is re-validated below.
                let k = slot.key.load(Ordering::Relaxed);
                if k == EMPTY {
                    return None;
                }
                if k != key {
                    continue;
                }
                // Acquire: synchronizes with the Release store that wrote this value, so the
                // key stored before it is visible below, and keeps the key load after it.
                let v1 = slot.value.load(Ordering::Acquire);
                if val_is_busy(v1) {
                    std::hint::spin_loop();
                    continue 'attempt;
                }
                // Acquire: if this reads a key stored after `v1`'s write, the writer's busy
                // store before it becomes visible to the next load; and the next load cannot
                // be performed before this one.
                let k2 = slot.key.load(Ordering::Acquire);
                // Relaxed: ordered after `k2` by `k2`'s Acquire; only compared with `v1`.
                let v2 = slot.value.load(Ordering::Relaxed);
                if v1 != v2 {
                    continue 'attempt;
                }
                if k2 == key {
                    return Some((idx, v1));
                }
                // A consistent view of another key: the one we saw was stale; keep probing.
            }
            return None;
        }
        None
    }

    /// The port of `(vlan, mac)`, or `None` if unknown (flood). Lock-free, no allocation.
    /// `vlan` is a 12-bit VLAN id as carried in a tag (only its low 12 bits are used).
    #[inline]
    pub fn lookup(&self, vlan: VlanId, mac: MacAddr) -> Option<PortId> {
        self.read(make_key(vlan, mac)).map(|(_, v)| val_port(v))
    }

    /// Classifies a packet's source `(vlan, mac)` seen on `in_port` at `now` (ns). On `Known`
    /// for a dynamic entry it refreshes the entry's last-seen time, but only when that is at
    /// least one second old, so a busy MAC does not bounce the slot's cache line between
    /// workers. Lock-free, no allocation.
    #[inline]
    pub fn check_source(
        &self,
        vlan: VlanId,
        mac: MacAddr,
        in_port: PortId,
        now: u64,
    ) -> SourceCheck {
        let Some((idx, v)) = self.read(make_key(vlan, mac)) else {
            return SourceCheck::Unknown;
        };
        let port = val_port(v);
        let is_static = val_is_static(v);
        if port == in_port {
            if !is_static {
                let now_s = secs(now);
                let ls = &self.slots[idx].last_seen;
                // Relaxed load and store: last_seen is an aging hint, not part of the mapping.
                // If the slot was reused for another key since `read`, that key is merely
                // kept a little longer.
                if elapsed_secs(now_s, ls.load(Ordering::Relaxed)) >= 1 {
                    ls.store(now_s, Ordering::Relaxed);
                }
            }
            SourceCheck::Known
        } else if is_static {
            SourceCheck::Static
        } else {
            SourceCheck::Moved { from: port }
        }
    }
}

/// Writer-private per-slot state that moves with its entry.
#[derive(Clone, Copy, Default)]
struct SlotMeta {
    /// The second (`now / 1e9`) of the current move-counting window.
    window: u32,
    /// Moves within `window`.
    moves: u16,
}

/// The one writer of an [`Fdb`]: the control thread's learner. Not `Clone`.
pub struct FdbWriter {
    fdb: Arc<Fdb>,
    meta: Box<[SlotMeta]>,
    len: usize,
    flap_threshold: u16,
}

/// Where a key is, or where it would go.
enum Probe {
    Found(usize),
    Vacant(usize),
    NoSlot,
}

// The writer reads slots with Relaxed loads throughout: it is the only thread that stores
// keys and values, and a thread always sees its own latest stores. (Readers store only
// `last_seen`, which the writer treats as a hint.)
impl FdbWriter {
    /// The table this writer writes.
    pub fn fdb(&self) -> &Arc<Fdb> {
        &self.fdb
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The counters.
    pub fn stats(&self) -> FdbStats {
        self.fdb.stats()
    }

    fn probe(&self, key: u64) -> Probe {
        let home = self.fdb.home(key);
        for d in 0..MAX_PROBE {
            let idx = (home + d) & self.fdb.mask;
            let k = self.fdb.slots[idx].key.load(Ordering::Relaxed);
            if k == key {
                return Probe::Found(idx);
            }
            if k == EMPTY {
                return Probe::Vacant(idx);
            }
        }
        Probe::NoSlot
    }

    fn bump_generation(&self) {
        // Release: publishes every slot store made before it to readers that Acquire-load the
        // new generation. fetch_add although there is one writer: it costs nothing here.
        self.fdb.generation.fetch_add(1, Ordering::Release);
    }

    fn set_len(&mut self, len: usize) {
        self.len = len;
        // Relaxed: informational (see `Fdb::len`).
        self.fdb.counters.entries.store(len, Ordering::Relaxed);
    }

    /// Writes a new key (or EMPTY) into slot `idx` with the busy/key/value sequence of the
    /// module doc.
    fn publish(&self, idx: usize, key: u64, payload: u64, last_seen: u32) {
        let slot = &self.fdb.slots[idx];
        let old = slot.value.load(Ordering::Relaxed);
        let busy = (old & !VAL_PAYLOAD_MASK).wrapping_add(VER_ONE) | (old & VAL_PAYLOAD_MASK);
        debug_assert!(val_is_busy(busy));
        // Relaxed: ordered before the key store below by that store's Release; a reader that
        // sees the new key with Acquire therefore sees this busy value (or a later one).
        slot.value.store(busy, Ordering::Relaxed);
        // Relaxed: a hint, covered by the Release below for readers that care.
        slot.last_seen.store(last_seen, Ordering::Relaxed);
        // Release: makes the busy store visible to any reader that Acquire-loads this key.
        slot.key.store(key, Ordering::Release);
        // Release: a reader that Acquire-loads this value sees the key stored above.
        let done = (busy & !VAL_PAYLOAD_MASK).wrapping_add(VER_ONE) | payload;
        slot.value.store(done, Ordering::Release);
    }

    /// Changes the port or flags of slot `idx` without changing its key: one store, the
    /// version bumped by 2 so it stays even.
    fn set_payload(&self, idx: usize, payload: u64) {
        let slot = &self.fdb.slots[idx];
        let old = slot.value.load(Ordering::Relaxed);
        let new = (old & !VAL_PAYLOAD_MASK).wrapping_add(2 * VER_ONE) | payload;
        // Release: not strictly needed (the key does not change, and readers accept the old
        // or the new port); kept so every value store is a Release and the protocol is uniform.
        slot.value.store(new, Ordering::Release);
    }

    fn insert_at(&mut self, idx: usize, key: u64, payload: u64, now_s: u32) {
        self.publish(idx, key, payload, now_s);
        self.meta[idx] = SlotMeta::default();
        self.set_len(self.len + 1);
    }

    /// Backward-shift deletion of slot `idx` (module doc). Does not bump the generation.
    fn delete_at(&mut self, idx: usize) {
        let mask = self.fdb.mask;
        let mut hole = idx;
        let mut j = (idx + 1) & mask;
        while j != idx {
            let slot = &self.fdb.slots[j];
            let k = slot.key.load(Ordering::Relaxed);
            if k == EMPTY {
                break;
            }
            let home = self.fdb.home(k);
            // The entry at `j` may move to `hole` iff `hole` lies cyclically in [home, j):
            // its distance from `j` is at most the entry's distance from its home.
            if j.wrapping_sub(hole) & mask <= j.wrapping_sub(home) & mask {
                let v = slot.value.load(Ordering::Relaxed);
                let ls = slot.last_seen.load(Ordering::Relaxed);
                self.publish(hole, k, v & VAL_PAYLOAD_MASK, ls);
                self.meta[hole] = self.meta[j];
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.publish(hole, EMPTY, 0, 0);
        self.meta[hole] = SlotMeta::default();
        self.set_len(self.len - 1);
    }

    /// Records a move of the entry in slot `idx` for flap detection.
    fn record_move(&mut self, idx: usize, now_s: u32) {
        let m = &mut self.meta[idx];
        if m.window != now_s {
            m.window = now_s;
            m.moves = 0;
        }
        m.moves = m.moves.saturating_add(1);
        if m.moves == self.flap_threshold.saturating_add(1) {
            Counters::add(&self.fdb.counters.flaps, 1);
        }
    }

    /// Learns that `(vlan, mac)` was seen on `port` at `now` (ns).
    pub fn learn(&mut self, vlan: VlanId, mac: MacAddr, port: PortId, now: u64) -> LearnOutcome {
        if !mac.is_unicast() || !vlan_is_valid(vlan) || usize::from(port) >= MAX_PORTS {
            return LearnOutcome::NotLearnable;
        }
        let key = make_key(vlan, mac);
        let now_s = secs(now);
        let counters = &self.fdb.counters;
        match self.probe(key) {
            Probe::Found(idx) => {
                let slot = &self.fdb.slots[idx];
                let v = slot.value.load(Ordering::Relaxed);
                let old_port = val_port(v);
                if val_is_static(v) {
                    if old_port == port {
                        LearnOutcome::Refreshed
                    } else {
                        Counters::add(&counters.static_conflicts, 1);
                        LearnOutcome::StaticConflict
                    }
                } else if old_port == port {
                    // Relaxed: a hint (see `check_source`).
                    slot.last_seen.store(now_s, Ordering::Relaxed);
                    LearnOutcome::Refreshed
                } else {
                    slot.last_seen.store(now_s, Ordering::Relaxed);
                    self.set_payload(idx, payload(port, false));
                    Counters::add(&counters.moved, 1);
                    self.record_move(idx, now_s);
                    self.bump_generation();
                    LearnOutcome::Moved { from: old_port }
                }
            }
            Probe::Vacant(idx) if self.len < self.fdb.max_entries => {
                self.insert_at(idx, key, payload(port, false), now_s);
                Counters::add(&self.fdb.counters.learned, 1);
                self.bump_generation();
                LearnOutcome::Inserted
            }
            Probe::NoSlot if self.len < self.fdb.max_entries => {
                Counters::add(&counters.table_full, 1);
                Counters::add(&counters.probe_limit, 1);
                LearnOutcome::TableFull
            }
            Probe::Vacant(_) | Probe::NoSlot => {
                Counters::add(&counters.table_full, 1);
                LearnOutcome::TableFull
            }
        }
    }

    /// Adds a static entry, or turns an existing entry into a static one on `port`. Static
    /// entries never age, and learning never overwrites them.
    pub fn add_static(&mut self, vlan: VlanId, mac: MacAddr, port: PortId) -> Result<(), FdbError> {
        if !vlan_is_valid(vlan) {
            return Err(FdbError::VlanOutOfRange(vlan));
        }
        if mac.is_multicast() {
            return Err(FdbError::MulticastMac(mac));
        }
        if mac == MacAddr::ZERO {
            return Err(FdbError::ZeroMac(mac));
        }
        if usize::from(port) >= MAX_PORTS {
            return Err(FdbError::PortOutOfRange(port));
        }
        let key = make_key(vlan, mac);
        match self.probe(key) {
            Probe::Found(idx) => {
                let v = self.fdb.slots[idx].value.load(Ordering::Relaxed);
                let new = payload(port, true);
                if v & VAL_PAYLOAD_MASK != new {
                    self.set_payload(idx, new);
                    self.meta[idx] = SlotMeta::default();
                    self.bump_generation();
                }
                Ok(())
            }
            Probe::Vacant(_) | Probe::NoSlot if self.len >= self.fdb.max_entries => {
                Err(FdbError::Full { limit: self.fdb.max_entries })
            }
            Probe::Vacant(idx) => {
                self.insert_at(idx, key, payload(port, true), 0);
                self.bump_generation();
                Ok(())
            }
            Probe::NoSlot => Err(FdbError::NoSlot { vlan, mac }),
        }
    }

    /// Removes the entry of `(vlan, mac)`, static or dynamic. True if there was one.
    pub fn remove(&mut self, vlan: VlanId, mac: MacAddr) -> bool {
        match self.probe(make_key(vlan, mac)) {
            Probe::Found(idx) => {
                self.delete_at(idx);
                Counters::add(&self.fdb.counters.removed, 1);
                self.bump_generation();
                true
            }
            _ => false,
        }
    }

    /// Removes every entry for which `pred(key, value, last_seen)` holds; bumps the generation
    /// once if any. Collects the keys first (the writer may allocate): backward shifts move
    /// entries between slots, so deleting while scanning could skip or revisit some.
    fn remove_where(&mut self, mut pred: impl FnMut(u64, u64, u32) -> bool) -> usize {
        let doomed: Vec<u64> = self
            .fdb
            .slots
            .iter()
            .filter_map(|s| {
                let k = s.key.load(Ordering::Relaxed);
                let v = s.value.load(Ordering::Relaxed);
                let ls = s.last_seen.load(Ordering::Relaxed);
                (k != EMPTY && pred(k, v, ls)).then_some(k)
            })
            .collect();
        let mut n = 0;
        for key in doomed {
            if let Probe::Found(idx) = self.probe(key) {
                self.delete_at(idx);
                n += 1;
            }
        }
        if n > 0 {
            self.bump_generation();
        }
        n
    }

    /// Removes the dynamic entries on `port` (a link went down). Static entries stay.
    pub fn flush_port(&mut self, port: PortId) -> usize {
        let n = self.remove_where(|_, v, _| !val_is_static(v) && val_port(v) == port);
        Counters::add(&self.fdb.counters.flushed, n as u64);
        n
    }

    /// Removes every entry on `port`, static ones too (the port is being deleted, and its id
    /// may be reused).
    pub fn purge_port(&mut self, port: PortId) -> usize {
        let n = self.remove_where(|_, v, _| val_port(v) == port);
        Counters::add(&self.fdb.counters.flushed, n as u64);
        n
    }

    /// Removes the dynamic entries in `vlan`. Static entries stay.
    pub fn flush_vlan(&mut self, vlan: VlanId) -> usize {
        let n = self.remove_where(|k, v, _| !val_is_static(v) && key_vlan(k) == vlan);
        Counters::add(&self.fdb.counters.flushed, n as u64);
        n
    }

    /// Removes the dynamic entries not seen within `max_age_ns` of `now` (ns). Static entries
    /// never age. Granularity is one second: an entry is removed once more than
    /// `ceil(max_age_ns / 1 s)` whole seconds separate `now` from its last-seen second, so it
    /// lives at least `max_age_ns` and at most about two seconds more.
    pub fn age(&mut self, now: u64, max_age_ns: u64) -> usize {
        let now_s = secs(now);
        let max_s = max_age_ns.div_ceil(NANOS_PER_SEC);
        let n = self.remove_where(|_, v, ls| {
            !val_is_static(v) && u64::from(elapsed_secs(now_s, ls)) > max_s
        });
        Counters::add(&self.fdb.counters.aged, n as u64);
        n
    }

    /// True if `(vlan, mac)` moved more than `flap_threshold` times within the second of `now`.
    pub fn is_flapping(&self, vlan: VlanId, mac: MacAddr, now: u64) -> bool {
        match self.probe(make_key(vlan, mac)) {
            Probe::Found(idx) => self.flapping_at(idx, secs(now)),
            _ => false,
        }
    }

    fn recent_moves(&self, idx: usize, now_s: u32) -> u16 {
        let m = self.meta[idx];
        if m.window == now_s {
            m.moves
        } else {
            0
        }
    }

    fn flapping_at(&self, idx: usize, now_s: u32) -> bool {
        self.recent_moves(idx, now_s) > self.flap_threshold
    }

    /// Every entry, for `vswitchctl` (ages are relative to `now`, ns). Sorted by VLAN, MAC.
    pub fn entries(&self, now: u64) -> Vec<FdbEntry> {
        let now_s = secs(now);
        let mut out: Vec<FdbEntry> = self
            .fdb
            .slots
            .iter()
            .enumerate()
            .filter_map(|(idx, s)| {
                let k = s.key.load(Ordering::Relaxed);
                if k == EMPTY {
                    return None;
                }
                let v = s.value.load(Ordering::Relaxed);
                let is_static = val_is_static(v);
                Some(FdbEntry {
                    vlan: key_vlan(k),
                    mac: key_mac(k),
                    port: val_port(v),
                    is_static,
                    age_secs: if is_static {
                        0
                    } else {
                        elapsed_secs(now_s, s.last_seen.load(Ordering::Relaxed))
                    },
                    recent_moves: self.recent_moves(idx, now_s),
                    flapping: self.flapping_at(idx, now_s),
                })
            })
            .collect();
        out.sort_unstable_by_key(|e| (e.vlan, e.mac));
        out
    }

    /// The largest distance of any entry from its home slot (a health metric; always below
    /// `MAX_PROBE`).
    pub fn max_displacement(&self) -> usize {
        let mask = self.fdb.mask;
        self.fdb
            .slots
            .iter()
            .enumerate()
            .filter_map(|(idx, s)| {
                let k = s.key.load(Ordering::Relaxed);
                (k != EMPTY).then(|| idx.wrapping_sub(self.fdb.home(k)) & mask)
            })
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};

    const S: u64 = NANOS_PER_SEC;

    fn mac(n: u64) -> MacAddr {
        // Locally administered unicast: 02:00:....
        MacAddr::from_u64((0x02 << 40) | (n & 0xff_ffff_ffff))
    }

    fn fdb(max_entries: usize) -> (Arc<Fdb>, FdbWriter) {
        Fdb::new(FdbConfig { max_entries, ..FdbConfig::default() }).unwrap()
    }

    #[test]
    fn fdb_is_send_sync_and_sized() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Fdb>();
        fn assert_send<T: Send>() {}
        assert_send::<FdbWriter>();
        let (f, w) = fdb(4096);
        assert_eq!(f.capacity(), 8192);
        assert_eq!(f.max_entries(), 4096);
        assert!(w.is_empty() && f.is_empty());
        let (f, _) = fdb(3);
        assert_eq!(f.capacity(), MIN_CAPACITY);
        assert_eq!(
            Fdb::new(FdbConfig { max_entries: 0, ..FdbConfig::default() }).err(),
            Some(FdbError::InvalidMaxEntries(0))
        );
        assert_eq!(FdbConfig::default().max_entries, 65_536);
    }

    #[test]
    fn insert_and_lookup() {
        let (f, mut w) = fdb(1024);
        assert_eq!(f.lookup(1, mac(1)), None);
        let g0 = f.generation();
        assert_eq!(w.learn(1, mac(1), 3, 10 * S), LearnOutcome::Inserted);
        assert!(f.generation() > g0);
        assert_eq!(f.lookup(1, mac(1)), Some(3));
        assert_eq!(f.lookup(1, mac(2)), None);
        let g1 = f.generation();
        assert_eq!(w.learn(1, mac(1), 3, 11 * S), LearnOutcome::Refreshed);
        assert_eq!(f.generation(), g1, "a refresh changes no mapping");
        assert_eq!(w.len(), 1);
        assert_eq!(f.len(), 1);
        assert_eq!(f.stats().learned, 1);
        assert_eq!(f.stats().entries, 1);
        assert_eq!(f.check_source(1, mac(1), 3, 11 * S), SourceCheck::Known);
        assert_eq!(f.check_source(1, mac(9), 3, 11 * S), SourceCheck::Unknown);
    }

    #[test]
    fn vlans_are_separate() {
        let (f, mut w) = fdb(1024);
        assert_eq!(w.learn(1, mac(7), 1, 0), LearnOutcome::Inserted);
        assert_eq!(w.learn(2, mac(7), 2, 0), LearnOutcome::Inserted);
        assert_eq!(f.lookup(1, mac(7)), Some(1));
        assert_eq!(f.lookup(2, mac(7)), Some(2));
        assert_eq!(f.lookup(3, mac(7)), None);
        assert_eq!(f.check_source(2, mac(7), 1, 0), SourceCheck::Moved { from: 2 });
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn move_detection() {
        let (f, mut w) = fdb(1024);
        assert_eq!(w.learn(5, mac(1), 1, S), LearnOutcome::Inserted);
        assert_eq!(f.check_source(5, mac(1), 2, 2 * S), SourceCheck::Moved { from: 1 });
        let g = f.generation();
        assert_eq!(w.learn(5, mac(1), 2, 2 * S), LearnOutcome::Moved { from: 1 });
        assert!(f.generation() > g);
        assert_eq!(f.lookup(5, mac(1)), Some(2));
        assert_eq!(f.check_source(5, mac(1), 2, 2 * S), SourceCheck::Known);
        assert_eq!(f.stats().moved, 1);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn flapping_is_detected_and_counted_once_per_window() {
        let (_f, mut w) = fdb(64);
        let t = 100 * S;
        for i in 0..DEFAULT_FLAP_THRESHOLD {
            w.learn(1, mac(1), 1 + (i % 2), t);
        }
        // One insert and threshold-1 moves so far.
        assert!(!w.is_flapping(1, mac(1), t));
        w.learn(1, mac(1), 5, t + S / 2);
        w.learn(1, mac(1), 6, t + S / 2);
        assert!(w.is_flapping(1, mac(1), t + S / 2));
        w.learn(1, mac(1), 5, t + S / 2);
        assert_eq!(w.stats().flaps, 1);
        let e = w.entries(t + S / 2)[0];
        assert!(e.flapping);
        assert_eq!(e.recent_moves, DEFAULT_FLAP_THRESHOLD + 2);
        // A quiet next second: no longer flapping.
        assert!(!w.is_flapping(1, mac(1), t + 2 * S));
        assert_eq!(w.stats().moved, u64::from(DEFAULT_FLAP_THRESHOLD) + 2);
    }

    #[test]
    fn aging_with_fake_times() {
        let (f, mut w) = fdb(1024);
        let max_age = DEFAULT_AGING_SECS * S;
        let t = 1_000 * S;
        w.learn(1, mac(1), 1, t);
        w.learn(1, mac(2), 2, t);
        assert_eq!(w.age(t + max_age, max_age), 0, "not older than max age yet");
        // mac(2) keeps sending; the worker refreshes it.
        assert_eq!(f.check_source(1, mac(2), 2, t + 200 * S), SourceCheck::Known);
        let g = f.generation();
        assert_eq!(w.age(t + max_age + S, max_age), 1);
        assert!(f.generation() > g);
        assert_eq!(f.lookup(1, mac(1)), None);
        assert_eq!(f.lookup(1, mac(2)), Some(2));
        assert_eq!(f.stats().aged, 1);
        assert_eq!(w.entries(t + 250 * S)[0].age_secs, 50);
        // And it ages too once it stops.
        assert_eq!(w.age(t + 200 * S + max_age + S, max_age), 1);
        assert!(w.is_empty());
    }

    #[test]
    fn check_source_refreshes_at_most_once_a_second() {
        let (f, mut w) = fdb(64);
        w.learn(1, mac(1), 1, 10 * S);
        f.check_source(1, mac(1), 1, 10 * S + S / 2);
        assert_eq!(w.entries(10 * S)[0].age_secs, 0);
        f.check_source(1, mac(1), 1, 12 * S + S / 2);
        assert_eq!(w.entries(13 * S)[0].age_secs, 1);
        // A reader whose clock is behind never moves last_seen backwards.
        f.check_source(1, mac(1), 1, 5 * S);
        assert_eq!(w.entries(13 * S)[0].age_secs, 1);
    }

    #[test]
    fn static_entries() {
        let (f, mut w) = fdb(1024);
        w.add_static(10, mac(1), 4).unwrap();
        assert_eq!(f.lookup(10, mac(1)), Some(4));
        assert_eq!(w.learn(10, mac(1), 5, 0), LearnOutcome::StaticConflict);
        assert_eq!(w.learn(10, mac(1), 4, 0), LearnOutcome::Refreshed);
        assert_eq!(f.lookup(10, mac(1)), Some(4));
        assert_eq!(f.check_source(10, mac(1), 5, 0), SourceCheck::Static);
        assert_eq!(f.check_source(10, mac(1), 4, 0), SourceCheck::Known);
        assert_eq!(w.age(1_000_000 * S, S), 0, "static entries never age");
        assert_eq!(f.lookup(10, mac(1)), Some(4));
        assert_eq!(f.stats().static_conflicts, 1);
        // A dynamic entry can be made static, and a static one moved.
        w.learn(10, mac(2), 1, 0);
        w.add_static(10, mac(2), 2).unwrap();
        assert_eq!(f.lookup(10, mac(2)), Some(2));
        assert_eq!(w.len(), 2);
        let e = w.entries(0);
        assert!(e.iter().all(|e| e.is_static));
        // flush_* keep static entries, purge_port does not.
        assert_eq!(w.flush_port(4), 0);
        assert_eq!(w.flush_vlan(10), 0);
        assert_eq!(w.purge_port(4), 1);
        assert_eq!(f.lookup(10, mac(1)), None);
        assert!(w.remove(10, mac(2)));
        assert!(!w.remove(10, mac(2)));
        assert!(w.is_empty());
    }

    #[test]
    fn static_entry_errors_name_the_value() {
        let (_f, mut w) = fdb(1);
        let e = w.add_static(4095, mac(1), 1).unwrap_err();
        assert_eq!(e.to_string(), "VLAN 4095 is out of range 1..=4094");
        let m: MacAddr = "01:00:5e:00:00:01".parse().unwrap();
        let e = w.add_static(1, m, 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "MAC 01:00:5e:00:00:01 is multicast and cannot be a static FDB entry"
        );
        assert!(w
            .add_static(1, MacAddr::ZERO, 1)
            .unwrap_err()
            .to_string()
            .contains("00:00:00:00:00:00 is all-zero"));
        assert_eq!(
            w.add_static(1, mac(1), 1024).unwrap_err().to_string(),
            "port 1024 is out of range 0..1024"
        );
        w.add_static(1, mac(1), 1).unwrap();
        assert_eq!(w.add_static(1, mac(2), 1).unwrap_err().to_string(), "FDB is full (limit 1)");
    }

    #[test]
    fn size_limit_and_recovery() {
        let (f, mut w) = fdb(100);
        for i in 0..100 {
            assert_eq!(w.learn(1, mac(i), 1, 0), LearnOutcome::Inserted);
        }
        assert_eq!(w.learn(1, mac(100), 1, 0), LearnOutcome::TableFull);
        assert_eq!(w.learn(1, mac(101), 1, 0), LearnOutcome::TableFull);
        assert_eq!(f.stats().table_full, 2);
        // Known entries still refresh and move while full.
        assert_eq!(w.learn(1, mac(5), 1, 0), LearnOutcome::Refreshed);
        assert_eq!(w.learn(1, mac(5), 2, 0), LearnOutcome::Moved { from: 1 });
        assert_eq!(w.len(), 100);
        assert_eq!(w.age(400 * S, DEFAULT_AGING_SECS * S), 100);
        assert_eq!(w.learn(1, mac(100), 1, 400 * S), LearnOutcome::Inserted);
        assert_eq!(f.lookup(1, mac(100)), Some(1));
    }

    #[test]
    fn full_table_does_not_evict_static() {
        let (f, mut w) = fdb(2);
        w.add_static(1, mac(1), 1).unwrap();
        w.learn(1, mac(2), 2, 0);
        assert_eq!(w.learn(1, mac(3), 3, 0), LearnOutcome::TableFull);
        assert_eq!(w.age(1_000 * S, S), 1);
        assert_eq!(f.lookup(1, mac(1)), Some(1));
        assert_eq!(w.learn(1, mac(3), 3, 1_000 * S), LearnOutcome::Inserted);
    }

    #[test]
    fn probe_limit_refuses_instead_of_probing_further() {
        let (f, mut w) = fdb(200);
        assert_eq!(f.capacity(), 512);
        // MACs that all hash to slot 0: one cluster, displacements 0, 1, 2, ...
        let colliding: Vec<MacAddr> = (0u64..)
            .map(mac)
            .filter(|&m| f.home(make_key(1, m)) == 0)
            .take(MAX_PROBE + 1)
            .collect();
        for &m in &colliding[..MAX_PROBE] {
            assert_eq!(w.learn(1, m, 1, 0), LearnOutcome::Inserted);
        }
        assert_eq!(w.max_displacement(), MAX_PROBE - 1);
        assert_eq!(w.learn(1, colliding[MAX_PROBE], 1, 0), LearnOutcome::TableFull);
        assert_eq!(
            w.add_static(1, colliding[MAX_PROBE], 1),
            Err(FdbError::NoSlot { vlan: 1, mac: colliding[MAX_PROBE] })
        );
        let st = f.stats();
        assert_eq!((st.table_full, st.probe_limit), (1, 1));
        for &m in &colliding[..MAX_PROBE] {
            assert_eq!(f.lookup(1, m), Some(1));
        }
        // Deleting the head of the cluster shifts everything back by one.
        assert!(w.remove(1, colliding[0]));
        assert_eq!(w.max_displacement(), MAX_PROBE - 2);
        assert_eq!(w.learn(1, colliding[MAX_PROBE], 2, 0), LearnOutcome::Inserted);
        for &m in &colliding[1..] {
            assert!(f.lookup(1, m).is_some());
        }
    }

    #[test]
    fn flush_port_and_vlan() {
        let (f, mut w) = fdb(1024);
        for i in 0..60u64 {
            let vlan = 1 + (i % 3) as VlanId;
            let port = (i % 4) as PortId;
            assert_eq!(w.learn(vlan, mac(i), port, 0), LearnOutcome::Inserted);
        }
        let g = f.generation();
        assert_eq!(w.flush_port(2), 15);
        assert!(f.generation() > g);
        assert_eq!(w.flush_port(2), 0);
        assert!(w.entries(0).iter().all(|e| e.port != 2));
        let in_vlan1 = w.entries(0).iter().filter(|e| e.vlan == 1).count();
        assert_eq!(w.flush_vlan(1), in_vlan1);
        assert_eq!(w.len(), 60 - 15 - in_vlan1);
        for i in 0..60u64 {
            let vlan = 1 + (i % 3) as VlanId;
            let port = (i % 4) as PortId;
            let expect = (port != 2 && vlan != 1).then_some(port);
            assert_eq!(f.lookup(vlan, mac(i)), expect, "entry {i}");
        }
        assert_eq!(f.stats().flushed, (15 + in_vlan1) as u64);
    }

    #[test]
    fn unlearnable_addresses() {
        let (f, mut w) = fdb(64);
        let mcast: MacAddr = "01:00:5e:01:02:03".parse().unwrap();
        assert_eq!(w.learn(1, mcast, 1, 0), LearnOutcome::NotLearnable);
        assert_eq!(w.learn(1, MacAddr::BROADCAST, 1, 0), LearnOutcome::NotLearnable);
        assert_eq!(w.learn(1, MacAddr::ZERO, 1, 0), LearnOutcome::NotLearnable);
        assert_eq!(w.learn(0, mac(1), 1, 0), LearnOutcome::NotLearnable);
        assert_eq!(w.learn(4095, mac(1), 1, 0), LearnOutcome::NotLearnable);
        assert_eq!(w.learn(1, mac(1), MAX_PORTS as PortId, 0), LearnOutcome::NotLearnable);
        assert!(w.is_empty());
        assert_eq!(f.generation(), 0);
        assert_eq!(f.check_source(1, mcast, 1, 0), SourceCheck::Unknown);
    }

    #[test]
    fn delete_churn_keeps_probe_chains_short() {
        // Fill to the limit, then replace entries at random for many rounds: with backward-shift
        // deletion there is nothing to pile up, and everything stays findable.
        let (f, mut w) = fdb(2048);
        let mut live: Vec<u64> = (0..2048).collect();
        for &k in &live {
            assert_eq!(w.learn(1, mac(k), (k % 7) as PortId, 0), LearnOutcome::Inserted);
        }
        let mut rng = 0x1234_5678_9abc_def0u64;
        for round in 0..50_000u64 {
            let next = 2048 + round;
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let i = (rng as usize) % live.len();
            assert!(w.remove(1, mac(live[i])), "round {round}");
            live[i] = next;
            assert_eq!(w.learn(1, mac(next), (next % 7) as PortId, 0), LearnOutcome::Inserted);
        }
        assert_eq!(w.len(), 2048);
        assert!(w.max_displacement() < MAX_PROBE);
        // Live slots equal the entry count: no tombstones, no duplicates left behind.
        let occupied = f.slots.iter().filter(|s| s.key.load(Ordering::Relaxed) != EMPTY).count();
        assert_eq!(occupied, 2048);
        for &k in &live {
            assert_eq!(f.lookup(1, mac(k)), Some((k % 7) as PortId));
        }
        assert_eq!(f.lookup(1, mac(0)), None);
    }

    #[test]
    fn concurrent_readers_never_see_a_foreign_port() {
        // Each key k may only ever be mapped to one of `ports(k)`; the writer learns, moves,
        // removes, flushes and ages keys in a small, crowded table while two readers check
        // every answer. Many keys per cluster, so backward shifts happen all the time.
        const KEYS: u64 = 120;
        fn ports(k: u64) -> [PortId; 3] {
            let b = (k % 50) as PortId * 3;
            [b, b + 1, b + 2]
        }
        fn key(k: u64) -> (VlanId, MacAddr) {
            (1 + (k % 2) as VlanId, mac(k / 2))
        }
        let (f, mut w) = fdb(64);
        let stop = AtomicBool::new(false);
        let deadline = Instant::now() + Duration::from_millis(300);
        std::thread::scope(|s| {
            let readers: Vec<_> = (0..2)
                .map(|r| {
                    let f = &f;
                    let stop = &stop;
                    s.spawn(move || {
                        let mut hits = 0u64;
                        let mut k = r;
                        // Acquire: pairs with the writer's Release store of `stop`; only ends
                        // the loop, correctness is checked on every lookup.
                        while !stop.load(Ordering::Acquire) {
                            k = (k + 1) % KEYS;
                            let (vlan, m) = key(k);
                            if let Some(p) = f.lookup(vlan, m) {
                                assert!(ports(k).contains(&p), "key {k} -> foreign port {p}");
                                hits += 1;
                            }
                            match f.check_source(vlan, m, ports(k)[0], 0) {
                                SourceCheck::Moved { from } => {
                                    assert!(ports(k).contains(&from), "key {k} moved from {from}")
                                }
                                SourceCheck::Static => panic!("no static entries here"),
                                _ => {}
                            }
                        }
                        hits
                    })
                })
                .collect();
            let mut rng = 0x9e37_79b9_7f4a_7c15u64;
            let mut ops = 0u64;
            while ops < 2_000_000 && (ops & 1023 != 0 || Instant::now() < deadline) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let k = rng % KEYS;
                let (vlan, m) = key(k);
                let now = (ops / 1000) * S;
                match (rng >> 32) % 16 {
                    0..=9 => {
                        w.learn(vlan, m, ports(k)[((rng >> 40) % 3) as usize], now);
                    }
                    10..=13 => {
                        w.remove(vlan, m);
                    }
                    14 => {
                        w.flush_port(ports(k)[1]);
                    }
                    _ => {
                        w.age(now, 2 * S);
                    }
                }
                ops += 1;
            }
            // Release: see the readers' Acquire.
            stop.store(true, Ordering::Release);
            let hits: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
            assert!(hits > 0, "readers never found anything");
            assert!(ops > 1000);
        });
        // Quiescent now: the table agrees with itself.
        for e in w.entries(0) {
            assert_eq!(f.lookup(e.vlan, e.mac), Some(e.port));
        }
        assert_eq!(w.entries(0).len(), w.len());
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Learn(u8, PortId, u64),
            AddStatic(u8, PortId),
            Remove(u8),
            FlushPort(PortId),
            FlushVlan(VlanId),
            PurgePort(PortId),
            Age(u64, u64),
            CheckSource(u8, PortId, u64),
        }

        /// 24 keys over 3 VLANs (one of them, 0, not learnable), a limit of 10 entries.
        fn key(i: u8) -> (VlanId, MacAddr) {
            (VlanId::from(i % 3), mac(u64::from(i / 3)))
        }

        fn op() -> impl Strategy<Value = Op> {
            let k = 0u8..24;
            let p = 0u16..4;
            let dt = 0u64..200 * S;
            prop_oneof![
                6 => (k.clone(), p.clone(), dt.clone()).prop_map(|(k, p, t)| Op::Learn(k, p, t)),
                1 => (k.clone(), p.clone()).prop_map(|(k, p)| Op::AddStatic(k, p)),
                2 => k.clone().prop_map(Op::Remove),
                1 => p.clone().prop_map(Op::FlushPort),
                1 => (0u16..3).prop_map(Op::FlushVlan),
                1 => p.clone().prop_map(Op::PurgePort),
                1 => (dt.clone(), 1u64..300 * S).prop_map(|(t, a)| Op::Age(t, a)),
                2 => (k, p, dt).prop_map(|(k, p, t)| Op::CheckSource(k, p, t)),
            ]
        }

        #[derive(Clone, Copy)]
        struct M {
            port: PortId,
            is_static: bool,
            last_seen: u32,
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]
            #[test]
            fn fdb_matches_hashmap_model(ops in proptest::collection::vec(op(), 1..120)) {
                const LIMIT: usize = 10;
                let (f, mut w) = fdb(LIMIT);
                let mut model: HashMap<(VlanId, MacAddr), M> = HashMap::new();
                let mut now = 0u64;
                for op in ops {
                    match op {
                        Op::Learn(k, port, dt) => {
                            now += dt;
                            let (vlan, m) = key(k);
                            let got = w.learn(vlan, m, port, now);
                            let len = model.len();
                            let want = if vlan == 0 {
                                LearnOutcome::NotLearnable
                            } else {
                                match model.get_mut(&(vlan, m)) {
                                    Some(e) if e.is_static && e.port == port => {
                                        LearnOutcome::Refreshed
                                    }
                                    Some(e) if e.is_static => LearnOutcome::StaticConflict,
                                    Some(e) => {
                                        let from = e.port;
                                        e.port = port;
                                        e.last_seen = secs(now);
                                        if from == port {
                                            LearnOutcome::Refreshed
                                        } else {
                                            LearnOutcome::Moved { from }
                                        }
                                    }
                                    None if len >= LIMIT => LearnOutcome::TableFull,
                                    None => {
                                        model.insert(
                                            (vlan, m),
                                            M { port, is_static: false, last_seen: secs(now) },
                                        );
                                        LearnOutcome::Inserted
                                    }
                                }
                            };
                            prop_assert_eq!(got, want);
                        }
                        Op::AddStatic(k, port) => {
                            let (vlan, m) = key(k);
                            let got = w.add_static(vlan, m, port);
                            if vlan == 0 {
                                prop_assert_eq!(got, Err(FdbError::VlanOutOfRange(0)));
                            } else if let Some(e) = model.get_mut(&(vlan, m)) {
                                e.port = port;
                                e.is_static = true;
                                prop_assert_eq!(got, Ok(()));
                            } else if model.len() >= LIMIT {
                                prop_assert_eq!(got, Err(FdbError::Full { limit: LIMIT }));
                            } else {
                                model.insert((vlan, m), M { port, is_static: true, last_seen: 0 });
                                prop_assert_eq!(got, Ok(()));
                            }
                        }
                        Op::Remove(k) => {
                            let (vlan, m) = key(k);
                            prop_assert_eq!(w.remove(vlan, m), model.remove(&(vlan, m)).is_some());
                        }
                        Op::FlushPort(p) => {
                            let before = model.len();
                            model.retain(|_, e| e.is_static || e.port != p);
                            prop_assert_eq!(w.flush_port(p), before - model.len());
                        }
                        Op::FlushVlan(v) => {
                            let before = model.len();
                            model.retain(|(vlan, _), e| e.is_static || *vlan != v);
                            prop_assert_eq!(w.flush_vlan(v), before - model.len());
                        }
                        Op::PurgePort(p) => {
                            let before = model.len();
                            model.retain(|_, e| e.port != p);
                            prop_assert_eq!(w.purge_port(p), before - model.len());
                        }
                        Op::Age(dt, max_age) => {
                            now += dt;
                            let before = model.len();
                            let max_s = max_age.div_ceil(S);
                            model.retain(|_, e| {
                                e.is_static
                                    || u64::from(elapsed_secs(secs(now), e.last_seen)) <= max_s
                            });
                            prop_assert_eq!(w.age(now, max_age), before - model.len());
                        }
                        Op::CheckSource(k, p, dt) => {
                            now += dt;
                            let (vlan, m) = key(k);
                            let got = f.check_source(vlan, m, p, now);
                            let want = match model.get_mut(&(vlan, m)) {
                                None => SourceCheck::Unknown,
                                Some(e) if e.port == p => {
                                    if !e.is_static {
                                        e.last_seen = e.last_seen.max(secs(now));
                                    }
                                    SourceCheck::Known
                                }
                                Some(e) if e.is_static => SourceCheck::Static,
                                Some(e) => SourceCheck::Moved { from: e.port },
                            };
                            prop_assert_eq!(got, want);
                        }
                    }
                    // After every op: same contents, same size, every lookup agrees.
                    prop_assert_eq!(w.len(), model.len());
                    prop_assert_eq!(f.len(), model.len());
                    for i in 0..24 {
                        let (vlan, m) = key(i);
                        prop_assert_eq!(f.lookup(vlan, m), model.get(&(vlan, m)).map(|e| e.port));
                    }
                    let entries = w.entries(now);
                    prop_assert_eq!(entries.len(), model.len());
                    for e in entries {
                        let me = model[&(e.vlan, e.mac)];
                        prop_assert_eq!(e.port, me.port);
                        prop_assert_eq!(e.is_static, me.is_static);
                        if !me.is_static {
                            prop_assert_eq!(e.age_secs, elapsed_secs(secs(now), me.last_seen));
                        }
                    }
                }
            }
        }
    }
}
