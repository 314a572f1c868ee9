//! Reads of the projection: the query API's answers ([`metal_core::query`]) and the facts
//! boot-api matches profiles against.

use metal_core::inventory::{CpuVendor, Inventory, InventorySummary};
use metal_core::query::{
    History, MachineDetail, MachineList, MachineRow, MachineState, Provisioning, Status,
    TimelineEntry, UnknownMac, UnknownMacs,
};
use std::collections::HashMap;

use metal_core::{Mac, MachineId};
use rusqlite::{params, OptionalExtension, Row};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::apply::StoredBootSpec;
use crate::{sql, Projection, ProjectionError};

/// A machine's newest timeline entry: its type and when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastEvent {
    pub event_type: String,
    pub time: OffsetDateTime,
}

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
        profile: profile.into(),
        kernel: spec.kernel.into(),
        initrd: spec.initrd.into(),
        cmdline: spec.cmdline.into(),
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
                "SELECT m.machine_id FROM nics AS n JOIN machines AS m USING (machine_key)
                 WHERE n.mac = ?1 AND n.kind = 'host'
                 UNION
                 SELECT m.machine_id FROM nics AS n JOIN machines AS m USING (machine_key)
                 WHERE n.permanent_mac = ?1 AND n.kind = 'host'
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
                 LEFT JOIN inventories ON inventories.machine_key = machines.machine_key
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
            i64,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let columns = "machine_key, machine_id, bmc_mac, state, provision_id, profile, boot_spec,
             provisioned_at";
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
                "SELECT mac, permanent_mac FROM nics WHERE machine_key = ?1 AND kind = 'host'",
            )
            .map_err(sql("reading boot NICs"))?;
        let mut targets = Vec::with_capacity(rows.len());
        for (machine_key, machine_id, bmc_mac, state, provision_id, profile, spec, at) in rows {
            let pairs: Vec<(Option<String>, Option<String>)> = nics
                .query_map(params![machine_key], |row| Ok((row.get(0)?, row.get(1)?)))
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
            stream_last_sequence: None,
            replay: None,
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

/// Every versioned firmware item of every machine with a system model, machine by machine:
/// `machines` scanned in (integer) key order and each one's firmware by primary key, so the
/// order costs no sort. [`Projection::firmware_drift`] folds it in one pass into hash maps.
/// (GROUP BY model, component and version sorts every item first: with 100,000 machines of
/// 30 items each that took SQLite 5 to 8 s, where this scan and fold take about 1.3 s in a
/// release build; `drift_tests::drift_at_fleet_scale` measures it.)
pub(crate) const DRIFT_ITEMS: &str = "
SELECT m.machine_id, m.bmc_mac, m.system_model, COALESCE(f.name, f.firmware_id), f.version
FROM machines AS m CROSS JOIN firmware AS f ON f.machine_key = m.machine_key
WHERE m.system_model IS NOT NULL AND f.version IS NOT NULL
ORDER BY m.machine_key";

/// Strings seen while folding (models, components, versions), each stored once.
#[derive(Default)]
struct Interned {
    ids: std::collections::HashMap<Box<str>, usize>,
    texts: Vec<Box<str>>,
}

impl Interned {
    fn id(&mut self, text: &str) -> usize {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let id = self.texts.len();
        self.texts.push(text.into());
        self.ids.insert(text.into(), id);
        id
    }

    fn text(&self, id: usize) -> &str {
        self.texts.get(id).map_or("", |text| text)
    }
}

/// One component of one model: how many machines report it, and its versions.
struct DriftComponent {
    model: usize,
    name: usize,
    machines: u64,
    last_machine: Option<usize>,
    /// Indices into the versions.
    versions: Vec<usize>,
}

/// One version of one component: how many firmware items report it, and which machines.
struct DriftVersion {
    version: usize,
    items: u64,
    /// Machine indices, each once, in scan order.
    machines: Vec<usize>,
}

/// Which of two versions of one component is the fleet's: the one more firmware items
/// report, then more machines, then the greatest by [`compare_versions`], then the greatest
/// byte-wise. A total order on distinct versions, so the choice never depends on row order.
fn fleet_order(a: &DriftVersion, b: &DriftVersion, texts: &Interned) -> std::cmp::Ordering {
    let (a_text, b_text) = (texts.text(a.version), texts.text(b.version));
    a.items
        .cmp(&b.items)
        .then(a.machines.len().cmp(&b.machines.len()))
        .then_with(|| compare_versions(a_text, b_text))
        .then_with(|| a_text.as_bytes().cmp(b_text.as_bytes()))
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

/// Column `index` of a [`DRIFT_ITEMS`] row as text.
fn drift_text<'r>(row: &'r Row<'_>, index: usize) -> Result<&'r str, ProjectionError> {
    row.get_ref(index)
        .map_err(sql("reading firmware items"))?
        .as_str()
        .map_err(|e| ProjectionError::Corrupt(format!("firmware item column {index}: {e}")))
}

impl Projection {
    /// Machines whose firmware differs from the most common version per system model and
    /// component (see [`metal_core::query::DriftRow`] for the rules), at most
    /// [`metal_core::query::DRIFT_MAX_ROWS`] rows.
    pub fn firmware_drift(&self) -> Result<metal_core::query::FirmwareDrift, ProjectionError> {
        self.firmware_drift_at_most(metal_core::query::DRIFT_MAX_ROWS)
    }

    /// [`Projection::firmware_drift`] with at most `limit` rows. One scan of the firmware
    /// items ([`DRIFT_ITEMS`]) folded into hash maps (no sort of the items), then a sort of
    /// the drifting rows only; plus one count of the machines with an inventory.
    pub(crate) fn firmware_drift_at_most(
        &self,
        limit: usize,
    ) -> Result<metal_core::query::FirmwareDrift, ProjectionError> {
        use metal_core::query::{DriftRow, FirmwareDrift};
        use std::collections::HashMap;

        let (machines, without_model): (i64, i64) = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(m.system_model IS NULL), 0)
                 FROM inventories AS i JOIN machines AS m ON m.machine_key = i.machine_key",
            )
            .and_then(|mut statement| statement.query_row([], |row| row.try_into()))
            .map_err(sql("counting machines with an inventory"))?;

        // Machine id and BMC MAC (as stored) per machine index, in scan order.
        let mut seen: Vec<(String, String)> = Vec::new();
        let mut texts = Interned::default();
        let mut components: Vec<DriftComponent> = Vec::new();
        let mut component_ids: HashMap<(usize, usize), usize> = HashMap::new();
        let mut versions: Vec<DriftVersion> = Vec::new();
        let mut version_ids: HashMap<(usize, usize), usize> = HashMap::new();
        {
            let mut statement = self
                .conn
                .prepare_cached(DRIFT_ITEMS)
                .map_err(sql("reading firmware items"))?;
            let mut rows = statement.query([]).map_err(sql("reading firmware items"))?;
            let mut model = 0;
            while let Some(row) = rows.next().map_err(sql("reading firmware items"))? {
                let machine_id = drift_text(row, 0)?;
                if seen.last().is_none_or(|(id, _)| id != machine_id) {
                    seen.push((machine_id.to_string(), drift_text(row, 1)?.to_string()));
                    model = texts.id(drift_text(row, 2)?);
                }
                let machine = seen.len() - 1;
                let name = texts.id(drift_text(row, 3)?);
                let version = texts.id(drift_text(row, 4)?);
                let component = *component_ids.entry((model, name)).or_insert_with(|| {
                    components.push(DriftComponent {
                        model,
                        name,
                        machines: 0,
                        last_machine: None,
                        versions: Vec::new(),
                    });
                    components.len() - 1
                });
                let Some(counted) = components.get_mut(component) else {
                    continue;
                };
                if counted.last_machine != Some(machine) {
                    counted.machines += 1;
                    counted.last_machine = Some(machine);
                }
                // A component has a version or two: looking through them beats hashing.
                let known = if counted.versions.len() <= 8 {
                    counted
                        .versions
                        .iter()
                        .copied()
                        .find(|&at| versions.get(at).is_some_and(|v| v.version == version))
                } else {
                    version_ids.get(&(component, version)).copied()
                };
                let at = known.unwrap_or_else(|| {
                    versions.push(DriftVersion {
                        version,
                        items: 0,
                        machines: Vec::new(),
                    });
                    let at = versions.len() - 1;
                    counted.versions.push(at);
                    version_ids.insert((component, version), at);
                    at
                });
                let Some(tally) = versions.get_mut(at) else {
                    continue;
                };
                tally.items += 1;
                if tally.machines.last() != Some(&machine) {
                    tally.machines.push(machine);
                }
            }
        }

        // Every version of a component other than its fleet version, once per machine.
        struct Drifting<'a> {
            model: &'a str,
            component: &'a str,
            machine: &'a (String, String),
            version: &'a str,
            fleet: &'a DriftVersion,
            component_machines: u64,
        }
        let mut drifting: Vec<Drifting<'_>> = Vec::new();
        for component in components.iter() {
            if component.machines < 2 || component.versions.len() < 2 {
                continue;
            }
            let tallies: Vec<&DriftVersion> = component
                .versions
                .iter()
                .filter_map(|&at| versions.get(at))
                .collect();
            let Some(fleet) = tallies
                .iter()
                .copied()
                .max_by(|a, b| fleet_order(a, b, &texts))
            else {
                continue;
            };
            for other in tallies
                .iter()
                .filter(|tally| tally.version != fleet.version)
            {
                for machine in other.machines.iter().filter_map(|&m| seen.get(m)) {
                    drifting.push(Drifting {
                        model: texts.text(component.model),
                        component: texts.text(component.name),
                        machine,
                        version: texts.text(other.version),
                        fleet,
                        component_machines: component.machines,
                    });
                }
            }
        }
        let total = drifting.len() as u64;

        // By model, component, machine id and version, byte-wise (SQLite's BINARY collation);
        // past the limit, only the rows kept are sorted.
        let order = |a: &Drifting<'_>, b: &Drifting<'_>| {
            (a.model, a.component, a.machine.0.as_str(), a.version).cmp(&(
                b.model,
                b.component,
                b.machine.0.as_str(),
                b.version,
            ))
        };
        if drifting.len() > limit {
            drifting.select_nth_unstable_by(limit, order);
            drifting.truncate(limit);
        }
        drifting.sort_unstable_by(order);

        let drift = drifting
            .iter()
            .map(|row| {
                Ok(DriftRow {
                    machine_id: parse_machine_id(&row.machine.0)?,
                    bmc_mac: parse_mac(&row.machine.1)?,
                    model: row.model.to_string(),
                    component: row.component.to_string(),
                    version: row.version.to_string(),
                    fleet_version: texts.text(row.fleet.version).to_string(),
                    fleet_machines: row.fleet.machines.len() as u64,
                    component_machines: row.component_machines,
                })
            })
            .collect::<Result<Vec<_>, ProjectionError>>()?;
        Ok(FirmwareDrift {
            drift,
            total,
            machines: machines.max(0) as u64,
            without_model: without_model.max(0) as u64,
            last_sequence: self.last_sequence()?,
        })
    }
}

