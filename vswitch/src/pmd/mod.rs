//! Poll-mode workers and the FDB learner that serves them.

pub mod learner;
pub mod worker;

pub use learner::{learn_ring, Learner};
pub use worker::{Worker, WorkerConfig, WorkerError};
