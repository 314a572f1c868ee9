//! The inventory walk: from the service root, follow `@odata.id` links as written and fill
//! an [`Inventory`], keeping every document read so the scrape can be stored as a raw bundle.
//! Nothing here knows a vendor path; a missing link or a 404 is recorded in `absent` and
//! never fails the walk.
//!
//! Collections are read page by page (`Members@odata.nextLink`), with `$expand` when the
//! service root's `ProtocolFeaturesSupported.ExpandQuery` offers it and the plain walk as
//! the fallback; either way gives the same inventory. A resource linked again in another
//! role (a link loop) fails the walk, and so does a walk that needs more than
//! `max_resources` documents (an endless collection).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use futures::{StreamExt, TryStreamExt};
use metal_core::inventory::{
    ChassisInventory, Drive, FirmwareItem, Inventory, ManagerInventory, NetworkAdapter, PcieDevice,
    ServiceInfo, SystemInventory, Volume,
};
use serde_json::Value;

use crate::error::RedfishError;
use crate::parse::{self, link, odata_id, text};
use crate::source::{normalise_path, RedfishSource};

/// The Redfish service root every walk starts at.
pub const SERVICE_ROOT: &str = "/redfish/v1";

/// Bounds of one walk.
#[derive(Debug, Clone, Copy)]
pub struct WalkLimits {
    /// Most documents fetched in one walk (pages included); more is
    /// [`RedfishError::TooManyResources`].
    pub max_resources: usize,
    /// Members of one collection fetched at once.
    pub concurrency: usize,
    /// Use `$expand` where the service root says it works.
    pub use_expand: bool,
}

impl Default for WalkLimits {
    fn default() -> Self {
        WalkLimits {
            max_resources: 2000,
            concurrency: 4,
            use_expand: true,
        }
    }
}

/// What a walk found: the inventory, every document read (by normalised path, collections
/// with all their pages' members as plain links, expanded members under their own paths:
/// the layout of a mockup folder), and the `$expand` query the service honoured, if any.
#[derive(Debug, Clone, Default)]
pub struct Walked {
    pub inventory: Inventory,
    pub documents: BTreeMap<String, Value>,
    pub expand: Option<String>,
}

/// Walks the whole inventory of one Redfish service.
pub async fn walk<S: RedfishSource>(
    source: &S,
    limits: WalkLimits,
) -> Result<Walked, RedfishError> {
    let walker = Walker {
        source,
        limits,
        fetched: AtomicUsize::new(0),
        documents: Mutex::new(BTreeMap::new()),
        roles: Mutex::new(HashMap::new()),
        fetches: Mutex::new(HashMap::new()),
        expand: OnceLock::new(),
        expand_failed: AtomicBool::new(false),
        expand_seen: AtomicBool::new(false),
    };
    let inventory = walker.inventory().await?;
    // What the service did, not what was asked: a service that ignores `$expand` and
    // answers plain collections was walked plainly.
    let expand = if walker.expand_seen.load(Ordering::Relaxed) {
        walker.expand.get().cloned()
    } else {
        None
    };
    Ok(Walked {
        inventory,
        documents: walker.documents.into_inner().unwrap_or_default(),
        expand,
    })
}

/// A collection's members in order: `None` for a member that answered 404.
type MemberDocs = Vec<(String, Option<Value>)>;

/// Members fetched from a linked collection, and what on the way was not there.
#[derive(Default)]
struct Members {
    resources: Vec<(String, Value)>,
    absent: Vec<String>,
}

impl Members {
    /// The documents that are there, and the paths of those that answered 404.
    fn from_docs(docs: MemberDocs) -> Members {
        let mut members = Members::default();
        for (path, doc) in docs {
            match doc {
                Some(doc) => members.resources.push((path, doc)),
                None => members.absent.push(normalise_path(&path)),
            }
        }
        members
    }
}

