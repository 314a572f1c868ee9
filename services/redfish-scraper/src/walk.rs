//! The inventory walk: from the service root, follow `@odata.id` links as written and fill
//! an [`Inventory`]. Nothing here knows a vendor path; a missing link or a 404 is recorded in
//! `absent` and never fails the walk.
//!
//! Values are read leniently: numbers may come as strings ("4"), floats or `null`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::{StreamExt, TryStreamExt};
use metal_core::inventory::{
    Drive, FirmwareItem, Inventory, ManagerInventory, MemoryModule, NetworkInterface, Processor,
    ServiceInfo, SimpleStorageDevice, SystemInventory,
};
use metal_core::Mac;
use serde_json::Value;

use crate::error::RedfishError;
use crate::source::{normalise_path, RedfishSource};

/// The Redfish service root every walk starts at.
pub const SERVICE_ROOT: &str = "/redfish/v1";

/// Bounds of one walk.
#[derive(Debug, Clone, Copy)]
pub struct WalkLimits {
    /// Most resources fetched in one walk; more is [`RedfishError::TooManyResources`].
    pub max_resources: usize,
    /// Members of one collection fetched at once.
    pub concurrency: usize,
}

impl Default for WalkLimits {
    fn default() -> Self {
        WalkLimits {
            max_resources: 2000,
            concurrency: 4,
        }
    }
}

/// Walks the whole inventory of one Redfish service.
pub async fn walk<S: RedfishSource>(
    source: &S,
    limits: WalkLimits,
) -> Result<Inventory, RedfishError> {
    let walker = Walker {
        source,
        limits,
        fetched: AtomicUsize::new(0),
    };
    walker.inventory().await
}

/// Members fetched from a collection, and what on the way was not there.
struct Members {
    resources: Vec<(String, Value)>,
    absent: Vec<String>,
}

struct Walker<'a, S> {
    source: &'a S,
    limits: WalkLimits,
    fetched: AtomicUsize,
}

