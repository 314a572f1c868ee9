//! A scraped inventory's NIC, CPU, memory, drive and firmware rows: worked out from the
//! inventory alone (on replay's decoding threads, ahead of the writer), then written.

use metal_core::inventory::{Inventory, NetworkInterface};
use rusqlite::{params, Transaction};

use super::vendor_name;
use crate::{sql, ProjectionError};

/// Every hardware row of one inventory, each value ready to bind.
#[derive(Debug, Default, PartialEq)]
pub(super) struct HardwareRows {
    nics: Vec<NicRow>,
    processors: Vec<ProcessorRow>,
    memory: Vec<MemoryRow>,
    drives: Vec<DriveRow>,
    firmware: Vec<FirmwareRow>,
}

#[derive(Debug, PartialEq)]
struct NicRow {
    kind: &'static str,
    interface: String,
    mac: Option<String>,
    permanent_mac: Option<String>,
}

impl NicRow {
    /// The row of `interface`, a NIC of the system or manager `owner`.
    fn of(kind: &'static str, owner: &str, interface: &NetworkInterface) -> NicRow {
        NicRow {
            kind,
            interface: format!("{owner}/{}", interface.id),
            mac: interface.mac.map(|m| m.to_string()),
            permanent_mac: interface.permanent_mac.map(|m| m.to_string()),
        }
    }
}

#[derive(Debug, PartialEq)]
struct ProcessorRow {
    system_id: String,
    processor_id: String,
    socket: Option<String>,
    processor_type: Option<String>,
    state: Option<String>,
    manufacturer: Option<String>,
    model: Option<String>,
    vendor: &'static str,
    total_cores: Option<i64>,
    total_threads: Option<i64>,
}

#[derive(Debug, PartialEq)]
struct MemoryRow {
    system_id: String,
    module_id: String,
    state: Option<String>,
    capacity_mib: Option<i64>,
    device_locator: Option<String>,
}

#[derive(Debug, PartialEq)]
struct DriveRow {
    system_id: String,
    path: String,
    serial: Option<String>,
    model: Option<String>,
    capacity_bytes: Option<i64>,
    media_type: Option<String>,
    protocol: Option<String>,
}

#[derive(Debug, PartialEq)]
struct FirmwareRow {
    firmware_id: String,
    name: Option<String>,
    version: Option<String>,
}

/// SQLite integers are signed: larger counts are stored as the largest.
fn int(value: Option<u64>) -> Option<i64> {
    value.map(|v| v.min(i64::MAX as u64) as i64)
}

impl HardwareRows {
    pub(super) fn of(inventory: &Inventory) -> HardwareRows {
        let mut rows = HardwareRows::default();
        for system in &inventory.systems {
            rows.nics.extend(
                system
                    .ethernet_interfaces
                    .iter()
                    .map(|interface| NicRow::of("host", &system.id, interface)),
            );
            rows.processors
                .extend(system.processors.iter().map(|processor| ProcessorRow {
                    system_id: system.id.clone(),
                    processor_id: processor.id.clone(),
                    socket: processor.socket.clone(),
                    processor_type: processor.processor_type.clone(),
                    state: processor.state.clone(),
                    manufacturer: processor.manufacturer.clone(),
                    model: processor.model.clone(),
                    vendor: vendor_name(processor.vendor()),
                    total_cores: int(processor.total_cores),
                    total_threads: int(processor.total_threads),
                }));
            rows.memory
                .extend(system.memory.iter().map(|module| MemoryRow {
                    system_id: system.id.clone(),
                    module_id: module.id.clone(),
                    state: module.state.clone(),
                    capacity_mib: int(module.capacity_mib),
                    device_locator: module.device_locator.clone(),
                }));
            rows.drives
                .extend(system.drives.iter().map(|disk| DriveRow {
                    system_id: system.id.clone(),
                    path: disk.path.clone(),
                    serial: disk.serial.clone(),
                    model: disk.model.clone(),
                    capacity_bytes: int(disk.capacity_bytes),
                    media_type: disk.media_type.clone(),
                    protocol: disk.protocol.clone(),
                }));
        }
        for manager in &inventory.managers {
            rows.nics.extend(
                manager
                    .ethernet_interfaces
                    .iter()
                    .map(|interface| NicRow::of("bmc", &manager.id, interface)),
            );
        }
        rows.firmware
            .extend(inventory.firmware.iter().map(|item| FirmwareRow {
                firmware_id: item.id.clone(),
                name: item.name.clone(),
                version: item.version.clone(),
            }));
        rows
    }

