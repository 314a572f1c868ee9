//! Reads of the projection: the query API's answers ([`metal_core::query`]) and the facts
//! boot-api matches profiles against.

use metal_core::inventory::{CpuVendor, Inventory, InventorySummary};
use metal_core::query::{
    History, MachineDetail, MachineList, MachineRow, MachineState, Provisioning, Status,
    TimelineEntry, UnknownMac, UnknownMacs,
};
use metal_core::{Mac, MachineId};
use rusqlite::{params, OptionalExtension, Row};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::apply::StoredBootSpec;
use crate::{sql, Projection, ProjectionError};

/// What boot-api keeps in memory per machine to answer boot requests without SQLite.
#[derive(Debug, Clone, PartialEq)]
pub struct BootTarget {
    pub machine_id: MachineId,
    pub bmc_mac: Mac,
    pub state: MachineState,
    /// Host NIC MACs, current and permanent, sorted and without repeats.
    pub macs: Vec<Mac>,
    /// The current or last provisioning; boot-api serves it only while `state` is armed.
    pub provisioning: Option<Provisioning>,
}

/// What boot-api needs to know about the machine a booting NIC belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct BootFacts {
    pub machine_id: MachineId,
    pub bmc_mac: Mac,
    /// The booting host NIC.
    pub mac: Mac,
    pub state: MachineState,
    /// The vendor of the present CPUs, when they agree.
    pub cpu_vendor: Option<CpuVendor>,
    pub system_model: Option<String>,
    pub cpu_count: u64,
    pub memory_mib: u64,
    pub host_nic_count: u64,
    pub drive_count: u64,
}

/// The columns [`StoredMachine::from_row`] reads, in order; the last is the inventory JSON.
const MACHINE_COLUMNS: &str =
    "machines.machine_id, bmc_mac, bmc_ip, redfish_url, state, state_reason, correlation_id,
     system_model, cpu_count, memory_mib, host_nic_count, created_at, updated_at,
     inventories.inventory";

/// The same without the inventory (read as NULL): the list shows rows only, and each
/// inventory is kilobytes of JSON.
const MACHINE_ROW_COLUMNS: &str =
    "machine_id, bmc_mac, bmc_ip, redfish_url, state, state_reason, correlation_id,
     system_model, cpu_count, memory_mib, host_nic_count, created_at, updated_at, NULL";

/// A machine's expected spec, validation, BMC health and retirement, as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lifecycle {
    pub expected_spec: Option<String>,
    pub validation: Option<metal_core::query::Validation>,
    pub bmc_health: metal_core::query::BmcHealth,
    /// The last scrape's outcome, answered or not.
    pub bmc_last_tried: Option<OffsetDateTime>,
    /// The retirement in progress or done.
    pub retire_id: Option<Uuid>,
}

/// A machines row as stored, before its text is parsed into types.
struct StoredMachine {
    machine_id: String,
    bmc_mac: String,
    bmc_ip: Option<String>,
    redfish_url: Option<String>,
    state: String,
    state_reason: Option<String>,
    correlation_id: String,
    system_model: Option<String>,
    cpu_count: i64,
    memory_mib: i64,
    host_nic_count: i64,
    created_at: String,
    updated_at: String,
    inventory: Option<String>,
}

impl StoredMachine {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<StoredMachine> {
        Ok(StoredMachine {
            machine_id: row.get(0)?,
            bmc_mac: row.get(1)?,
            bmc_ip: row.get(2)?,
            redfish_url: row.get(3)?,
            state: row.get(4)?,
            state_reason: row.get(5)?,
            correlation_id: row.get(6)?,
            system_model: row.get(7)?,
            cpu_count: row.get(8)?,
            memory_mib: row.get(9)?,
            host_nic_count: row.get(10)?,
            created_at: row.get(11)?,
            updated_at: row.get(12)?,
            inventory: row.get(13)?,
        })
    }

    fn row(&self) -> Result<MachineRow, ProjectionError> {
        Ok(MachineRow {
            machine_id: parse_machine_id(&self.machine_id)?,
            bmc_mac: parse_mac(&self.bmc_mac)?,
            bmc_ip: self.bmc_ip.clone(),
            redfish_url: self.redfish_url.clone(),
            state: parse_state(&self.state)?,
            state_reason: self.state_reason.clone(),
            correlation_id: parse_uuid(&self.correlation_id)?,
            system_model: self.system_model.clone(),
            cpu_count: self.cpu_count.max(0) as u64,
            memory_mib: self.memory_mib.max(0) as u64,
            host_nic_count: self.host_nic_count.max(0) as u64,
            created_at: parse_time(&self.created_at)?,
            updated_at: parse_time(&self.updated_at)?,
        })
    }

