//! Reading Redfish documents into the normalised inventory's parts, purely and leniently:
//! numbers may come as strings or floats, properties may carry any published spelling
//! (the oldest services write `MacAddress` and `FactoryMacAddress`, `Status.State` as an
//! object, `MemoryType` for `MemoryDeviceType`), and anything unreadable is `None`.

use metal_core::inventory::{
    AdapterPort, BootOption, BootSettings, Drive, FirmwareItem, MemoryModule, NetworkInterface,
    PcieFunction, Processor, SimpleStorageDevice, Volume,
};
use metal_core::Mac;
use serde_json::Value;

use crate::source::normalise_path;

pub fn processor(path: &str, doc: &Value) -> Processor {
    Processor {
        id: resource_id(path, doc),
        socket: text(doc, "Socket"),
        processor_type: text(doc, "ProcessorType"),
        state: state(doc),
        manufacturer: text(doc, "Manufacturer"),
        model: text(doc, "Model"),
        total_cores: number(doc, "TotalCores"),
        total_threads: number(doc, "TotalThreads"),
        max_speed_mhz: number(doc, "MaxSpeedMHz").or_else(|| number(doc, "MaxSpeedMhz")),
    }
}

pub fn memory_module(path: &str, doc: &Value) -> MemoryModule {
    let slot = doc
        .get("MemoryLocation")
        .and_then(|location| {
            let socket = text(location, "Socket")?;
            let slot = text(location, "Slot")?;
            Some(format!("socket {socket} slot {slot}"))
        })
        .or_else(|| service_label(doc));
    MemoryModule {
        id: resource_id(path, doc),
        state: state(doc),
        capacity_mib: number(doc, "CapacityMiB"),
        device_locator: text(doc, "DeviceLocator").or(slot),
        memory_type: text(doc, "MemoryDeviceType").or_else(|| text(doc, "MemoryType")),
        speed_mhz: number(doc, "OperatingSpeedMhz")
            .or_else(|| number(doc, "OperatingSpeedMHz"))
            .or_else(|| {
                doc.get("AllowedSpeedsMHz")
                    .and_then(Value::as_array)
                    .and_then(|speeds| speeds.iter().find_map(unsigned))
            }),
        serial: text(doc, "SerialNumber"),
        manufacturer: text(doc, "Manufacturer"),
        part_number: text(doc, "PartNumber"),
    }
}

/// A host or BMC NIC. Every published spelling of the MACs counts: `MACAddress` and
/// `PermanentMACAddress` (EthernetInterface 1.x), `MacAddress` and `FactoryMacAddress`
/// (the pre-1.0 schema some early services still serve).
pub fn network_interface(path: &str, doc: &Value) -> NetworkInterface {
    let permanent_mac = first_mac(doc, &["PermanentMACAddress", "FactoryMacAddress"]);
    // The permanent MAC stands in only when no current MAC is written at all (missing or null).
    let current_written = ["MACAddress", "MacAddress"]
        .iter()
        .any(|key| doc.get(*key).is_some_and(|value| !value.is_null()));
    let mac = if current_written {
        first_mac(doc, &["MACAddress", "MacAddress"])
    } else {
        permanent_mac
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
        speed_mbps: number(doc, "SpeedMbps"),
        link_status: text(doc, "LinkStatus"),
    }
}

pub fn is_type(doc: &Value, type_name: &str) -> bool {
    doc.get("@odata.type")
        .and_then(Value::as_str)
        .is_some_and(|t| {
            t.trim_start_matches('#')
                .starts_with(&format!("{type_name}."))
        })
}

pub fn drive(path: &str, doc: &Value) -> Drive {
    let bay = doc
        .get("PhysicalLocation")
        .and_then(|location| location.get("PartLocation"))
        .and_then(|part| text(part, "ServiceLabel").or_else(|| text(part, "LocationOrdinalValue")))
        .or_else(|| {
            // Drive 1.0–1.3: `Location` is an array of {Info, InfoFormat}.
            doc.get("Location")
                .and_then(Value::as_array)
                .and_then(|locations| locations.iter().find_map(|l| text(l, "Info")))
        });
    Drive {
        path: normalise_path(path),
        serial: text(doc, "SerialNumber"),
        model: text(doc, "Model"),
        capacity_bytes: number(doc, "CapacityBytes"),
        media_type: text(doc, "MediaType"),
        protocol: text(doc, "Protocol"),
        id: resource_id(path, doc),
        bay,
    }
}

pub fn volume(path: &str, doc: &Value) -> Volume {
    let drives = doc
        .get("Links")
        .and_then(|links| links.get("Drives"))
        .and_then(Value::as_array)
        .map(|links| {
            links
                .iter()
                .filter_map(odata_id)
                .map(|l| normalise_path(&l))
                .collect()
        })
        .unwrap_or_default();
    Volume {
        path: normalise_path(path),
        id: resource_id(path, doc),
        name: text(doc, "Name"),
        capacity_bytes: number(doc, "CapacityBytes"),
        raid_type: text(doc, "RAIDType").or_else(|| text(doc, "VolumeType")),
        drives,
    }
}

