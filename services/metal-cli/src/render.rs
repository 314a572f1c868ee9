//! Pure formatting of query replies and events for people. No I/O.

use std::fmt::Write as _;

use std::collections::BTreeMap;

use metal_core::events::{PowerDone, PowerFailed, ProfileAssigned};
use metal_core::inventory::InventorySummary;
use metal_core::locate::{AnswerKind, LocateReply};
use metal_core::query::{
    History, MachineDetail, MachineList, MachineRow, Provisioning, ReplayReport, UnknownMacs,
};
use metal_core::{one_line, subjects, Envelope};

use crate::fleet::ProfileCheck;

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

/// Operator tags as `key=value` words, values quoted when they hold spaces or quotes.
pub fn tags(tags: &BTreeMap<String, String>) -> String {
    if tags.is_empty() {
        return "-".to_string();
    }
    tags.iter()
        .map(|(key, value)| {
            let value = one_line(value);
            if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == '"') {
                format!("{}={value:?}", one_line(key))
            } else {
                format!("{}={value}", one_line(key))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `profile` line of `show`: which profile, since when, and from which request.
pub fn provisioning(provisioning: Option<&Provisioning>) -> String {
    match provisioning {
        None => "-".to_string(),
        Some(p) => format!(
            "{} since {} (provisioning {}, kernel {})",
            one_line(&p.profile),
            timeline_time(p.assigned_at),
            p.provision_id,
            one_line(&p.kernel)
        ),
    }
}

/// The `spec` line of `show`: the expected spec and the validator's last verdict.
pub fn spec_line(detail: &MachineDetail) -> String {
    let expected = detail
        .expected_spec
        .as_deref()
        .map(|spec| format!("expected {}", one_line(spec)));
    let verdict = detail.validation.as_ref().map(|v| {
        if v.valid {
            format!("meets {} ({})", one_line(&v.spec), timeline_time(v.at))
        } else {
            let failures: Vec<String> = v
                .failures
                .iter()
                .map(|f| {
                    format!(
                        "{}: wanted {}, found {}",
                        one_line(&f.rule),
                        one_line(&f.wanted),
                        one_line(&f.found)
                    )
                })
                .collect();
            format!(
                "BREAKS {} ({}): {}",
                one_line(&v.spec),
                timeline_time(v.at),
                failures.join("; ")
            )
        }
    });
    match (expected, verdict) {
        (None, None) => "-".to_string(),
        (Some(e), None) => format!("{e}, not validated yet"),
        (None, Some(v)) => v,
        (Some(e), Some(v)) => format!("{e}; {v}"),
    }
}

/// The `bmc` line of `show`, when there is something to say about the BMC's health.
pub fn bmc_health_line(health: &metal_core::query::BmcHealth) -> Option<String> {
    let since = health.failing_since?;
    let state = if health.lost { "LOST" } else { "failing" };
    Some(format!(
        "{state}: no answer since {}{}",
        timeline_time(since),
        health
            .last_error
            .as_deref()
            .map(|e| format!(" ({})", one_line(e)))
            .unwrap_or_default()
    ))
}

pub fn machine_detail(detail: &MachineDetail) -> String {
    let mut out = String::new();
    header(&mut out, &detail.machine);
    let _ = writeln!(out, "tags       {}", tags(&detail.tags));
    let _ = writeln!(
        out,
        "profile    {}",
        provisioning(detail.provisioning.as_ref())
    );
    let _ = writeln!(out, "spec       {}", spec_line(detail));
    if let Some(bmc) = bmc_health_line(&detail.bmc_health) {
        let _ = writeln!(out, "bmc        {bmc}");
    }
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
        match (&report.repaired_damage, report.identical) {
            (Some(damage), _) => format!("repaired: the rebuilt projection replaced a damaged one ({damage})"),
            (None, true) => "identical: the rebuilt projection equals the one it replaced".to_string(),
            (None, false) => "DIFFERENT: the rebuilt projection does not equal the one it replaced".to_string(),
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
        subjects::PROFILE_ASSIGNED => match event.data_as::<ProfileAssigned>() {
            Ok(assigned) => profile_assigned(&assigned),
            Err(_) => format!("assigned   profile {}", text("profile")),
        },
        subjects::PROVISION_FAILED => {
            format!("failed     provisioning not started: {}", text("reason"))
        }
        subjects::POWER_DONE => match event.data_as::<PowerDone>() {
            Ok(done) => power_done(&done),
            Err(_) => format!("power      {}: {}", text("step"), text("detail")),
        },
        subjects::POWER_FAILED => match event.data_as::<PowerFailed>() {
            Ok(failed) => power_failed(&failed),
            Err(_) => format!("failed     BMC {}: {}", text("step"), text("reason")),
        },
        subjects::SPEC_ASSIGNED => format!("expect     spec {}", text("spec")),
        subjects::HARDWARE_VALIDATED => format!(
            "valid      hardware meets spec {} ({})",
            text("spec"),
            text("chosen_by")
        ),
        subjects::HARDWARE_INVALID => format!(
            "invalid    hardware breaks spec {} ({})",
            text("spec"),
            text("chosen_by")
        ),
        subjects::BMC_LOST => format!("lost       BMC silent: {}", text("reason")),
        subjects::BMC_FOUND => "found      BMC answers again".to_string(),
        subjects::RETIRE_REQUESTED => "retire     requested".to_string(),
        subjects::WIPE_COMPLETED => format!("wiped      with profile {}", text("profile")),
        subjects::RETIRED => "retired    powered off, out of service".to_string(),
        other => other.to_string(),
    }
}

/// `machine.profile.assigned` in one line: the profile, who chose it, the kernel.
pub fn profile_assigned(assigned: &ProfileAssigned) -> String {
    let chosen_by = match assigned.chosen_by.as_str() {
        "operator" => "named by the operator".to_string(),
        "selectors" => "its hardware and tags match".to_string(),
        other => format!("chosen by {}", one_line(other)),
    };
    format!(
        "assigned   profile {} ({chosen_by}), kernel {}",
        one_line(&assigned.profile),
        one_line(&assigned.kernel)
    )
}

/// `machine.power.done` in one line: the step, what was asked, where.
pub fn power_done(done: &PowerDone) -> String {
    use metal_core::events::PowerStep;
    let before = done
        .power_state
        .as_deref()
        .map(|state| format!(", power was {}", one_line(state)))
        .unwrap_or_default();
    let system = or_dash(Some(done.system.as_str())).to_string();
    let detail = one_line(&done.detail);
    match done.step {
        PowerStep::BootOverride => {
            format!("boot       next boot from the network ({detail}) on {system}{before}")
        }
        PowerStep::Reset => format!("reset      {detail} on {system}{before}"),
        PowerStep::Status => format!("status     power {detail} ({system})"),
    }
}

/// The answer to an operator's `metal-cli power`: the power state, or what the BMC was
/// asked (or that nothing was needed).
pub fn power_answer(mac: &metal_core::Mac, action: &str, done: &PowerDone) -> String {
    use metal_core::events::PowerStep;
    let detail = one_line(&done.detail);
    match done.step {
        PowerStep::Status => format!(
            "{mac}: power {}",
            one_line(done.power_state.as_deref().unwrap_or(&detail))
        ),
        _ => {
            let before = done
                .power_state
                .as_deref()
                .map(|state| format!(", power was {}", one_line(state)))
                .unwrap_or_default();
            format!(
                "{mac}: power {action}: {detail} ({}{before})",
                or_dash(Some(done.system.as_str()))
            )
        }
    }
}

/// `machine.power.failed` in one line: the step, the system, the BMC's reason.
pub fn power_failed(failed: &PowerFailed) -> String {
    format!("failed     {}", power_failure(failed))
}

/// What a `machine.power.failed` says: `BMC <step> on <system>: <reason>`.
pub fn power_failure(failed: &PowerFailed) -> String {
    let system = failed
        .system
        .as_deref()
        .map(|system| format!(" on {}", one_line(system)))
        .unwrap_or_default();
    format!(
        "BMC {}{system}: {}",
        failed.step.as_str(),
        one_line(&failed.reason)
    )
}

/// MACs that asked to netboot and that no machine has.
pub fn unknown_macs(reply: &UnknownMacs) -> String {
    if reply.macs.is_empty() {
        return format!(
            "no unknown MACs (projection at stream sequence {})",
            reply.last_sequence
        );
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<17}  {:<24}  {:<24}  {:>6}  REASON",
        "MAC", "FIRST SEEN", "LAST SEEN", "EVENTS"
    );
    for mac in &reply.macs {
        let _ = writeln!(
            out,
            "{:<17}  {:<24}  {:<24}  {:>6}  {}",
            mac.mac.to_string(),
            timeline_time(mac.first_seen),
            timeline_time(mac.last_seen),
            mac.events,
            one_line(&mac.last_reason)
        );
    }
    let _ = write!(
        out,
        "{} unknown MAC(s), projection at stream sequence {}",
        reply.macs.len(),
        reply.last_sequence
    );
    out
}

/// Machines whose firmware differs from their model's most common version: one row per
/// machine, component and version, the widths fitted to the longest model, component and
/// version.
pub fn firmware_drift(reply: &metal_core::query::FirmwareDrift) -> String {
    let not_compared = if reply.without_model > 0 {
        format!(
            "; {} without a system model not compared",
            reply.without_model
        )
    } else {
        String::new()
    };
    if reply.drift.is_empty() && reply.total == 0 {
        return format!(
            "no firmware drift among {} machines{not_compared} (projection at stream sequence {})",
            reply.machines, reply.last_sequence
        );
    }
    let rows: Vec<[String; 4]> = reply
        .drift
        .iter()
        .map(|row| {
            [
                one_line(&row.model),
                one_line(&row.component),
                one_line(&row.version),
                format!(
                    "{} ({}/{})",
                    one_line(&row.fleet_version),
                    row.fleet_machines,
                    row.component_machines
                ),
            ]
        })
        .collect();
    let width = |column: usize, header: &str| {
        rows.iter()
            .map(|row| row[column].chars().count())
            .chain([header.chars().count()])
            .max()
            .unwrap_or(0)
    };
    let (model, component, version) = (
        width(0, "MODEL"),
        width(1, "COMPONENT"),
        width(2, "VERSION"),
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<model$}  {:<component$}  {:<36}  {:<17}  {:<version$}  FLEET VERSION (n/m)",
        "MODEL", "COMPONENT", "MACHINE", "BMC MAC", "VERSION"
    );
    for (row, [model_text, component_text, version_text, fleet]) in reply.drift.iter().zip(&rows) {
        let _ = writeln!(
            out,
            "{model_text:<model$}  {component_text:<component$}  {:<36}  {:<17}  {version_text:<version$}  {fleet}",
            row.machine_id.to_string(),
            row.bmc_mac.to_string(),
        );
    }
    let _ = write!(
        out,
        "{} drifting firmware component(s) among {} machines{not_compared}, projection at stream sequence {}",
        reply.total, reply.machines, reply.last_sequence
    );
    if (reply.drift.len() as u64) < reply.total {
        let _ = write!(
            out,
            "\nshowing the first {} of {} (by model, component and machine)",
            reply.drift.len(),
            reply.total
        );
    }
    out
}

/// `profiles check`: the file's profiles and, when NATS answered, the dry run.
pub fn profile_check(check: &ProfileCheck) -> String {
    let mut out = String::new();
    let wipe = check
        .profiles
        .iter()
        .find(|p| p.purpose == metal_core::events::Purpose::Wipe)
        .map(|p| format!(" and the wipe profile {} (metal-cli retire --wipe)", p.name))
        .unwrap_or_default();
    let installs = check
        .profiles
        .iter()
        .filter(|p| p.purpose.is_install())
        .count();
    let _ = writeln!(out, "{}: valid, {installs} profile(s){wipe}", check.file);
    for profile in &check.profiles {
        let priority = if profile.purpose.is_install() {
            format!("priority {:<4}", profile.priority)
        } else {
            format!("{:<13}", "wipe")
        };
        let _ = writeln!(
            out,
            "  {:<16}  {priority}  line {:<4}  {}",
            profile.name, profile.line, profile.kernel
        );
    }
    match (&check.dry_run, &check.dry_run_unavailable) {
        (Some(dry_run), _) => {
            let _ = writeln!(
                out,
                "dry run: the profile each machine would take now (nothing changes), inventory at stream sequence {}:",
                dry_run.last_sequence
            );
            if dry_run.machines.is_empty() {
                let _ = writeln!(out, "  no machine has an inventory yet");
            } else {
                let _ = writeln!(
                    out,
                    "  {:<36}  {:<17}  {:<16}  {:<16}  {:<16}  FACTS",
                    "MACHINE ID", "BMC MAC", "STATE", "WOULD TAKE", "ARMED WITH"
                );
            }
            for machine in &dry_run.machines {
                let _ = writeln!(
                    out,
                    "  {:<36}  {:<17}  {:<16}  {:<16}  {:<16}  {}",
                    machine.machine_id.to_string(),
                    machine.bmc_mac.to_string(),
                    machine.state.as_str(),
                    machine.would_take.as_deref().unwrap_or("no profile"),
                    machine.current_profile.as_deref().unwrap_or("-"),
                    facts(&machine.facts),
                );
            }
            let _ = write!(
                out,
                "{} machine(s) with an inventory",
                dry_run.machines.len()
            );
            if dry_run.without_inventory > 0 {
                let _ = write!(out, "; {} without one not shown", dry_run.without_inventory);
            }
        }
        (None, Some(why)) => {
            let _ = write!(
                out,
                "the file is valid; the dry run (which profile each machine would take) needs NATS and the inventory-projector: {why}"
            );
        }
        (None, None) => {}
    }
    out.trim_end().to_string()
}

/// What profile selectors look at, briefly.
fn facts(facts: &metal_core::profiles::MachineFacts) -> String {
    let vendor = match facts.cpu_vendor {
        Some(metal_core::inventory::CpuVendor::Intel) => "intel",
        Some(metal_core::inventory::CpuVendor::Amd) => "amd",
        Some(metal_core::inventory::CpuVendor::Other) => "other",
        None => "mixed/unknown",
    };
    let mut line = format!(
        "{vendor}, {} CPU(s), {} cores, {}, {} host NIC(s), {} drive(s)",
        facts.cpus,
        facts.cores,
        mib(facts.memory_mib),
        facts.host_nics,
        facts.drives
    );
    if facts.gpus > 0 {
        let _ = write!(line, ", {} GPU(s)", facts.gpus);
    }
    if !facts.tags.is_empty() {
        let _ = write!(line, ", tags {}", tags(&facts.tags));
    }
    line
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_quote_what_would_be_ambiguous() {
        let mut map = BTreeMap::new();
        assert_eq!(tags(&map), "-");
        map.insert("role".to_string(), "storage".to_string());
        map.insert("rack".to_string(), "row 4".to_string());
        map.insert("empty".to_string(), String::new());
        assert_eq!(tags(&map), r#"empty="" rack="row 4" role=storage"#);
    }

    #[test]
    fn memory_units() {
        assert_eq!(mib(98304), "96 GiB");
        assert_eq!(mib(1000), "1000 MiB");
        assert_eq!(mib(0), "0 MiB");
    }

    #[test]
    fn firmware_drift_is_a_table_fitted_to_its_rows_or_says_there_is_none() {
        use metal_core::query::{DriftRow, FirmwareDrift};
        let mut reply = FirmwareDrift {
            drift: Vec::new(),
            total: 0,
            machines: 12,
            without_model: 0,
            last_sequence: 40,
        };
        assert_eq!(
            firmware_drift(&reply),
            "no firmware drift among 12 machines (projection at stream sequence 40)"
        );
        let bmc_mac = metal_core::Mac::parse_any("aa:bb:cc:00:00:03").unwrap();
        reply.drift.push(DriftRow {
            machine_id: metal_core::MachineId::from_bmc_mac(&bmc_mac),
            bmc_mac,
            model: "ProLiant DL360 Gen10".to_string(),
            component: "System ROM".to_string(),
            version: "U30 v2.60\n".to_string(),
            fleet_version: "U30 v2.72".to_string(),
            fleet_machines: 10,
            component_machines: 11,
        });
        reply.total = 3;
        reply.without_model = 1;
        let text = firmware_drift(&reply);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].starts_with("MODEL                 COMPONENT   MACHINE  "),
            "{text}"
        );
        assert!(lines[0].ends_with("BMC MAC            VERSION     FLEET VERSION (n/m)"));
        assert!(
            lines[1].starts_with("ProLiant DL360 Gen10  System ROM  "),
            "{text}"
        );
        assert!(
            lines[1].ends_with("  aa:bb:cc:00:00:03  U30 v2.60   U30 v2.72 (10/11)"),
            "control characters become spaces: {text}"
        );
        assert_eq!(
            lines[2],
            "3 drifting firmware component(s) among 12 machines; 1 without a system model not compared, projection at stream sequence 40"
        );
        assert_eq!(
            lines[3],
            "showing the first 1 of 3 (by model, component and machine)"
        );
    }
}
