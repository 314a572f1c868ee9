//! Periodic rescans and BMC health: which machines are due a rescan, spread over the
//! interval, and which BMCs have been silent long enough to be lost.
