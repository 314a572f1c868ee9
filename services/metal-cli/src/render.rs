//! Pure formatting of query replies and events for people. No I/O.

use std::fmt::Write as _;

use metal_core::inventory::InventorySummary;
use metal_core::locate::{AnswerKind, LocateReply};
use metal_core::query::{History, MachineDetail, MachineList, MachineRow, ReplayReport};
use metal_core::{subjects, Envelope};

/// Millisecond UTC times keep the timeline's columns aligned.
const TIMELINE_TIME: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
);

pub fn mib(value: u64) -> String {
    if value >= 1024 && value.is_multiple_of(1024) {
        format!("{} GiB", value / 1024)
    } else {
        format!("{value} MiB")
    }
}

fn bytes(value: u64) -> String {
    const GB: f64 = 1e9;
    if value as f64 >= 1e12 {
        format!("{:.2} TB", value as f64 / 1e12)
    } else {
        format!("{:.1} GB", value as f64 / GB)
    }
}

fn or_dash(value: Option<&str>) -> &str {
    value.filter(|v| !v.is_empty()).unwrap_or("-")
}

pub fn machine_table(list: &MachineList) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<36}  {:<17}  {:<13}  {:<28}  {:<5}  {:>9}  {:>4}  MODEL",
        "MACHINE ID", "BMC MAC", "STATE", "REDFISH URL", "CPUS", "MEMORY", "NICS"
    );
    for row in &list.machines {
        let _ = writeln!(
            out,
            "{:<36}  {:<17}  {:<13}  {:<28}  {:<5}  {:>9}  {:>4}  {}",
            row.machine_id.to_string(),
            row.bmc_mac.to_string(),
            row.state.as_str(),
            or_dash(row.redfish_url.as_deref()),
            row.cpu_count,
            mib(row.memory_mib),
            row.host_nic_count,
            or_dash(row.system_model.as_deref()),
        );
    }
    let _ = write!(
        out,
        "{} machine(s), projection at stream sequence {}",
        list.machines.len(),
        list.last_sequence
    );
    out
}

fn header(out: &mut String, row: &MachineRow) {
    let _ = writeln!(out, "machine    {}", row.machine_id);
    let _ = writeln!(
        out,
        "bmc        {}  {}  ip {}",
        row.bmc_mac,
        or_dash(row.redfish_url.as_deref()),
        or_dash(row.bmc_ip.as_deref())
    );
    let _ = write!(out, "state      {}", row.state.as_str());
    if let Some(reason) = &row.state_reason {
        let _ = write!(out, ": {reason}");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "request    {}", row.correlation_id);
}

fn summary_lines(out: &mut String, summary: &InventorySummary, row: &MachineRow) {
    for system in &summary.systems {
        let _ = writeln!(
            out,
            "system     {} {}  id {}  serial {}  uuid {}  bios {}",
            or_dash(system.manufacturer.as_deref()),
            or_dash(system.model.as_deref()),
            system.id,
            or_dash(system.serial.as_deref()),
            or_dash(system.uuid.as_deref()),
            or_dash(system.bios_version.as_deref()),
        );
        let models = if system.processors.models.is_empty() {
            String::new()
        } else {
            let mut unique = system.processors.models.clone();
            unique.dedup();
            format!(" × {}", unique.join(", "))
        };
        let _ = writeln!(
            out,
            "cpus       {}{models} ({} cores)",
            system.processors.count, system.processors.total_cores
        );
        if system.memory.dimm_count == 0 && row.memory_mib > 0 && summary.systems.len() == 1 {
            let _ = writeln!(
                out,
                "memory     {} (MemorySummary; the BMC lists no DIMMs)",
                mib(row.memory_mib)
            );
        } else {
            let _ = writeln!(
                out,
                "memory     {} DIMMs, {}",
                system.memory.dimm_count,
                mib(system.memory.total_mib)
            );
        }
        let macs: Vec<String> = system.host_nic_macs.iter().map(|m| m.to_string()).collect();
        let _ = writeln!(
            out,
            "host nics  {}",
            if macs.is_empty() {
                "-".into()
            } else {
                macs.join(", ")
            }
        );
        if system.drives.is_empty() {
            let _ = writeln!(out, "drives     -");
        }
        for drive in &system.drives {
            let _ = writeln!(
                out,
                "drive      {}  {}  {}",
                or_dash(drive.model.as_deref()),
                or_dash(drive.serial.as_deref()),
                drive
                    .capacity_bytes
                    .map(bytes)
                    .unwrap_or_else(|| "-".into())
            );
        }
        if system.simple_storage_devices > 0 {
            let _ = writeln!(
                out,
                "storage    {} simple storage devices",
                system.simple_storage_devices
            );
        }
    }
    let macs: Vec<String> = summary.bmc_macs.iter().map(|m| m.to_string()).collect();
    let _ = writeln!(
        out,
        "bmc nics   {}",
        if macs.is_empty() {
            "-".into()
        } else {
            macs.join(", ")
        }
    );
    let _ = write!(out, "firmware   {} entries", summary.firmware_count);
}

