//! validator binary: parses flags and config, connects to NATS, calls `validator::run`.

fn main() {}