struct Walker<'a, S> {
    source: &'a S,
    limits: WalkLimits,
    fetched: AtomicUsize,
    documents: Mutex<BTreeMap<String, Value>>,
    /// The role each normalised path was read in, to tell a shared link from a loop.
    roles: Mutex<HashMap<String, Role>>,
    /// Each resource's one fetch, shared by everyone who asks for it.
    fetches: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Option<Value>>>>>,
    /// The `$expand` query the service root offers, set once the root is read.
    expand: OnceLock<String>,
    expand_failed: AtomicBool,
    /// Whether any collection came back with its members written out.
    expand_seen: AtomicBool,
}

impl<S: RedfishSource> Walker<'_, S> {
    /// Fetches `path` as written, counting it against the resource cap.
    async fn fetch_raw(&self, path: &str) -> Result<Option<Value>, RedfishError> {
        let count = self.fetched.fetch_add(1, Ordering::Relaxed) + 1;
        if count > self.limits.max_resources {
            return Err(RedfishError::TooManyResources {
                limit: self.limits.max_resources,
                at: normalise_path(path),
            });
        }
        self.source.get(path).await
    }

    /// Claims `path` for `role`: `Ok(true)` the first time, `Ok(false)` when it was already
    /// read in the same role (a shared link), a link-loop error for another role.
    fn claim(&self, path: &str, role: impl Into<Role>) -> Result<bool, RedfishError> {
        let role = role.into();
        let key = normalise_path(path);
        let mut roles = self.roles.lock().unwrap_or_else(|e| e.into_inner());
        match roles.get(&key) {
            None => {
                roles.insert(key, role);
                Ok(true)
            }
            Some(previous) if *previous == role => Ok(false),
            Some(previous) => Err(RedfishError::Protocol {
                url: key,
                reason: format!("link loop: linked as {role} but already read as {previous}"),
            }),
        }
    }

    fn record(&self, path: &str, doc: &Value) {
        self.documents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(normalise_path(path), doc.clone());
    }

    fn recorded(&self, path: &str) -> Option<Value> {
        self.documents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&normalise_path(path))
            .cloned()
    }

    /// Fetches one resource in `role`, once per walk, and records it.
    async fn resource(
        &self,
        path: &str,
        role: &'static str,
    ) -> Result<Option<Value>, RedfishError> {
        if !self.claim(path, role)? {
            if let Some(doc) = self.recorded(path) {
                return Ok(Some(doc));
            }
        }
        // One fetch per path: a caller that comes while another fetches waits for its answer.
        let once = self
            .fetches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(normalise_path(path))
            .or_default()
            .clone();
        let doc = once
            .get_or_try_init(|| async {
                let doc = self.fetch_raw(path).await?;
                if let Some(doc) = &doc {
                    self.record(path, doc);
                }
                Ok::<_, RedfishError>(doc)
            })
            .await?;
        Ok(doc.clone())
    }

    fn expand_query(&self) -> Option<String> {
        if self.expand_failed.load(Ordering::Relaxed) {
            return None;
        }
        self.expand.get().cloned()
    }

    /// The first page of a collection: expanded when the service offers it; a failed
    /// expanded read turns `$expand` off for the rest of the walk and reads plainly.
    async fn first_page(&self, path: &str) -> Result<Option<Value>, RedfishError> {
        if let Some(query) = self.expand_query() {
            let separator = if path.contains('?') { '&' } else { '?' };
            match self
                .fetch_raw(&format!("{path}{separator}$expand={query}"))
                .await
            {
                Ok(page) => return Ok(page),
                Err(
                    error @ (RedfishError::TooManyResources { .. }
                    | RedfishError::Auth { .. }
                    | RedfishError::Deadline { .. }),
                ) => return Err(error),
                Err(error) => {
                    tracing::debug!(path, error = %metal_core::error_chain(&error), "$expand refused, walking plainly");
                    self.expand_failed.store(true, Ordering::Relaxed);
                }
            }
        }
        self.fetch_raw(path).await
    }

    /// Reads every page of a collection (the first one expanded when `expand` and the service
    /// offers it): the first page and all member entries. `Ok(None)` when it is not there.
    async fn read_pages(
        &self,
        path: &str,
        expand: bool,
    ) -> Result<Option<(Value, Vec<Value>)>, RedfishError> {
        let first = if expand {
            self.first_page(path).await?
        } else {
            self.fetch_raw(path).await?
        };
        let Some(first) = first else {
            return Ok(None);
        };
        let mut entries: Vec<Value> = member_entries(&first);
        let mut seen_pages = HashSet::from([normalise_page(path)]);
        let mut next = text(&first, "Members@odata.nextLink");
        while let Some(page_link) = next.take() {
            if !seen_pages.insert(normalise_page(&page_link)) {
                return Err(RedfishError::Protocol {
                    url: normalise_path(path),
                    reason: format!("collection pages loop back to {page_link}"),
                });
            }
            let Some(page) = self.fetch_raw(&page_link).await? else {
                break;
            };
            entries.extend(member_entries(&page));
            next = text(&page, "Members@odata.nextLink");
        }
        Ok(Some((first, entries)))
    }

    /// Reads a whole collection: every page, then every member (inline when expanded).
    /// `Ok(None)` when the collection itself is not there.
    async fn collection(
        &self,
        path: &str,
        role: &'static str,
    ) -> Result<Option<MemberDocs>, RedfishError> {
        if !self.claim(path, Role::CollectionOf(role))? {
            // Linked twice as a collection (two systems sharing one): read once, and
            // answered from what the first read recorded.
            let members = self
                .recorded(path)
                .map(|doc| member_entries(&doc))
                .unwrap_or_default()
                .iter()
                .filter_map(odata_id)
                .map(|member| {
                    let doc = self.recorded(&member);
                    (member, doc)
                })
                .collect();
            return Ok(Some(members));
        }
        let Some((mut first, mut entries)) = self.read_pages(path, true).await? else {
            return Ok(None);
        };
        if expanded_ids_collide(&entries) {
            // Two expanded members claim one `@odata.id` (the DMTF emulator's DIMM3 says it
            // is DIMM2): only the collection's own links tell them apart, so read it plainly.
            match self.read_pages(path, false).await? {
                Some((plain, plain_entries)) => (first, entries) = (plain, plain_entries),
                None => return Ok(None),
            }
        }
        let mut merged = first;
        let mut links = Vec::new();
        let mut to_fetch = Vec::new();
        let mut inline: HashMap<String, Value> = HashMap::new();
        let mut seen = HashSet::new();
        for entry in &entries {
            let Some(member) = odata_id(entry) else {
                continue;
            };
            if !seen.insert(normalise_path(&member)) {
                continue;
            }
            links.push(serde_json::json!({ "@odata.id": member }));
            if is_expanded(entry) {
                self.expand_seen.store(true, Ordering::Relaxed);
                if self.claim(&member, role)? {
                    self.record(&member, entry);
                }
                inline.insert(member.clone(), entry.clone());
            } else {
                to_fetch.push(member.clone());
            }
        }
        if let Some(object) = merged.as_object_mut() {
            object.remove("Members@odata.nextLink");
            object.insert("Members@odata.count".to_string(), links.len().into());
            object.insert("Members".to_string(), Value::Array(links.clone()));
        }
        self.record(path, &merged);
        let fetched: HashMap<String, Option<Value>> =
            self.fetch_all(to_fetch, role).await?.into_iter().collect();
        let mut members = Vec::with_capacity(links.len());
        for member in links.iter().filter_map(odata_id) {
            let doc = inline
                .remove(&member)
                .or_else(|| fetched.get(&member).cloned().flatten());
            members.push((member, doc));
        }
        Ok(Some(members))
    }

    /// Fetches every path in `role` at once (bounded), keeping the order; `None` for a 404.
    async fn fetch_all(
        &self,
        paths: Vec<String>,
        role: &'static str,
    ) -> Result<Vec<(String, Option<Value>)>, RedfishError> {
        futures::stream::iter(paths)
            .map(|path| async move {
                let doc = self.resource(&path, role).await?;
                Ok::<_, RedfishError>((path, doc))
            })
            .buffered(self.limits.concurrency.max(1))
            .try_collect()
            .await
    }

    /// Follows `doc[property]` to a collection and reads its members in `role`. A missing
    /// link or a 404 records `absent_name`; a member that answers 404 records its path. A
    /// collection a service fails to render (sushy-tools answers 500 for an unconfigured
    /// Storage; real BMCs do likewise for optional parts) is absent with its status, after
    /// the client's retries, instead of losing the whole inventory.
    async fn members(
        &self,
        doc: &Value,
        property: &str,
        role: &'static str,
        absent_name: String,
    ) -> Result<Members, RedfishError> {
        self.members_of(doc, property, role, absent_name, true)
            .await
    }

    /// [`Self::members`], with `optional: false` for a collection the inventory cannot do
    /// without (Systems): a server error there fails the walk.
    async fn members_of(
        &self,
        doc: &Value,
        property: &str,
        role: &'static str,
        absent_name: String,
        optional: bool,
    ) -> Result<Members, RedfishError> {
        let absent = |name: String| Members {
            absent: vec![name],
            ..Members::default()
        };
        let Some(collection_link) = link(doc, property) else {
            return Ok(absent(absent_name));
        };
        match self.collection(&collection_link, role).await {
            Ok(Some(docs)) => Ok(Members::from_docs(docs)),
            Ok(None) => Ok(absent(absent_name)),
            Err(RedfishError::ServerError { status, .. }) if optional => {
                Ok(absent(format!("{absent_name} (HTTP {status})")))
            }
            Err(error) => Err(error),
        }
    }

    /// Reads resources listed as an array of links (`doc[property]` = `[{"@odata.id"}]`).
    async fn linked_array(
        &self,
        doc: &Value,
        property: &str,
        role: &'static str,
    ) -> Result<Members, RedfishError> {
        let links: Vec<String> = doc
            .get(property)
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(odata_id).collect())
            .unwrap_or_default();
        Ok(Members::from_docs(
            self.fetch_all(unique_links(links), role).await?,
        ))
    }

    async fn inventory(&self) -> Result<Inventory, RedfishError> {
        let Some(root) = self.resource(SERVICE_ROOT, "the service root").await? else {
            return Err(RedfishError::Protocol {
                url: SERVICE_ROOT.to_string(),
                reason: "no Redfish service root".to_string(),
            });
        };
        if let Some(query) = expand_query_for(&root).filter(|_| self.limits.use_expand) {
            let _ = self.expand.set(query);
        }
        let mut inventory = Inventory {
            service: ServiceInfo {
                redfish_version: text(&root, "RedfishVersion"),
                vendor: text(&root, "Vendor"),
                product: text(&root, "Product"),
                uuid: text(&root, "UUID"),
            },
            ..Inventory::default()
        };
        let (systems, managers, firmware, chassis) = futures::try_join!(
            self.systems(&root),
            self.managers(&root),
            self.firmware(&root),
            self.chassis(&root),
        )?;
        inventory.systems = systems.0;
        inventory.absent.extend(systems.1);
        inventory.managers = managers.0;
        inventory.absent.extend(managers.1);
        inventory.firmware = firmware.0;
        inventory.absent.extend(firmware.1);
        inventory.chassis = chassis.0;
        inventory.absent.extend(chassis.1);
        Ok(inventory)
    }

    async fn systems(
        &self,
        root: &Value,
    ) -> Result<(Vec<SystemInventory>, Vec<String>), RedfishError> {
        let members = self
            .members_of(
                root,
                "Systems",
                "a ComputerSystem",
                "Systems".to_string(),
                false,
            )
            .await?;
        let systems = futures::stream::iter(&members.resources)
            .then(|(path, doc)| self.system(path, doc))
            .try_collect()
            .await?;
        Ok((systems, members.absent))
    }

    async fn system(&self, path: &str, doc: &Value) -> Result<SystemInventory, RedfishError> {
        let boot = doc.get("Boot").cloned().unwrap_or(Value::Null);
        let (processors, memory, nics, storage, simple_storage, boot_options) = futures::try_join!(
            self.members(doc, "Processors", "a Processor", "Processors".to_string()),
            self.members(doc, "Memory", "a Memory module", "Memory".to_string()),
            self.members(
                doc,
                "EthernetInterfaces",
                "an EthernetInterface",
                "EthernetInterfaces".to_string()
            ),
            self.storage(doc),
            self.members(
                doc,
                "SimpleStorage",
                "a SimpleStorage",
                "SimpleStorage".to_string()
            ),
            self.boot_options(&boot),
        )?;
        let mut absent = Vec::new();
        absent.extend(processors.absent);
        absent.extend(memory.absent);
        absent.extend(nics.absent);
        absent.extend(storage.absent);
        absent.extend(simple_storage.absent);
        Ok(SystemInventory {
            id: parse::resource_id(path, doc),
            manufacturer: text(doc, "Manufacturer"),
            model: text(doc, "Model"),
            serial: text(doc, "SerialNumber"),
            uuid: text(doc, "UUID"),
            bios_version: text(doc, "BiosVersion"),
            power_state: text(doc, "PowerState"),
            processors: processors
                .resources
                .iter()
                .map(|(p, d)| parse::processor(p, d))
                .collect(),
            memory: memory
                .resources
                .iter()
                .map(|(p, d)| parse::memory_module(p, d))
                .collect(),
            memory_summary_gib: doc
                .get("MemorySummary")
                .and_then(|summary| summary.get("TotalSystemMemoryGiB"))
                .and_then(parse::float),
            ethernet_interfaces: nics
                .resources
                .iter()
                .map(|(p, d)| parse::network_interface(p, d))
                .collect(),
            drives: storage.drives,
            simple_storage: simple_storage
                .resources
                .iter()
                .flat_map(|(p, d)| parse::simple_storage_devices(p, d))
                .collect(),
            absent,
            sku: text(doc, "SKU"),
            boot: parse::boot_settings(doc, boot_options),
            volumes: storage.volumes,
        })
    }

    async fn boot_options(
        &self,
        boot: &Value,
    ) -> Result<Vec<metal_core::inventory::BootOption>, RedfishError> {
        if link(boot, "BootOptions").is_none() {
            return Ok(Vec::new());
        }
        let members = self
            .members(
                boot,
                "BootOptions",
                "a BootOption",
                "BootOptions".to_string(),
            )
            .await?;
        Ok(members
            .resources
            .iter()
            .map(|(p, d)| parse::boot_option(p, d))
            .collect())
    }

    /// Storage → every controller → its `Drives` (de-duplicated by normalised path, only
    /// `#Drive.*` documents) and its `Volumes` (only `#Volume.*`).
    async fn storage(&self, system: &Value) -> Result<StorageFound, RedfishError> {
        let storage = self
            .members(system, "Storage", "a Storage", "Storage".to_string())
            .await?;
        let mut found = StorageFound {
            absent: storage.absent,
            ..StorageFound::default()
        };
        let mut drive_links = Vec::new();
        for (_, controller) in &storage.resources {
            match controller.get("Drives") {
                Some(Value::Array(items)) => drive_links.extend(items.iter().filter_map(odata_id)),
                // Some services link a Drives collection instead of listing the drives.
                Some(object @ Value::Object(_)) if odata_id(object).is_some() => {
                    let drives = self
                        .members(controller, "Drives", "a Drive", "Drives".to_string())
                        .await?;
                    found.absent.extend(drives.absent);
                    drive_links.extend(drives.resources.into_iter().map(|(p, _)| p));
                }
                _ => {}
            }
            if link(controller, "Volumes").is_some() {
                let volumes = self
                    .members(controller, "Volumes", "a Volume", "Volumes".to_string())
                    .await?;
                found.absent.extend(volumes.absent);
                found.volumes.extend(
                    volumes
                        .resources
                        .iter()
                        .filter(|(_, d)| {
                            parse::is_type(d, "Volume") || d.get("@odata.type").is_none()
                        })
                        .map(|(p, d)| parse::volume(p, d)),
                );
            }
        }
        for (path, doc) in self.fetch_all(unique_links(drive_links), "a Drive").await? {
            match doc {
                Some(doc) if parse::is_type(&doc, "Drive") => {
                    found.drives.push(parse::drive(&path, &doc))
                }
                Some(_) => {}
                None => found.absent.push(normalise_path(&path)),
            }
        }
        Ok(found)
    }

    async fn managers(
        &self,
        root: &Value,
    ) -> Result<(Vec<ManagerInventory>, Vec<String>), RedfishError> {
        let members = self
            .members(root, "Managers", "a Manager", "Managers".to_string())
            .await?;
        let mut absent = members.absent;
        let mut managers = Vec::new();
        for (path, doc) in &members.resources {
            let nics = self
                .members(
                    doc,
                    "EthernetInterfaces",
                    "an EthernetInterface",
                    format!("{}/EthernetInterfaces", normalise_path(path)),
                )
                .await?;
            absent.extend(nics.absent);
            managers.push(ManagerInventory {
                id: parse::resource_id(path, doc),
                model: text(doc, "Model"),
                firmware_version: text(doc, "FirmwareVersion"),
                ethernet_interfaces: nics
                    .resources
                    .iter()
                    .map(|(p, d)| parse::network_interface(p, d))
                    .collect(),
            });
        }
        Ok((managers, absent))
    }

    /// UpdateService → FirmwareInventory: one item per member (a member that answers 404
    /// is an item without name or version, and recorded absent).
    async fn firmware(
        &self,
        root: &Value,
    ) -> Result<(Vec<FirmwareItem>, Vec<String>), RedfishError> {
        let mut absent = Vec::new();
        let update_service = match link(root, "UpdateService") {
            Some(update_link) => self.resource(&update_link, "the UpdateService").await?,
            None => None,
        };
        let Some(update_service) = update_service else {
            absent.push("UpdateService".to_string());
            return Ok((Vec::new(), absent));
        };
        let entries = match link(&update_service, "FirmwareInventory") {
            Some(inventory_link) => self.collection(&inventory_link, "a firmware item").await?,
            None => None,
        };
        let Some(entries) = entries else {
            absent.push("FirmwareInventory".to_string());
            return Ok((Vec::new(), absent));
        };
        let items = entries
            .into_iter()
            .map(|(path, doc)| match doc {
                Some(doc) => parse::firmware_item(&path, &doc),
                None => {
                    absent.push(normalise_path(&path));
                    parse::firmware_item(&path, &Value::Null)
                }
            })
            .collect();
        Ok((items, absent))
    }

    async fn chassis(
        &self,
        root: &Value,
    ) -> Result<(Vec<ChassisInventory>, Vec<String>), RedfishError> {
        let members = self
            .members(root, "Chassis", "a Chassis", "Chassis".to_string())
            .await?;
        let mut absent = members.absent;
        let mut all = Vec::new();
        for (path, doc) in &members.resources {
            let (adapters, devices) =
                futures::try_join!(self.network_adapters(doc), self.pcie_devices(doc))?;
            absent.extend(adapters.1);
            absent.extend(devices.1);
            all.push(ChassisInventory {
                id: parse::resource_id(path, doc),
                chassis_type: text(doc, "ChassisType"),
                manufacturer: text(doc, "Manufacturer"),
                model: text(doc, "Model"),
                serial: text(doc, "SerialNumber"),
                part_number: text(doc, "PartNumber"),
                network_adapters: adapters.0,
                pcie_devices: devices.0,
            });
        }
        Ok((all, absent))
    }

    async fn network_adapters(
        &self,
        chassis: &Value,
    ) -> Result<(Vec<NetworkAdapter>, Vec<String>), RedfishError> {
        if link(chassis, "NetworkAdapters").is_none() {
            return Ok((Vec::new(), Vec::new()));
        }
        let members = self
            .members(
                chassis,
                "NetworkAdapters",
                "a NetworkAdapter",
                "NetworkAdapters".to_string(),
            )
            .await?;
        let mut absent = members.absent;
        let mut adapters = Vec::new();
        for (path, doc) in &members.resources {
            let port_property = if link(doc, "Ports").is_some() {
                "Ports"
            } else {
                "NetworkPorts"
            };
            let mut ports = Vec::new();
            for (property, role) in [
                (port_property, "a network port"),
                ("NetworkDeviceFunctions", "a NetworkDeviceFunction"),
            ] {
                if link(doc, property).is_none() {
                    continue;
                }
                let found = self
                    .members(doc, property, role, property.to_string())
                    .await?;
                absent.extend(found.absent);
                ports.extend(
                    found
                        .resources
                        .iter()
                        .map(|(p, d)| parse::adapter_port(p, d)),
                );
            }
            adapters.push(NetworkAdapter {
                id: parse::resource_id(path, doc),
                manufacturer: text(doc, "Manufacturer"),
                model: text(doc, "Model"),
                serial: text(doc, "SerialNumber"),
                part_number: text(doc, "PartNumber"),
                ports,
            });
        }
        Ok((adapters, absent))
    }

    /// `PCIeDevices` as a collection link, or (older chassis) an array of links.
    async fn pcie_devices(
        &self,
        chassis: &Value,
    ) -> Result<(Vec<PcieDevice>, Vec<String>), RedfishError> {
        let members = match chassis.get("PCIeDevices") {
            Some(Value::Object(_)) => {
                self.members(
                    chassis,
                    "PCIeDevices",
                    "a PCIeDevice",
                    "PCIeDevices".to_string(),
                )
                .await?
            }
            Some(Value::Array(_)) => {
                self.linked_array(chassis, "PCIeDevices", "a PCIeDevice")
                    .await?
            }
            _ => match chassis.get("Links") {
                Some(links) if links.get("PCIeDevices").is_some() => {
                    self.linked_array(links, "PCIeDevices", "a PCIeDevice")
                        .await?
                }
                _ => return Ok((Vec::new(), Vec::new())),
            },
        };
        let mut absent = members.absent;
        let mut devices = Vec::new();
        for (path, doc) in &members.resources {
            let functions = match doc.get("PCIeFunctions") {
                Some(Value::Object(_)) => {
                    self.members(
                        doc,
                        "PCIeFunctions",
                        "a PCIeFunction",
                        "PCIeFunctions".to_string(),
                    )
                    .await?
                }
                _ => match doc.get("Links") {
                    Some(links) => {
                        self.linked_array(links, "PCIeFunctions", "a PCIeFunction")
                            .await?
                    }
                    None => Members::default(),
                },
            };
            absent.extend(functions.absent);
            devices.push(PcieDevice {
                id: parse::resource_id(path, doc),
                path: normalise_path(path),
                name: text(doc, "Name"),
                manufacturer: text(doc, "Manufacturer"),
                model: text(doc, "Model"),
                serial: text(doc, "SerialNumber"),
                device_type: text(doc, "DeviceType"),
                firmware_version: text(doc, "FirmwareVersion"),
                address: parse::pcie_address(doc),
                functions: functions
                    .resources
                    .iter()
                    .map(|(p, d)| parse::pcie_function(p, d))
                    .collect(),
            });
        }
        Ok((devices, absent))
    }
}