pub fn machine_detail(detail: &MachineDetail) -> String {
    let mut out = String::new();
    header(&mut out, &detail.machine);
    match &detail.summary {
        Some(summary) => summary_lines(&mut out, summary, &detail.machine),
        None => {
            let _ = write!(out, "inventory  none yet");
        }
    }
    if let Some(inventory) = &detail.inventory {
        detail_lines(&mut out, inventory);
    }
    out
}

/// The parts beyond the summary, one line each: boot settings, DIMMs, NICs, volumes,
/// network adapters and PCIe devices.
fn detail_lines(out: &mut String, inventory: &metal_core::inventory::Inventory) {
    for system in &inventory.systems {
        if let Some(boot) = &system.boot {
            let _ = write!(
                out,
                "\nboot       {}: override {} ({}, {})",
                system.id,
                or_dash(boot.override_target.as_deref()),
                or_dash(boot.override_enabled.as_deref()),
                or_dash(boot.override_mode.as_deref()),
            );
            if !boot.allowable_targets.is_empty() {
                let _ = write!(out, "; accepts {}", boot.allowable_targets.join(", "));
            }
        }
        for dimm in system.memory.iter().filter(|m| m.is_installed()) {
            let _ = write!(
                out,
                "\ndimm       {}  {}  {}  {}  serial {}",
                dimm.device_locator.as_deref().unwrap_or(&dimm.id),
                dimm.capacity_mib.map(mib).unwrap_or_else(|| "-".into()),
                or_dash(dimm.memory_type.as_deref()),
                dimm.speed_mhz
                    .map(|mhz| format!("{mhz} MHz"))
                    .unwrap_or_else(|| "-".into()),
                or_dash(dimm.serial.as_deref()),
            );
        }
        for nic in &system.ethernet_interfaces {
            let _ = write!(
                out,
                "\nnic        {}  {}  {}",
                nic.mac.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
                nic.speed_mbps
                    .map(|mbps| format!("{mbps} Mbps"))
                    .unwrap_or_else(|| "-".into()),
                or_dash(nic.link_status.as_deref()),
            );
        }
        for volume in &system.volumes {
            let _ = write!(
                out,
                "\nvolume     {}  {}  {}  {} drive(s)",
                volume.id,
                or_dash(volume.raid_type.as_deref()),
                volume
                    .capacity_bytes
                    .map(bytes)
                    .unwrap_or_else(|| "-".into()),
                volume.drives.len(),
            );
        }
    }
    for chassis in &inventory.chassis {
        for adapter in &chassis.network_adapters {
            let macs: Vec<String> = adapter
                .ports
                .iter()
                .flat_map(|p| p.macs.iter().map(|m| m.to_string()))
                .collect();
            let _ = write!(
                out,
                "\nadapter    {}  {} {}  ports {}",
                adapter.id,
                or_dash(adapter.manufacturer.as_deref()),
                or_dash(adapter.model.as_deref()),
                if macs.is_empty() {
                    "-".into()
                } else {
                    macs.join(", ")
                },
            );
        }
        for device in &chassis.pcie_devices {
            let ids: Vec<String> = device
                .functions
                .iter()
                .filter_map(|f| {
                    Some(format!(
                        "{}:{}",
                        f.vendor_id.as_deref()?,
                        f.device_id.as_deref()?
                    ))
                })
                .collect();
            let _ = write!(
                out,
                "\npcie       {}  {}  {}  {}",
                device.address.as_deref().unwrap_or(&device.id),
                or_dash(device.name.as_deref()),
                or_dash(device.device_type.as_deref()),
                if ids.is_empty() {
                    "-".into()
                } else {
                    ids.join(", ")
                },
            );
        }
    }
}

fn timeline_time(time: time::OffsetDateTime) -> String {
    time.to_offset(time::UtcOffset::UTC)
        .format(TIMELINE_TIME)
        .unwrap_or_default()
}

pub fn history(history: &History) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "machine {}", history.machine_id);
    let _ = writeln!(out, "{:>7}  {:<25}  {:<26}  WHAT", "SEQ", "TIME", "EVENT");
    for entry in &history.events {
        let time = timeline_time(entry.time);
        let _ = writeln!(
            out,
            "{:>7}  {:<25}  {:<26}  {}",
            entry.sequence, time, entry.event_type, entry.summary
        );
    }
    let _ = write!(out, "{} event(s)", history.events.len());
    out
}

