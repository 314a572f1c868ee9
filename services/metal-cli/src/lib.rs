//! metal-cli: the operator's view of the control plane, over NATS only.
//!
//! # Layout
//! - [`client`]: talking to NATS: publishing onboarding requests, following their events,
//!   asking the inventory query service (run by inventory-projector).
//! - [`render`]: pure formatting of query replies and events for people.
//! - [`commands`]: one function per subcommand, returning the process exit code.
//! - [`many`]: `onboard --file`: many MACs requested and followed together, with a progress bar.
//! - [`rescan`]: `rescan` (walk a machine again, say what changed) and `raw` (a scrape's
//!   raw documents as a mockup folder).
//! - [`provision`]: `tag`, `provision` and `power`: requests about one known machine,
//!   published and followed by correlation id.
//! - [`expect`]: `expect` (the hardware spec a machine must meet, and the verdict).
//! - [`fleet`]: `unknown` (MACs that netbooted and that no machine has), `drift` (machines
//!   whose firmware differs from their model's most common version), `profiles check`
//!   (validate a boot profiles file, dry-run it against the inventory) and
//!   `inventory --ansible`.

pub mod client;
pub mod commands;
pub mod expect;
pub mod fleet;
pub mod many;
pub mod provision;
pub mod render;
pub mod rescan;