/// What a path was read as: one resource in a role ("a Processor"), or the collection of
/// such resources. The same path in two roles is a link loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Resource(&'static str),
    CollectionOf(&'static str),
}

impl From<&'static str> for Role {
    fn from(role: &'static str) -> Role {
        Role::Resource(role)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Resource(role) => f.write_str(role),
            Role::CollectionOf(role) => write!(f, "the collection of {role}"),
        }
    }
}

#[derive(Default)]
struct StorageFound {
    drives: Vec<Drive>,
    volumes: Vec<Volume>,
    absent: Vec<String>,
}

/// The `$expand` query the service root offers for one level of members: `.` (no links)
/// or `*`, with `($levels=1)` where levels are supported; `None` where it offers none.
pub fn expand_query_for(root: &Value) -> Option<String> {
    let expand = root.get("ProtocolFeaturesSupported")?.get("ExpandQuery")?;
    let supports = |key: &str| expand.get(key).and_then(Value::as_bool) == Some(true);
    let what = if supports("NoLinks") {
        "."
    } else if supports("ExpandAll") {
        "*"
    } else {
        return None;
    };
    Some(if supports("Levels") {
        format!("{what}($levels=1)")
    } else {
        what.to_string()
    })
}

fn member_entries(collection: &Value) -> Vec<Value> {
    collection
        .get("Members")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Whether two members written out in full share one `@odata.id`.
fn expanded_ids_collide(entries: &[Value]) -> bool {
    let mut seen = HashSet::new();
    entries
        .iter()
        .filter(|entry| is_expanded(entry))
        .filter_map(odata_id)
        .any(|id| !seen.insert(normalise_path(&id)))
}

/// A member written out in full (an expanded collection), not just its link.
fn is_expanded(entry: &Value) -> bool {
    entry
        .as_object()
        .is_some_and(|object| object.keys().any(|key| key != "@odata.id"))
}

/// A page link as a loop key: the path without trailing slash, with its query.
fn normalise_page(link: &str) -> String {
    let (path, query) = link.split_once('?').unwrap_or((link, ""));
    format!("{}?{query}", normalise_path(path))
}

/// Keeps the first link to each resource (by normalised path), in order.
fn unique_links(links: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    links
        .into_iter()
        .filter(|link| seen.insert(normalise_path(link)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expand_query_from_the_service_root() {
        let root = |expand: Value| json!({"ProtocolFeaturesSupported": {"ExpandQuery": expand}});
        assert_eq!(
            expand_query_for(&root(json!({"NoLinks": true, "Levels": true}))).as_deref(),
            Some(".($levels=1)")
        );
        assert_eq!(
            expand_query_for(&root(json!({"ExpandAll": true}))).as_deref(),
            Some("*")
        );
        assert_eq!(
            expand_query_for(&root(
                json!({"ExpandAll": false, "NoLinks": false, "Levels": true})
            )),
            None
        );
        assert_eq!(expand_query_for(&json!({})), None);
    }

    /// A tree in memory: path → document.
    struct Tree(HashMap<&'static str, Value>);

    impl RedfishSource for Tree {
        async fn get(&self, path: &str) -> Result<Option<Value>, RedfishError> {
            Ok(self.0.get(normalise_path(path).as_str()).cloned())
        }
    }

    fn tree(system_extra: Value) -> Tree {
        let mut system = json!({"@odata.id": "/redfish/v1/Systems/1", "Id": "1"});
        if let (Some(system), Some(extra)) = (system.as_object_mut(), system_extra.as_object()) {
            system.extend(extra.clone());
        }
        Tree(HashMap::from([
            (
                "/redfish/v1",
                json!({"Systems": {"@odata.id": "/redfish/v1/Systems"}}),
            ),
            (
                "/redfish/v1/Systems",
                json!({"Members": [{"@odata.id": "/redfish/v1/Systems/1"}]}),
            ),
            ("/redfish/v1/Systems/1", system),
        ]))
    }

    #[tokio::test]
    async fn a_collection_linked_in_another_role_is_a_link_loop() {
        let source = tree(json!({"Processors": {"@odata.id": "/redfish/v1/Systems"}}));
        let error = walk(&source, WalkLimits::default()).await.unwrap_err();
        assert!(
            error.to_string().contains(
                "link loop: linked as the collection of a Processor but already read as the collection of a ComputerSystem"
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_page_that_links_back_is_a_loop() {
        let mut source = tree(json!({}));
        source.0.insert(
            "/redfish/v1/Systems",
            json!({"Members": [{"@odata.id": "/redfish/v1/Systems/1"}], "Members@odata.nextLink": "/redfish/v1/Systems?page=2"}),
        );
        // The fake ignores queries, so page 2 is page 1 again: its nextLink repeats.
        let error = walk(&source, WalkLimits::default()).await.unwrap_err();
        assert!(
            error.to_string().contains("collection pages loop back"),
            "{error}"
        );
    }
}
