//! Hand-made stream messages and inventories for tests (here, in boot-api, in the harness).
//! Times are fixed offsets from one instant, so fixtures are deterministic.

use bytes::Bytes;
use metal_core::events::{
    BmcLocated, HardwareScraped, InventoryRef, LocateFailed, ProfileAssigned, ProvisionRequested,
    RescanRequested, ScrapeFailed, ScrapeFailureKind,
};
use metal_core::inventory::{
    Drive, FirmwareItem, Inventory, ManagerInventory, MemoryModule, NetworkInterface, Processor,
    SystemInventory,
};
use metal_core::jetstream::StoredMessage;
use metal_core::{subjects, Decoded, Envelope, Mac};
use serde::Serialize;
use time::{Duration, OffsetDateTime};

/// The virtual NIC every HPE iLO reports: never unique across machines.
pub const ILO_VIRTUAL_NIC: &str = "0a:ca:fe:f0:0d:04";

/// 2025-01-01T00:00:00Z plus `seconds`.
pub fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + Duration::seconds(1_735_689_600 + seconds)
}

/// Parses a MAC fixture; panics on a typo in a test.
pub fn mac(text: &str) -> Mac {
    Mac::parse_any(text).unwrap_or_else(|e| panic!("fixture MAC {text:?}: {e}"))
}

/// A raw onboarding request (a bare `nats pub` of `payload`), published at `at(sequence)`.
pub fn raw(sequence: u64, subject: &str, payload: &str) -> StoredMessage {
    StoredMessage {
        sequence,
        subject: subject.to_string(),
        msg_id: None,
        payload: Bytes::from(payload.as_bytes().to_vec()),
        published: at(sequence as i64),
    }
}

/// `nats pub machine.onboard.requested <bmc_mac>` at `sequence`, and its decoded envelope.
pub fn request(sequence: u64, bmc_mac: &str) -> (StoredMessage, Envelope) {
    let message = raw(sequence, subjects::ONBOARD_REQUESTED, bmc_mac);
    match message.decode() {
        Decoded::Event(envelope) => (message, envelope),
        other => panic!("fixture request {bmc_mac:?} does not decode: {other:?}"),
    }
}

/// An envelope stored at `sequence`.
pub fn stored(sequence: u64, envelope: &Envelope) -> StoredMessage {
    StoredMessage {
        sequence,
        subject: envelope.event_type.clone(),
        msg_id: Some(envelope.event_id.to_string()),
        payload: Bytes::from(envelope.to_json_bytes()),
        published: at(sequence as i64),
    }
}

/// The event of type `event_type` answering `cause`, one second after it.
pub fn answer<D: Serialize>(cause: &Envelope, event_type: &str, data: &D) -> Envelope {
    Envelope::answering(cause, event_type, data, cause.time + Duration::seconds(1))
        .unwrap_or_else(|e| panic!("fixture answer {event_type}: {e}"))
}

pub fn located(cause: &Envelope, ip: &str) -> Envelope {
    answer(
        cause,
        subjects::BMC_LOCATED,
        &BmcLocated {
            bmc_ip: Some(ip.to_string()),
            redfish_url: format!("https://{ip}"),
            source: "static".to_string(),
            ..Default::default()
        },
    )
}

pub fn locate_failed(cause: &Envelope, reason: &str) -> Envelope {
    answer(
        cause,
        subjects::LOCATE_FAILED,
        &LocateFailed {
            reason: reason.to_string(),
            sources_tried: vec!["static".to_string()],
            ..Default::default()
        },
    )
}

pub fn scraped(cause: &Envelope, inventory: Inventory) -> Envelope {
    answer(
        cause,
        subjects::HARDWARE_SCRAPED,
        &HardwareScraped {
            redfish_url: "https://10.0.0.1".to_string(),
            inventory,
            raw: None,
        },
    )
}

pub fn scrape_failed(cause: &Envelope, reason: &str) -> Envelope {
    answer(
        cause,
        subjects::SCRAPE_FAILED,
        &ScrapeFailed {
            redfish_url: "https://10.0.0.1".to_string(),
            kind: ScrapeFailureKind::Auth,
            reason: reason.to_string(),
            attempts: 1,
        },
    )
}

