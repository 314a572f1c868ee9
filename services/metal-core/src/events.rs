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

/// `machine.input.abandoned`: the dead letter. A responder's consumer gave up on one input
/// (its handler still failing at the last delivery the consumer allows, a panic, or its
/// answer impossible to publish) and moved on; the input itself stays in the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputAbandoned {
    /// The durable consumer that gave up (`locator`, `redfish-scraper`, `boot-api`, ...).
    pub consumer: String,
    /// The abandoned message's subject and stream sequence.
    pub subject: String,
    pub stream_sequence: u64,
    /// Deliveries tried.
    pub attempts: u64,
    pub reason: String,
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// The BMC's address is outside `redfish.allowed_networks`: nothing was dialled.
    NotAllowed,
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

/// `machine.tags.changed`: operator tags set (`k=v`) or removed, for profile selectors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagsChanged {
    #[serde(default)]
    pub set: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub removed: Vec<String>,
    pub requested_by: Option<String>,
}

/// `machine.provision.requested`: arm a machine to netboot and install its profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionRequested {
    /// A profile by name; `None` lets the selectors choose.
    pub profile: Option<String>,
    /// Whether to tell the BMC to PXE-boot once and reset (`false`: someone powers it on).
    pub power: bool,
    pub requested_by: Option<String>,
    /// Arm a machine whose hardware failed its spec anyway.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// `machine.provision.failed`: a provision request that armed nothing (unknown profile,
/// no profile matches, machine not inventoried).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionFailed {
    /// The `machine.provision.requested` event id.
    pub provision_id: uuid::Uuid,
    pub reason: String,
}

/// `machine.profile.assigned`: the machine is armed with this profile. It carries the whole
/// profile as it was, so history and replay never depend on the profiles file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileAssigned {
    /// The `machine.provision.requested` event id: the install token is derived from it.
    pub provision_id: uuid::Uuid,
    pub profile: String,
    /// `operator` when named on the request, `selectors` when matched, `retire` for the
    /// wipe profile of a retirement.
    pub chosen_by: String,
    pub kernel: String,
    pub initrd: Vec<String>,
    /// The cmdline template, placeholders unrendered (the token is never stored).
    pub cmdline: String,
    /// Whether redfish-scraper should set the PXE override and reset.
    pub power: bool,
    /// Where the BMC answers (from the machine's last inventory).
    pub redfish_url: Option<String>,
    /// Install an OS, or wipe the disks before retirement (absent from older events).
    #[serde(default, skip_serializing_if = "Purpose::is_install")]
    pub purpose: Purpose,
}

/// Why a machine is armed to netboot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Purpose {
    /// Install its OS; the installer phones home to `/installed`.
    #[default]
    Install,
    /// Wipe it before retirement; the wipe phones home to `/wiped`.
    Wipe,
}

impl Purpose {
    pub fn is_install(&self) -> bool {
        *self == Purpose::Install
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Install => "install",
            Purpose::Wipe => "wipe",
        }
    }
}

/// What `machine.power.requested` asks of the BMC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerAction {
    On,
    Off,
    Cycle,
    Status,
}

impl PowerAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::On => "on",
            PowerAction::Off => "off",
            PowerAction::Cycle => "cycle",
            PowerAction::Status => "status",
        }
    }
}

/// `machine.power.requested`: an operator's power action (`metal-cli power`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerRequested {
    pub action: PowerAction,
    pub redfish_url: String,
    pub requested_by: Option<String>,
}

/// One step of talking to the BMC's power and boot settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerStep {
    /// The one-time PXE boot override (PATCH of the system's `Boot`).
    BootOverride,
    /// `ComputerSystem.Reset`.
    Reset,
    /// Reading `PowerState`.
    Status,
}

impl PowerStep {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerStep::BootOverride => "boot_override",
            PowerStep::Reset => "reset",
            PowerStep::Status => "status",
        }
    }
}

/// `machine.power.done`: one step the BMC accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerDone {
    pub step: PowerStep,
    /// The provisioning this step belongs to, or `None` for an operator's power action.
    pub provision_id: Option<uuid::Uuid>,
    /// The system resource acted on (`/redfish/v1/Systems/1`).
    pub system: String,
    /// What was asked, in the BMC's words (`Pxe Once UEFI`, `ForceRestart`).
    pub detail: String,
    /// `PowerState` read before the step (`On`, `Off`), when the BMC said.
    pub power_state: Option<String>,
}