// Periodic rescans (validator): every machine whose BMC has an address, with its BMC's
// health and its last inventory, in one pass.

/// A machine the validator may rescan: everything its periodic plan looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct RescanCandidate {
    pub machine_id: MachineId,
    pub bmc_mac: Mac,
    pub state: MachineState,
    pub redfish_url: String,
    /// The last scrape's outcome, answered or not (event time).
    pub last_tried: Option<OffsetDateTime>,
    /// The last scrape the BMC answered.
    pub last_seen: Option<OffsetDateTime>,
    /// The first scrape the BMC did not answer since it last did.
    pub failing_since: Option<OffsetDateTime>,
    /// The last failure, if the last scrape failed.
    pub last_error: Option<String>,
    /// `machine.bmc.lost` was the last word on the BMC.
    pub lost: bool,
    /// The machine's last `machine.hardware.scraped`, for the rescan to compare with.
    pub inventory: Option<metal_core::events::InventoryRef>,
}

/// The columns [`Projection::rescan_candidates`] reads; the inventory event is joined the
/// way [`Projection::machine`] joins it.
const RESCAN_CANDIDATES: &str = "
SELECT m.machine_id, m.bmc_mac, m.state, m.redfish_url, m.bmc_last_tried, m.bmc_last_seen,
       m.bmc_failing_since, m.bmc_last_error, m.bmc_lost, e.sequence, e.event_id
