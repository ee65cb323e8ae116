//! # vswitch
//!
//! A userspace, poll-mode, batched virtual switch for Kubernetes nodes.
//!
//! ## How a packet moves
//!
//! ```text
//!            control plane (config, API, learner)
//!               │ validates, compiles            ▲ learn events (SPSC rings)
//!               ▼ Snapshot (ArcSwap, RCU-style)  │
//!  ┌──────────── worker (one thread, one core, one buffer pool / UMEM) ─────────────┐
//!  │ port rx ─► parse ─► vlan ingress ─► l2 (flow cache │ FDB) ─► output ─► port tx │
//!  └────────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! A worker polls its ports; each receive fills a [`Batch`](packet::Batch) of packet handles
//! from its own [`Pool`](packet::Pool); the batch runs through every stage to completion and
//! leaves on the output ports' transmit queues, or is dropped and counted by reason. The fast
//! path takes no lock, allocates nothing and makes no syscall per packet: it reads the
//! forwarding state from an immutable snapshot loaded once per iteration, and the FDB through
//! lock-free reads.
//!
//! ## Layout (each module depends only on those listed before it)
//!
//! - [`types`]: MAC addresses, port and VLAN ids.
//! - [`telemetry`]: drop reasons and per-worker counters.
//! - [`wire`]: zero-copy packet views and checksums (no unsafe, no allocation).
//! - [`packet`]: the buffer pool (the AF_XDP UMEM), linear packet handles, batches, metadata.
//! - [`tables`]: the FDB (one writer, lock-free readers) and the per-worker flow cache.
//! - [`qos`]: token buckets, the hierarchical (HTB-style) egress scheduler, policers and the
//!   DDoS guard: a library that knows nothing of packets (time and items are arguments).
//! - [`port`]: the port trait and the port types.
//! - [`pipeline`]: the snapshot the workers read, and the stages, one file each. A port whose
//!   egress is shaped sends through its scheduler (`pipeline::nodes::qos`), and a guarded
//!   port's ingress passes the DDoS guard after parse.
//! - [`pmd`]: the poll-mode worker loop (it owns its ports' schedulers and releases what they
//!   allow every iteration) and the FDB learner.
//!
//! `unsafe` is denied crate-wide; only the modules that own ring or UMEM memory or make the
//! syscalls behind them opt out, and every unsafe block there says why it holds.

#![deny(unsafe_code)]

pub mod control;
pub mod packet;
pub mod pipeline;
pub mod pmd;
pub mod port;
pub mod qos;
pub mod tables;
pub mod telemetry;
pub mod testkit;
pub mod types;
pub mod wire;
