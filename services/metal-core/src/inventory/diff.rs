//! What changed between two inventories of one machine, component by stable identity:
//! NICs by MAC, drives by serial (else bay, else path), CPUs by socket, DIMMs by slot,
//! PCIe devices by address, firmware by id. A swapped drive is one removed and one added.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Inventory;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// One component that appeared, disappeared or changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareChange {
    pub change: ChangeKind,
    /// `system`, `cpu`, `dimm`, `host_nic`, `drive`, `volume`, `bmc_nic`, `manager`,
    /// `firmware`, `chassis`, `network_adapter`, `pcie_device`.
    pub component: String,
    /// The stable identity, e.g. `system 1 / drive serial S3Z1NX0K`.
    pub identity: String,
    /// The fields that differ (only for `changed`).
    pub fields: Vec<FieldChange>,
    /// The component as it is now (added, changed) or was (removed).
    pub component_data: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldChange {
    pub field: String,
    pub before: Value,
    pub after: Value,
}

impl HardwareChange {
    /// In words: `drive serial S3Z1 (Samsung PM883, 960 GB) added`,
    /// `firmware BMC: version 1.0 → 1.1`.
    pub fn describe(&self) -> String {
        match self.change {
            ChangeKind::Added => format!("{} added{}", self.identity, self.detail()),
            ChangeKind::Removed => format!("{} removed{}", self.identity, self.detail()),
            ChangeKind::Changed => {
                let fields: Vec<String> = self
                    .fields
                    .iter()
                    .map(|f| format!("{} {} → {}", f.field, short(&f.before), short(&f.after)))
                    .collect();
                format!("{}: {}", self.identity, fields.join(", "))
            }
        }
    }

    fn detail(&self) -> String {
        let parts: Vec<String> = ["model", "name", "capacity_bytes", "capacity_mib", "version"]
            .iter()
            .filter_map(|key| {
                let value = self.component_data.get(*key)?;
                (!value.is_null()).then(|| format!("{key} {}", short(value)))
            })
            .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join(", "))
        }
    }
}

fn short(value: &Value) -> String {
    match value {
        Value::Null => "none".to_string(),
        Value::String(s) => s.trim().to_string(),
        other => {
            let text = other.to_string();
            if text.len() > 80 {
                format!("{}…", &text[..text.floor_char_boundary(80)])
            } else {
                text
            }
        }
    }
}

/// Every component of an inventory keyed by (component, identity). Identities that
/// collide inside one inventory (a board reporting a MAC twice) get `#2`, `#3`, in order.
fn components(
    inventory: &Inventory,
    ambiguous: &HashSet<(String, String)>,
) -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    let mut put = |component: &str, identity: String, value: Value| {
        let mut key = (component.to_string(), identity.clone());
        let mut n = 1;
        while out.contains_key(&key) {
            n += 1;
            key = (component.to_string(), format!("{identity} #{n}"));
        }
        out.insert(key, value);
    };
    for system in &inventory.systems {
        let s = format!("system {}", system.id);
        let mut summary = serde_json::to_value(system).unwrap_or(Value::Null);
        if let Some(object) = summary.as_object_mut() {
            for nested in [
                "processors",
                "memory",
                "ethernet_interfaces",
                "drives",
                "volumes",
                "simple_storage",
                "absent",
            ] {
                object.remove(nested);
            }
        }
        put("system", s.clone(), summary);
        for cpu in &system.processors {
            let id = cpu
                .socket
                .as_deref()
                .map(|socket| format!("socket {socket}"))
                .unwrap_or_else(|| format!("processor {}", cpu.id));
            put("cpu", format!("{s} / cpu {id}"), json(cpu));
        }
        for dimm in &system.memory {
            let slot = dimm.device_locator.as_deref().unwrap_or(&dimm.id);
            put("dimm", format!("{s} / dimm {slot}"), json(dimm));
        }
        for (nic, id) in system
            .ethernet_interfaces
            .iter()
            .zip(nic_identities(&system.ethernet_interfaces))
        {
            put("host_nic", format!("{s} / nic {id}"), json(nic));
        }
        let drive_ids = identities(&system.drives, |drive| {
            let usable = |candidate: String| {
                (!ambiguous.contains(&(system.id.clone(), candidate.clone()))).then_some(candidate)
            };
            vec![
                drive
                    .serial
                    .clone()
                    .and_then(|serial| usable(format!("serial {serial}"))),
                drive
                    .bay
                    .clone()
                    .and_then(|bay| usable(format!("bay {bay}"))),
                Some(format!("path {}", drive.path)),
            ]
        });
        for (drive, id) in system.drives.iter().zip(drive_ids) {
            put("drive", format!("{s} / drive {id}"), json(drive));
        }
        for volume in &system.volumes {
            put(
                "volume",
                format!("{s} / volume {}", volume.path),
                json(volume),
            );
        }
        for device in &system.simple_storage {
            let name = device.name.as_deref().unwrap_or("unnamed");
            put(
                "simple_storage_device",
                format!("{s} / {} device {name}", device.controller),
                json(device),
            );
        }
    }
    for manager in &inventory.managers {
        let m = format!("manager {}", manager.id);
        put(
            "manager",
            m.clone(),
            serde_json::json!({"model": manager.model, "firmware_version": manager.firmware_version}),
        );
        for (nic, id) in manager
            .ethernet_interfaces
            .iter()
            .zip(nic_identities(&manager.ethernet_interfaces))
        {
            put("bmc_nic", format!("{m} / nic {id}"), json(nic));
        }
    }
    for item in &inventory.firmware {
        put("firmware", format!("firmware {}", item.id), json(item));
    }
    for chassis in &inventory.chassis {
        let c = format!("chassis {}", chassis.id);
        let mut summary = serde_json::to_value(chassis).unwrap_or(Value::Null);
        if let Some(object) = summary.as_object_mut() {
            object.remove("network_adapters");
            object.remove("pcie_devices");
        }
        put("chassis", c.clone(), summary);
        for adapter in &chassis.network_adapters {
            let id = adapter
                .serial
                .as_deref()
                .filter(|s| !s.trim().is_empty())
                .map(|serial| format!("serial {serial}"))
                .unwrap_or_else(|| adapter.id.clone());
            put(
                "network_adapter",
                format!("{c} / network adapter {id}"),
                json(adapter),
            );
        }
        for device in &chassis.pcie_devices {
            let id = device
                .address
                .as_deref()
                .map(|address| format!("at {address}"))
                .unwrap_or_else(|| device.id.clone());
            put(
                "pcie_device",
                format!("{c} / pcie device {id}"),
                json(device),
            );
        }
    }
    out
}