/// A one-system inventory: two CPUs of `cpu_model` (e.g. "Intel Xeon Gold 6130",
/// "AMD EPYC 7302"), four 16 GiB DIMMs, the given host NICs, one drive, one firmware item,
/// and an iLO-style BMC NIC shared by every such machine.
pub fn inventory(system_model: &str, cpu_model: &str, host_macs: &[&str]) -> Inventory {
    let processors = (0..2)
        .map(|index| Processor {
            id: format!("CPU{index}"),
            socket: Some(format!("Proc {index}")),
            processor_type: Some("CPU".to_string()),
            state: Some("Enabled".to_string()),
            manufacturer: None,
            model: Some(cpu_model.to_string()),
            total_cores: Some(16),
            total_threads: Some(32),
            ..Processor::default()
        })
        .collect();
    let memory = (0..4)
        .map(|index| MemoryModule {
            id: format!("DIMM{index}"),
            state: Some("Enabled".to_string()),
            capacity_mib: Some(16384),
            device_locator: Some(format!("PROC 1 DIMM {index}")),
            ..MemoryModule::default()
        })
        .collect();
    let ethernet_interfaces = host_macs
        .iter()
        .enumerate()
        .map(|(index, text)| NetworkInterface {
            id: format!("NIC{index}"),
            mac: Some(mac(text)),
            permanent_mac: None,
            ipv4_addresses: Vec::new(),
            ..NetworkInterface::default()
        })
        .collect();
    Inventory {
        systems: vec![SystemInventory {
            id: "1".to_string(),
            manufacturer: Some("Example".to_string()),
            model: Some(system_model.to_string()),
            serial: Some(format!("SN-{system_model}")),
            processors,
            memory,
            ethernet_interfaces,
            drives: vec![Drive {
                path: "/redfish/v1/Systems/1/Storage/1/Drives/0".to_string(),
                serial: Some("DRIVE-0".to_string()),
                model: Some("SSD".to_string()),
                capacity_bytes: Some(960_000_000_000),
                media_type: Some("SSD".to_string()),
                protocol: Some("SATA".to_string()),
                ..Drive::default()
            }],
            ..SystemInventory::default()
        }],
        managers: vec![ManagerInventory {
            id: "1".to_string(),
            model: Some("iLO 5".to_string()),
            firmware_version: Some("2.72".to_string()),
            ethernet_interfaces: vec![NetworkInterface {
                id: "2".to_string(),
                mac: Some(mac(ILO_VIRTUAL_NIC)),
                permanent_mac: None,
                ipv4_addresses: Vec::new(),
                ..NetworkInterface::default()
            }],
        }],
        firmware: vec![FirmwareItem {
            id: "BIOS".to_string(),
            name: Some("System ROM".to_string()),
            version: Some("U30 v2.72".to_string()),
        }],
        ..Inventory::default()
    }
}

/// A whole onboarding (requested, located, scraped) at `first_sequence` onwards.
pub fn onboarding(first_sequence: u64, bmc_mac: &str, inventory: Inventory) -> Vec<StoredMessage> {
    let (requested, envelope) = request(first_sequence, bmc_mac);
    let found = located(&envelope, "10.0.0.1");
    let scrape = scraped(&found, inventory);
    vec![
        requested,
        stored(first_sequence + 1, &found),
        stored(first_sequence + 2, &scrape),
    ]
}

/// `metal-cli rescan` of the machine of `bmc_mac`: a fresh request with its own
/// correlation, naming the inventory at `previous` (event id unknown here: nil).
pub fn rescan(sequence: u64, bmc_mac: &str, previous: Option<u64>) -> Envelope {
    let mac = mac(bmc_mac);
    let id = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("rescan {sequence}").as_bytes(),
    );
    Envelope {
        event_id: id,
        event_type: subjects::RESCAN_REQUESTED.to_string(),
        machine_id: Some(metal_core::MachineId::from_bmc_mac(&mac)),
        bmc_mac: Some(mac),
        time: at(sequence as i64),
        correlation_id: id,
        causation_id: None,
        data: serde_json::to_value(RescanRequested {
            redfish_url: "https://10.0.0.1".to_string(),
            previous: previous.map(|sequence| InventoryRef {
                event_id: uuid::Uuid::nil(),
                sequence,
            }),
            requested_by: Some("test".to_string()),
        })
        .unwrap_or_default(),
    }
}

