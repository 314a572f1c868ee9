//! The inventory query API (a NATS micro service run by inventory-projector), shared by
//! the projector that answers and metal-cli that asks. Subjects are in [`crate::subjects`].
//!
//! Requests and replies are JSON. An error reply carries the micro-service headers
//! `Nats-Service-Error-Code` (404 unknown machine, 400 bad request, 500 internal) and
//! `Nats-Service-Error` (the message).
//!
//! `metal.inventory.export` streams: the projector publishes the canonical export to the
//! request's reply subject in chunks of at most [`EXPORT_CHUNK_BYTES`], then one empty
//! message with the headers [`EXPORT_DIGEST_HEADER`] and [`EXPORT_SEQUENCE_HEADER`].

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::inventory::{Inventory, InventorySummary};
use crate::mac::Mac;
use crate::MachineId;

pub const EXPORT_CHUNK_BYTES: usize = 256 * 1024;
pub const EXPORT_DIGEST_HEADER: &str = "Metal-Export-Digest";
pub const EXPORT_SEQUENCE_HEADER: &str = "Metal-Export-Sequence";

/// Request of `metal.inventory.machine` and `metal.inventory.history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineRef {
    /// A BMC MAC (any notation), a host NIC MAC, or a machine id.
    pub machine: String,
}

/// Where a machine is in its life. Failed states carry a reason in `state_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum MachineState {
    Requested,
    Located,
    Inventoried,
    LocateFailed,
    ScrapeFailed,
    /// Armed with a profile: boot-api answers its NICs.
    Provisioning,
    /// Armed, and boot-api has served it its profile at least once.
    Booting,
    /// Phoned home: disarmed until provisioned again.
    Installed,
    /// The installer reported failure or missed the deadline: disarmed.
    InstallFailed,
    /// The BMC refused the boot override or the reset: disarmed.
    ProvisionFailed,
    /// Armed with the wipe profile before retirement: boot-api netboots it.
    Wiping,
    /// Retirement asked (and any wipe done): waiting for the power-off.
    Retiring,
    /// Powered off and out of service: never netbooted until onboarded anew.
    Retired,
    /// The power-off of a retirement failed: retire again.
    RetireFailed,
}

impl MachineState {
    pub const ALL: [MachineState; 14] = [
        MachineState::Requested,
        MachineState::Located,
        MachineState::Inventoried,
        MachineState::LocateFailed,
        MachineState::ScrapeFailed,
        MachineState::Provisioning,
        MachineState::Booting,
        MachineState::Installed,
        MachineState::InstallFailed,
        MachineState::ProvisionFailed,
        MachineState::Wiping,
        MachineState::Retiring,
        MachineState::Retired,
        MachineState::RetireFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MachineState::Requested => "requested",
            MachineState::Located => "located",
            MachineState::Inventoried => "inventoried",
            MachineState::LocateFailed => "locate_failed",
            MachineState::ScrapeFailed => "scrape_failed",
            MachineState::Provisioning => "provisioning",
            MachineState::Booting => "booting",
            MachineState::Installed => "installed",
            MachineState::InstallFailed => "install_failed",
            MachineState::ProvisionFailed => "provision_failed",
            MachineState::Wiping => "wiping",
            MachineState::Retiring => "retiring",
            MachineState::Retired => "retired",
            MachineState::RetireFailed => "retire_failed",
        }
    }

    pub fn parse(text: &str) -> Option<MachineState> {
        MachineState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_failed(self) -> bool {
        matches!(
            self,
            MachineState::LocateFailed
                | MachineState::ScrapeFailed
                | MachineState::InstallFailed
                | MachineState::ProvisionFailed
                | MachineState::RetireFailed
        )
    }

    /// Whether boot-api netboots the machine.
    pub fn is_armed(self) -> bool {
        matches!(
            self,
            MachineState::Provisioning | MachineState::Booting | MachineState::Wiping
        )
    }

    /// Whether the machine is being retired or is retired: nothing arms it.
    pub fn is_retiring(self) -> bool {
        matches!(
            self,
            MachineState::Wiping
                | MachineState::Retiring
                | MachineState::Retired
                | MachineState::RetireFailed
        )
    }

    /// Whether the machine has an inventory it can be provisioned from.
    pub fn has_inventory(self) -> bool {
        !matches!(
            self,
            MachineState::Requested
                | MachineState::Located
                | MachineState::LocateFailed
                | MachineState::ScrapeFailed
        )
    }
}

/// One row of `metal.inventory.machines`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MachineRow {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub machine_id: MachineId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub bmc_mac: Mac,
    pub bmc_ip: Option<String>,
    pub redfish_url: Option<String>,
    pub state: MachineState,
    pub state_reason: Option<String>,
    /// The onboarding request this state belongs to.
    pub correlation_id: Uuid,
    /// From the inventory, when there is one.
    pub system_model: Option<String>,
    pub cpu_count: u64,
    pub memory_mib: u64,
    pub host_nic_count: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineList {
    pub machines: Vec<MachineRow>,
    pub last_sequence: u64,
}

/// Reply of `metal.inventory.machine`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MachineDetail {
    pub machine: MachineRow,
    pub summary: Option<InventorySummary>,
    pub inventory: Option<Inventory>,
    pub last_sequence: u64,
    /// The `machine.hardware.scraped` the inventory comes from.
    #[serde(default)]
    pub inventory_event: Option<crate::events::InventoryRef>,
    /// Operator tags (`metal-cli tag`).
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
    /// The current or last provisioning.
    #[serde(default)]
    pub provisioning: Option<Provisioning>,
    /// The hardware spec an operator assigned (`metal-cli expect`).
    #[serde(default)]
    pub expected_spec: Option<String>,
    /// The validator's last verdict on the current inventory.
    #[serde(default)]
    pub validation: Option<Validation>,
    /// Whether the BMC answers the scrapes.
    #[serde(default)]
    pub bmc_health: BmcHealth,
}

