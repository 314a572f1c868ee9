//! Views over the whole fleet: `unknown` (MACs that asked to netboot and that no machine
//! has), `drift` (machines whose firmware differs from their model's most common version),
//! `profiles check` (a boot profiles file, and which profile each machine would take)
//! and `inventory --ansible` (an Ansible dynamic inventory).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use metal_core::profiles::{MachineFacts, Profiles};
use metal_core::query::{MachineDetail, MachineList, MachineState, UnknownMacs};
use metal_core::{subjects, Mac, MachineId};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::client::{self, CliError};
use crate::commands::print_json;
use crate::render;

const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Machine details asked for at once when a command needs every machine's inventory.
const DETAILS_AT_ONCE: usize = 8;

/// `metal-cli unknown`: MACs that asked boot-api to netboot and that no machine has.
pub async fn unknown(client: &async_nats::Client, json: bool) -> Result<ExitCode, CliError> {
    let reply: UnknownMacs =
        client::query(client, subjects::QUERY_UNKNOWN, &json!({}), QUERY_TIMEOUT).await?;
    if json {
        print_json(&reply);
    } else {
        println!("{}", render::unknown_macs(&reply));
    }
    Ok(ExitCode::SUCCESS)
}

/// `metal-cli drift`: machines whose firmware differs from the most common version among
/// the machines of their system model, per component.
pub async fn drift(client: &async_nats::Client, json: bool) -> Result<ExitCode, CliError> {
    let reply: metal_core::query::FirmwareDrift =
        client::query(client, subjects::QUERY_DRIFT, &json!({}), QUERY_TIMEOUT).await?;
    if json {
        print_json(&reply);
    } else {
        println!("{}", render::firmware_drift(&reply));
    }
    Ok(ExitCode::SUCCESS)
}

/// The report of `profiles check`.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileCheck {
    pub file: String,
    pub valid: bool,
    /// Why the file is not valid (names the line where there is one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub profiles: Vec<ProfileInfo>,
    pub dry_run: Option<DryRun>,
    /// Why there is no dry run (NATS or the inventory-projector could not be asked).
    pub dry_run_unavailable: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProfileInfo {
    pub name: String,
    pub priority: i64,
    pub line: usize,
    pub kernel: String,
    /// `install`, or `wipe` for the profile `metal-cli retire --wipe` netboots.
    pub purpose: metal_core::events::Purpose,
}

/// Which profile each machine with an inventory would take now.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    pub last_sequence: u64,
    pub machines: Vec<DryRunMachine>,
    /// Machines not shown because they have no inventory yet (or failed before one).
    pub without_inventory: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DryRunMachine {
    pub machine_id: MachineId,
    pub bmc_mac: Mac,
    pub state: MachineState,
    /// The profile `metal-cli provision` without `--profile` would arm it with.
    pub would_take: Option<String>,
    /// The profile of its current or last provisioning.
    pub current_profile: Option<String>,
    pub facts: MachineFacts,
}