    fn inventory(&self) -> Result<Option<Inventory>, ProjectionError> {
        self.inventory
            .as_deref()
            .map(|text| {
                serde_json::from_str(text).map_err(|e| {
                    ProjectionError::Corrupt(format!("inventory of {}: {e}", self.machine_id))
                })
            })
            .transpose()
    }
}

fn parse_machine_id(text: &str) -> Result<MachineId, ProjectionError> {
    parse_uuid(text).map(MachineId)
}

fn parse_uuid(text: &str) -> Result<Uuid, ProjectionError> {
    Uuid::parse_str(text).map_err(|e| ProjectionError::Corrupt(format!("uuid {text:?}: {e}")))
}

fn parse_mac(text: &str) -> Result<Mac, ProjectionError> {
    Mac::parse_any(text).map_err(|e| ProjectionError::Corrupt(format!("MAC {text:?}: {e}")))
}

fn parse_state(text: &str) -> Result<MachineState, ProjectionError> {
    MachineState::parse(text)
        .ok_or_else(|| ProjectionError::Corrupt(format!("machine state {text:?}")))
}

fn parse_time(text: &str) -> Result<OffsetDateTime, ProjectionError> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| ProjectionError::Corrupt(format!("time {text:?}: {e}")))
}

fn parse_provisioning(
    provision_id: &str,
    profile: String,
    spec: &str,
    assigned_at: &str,
) -> Result<Provisioning, ProjectionError> {
    let spec: StoredBootSpec = serde_json::from_str(spec)
        .map_err(|e| ProjectionError::Corrupt(format!("boot spec {spec:?}: {e}")))?;
    Ok(Provisioning {
        provision_id: parse_uuid(provision_id)?,
        profile,
        kernel: spec.kernel,
        initrd: spec.initrd,
        cmdline: spec.cmdline,
        assigned_at: parse_time(assigned_at)?,
        purpose: spec.purpose,
    })
}

fn parse_vendor(text: &str) -> Option<CpuVendor> {
    match text {
        "intel" => Some(CpuVendor::Intel),
        "amd" => Some(CpuVendor::Amd),
        "other" => Some(CpuVendor::Other),
        _ => None,
    }
}

impl Projection {
    /// Every machine, ordered by machine id.
    pub fn machines(&self) -> Result<MachineList, ProjectionError> {
        let mut statement = self
            .conn
            .prepare_cached(&format!(
                "SELECT {MACHINE_ROW_COLUMNS} FROM machines ORDER BY machine_id"
            ))
            .map_err(sql("listing machines"))?;
        let stored = statement
            .query_map([], StoredMachine::from_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(sql("listing machines"))?;
        let machines = stored
            .iter()
            .map(StoredMachine::row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MachineList {
            machines,
            last_sequence: self.last_sequence()?,
        })
    }

    /// Finds a machine by machine id, BMC MAC (any notation) or host NIC MAC. A host MAC
    /// that several machines report resolves to none.
    pub fn resolve(&self, reference: &str) -> Result<Option<MachineId>, ProjectionError> {
        let reference = reference.trim();
        if let Ok(uuid) = Uuid::parse_str(reference) {
            let found: Option<String> = self
                .conn
                .query_row(
                    "SELECT machine_id FROM machines WHERE machine_id = ?1",
                    params![uuid.to_string()],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql("resolving machine id"))?;
            return found.as_deref().map(parse_machine_id).transpose();
        }
        let Ok(mac) = Mac::parse_any(reference) else {
            return Err(ProjectionError::BadReference(reference.to_string()));
        };
        let by_bmc: Option<String> = self
            .conn
            .query_row(
                "SELECT machine_id FROM machines WHERE bmc_mac = ?1 ORDER BY machine_id LIMIT 1",
                params![mac.to_string()],
                |row| row.get(0),
            )
            .optional()
            .map_err(sql("resolving BMC MAC"))?;
        if let Some(id) = by_bmc {
            return parse_machine_id(&id).map(Some);
        }
        self.machine_by_host_mac(&mac)
    }

    fn machine_by_host_mac(&self, mac: &Mac) -> Result<Option<MachineId>, ProjectionError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT machine_id FROM nics WHERE mac = ?1 AND kind = 'host'
                 UNION
                 SELECT machine_id FROM nics WHERE permanent_mac = ?1 AND kind = 'host'
                 LIMIT 2",
            )
            .map_err(sql("resolving host MAC"))?;
        let ids = statement
            .query_map(params![mac.to_string()], |row| row.get::<_, String>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(sql("resolving host MAC"))?;
        match ids.as_slice() {
            [only] => parse_machine_id(only).map(Some),
            _ => Ok(None),
        }
    }

