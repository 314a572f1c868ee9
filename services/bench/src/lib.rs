//! What the benchmark binaries share: running the real service binaries.

pub mod service;
