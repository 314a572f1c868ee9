//! The rest of a machine's life: the spec it is expected to meet and the validator's
//! verdict, its BMC's health from the scrapes' outcomes (and `machine.bmc.lost|found`),
//! and retirement (an optional wipe netboot, then the power-off).

use metal_core::events::{
    BmcFound, BmcLost, HardwareInvalid, HardwareValidated, RetireRequested, Retired,
    ScrapeFailureKind, SpecAssigned, WipeCompleted,
};
use metal_core::query::{MachineState, Validation};
use metal_core::{Envelope, MachineId};
use rusqlite::{params, OptionalExtension, Transaction};
use uuid::Uuid;

use super::provisioning::{by, changed, provisioning_of, set_state};
use super::{execute_cached, format_time, Effect};
use crate::{sql, ProjectionError};

/// The machine an event names, if it was ever onboarded; the line to record otherwise.
fn onboarded(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    line: &str,
) -> Result<Result<(MachineId, MachineState), Effect>, ProjectionError> {
    let Some(machine_id) = envelope.machine_id else {
        return Ok(Err(Effect::recorded(format!(
            "ignored (event names no machine): {line}"
        ))));
    };
    let Some((state, _)) = provisioning_of(tx, machine_id)? else {
        return Ok(Err(Effect::recorded(format!(
            "ignored (machine {machine_id} was never onboarded): {line}"
        ))));
    };
    let state = MachineState::parse(&state)
        .ok_or_else(|| ProjectionError::Corrupt(format!("machine state {state:?}")))?;
    Ok(Ok((machine_id, state)))
}

pub(super) fn on_spec_assigned(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    data: &SpecAssigned,
) -> Result<Effect, ProjectionError> {
    let line = format!(
        "expected to meet spec {}{}",
        data.spec,
        by(&data.requested_by)
    );
    let machine_id = match onboarded(tx, envelope, &line)? {
        Ok((id, _)) => id,
        Err(effect) => return Ok(effect),
    };
    execute_cached(
        tx,
        "UPDATE machines SET expected_spec = ?2 WHERE machine_id = ?1",
        params![machine_id.to_string(), data.spec],
    )
    .map_err(sql("recording expected spec"))?;
    Ok(changed(machine_id, line))
}

fn record_validation(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    validation: Validation,
    line: String,
) -> Result<Effect, ProjectionError> {
    let machine_id = match onboarded(tx, envelope, &line)? {
        Ok((id, _)) => id,
        Err(effect) => return Ok(effect),
    };
    let stored = serde_json::to_string(&validation)
        .map_err(|e| ProjectionError::Corrupt(format!("validation: {e}")))?;
    execute_cached(
        tx,
        "UPDATE machines SET validation = ?2 WHERE machine_id = ?1",
        params![machine_id.to_string(), stored],
    )
    .map_err(sql("recording validation"))?;
    Ok(changed(machine_id, line))
}

pub(super) fn on_validated(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    data: &HardwareValidated,
) -> Result<Effect, ProjectionError> {
    let line = format!(
        "hardware meets spec {} ({}), inventory of sequence {}",
        data.spec, data.chosen_by, data.inventory.sequence
    );
    let validation = Validation {
        spec: data.spec.clone(),
        chosen_by: data.chosen_by.clone(),
        valid: true,
        failures: Vec::new(),
        at: envelope.time,
    };
    record_validation(tx, envelope, validation, line)
}

pub(super) fn on_invalid(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    data: &HardwareInvalid,
) -> Result<Effect, ProjectionError> {
    let failures: Vec<String> = data
        .failures
        .iter()
        .map(|f| format!("{}: wanted {}, found {}", f.rule, f.wanted, f.found))
        .collect();
    let line = format!(
        "hardware breaks spec {} ({}): {}",
        data.spec,
        data.chosen_by,
        failures.join("; ")
    );
    let validation = Validation {
        spec: data.spec.clone(),
        chosen_by: data.chosen_by.clone(),
        valid: false,
        failures: data.failures.clone(),
        at: envelope.time,
    };
    record_validation(tx, envelope, validation, line)
}

/// A scrape the BMC answered (onboarding or rescan of the current request).
pub(super) fn bmc_answered(
    tx: &Transaction<'_>,
    machine_id: MachineId,
    envelope: &Envelope,
) -> Result<(), ProjectionError> {
    let time = format_time(envelope.time);
    execute_cached(
        tx,
        "UPDATE machines SET bmc_last_seen = ?2, bmc_last_tried = ?2, bmc_failing_since = NULL,
             bmc_last_error = NULL
         WHERE machine_id = ?1",
        params![machine_id.to_string(), time],
    )
    .map_err(sql("recording BMC health"))?;
    Ok(())
}

/// A scrape that failed. Only a BMC that did not answer at all (unreachable, timed out)
/// counts towards `machine.bmc.lost`; one that answered badly is there.
pub(super) fn bmc_failed(
    tx: &Transaction<'_>,
    machine_id: MachineId,
    envelope: &Envelope,
    kind: ScrapeFailureKind,
    reason: &str,
) -> Result<(), ProjectionError> {
    let time = format_time(envelope.time);
    let silent = matches!(
        kind,
        ScrapeFailureKind::Unreachable | ScrapeFailureKind::Timeout
    );
    execute_cached(
        tx,
        "UPDATE machines SET bmc_last_tried = ?2, bmc_last_error = ?3,
             bmc_failing_since = CASE WHEN ?4 THEN COALESCE(bmc_failing_since, ?2) END,
             bmc_last_seen = CASE WHEN ?4 THEN bmc_last_seen ELSE ?2 END
         WHERE machine_id = ?1",
        params![machine_id.to_string(), time, reason, silent],
    )
    .map_err(sql("recording BMC health"))?;
    Ok(())
}