impl<S: RedfishSource> Walker<'_, S> {
    async fn fetch(&self, path: &str) -> Result<Option<Value>, RedfishError> {
        let count = self.fetched.fetch_add(1, Ordering::Relaxed) + 1;
        if count > self.limits.max_resources {
            return Err(RedfishError::TooManyResources {
                limit: self.limits.max_resources,
            });
        }
        self.source.get(path).await
    }

    /// Fetches every distinct path at once (bounded), keeping the order; `None` for a 404.
    async fn fetch_all(
        &self,
        paths: Vec<String>,
    ) -> Result<Vec<(String, Option<Value>)>, RedfishError> {
        futures::stream::iter(paths)
            .map(|path| async move {
                let doc = self.fetch(&path).await?;
                Ok::<_, RedfishError>((path, doc))
            })
            .buffered(self.limits.concurrency.max(1))
            .try_collect()
            .await
    }

    /// Follows `doc[property]` to a collection and fetches its members. A missing link or
    /// a 404 records `absent_name`; a member that answers 404 records its path.
    async fn linked_members(
        &self,
        doc: &Value,
        property: &str,
        absent_name: String,
    ) -> Result<Members, RedfishError> {
        self.members(doc, property, absent_name, false).await
    }

    /// As [`Self::linked_members`], for a collection a service may fail to render (sushy-tools
    /// answers 500 for an unconfigured Storage; real BMCs do likewise for optional parts):
    /// an HTTP error there, after the client's retries, records it as absent with the status
    /// instead of losing the whole inventory.
    async fn optional_members(
        &self,
        doc: &Value,
        property: &str,
        absent_name: String,
    ) -> Result<Members, RedfishError> {
        self.members(doc, property, absent_name, true).await
    }

    async fn members(
        &self,
        doc: &Value,
        property: &str,
        absent_name: String,
        tolerate_server_errors: bool,
    ) -> Result<Members, RedfishError> {
        let mut members = Members {
            resources: Vec::new(),
            absent: Vec::new(),
        };
        let Some(link) = link(doc, property) else {
            members.absent.push(absent_name);
            return Ok(members);
        };
        let collection = match self.fetch(&link).await {
            Ok(Some(collection)) => collection,
            Ok(None) => {
                members.absent.push(absent_name);
                return Ok(members);
            }
            Err(RedfishError::ServerError { status, .. }) if tolerate_server_errors => {
                members
                    .absent
                    .push(format!("{absent_name} (HTTP {status})"));
                return Ok(members);
            }
            Err(error) => return Err(error),
        };
        let paths = unique_links(member_links(&collection));
        for (path, doc) in self.fetch_all(paths).await? {
            match doc {
                Some(doc) => members.resources.push((path, doc)),
                None => members.absent.push(normalise_path(&path)),
            }
        }
        Ok(members)
    }

    async fn inventory(&self) -> Result<Inventory, RedfishError> {
        let Some(root) = self.fetch(SERVICE_ROOT).await? else {
            return Err(RedfishError::Protocol {
                url: SERVICE_ROOT.to_string(),
                reason: "no Redfish service root".to_string(),
            });
        };
        let mut inventory = Inventory {
            service: ServiceInfo {
                redfish_version: text(&root, "RedfishVersion"),
                vendor: text(&root, "Vendor"),
                product: text(&root, "Product"),
                uuid: text(&root, "UUID"),
            },
            ..Inventory::default()
        };
        let (systems, managers, firmware) = futures::try_join!(
            self.systems(&root),
            self.managers(&root),
            self.firmware(&root)
        )?;
        inventory.systems = systems.0;
        inventory.absent.extend(systems.1);
        inventory.managers = managers.0;
        inventory.absent.extend(managers.1);
        inventory.firmware = firmware.0;
        inventory.absent.extend(firmware.1);
        Ok(inventory)
    }

    async fn systems(
        &self,
        root: &Value,
    ) -> Result<(Vec<SystemInventory>, Vec<String>), RedfishError> {
        let members = self
            .linked_members(root, "Systems", "Systems".to_string())
            .await?;
        let mut systems = Vec::new();
        for (path, doc) in &members.resources {
            systems.push(self.system(path, doc).await?);
        }
        Ok((systems, members.absent))
    }

    async fn system(&self, path: &str, doc: &Value) -> Result<SystemInventory, RedfishError> {
        let (processors, memory, nics, drives, simple_storage) = futures::try_join!(
            self.optional_members(doc, "Processors", "Processors".to_string()),
            self.optional_members(doc, "Memory", "Memory".to_string()),
            self.optional_members(doc, "EthernetInterfaces", "EthernetInterfaces".to_string()),
            self.drives(doc),
            self.optional_members(doc, "SimpleStorage", "SimpleStorage".to_string()),
        )?;
        let mut absent = Vec::new();
        absent.extend(processors.absent);
        absent.extend(memory.absent);
        absent.extend(nics.absent);
        absent.extend(drives.1);
        absent.extend(simple_storage.absent);
        Ok(SystemInventory {
            id: resource_id(path, doc),
            manufacturer: text(doc, "Manufacturer"),
            model: text(doc, "Model"),
            serial: text(doc, "SerialNumber"),
            uuid: text(doc, "UUID"),
            bios_version: text(doc, "BiosVersion"),
            power_state: text(doc, "PowerState"),
            processors: processors
                .resources
                .iter()
                .map(|(p, d)| processor(p, d))
                .collect(),
            memory: memory
                .resources
                .iter()
                .map(|(p, d)| memory_module(p, d))
                .collect(),
            memory_summary_gib: doc
                .get("MemorySummary")
                .and_then(|summary| summary.get("TotalSystemMemoryGiB"))
                .and_then(float),
            ethernet_interfaces: nics
                .resources
                .iter()
                .map(|(p, d)| network_interface(p, d))
                .collect(),
            drives: drives.0,
            simple_storage: simple_storage
                .resources
                .iter()
                .flat_map(|(p, d)| simple_storage_devices(p, d))
                .collect(),
            absent,
        })
    }

    /// Storage → every member → its `Drives`, de-duplicated by normalised path; documents
    /// that are not `#Drive.*` are skipped.
    async fn drives(&self, system: &Value) -> Result<(Vec<Drive>, Vec<String>), RedfishError> {
        let storage = self
            .optional_members(system, "Storage", "Storage".to_string())
            .await?;
        let mut absent = storage.absent;
        let mut drive_links = Vec::new();
        for (_, controller) in &storage.resources {
            match controller.get("Drives") {
                Some(Value::Array(items)) => drive_links.extend(items.iter().filter_map(odata_id)),
                // Some services link a Drives collection instead of listing the drives.
                Some(object @ Value::Object(_)) => {
                    if let Some(collection_link) = odata_id(object) {
                        match self.fetch(&collection_link).await? {
                            Some(collection) => drive_links.extend(member_links(&collection)),
                            None => absent.push(normalise_path(&collection_link)),
                        }
                    }
                }
                _ => {}
            }
        }
        let mut drives = Vec::new();
        for (path, doc) in self.fetch_all(unique_links(drive_links)).await? {
            match doc {
                Some(doc) if is_drive(&doc) => drives.push(drive(&path, &doc)),
                Some(_) => {}
                None => absent.push(normalise_path(&path)),
            }
        }
        Ok((drives, absent))
    }

    async fn managers(
        &self,
        root: &Value,
    ) -> Result<(Vec<ManagerInventory>, Vec<String>), RedfishError> {
        let members = self
            .linked_members(root, "Managers", "Managers".to_string())
            .await?;
        let mut absent = members.absent;
        let mut managers = Vec::new();
        for (path, doc) in &members.resources {
            let nics = self
                .optional_members(
                    doc,
                    "EthernetInterfaces",
                    format!("{}/EthernetInterfaces", normalise_path(path)),
                )
                .await?;
            absent.extend(nics.absent);
            managers.push(ManagerInventory {
                id: resource_id(path, doc),
                model: text(doc, "Model"),
                firmware_version: text(doc, "FirmwareVersion"),
                ethernet_interfaces: nics
                    .resources
                    .iter()
                    .map(|(p, d)| network_interface(p, d))
                    .collect(),
            });
        }
        Ok((managers, absent))
    }

    /// UpdateService → FirmwareInventory: one item per entry of its `Members` array.
    async fn firmware(
        &self,
        root: &Value,
    ) -> Result<(Vec<FirmwareItem>, Vec<String>), RedfishError> {
        let mut absent = Vec::new();
        let Some(update_link) = link(root, "UpdateService") else {
            absent.push("UpdateService".to_string());
            return Ok((Vec::new(), absent));
        };
        let Some(update_service) = self.fetch(&update_link).await? else {
            absent.push("UpdateService".to_string());
            return Ok((Vec::new(), absent));
        };
        let Some(inventory_link) = link(&update_service, "FirmwareInventory") else {
            absent.push("FirmwareInventory".to_string());
            return Ok((Vec::new(), absent));
        };
        let Some(collection) = self.fetch(&inventory_link).await? else {
            absent.push("FirmwareInventory".to_string());
            return Ok((Vec::new(), absent));
        };
        let entries = collection
            .get("Members")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let links: Vec<Option<String>> = entries.iter().map(odata_id).collect();
        let fetched = self
            .fetch_all(unique_links(links.iter().flatten().cloned().collect()))
            .await?;
        let mut items = Vec::new();
        for entry_link in &links {
            let key = entry_link.as_deref().map(normalise_path);
            let doc = fetched
                .iter()
                .find(|(path, _)| Some(normalise_path(path)) == key)
                .and_then(|(_, doc)| doc.as_ref());
            let id_path = key.clone().unwrap_or_default();
            items.push(match doc {
                Some(doc) => FirmwareItem {
                    id: resource_id(&id_path, doc),
                    name: text(doc, "Name"),
                    version: text(doc, "Version"),
                },
                None => {
                    absent.push(id_path.clone());
                    FirmwareItem {
                        id: last_segment(&id_path),
                        name: None,
                        version: None,
                    }
                }
            });
        }
        Ok((items, absent))
    }
}