/// `metal-cli profiles check [FILE]`: validates the file without NATS (exit 1 with the
/// problem and its line when it is not valid), then dry-runs it against the inventory when
/// NATS answers (and says so, exit 0, when it does not).
pub async fn profiles_check(
    common: &metal_core::service::CommonArgs,
    file: Option<&Path>,
    json: bool,
) -> ExitCode {
    let config = common.load();
    let path: PathBuf = match (file, &config) {
        (Some(file), _) => file.to_path_buf(),
        (None, Ok(config)) => config.boot_api.profiles.clone(),
        (None, Err(error)) => {
            eprintln!(
                "metal-cli: {} (give the profiles file as an argument to check it without a config)",
                metal_core::error_chain(error)
            );
            return ExitCode::from(2);
        }
    };
    let mut check = ProfileCheck {
        file: path.display().to_string(),
        valid: false,
        error: None,
        profiles: Vec::new(),
        dry_run: None,
        dry_run_unavailable: None,
    };
    let profiles = match Profiles::load(&path) {
        Ok(profiles) => profiles,
        Err(error) => {
            let message = metal_core::error_chain(&error);
            eprintln!("metal-cli: {message}");
            if json {
                check.error = Some(message);
                print_json(&check);
            }
            return ExitCode::FAILURE;
        }
    };
    check.valid = true;
    check.profiles = profiles
        .profiles()
        .iter()
        .map(|p| ProfileInfo {
            name: p.name.clone(),
            priority: p.priority,
            line: p.line,
            kernel: p.kernel.clone(),
            purpose: p.purpose,
        })
        .collect();
    let dry_run = match config {
        Err(error) => Err(format!(
            "cannot load the config: {}",
            metal_core::error_chain(&error)
        )),
        Ok(config) => match client::connect(&config.nats_url, &config.nats).await {
            Err(error) => Err(metal_core::error_chain(&error)),
            Ok(client) => dry_run(&client, &profiles)
                .await
                .map_err(|error| metal_core::error_chain(&error)),
        },
    };
    match dry_run {
        Ok(dry_run) => check.dry_run = Some(dry_run),
        Err(why) => check.dry_run_unavailable = Some(why),
    }
    if json {
        print_json(&check);
    } else {
        println!("{}", render::profile_check(&check));
    }
    ExitCode::SUCCESS
}

/// Every machine's detail, in the order of the machine list.
async fn every_detail(
    client: &async_nats::Client,
    list: &MachineList,
    wanted: impl Fn(&metal_core::query::MachineRow) -> bool,
) -> Result<Vec<MachineDetail>, CliError> {
    futures::stream::iter(list.machines.iter().filter(|row| wanted(row)))
        .map(|row| async move { client::machine(client, &row.machine_id.to_string()).await })
        .buffered(DETAILS_AT_ONCE)
        .try_collect()
        .await
}

async fn dry_run(client: &async_nats::Client, profiles: &Profiles) -> Result<DryRun, CliError> {
    let list: MachineList =
        client::query(client, subjects::QUERY_MACHINES, &json!({}), QUERY_TIMEOUT).await?;
    let details = every_detail(client, &list, |row| row.state.has_inventory()).await?;
    let mut machines = Vec::with_capacity(details.len());
    for detail in &details {
        let Some(inventory) = &detail.inventory else {
            continue;
        };
        let facts = MachineFacts::of(inventory, &detail.tags);
        machines.push(DryRunMachine {
            machine_id: detail.machine.machine_id,
            bmc_mac: detail.machine.bmc_mac,
            state: detail.machine.state,
            would_take: profiles.choose(&facts).map(|p| p.name.clone()),
            current_profile: detail.provisioning.as_ref().map(|p| p.profile.to_string()),
            facts,
        });
    }
    Ok(DryRun {
        last_sequence: list.last_sequence,
        without_inventory: list.machines.len().saturating_sub(machines.len()) as u64,
        machines,
    })
}

/// An Ansible group name: letters, digits and underscores, never starting with a digit.
pub fn ansible_group(prefix: &str, name: &str) -> String {
    let mut group = String::with_capacity(prefix.len() + 1 + name.len());
    group.push_str(prefix);
    group.push('_');
    for c in name.chars() {
        group.push(if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        });
    }
    group
}

