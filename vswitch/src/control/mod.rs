//! The control plane: configuration, validation, and compiling it into what workers read.

pub mod api;
pub mod capture;
pub mod config;
pub mod daemon;
pub mod flows;
pub mod pods;
pub mod qos;