fn processor(path: &str, doc: &Value) -> Processor {
    Processor {
        id: resource_id(path, doc),
        socket: text(doc, "Socket"),
        processor_type: text(doc, "ProcessorType"),
        state: state(doc),
        manufacturer: text(doc, "Manufacturer"),
        model: text(doc, "Model"),
        total_cores: doc.get("TotalCores").and_then(unsigned),
        total_threads: doc.get("TotalThreads").and_then(unsigned),
    }
}

fn memory_module(path: &str, doc: &Value) -> MemoryModule {
    MemoryModule {
        id: resource_id(path, doc),
        state: state(doc),
        capacity_mib: doc.get("CapacityMiB").and_then(unsigned),
        device_locator: text(doc, "DeviceLocator"),
    }
}

fn network_interface(path: &str, doc: &Value) -> NetworkInterface {
    let permanent_mac = doc.get("PermanentMACAddress").and_then(usable_mac);
    // PermanentMACAddress stands in only when MACAddress is missing or null.
    let mac = match doc.get("MACAddress") {
        Some(value) if !value.is_null() => usable_mac(value),
        _ => permanent_mac,
    };
    let ipv4_addresses = doc
        .get("IPv4Addresses")
        .and_then(Value::as_array)
        .map(|addresses| {
            addresses
                .iter()
                .filter_map(|a| text(a, "Address"))
                .filter(|a| !a.is_empty())
                .collect()
        })
        .unwrap_or_default();
    NetworkInterface {
        id: resource_id(path, doc),
        mac,
        permanent_mac,
        ipv4_addresses,
    }
}

