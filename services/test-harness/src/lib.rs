//! Dev-only test harness: the one place that starts processes for tests.
//!
//! # Layout
//! - [`browser`]: headless Chromium in its own process group, driven over DevTools.
//! - [`nats`]: a real `nats-server -js` on a free loopback port with a temp store, killed on drop.
//! - [`sushy`]: the sushy-tools Redfish emulator (PyPI `sushy-tools`) on a free port, over
//!   libvirt's `test:///` driver or its own fake driver (optionally behind basic auth).
//! - [`mockup`]: a server for a recorded Redfish mockup folder (DMTF layout) on a loopback port.
//! - [`logs`]: the log lines of everything in the test's process, at debug level.
//! - [`fake_bmc`]: a fleet of fake Redfish BMCs (one loopback port each) with latency, auth
//!   and injected faults, for load and robustness tests.
//! - [`netns`]: a real dnsmasq and a DHCP-client "BMC" in two network namespaces (root only).
//! - [`netboot`]: a QEMU guest netbooting through iPXE from in-process servers, in a network
//!   namespace with dnsmasq; a Debian kernel and a phone-home busybox initramfs (root only).
//! - [`schemathesis`]: the schemathesis CLI run against a served OpenAPI document.
//! - [`schemas`]: validation of events against the JSON Schemas in schemas/.
//! - [`service`]: a service binary as its own process: killed, started again, its log kept.
//! - [`paths`]: where the workspace, shared/ and the mockups are.
//! - [`stream`]: reading and waiting on the MACHINES stream.
//! - [`tls`]: a TLS-terminating proxy with a fresh CA, in front of any loopback server.
//! - [`unifi`]: a strict fake UniFi controller (classic, UniFi OS, Integration API) over TLS.
//!
//! Missing tools are reported with a clear message naming them; tests never skip.

pub mod browser;
pub mod fake_bmc;
pub mod logs;
pub mod mockup;
pub mod nats;
pub mod netboot;
pub mod netns;
pub mod paths;
pub mod schemas;
pub mod schemathesis;
pub mod service;
pub mod stream;
pub mod sushy;
pub mod tls;
pub mod unifi;