    fn stored_machine(
        &self,
        machine_id: MachineId,
    ) -> Result<Option<StoredMachine>, ProjectionError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {MACHINE_COLUMNS} FROM machines
                 LEFT JOIN inventories ON inventories.machine_id = machines.machine_id
                 WHERE machines.machine_id = ?1"
            ))
            .and_then(|mut statement| {
                statement
                    .query_row(params![machine_id.to_string()], StoredMachine::from_row)
                    .optional()
            })
            .map_err(sql("reading machine"))
    }

    /// One machine with its inventory and summary; `None` when no machine matches.
    pub fn machine(&self, reference: &str) -> Result<Option<MachineDetail>, ProjectionError> {
        let Some(machine_id) = self.resolve(reference)? else {
            return Ok(None);
        };
        let Some(stored) = self.stored_machine(machine_id)? else {
            return Ok(None);
        };
        let inventory = stored.inventory()?;
        let lifecycle = self.lifecycle(machine_id)?;
        let inventory_event: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT events.sequence, events.event_id FROM machines
                 JOIN events ON events.event_id = machines.inventory_event_id
                 WHERE machines.machine_id = ?1",
                params![machine_id.to_string()],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(sql("reading inventory event"))?;
        let inventory_event = inventory_event
            .map(|(sequence, event_id)| {
                Ok::<_, ProjectionError>(metal_core::events::InventoryRef {
                    event_id: parse_uuid(&event_id)?,
                    sequence: sequence.max(0) as u64,
                })
            })
            .transpose()?;
        Ok(Some(MachineDetail {
            machine: stored.row()?,
            summary: inventory.as_ref().map(InventorySummary::of),
            inventory,
            last_sequence: self.last_sequence()?,
            inventory_event,
            tags: self.tags(machine_id)?,
            provisioning: self.provisioning(machine_id)?,
            expected_spec: lifecycle.expected_spec,
            validation: lifecycle.validation,
            bmc_health: lifecycle.bmc_health,
        }))
    }

    /// The machine's expected spec, last validation and BMC health.
    pub fn lifecycle(&self, machine_id: MachineId) -> Result<Lifecycle, ProjectionError> {
        type Row = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            bool,
            Option<String>,
        );
        let row: Option<Row> = self
            .conn
            .prepare_cached(
                "SELECT expected_spec, validation, bmc_last_seen, bmc_last_tried,
                     bmc_failing_since, bmc_last_error, bmc_lost, retire_id
                 FROM machines WHERE machine_id = ?1",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(params![machine_id.to_string()], |row| row.try_into())
                    .optional()
            })
            .map_err(sql("reading lifecycle"))?;
        let Some((spec, validation, seen, tried, failing, error, lost, retire_id)) = row else {
            return Ok(Lifecycle::default());
        };
        let time = |text: Option<String>| text.as_deref().map(parse_time).transpose();
        Ok(Lifecycle {
            expected_spec: spec,
            validation: validation
                .map(|text| {
                    serde_json::from_str(&text).map_err(|e| {
                        ProjectionError::Corrupt(format!("validation of {machine_id}: {e}"))
                    })
                })
                .transpose()?,
            bmc_health: metal_core::query::BmcHealth {
                last_seen: time(seen)?,
                failing_since: time(failing)?,
                last_error: error,
                lost,
            },
            bmc_last_tried: time(tried)?,
            retire_id: retire_id.as_deref().map(parse_uuid).transpose()?,
        })
    }

    /// The machine's operator tags.
    pub fn tags(
        &self,
        machine_id: MachineId,
    ) -> Result<std::collections::BTreeMap<String, String>, ProjectionError> {
        self.conn
            .prepare_cached("SELECT key, value FROM tags WHERE machine_id = ?1 ORDER BY key")
            .and_then(|mut statement| {
                statement
                    .query_map(params![machine_id.to_string()], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })?
                    .collect()
            })
            .map_err(sql("reading tags"))
    }

    /// The machine's current or last provisioning.
    pub fn provisioning(
        &self,
        machine_id: MachineId,
    ) -> Result<Option<Provisioning>, ProjectionError> {
        type Row = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let row: Option<Row> = self
            .conn
            .prepare_cached(
                "SELECT provision_id, profile, boot_spec, provisioned_at FROM machines
                 WHERE machine_id = ?1",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(params![machine_id.to_string()], |row| row.try_into())
                    .optional()
            })
            .map_err(sql("reading provisioning"))?;
        match row {
            Some((Some(id), Some(profile), Some(spec), Some(at))) => {
                parse_provisioning(&id, profile, &spec, &at).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Every machine with its host NIC MACs, state and provisioning (`only`: just these).
    pub fn boot_targets(
        &self,
        only: Option<&[MachineId]>,
    ) -> Result<Vec<BootTarget>, ProjectionError> {
        type Row = (
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let columns =
            "machine_id, bmc_mac, state, provision_id, profile, boot_spec, provisioned_at";
        let rows: Vec<Row> = match only {
            None => self
                .conn
                .prepare_cached(&format!(
                    "SELECT {columns} FROM machines ORDER BY machine_id"
                ))
                .and_then(|mut statement| statement.query_map([], |row| row.try_into())?.collect()),
            Some(ids) => {
                let mut rows = Vec::with_capacity(ids.len());
                let mut statement = self
                    .conn
                    .prepare_cached(&format!(
                        "SELECT {columns} FROM machines WHERE machine_id = ?1"
                    ))
                    .map_err(sql("reading boot targets"))?;
                for id in ids {
                    if let Some(row) = statement
                        .query_row(params![id.to_string()], |row| row.try_into())
                        .optional()
                        .map_err(sql("reading boot targets"))?
                    {
                        rows.push(row);
                    }
                }
                Ok(rows)
            }
        }
        .map_err(sql("reading boot targets"))?;
        let mut nics = self
            .conn
            .prepare_cached(
                "SELECT mac, permanent_mac FROM nics WHERE machine_id = ?1 AND kind = 'host'",
            )
            .map_err(sql("reading boot NICs"))?;
        let mut targets = Vec::with_capacity(rows.len());
        for (machine_id, bmc_mac, state, provision_id, profile, spec, at) in rows {
            let pairs: Vec<(Option<String>, Option<String>)> = nics
                .query_map(params![machine_id], |row| Ok((row.get(0)?, row.get(1)?)))
                .and_then(|rows| rows.collect())
                .map_err(sql("reading boot NICs"))?;
            let mut macs = Vec::with_capacity(pairs.len() * 2);
            for text in pairs.into_iter().flat_map(|(a, b)| [a, b]).flatten() {
                macs.push(parse_mac(&text)?);
            }
            macs.sort();
            macs.dedup();
            let provisioning = match (provision_id, profile, spec, at) {
                (Some(id), Some(profile), Some(spec), Some(at)) => {
                    Some(parse_provisioning(&id, profile, &spec, &at)?)
                }
                _ => None,
            };
            targets.push(BootTarget {
                machine_id: parse_machine_id(&machine_id)?,
                bmc_mac: parse_mac(&bmc_mac)?,
                state: parse_state(&state)?,
                macs,
                provisioning,
            });
        }
        Ok(targets)
    }

    /// MACs that asked to netboot unknown and that no machine has as a host NIC now.
    pub fn unknown_macs(&self) -> Result<UnknownMacs, ProjectionError> {
        type Row = (String, String, String, i64, String);
        let rows: Vec<Row> = self
            .conn
            .prepare_cached(
                "SELECT mac, first_seen, last_seen, events, last_reason FROM unknown_macs u
                 WHERE NOT EXISTS (SELECT 1 FROM nics WHERE kind = 'host' AND mac = u.mac)
                   AND NOT EXISTS (SELECT 1 FROM nics WHERE kind = 'host' AND permanent_mac = u.mac)
                 ORDER BY last_seen DESC, mac",
            )
            .and_then(|mut statement| statement.query_map([], |row| row.try_into())?.collect())
            .map_err(sql("reading unknown MACs"))?;
        let macs = rows
            .into_iter()
            .map(|(mac, first, last, events, reason)| {
                Ok(UnknownMac {
                    mac: parse_mac(&mac)?,
                    first_seen: parse_time(&first)?,
                    last_seen: parse_time(&last)?,
                    events: events.max(0) as u64,
                    last_reason: reason,
                })
            })
            .collect::<Result<Vec<_>, ProjectionError>>()?;
        Ok(UnknownMacs {
            macs,
            last_sequence: self.last_sequence()?,
        })
    }

    /// The timeline of one machine, in stream order.
    pub fn history(&self, reference: &str) -> Result<Option<History>, ProjectionError> {
        let Some(machine_id) = self.resolve(reference)? else {
            return Ok(None);
        };
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT sequence, event_id, type, time, correlation_id, causation_id, summary
                 FROM events WHERE machine_id = ?1 ORDER BY sequence",
            )
            .map_err(sql("reading history"))?;
        type RawEntry = (i64, String, String, String, String, Option<String>, String);
        let raw: Vec<RawEntry> = statement
            .query_map(params![machine_id.to_string()], |row| row.try_into())
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(sql("reading history"))?;
        let events = raw
            .into_iter()
            .map(
                |(sequence, event_id, event_type, time, correlation_id, causation_id, summary)| {
                    Ok(TimelineEntry {
                        sequence: sequence.max(0) as u64,
                        event_id: parse_uuid(&event_id)?,
                        event_type,
                        time: parse_time(&time)?,
                        correlation_id: parse_uuid(&correlation_id)?,
                        causation_id: causation_id.as_deref().map(parse_uuid).transpose()?,
                        summary,
                    })
                },
            )
            .collect::<Result<Vec<_>, ProjectionError>>()?;
        Ok(Some(History { machine_id, events }))
    }

    /// Sequence, machine count and where the database is.
    pub fn status(&self) -> Result<Status, ProjectionError> {
        let machines: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM machines", [], |row| row.get(0))
            .map_err(sql("counting machines"))?;
        Ok(Status {
            last_sequence: self.last_sequence()?,
            machines: machines.max(0) as u64,
            database: self
                .path
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| ":memory:".to_string()),
        })
    }

    /// The machine a booting host NIC belongs to. `None` for an unknown MAC and for a MAC
    /// that more than one machine reports (never boot the wrong machine).
    pub fn boot_lookup(&self, host_mac: &Mac) -> Result<Option<BootFacts>, ProjectionError> {
        let Some(machine_id) = self.machine_by_host_mac(host_mac)? else {
            return Ok(None);
        };
        // Only the columns a profile matches on: the inventory JSON stays on disk, since
        // Pixiecore asks several times per boot and must be answered fast.
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT bmc_mac, state, cpu_vendor, system_model, cpu_count, memory_mib, \
                 host_nic_count, drive_count FROM machines WHERE machine_id = ?1",
            )
            .map_err(sql("reading boot facts"))?;
        type Row = (
            String,
            String,
            Option<String>,
            Option<String>,
            i64,
            i64,
            i64,
            i64,
        );
        let row: Option<Row> = statement
            .query_row(params![machine_id.to_string()], |row| row.try_into())
            .optional()
            .map_err(sql("reading boot facts"))?;
        let Some((bmc_mac, state, cpu_vendor, system_model, cpus, memory, nics, drives)) = row
        else {
            return Ok(None);
        };
        Ok(Some(BootFacts {
            machine_id,
            bmc_mac: parse_mac(&bmc_mac)?,
            mac: *host_mac,
            state: parse_state(&state)?,
            cpu_vendor: cpu_vendor.as_deref().and_then(parse_vendor),
            system_model,
            cpu_count: cpus.max(0) as u64,
            memory_mib: memory.max(0) as u64,
            host_nic_count: nics.max(0) as u64,
            drive_count: drives.max(0) as u64,
        }))
    }
}