/// The host variables of one machine. Every name starts with `metal_`: Ansible reserves
/// `tags` (and `serial`), and inventory variables outrank role defaults, so a plain `state`
/// or `profile` would override the roles' own.
pub fn ansible_hostvars(detail: &MachineDetail) -> Value {
    let row = &detail.machine;
    let inventory = detail.inventory.as_ref();
    let system = inventory.and_then(|i| i.systems.first());
    let cpus: Vec<&metal_core::inventory::Processor> = inventory
        .map(|i| i.systems.iter().flat_map(|s| s.cpus()).collect())
        .unwrap_or_default();
    let mut cpu_models: Vec<&str> = cpus.iter().filter_map(|p| p.model.as_deref()).collect();
    cpu_models.sort_unstable();
    cpu_models.dedup();
    let host_nic_macs: Vec<String> = inventory
        .map(|i| i.host_nic_macs().iter().map(Mac::to_string).collect())
        .unwrap_or_default();
    let drives = inventory
        .map(|i| i.systems.iter().map(|s| s.drives.len() as u64).sum::<u64>())
        .unwrap_or(0);
    json!({
        "metal_machine_id": row.machine_id,
        "metal_bmc_mac": row.bmc_mac,
        "metal_bmc_ip": row.bmc_ip,
        "metal_redfish_url": row.redfish_url,
        "metal_state": row.state,
        "metal_state_reason": row.state_reason,
        "metal_profile": detail.provisioning.as_ref().map(|p| p.profile.clone()),
        "metal_system_manufacturer": system.and_then(|s| s.manufacturer.clone()),
        "metal_system_model": system.and_then(|s| s.model.clone()),
        "metal_system_serial": system.and_then(|s| s.serial.clone()),
        "metal_cpu_vendor": inventory.and_then(|i| i.cpu_vendor()),
        "metal_cpu_count": cpus.len() as u64,
        "metal_cpu_model": if cpu_models.is_empty() { None } else { Some(cpu_models.join(", ")) },
        "metal_memory_mib": row.memory_mib,
        "metal_host_nic_macs": host_nic_macs,
        "metal_drive_count": drives,
        "metal_tags": detail.tags,
    })
}

/// The `--list` JSON of an Ansible dynamic inventory: hosts named by machine id, in groups
/// `state_<state>` and (once provisioned) `profile_<profile>`.
pub fn ansible_inventory(details: &[MachineDetail]) -> Value {
    let mut hostvars = Map::new();
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for detail in details {
        let host = detail.machine.machine_id.to_string();
        groups
            .entry(ansible_group("state", detail.machine.state.as_str()))
            .or_default()
            .push(host.clone());
        if let Some(provisioning) = &detail.provisioning {
            groups
                .entry(ansible_group("profile", &provisioning.profile))
                .or_default()
                .push(host.clone());
        }
        hostvars.insert(host, ansible_hostvars(detail));
    }
    let mut out = Map::new();
    out.insert("_meta".to_string(), json!({ "hostvars": hostvars }));
    out.insert(
        "all".to_string(),
        json!({ "children": groups.keys().collect::<Vec<_>>() }),
    );
    for (group, mut hosts) in groups {
        hosts.sort();
        out.insert(group, json!({ "hosts": hosts }));
    }
    Value::Object(out)
}

/// `metal-cli inventory --ansible [--list | --host NAME]`.
pub async fn ansible(
    client: &async_nats::Client,
    host: Option<&str>,
) -> Result<ExitCode, CliError> {
    let list: MachineList =
        client::query(client, subjects::QUERY_MACHINES, &json!({}), QUERY_TIMEOUT).await?;
    let output = match host {
        // `--host`: that host's variables, `{}` for a host this inventory does not have,
        // as Ansible expects.
        Some(host) => {
            let wanted = host.trim();
            let details =
                every_detail(client, &list, |row| row.machine_id.to_string() == wanted).await?;
            details.first().map(ansible_hostvars).unwrap_or(json!({}))
        }
        None => ansible_inventory(&every_detail(client, &list, |_| true).await?),
    };
    match serde_json::to_string_pretty(&output) {
        Ok(text) => println!("{text}"),
        Err(error) => {
            return Err(CliError::Other(format!(
                "cannot encode the inventory: {error}"
            )))
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_are_ansible_identifiers() {
        assert_eq!(ansible_group("profile", "G1"), "profile_G1");
        assert_eq!(
            ansible_group("profile", "rocky-9.4_gpu"),
            "profile_rocky_9_4_gpu"
        );
        assert_eq!(
            ansible_group("state", "install_failed"),
            "state_install_failed"
        );
        assert_eq!(ansible_group("profile", "é"), "profile__");
    }
}
