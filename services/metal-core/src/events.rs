//! The `data` of each event type. One struct per type; the subject constant names it.

use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmcLocated {
    /// The BMC's IP address, when the source gave one.
    pub bmc_ip: Option<String>,
    /// The Redfish base URL (scheme, host and port) the scraper uses.
    pub redfish_url: String,
    /// Which locator source answered (`static`, `dnsmasq`, ...).
    pub source: String,
}

/// `machine.locate.failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocateFailed {
    pub reason: String,
    pub sources_tried: Vec<String>,
}

/// `machine.hardware.scraped`: the normalised Redfish inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareScraped {
    pub redfish_url: String,
    pub inventory: Inventory,
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
