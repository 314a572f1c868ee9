//! Dev-only test harness: the one place that starts processes for tests.
//!
//! # Layout
//! - [`nats`]: a real `nats-server -js` on a free loopback port with a temp store, killed on drop.
//! - [`sushy`]: the sushy-tools Redfish emulator (PyPI `sushy-tools`) on a free port.
//! - [`mockup`]: a server for a recorded Redfish mockup folder (DMTF layout) on a loopback port.
//! - [`netns`]: a real dnsmasq and a DHCP-client "BMC" in two network namespaces (root only).
//! - [`schemas`]: validation of events against the JSON Schemas in schemas/.
//! - [`paths`]: where the workspace, shared/ and the mockups are.
//! - [`stream`]: reading and waiting on the MACHINES stream.
//! - [`unifi`]: a strict fake UniFi controller (classic, UniFi OS, Integration API) over TLS.
//!
//! Missing tools are reported with a clear message naming them; tests never skip.

pub mod mockup;
pub mod nats;
pub mod netns;
pub mod paths;
pub mod schemas;
pub mod stream;
pub mod sushy;
pub mod unifi;
