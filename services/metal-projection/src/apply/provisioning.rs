//! Provisioning events: tags, arming with a profile, the BMC's power steps, boot requests
//! and the installer's phone-home. A machine is armed (boot-api netboots it) from
//! `machine.profile.assigned` until its provisioning ends; every later event names the
//! provisioning it belongs to and is ignored when that is no longer the current one.

use metal_core::events::{
    BootIgnored, BootServed, BootUnknown, InstallCompleted, InstallFailed, InstallRejected,
    PowerDone, PowerFailed, ProfileAssigned, ProvisionFailed, ProvisionRequested, Purpose,
    TagsChanged,
};
use metal_core::query::MachineState;
use metal_core::{Envelope, MachineId};
use rusqlite::{params, OptionalExtension, Transaction};
use uuid::Uuid;

use super::{execute_cached, format_time, Applied, Effect};
use crate::{sql, ProjectionError};

/// What a boot-spec column holds: the profile's boot files and cmdline template.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredBootSpec {
    pub kernel: String,
    pub initrd: Vec<String>,
    pub cmdline: String,
    #[serde(default, skip_serializing_if = "Purpose::is_install")]
    pub purpose: Purpose,
}

pub(super) fn changed(machine_id: MachineId, summary: String) -> Effect {
    Effect {
        applied: Applied::Changed(machine_id),
        summary,
    }
}

pub(super) fn by(requested_by: &Option<String>) -> String {
    requested_by
        .as_deref()
        .map(|who| format!(" by {who}"))
        .unwrap_or_default()
}

