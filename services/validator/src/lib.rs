//! The validator responder: answers each inventory (and each spec assignment) with
//! `machine.hardware.validated` or `machine.hardware.invalid` against the specs file, and
//! keeps inventories fresh: periodic rescans per machine state, `machine.bmc.lost` and
//! `machine.bmc.found`. Follows the stream into its own projection.

pub mod rescans;
pub mod validate;