/// A rescan's changes in words, one per line.
pub fn hardware_changes(changed: Option<&metal_core::events::HardwareChanged>) -> String {
    match changed {
        Some(changed) if !changed.changes.is_empty() => {
            let mut out = format!(
                "{} hardware change(s) since the inventory at sequence {}:",
                changed.changes.len(),
                changed.previous.sequence
            );
            for change in &changed.changes {
                out.push_str("\n  ");
                out.push_str(&change.describe());
            }
            out
        }
        _ => "no hardware changes".to_string(),
    }
}

pub fn replay(report: &ReplayReport) -> String {
    format!(
        "replayed {} events from sequence 1 in {:.2} s into a fresh projection and swapped it in at sequence {}\nold digest {}\nnew digest {}\n{}",
        report.events_applied,
        report.seconds,
        report.last_sequence,
        report.old_digest,
        report.new_digest,
        if report.identical {
            "identical: the rebuilt projection equals the one it replaced"
        } else {
            "DIFFERENT: the rebuilt projection does not equal the one it replaced"
        }
    )
}

/// One progress line of `onboard` for an event of the request being followed.
pub fn progress(event: &Envelope) -> String {
    let text = |key: &str| {
        event
            .data
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    match event.event_type.as_str() {
        subjects::ONBOARD_REQUESTED => "requested".to_string(),
        subjects::BMC_LOCATED => {
            let mut source = text("source");
            if let Some(name) = event.data["source_name"].as_str() {
                source = format!("{source} {name}");
            }
            let mut line = format!("located    BMC at {} (from {source}", text("redfish_url"));
            if let Some(seen) = event.data["last_seen"].as_str() {
                line.push_str(&format!(", last seen {seen}"));
            }
            line.push(')');
            let also = event.data["also_seen"]
                .as_array()
                .map(Vec::len)
                .unwrap_or(0);
            if also > 0 {
                line.push_str(&format!("; {also} other sighting(s), see history --json"));
            }
            line
        }
        subjects::LOCATE_FAILED => {
            format!("failed     could not locate the BMC: {}", text("reason"))
        }
        subjects::RESCAN_REQUESTED => format!("rescan     of {} requested", text("redfish_url")),
        subjects::HARDWARE_CHANGED => {
            let count = event.data["changes"].as_array().map(Vec::len).unwrap_or(0);
            format!("changed    {count} hardware change(s)")
        }
        subjects::HARDWARE_SCRAPED => {
            let systems = event.data["inventory"]["systems"]
                .as_array()
                .map(Vec::len)
                .unwrap_or(0);
            format!(
                "scraped    Redfish inventory of {systems} system(s) from {}",
                text("redfish_url")
            )
        }
        subjects::SCRAPE_FAILED => format!(
            "failed     Redfish scrape ({}): {}",
            text("kind"),
            text("reason")
        ),
        subjects::ONBOARD_REJECTED => format!("rejected   {}", text("reason")),
        other => other.to_string(),
    }
}

/// What every locator source says about a MAC.
pub fn locate(reply: &LocateReply) -> String {
    let mut out = String::new();
    match &reply.located {
        Some(located) => {
            let _ = write!(
                out,
                "{} would be located at {} (from {}",
                reply.bmc_mac, located.redfish_url, located.sighting.source
            );
            if let Some(name) = &located.sighting.source_name {
                let _ = write!(out, " {name}");
            }
            if let Some(seen) = located.sighting.last_seen {
                let _ = write!(out, ", last seen {}", timeline_time(seen));
            }
            let _ = writeln!(out, ")");
        }
        None => {
            let _ = writeln!(out, "{} is not seen by any source", reply.bmc_mac);
        }
    }
    if reply.sources.is_empty() {
        let _ = writeln!(out, "  (no locator source is configured)");
    }
    let labels: Vec<String> = reply
        .sources
        .iter()
        .map(|source| match &source.source_name {
            Some(name) => format!("{} {name}", source.source),
            None => source.source.clone(),
        })
        .collect();
    let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    for (source, label) in reply.sources.iter().zip(&labels) {
        let mark = match (source.answer, source.permanent) {
            (AnswerKind::Seen, _) => "seen",
            (AnswerKind::NotSeen, _) => "-",
            (AnswerKind::Failed, true) => "FAILED (needs an operator)",
            (AnswerKind::Failed, false) => "failed",
        };
        let _ = writeln!(
            out,
            "  {label:<width$}  {mark:<6}  {}",
            one_line(&source.said)
        );
    }
    out.trim_end().to_string()
}

fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        assert_eq!(mib(98304), "96 GiB");
        assert_eq!(mib(1000), "1000 MiB");
        assert_eq!(mib(0), "0 MiB");
    }
}