/// The machine's state and current provisioning, if the machine exists.
pub(super) fn provisioning_of(
    tx: &Transaction<'_>,
    machine_id: MachineId,
) -> Result<Option<(String, Option<String>)>, ProjectionError> {
    tx.prepare_cached("SELECT state, provision_id FROM machines WHERE machine_id = ?1")
        .and_then(|mut statement| {
            statement
                .query_row(params![machine_id.to_string()], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()
        })
        .map_err(sql("reading provisioning"))
}

/// Whether `provision_id` is the machine's current, armed provisioning; the reason to
/// ignore the event otherwise.
fn armed_with(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    provision_id: Uuid,
) -> Result<Result<(MachineId, MachineState), String>, ProjectionError> {
    let Some(machine_id) = envelope.machine_id else {
        return Ok(Err("event names no machine".to_string()));
    };
    let Some((state, current)) = provisioning_of(tx, machine_id)? else {
        return Ok(Err(format!("machine {machine_id} was never onboarded")));
    };
    let state = MachineState::parse(&state)
        .ok_or_else(|| ProjectionError::Corrupt(format!("machine state {state:?}")))?;
    if current.as_deref() != Some(provision_id.to_string().as_str()) {
        return Ok(Err(format!(
            "stale: provisioning {provision_id} is not the machine's current one"
        )));
    }
    if !state.is_armed() {
        return Ok(Err(format!(
            "provisioning {provision_id} already ended ({})",
            state.as_str()
        )));
    }
    Ok(Ok((machine_id, state)))
}

pub(super) fn set_state(
    tx: &Transaction<'_>,
    machine_id: MachineId,
    state: MachineState,
    reason: Option<&str>,
    envelope: &Envelope,
) -> Result<(), ProjectionError> {
    execute_cached(
        tx,
        "UPDATE machines SET state = ?2, state_reason = ?3, updated_at = ?4 WHERE machine_id = ?1",
        params![
            machine_id.to_string(),
            state.as_str(),
            reason,
            format_time(envelope.time)
        ],
    )
    .map_err(sql("recording provisioning state"))?;
    Ok(())
}

pub(super) fn on_tags_changed(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    data: &TagsChanged,
) -> Result<Effect, ProjectionError> {
    let mut words: Vec<String> = data.set.iter().map(|(k, v)| format!("{k}={v}")).collect();
    words.extend(data.removed.iter().map(|k| format!("-{k}")));
    let line = format!("tags {}{}", words.join(" "), by(&data.requested_by));
    let Some(machine_id) = envelope.machine_id else {
        return Ok(Effect::recorded(format!(
            "ignored (event names no machine): {line}"
        )));
    };
    if provisioning_of(tx, machine_id)?.is_none() {
        return Ok(Effect::recorded(format!(
            "ignored (machine {machine_id} was never onboarded): {line}"
        )));
    }
    let id = machine_id.to_string();
    for key in &data.removed {
        execute_cached(
            tx,
            "DELETE FROM tags WHERE machine_id = ?1 AND key = ?2",
            params![id, key],
        )
        .map_err(sql("removing tag"))?;
    }
    for (key, value) in &data.set {
        execute_cached(
            tx,
            "INSERT OR REPLACE INTO tags (machine_id, key, value) VALUES (?1, ?2, ?3)",
            params![id, key, value],
        )
        .map_err(sql("setting tag"))?;
    }
    Ok(changed(machine_id, line))
}

pub(super) fn on_provision_requested(data: &ProvisionRequested) -> Effect {
    let profile = match &data.profile {
        Some(name) => format!("profile {name}"),
        None => "the profile its hardware matches".to_string(),
    };
    let power = if data.power {
        "PXE boot override and reset over Redfish"
    } else {
        "no power control"
    };
    Effect::recorded(format!(
        "provisioning with {profile} requested{} ({power})",
        by(&data.requested_by)
    ))
}

pub(super) fn on_provision_failed(data: &ProvisionFailed) -> Effect {
    Effect::recorded(format!("provisioning not started: {}", data.reason))
}

pub(super) fn on_profile_assigned(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    data: &ProfileAssigned,
) -> Result<Effect, ProjectionError> {
    let line = format!(
        "armed to {} with profile {} ({}), kernel {}",
        data.purpose.as_str(),
        data.profile,
        data.chosen_by,
        data.kernel
    );
    let Some(machine_id) = envelope.machine_id else {
        return Ok(Effect::recorded(format!(
            "ignored (event names no machine): {line}"
        )));
    };
    let Some((state, _)) = provisioning_of(tx, machine_id)? else {
        return Ok(Effect::recorded(format!(
            "ignored (machine {machine_id} was never onboarded): {line}"
        )));
    };
    let state = MachineState::parse(&state)
        .ok_or_else(|| ProjectionError::Corrupt(format!("machine state {state:?}")))?;
    let armed_state = match data.purpose {
        Purpose::Install if state.is_retiring() => {
            return Ok(Effect::recorded(format!(
                "ignored (machine is {}: onboard it anew first): {line}",
                state.as_str()
            )))
        }
        Purpose::Install if !state.has_inventory() => {
            return Ok(Effect::recorded(format!(
                "ignored (machine is {}, not inventoried): {line}",
                state.as_str()
            )))
        }
        Purpose::Install => MachineState::Provisioning,
        Purpose::Wipe => {
            let retiring = super::lifecycle::retire_id(tx, machine_id)?;
            if state != MachineState::Retiring
                || retiring.as_deref() != Some(data.provision_id.to_string().as_str())
            {
                return Ok(Effect::recorded(format!(
                    "ignored (not the machine's retirement in progress): {line}"
                )));
            }
            MachineState::Wiping
        }
    };
    let spec = StoredBootSpec {
        kernel: data.kernel.clone(),
        initrd: data.initrd.clone(),
        cmdline: data.cmdline.clone(),
        purpose: data.purpose,
    };
    let spec = serde_json::to_string(&spec)
        .map_err(|e| ProjectionError::Corrupt(format!("boot spec: {e}")))?;
    let time = format_time(envelope.time);
    execute_cached(
        tx,
        "UPDATE machines SET state = ?6, state_reason = NULL, provision_id = ?2,
             profile = ?3, boot_spec = ?4, provisioned_at = ?5, updated_at = ?5
         WHERE machine_id = ?1",
        params![
            machine_id.to_string(),
            data.provision_id.to_string(),
            data.profile,
            spec,
            time,
            armed_state.as_str(),
        ],
    )
    .map_err(sql("arming machine"))?;
    Ok(changed(machine_id, line))
}

pub(super) fn on_power_done(data: &PowerDone) -> Effect {
    let before = data
        .power_state
        .as_deref()
        .map(|state| format!(" (power was {state})"))
        .unwrap_or_default();
    Effect::recorded(format!(
        "BMC {}: {} on {}{before}",
        data.step.as_str(),
        data.detail,
        data.system
    ))
}

pub(super) fn on_power_failed(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    data: &PowerFailed,
) -> Result<Effect, ProjectionError> {
    let reason = format!("BMC {} failed: {}", data.step.as_str(), data.reason);
    let Some(provision_id) = data.provision_id else {
        return Ok(Effect::recorded(reason));
    };
    match armed_with(tx, envelope, provision_id)? {
        Ok((machine_id, state)) => {
            // Netbooting needs both steps: without them the machine is disarmed, so a
            // later manual boot does not install half a provisioning.
            let failed = if state == MachineState::Wiping {
                MachineState::RetireFailed
            } else {
                MachineState::ProvisionFailed
            };
            set_state(tx, machine_id, failed, Some(&reason), envelope)?;
            Ok(changed(machine_id, reason))
        }
        Err(why) => match super::lifecycle::retirement_failed(tx, envelope, provision_id, &reason)?
        {
            Some(effect) => Ok(effect),
            None => Ok(Effect::recorded(format!("{reason} (ignored: {why})"))),
        },
    }
}

pub(super) fn on_boot_served(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    data: &BootServed,
) -> Result<Effect, ProjectionError> {
    let line = format!(
        "boot of {} served profile {} via {}",
        data.mac,
        data.profile,
        path_name(data.path)
    );
    match armed_with(tx, envelope, data.provision_id)? {
        Ok((machine_id, MachineState::Provisioning)) => {
            set_state(tx, machine_id, MachineState::Booting, None, envelope)?;
            Ok(changed(machine_id, line))
        }
        Ok(_) => Ok(Effect::recorded(line)),
        Err(why) => Ok(Effect::recorded(format!("{line} (ignored: {why})"))),
    }
}

pub(super) fn on_boot_ignored(data: &BootIgnored) -> Effect {
    Effect::recorded(format!(
        "boot of {} via {} ignored: machine is {}, not armed",
        data.mac,
        path_name(data.path),
        data.state
    ))
}

pub(super) fn on_boot_unknown(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    data: &BootUnknown,
) -> Result<Effect, ProjectionError> {
    let time = format_time(envelope.time);
    execute_cached(
        tx,
        "INSERT INTO unknown_macs (mac, first_seen, last_seen, events, last_reason)
         VALUES (?1, ?2, ?2, 1, ?3)
         ON CONFLICT (mac) DO UPDATE SET last_seen = excluded.last_seen,
             events = events + 1, last_reason = excluded.last_reason",
        params![data.mac.to_string(), time, data.reason],
    )
    .map_err(sql("recording unknown MAC"))?;
    Ok(Effect::recorded(format!(
        "unknown MAC {} asked to netboot via {}: {}",
        data.mac,
        path_name(data.path),
        data.reason
    )))
}

pub(super) fn on_install_completed(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    data: &InstallCompleted,
) -> Result<Effect, ProjectionError> {
    let line = format!("installed profile {}: phoned home", data.profile);
    match armed_with(tx, envelope, data.provision_id)? {
        Ok((_, MachineState::Wiping)) => Ok(Effect::recorded(format!(
            "{line} (ignored: the machine is wiping, not installing)"
        ))),
        Ok((machine_id, _)) => {
            set_state(tx, machine_id, MachineState::Installed, None, envelope)?;
            Ok(changed(machine_id, line))
        }
        Err(why) => Ok(Effect::recorded(format!("{line} (ignored: {why})"))),
    }
}

pub(super) fn on_install_failed(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    data: &InstallFailed,
) -> Result<Effect, ProjectionError> {
    let line = format!(
        "install of profile {} failed: {}",
        data.profile, data.reason
    );
    match armed_with(tx, envelope, data.provision_id)? {
        Ok((machine_id, state)) => {
            let failed = if state == MachineState::Wiping {
                MachineState::RetireFailed
            } else {
                MachineState::InstallFailed
            };
            set_state(tx, machine_id, failed, Some(&data.reason), envelope)?;
            Ok(changed(machine_id, line))
        }
        Err(why) => Ok(Effect::recorded(format!("{line} (ignored: {why})"))),
    }
}

pub(super) fn on_install_rejected(data: &InstallRejected) -> Effect {
    let from = data
        .remote
        .as_deref()
        .map(|remote| format!(" from {remote}"))
        .unwrap_or_default();
    Effect::recorded(format!(
        "phone-home ({}){from} rejected: {}",
        data.outcome, data.reason
    ))
}

fn path_name(path: metal_core::events::BootPath) -> &'static str {
    match path {
        metal_core::events::BootPath::Pixiecore => "Pixiecore",
        metal_core::events::BootPath::Ipxe => "iPXE",
    }
}
