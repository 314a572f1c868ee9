//! The scraper over real HTTP against the sushy-tools Redfish emulator (libvirt `test:///`
//! driver), which renders domain XML the way it would for a real VM. Sushy has quirks a real
//! BMC can also have: one Processor resource per vCPU with `TotalCores` as a string and an
//! `@odata.id` that is the collection path with a trailing slash, a `Memory` link that
//! answers 404, and an `UpdateService` whose `FirmwareInventory` answers 404.

use std::time::Duration;

use metal_core::config::{Credentials, RedfishConfig, Secret};
use metal_core::inventory::{Inventory, SystemInventory};
use metal_core::Mac;
use redfish_scraper::http::{scrape, HttpSettings};
use test_harness::sushy::{SushyDrive, SushyEmulator, SushySystem};

const INTEL_UUID: &str = "6b1c8f5a-8a4c-4d5e-9f6a-00000000a001";
const AMD_UUID: &str = "6b1c8f5a-8a4c-4d5e-9f6a-00000000a002";

fn intel_system() -> SushySystem {
    SushySystem {
        name: "intel-node".to_string(),
        uuid: INTEL_UUID.to_string(),
        cpu_vendor: "Intel".to_string(),
        cpu_model: "Skylake-Server".to_string(),
        sockets: 2,
        cores: 8,
        threads: 1,
        memory_gib: 64,
        nic_macs: vec![
            "52:54:00:aa:00:01".to_string(),
            "52:54:00:AA:00:02".to_string(),
        ],
        drives: vec![
            SushyDrive {
                id: "sda".to_string(),
                capacity_bytes: 480_103_981_056,
                protocol: "SATA".to_string(),
            },
            SushyDrive {
                id: "nvme0".to_string(),
                capacity_bytes: 1_920_383_410_176,
                protocol: "NVMe".to_string(),
            },
        ],
    }
}

fn amd_system() -> SushySystem {
    SushySystem {
        name: "amd-node".to_string(),
        uuid: AMD_UUID.to_string(),
        cpu_vendor: "AMD".to_string(),
        cpu_model: "EPYC".to_string(),
        sockets: 1,
        cores: 16,
        threads: 1,
        memory_gib: 128,
        nic_macs: vec!["52:54:00:bb:00:01".to_string()],
        drives: vec![SushyDrive {
            id: "sdb".to_string(),
            capacity_bytes: 960_197_124_096,
            protocol: "SAS".to_string(),
        }],
    }
}

fn settings() -> HttpSettings {
    HttpSettings {
        request_timeout: Duration::from_secs(10),
        scrape_deadline: Duration::from_secs(60),
        retries: 1,
        backoff: Duration::from_millis(50),
        ..HttpSettings::from_config(&RedfishConfig::default())
    }
}

fn credentials() -> Credentials {
    // Sushy runs without authentication here; the scraper must still get in (basic auth
    // fallback, since the service root offers no sessions).
    Credentials {
        username: "admin".to_string(),
        password: Secret::new("sushy-password-7731".to_string()),
    }
}

fn mac(text: &str) -> Mac {
    Mac::parse_any(text).unwrap_or_else(|e| panic!("{text} is not a MAC: {e}"))
}

fn system<'a>(inventory: &'a Inventory, uuid: &str) -> &'a SystemInventory {
    inventory
        .systems
        .iter()
        .find(|s| s.id == uuid)
        .unwrap_or_else(|| {
            panic!(
                "system {uuid} missing; systems: {:?}",
                inventory.systems.iter().map(|s| &s.id).collect::<Vec<_>>()
            )
        })
}