// Firmware drift (`metal.inventory.drift`): machines whose firmware differs from the most
// common version among the machines of their system model.

/// Per (model, component, version) of every component whose machines disagree: how many
/// firmware items and distinct machines report that version, and how many distinct machines
/// of the model report the component at all. One pass over `machines` × `firmware`: group
/// per machine (so a machine with two items of one name and version counts once), mark each
/// machine's first row per component (to count machines, not versions), then group per
/// version and count versions and machines per component with window functions. Groups
/// with one version, or with one machine, cannot drift and are left out.
const DRIFT_TALLIES: &str = "
WITH items AS (
    SELECT m.system_model AS model, COALESCE(f.name, f.firmware_id) AS component,
           m.machine_id AS machine_id, f.version AS version, COUNT(*) AS items
    FROM machines AS m CROSS JOIN firmware AS f ON f.machine_id = m.machine_id
    WHERE m.system_model IS NOT NULL AND f.version IS NOT NULL
    GROUP BY model, component, m.machine_id, f.version
),
marked AS (
    SELECT model, component, version, items,
           ROW_NUMBER() OVER (PARTITION BY model, component, machine_id ORDER BY version) = 1
               AS first
    FROM items
),
tallies AS (
    SELECT model, component, version, SUM(items) AS items, COUNT(*) AS machines,
           SUM(first) AS firsts
    FROM marked
    GROUP BY model, component, version
),
grouped AS (
    SELECT model, component, version, items, machines,
           SUM(firsts) OVER per_component AS component_machines,
           COUNT(*) OVER per_component AS versions
    FROM tallies
    WINDOW per_component AS (PARTITION BY model, component)
)
SELECT model, component, version, items, machines, component_machines
FROM grouped
WHERE versions > 1 AND component_machines > 1
ORDER BY model, component, version";

