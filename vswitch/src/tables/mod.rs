//! The switch's lookup tables, and how each one reaches the workers.
//!
//! Workers run the fast path: they take no locks, allocate nothing and make no system calls
//! while forwarding a batch. Every table is shaped around that rule, and around who writes it:
//!
//! * **L2 forwarding database** ([`fdb`], MAC learning): written by one thread, the control
//!   thread's learner ([`fdb::FdbWriter`]); read lock-free by every worker ([`fdb::Fdb`]).
//!   Changes reach the workers in place: it is a fixed-capacity open-addressing table of
//!   atomics shared through an `Arc`, read with a per-slot seqlock, so a reader sees an old or
//!   a new mapping (or a miss), never a torn or foreign one.
//! * **Exact-match flow cache** ([`flow_cache`]): one per worker, written and read only by that
//!   worker (`&mut self`, no atomics). Entries carry the generation they were computed under
//!   and die when it changes.
//! * **Routes** ([`route`], longest-prefix match): [`route::Lpm`] is immutable, built once by
//!   the control plane from the whole route set and read by every worker inside the config
//!   snapshot, swapped in whole (`arc-swap`); a worker loads the current snapshot once per
//!   batch, and a lookup is a few binary searches (one per prefix length present) with no lock
//!   and no allocation. [`route`] also holds the IPv4 prefix types the control plane speaks in
//!   ([`route::Ipv4Net`] for networks, [`route::Ipv4Cidr`] for interface addresses).
//! * **Flow rules** ([`acl`]): an immutable priority-ordered list compiled by the control
//!   plane and read inside the snapshot like the routes; its per-rule counters are atomics
//!   shared by the workers.
//! * *Later:* **peers, policy**: written by the control plane, read by every worker as
//!   immutable snapshots swapped in whole in the same way.
//!
//! MAC learning is the one table that changes at packet rate, which is why it is not a snapshot:
//! workers see an unknown or moved source MAC through [`fdb::Fdb::check_source`], push a learn
//! event to the control thread through their SPSC ring, and the learner applies it with
//! [`fdb::FdbWriter::learn`]. Everything that changes a key-to-port mapping bumps
//! [`fdb::Fdb::generation`], so the flow caches in front of the FDB can notice.
//!
//! The flow cache is keyed by whatever the pipeline's flow key is and stores whatever its
//! decision is; the caller folds the generations it depends on (the config snapshot's and the
//! FDB's) into one `u64`, and the cache only compares it for equality.
//!
//! Time is always passed in (`now`, nanoseconds, from the worker's or control thread's own
//! clock reading); nothing here reads a clock, so tests drive time by hand.

pub mod acl;
pub mod fdb;
pub mod flow_cache;
pub mod l3;
pub mod neigh;
pub mod route;

pub use fdb::{
    Fdb, FdbConfig, FdbEntry, FdbError, FdbStats, FdbWriter, LearnOutcome, SourceCheck,
    DEFAULT_AGING_SECS,
};
pub use flow_cache::{FlowCache, FlowCacheEntry, FlowCacheStats};