/// `machine.power.failed`: a step the BMC refused or could not do, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerFailed {
    pub step: PowerStep,
    pub provision_id: Option<uuid::Uuid>,
    pub system: Option<String>,
    pub reason: String,
}

/// How a boot request reached boot-api.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BootPath {
    /// `GET /v1/boot/{mac}`, Pixiecore's API mode.
    Pixiecore,
    /// `GET /v1/ipxe/{mac}`, chained from a site's own DHCP.
    Ipxe,
}

/// `machine.boot.served`: an armed machine was answered with its profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootServed {
    pub mac: Mac,
    pub path: BootPath,
    pub provision_id: uuid::Uuid,
    pub profile: String,
}

/// `machine.boot.ignored`: a known machine that is not armed asked to netboot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootIgnored {
    pub mac: Mac,
    pub path: BootPath,
    /// The machine's state at the time (`installed`, `inventoried`, ...).
    pub state: String,
}

/// `machine.boot.unknown`: a MAC that no machine has asked to netboot (new hardware on the
/// wire, or a MAC two machines share).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootUnknown {
    pub mac: Mac,
    pub path: BootPath,
    /// Why it is unknown (`no machine has this MAC`, `MAC shared by 2 machines`).
    pub reason: String,
}

/// `machine.install.completed`: the installed OS phoned home with the current token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallCompleted {
    pub provision_id: uuid::Uuid,
    pub profile: String,
}

/// `machine.install.failed`: the installer said it failed, or the deadline passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallFailed {
    pub provision_id: uuid::Uuid,
    pub profile: String,
    pub reason: String,
}

/// `machine.install.rejected`: a phone-home with a wrong, old or replayed token. Nothing
/// changed; the token itself is never recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallRejected {
    /// `installed`, `failed` or `wiped`: what the caller claimed.
    pub outcome: String,
    pub reason: String,
    pub remote: Option<String>,
}

/// `machine.spec.assigned`: the hardware spec an operator expects the machine to meet
/// (`metal-cli expect`, `metal-cli onboard --expect`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecAssigned {
    pub spec: String,
    pub requested_by: Option<String>,
}

/// One rule of a hardware spec that an inventory breaks (`rule`, `wanted`, `found`).
pub use crate::specs::RuleFailure;

/// `machine.hardware.validated`: the inventory meets its spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareValidated {
    pub spec: String,
    /// `operator` (assigned) or `map` (a `[[map]]` rule of the specs file).
    pub chosen_by: String,
    pub inventory: InventoryRef,
}

/// `machine.hardware.invalid`: the inventory breaks its spec; each failed rule with what
/// was wanted and found. The machine is not armed unless forced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareInvalid {
    pub spec: String,
    pub chosen_by: String,
    pub inventory: Option<InventoryRef>,
    pub failures: Vec<RuleFailure>,
}

/// `machine.bmc.lost`: the BMC has not answered a scrape for longer than the threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmcLost {
    /// The first failed scrape since the last answer.
    #[serde(with = "time::serde::rfc3339")]
    pub failing_since: OffsetDateTime,
    /// The last answer, if it ever answered.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_seen: Option<OffsetDateTime>,
    pub reason: String,
}

/// `machine.bmc.found`: a lost BMC answered again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmcFound {
    #[serde(with = "time::serde::rfc3339")]
    pub failing_since: OffsetDateTime,
}

/// `machine.retire.requested`: take the machine out of service, wiping it first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetireRequested {
    /// Netboot the wipe profile once before powering off.
    pub wipe: bool,
    /// Where the BMC answers, for the power-off.
    pub redfish_url: Option<String>,
    pub requested_by: Option<String>,
}

/// `machine.wipe.completed`: the wipe phoned home with its token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WipeCompleted {
    /// The `machine.retire.requested` event id (the wipe's provisioning id).
    pub provision_id: uuid::Uuid,
    pub profile: String,
    pub redfish_url: Option<String>,
}

/// `machine.retired`: powered off and out of service until onboarded anew.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retired {
    /// The `machine.retire.requested` event id.
    pub retire_id: uuid::Uuid,
    pub wiped: bool,
}