/// The drifting rows, given the fleet version of each component that has more than one
/// (`?1`: a JSON array of `[model, component, fleet version, fleet machines, component
/// machines]`), at most `?2` of them. `machines` drives the join (scanned in key order, with
/// its firmware by primary key); the fleet versions are the innermost loop, through the
/// automatic index SQLite builds on the materialised CTE.
const DRIFT_ROWS: &str = "
WITH fleet AS MATERIALIZED (
    SELECT json_extract(value, '$[0]') AS model, json_extract(value, '$[1]') AS component,
           json_extract(value, '$[2]') AS fleet_version,
           json_extract(value, '$[3]') AS fleet_machines,
           json_extract(value, '$[4]') AS component_machines
    FROM json_each(?1)
)
SELECT DISTINCT fleet.model, fleet.component, m.machine_id, m.bmc_mac, f.version,
       fleet.fleet_version, fleet.fleet_machines, fleet.component_machines
FROM machines AS m
    CROSS JOIN firmware AS f ON f.machine_id = m.machine_id
    CROSS JOIN fleet ON fleet.model = m.system_model
        AND fleet.component = COALESCE(f.name, f.firmware_id)
WHERE f.version IS NOT NULL AND f.version <> fleet.fleet_version
ORDER BY fleet.model, fleet.component, m.machine_id, f.version
LIMIT ?2";