/// `metal-cli provision` of the machine of `bmc_mac` at `sequence`: its event id is also its
/// correlation id and the provisioning's id.
pub fn provision(sequence: u64, bmc_mac: &str, profile: Option<&str>) -> Envelope {
    let mac = mac(bmc_mac);
    let id = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("provision {bmc_mac} {sequence}").as_bytes(),
    );
    Envelope {
        event_id: id,
        event_type: subjects::PROVISION_REQUESTED.to_string(),
        machine_id: Some(metal_core::MachineId::from_bmc_mac(&mac)),
        bmc_mac: Some(mac),
        time: at(sequence as i64),
        correlation_id: id,
        causation_id: None,
        data: serde_json::to_value(ProvisionRequested {
            profile: profile.map(str::to_string),
            power: false,
            requested_by: Some("test".to_string()),
            force: false,
        })
        .unwrap_or_default(),
    }
}

/// boot-api's answer to `provision`: armed with `profile`, whose cmdline carries every
/// placeholder.
pub fn assigned(provision: &Envelope, profile: &str) -> Envelope {
    answer(
        provision,
        subjects::PROFILE_ASSIGNED,
        &ProfileAssigned {
            provision_id: provision.event_id,
            profile: profile.to_string(),
            chosen_by: "selectors".to_string(),
            kernel: format!("http://images.example/{profile}/vmlinuz"),
            initrd: vec![format!("http://images.example/{profile}/initrd.img")],
            cmdline: "console=ttyS0 id={machine_id} bmc={bmc_mac} BOOTIF={mac} p={profile} token={token} home={phone_home_url}".to_string(),
            power: false,
            redfish_url: Some("https://10.0.0.1".to_string()),
            purpose: Default::default(),
        },
    )
}

/// An event about the provisioning `provision` (boot served, install done), as boot-api
/// or redfish-scraper send them: correlated with the provisioning.
pub fn about_provisioning<D: Serialize>(
    provision: &Envelope,
    event_type: &str,
    data: &D,
    seconds_later: i64,
) -> Envelope {
    Envelope {
        event_id: metal_core::ids::derived_event_id(
            provision.event_id,
            &format!("{event_type}/{seconds_later}"),
        ),
        event_type: event_type.to_string(),
        machine_id: provision.machine_id,
        bmc_mac: provision.bmc_mac,
        time: provision.time + Duration::seconds(seconds_later),
        correlation_id: provision.event_id,
        causation_id: Some(provision.event_id),
        data: serde_json::to_value(data).unwrap_or_default(),
    }
}

/// `inventory` with its firmware replaced by `items`: (id, name, version).
pub fn with_firmware(
    mut inventory: Inventory,
    items: &[(&str, Option<&str>, Option<&str>)],
) -> Inventory {
    inventory.firmware = items
        .iter()
        .map(|(id, name, version)| FirmwareItem {
            id: id.to_string(),
            name: name.map(str::to_string),
            version: version.map(str::to_string),
        })
        .collect();
    inventory
}

/// `machine.scrape.failed` of the given kind answering `cause` (an unreachable or timed-out
/// BMC counts towards `machine.bmc.lost`).
pub fn scrape_failed_kind(cause: &Envelope, kind: ScrapeFailureKind, reason: &str) -> Envelope {
    answer(
        cause,
        subjects::SCRAPE_FAILED,
        &ScrapeFailed {
            redfish_url: "https://10.0.0.1".to_string(),
            kind,
            reason: reason.to_string(),
            attempts: 3,
        },
    )
}

/// The validator's `machine.bmc.lost` for the machine of `bmc_mac` at `at(sequence)`.
pub fn bmc_lost(sequence: u64, bmc_mac: &str, failing_since: OffsetDateTime) -> Envelope {
    let mac = mac(bmc_mac);
    let id = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("bmc lost {bmc_mac} {sequence}").as_bytes(),
    );
    Envelope {
        event_id: id,
        event_type: subjects::BMC_LOST.to_string(),
        machine_id: Some(metal_core::MachineId::from_bmc_mac(&mac)),
        bmc_mac: Some(mac),
        time: at(sequence as i64),
        correlation_id: id,
        causation_id: None,
        data: serde_json::to_value(metal_core::events::BmcLost {
            failing_since,
            last_seen: None,
            reason: "unreachable".to_string(),
        })
        .unwrap_or_default(),
    }
}
