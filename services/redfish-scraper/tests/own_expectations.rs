//! The newer inventory fields (SKU, boot settings, CPU and DIMM details, NIC link state,
//! drive bays, volumes, chassis adapters and PCIe devices, managers, firmware) of every
//! mockup tree against the project's own expectations in
//! `tests/data/expectations/<tree>.json`, each checked by hand against the tree's JSON (see
//! the README there). The shared `expected.json` covers only the older fields.
//!
//! Every tree is walked twice: from disk, and over HTTP from the mockup server with
//! `$expand` and collections paged three members at a time. Both must give the expectation.
//! Trees come from `METAL_REDFISH_MOCKUPS` (else `shared/redfish-mockups`) and
//! `tests/data/mockups`; a tree without an expectations file only has to walk.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use metal_core::config::{Credentials, Secret};
use metal_core::inventory::Inventory;
use redfish_scraper::http::scrape;
use redfish_scraper::source::MockupDirSource;
use redfish_scraper::walk::{walk, WalkLimits};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use test_harness::mockup::{serve_mockup_with, MockupOptions};

/// One tree's expected view; maps are keyed as the README says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct View {
    systems: BTreeMap<String, SystemView>,
    chassis: BTreeMap<String, ChassisView>,
    managers: BTreeMap<String, ManagerView>,
    firmware: FirmwareView,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemView {
    sku: Option<String>,
    boot: Option<BootView>,
    /// By `Socket`, else `Id`; every member, absent ones included.
    processors: BTreeMap<String, ProcessorView>,
    /// Installed modules only, by slot (`DeviceLocator`, else the walker's
    /// `socket S slot N` from `MemoryLocation`), else `Id`.
    memory: BTreeMap<String, DimmView>,
    /// By interface `Id` (two interfaces may share a MAC: a VLAN and its parent).
    host_nics: BTreeMap<String, NicView>,
    /// By drive `Id`.
    drives: BTreeMap<String, DriveView>,
    /// By volume `Id`.
    volumes: BTreeMap<String, VolumeView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BootView {
    override_target: Option<String>,
    override_enabled: Option<String>,
    override_mode: Option<String>,
    /// Sorted: the order of allowable values means nothing.
    allowable_targets: Vec<String>,
    /// As served: the order is the boot order.
    boot_order: Vec<String>,
    boot_option_count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessorView {
    id: String,
    /// Trimmed.
    model: Option<String>,
    max_speed_mhz: Option<u64>,
    total_cores: Option<u64>,
    total_threads: Option<u64>,
    state: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DimmView {
    capacity_mib: Option<u64>,
    memory_type: Option<String>,
    speed_mhz: Option<u64>,
    serial: Option<String>,
    manufacturer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NicView {
    mac: Option<String>,
    permanent_mac: Option<String>,
    speed_mbps: Option<u64>,
    link_status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DriveView {
    serial: Option<String>,
    bay: Option<String>,
    media_type: Option<String>,
    protocol: Option<String>,
    capacity_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeView {
    capacity_bytes: Option<u64>,
    raid_type: Option<String>,
    drive_count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChassisView {
    chassis_type: Option<String>,
    manufacturer: Option<String>,
    model: Option<String>,
    serial: Option<String>,
    part_number: Option<String>,
    /// Adapter `Id` → port `Id` → the port's MACs, sorted.
    network_adapters: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// By address (OEM bus:device.function, else slot label), else `Id`.
    pcie_devices: BTreeMap<String, PcieDeviceView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PcieDeviceView {
    id: String,
    name: Option<String>,
    /// By function `Id`.
    functions: BTreeMap<String, PcieFunctionView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PcieFunctionView {
    device_class: Option<String>,
    vendor_id: Option<String>,
    device_id: Option<String>,
    subsystem_vendor_id: Option<String>,
    subsystem_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManagerView {
    model: Option<String>,
    firmware_version: Option<String>,
    /// The manager's NICs' MACs, unique and sorted.
    nic_macs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FirmwareView {
    count: usize,
    /// By firmware item `Id`.
    items: BTreeMap<String, FirmwareItemView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FirmwareItemView {
    name: Option<String>,
    version: Option<String>,
}

/// Inserts under `key`; a key already taken gets ` #2`, ` #3`, ... so a duplicate shows up
/// in the diff instead of silently replacing the first entry.
fn insert_unique<V>(map: &mut BTreeMap<String, V>, key: String, value: V) {
    let mut candidate = key.clone();
    let mut n = 1;
    while map.contains_key(&candidate) {
        n += 1;
        candidate = format!("{key} #{n}");
    }
    map.insert(candidate, value);
}

fn trimmed(value: &Option<String>) -> Option<String> {
    value.as_deref().map(|s| s.trim().to_string())
}

fn view_of(inventory: &Inventory) -> View {
    let mut systems = BTreeMap::new();
    for system in &inventory.systems {
        let boot = system.boot.as_ref().map(|boot| {
            let mut allowable_targets = boot.allowable_targets.clone();
            allowable_targets.sort();
            BootView {
                override_target: boot.override_target.clone(),
                override_enabled: boot.override_enabled.clone(),
                override_mode: boot.override_mode.clone(),
                allowable_targets,
                boot_order: boot.boot_order.clone(),
                boot_option_count: boot.options.len(),
            }
        });
        let mut processors = BTreeMap::new();
        for p in &system.processors {
            let key = p.socket.clone().unwrap_or_else(|| p.id.clone());
            let view = ProcessorView {
                id: p.id.clone(),
                model: trimmed(&p.model),
                max_speed_mhz: p.max_speed_mhz,
                total_cores: p.total_cores,
                total_threads: p.total_threads,
                state: p.state.clone(),
            };
            insert_unique(&mut processors, key, view);
        }
        let mut memory = BTreeMap::new();
        for m in system.memory.iter().filter(|m| m.is_installed()) {
            let key = m.device_locator.clone().unwrap_or_else(|| m.id.clone());
            let view = DimmView {
                capacity_mib: m.capacity_mib,
                memory_type: m.memory_type.clone(),
                speed_mhz: m.speed_mhz,
                serial: m.serial.clone(),
                manufacturer: m.manufacturer.clone(),
            };
            insert_unique(&mut memory, key, view);
        }
        let mut host_nics = BTreeMap::new();
        for nic in &system.ethernet_interfaces {
            let view = NicView {
                mac: nic.mac.map(|m| m.to_string()),
                permanent_mac: nic.permanent_mac.map(|m| m.to_string()),
                speed_mbps: nic.speed_mbps,
                link_status: nic.link_status.clone(),
            };
            insert_unique(&mut host_nics, nic.id.clone(), view);
        }
        let mut drives = BTreeMap::new();
        for d in &system.drives {
            let view = DriveView {
                serial: d.serial.clone(),
                bay: d.bay.clone(),
                media_type: d.media_type.clone(),
                protocol: d.protocol.clone(),
                capacity_bytes: d.capacity_bytes,
            };
            insert_unique(&mut drives, d.id.clone(), view);
        }
        let mut volumes = BTreeMap::new();
        for v in &system.volumes {
            let view = VolumeView {
                capacity_bytes: v.capacity_bytes,
                raid_type: v.raid_type.clone(),
                drive_count: v.drives.len(),
            };
            insert_unique(&mut volumes, v.id.clone(), view);
        }
        let view = SystemView {
            sku: system.sku.clone(),
            boot,
            processors,
            memory,
            host_nics,
            drives,
            volumes,
        };
        insert_unique(&mut systems, system.id.clone(), view);
    }

    let mut chassis = BTreeMap::new();
    for c in &inventory.chassis {
        let mut network_adapters = BTreeMap::new();
        for adapter in &c.network_adapters {
            let mut ports = BTreeMap::new();
            for port in &adapter.ports {
                let mut macs: Vec<String> = port.macs.iter().map(|m| m.to_string()).collect();
                macs.sort();
                insert_unique(&mut ports, port.id.clone(), macs);
            }
            insert_unique(&mut network_adapters, adapter.id.clone(), ports);
        }
        let mut pcie_devices = BTreeMap::new();
        for device in &c.pcie_devices {
            let mut functions = BTreeMap::new();
            for f in &device.functions {
                let view = PcieFunctionView {
                    device_class: f.device_class.clone(),
                    vendor_id: f.vendor_id.clone(),
                    device_id: f.device_id.clone(),
                    subsystem_vendor_id: f.subsystem_vendor_id.clone(),
                    subsystem_id: f.subsystem_id.clone(),
                };
                insert_unique(&mut functions, f.id.clone(), view);
            }
            let view = PcieDeviceView {
                id: device.id.clone(),
                name: device.name.clone(),
                functions,
            };
            let key = device.address.clone().unwrap_or_else(|| device.id.clone());
            insert_unique(&mut pcie_devices, key, view);
        }
        let view = ChassisView {
            chassis_type: c.chassis_type.clone(),
            manufacturer: c.manufacturer.clone(),
            model: c.model.clone(),
            serial: c.serial.clone(),
            part_number: c.part_number.clone(),
            network_adapters,
            pcie_devices,
        };
        insert_unique(&mut chassis, c.id.clone(), view);
    }

    let mut managers = BTreeMap::new();
    for m in &inventory.managers {
        let mut nic_macs: Vec<String> = m
            .ethernet_interfaces
            .iter()
            .filter_map(|nic| nic.mac.map(|mac| mac.to_string()))
            .collect();
        nic_macs.sort();
        nic_macs.dedup();
        let view = ManagerView {
            model: m.model.clone(),
            firmware_version: m.firmware_version.clone(),
            nic_macs,
        };
        insert_unique(&mut managers, m.id.clone(), view);
    }

    let mut items = BTreeMap::new();
    for item in &inventory.firmware {
        let view = FirmwareItemView {
            name: item.name.clone(),
            version: item.version.clone(),
        };
        insert_unique(&mut items, item.id.clone(), view);
    }

    View {
        systems,
        chassis,
        managers,
        firmware: FirmwareView {
            count: inventory.firmware.len(),
            items,
        },
    }
}

/// Every difference between two JSON values, one line each, by path.
fn json_diff(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, ev) in e {
                let sub = format!("{path}.{key}");
                match a.get(key) {
                    Some(av) => json_diff(&sub, ev, av, out),
                    None => out.push(format!("{sub}: missing (expected {ev})")),
                }
            }
            for (key, av) in a {
                if !e.contains_key(key) {
                    out.push(format!("{path}.{key}: unexpected {av}"));
                }
            }
        }
        _ if expected == actual => {}
        _ => out.push(format!("{path}: expected {expected}, got {actual}")),
    }
}

fn expectations_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/expectations")
}

/// The project's own trees, in `tests/data/mockups`.
fn own_trees() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/mockups");
    let mut trees: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("redfish/v1/index.json").is_file())
        .collect();
    trees.sort();
    trees
}

/// The shared trees (or those of `METAL_REDFISH_MOCKUPS`), then the project's own.
fn trees() -> Vec<PathBuf> {
    let mut trees = test_harness::paths::mockup_folders();
    trees.extend(own_trees());
    trees
}

fn tree_name(tree: &Path) -> String {
    tree.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The tree's expectations, or `None` when it has no file.
fn expectation(tree: &Path) -> Option<View> {
    let file = expectations_dir().join(format!("{}.json", tree_name(tree)));
    if !file.is_file() {
        return None;
    }
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    Some(
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not an expectations file: {e}", file.display())),
    )
}

/// The differences between the inventory's view and the tree's expectation, as a report;
/// `None` when they agree or the tree has no expectation.
fn check(tree: &Path, how: &str, inventory: &Inventory) -> Option<String> {
    let expected = expectation(tree)?;
    let actual = view_of(inventory);
    if actual == expected {
        return None;
    }
    let expected = serde_json::to_value(&expected).unwrap();
    let actual = serde_json::to_value(&actual).unwrap();
    let mut lines = Vec::new();
    json_diff("", &expected, &actual, &mut lines);
    let mut report = format!(
        "{} ({how}) differs from tests/data/expectations/{}.json:\n",
        tree_name(tree),
        tree_name(tree)
    );
    for line in lines {
        let _ = writeln!(report, "  {}", line.trim_start_matches('.'));
    }
    let _ = writeln!(
        report,
        "  the walker's whole view (check it against the documents before copying):\n{}",
        serde_json::to_string_pretty(&actual).unwrap()
    );
    Some(report)
}

fn credentials() -> Credentials {
    // The mockup server without credentials accepts any.
    Credentials {
        username: "anyone".to_string(),
        password: Secret::new("anything".to_string()),
    }
}

#[tokio::test]
async fn every_tree_from_disk_matches_its_expectations() {
    let mut failures = Vec::new();
    for tree in trees() {
        let inventory = walk(&MockupDirSource::new(&tree), WalkLimits::default())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "walk of {} failed: {}",
                    tree.display(),
                    metal_core::error_chain(&e)
                )
            })
            .inventory;
        failures.extend(check(&tree, "from disk", &inventory));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn every_tree_over_http_with_expand_and_paging_matches_its_expectations() {
    let mut failures = Vec::new();
    for tree in trees() {
        let options = MockupOptions {
            expand: true,
            page_size: Some(3),
            ..MockupOptions::default()
        };
        let server = serve_mockup_with(&tree, options).await;
        let walked = scrape(
            &server.base_url(),
            &credentials(),
            &common::relaxed_settings(),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "scrape of {} failed: {}",
                tree.display(),
                metal_core::error_chain(&e)
            )
        });
        assert!(
            walked.expand.is_some() && server.expand_requests() > 0,
            "{}: the scrape did not use the $expand the server offers",
            tree_name(&tree)
        );
        failures.extend(check(
            &tree,
            "over HTTP, $expand, pages of 3",
            &walked.inventory,
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// With the default trees, every tree has an expectations file and every file a tree, so
/// a renamed tree or file cannot silently drop out of the checks.
#[test]
fn expectations_and_default_trees_pair_up() {
    if std::env::var_os("METAL_REDFISH_MOCKUPS").is_some() {
        return;
    }
    let names: Vec<String> = trees().iter().map(|t| tree_name(t)).collect();
    for name in &names {
        assert!(
            expectations_dir().join(format!("{name}.json")).is_file(),
            "tree {name} has no tests/data/expectations/{name}.json"
        );
    }
    for entry in std::fs::read_dir(expectations_dir()).unwrap() {
        let file = entry.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(name) = file.strip_suffix(".json") {
            assert!(
                names.iter().any(|n| n == name),
                "tests/data/expectations/{file} names no tree"
            );
        }
    }
}

#[test]
fn the_diff_names_each_difference_by_path() {
    let expected = serde_json::json!({"a": {"b": 1, "c": [1, 2]}, "gone": true});
    let actual = serde_json::json!({"a": {"b": 2, "c": [1, 2]}, "new": null});
    let mut lines = Vec::new();
    json_diff("", &expected, &actual, &mut lines);
    assert_eq!(
        lines,
        vec![
            ".a.b: expected 1, got 2",
            ".gone: missing (expected true)",
            ".new: unexpected null",
        ]
    );
}