/// The last `machine.hardware.validated` or `machine.hardware.invalid`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Validation {
    pub spec: String,
    pub chosen_by: String,
    pub valid: bool,
    /// Each rule broken: `rule`, `wanted`, `found`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub failures: Vec<crate::events::RuleFailure>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// From the scrapes' outcomes and `machine.bmc.lost|found`; all times are event times.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BmcHealth {
    /// The last scrape the BMC answered.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_seen: Option<OffsetDateTime>,
    /// The first failed scrape since it last answered.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub failing_since: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    /// `machine.bmc.lost` was recorded and no answer since.
    pub lost: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimelineEntry {
    pub sequence: u64,
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    /// One line for people: the reason of a failure, the IP found, the CPU count.
    pub summary: String,
}

/// Reply of `metal.inventory.history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub machine_id: MachineId,
    pub events: Vec<TimelineEntry>,
}

/// Reply of `metal.inventory.replay`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayReport {
    /// Events the fresh projection applied, from sequence 1.
    pub events_applied: u64,
    /// The sequence both projections had reached when compared and swapped.
    pub last_sequence: u64,
    pub old_digest: String,
    pub new_digest: String,
    pub identical: bool,
    pub seconds: f64,
    /// Why the projection replaced was damaged, when it was: it was not compared (its old
    /// digest is empty), only replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repaired_damage: Option<String>,
}

/// The machine's provisioning, when it has been provisioned: from `machine.profile.assigned`
/// and what followed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Provisioning {
    pub provision_id: Uuid,
    // The profile's texts are shared (`Arc`): a fleet has a few profiles, and boot-api
    // keeps every armed machine's provisioning in memory, one copy per profile.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub profile: Arc<str>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub kernel: Arc<str>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub initrd: Arc<[String]>,
    /// The cmdline template (the token is rendered only when boot-api answers).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub cmdline: Arc<str>,
    #[serde(with = "time::serde::rfc3339")]
    pub assigned_at: OffsetDateTime,
    /// Install, or the wipe before retirement.
    #[serde(default)]
    pub purpose: crate::events::Purpose,
}

/// One MAC that asked to netboot and that no machine has, from `machine.boot.unknown`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnknownMac {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub mac: Mac,
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    /// How many `machine.boot.unknown` events (one per boot window).
    pub events: u64,
    pub last_reason: String,
}

/// Reply of `metal.inventory.unknown`: MACs that netbooted and that no machine has now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnknownMacs {
    pub macs: Vec<UnknownMac>,
    pub last_sequence: u64,
}

/// Reply of `metal.inventory.status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub last_sequence: u64,
    pub machines: u64,
    pub database: String,
    /// The stream's last sequence when the projector answered (absent when it could not ask
    /// the stream, or from an older projector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_last_sequence: Option<u64>,
    /// How far the replay running now has got (absent when none runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayProgress>,
}

/// A running replay: messages applied so far into the rebuilt projection, and the stream
/// sequence it rebuilds up to before catching up with the live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayProgress {
    pub applied: u64,
    pub target_sequence: u64,
}

impl Status {
    /// How many stored messages the projection has not applied yet, when known.
    pub fn behind(&self) -> Option<u64> {
        self.stream_last_sequence
            .map(|end| end.saturating_sub(self.last_sequence))
    }
}

/// Most rows one `metal.inventory.drift` reply carries (about 300 bytes of JSON each, so a
/// full reply stays well under NATS's default 1 MB `max_payload`); [`FirmwareDrift::total`]
/// counts them all.
pub const DRIFT_MAX_ROWS: usize = 1000;

/// One firmware component of one machine at another version than the fleet's.
///
/// The fleet is every machine with an inventory and the same system model; a component is
/// a firmware item's name, or its id when it has none. The fleet version of a component is
/// the version the most firmware items of the model's machines report; ties go to the
/// version more machines report, then to the greatest by a numeric-aware comparison (runs
/// of digits compare by value, so `2.10` > `2.9`), then to the greatest byte-wise.
/// A machine drifts on a component when it reports it at another version; a machine
/// reporting several items of one name (two power supplies) is listed once per version
/// that is not the fleet's. Items without a version and machines without a system model
/// are not compared, and a component only one machine of the model has never drifts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftRow {
    pub machine_id: MachineId,
    pub bmc_mac: Mac,
    /// The system model (`machines.system_model`).
    pub model: String,
    /// The firmware item's name, or its id when it has no name.
    pub component: String,
    /// This machine's version of the component.
    pub version: String,
    /// The most common version of the component among the model's machines.
    pub fleet_version: String,
    /// Machines of the model that report the component at the fleet version.
    pub fleet_machines: u64,
    /// Machines of the model that report the component (with a version).
    pub component_machines: u64,
}

/// Reply of `metal.inventory.drift`: machines whose firmware differs from the fleet's most
/// common version per system model and component ([`DriftRow`] says how that is decided).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirmwareDrift {
    /// Sorted by model, component, machine id and version; at most [`DRIFT_MAX_ROWS`].
    pub drift: Vec<DriftRow>,
    /// Drift rows in all: more than `drift.len()` when the reply was cut short.
    pub total: u64,
    /// Machines with an inventory.
    pub machines: u64,
    /// Of those, machines without a system model: not compared.
    pub without_model: u64,
    pub last_sequence: u64,
}