/// One row of [`DRIFT_TALLIES`].
#[derive(Debug, Clone, PartialEq)]
struct DriftTally {
    model: String,
    component: String,
    version: String,
    items: u64,
    machines: u64,
    component_machines: u64,
}

/// Which of two versions of one component is the fleet's: the one more firmware items
/// report, then more machines, then the greatest by [`compare_versions`], then the greatest
/// byte-wise. A total order on distinct versions, so the choice never depends on row order.
fn fleet_order(a: &DriftTally, b: &DriftTally) -> std::cmp::Ordering {
    a.items
        .cmp(&b.items)
        .then(a.machines.cmp(&b.machines))
        .then_with(|| compare_versions(&a.version, &b.version))
        .then_with(|| a.version.as_bytes().cmp(b.version.as_bytes()))
}

/// Compares two version strings numerically where both have digits: runs of ASCII digits
/// compare by value (leading zeros ignored), everything else byte by byte, and a string
/// that is a prefix of the other is the lesser. So `2.10` > `2.9`, `U30 v2.100` >
/// `U30 v2.72`, and `1.02` equals `1.2` (byte-wise order then decides).
pub(crate) fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    fn digits(text: &[u8]) -> (&[u8], &[u8]) {
        let run = text.iter().take_while(|c| c.is_ascii_digit()).count();
        let (number, rest) = text.split_at(run);
        let zeros = number.iter().take_while(|&&c| c == b'0').count();
        (&number[zeros..], rest)
    }
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.split_first(), b.split_first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some((x, _)), Some((y, _))) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let ((x, a_rest), (y, b_rest)) = (digits(a), digits(b));
                let order = x.len().cmp(&y.len()).then_with(|| x.cmp(y));
                if order != Ordering::Equal {
                    return order;
                }
                (a, b) = (a_rest, b_rest);
            }
            (Some((x, a_rest)), Some((y, b_rest))) => {
                if x != y {
                    return x.cmp(y);
                }
                (a, b) = (a_rest, b_rest);
            }
        }
    }
}