/// The changes from `before` to `after`, sorted by component and identity.
pub fn diff(before: &Inventory, after: &Inventory) -> Vec<HardwareChange> {
    // A drive serial (or bay) two drives of one system share, before or after, identifies
    // neither on either side: otherwise adding a second drive with the same serial (sushy
    // gives every drive one) would turn the first into "removed" and "added".
    let mut ambiguous = shared_drive_keys(before);
    ambiguous.extend(shared_drive_keys(after));
    let old = components(before, &ambiguous);
    let new = components(after, &ambiguous);
    let mut changes = Vec::new();
    for ((component, identity), was) in &old {
        match new.get(&(component.clone(), identity.clone())) {
            None => changes.push(HardwareChange {
                change: ChangeKind::Removed,
                component: component.clone(),
                identity: identity.clone(),
                fields: Vec::new(),
                component_data: was.clone(),
            }),
            Some(now) if now != was => changes.push(HardwareChange {
                change: ChangeKind::Changed,
                component: component.clone(),
                identity: identity.clone(),
                fields: field_changes(was, now),
                component_data: now.clone(),
            }),
            Some(_) => {}
        }
    }
    for ((component, identity), now) in &new {
        if !old.contains_key(&(component.clone(), identity.clone())) {
            changes.push(HardwareChange {
                change: ChangeKind::Added,
                component: component.clone(),
                identity: identity.clone(),
                fields: Vec::new(),
                component_data: now.clone(),
            });
        }
    }
    changes.sort_by(|a, b| (&a.component, &a.identity).cmp(&(&b.component, &b.identity)));
    changes
}

fn field_changes(before: &Value, after: &Value) -> Vec<FieldChange> {
    let empty = serde_json::Map::new();
    let old = before.as_object().unwrap_or(&empty);
    let new = after.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| {
            let was = old.get(key).cloned().unwrap_or(Value::Null);
            let now = new.get(key).cloned().unwrap_or(Value::Null);
            (was != now).then(|| FieldChange {
                field: key.clone(),
                before: was,
                after: now,
            })
        })
        .collect()
}

/// `(system id, "serial X" | "bay Y")` that more than one drive of a system reports.
fn shared_drive_keys(inventory: &Inventory) -> HashSet<(String, String)> {
    let mut shared = HashSet::new();
    for system in &inventory.systems {
        let mut seen = HashSet::new();
        for drive in &system.drives {
            let keys = [
                drive.serial.as_ref().map(|s| format!("serial {s}")),
                drive.bay.as_ref().map(|b| format!("bay {b}")),
            ];
            for key in keys.into_iter().flatten() {
                if !seen.insert(key.clone()) {
                    shared.insert((system.id.clone(), key));
                }
            }
        }
    }
    shared
}

