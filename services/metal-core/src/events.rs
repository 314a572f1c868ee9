//! The `data` of each event type. One struct per type; the subject constant names it.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::inventory::Inventory;
use crate::mac::Mac;

/// `machine.onboard.requested`, as synthesised from the raw request by [`crate::envelope::decode`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnboardRequested {
    pub bmc_mac: Mac,
    pub requested_by: Option<String>,
    pub stream_sequence: u64,
}

/// `machine.onboard.rejected`: a request that could not be parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnboardRejected {
    pub reason: String,
    pub payload_bytes: u64,
    /// The start of the payload, escaped and bounded.
    pub payload_excerpt: String,
    pub stream_sequence: u64,
}

/// `machine.bmc.located`: where the BMC answers Redfish.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmcLocated {
    /// The BMC's IP address, when the source gave one.
    pub bmc_ip: Option<String>,
    /// The Redfish base URL (scheme, host and port) the scraper uses.
    pub redfish_url: String,
    /// Which kind of locator source answered (`static`, `unifi`, `dnsmasq`, `isc-dhcpd`,
    /// `kea`, `neighbour`).
    pub source: String,
    /// Which one of that kind: a UniFi controller's name, a lease file's path.
    #[serde(default)]
    pub source_name: Option<String>,
    /// When that source last saw the MAC, if it keeps that.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_seen: Option<OffsetDateTime>,
    /// What the source said, for people ("active client of site default").
    #[serde(default)]
    pub detail: String,
    /// Every other sighting of the MAC (another address, another source), best first.
    #[serde(default)]
    pub also_seen: Vec<BmcSighting>,
}

/// One source's sighting of a BMC that was not chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmcSighting {
    pub source: String,
    pub source_name: Option<String>,
    /// An IP address, or a Redfish URL for a static entry naming a host.
    pub address: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen: Option<OffsetDateTime>,
    pub detail: String,
}

/// `machine.locate.failed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocateFailed {
    pub reason: String,
    pub sources_tried: Vec<String>,
    /// What each source said at the last lookup, in the configured order.
    #[serde(default)]
    pub sources_said: Vec<SourceSaid>,
}

/// One source's answer, in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSaid {
    /// `unifi core`, `dnsmasq /var/lib/misc/dnsmasq.leases`, `static`.
    pub source: String,
    pub said: String,
}

/// `machine.hardware.scraped`: the normalised Redfish inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareScraped {
    pub redfish_url: String,
    pub inventory: Inventory,
    /// Where the raw documents of this scrape are kept (absent from older events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawBundleRef>,
}

/// A raw bundle in the `machine-raw` object store: gzip of [`crate::raw::RawBundle`] JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBundleRef {
    pub bucket: String,
    /// `<machine id>/<sha256>.json.gz`: content-addressed, so a redelivered scrape that
    /// stores again never changes what an earlier event points at.
    pub key: String,
    /// SHA-256 of the stored (gzip) bytes, lower-case hex.
    pub sha256: String,
    pub bytes: u64,
    pub documents: u64,
}

/// `machine.rescan.requested`: walk a known machine's BMC again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RescanRequested {
    pub redfish_url: String,
    /// The inventory to compare with: the machine's last `machine.hardware.scraped`.
    pub previous: Option<InventoryRef>,
    pub requested_by: Option<String>,
}

/// One stored `machine.hardware.scraped` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryRef {
    pub event_id: uuid::Uuid,
    pub sequence: u64,
}

/// `machine.hardware.changed`: how a rescan's inventory differs from the previous one,
/// component by stable identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareChanged {
    pub previous: InventoryRef,
    pub changes: Vec<crate::inventory::diff::HardwareChange>,
}

/// Why a scrape failed, so operators can tell a wrong password from a dead BMC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScrapeFailureKind {
    Unreachable,
    Timeout,
    Auth,
    Protocol,
    TooLarge,
    NoCredentials,
}

/// `machine.scrape.failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeFailed {
    pub redfish_url: String,
    pub kind: ScrapeFailureKind,
    pub reason: String,
    pub attempts: u32,
}