impl Projection {
    /// Machines whose firmware differs from the most common version per system model and
    /// component (see [`metal_core::query::DriftRow`] for the rules), at most
    /// [`metal_core::query::DRIFT_MAX_ROWS`] rows.
    pub fn firmware_drift(&self) -> Result<metal_core::query::FirmwareDrift, ProjectionError> {
        self.firmware_drift_at_most(metal_core::query::DRIFT_MAX_ROWS)
    }

    /// [`Projection::firmware_drift`] with at most `limit` rows.
    pub(crate) fn firmware_drift_at_most(
        &self,
        limit: usize,
    ) -> Result<metal_core::query::FirmwareDrift, ProjectionError> {
        use metal_core::query::{DriftRow, FirmwareDrift};

        let (machines, without_model): (i64, i64) = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(m.system_model IS NULL), 0)
                 FROM inventories AS i JOIN machines AS m ON m.machine_id = i.machine_id",
            )
            .and_then(|mut statement| statement.query_row([], |row| row.try_into()))
            .map_err(sql("counting machines with an inventory"))?;
        type TallyRow = (String, String, String, i64, i64, i64);
        let tallies: Vec<DriftTally> = self
            .conn
            .prepare_cached(DRIFT_TALLIES)
            .and_then(|mut statement| {
                statement
                    .query_map([], |row| row.try_into())?
                    .collect::<rusqlite::Result<Vec<TallyRow>>>()
            })
            .map_err(sql("counting firmware versions"))?
            .into_iter()
            .map(
                |(model, component, version, items, machines, component_machines)| DriftTally {
                    model,
                    component,
                    version,
                    items: items.max(0) as u64,
                    machines: machines.max(0) as u64,
                    component_machines: component_machines.max(0) as u64,
                },
            )
            .collect();

        let mut fleets = Vec::new();
        let mut total = 0u64;
        for versions in tallies.chunk_by(|a, b| a.model == b.model && a.component == b.component)
        {
            let Some(fleet) = versions.iter().max_by(|a, b| fleet_order(a, b)) else {
                continue;
            };
            total += versions
                .iter()
                .filter(|tally| tally.version != fleet.version)
                .map(|tally| tally.machines)
                .sum::<u64>();
            fleets.push(serde_json::json!([
                fleet.model,
                fleet.component,
                fleet.version,
                fleet.machines,
                fleet.component_machines,
            ]));
        }

        let mut drift = Vec::new();
        if !fleets.is_empty() && limit > 0 {
            let fleets = serde_json::Value::Array(fleets).to_string();
            type Row = (String, String, String, String, String, String, i64, i64);
            let rows: Vec<Row> = self
                .conn
                .prepare_cached(DRIFT_ROWS)
                .and_then(|mut statement| {
                    statement
                        .query_map(
                            params![fleets, i64::try_from(limit).unwrap_or(i64::MAX)],
                            |row| row.try_into(),
                        )?
                        .collect()
                })
                .map_err(sql("listing firmware drift"))?;
            drift.reserve(rows.len());
            for (model, component, machine_id, bmc_mac, version, fleet_version, fleet, all) in rows
            {
                drift.push(DriftRow {
                    machine_id: parse_machine_id(&machine_id)?,
                    bmc_mac: parse_mac(&bmc_mac)?,
                    model,
                    component,
                    version,
                    fleet_version,
                    fleet_machines: fleet.max(0) as u64,
                    component_machines: all.max(0) as u64,
                });
            }
        }
        Ok(FirmwareDrift {
            drift,
            total,
            machines: machines.max(0) as u64,
            without_model: without_model.max(0) as u64,
            last_sequence: self.last_sequence()?,
        })
    }
}
