//! Poll-mode workers and the FDB learner that serves them.

pub mod handoff;
pub mod learner;
pub mod ready;
pub mod worker;

pub use learner::{learn_ring, Learner};
pub use worker::{Worker, WorkerConfig, WorkerError};

/// Nanoseconds on a monotonic clock shared by the workers and the control loop (the FDB's ages
/// compare times from both). Read once per worker iteration; a vDSO call, not a syscall.
pub fn monotonic_ns() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    // Start at 1 s so that "never" (0) is distinguishable from the first instant.
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1_000_000_000
}
