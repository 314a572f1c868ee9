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
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
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

/// What a scrape's outcome says about the BMC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BmcOutcome {
    /// It answered (an inventory, or an error of its own such as a 401).
    Answered,
    /// It did not answer at all (unreachable, timed out): towards `machine.bmc.lost`.
    Silent,
}

impl BmcOutcome {
    /// `None` when nothing was asked of the BMC (its address is not allowed): no news of it.
    pub(super) fn of_failure(kind: ScrapeFailureKind) -> Option<BmcOutcome> {
        match kind {
            ScrapeFailureKind::Unreachable | ScrapeFailureKind::Timeout => Some(BmcOutcome::Silent),
            ScrapeFailureKind::NotAllowed => None,
            ScrapeFailureKind::Auth
            | ScrapeFailureKind::Protocol
            | ScrapeFailureKind::TooLarge
            | ScrapeFailureKind::NoCredentials => Some(BmcOutcome::Answered),
        }
    }
}

/// Records a scrape's outcome in the health of the BMC of the machine at `machine_key`, whose
/// health as `stored` its caller read with the rest of its row. Every scrape of the machine
/// counts, not only the current request's answer: overlapping rescans of a silent BMC each
/// end in a failure after the next one was asked for. Outcomes may arrive out of order, so
/// each is placed by its event time: a failure older than the last answer changes nothing,
/// and an answer ends an outage only if it came after the outage began.
pub(super) fn record_bmc_outcome(
    tx: &Transaction<'_>,
    machine_key: i64,
    stored: StoredBmcHealth,
    envelope: &Envelope,
    outcome: BmcOutcome,
    error: Option<&str>,
) -> Result<(), ProjectionError> {
    stored
        .after(envelope, outcome, error)?
        .write(tx, machine_key)
}

/// A machine's BMC health as stored, read along with other columns of its row.
#[derive(Debug, Default)]
pub(super) struct StoredBmcHealth {
    last_seen: Option<String>,
    last_tried: Option<String>,
    failing_since: Option<String>,
}

impl StoredBmcHealth {
    /// Reads `bmc_last_seen, bmc_last_tried, bmc_failing_since` from `row`, in that order
    /// from column `first`.
    pub(super) fn from_row(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Self> {
        Ok(StoredBmcHealth {
            last_seen: row.get(first)?,
            last_tried: row.get(first + 1)?,
            failing_since: row.get(first + 2)?,
        })
    }

    /// The health after `outcome`, at the envelope's time.
    pub(super) fn after<'a>(
        self,
        envelope: &Envelope,
        outcome: BmcOutcome,
        error: Option<&'a str>,
    ) -> Result<BmcHealthUpdate<'a>, ProjectionError> {
        let parse = |text: Option<String>| -> Result<Option<OffsetDateTime>, ProjectionError> {
            text.map(|t| {
                OffsetDateTime::parse(&t, &Rfc3339)
                    .map_err(|e| ProjectionError::Corrupt(format!("BMC health time {t:?}: {e}")))
            })
            .transpose()
        };
        let (mut last_seen, mut last_tried, mut failing_since) = (
            parse(self.last_seen)?,
            parse(self.last_tried)?,
            parse(self.failing_since)?,
        );
        let time = envelope.time;
        let mut last_error = None;
        let mut error_changed = false;
        last_tried = Some(last_tried.map_or(time, |t| t.max(time)));
        match outcome {
            BmcOutcome::Answered => {
                last_seen = Some(last_seen.map_or(time, |t| t.max(time)));
                if failing_since.is_some_and(|since| since <= time) {
                    failing_since = None;
                    error_changed = true;
                }
                if let Some(error) = error {
                    last_error = Some(error);
                    error_changed = true;
                }
            }
            BmcOutcome::Silent => {
                if last_seen.is_none_or(|seen| time > seen) {
                    failing_since = Some(failing_since.map_or(time, |since| since.min(time)));
                    last_error = error;
                    error_changed = true;
                }
            }
        }
        let text = |t: Option<OffsetDateTime>| t.map(format_time);
        Ok(BmcHealthUpdate {
            last_seen: text(last_seen),
            last_tried: text(last_tried),
            failing_since: text(failing_since),
            last_error,
            error_changed,
        })
    }
}

/// A machine's BMC health after an outcome, ready to store: on its own, or with the rest
/// of an update of the machine's row ([`BmcHealthUpdate::values`]).
pub(super) struct BmcHealthUpdate<'a> {
    last_seen: Option<String>,
    last_tried: Option<String>,
    failing_since: Option<String>,
    last_error: Option<&'a str>,
    /// Whether `bmc_last_error` takes `last_error`; otherwise it stays.
    error_changed: bool,
}

impl BmcHealthUpdate<'_> {
    /// The values, in this order, of `bmc_last_seen`, `bmc_last_tried`,
    /// `bmc_failing_since`, then `bmc_last_error` and whether it changes (`bmc_last_error =
    /// CASE WHEN <changes> THEN <error> ELSE bmc_last_error END`).
    pub(super) fn values(&self) -> [&dyn rusqlite::ToSql; 5] {
        [
            &self.last_seen,
            &self.last_tried,
            &self.failing_since,
            &self.last_error,
            &self.error_changed,
        ]
    }

    pub(super) fn write(
        &self,
        tx: &Transaction<'_>,
        machine_key: i64,
    ) -> Result<(), ProjectionError> {
        let [seen, tried, failing, error, error_changed] = self.values();
        execute_cached(
            tx,
            "UPDATE machines SET bmc_last_seen = ?2, bmc_last_tried = ?3, bmc_failing_since = ?4,
                 bmc_last_error = CASE WHEN ?6 THEN ?5 ELSE bmc_last_error END
             WHERE machine_key = ?1",
            params![machine_key, seen, tried, failing, error, error_changed],
        )
        .map_err(sql("recording BMC health"))?;
        Ok(())
    }
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
