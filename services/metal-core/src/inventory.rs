//! The normalised hardware inventory carried by `machine.hardware.scraped`, and its
//! summary in the `expected.json` format of the shared Redfish mockups.
//!
//! The inventory keeps what the BMC said (including absent CPUs and empty slots);
//! the counting rules live in [`InventorySummary::of`], in one place.

use serde::{Deserialize, Serialize};

pub mod diff;

use crate::mac::Mac;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Inventory {
    pub service: ServiceInfo,
    pub systems: Vec<SystemInventory>,
    pub managers: Vec<ManagerInventory>,
    pub firmware: Vec<FirmwareItem>,
    /// Links on the walk that the service lacks or answered 404 for (e.g. `UpdateService`).
    pub absent: Vec<String>,
    /// Chassis with their network adapters and PCIe devices (absent from older events).
    #[serde(default)]
    pub chassis: Vec<ChassisInventory>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceInfo {
    pub redfish_version: Option<String>,
    pub vendor: Option<String>,
    pub product: Option<String>,
    pub uuid: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SystemInventory {
    pub id: String,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub uuid: Option<String>,
    pub bios_version: Option<String>,
    pub power_state: Option<String>,
    pub processors: Vec<Processor>,
    pub memory: Vec<MemoryModule>,
    /// `MemorySummary.TotalSystemMemoryGiB`, for services without a Memory collection.
    pub memory_summary_gib: Option<f64>,
    pub ethernet_interfaces: Vec<NetworkInterface>,
    pub drives: Vec<Drive>,
    pub simple_storage: Vec<SimpleStorageDevice>,
    /// Collections of this system that are not there (no link, or 404).
    pub absent: Vec<String>,
    #[serde(default)]
    pub sku: Option<String>,
    /// The `Boot` object: override settings, what the override accepts, and boot options.
    #[serde(default)]
    pub boot: Option<BootSettings>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BootSettings {
    pub override_target: Option<String>,
    pub override_enabled: Option<String>,
    pub override_mode: Option<String>,
    /// `BootSourceOverrideTarget@Redfish.AllowableValues`; empty when the service does not say.
    pub allowable_targets: Vec<String>,
    pub boot_order: Vec<String>,
    pub options: Vec<BootOption>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BootOption {
    pub id: String,
    pub reference: Option<String>,
    pub display_name: Option<String>,
    pub uefi_device_path: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Volume {
    /// The volume's resource path, normalised.
    pub path: String,
    pub id: String,
    pub name: Option<String>,
    pub capacity_bytes: Option<u64>,
    /// `RAIDType`, else the older `VolumeType`.
    pub raid_type: Option<String>,
    /// Normalised paths of the drives the volume is built on.
    pub drives: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChassisInventory {
    pub id: String,
    pub chassis_type: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub part_number: Option<String>,
    pub network_adapters: Vec<NetworkAdapter>,
    pub pcie_devices: Vec<PcieDevice>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkAdapter {
    pub id: String,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub part_number: Option<String>,
    pub ports: Vec<AdapterPort>,
}

/// A port of a network adapter (`Ports`, the older `NetworkPorts`, or a
/// `NetworkDeviceFunction`), with the MACs it carries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdapterPort {
    pub id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub macs: Vec<Mac>,
    pub link_status: Option<String>,
    pub speed_mbps: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PcieDevice {
    pub id: String,
    /// The device's resource path, normalised.
    pub path: String,
    pub name: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub device_type: Option<String>,
    pub firmware_version: Option<String>,
    /// Where the device sits: a vendor's bus:device.function, else the slot's label.
    pub address: Option<String>,
    pub functions: Vec<PcieFunction>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PcieFunction {
    pub id: String,
    pub function_type: Option<String>,
    pub device_class: Option<String>,
    /// PCI ids as `0x` and four lower-case hex digits, whatever the service wrote.
    pub vendor_id: Option<String>,
    pub device_id: Option<String>,
    pub subsystem_vendor_id: Option<String>,
    pub subsystem_id: Option<String>,
    pub class_code: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Processor {
    pub id: String,
    pub socket: Option<String>,
    pub processor_type: Option<String>,
    /// `Status.State`; `None` when the resource has no `Status`.
    pub state: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub total_cores: Option<u64>,
    pub total_threads: Option<u64>,
    #[serde(default)]
    pub max_speed_mhz: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemoryModule {
    pub id: String,
    pub state: Option<String>,
    pub capacity_mib: Option<u64>,
    pub device_locator: Option<String>,
    /// `MemoryDeviceType` (DDR4, ...), else `MemoryType`.
    #[serde(default)]
    pub memory_type: Option<String>,
    /// `OperatingSpeedMhz` (so spelled by the schema), else the first allowed speed.
    #[serde(default)]
    pub speed_mhz: Option<u64>,
    #[serde(default)]
    pub serial: Option<String>,
    #[serde(default)]
    pub manufacturer: Option<String>,
    #[serde(default)]
    pub part_number: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkInterface {
    pub id: String,
    /// `MACAddress`, or `PermanentMACAddress` when that is missing; `None` when neither
    /// is a usable MAC (empty, null, all zeros).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub mac: Option<Mac>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub permanent_mac: Option<Mac>,
    pub ipv4_addresses: Vec<String>,
    #[serde(default)]
    pub speed_mbps: Option<u64>,
    /// `LinkStatus` (LinkUp, LinkDown, NoLink).
    #[serde(default)]
    pub link_status: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Drive {
    /// The drive's resource path, normalised (no trailing slash).
    pub path: String,
    pub serial: Option<String>,
    pub model: Option<String>,
    pub capacity_bytes: Option<u64>,
    pub media_type: Option<String>,
    pub protocol: Option<String>,
    #[serde(default)]
    pub id: String,
    /// The drive's bay or slot: `PhysicalLocation.PartLocation`, else the older `Location`.
    #[serde(default)]
    pub bay: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SimpleStorageDevice {
    pub controller: String,
    pub name: Option<String>,
    pub model: Option<String>,
    pub capacity_bytes: Option<u64>,
    pub state: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ManagerInventory {
    pub id: String,
    pub model: Option<String>,
    pub firmware_version: Option<String>,
    pub ethernet_interfaces: Vec<NetworkInterface>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FirmwareItem {
    pub id: String,
    pub name: Option<String>,
    pub version: Option<String>,
}

/// CPU vendor as far as boot profiles care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuVendor {
    Intel,
    Amd,
    Other,
}

impl Processor {
    /// A CPU that is there: `ProcessorType` CPU (or unstated) and not `Absent`.
    pub fn is_present_cpu(&self) -> bool {
        let is_cpu = self.processor_type.as_deref().is_none_or(|t| t == "CPU");
        is_cpu && self.state.as_deref() != Some("Absent")
    }

    pub fn vendor(&self) -> CpuVendor {
        let text = format!(
            "{} {}",
            self.manufacturer.as_deref().unwrap_or(""),
            self.model.as_deref().unwrap_or("")
        )
        .to_ascii_lowercase();
        if text.contains("intel") || text.contains("xeon") {
            CpuVendor::Intel
        } else if text.contains("amd")
            || text.contains("advanced micro devices")
            || text.contains("epyc")
        {
            CpuVendor::Amd
        } else {
            CpuVendor::Other
        }
    }
}

impl MemoryModule {
    pub fn is_installed(&self) -> bool {
        match self.state.as_deref() {
            Some(state) => state == "Enabled",
            None => self.capacity_mib.unwrap_or(0) > 0,
        }
    }
}

impl SystemInventory {
    pub fn host_nic_macs(&self) -> Vec<Mac> {
        unique_sorted(self.ethernet_interfaces.iter().filter_map(|nic| nic.mac))
    }

    pub fn cpus(&self) -> impl Iterator<Item = &Processor> {
        self.processors.iter().filter(|p| p.is_present_cpu())
    }

    /// Installed memory: the DIMMs' sum, or `MemorySummary` when the service lists no DIMMs.
    pub fn memory_mib(&self) -> u64 {
        let dimms: u64 = self
            .memory
            .iter()
            .filter(|m| m.is_installed())
            .filter_map(|m| m.capacity_mib)
            .sum();
        match self.memory_summary_gib {
            Some(gib) if dimms == 0 && gib.is_finite() && gib > 0.0 => {
                (gib * 1024.0).round() as u64
            }
            _ => dimms,
        }
    }
}

impl Inventory {
    pub fn bmc_macs(&self) -> Vec<Mac> {
        unique_sorted(
            self.managers
                .iter()
                .flat_map(|m| m.ethernet_interfaces.iter().filter_map(|nic| nic.mac)),
        )
    }

    pub fn host_nic_macs(&self) -> Vec<Mac> {
        unique_sorted(self.systems.iter().flat_map(|s| s.host_nic_macs()))
    }

    pub fn memory_mib(&self) -> u64 {
        self.systems.iter().map(SystemInventory::memory_mib).sum()
    }

    /// The vendor of the present CPUs, when they agree.
    pub fn cpu_vendor(&self) -> Option<CpuVendor> {
        let mut vendors = self
            .systems
            .iter()
            .flat_map(|s| s.cpus())
            .map(Processor::vendor);
        let first = vendors.next()?;
        vendors.all(|v| v == first).then_some(first)
    }
}

fn unique_sorted(macs: impl Iterator<Item = Mac>) -> Vec<Mac> {
    let mut out: Vec<Mac> = macs.collect();
    out.sort();
    out.dedup();
    out
}

/// The inventory in the `expected.json` format of `shared/redfish-mockups` (without `notes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InventorySummary {
    pub systems: Vec<SystemSummary>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub bmc_macs: Vec<Mac>,
    pub firmware_count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SystemSummary {
    pub id: String,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub uuid: Option<String>,
    pub bios_version: Option<String>,
    pub processors: ProcessorSummary,
    pub memory: MemorySummary,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub host_nic_macs: Vec<Mac>,
    pub drives: Vec<DriveSummary>,
    pub simple_storage_devices: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessorSummary {
    pub count: u64,
    pub models: Vec<String>,
    pub total_cores: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemorySummary {
    pub dimm_count: u64,
    pub total_mib: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DriveSummary {
    pub serial: Option<String>,
    pub model: Option<String>,
    pub capacity_bytes: Option<u64>,
}

impl InventorySummary {
    pub fn of(inventory: &Inventory) -> InventorySummary {
        let mut systems: Vec<SystemSummary> =
            inventory.systems.iter().map(SystemSummary::of).collect();
        systems.sort_by(|a, b| a.id.cmp(&b.id));
        InventorySummary {
            systems,
            bmc_macs: inventory.bmc_macs(),
            firmware_count: inventory.firmware.len() as u64,
        }
    }
}

impl SystemSummary {
    fn of(system: &SystemInventory) -> SystemSummary {
        let cpus: Vec<&Processor> = system.cpus().collect();
        let mut models: Vec<String> = cpus
            .iter()
            .filter_map(|p| p.model.as_deref())
            .map(|m| m.trim().to_string())
            .collect();
        models.sort();
        let dimms: Vec<&MemoryModule> = system.memory.iter().filter(|m| m.is_installed()).collect();
        let mut drives: Vec<DriveSummary> = system
            .drives
            .iter()
            .map(|d| DriveSummary {
                serial: d.serial.clone(),
                model: d.model.as_deref().map(|m| m.trim().to_string()),
                capacity_bytes: d.capacity_bytes,
            })
            .collect();
        drives.sort();
        SystemSummary {
            id: system.id.clone(),
            manufacturer: system.manufacturer.clone(),
            model: system.model.as_deref().map(|m| m.trim().to_string()),
            serial: system.serial.clone(),
            uuid: system.uuid.clone(),
            bios_version: system.bios_version.clone(),
            processors: ProcessorSummary {
                count: cpus.len() as u64,
                models,
                total_cores: cpus.iter().filter_map(|p| p.total_cores).sum(),
            },
            memory: MemorySummary {
                dimm_count: dimms.len() as u64,
                total_mib: dimms.iter().filter_map(|m| m.capacity_mib).sum(),
            },
            host_nic_macs: system.host_nic_macs(),
            drives,
            simple_storage_devices: system
                .simple_storage
                .iter()
                .filter(|d| d.state.as_deref() != Some("Absent"))
                .count() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_falls_back_to_the_summary_only_without_dimms() {
        let mut system = SystemInventory {
            memory_summary_gib: Some(64.0),
            ..SystemInventory::default()
        };
        assert_eq!(system.memory_mib(), 65536);
        system.memory.push(MemoryModule {
            id: "DIMM1".into(),
            state: Some("Enabled".into()),
            capacity_mib: Some(32768),
            ..MemoryModule::default()
        });
        assert_eq!(system.memory_mib(), 32768);
    }
}
