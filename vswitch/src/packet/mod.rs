//! Packets: buffers, handles, metadata and batches.
//!
//! - [`umem`]: the page-aligned memory a worker's frames live in (its AF_XDP UMEM).
//! - [`pool`]: the worker's buffer pool and the linear [`Pkt`] handle.
//! - [`batch`]: [`Batch`] of handles with per-packet [`Meta`] in a parallel array.

pub mod batch;
pub mod gso;
pub mod pool;
pub mod umem;

pub use batch::{flags, Batch, GsoType, Meta, Offload, Verdict, DEFAULT_BATCH, MAX_BATCH};
pub use pool::{Pkt, Pool, PoolConfig, PoolError, PoolReader, BIG_BUFFER_SIZE};
