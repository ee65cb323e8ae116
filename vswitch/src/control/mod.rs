//! The control plane: configuration, validation, and compiling it into what workers read.

pub mod api;
pub mod capture;
mod changes;
pub mod config;
pub mod daemon;
pub mod flows;
pub mod pods;
pub mod qos;
mod reaper;