FROM machines AS m
    LEFT JOIN events AS e ON e.event_id = m.inventory_event_id
WHERE m.redfish_url IS NOT NULL
ORDER BY m.machine_id";

impl Projection {
    /// Every machine with a Redfish URL, ordered by machine id, with its BMC's health and
    /// last inventory: what the validator's periodic rescans plan from. One query.
    pub fn rescan_candidates(&self) -> Result<Vec<RescanCandidate>, ProjectionError> {
        type Row = (
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            bool,
            Option<i64>,
            Option<String>,
        );
        let rows: Vec<Row> = self
            .conn
            .prepare_cached(RESCAN_CANDIDATES)
            .and_then(|mut statement| statement.query_map([], |row| row.try_into())?.collect())
            .map_err(sql("listing rescan candidates"))?;
        let time = |text: Option<String>| text.as_deref().map(parse_time).transpose();
        rows.into_iter()
            .map(
                |(id, mac, state, url, tried, seen, failing, error, lost, sequence, event_id)| {
                    let inventory = match (sequence, event_id) {
                        (Some(sequence), Some(event_id)) => {
                            Some(metal_core::events::InventoryRef {
                                event_id: parse_uuid(&event_id)?,
                                sequence: sequence.max(0) as u64,
                            })
                        }
                        _ => None,
                    };
                    Ok(RescanCandidate {
                        machine_id: parse_machine_id(&id)?,
                        bmc_mac: parse_mac(&mac)?,
                        state: parse_state(&state)?,
                        redfish_url: url,
                        last_tried: time(tried)?,
                        last_seen: time(seen)?,
                        failing_since: time(failing)?,
                        last_error: error,
                        lost,
                        inventory,
                    })
                },
            )
            .collect()
    }
}