    /// Replaces the machine's rows with these. Duplicate keys inside one inventory keep
    /// the last entry, never fail. A machine never `inventoried` before has no rows to
    /// delete (they are only written with its inventory): a rebuild, where every machine's
    /// first inventory comes, skips five lookups.
    pub(super) fn replace(
        &self,
        tx: &Transaction<'_>,
        machine_key: i64,
        inventoried: bool,
    ) -> Result<(), ProjectionError> {
        let deletes = if inventoried {
            &[
                "DELETE FROM nics WHERE machine_key = ?1",
                "DELETE FROM processors WHERE machine_key = ?1",
                "DELETE FROM memory WHERE machine_key = ?1",
                "DELETE FROM drives WHERE machine_key = ?1",
                "DELETE FROM firmware WHERE machine_key = ?1",
            ][..]
        } else {
            &[]
        };
        for delete in deletes {
            tx.prepare_cached(delete)
                .and_then(|mut statement| statement.execute(params![machine_key]))
                .map_err(sql("clearing hardware rows"))?;
        }
        let prepare = |statement: &str| {
            tx.prepare_cached(statement)
                .map_err(sql("preparing a hardware row insert"))
        };
        let mut insert = prepare(
            "INSERT OR REPLACE INTO nics (machine_key, kind, interface, mac, permanent_mac)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for nic in &self.nics {
            insert
                .execute(params![
                    machine_key,
                    nic.kind,
                    nic.interface,
                    nic.mac,
                    nic.permanent_mac
                ])
                .map_err(sql("inserting NIC"))?;
        }
        let mut insert = prepare(
            "INSERT OR REPLACE INTO processors (machine_key, system_id, processor_id, socket,
                 processor_type, state, manufacturer, model, vendor, total_cores, total_threads)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        for cpu in &self.processors {
            insert
                .execute(params![
                    machine_key,
                    cpu.system_id,
                    cpu.processor_id,
                    cpu.socket,
                    cpu.processor_type,
                    cpu.state,
                    cpu.manufacturer,
                    cpu.model,
                    cpu.vendor,
                    cpu.total_cores,
                    cpu.total_threads,
                ])
                .map_err(sql("inserting processor"))?;
        }
        let mut insert = prepare(
            "INSERT OR REPLACE INTO memory (machine_key, system_id, module_id, state, capacity_mib,
                 device_locator)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for module in &self.memory {
            insert
                .execute(params![
                    machine_key,
                    module.system_id,
                    module.module_id,
                    module.state,
                    module.capacity_mib,
                    module.device_locator,
                ])
                .map_err(sql("inserting memory module"))?;
        }
        let mut insert = prepare(
            "INSERT OR REPLACE INTO drives (machine_key, system_id, path, serial, model,
                 capacity_bytes, media_type, protocol)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for drive in &self.drives {
            insert
                .execute(params![
                    machine_key,
                    drive.system_id,
                    drive.path,
                    drive.serial,
                    drive.model,
                    drive.capacity_bytes,
                    drive.media_type,
                    drive.protocol,
                ])
                .map_err(sql("inserting drive"))?;
        }
        let mut insert = prepare(
            "INSERT OR REPLACE INTO firmware (machine_key, firmware_id, name, version)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for item in &self.firmware {
            insert
                .execute(params![
                    machine_key,
                    item.firmware_id,
                    item.name,
                    item.version
                ])
                .map_err(sql("inserting firmware"))?;
        }
        Ok(())
    }
}