pub(super) fn on_bmc_lost(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    data: &BmcLost,
) -> Result<Effect, ProjectionError> {
    let line = format!(
        "BMC lost: no answer since {} ({})",
        format_time(data.failing_since),
        data.reason
    );
    set_lost(tx, envelope, true, line)
}

pub(super) fn on_bmc_found(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    data: &BmcFound,
) -> Result<Effect, ProjectionError> {
    let line = format!(
        "BMC found again (silent since {})",
        format_time(data.failing_since)
    );
    set_lost(tx, envelope, false, line)
}

fn set_lost(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    lost: bool,
    line: String,
) -> Result<Effect, ProjectionError> {
    let machine_id = match onboarded(tx, envelope, &line)? {
        Ok((id, _)) => id,
        Err(effect) => return Ok(effect),
    };
    execute_cached(
        tx,
        "UPDATE machines SET bmc_lost = ?2 WHERE machine_id = ?1",
        params![machine_id.to_string(), lost],
    )
    .map_err(sql("recording BMC lost"))?;
    Ok(changed(machine_id, line))
}

/// The retirement in progress (its `machine.retire.requested` event id), if any.
pub(super) fn retire_id(
    tx: &Transaction<'_>,
    machine_id: MachineId,
) -> Result<Option<String>, ProjectionError> {
    tx.prepare_cached("SELECT retire_id FROM machines WHERE machine_id = ?1")
        .and_then(|mut statement| {
            statement
                .query_row(params![machine_id.to_string()], |row| row.get(0))
                .optional()
        })
        .map(Option::flatten)
        .map_err(sql("reading retirement"))
}

pub(super) fn on_retire_requested(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    data: &RetireRequested,
) -> Result<Effect, ProjectionError> {
    let wipe = if data.wipe { " with a wipe" } else { "" };
    let line = format!("retirement{wipe} requested{}", by(&data.requested_by));
    let (machine_id, state) = match onboarded(tx, envelope, &line)? {
        Ok(found) => found,
        Err(effect) => return Ok(effect),
    };
    if state == MachineState::Retired {
        return Ok(Effect::recorded(format!(
            "ignored (already retired): {line}"
        )));
    }
    execute_cached(
        tx,
        "UPDATE machines SET state = 'retiring', state_reason = ?2, retire_id = ?3,
             updated_at = ?4
         WHERE machine_id = ?1",
        params![
            machine_id.to_string(),
            if data.wipe {
                "waiting for the wipe"
            } else {
                "waiting for the power-off"
            },
            envelope.event_id.to_string(),
            format_time(envelope.time)
        ],
    )
    .map_err(sql("recording retirement"))?;
    Ok(changed(machine_id, line))
}

pub(super) fn on_wipe_completed(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    data: &WipeCompleted,
) -> Result<Effect, ProjectionError> {
    let line = format!("wiped with profile {}: phoned home", data.profile);
    let (machine_id, state) = match onboarded(tx, envelope, &line)? {
        Ok(found) => found,
        Err(effect) => return Ok(effect),
    };
    let current = retire_id(tx, machine_id)?;
    if state != MachineState::Wiping
        || current.as_deref() != Some(data.provision_id.to_string().as_str())
    {
        return Ok(Effect::recorded(format!(
            "{line} (ignored: not the machine's wipe in progress, machine is {})",
            state.as_str()
        )));
    }
    set_state(
        tx,
        machine_id,
        MachineState::Retiring,
        Some("wiped; waiting for the power-off"),
        envelope,
    )?;
    Ok(changed(machine_id, line))
}

pub(super) fn on_retired(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    data: &Retired,
) -> Result<Effect, ProjectionError> {
    let wiped = if data.wiped { ", wiped" } else { "" };
    let line = format!("retired: powered off{wiped}");
    let (machine_id, state) = match onboarded(tx, envelope, &line)? {
        Ok(found) => found,
        Err(effect) => return Ok(effect),
    };
    let current = retire_id(tx, machine_id)?;
    if !matches!(state, MachineState::Retiring | MachineState::RetireFailed)
        || current.as_deref() != Some(data.retire_id.to_string().as_str())
    {
        return Ok(Effect::recorded(format!(
            "{line} (ignored: not the machine's retirement in progress, machine is {})",
            state.as_str()
        )));
    }
    set_state(tx, machine_id, MachineState::Retired, None, envelope)?;
    Ok(changed(machine_id, line))
}

/// A failed power step of the machine's retirement in progress makes it `retire_failed`;
/// `None` when the step belongs to no retirement.
pub(super) fn retirement_failed(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    provision_id: Uuid,
    reason: &str,
) -> Result<Option<Effect>, ProjectionError> {
    let Some(machine_id) = envelope.machine_id else {
        return Ok(None);
    };
    let Some((state, _)) = provisioning_of(tx, machine_id)? else {
        return Ok(None);
    };
    let current = retire_id(tx, machine_id)?;
    if state != MachineState::Retiring.as_str()
        || current.as_deref() != Some(provision_id.to_string().as_str())
    {
        return Ok(None);
    }
    set_state(
        tx,
        machine_id,
        MachineState::RetireFailed,
        Some(reason),
        envelope,
    )?;
    Ok(Some(changed(
        machine_id,
        format!("retirement failed: {reason}"),
    )))
}