// Filtered pages of machines (web's `GET /api/v1/machines`): the filters and the page cut
// in SQL, so a page costs its rows, not the fleet.

/// What [`Projection::machines_page`] selects; every filter given must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MachinesQuery {
    pub state: Option<MachineState>,
    /// The profile of the machine's current or last provisioning (`machines.profile`).
    pub profile: Option<String>,
    /// Operator tags: key, and the value it must have (`None`: any value).
    pub tags: Vec<(String, Option<String>)>,
    /// Text already lower-cased, and the MAC it spells if it is one. Matches when the
    /// system model or a system serial number contains it (ASCII case-insensitively:
    /// SQLite's `lower`), or when a MAC of the BMC or of any NIC the inventory reports
    /// (system and manager interfaces, chassis adapter ports) equals the MAC or contains
    /// the text in its `aa:bb:cc:dd:ee:ff` form.
    pub text: Option<(String, Option<Mac>)>,
    /// Only machines after this one.
    pub after: Option<MachineId>,
    /// Most machines in the page.
    pub limit: usize,
}

/// One page of [`Projection::machines_page`].
#[derive(Debug, Clone, PartialEq)]
pub struct MachinesPage {
    /// Ordered by machine id, as [`Projection::machines`] lists them.
    pub machines: Vec<MachineRow>,
    /// More machines match after the last one.
    pub more: bool,
    pub last_sequence: u64,
}