pub fn simple_storage_devices(path: &str, doc: &Value) -> Vec<SimpleStorageDevice> {
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
                    capacity_bytes: number(device, "CapacityBytes"),
                    state: state(device),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn boot_settings(system: &Value, options: Vec<BootOption>) -> Option<BootSettings> {
    let boot = system.get("Boot")?;
    let strings = |key: &str| -> Vec<String> {
        boot.get(key)
            .and_then(Value::as_array)
            .map(|values| values.iter().filter_map(as_text).collect())
            .unwrap_or_default()
    };
    Some(BootSettings {
        override_target: text(boot, "BootSourceOverrideTarget"),
        override_enabled: text(boot, "BootSourceOverrideEnabled"),
        override_mode: text(boot, "BootSourceOverrideMode"),
        allowable_targets: strings("BootSourceOverrideTarget@Redfish.AllowableValues"),
        boot_order: strings("BootOrder"),
        options,
    })
}

pub fn boot_option(path: &str, doc: &Value) -> BootOption {
    BootOption {
        id: resource_id(path, doc),
        reference: text(doc, "BootOptionReference"),
        display_name: text(doc, "DisplayName"),
        uefi_device_path: text(doc, "UefiDevicePath"),
    }
}

pub fn firmware_item(path: &str, doc: &Value) -> FirmwareItem {
    FirmwareItem {
        id: resource_id(path, doc),
        name: text(doc, "Name"),
        version: text(doc, "Version"),
    }
}

/// One port of a network adapter: `Port` (`Ethernet.AssociatedMACAddresses`), the older
/// `NetworkPort` (`AssociatedNetworkAddresses`) or a `NetworkDeviceFunction`
/// (`Ethernet.MACAddress`, `Ethernet.PermanentMACAddress`).
pub fn adapter_port(path: &str, doc: &Value) -> AdapterPort {
    let ethernet = doc.get("Ethernet");
    let mut macs: Vec<Mac> = Vec::new();
    let mut push = |value: &Value| {
        if let Some(mac) = usable_mac(value) {
            if !macs.contains(&mac) {
                macs.push(mac);
            }
        }
    };
    for list in [
        ethernet.and_then(|e| e.get("AssociatedMACAddresses")),
        doc.get("AssociatedNetworkAddresses"),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(values) = list.as_array() {
            values.iter().for_each(&mut push);
        }
    }
    if let Some(ethernet) = ethernet {
        for key in ["MACAddress", "PermanentMACAddress"] {
            if let Some(value) = ethernet.get(key) {
                push(value);
            }
        }
    }
    let speed_mbps = number(doc, "CurrentSpeedGbps")
        .map(|gbps| gbps * 1000)
        .or_else(|| number(doc, "CurrentLinkSpeedMbps"))
        .or_else(|| {
            doc.get("SupportedLinkCapabilities")
                .and_then(Value::as_array)
                .and_then(|caps| caps.iter().find_map(|c| number(c, "LinkSpeedMbps")))
        });
    AdapterPort {
        id: resource_id(path, doc),
        macs,
        link_status: text(doc, "LinkStatus"),
        speed_mbps,
    }
}

pub fn pcie_function(path: &str, doc: &Value) -> PcieFunction {
    PcieFunction {
        id: resource_id(path, doc),
        function_type: text(doc, "FunctionType"),
        device_class: text(doc, "DeviceClass"),
        vendor_id: pci_id(doc, "VendorId"),
        device_id: pci_id(doc, "DeviceId"),
        subsystem_vendor_id: pci_id(doc, "SubsystemVendorId"),
        subsystem_id: pci_id(doc, "SubsystemId"),
        class_code: text(doc, "ClassCode"),
    }
}

/// Where a PCIe device sits: an OEM bus/device/function (HPE, Dell and others write one),
/// else its slot's label, else `None`.
pub fn pcie_address(doc: &Value) -> Option<String> {
    let oem_bdf = doc.get("Oem").and_then(Value::as_object).and_then(|oem| {
        oem.values().find_map(|vendor| {
            let bus = number(vendor, "BusNumber")?;
            let device = number(vendor, "DeviceNumber")?;
            let function = number(vendor, "FunctionNumber").unwrap_or(0);
            Some(format!("{bus:02x}:{device:02x}.{function:x}"))
        })
    });
    oem_bdf.or_else(|| doc.get("Slot").and_then(service_label))
}

/// A PCI id as `0x` and lower-case hex: the standard `0x10DE`, and the plain decimal
/// some services write (HPE iLO 5 writes `"4139"` for 0x102b).
pub fn normalise_pci_id(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let value = match raw.strip_prefix("0x").or_else(|| raw.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => raw.parse::<u32>().ok()?,
    };
    Some(format!("0x{value:04x}"))
}

fn pci_id(doc: &Value, key: &str) -> Option<String> {
    match doc.get(key)? {
        Value::String(s) => normalise_pci_id(s),
        Value::Number(n) => n.as_u64().map(|v| format!("0x{v:04x}")),
        _ => None,
    }
}

fn service_label(doc: &Value) -> Option<String> {
    let part = doc.get("Location")?.get("PartLocation")?;
    text(part, "ServiceLabel").or_else(|| text(part, "LocationOrdinalValue"))
}

/// The first of `keys` that holds a usable MAC.
fn first_mac(doc: &Value, keys: &[&str]) -> Option<Mac> {
    keys.iter()
        .find_map(|key| doc.get(*key).and_then(usable_mac))
}

/// A MAC a BMC reports, if it is one: not empty, parseable and not all zeros.
pub fn usable_mac(value: &Value) -> Option<Mac> {
    let mac = Mac::parse_any(value.as_str()?).ok()?;
    (mac.bytes() != [0; 6]).then_some(mac)
}

fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `doc[key]` as text: strings as served, numbers printed; anything else is `None`.
pub fn text(doc: &Value, key: &str) -> Option<String> {
    doc.get(key).and_then(as_text)
}

/// `Status.State`, also where an old service nests it one level deeper
/// (`"State": {"State": "Enabled", "Health": "OK"}`).
pub fn state(doc: &Value) -> Option<String> {
    let state = doc.get("Status")?.get("State")?;
    as_text(state).or_else(|| text(state, "State"))
}

pub fn number(doc: &Value, key: &str) -> Option<u64> {
    doc.get(key).and_then(unsigned)
}

/// A non-negative integer from a number, a float or a numeric string.
pub fn unsigned(value: &Value) -> Option<u64> {
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

pub fn float(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|f: &f64| f.is_finite())
}

pub fn odata_id(value: &Value) -> Option<String> {
    value
        .get("@odata.id")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
}

pub fn link(doc: &Value, property: &str) -> Option<String> {
    doc.get(property).and_then(odata_id)
}

fn last_segment(path: &str) -> String {
    normalise_path(path)
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The resource's `Id`, else the last segment of its path.
pub fn resource_id(path: &str, doc: &Value) -> String {
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

    #[test]
    fn pre_1_0_spellings_keep_the_mac() {
        let nic = network_interface(
            "/x/1",
            &json!({"MacAddress": "AA:BB:CC:DD:EE:10", "FactoryMacAddress": "AA:BB:CC:DD:EE:11"}),
        );
        assert_eq!(nic.mac.unwrap().to_string(), "aa:bb:cc:dd:ee:10");
        assert_eq!(nic.permanent_mac.unwrap().to_string(), "aa:bb:cc:dd:ee:11");
        let nic = network_interface("/x/1", &json!({"FactoryMacAddress": "aa:bb:cc:dd:ee:12"}));
        assert_eq!(nic.mac.unwrap().to_string(), "aa:bb:cc:dd:ee:12");
    }

    #[test]
    fn nested_status_state() {
        let doc = json!({"Status": {"State": {"Health": "OK", "State": "Enabled"}}});
        assert_eq!(state(&doc).as_deref(), Some("Enabled"));
        assert_eq!(
            state(&json!({"Status": {"State": "Absent"}})).as_deref(),
            Some("Absent")
        );
        assert_eq!(state(&json!({"Status": {}})), None);
    }

    #[test]
    fn pci_ids() {
        assert_eq!(normalise_pci_id("0x10DE").as_deref(), Some("0x10de"));
        assert_eq!(normalise_pci_id("4139").as_deref(), Some("0x102b"));
        assert_eq!(normalise_pci_id("0xZZ"), None);
        assert_eq!(
            pcie_function("/f/1", &json!({"VendorId": 4318}))
                .vendor_id
                .as_deref(),
            Some("0x10de")
        );
    }

    #[test]
    fn adapter_ports_in_every_shape() {
        let port = adapter_port(
            "/p/1",
            &json!({"Ethernet": {"AssociatedMACAddresses": ["AA:BB:CC:00:00:01"]}, "CurrentSpeedGbps": 25}),
        );
        assert_eq!(port.macs.len(), 1);
        assert_eq!(port.speed_mbps, Some(25000));
        let old = adapter_port(
            "/p/2",
            &json!({"AssociatedNetworkAddresses": ["AA:BB:CC:00:00:02", "AA:BB:CC:00:00:02"]}),
        );
        assert_eq!(old.macs.len(), 1);
        let function = adapter_port(
            "/p/3",
            &json!({"Ethernet": {"MACAddress": "AA:BB:CC:00:00:03", "PermanentMACAddress": "AA:BB:CC:00:00:04"}}),
        );
        assert_eq!(function.macs.len(), 2);
    }
}