/// Asserts one system against the domain it was rendered from.
fn check_system(inventory: &Inventory, expected: &SushySystem, expected_vendor: &str) {
    let system = system(inventory, &expected.uuid);
    let name = &expected.name;
    assert_eq!(
        system.uuid.as_deref(),
        Some(expected.uuid.as_str()),
        "{name}"
    );
    assert_eq!(system.power_state.as_deref(), Some("On"), "{name}");

    // One Processor per vCPU, each reporting the cores of its socket as a string. Their
    // `@odata.id` is the broken `.../Processors/`; the walk goes by the collection's links.
    let vcpus = (expected.sockets * expected.cores * expected.threads) as usize;
    assert_eq!(system.processors.len(), vcpus, "{name}: processors");
    let mut ids: Vec<&str> = system.processors.iter().map(|p| p.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), vcpus, "{name}: processor ids must be distinct");
    for processor in &system.processors {
        assert!(processor.is_present_cpu(), "{name}: {processor:?}");
        assert_eq!(
            processor.model.as_deref(),
            Some(expected.cpu_model.as_str()),
            "{name}"
        );
        assert_eq!(
            processor.manufacturer.as_deref(),
            Some(expected.cpu_vendor.as_str()),
            "{name}"
        );
        assert_eq!(
            processor.total_cores,
            Some(u64::from(expected.cores)),
            "{name}: TotalCores \"{}\" read from a string",
            expected.cores
        );
        assert_eq!(
            processor.total_threads,
            Some(u64::from(expected.threads)),
            "{name}"
        );
    }
    assert_eq!(system.cpus().count(), vcpus, "{name}");
    assert_eq!(
        format!("{:?}", inventory_vendor_of(system)),
        expected_vendor,
        "{name}: CPU vendor"
    );

    // Memory: the summary is there; the linked Memory collection answers 404.
    assert_eq!(
        system.memory_summary_gib,
        Some(f64::from(expected.memory_gib)),
        "{name}: MemorySummary.TotalSystemMemoryGiB"
    );
    assert!(system.memory.is_empty(), "{name}: no DIMMs are served");
    // The system links no SimpleStorage at all, and sushy answers 500 for the storage
    // controller's Volumes; all three gaps are recorded, not errors.
    let mut absent = system.absent.clone();
    absent.sort();
    assert_eq!(
        absent,
        vec![
            "Memory".to_string(),
            "SimpleStorage".to_string(),
            "Volumes (HTTP 500)".to_string()
        ],
        "{name}: absent"
    );

    // Host NICs: the domain's MACs, normalised.
    let mut expected_macs: Vec<Mac> = expected.nic_macs.iter().map(|m| mac(m)).collect();
    expected_macs.sort();
    assert_eq!(
        system.host_nic_macs(),
        expected_macs,
        "{name}: host NIC MACs"
    );
    for nic in &system.ethernet_interfaces {
        assert_eq!(nic.mac, nic.permanent_mac, "{name}: {nic:?}");
    }

    // Drives: one per configured drive, with its capacity and protocol.
    let mut drives: Vec<(String, Option<u64>, Option<String>)> = system
        .drives
        .iter()
        .map(|d| (d.path.clone(), d.capacity_bytes, d.protocol.clone()))
        .collect();
    drives.sort();
    let mut expected_drives: Vec<(String, Option<u64>, Option<String>)> = expected
        .drives
        .iter()
        .map(|d| {
            (
                format!(
                    "/redfish/v1/Systems/{}/Storage/1/Drives/{}",
                    expected.uuid, d.id
                ),
                Some(d.capacity_bytes),
                Some(d.protocol.clone()),
            )
        })
        .collect();
    expected_drives.sort();
    assert_eq!(drives, expected_drives, "{name}: drives");
    assert!(system.simple_storage.is_empty(), "{name}: simple storage");
}

fn inventory_vendor_of(system: &SystemInventory) -> Option<metal_core::inventory::CpuVendor> {
    let single = Inventory {
        systems: vec![system.clone()],
        ..Inventory::default()
    };
    single.cpu_vendor()
}

#[tokio::test]
async fn two_sushy_systems_over_http() {
    let intel = intel_system();
    let amd = amd_system();
    let emulator = SushyEmulator::start(&[intel.clone(), amd.clone()]);
    let inventory = scrape(&emulator.base_url(), &credentials(), &settings())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "scrape of sushy failed: {}\nsushy log:\n{}",
                metal_core::error_chain(&e),
                emulator.log()
            )
        })
        .inventory;

    assert_eq!(inventory.service.redfish_version.as_deref(), Some("1.5.0"));
    let mut system_ids: Vec<&str> = inventory.systems.iter().map(|s| s.id.as_str()).collect();
    system_ids.sort();
    assert_eq!(system_ids, vec![INTEL_UUID, AMD_UUID]);
    check_system(&inventory, &intel, "Some(Intel)");
    check_system(&inventory, &amd, "Some(Amd)");
    assert_eq!(inventory.cpu_vendor(), None, "mixed vendors across systems");

    let mut all_macs: Vec<Mac> = intel
        .nic_macs
        .iter()
        .chain(&amd.nic_macs)
        .map(|m| mac(m))
        .collect();
    all_macs.sort();
    assert_eq!(inventory.host_nic_macs(), all_macs);

    // One manager per domain; sushy's managers link no EthernetInterfaces, so no BMC MACs.
    let mut manager_ids: Vec<&str> = inventory.managers.iter().map(|m| m.id.as_str()).collect();
    manager_ids.sort();
    assert_eq!(manager_ids, vec![INTEL_UUID, AMD_UUID]);
    for manager in &inventory.managers {
        assert_eq!(manager.firmware_version.as_deref(), Some("1.00"));
        assert!(manager.ethernet_interfaces.is_empty());
    }
    assert!(inventory.bmc_macs().is_empty());

    // UpdateService is linked but its FirmwareInventory answers 404.
    assert!(inventory.firmware.is_empty());
    let mut absent = inventory.absent.clone();
    absent.sort();
    let mut expected_absent = vec![
        "FirmwareInventory".to_string(),
        format!("/redfish/v1/Managers/{INTEL_UUID}/EthernetInterfaces"),
        format!("/redfish/v1/Managers/{AMD_UUID}/EthernetInterfaces"),
    ];
    expected_absent.sort();
    assert_eq!(absent, expected_absent, "inventory-level absent");

    // The password never ends up in the inventory.
    let json = serde_json::to_string(&inventory).unwrap();
    assert!(!json.contains("sushy-password-7731"));
}