/// The text filter of [`MachinesQuery::text`]; `?T` is the lower-cased text, `?M` the MAC
/// it spells (or NULL), `?L` the text as a LIKE pattern and `?P` the MAC's stored spelling
/// when the text spells it otherwise (or NULL). Columns first (indexed or in hand); the
/// inventory JSON is parsed only for machines whose document contains the text at all, and
/// then only its serials and MACs are compared.
const TEXT_FILTER: &str = "(
    instr(lower(m.system_model), ?T) > 0
    OR m.bmc_mac = ?M OR instr(m.bmc_mac, ?T) > 0
    OR EXISTS (SELECT 1 FROM nics AS n WHERE n.machine_key = m.machine_key
        AND (n.mac = ?M OR n.permanent_mac = ?M
             OR instr(n.mac, ?T) > 0 OR instr(n.permanent_mac, ?T) > 0))
    OR EXISTS (SELECT 1 FROM inventories AS i WHERE i.machine_key = m.machine_key
        AND (i.inventory LIKE ?L ESCAPE '\\' OR instr(i.inventory, ?P) > 0)
        AND (EXISTS (SELECT 1 FROM json_each(i.inventory, '$.systems') AS s
                 WHERE instr(lower(s.value ->> '$.serial'), ?T) > 0)
             OR EXISTS (SELECT 1 FROM json_each(i.inventory, '$.systems') AS s,
                     json_each(s.value, '$.ethernet_interfaces') AS e
                 WHERE e.value ->> '$.mac' = ?M OR e.value ->> '$.permanent_mac' = ?M
                     OR instr(e.value ->> '$.mac', ?T) > 0
                     OR instr(e.value ->> '$.permanent_mac', ?T) > 0)
             OR EXISTS (SELECT 1 FROM json_each(i.inventory, '$.managers') AS g,
                     json_each(g.value, '$.ethernet_interfaces') AS e
                 WHERE e.value ->> '$.mac' = ?M OR e.value ->> '$.permanent_mac' = ?M
                     OR instr(e.value ->> '$.mac', ?T) > 0
                     OR instr(e.value ->> '$.permanent_mac', ?T) > 0)
             OR EXISTS (SELECT 1 FROM json_each(i.inventory, '$.chassis') AS c,
                     json_each(c.value, '$.network_adapters') AS a,
                     json_each(a.value, '$.ports') AS p,
                     json_each(p.value, '$.macs') AS x
                 WHERE x.value = ?M OR instr(x.value, ?T) > 0)))
)";