/// Each item's identity: the first of its candidates that no other item shares (a
/// serial every drive of a service reports alike identifies none of them), else its last
/// candidate.
fn identities<T>(items: &[T], candidates: impl Fn(&T) -> Vec<Option<String>>) -> Vec<String> {
    let all: Vec<Vec<Option<String>>> = items.iter().map(&candidates).collect();
    all.iter()
        .map(|mine| {
            let unique = mine.iter().enumerate().find_map(|(level, candidate)| {
                let candidate = candidate.as_ref().filter(|c| !c.trim().is_empty())?;
                let shared = all
                    .iter()
                    .filter(|other| other.get(level).and_then(Option::as_ref) == Some(candidate))
                    .count();
                (shared == 1).then(|| candidate.clone())
            });
            unique
                .or_else(|| mine.last().cloned().flatten())
                .unwrap_or_default()
        })
        .collect()
}

/// NICs by MAC; a MAC reported again (a VLAN of the same port) adds its interface id,
/// so the first port keeps its identity whatever happens to the others.
fn nic_identities(nics: &[super::NetworkInterface]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    nics.iter()
        .map(|nic| match nic.mac.or(nic.permanent_mac) {
            Some(mac) if seen.insert(mac) => mac.to_string(),
            Some(mac) => format!("{mac} (interface {})", nic.id),
            None => format!("interface {}", nic.id),
        })
        .collect()
}

fn json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{Drive, FirmwareItem, MemoryModule, SystemInventory};

    fn inventory() -> Inventory {
        Inventory {
            systems: vec![SystemInventory {
                id: "1".into(),
                memory: vec![
                    MemoryModule {
                        id: "DIMM1".into(),
                        device_locator: Some("A1".into()),
                        capacity_mib: Some(32768),
                        ..Default::default()
                    },
                    MemoryModule {
                        id: "DIMM2".into(),
                        device_locator: Some("A2".into()),
                        capacity_mib: Some(32768),
                        ..Default::default()
                    },
                ],
                drives: vec![Drive {
                    path: "/redfish/v1/Systems/1/Storage/1/Drives/0".into(),
                    serial: Some("SN-OLD".into()),
                    model: Some("Disk".into()),
                    bay: Some("1".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            firmware: vec![FirmwareItem {
                id: "BMC".into(),
                name: Some("BMC".into()),
                version: Some("1.0".into()),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn same_inventory_no_changes() {
        assert!(diff(&inventory(), &inventory()).is_empty());
    }

    #[test]
    fn dimm_removed_drive_swapped_firmware_changed() {
        let before = inventory();
        let mut after = inventory();
        after.systems[0].memory.pop();
        after.systems[0].drives[0].serial = Some("SN-NEW".into());
        after.firmware[0].version = Some("1.1".into());
        let changes = diff(&before, &after);
        let words: Vec<String> = changes.iter().map(HardwareChange::describe).collect();
        assert_eq!(
            words,
            vec![
                "system 1 / dimm A2 removed (capacity_mib 32768)",
                "system 1 / drive serial SN-NEW added (model Disk)",
                "system 1 / drive serial SN-OLD removed (model Disk)",
                "firmware BMC: version 1.0 → 1.1",
            ]
        );
    }

    #[test]
    fn repeated_macs_stay_apart() {
        let mac = crate::Mac::parse_any("aa:bb:cc:dd:ee:01").unwrap();
        let nic = |id: &str| crate::inventory::NetworkInterface {
            id: id.into(),
            mac: Some(mac),
            ..Default::default()
        };
        let mut before = inventory();
        before.systems[0].ethernet_interfaces = vec![nic("1"), nic("VLAN1")];
        let mut after = before.clone();
        after.systems[0].ethernet_interfaces.pop();
        let changes = diff(&before, &after);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(
            changes[0].describe(),
            "system 1 / nic aa:bb:cc:dd:ee:01 (interface VLAN1) removed"
        );
    }

    #[test]
    fn drives_with_one_serial_for_all_are_told_apart_by_path() {
        let drive = |id: &str| Drive {
            path: format!("/redfish/v1/Systems/1/Storage/1/Drives/{id}"),
            serial: Some("1234570".into()),
            ..Default::default()
        };
        let mut before = inventory();
        before.systems[0].drives = vec![drive("d1")];
        let mut after = before.clone();
        after.systems[0].drives.push(drive("d2"));
        let changes = diff(&before, &after);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(
            changes[0].describe(),
            "system 1 / drive path /redfish/v1/Systems/1/Storage/1/Drives/d2 added"
        );
    }
}