fn is_drive(doc: &Value) -> bool {
    doc.get("@odata.type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with("#Drive."))
}

fn drive(path: &str, doc: &Value) -> Drive {
    Drive {
        path: normalise_path(path),
        serial: text(doc, "SerialNumber"),
        model: text(doc, "Model"),
        capacity_bytes: doc.get("CapacityBytes").and_then(unsigned),
        media_type: text(doc, "MediaType"),
        protocol: text(doc, "Protocol"),
    }
}

fn simple_storage_devices(path: &str, doc: &Value) -> Vec<SimpleStorageDevice> {
    let controller = resource_id(path, doc);
    doc.get("Devices")
        .and_then(Value::as_array)
        .map(|devices| {
            devices
                .iter()
                .map(|device| SimpleStorageDevice {
                    controller: controller.clone(),
                    name: text(device, "Name"),
                    model: text(device, "Model"),
                    capacity_bytes: device.get("CapacityBytes").and_then(unsigned),
                    state: state(device),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A MAC a BMC reports, if it is one: not empty, parseable and not all zeros.
fn usable_mac(value: &Value) -> Option<Mac> {
    let mac = Mac::parse_any(value.as_str()?).ok()?;
    (mac.bytes() != [0; 6]).then_some(mac)
}

/// `doc[key]` as text: strings as served, numbers printed; anything else is `None`.
fn text(doc: &Value, key: &str) -> Option<String> {
    match doc.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn state(doc: &Value) -> Option<String> {
    doc.get("Status").and_then(|status| text(status, "State"))
}

/// A non-negative integer from a number, a float or a numeric string.
fn unsigned(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().and_then(float_to_u64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<u64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(float_to_u64))
        }
        _ => None,
    }
}

fn float_to_u64(f: f64) -> Option<u64> {
    (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then(|| f.round() as u64)
}

fn float(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|f: &f64| f.is_finite())
}

fn odata_id(value: &Value) -> Option<String> {
    value
        .get("@odata.id")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
}

fn link(doc: &Value, property: &str) -> Option<String> {
    doc.get(property).and_then(odata_id)
}

fn member_links(collection: &Value) -> Vec<String> {
    collection
        .get("Members")
        .and_then(Value::as_array)
        .map(|members| members.iter().filter_map(odata_id).collect())
        .unwrap_or_default()
}

/// Keeps the first link to each resource (by normalised path), in order.
fn unique_links(links: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    links
        .into_iter()
        .filter(|link| seen.insert(normalise_path(link)))
        .collect()
}

fn last_segment(path: &str) -> String {
    normalise_path(path)
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The resource's `Id`, else the last segment of its path.
fn resource_id(path: &str, doc: &Value) -> String {
    text(doc, "Id").unwrap_or_else(|| last_segment(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lenient_numbers() {
        for (value, expected) in [
            (json!(4), Some(4)),
            (json!("4"), Some(4)),
            (json!(" 16 "), Some(16)),
            (json!(8.0), Some(8)),
            (json!(null), None),
            (json!(-1), None),
            (json!("many"), None),
        ] {
            assert_eq!(unsigned(&value), expected, "value {value}");
        }
    }

    #[test]
    fn mac_choice() {
        let check = |doc: Value, expected: Option<&str>| {
            let nic = network_interface("/x/1", &doc);
            assert_eq!(
                nic.mac.map(|m| m.to_string()).as_deref(),
                expected,
                "doc {doc}"
            );
        };
        check(
            json!({"MACAddress": "AA-BB-CC-DD-EE-01"}),
            Some("aa:bb:cc:dd:ee:01"),
        );
        check(
            json!({"MACAddress": null, "PermanentMACAddress": "aabbccddee02"}),
            Some("aa:bb:cc:dd:ee:02"),
        );
        check(
            json!({"PermanentMACAddress": "aa:bb:cc:dd:ee:03"}),
            Some("aa:bb:cc:dd:ee:03"),
        );
        check(
            json!({"MACAddress": "", "PermanentMACAddress": "aa:bb:cc:dd:ee:03"}),
            None,
        );
        check(json!({"MACAddress": "00:00:00:00:00:00"}), None);
        check(json!({"MACAddress": "not a mac"}), None);
        check(json!({"MACAddress": 7}), None);
    }
}