/// `text` for a LIKE pattern with `\\` as its escape: its `%`, `_` and `\\` stand for
/// themselves.
fn like_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Projection {
    /// The machines matching `query` after `query.after`, at most `query.limit`, ordered
    /// by machine id: the rows [`Projection::machines`] has for them. One statement that
    /// walks `machines` in key order from the cursor and stops at `limit + 1` matches, so
    /// the first page of a large fleet reads a page of rows; a filter that few machines
    /// pass walks further (tags are primary-key lookups, the text reads each inventory
    /// document only when it contains the text).
    pub fn machines_page(&self, query: &MachinesQuery) -> Result<MachinesPage, ProjectionError> {
        use rusqlite::types::Value;
        let mut values: Vec<Value> = Vec::new();
        let mut bind = |value: Value| {
            values.push(value);
            format!("?{}", values.len())
        };
        let mut clauses: Vec<String> = Vec::new();
        if let Some(after) = query.after {
            clauses.push(format!(
                "m.machine_id > {}",
                bind(Value::Text(after.to_string()))
            ));
        }
        if let Some(state) = query.state {
            clauses.push(format!(
                "m.state = {}",
                bind(Value::Text(state.as_str().into()))
            ));
        }
        if let Some(profile) = &query.profile {
            // What [`Projection::provisioning`] needs to report a provisioning at all.
            clauses.push(format!(
                "m.profile = {} AND m.provision_id IS NOT NULL AND m.boot_spec IS NOT NULL
                 AND m.provisioned_at IS NOT NULL",
                bind(Value::Text(profile.clone()))
            ));
        }
        for (key, value) in &query.tags {
            let key = bind(Value::Text(key.clone()));
            let value = match value {
                Some(value) => format!(" AND t.value = {}", bind(Value::Text(value.clone()))),
                None => String::new(),
            };
            clauses.push(format!(
                "EXISTS (SELECT 1 FROM tags AS t WHERE t.machine_id = m.machine_id
                 AND t.key = {key}{value})"
            ));
        }
        if let Some((text, mac)) = &query.text {
            let text_value = text.as_str();
            let text = bind(Value::Text(text.clone()));
            let mac_param = bind(mac.map_or(Value::Null, |mac| Value::Text(mac.to_string())));
            // The inventory is read only when it holds the text (LIKE: ASCII
            // case-insensitive, as `lower`, without copying the document), or the MAC in its
            // stored spelling when the text spells it otherwise.
            let pattern = format!("%{}%", like_escaped(text_value));
            let like = bind(Value::Text(pattern));
            let spelt = mac
                .map(|mac| mac.to_string())
                .filter(|spelt| spelt != text_value);
            let other = bind(spelt.map_or(Value::Null, Value::Text));
            clauses.push(
                TEXT_FILTER
                    .replace("?T", &text)
                    .replace("?M", &mac_param)
                    .replace("?L", &like)
                    .replace("?P", &other),
            );
        }
        let limit = bind(Value::Integer(
            i64::try_from(query.limit.saturating_add(1)).unwrap_or(i64::MAX),
        ));
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let text = format!(
            "SELECT {MACHINE_ROW_COLUMNS} FROM machines AS m {filter}
             ORDER BY m.machine_id LIMIT {limit}"
        );
        let run = |statement: &mut rusqlite::Statement<'_>| {
            statement
                .query_map(rusqlite::params_from_iter(values), StoredMachine::from_row)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        };
        // Each combination of tag filters is a statement of its own: cache only the few
        // shapes without several tags, so searches never evict the apply statements.
        let stored = if query.tags.len() <= 1 {
            self.conn
                .prepare_cached(&text)
                .and_then(|mut statement| run(&mut statement))
        } else {
            self.conn
                .prepare(&text)
                .and_then(|mut statement| run(&mut statement))
        }
        .map_err(sql("listing a page of machines"))?;
        let more = stored.len() > query.limit;
        let machines = stored
            .iter()
            .take(query.limit)
            .map(StoredMachine::row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MachinesPage {
            machines,
            more,
            last_sequence: self.last_sequence()?,
        })
    }
}

impl Projection {
    /// Each machine's newest timeline entry, by one indexed lookup per id (meant for a page
    /// of machines, not the whole fleet); a machine without entries is absent.
    pub fn last_events(
        &self,
        ids: &[MachineId],
    ) -> Result<HashMap<MachineId, LastEvent>, ProjectionError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT type, time FROM events WHERE machine_id = ?1 \
                 ORDER BY sequence DESC LIMIT 1",
            )
            .map_err(sql("reading last events"))?;
        let mut out = HashMap::with_capacity(ids.len());
        for &machine_id in ids {
            let found: Option<(String, String)> = statement
                .query_row(params![machine_id.to_string()], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()
                .map_err(sql("reading last events"))?;
            if let Some((event_type, time)) = found {
                out.insert(
                    machine_id,
                    LastEvent {
                        event_type,
                        time: parse_time(&time)?,
                    },
                );
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "last_events_tests.rs"]
mod last_events_tests;
