//! Folding stream messages into the tables. Each message (or batch) is one transaction that
//! also stores its stream sequence; replays of the same sequence or event id change nothing.
//!
//! Input is never an error here: malformed messages, unknown types, bad `data` and stale
//! answers are recorded in the timeline (or skipped) and the sequence advances.

use metal_core::events::{
    BmcLocated, HardwareChanged, HardwareScraped, InputAbandoned, LocateFailed, OnboardRejected,
    OnboardRequested, PowerRequested, RescanRequested, ScrapeFailed, ScrapeFailureKind,
};
use metal_core::ids::raw_request_event_id;
use metal_core::inventory::{CpuVendor, Inventory, InventorySummary};
use metal_core::jetstream::StoredMessage;
use metal_core::{subjects, Decoded, Envelope, MachineId};
use rusqlite::{params, OptionalExtension, Transaction};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::{schema, sql, BootRecords, Projection, ProjectionError};
use hardware::HardwareRows;

mod hardware;
mod lifecycle;
mod provisioning;
pub use provisioning::StoredBootSpec;

/// What applying one stream message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The sequence was applied before; nothing changed.
    AlreadyApplied,
    /// The event id was already applied at an earlier sequence; only the sequence advanced.
    DuplicateEvent,
    /// Only the sequence advanced (a raw request the locator answers with a rejection event).
    SequenceOnly,
    /// A timeline row without a state change: a rejection, a stale or unknown event,
    /// bad `data`, a malformed message.
    Recorded,
    /// A machine's state or facts changed.
    Changed(MachineId),
}

impl Projection {
    /// Applies one stream message in its own transaction.
    pub fn apply(&mut self, message: &StoredMessage) -> Result<Applied, ProjectionError> {
        let tx = self
            .conn
            .transaction()
            .map_err(sql("starting transaction"))?;
        let mut applied = apply_in(&tx, std::slice::from_ref(message), self.boot_records)?;
        tx.commit().map_err(sql("committing"))?;
        Ok(applied.pop().unwrap_or(Applied::AlreadyApplied))
    }

    /// Applies many messages in one transaction; the result equals applying them one by one.
    pub fn apply_batch(
        &mut self,
        messages: &[StoredMessage],
    ) -> Result<Vec<Applied>, ProjectionError> {
        let tx = self
            .conn
            .transaction()
            .map_err(sql("starting transaction"))?;
        let out = apply_in(&tx, messages, self.boot_records)?;
        tx.commit().map_err(sql("committing"))?;
        Ok(out)
    }

    /// Applies chunks of messages decoded beforehand (on another thread, while this one
    /// writes) in one transaction, handing each chunk to `applied` once applied (to be
    /// freed on another thread too); the result equals [`Projection::apply_batch`] of all
    /// their messages.
    pub fn apply_decoded_chunks(
        &mut self,
        chunks: impl IntoIterator<Item = Vec<DecodedMessage>>,
        mut applied: impl FnMut(Vec<DecodedMessage>),
    ) -> Result<Vec<Applied>, ProjectionError> {
        let tx = self
            .conn
            .transaction()
            .map_err(sql("starting transaction"))?;
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(apply_in(&tx, &chunk, self.boot_records)?);
            applied(chunk);
        }
        tx.commit().map_err(sql("committing"))?;
        Ok(out)
    }
}

/// A stream message with its decoding, made ahead of applying it.
pub struct DecodedMessage {
    message: StoredMessage,
    decoded: Decoded,
    /// What applying a scraped inventory writes, when decoding it typed was possible;
    /// then `decoded` holds the header, with null data.
    scrape: Option<Box<PreparedScrape>>,
}

impl DecodedMessage {
    /// Decodes `message`. A scraped inventory, the bulk of a stream, is decoded typed
    /// straight from its JSON, and its document and rows are worked out here, so that the
    /// thread applying it only writes.
    pub fn new(message: StoredMessage) -> DecodedMessage {
        if message.subject == subjects::HARDWARE_SCRAPED {
            if let Some((header, data)) = metal_core::envelope::decode_event_as::<HardwareScraped>(
                &message.subject,
                &message.payload,
            ) {
                return DecodedMessage {
                    message,
                    decoded: Decoded::Event(header),
                    scrape: Some(Box::new(PreparedScrape::of(data))),
                };
            }
        }
        let decoded = message.decode();
        DecodedMessage {
            message,
            decoded,
            scrape: None,
        }
    }

    /// The message's stream sequence.
    pub fn sequence(&self) -> u64 {
        self.message.sequence
    }
}

/// What applying a scraped inventory writes, worked out from its data alone.
#[derive(Debug, PartialEq)]
struct PreparedScrape {
    redfish_url: String,
    facts: ScrapeFacts,
    hardware: HardwareRows,
}

impl PreparedScrape {
    fn of(data: HardwareScraped) -> PreparedScrape {
        PreparedScrape {
            facts: ScrapeFacts::of(&data.inventory),
            hardware: HardwareRows::of(&data.inventory),
            redfish_url: data.redfish_url,
        }
    }
}

/// What applying a scraped inventory writes besides its hardware rows, worked out from the
/// inventory alone.
#[derive(Debug, PartialEq)]
struct ScrapeFacts {
    /// The stored JSON document, or why it could not be encoded.
    document: Result<String, String>,
    system_model: Option<String>,
    vendor: Option<&'static str>,
    cpu_count: u64,
    memory_mib: u64,
    host_nic_count: u64,
    drive_count: u64,
    /// The timeline's line.
    line: String,
}

impl ScrapeFacts {
    fn of(inventory: &Inventory) -> ScrapeFacts {
        let summary = InventorySummary::of(inventory);
        let cpu_count: u64 = summary.systems.iter().map(|s| s.processors.count).sum();
        let memory_mib = inventory.memory_mib();
        let host_nic_count = inventory.host_nic_macs().len() as u64;
        let drive_count: u64 = summary.systems.iter().map(|s| s.drives.len() as u64).sum();
        let vendor = inventory.cpu_vendor().map(vendor_name);
        let line = format!(
            "inventory: {} system(s), {cpu_count} CPU(s) ({}), {memory_mib} MiB, {host_nic_count} host NIC(s), {drive_count} drive(s)",
            summary.systems.len(),
            vendor.unwrap_or("mixed or unknown vendor"),
        );
        ScrapeFacts {
            document: serde_json::to_string(inventory).map_err(|e| e.to_string()),
            system_model: summary.systems.iter().find_map(|s| s.model.clone()),
            vendor,
            cpu_count,
            memory_mib,
            host_nic_count,
            drive_count,
            line,
        }
    }
}

/// A message `apply_in` can apply: stored, and decoded now or before.
trait Applicable {
    fn stored(&self) -> &StoredMessage;
    /// The decoding, made now unless it was made before.
    fn decoded(&self) -> std::borrow::Cow<'_, Decoded>;
    /// A scraped inventory prepared with its decoding.
    fn prepared_scrape(&self) -> Option<&PreparedScrape> {
        None
    }
}

impl Applicable for StoredMessage {
    fn stored(&self) -> &StoredMessage {
        self
    }

    fn decoded(&self) -> std::borrow::Cow<'_, Decoded> {
        std::borrow::Cow::Owned(self.decode())
    }
}

impl Applicable for DecodedMessage {
    fn stored(&self) -> &StoredMessage {
        &self.message
    }

    fn decoded(&self) -> std::borrow::Cow<'_, Decoded> {
        std::borrow::Cow::Borrowed(&self.decoded)
    }

    fn prepared_scrape(&self) -> Option<&PreparedScrape> {
        self.scrape.as_deref()
    }
}

/// Applies `messages` inside `tx`. The stored last sequence is read once and written once:
/// a boot storm's skipped events cost boot-api nothing else in SQLite.
fn apply_in(
    tx: &Transaction<'_>,
    messages: &[impl Applicable],
    boot_records: BootRecords,
) -> Result<Vec<Applied>, ProjectionError> {
    let stored = schema::last_sequence(tx)?;
    let mut last = stored;
    let mut out = Vec::with_capacity(messages.len());
    for message in messages {
        if message.stored().sequence <= last {
            out.push(Applied::AlreadyApplied);
            continue;
        }
        out.push(apply_message(tx, message, boot_records)?);
        last = message.stored().sequence;
    }
    if last != stored {
        execute_cached(
            tx,
            "UPDATE meta SET last_sequence = ?1 WHERE id = 1",
            params![last as i64],
        )
        .map_err(sql("storing last sequence"))?;
    }
    Ok(out)
}

/// One message newer than the stored last sequence; the caller stores the sequence.
fn apply_message(
    tx: &Transaction<'_>,
    applicable: &impl Applicable,
    boot_records: BootRecords,
) -> Result<Applied, ProjectionError> {
    let message = applicable.stored();
    let skipped =
        boot_records == BootRecords::Skipped && subjects::is_boot_record(&message.subject);
    let decoded = if skipped {
        None
    } else {
        Some(applicable.decoded())
    };
    let applied = match decoded.as_deref() {
        None => Applied::SequenceOnly,
        Some(Decoded::Event(envelope)) => {
            apply_event(tx, message.sequence, envelope, applicable.prepared_scrape())?
        }
        Some(Decoded::RejectedRequest { .. }) => Applied::SequenceOnly,
        Some(Decoded::Malformed { subject, reason }) => {
            let id = raw_request_event_id(subjects::STREAM, message.sequence);
            insert_timeline(
                tx,
                &TimelineRow {
                    sequence: message.sequence,
                    event_id: id,
                    machine_id: None,
                    event_type: subject,
                    time: message.published,
                    correlation_id: id,
                    causation_id: None,
                    applied: false,
                    summary: format!("malformed message: {reason}"),
                },
            )?;
            Applied::Recorded
        }
    };
    Ok(applied)
}

/// `execute` through the statement cache: apply runs the same few statements for every event.
fn execute_cached(
    tx: &Transaction<'_>,
    statement: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(statement)?.execute(params)
}

/// The effect of one event on the machine tables, and its timeline line.
struct Effect {
    applied: Applied,
    summary: String,
}

impl Effect {
    fn recorded(summary: String) -> Effect {
        Effect {
            applied: Applied::Recorded,
            summary,
        }
    }
}

/// `scrape` is the event's data and facts when it is a scraped inventory decoded ahead.
fn apply_event(
    tx: &Transaction<'_>,
    sequence: u64,
    envelope: &Envelope,
    scrape: Option<&PreparedScrape>,
) -> Result<Applied, ProjectionError> {
    let seen: Option<i64> = tx
        .prepare_cached("SELECT sequence FROM events WHERE event_id = ?1")
        .and_then(|mut statement| {
            statement.query_row(params![envelope.event_id.to_string()], |row| row.get(0))
        })
        .optional()
        .map_err(sql("looking up event id"))?;
    if seen.is_some() {
        return Ok(Applied::DuplicateEvent);
    }
    let mut machine_id = envelope.machine_id;
    let effect = match envelope.event_type.as_str() {
        subjects::ONBOARD_REQUESTED => match envelope.data_as::<OnboardRequested>() {
            Ok(data) => {
                let id = MachineId::from_bmc_mac(&data.bmc_mac);
                machine_id = Some(id);
                on_requested(tx, id, envelope, &data)?
            }
            Err(error) => bad_data(&error),
        },
        subjects::ONBOARD_REJECTED => match envelope.data_as::<OnboardRejected>() {
            Ok(data) => Effect::recorded(format!("rejected: {}", data.reason)),
            Err(error) => bad_data(&error),
        },
        subjects::BMC_LOCATED => match envelope.data_as::<BmcLocated>() {
            Ok(data) => on_located(tx, envelope, &data)?,
            Err(error) => bad_data(&error),
        },
        subjects::LOCATE_FAILED => match envelope.data_as::<LocateFailed>() {
            Ok(data) => on_locate_failed(tx, envelope, &data)?,
            Err(error) => bad_data(&error),
        },
        subjects::HARDWARE_SCRAPED => match scrape {
            Some(prepared) => on_scraped(tx, envelope, prepared)?,
            None => match envelope.data_as::<HardwareScraped>() {
                Ok(data) => on_scraped(tx, envelope, &PreparedScrape::of(data))?,
                Err(error) => bad_data(&error),
            },
        },
        subjects::SCRAPE_FAILED => match envelope.data_as::<ScrapeFailed>() {
            Ok(data) => on_scrape_failed(tx, envelope, &data)?,
            Err(error) => bad_data(&error),
        },
        subjects::RESCAN_REQUESTED => match envelope.data_as::<RescanRequested>() {
            Ok(data) => on_rescan_requested(tx, envelope, &data)?,
            Err(error) => bad_data(&error),
        },
        subjects::HARDWARE_CHANGED => match envelope.data_as::<HardwareChanged>() {
            Ok(data) => Effect::recorded(hardware_changed_line(&data)),
            Err(error) => bad_data(&error),
        },
        subjects::TAGS_CHANGED => match envelope.data_as() {
            Ok(data) => provisioning::on_tags_changed(tx, envelope, &data)?,
            Err(error) => bad_data(&error),
        },
        subjects::PROVISION_REQUESTED => match envelope.data_as() {
            Ok(data) => provisioning::on_provision_requested(&data),
            Err(error) => bad_data(&error),
        },
        subjects::PROVISION_FAILED => match envelope.data_as() {
            Ok(data) => provisioning::on_provision_failed(&data),
            Err(error) => bad_data(&error),
        },
        subjects::PROFILE_ASSIGNED => match envelope.data_as() {
            Ok(data) => provisioning::on_profile_assigned(tx, envelope, &data)?,
            Err(error) => bad_data(&error),
        },
        subjects::POWER_REQUESTED => match envelope.data_as::<PowerRequested>() {
            Ok(data) => Effect::recorded(format!(
                "power {} requested{}",
                data.action.as_str(),
                data.requested_by
                    .as_deref()
                    .map(|who| format!(" by {who}"))
                    .unwrap_or_default()
            )),
            Err(error) => bad_data(&error),
        },
        subjects::POWER_DONE => match envelope.data_as() {
            Ok(data) => provisioning::on_power_done(&data),
            Err(error) => bad_data(&error),
        },
        subjects::POWER_FAILED => match envelope.data_as() {
            Ok(data) => provisioning::on_power_failed(tx, envelope, &data)?,
            Err(error) => bad_data(&error),
        },
        subjects::BOOT_SERVED => match envelope.data_as() {
            Ok(data) => provisioning::on_boot_served(tx, envelope, &data)?,
            Err(error) => bad_data(&error),
        },
        subjects::BOOT_IGNORED => match envelope.data_as() {
            Ok(data) => provisioning::on_boot_ignored(&data),
            Err(error) => bad_data(&error),
        },
        subjects::BOOT_UNKNOWN => match envelope.data_as() {
            Ok(data) => provisioning::on_boot_unknown(tx, envelope, &data)?,
            Err(error) => bad_data(&error),
        },
        subjects::INSTALL_COMPLETED => match envelope.data_as() {
            Ok(data) => provisioning::on_install_completed(tx, envelope, &data)?,
            Err(error) => bad_data(&error),
        },
        subjects::INSTALL_FAILED => match envelope.data_as() {
            Ok(data) => provisioning::on_install_failed(tx, envelope, &data)?,
            Err(error) => bad_data(&error),
        },
        subjects::INSTALL_REJECTED => match envelope.data_as() {
            Ok(data) => provisioning::on_install_rejected(&data),
            Err(error) => bad_data(&error),
        },
        subjects::SPEC_ASSIGNED => match envelope.data_as() {
            Ok(data) => lifecycle::on_spec_assigned(tx, envelope, &data)?,
            Err(error) => bad_data(&error),
        },
        subjects::HARDWARE_VALIDATED => match envelope.data_as() {
            Ok(data) => lifecycle::on_validated(tx, envelope, &data)?,
            Err(error) => bad_data(&error),
        },
        subjects::HARDWARE_INVALID => match envelope.data_as() {
            Ok(data) => lifecycle::on_invalid(tx, envelope, &data)?,
            Err(error) => bad_data(&error),
        },
        subjects::BMC_LOST => match envelope.data_as() {
            Ok(data) => lifecycle::on_bmc_lost(tx, envelope, &data)?,
            Err(error) => bad_data(&error),
        },
        subjects::BMC_FOUND => match envelope.data_as() {
            Ok(data) => lifecycle::on_bmc_found(tx, envelope, &data)?,
            Err(error) => bad_data(&error),
        },
        subjects::RETIRE_REQUESTED => match envelope.data_as() {
            Ok(data) => lifecycle::on_retire_requested(tx, envelope, &data)?,
            Err(error) => bad_data(&error),
        },
        subjects::WIPE_COMPLETED => match envelope.data_as() {
            Ok(data) => lifecycle::on_wipe_completed(tx, envelope, &data)?,
            Err(error) => bad_data(&error),
        },
        subjects::RETIRED => match envelope.data_as() {
            Ok(data) => lifecycle::on_retired(tx, envelope, &data)?,
            Err(error) => bad_data(&error),
        },
        subjects::INPUT_ABANDONED => match envelope.data_as::<InputAbandoned>() {
            Ok(data) => Effect::recorded(format!(
                "{} gave up on {} (sequence {}) after {} attempt(s): {}",
                data.consumer, data.subject, data.stream_sequence, data.attempts, data.reason
            )),
            Err(error) => bad_data(&error),
        },
        other => Effect::recorded(format!("{other}: no effect on the projection")),
    };
    insert_timeline(
        tx,
        &TimelineRow {
            sequence,
            event_id: envelope.event_id,
            machine_id,
            event_type: &envelope.event_type,
            time: envelope.time,
            correlation_id: envelope.correlation_id,
            causation_id: envelope.causation_id,
            applied: matches!(effect.applied, Applied::Changed(_)),
            summary: effect.summary,
        },
    )?;
    Ok(effect.applied)
}

fn bad_data(error: &metal_core::envelope::EnvelopeError) -> Effect {
    Effect::recorded(format!("ignored: {}", metal_core::error_chain(error)))
}

/// Times are stored as RFC 3339 in UTC, so equal instants are equal text.
pub(crate) fn format_time(time: OffsetDateTime) -> String {
    let utc = time.to_offset(UtcOffset::UTC);
    utc.format(&Rfc3339)
        .unwrap_or_else(|_| utc.unix_timestamp().to_string())
}

fn on_requested(
    tx: &Transaction<'_>,
    machine_id: MachineId,
    envelope: &Envelope,
    data: &OnboardRequested,
) -> Result<Effect, ProjectionError> {
    let time = format_time(envelope.time);
    execute_cached(
        tx,
        "INSERT INTO machines (machine_id, bmc_mac, state, correlation_id, created_at, updated_at)
         VALUES (?1, ?2, 'requested', ?3, ?4, ?4)
         ON CONFLICT (machine_id) DO UPDATE SET
             state = 'requested', state_reason = NULL, rescan_correlation_id = NULL,
             correlation_id = excluded.correlation_id, updated_at = excluded.updated_at",
        params![
            machine_id.to_string(),
            data.bmc_mac.to_string(),
            envelope.correlation_id.to_string(),
            time
        ],
    )
    .map_err(sql("recording onboarding request"))?;
    let by = data
        .requested_by
        .as_deref()
        .map(|who| format!(" by {who}"))
        .unwrap_or_default();
    Ok(Effect {
        applied: Applied::Changed(machine_id),
        summary: format!("onboarding of BMC {} requested{by}", data.bmc_mac),
    })
}

/// Which of the machine's requests an event answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answers {
    /// The current onboarding request.
    Onboarding,
    /// The current rescan of an onboarded machine.
    Rescan,
}

/// The machine an event answers a current request of.
struct Answering {
    machine_id: MachineId,
    /// Its integer key, which its inventory's rows are stored under.
    machine_key: i64,
    answers: Answers,
    /// Whether an inventory was stored for it, and so hardware rows may exist.
    inventoried: bool,
}

/// What answering an event needs of its machine's row.
struct MachineRow {
    machine_key: i64,
    correlation_id: String,
    rescan_correlation_id: Option<String>,
    inventoried: bool,
    bmc: lifecycle::StoredBmcHealth,
}

/// The row of the machine `envelope` names, if it names one and that one exists.
fn read_machine(
    tx: &Transaction<'_>,
    envelope: &Envelope,
) -> Result<Option<MachineRow>, ProjectionError> {
    let Some(machine_id) = envelope.machine_id else {
        return Ok(None);
    };
    tx.prepare_cached(
        "SELECT machine_key, correlation_id, rescan_correlation_id,
             inventory_event_id IS NOT NULL, bmc_last_seen, bmc_last_tried, bmc_failing_since
         FROM machines WHERE machine_id = ?1",
    )
    .and_then(|mut statement| {
        statement
            .query_row(params![machine_id.to_string()], |row| {
                Ok(MachineRow {
                    machine_key: row.get(0)?,
                    correlation_id: row.get(1)?,
                    rescan_correlation_id: row.get(2)?,
                    inventoried: row.get(3)?,
                    bmc: lifecycle::StoredBmcHealth::from_row(row, 4)?,
                })
            })
            .optional()
    })
    .map_err(sql("reading machine"))
}

/// Whether `envelope` answers the current request of its machine (`row`, as read):
/// onboarding only, unless `rescans` says answers to the current rescan count too.
/// Returns the reason to ignore it otherwise.
fn answering(
    envelope: &Envelope,
    row: Option<&MachineRow>,
    rescans: bool,
) -> Result<Answering, String> {
    let Some(machine_id) = envelope.machine_id else {
        return Err("event names no machine".to_string());
    };
    let Some(row) = row else {
        return Err(format!("machine {machine_id} was never onboarded"));
    };
    let correlation = envelope.correlation_id.to_string();
    let answers = if row.correlation_id == correlation {
        Answers::Onboarding
    } else if rescans && row.rescan_correlation_id.as_deref() == Some(correlation.as_str()) {
        Answers::Rescan
    } else {
        return Err(format!(
            "stale: answers request {}, current request is {}",
            envelope.correlation_id, row.correlation_id
        ));
    };
    Ok(Answering {
        machine_id,
        machine_key: row.machine_key,
        answers,
        inventoried: row.inventoried,
    })
}

/// Whether `envelope` answers the machine's current request: see [`answering`].
fn current_machine_answering(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    rescans: bool,
) -> Result<Result<Answering, String>, ProjectionError> {
    Ok(answering(
        envelope,
        read_machine(tx, envelope)?.as_ref(),
        rescans,
    ))
}

/// Whether `envelope` answers the machine's current onboarding request.
fn current_machine(
    tx: &Transaction<'_>,
    envelope: &Envelope,
) -> Result<Result<Answering, String>, ProjectionError> {
    current_machine_answering(tx, envelope, false)
}

fn on_rescan_requested(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    data: &RescanRequested,
) -> Result<Effect, ProjectionError> {
    let by = data
        .requested_by
        .as_deref()
        .map(|who| format!(" by {who}"))
        .unwrap_or_default();
    let line = format!("rescan of {} requested{by}", data.redfish_url);
    let Some(machine_id) = envelope.machine_id else {
        return Ok(Effect::recorded(format!(
            "ignored (event names no machine): {line}"
        )));
    };
    let updated = execute_cached(
        tx,
        "UPDATE machines SET rescan_correlation_id = ?2 WHERE machine_id = ?1",
        params![machine_id.to_string(), envelope.correlation_id.to_string()],
    )
    .map_err(sql("recording rescan request"))?;
    if updated == 0 {
        return Ok(Effect::recorded(format!(
            "ignored (machine {machine_id} was never onboarded): {line}"
        )));
    }
    Ok(Effect {
        applied: Applied::Changed(machine_id),
        summary: line,
    })
}

fn hardware_changed_line(data: &HardwareChanged) -> String {
    let changes: Vec<String> = data.changes.iter().map(|c| c.describe()).collect();
    format!(
        "hardware changed since sequence {}: {}",
        data.previous.sequence,
        changes.join("; ")
    )
}

fn on_located(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    data: &BmcLocated,
) -> Result<Effect, ProjectionError> {
    let via = match &data.source_name {
        Some(name) => format!("{} {name}", data.source),
        None => data.source.clone(),
    };
    let line = format!(
        "BMC at {} ({}) via {via}",
        data.bmc_ip.as_deref().unwrap_or("unknown IP"),
        data.redfish_url,
    );
    let (machine_id, machine_key) = match current_machine(tx, envelope)? {
        Ok(found) => (found.machine_id, found.machine_key),
        Err(why) => return Ok(Effect::recorded(format!("ignored ({why}): {line}"))),
    };
    execute_cached(
        tx,
        "UPDATE machines SET state = 'located', state_reason = NULL, bmc_ip = ?2, redfish_url = ?3,
             updated_at = ?4
         WHERE machine_key = ?1",
        params![
            machine_key,
            data.bmc_ip,
            data.redfish_url,
            format_time(envelope.time)
        ],
    )
    .map_err(sql("recording located BMC"))?;
    Ok(Effect {
        applied: Applied::Changed(machine_id),
        summary: line,
    })
}

fn set_failed(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    state: &str,
    reason: &str,
) -> Result<Effect, ProjectionError> {
    mark_failed(tx, envelope, current_machine(tx, envelope)?, state, reason)
}

/// [`set_failed`] with whether the event answers its machine's current onboarding found
/// already.
fn mark_failed(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    found: Result<Answering, String>,
    state: &str,
    reason: &str,
) -> Result<Effect, ProjectionError> {
    let (machine_id, machine_key) = match found {
        Ok(found) => (found.machine_id, found.machine_key),
        Err(why) => return Ok(Effect::recorded(format!("ignored ({why}): {reason}"))),
    };
    execute_cached(
        tx,
        "UPDATE machines SET state = ?2, state_reason = ?3, updated_at = ?4 WHERE machine_key = ?1",
        params![machine_key, state, reason, format_time(envelope.time)],
    )
    .map_err(sql("recording failure"))?;
    Ok(Effect {
        applied: Applied::Changed(machine_id),
        summary: reason.to_string(),
    })
}

fn on_locate_failed(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    data: &LocateFailed,
) -> Result<Effect, ProjectionError> {
    // Newer events name each source with its words in the reason already.
    let reason = if data.sources_tried.is_empty() || !data.sources_said.is_empty() {
        data.reason.clone()
    } else {
        format!("{} (tried {})", data.reason, data.sources_tried.join(", "))
    };
    set_failed(tx, envelope, "locate_failed", &reason)
}

fn failure_kind(kind: ScrapeFailureKind) -> &'static str {
    match kind {
        ScrapeFailureKind::Unreachable => "unreachable",
        ScrapeFailureKind::Timeout => "timeout",
        ScrapeFailureKind::Auth => "auth",
        ScrapeFailureKind::Protocol => "protocol",
        ScrapeFailureKind::TooLarge => "too_large",
        ScrapeFailureKind::NoCredentials => "no_credentials",
        ScrapeFailureKind::NotAllowed => "not_allowed",
    }
}

fn on_scrape_failed(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    data: &ScrapeFailed,
) -> Result<Effect, ProjectionError> {
    let reason = format!(
        "{}: {} (after {} attempt(s))",
        failure_kind(data.kind),
        data.reason,
        data.attempts
    );
    // One read of the machine's row serves its BMC health and whether this answers it.
    let mut row = read_machine(tx, envelope)?;
    if let (Some(row), Some(outcome)) = (&mut row, lifecycle::BmcOutcome::of_failure(data.kind)) {
        lifecycle::record_bmc_outcome(
            tx,
            row.machine_key,
            std::mem::take(&mut row.bmc),
            envelope,
            outcome,
            Some(&reason),
        )?;
    }
    match answering(envelope, row.as_ref(), true) {
        // A failed rescan is history, not a downgrade: the last good inventory, the
        // state and so bootability stay.
        Ok(Answering {
            machine_id,
            answers: Answers::Rescan,
            ..
        }) => Ok(Effect {
            applied: Applied::Changed(machine_id),
            summary: format!("rescan failed, keeping the last inventory: {reason}"),
        }),
        found => mark_failed(tx, envelope, found, "scrape_failed", &reason),
    }
}

pub(crate) fn vendor_name(vendor: CpuVendor) -> &'static str {
    match vendor {
        CpuVendor::Intel => "intel",
        CpuVendor::Amd => "amd",
        CpuVendor::Other => "other",
    }
}

fn on_scraped(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    scrape: &PreparedScrape,
) -> Result<Effect, ProjectionError> {
    let facts = &scrape.facts;
    let line = facts.line.clone();
    // One read of the machine's row serves its BMC health and whether this answers it,
    // and one update stores both (every scrape counts for the health, stale ones too).
    let row = read_machine(tx, envelope)?;
    let found = answering(envelope, row.as_ref(), true);
    let Some(row) = row else {
        let why = found.err().unwrap_or_default();
        return Ok(Effect::recorded(format!("ignored ({why}): {line}")));
    };
    let health = row
        .bmc
        .after(envelope, lifecycle::BmcOutcome::Answered, None)?;
    let Answering {
        machine_id,
        machine_key,
        answers,
        inventoried,
    } = match found {
        Ok(found) => found,
        Err(why) => {
            health.write(tx, row.machine_key)?;
            return Ok(Effect::recorded(format!("ignored ({why}): {line}")));
        }
    };
    let line = match answers {
        Answers::Onboarding => line,
        Answers::Rescan => format!("rescan {line}"),
    };
    // A rescan refreshes the inventory of a machine that may be armed or installed: its
    // state stays. Onboarding's answer makes it inventoried.
    let state = match answers {
        Answers::Onboarding => Some("inventoried"),
        Answers::Rescan => None,
    };
    execute_cached(
        tx,
        "UPDATE machines SET state = COALESCE(?11, state),
             state_reason = CASE WHEN ?11 IS NULL THEN state_reason END, redfish_url = ?2,
             updated_at = ?3, inventory_event_id = ?4, system_model = ?5,
             cpu_vendor = ?6, cpu_count = ?7, memory_mib = ?8, host_nic_count = ?9, drive_count = ?10,
             bmc_last_seen = ?12, bmc_last_tried = ?13, bmc_failing_since = ?14,
             bmc_last_error = CASE WHEN ?16 THEN ?15 ELSE bmc_last_error END
         WHERE machine_key = ?1",
        rusqlite::params_from_iter(
            params![
                machine_key,
                scrape.redfish_url,
                format_time(envelope.time),
                envelope.event_id.to_string(),
                facts.system_model,
                facts.vendor,
                facts.cpu_count as i64,
                facts.memory_mib as i64,
                facts.host_nic_count as i64,
                facts.drive_count as i64,
                state,
            ]
            .iter()
            .chain(&health.values()),
        ),
    )
    .map_err(sql("recording inventory"))?;
    let document = facts
        .document
        .as_deref()
        .map_err(|e| ProjectionError::Corrupt(format!("inventory of {machine_id}: {e}")))?;
    execute_cached(
        tx,
        "INSERT INTO inventories (machine_key, inventory) VALUES (?1, ?2)
         ON CONFLICT (machine_key) DO UPDATE SET inventory = excluded.inventory",
        params![machine_key, document],
    )
    .map_err(sql("recording inventory"))?;
    scrape.hardware.replace(tx, machine_key, inventoried)?;
    Ok(Effect {
        applied: Applied::Changed(machine_id),
        summary: line,
    })
}

struct TimelineRow<'a> {
    sequence: u64,
    event_id: Uuid,
    machine_id: Option<MachineId>,
    event_type: &'a str,
    time: OffsetDateTime,
    correlation_id: Uuid,
    causation_id: Option<Uuid>,
    applied: bool,
    summary: String,
}

fn insert_timeline(tx: &Transaction<'_>, row: &TimelineRow<'_>) -> Result<(), ProjectionError> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO events (sequence, event_id, machine_id, type, time, correlation_id,
             causation_id, applied, summary)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut statement| {
        statement.execute(params![
            row.sequence as i64,
            row.event_id.to_string(),
            row.machine_id.map(|id| id.to_string()),
            row.event_type,
            format_time(row.time),
            row.correlation_id.to_string(),
            row.causation_id.map(|id| id.to_string()),
            row.applied,
            row.summary,
        ])
    })
    .map_err(sql("inserting timeline row"))?;
    Ok(())
}

#[cfg(test)]
mod decoded_tests {
    use super::*;
    use crate::fixtures::{inventory, onboarding};

    #[test]
    fn a_scraped_inventory_is_decoded_typed_with_its_facts_ahead() {
        let messages = onboarding(
            1,
            "aa:bb:cc:00:30:01",
            inventory("DL380", "Intel Xeon", &["52:54:00:00:30:01"]),
        );
        let mut duplicated = messages[2].clone();
        let text = String::from_utf8(duplicated.payload.to_vec()).unwrap();
        duplicated.payload = text
            .replace("\"redfish_url\":", "\"redfish_url\":\"x\",\"redfish_url\":")
            .into();
        let decoded: Vec<DecodedMessage> = messages
            .into_iter()
            .chain([duplicated])
            .map(DecodedMessage::new)
            .collect();

        let prepared = decoded[2].scrape.as_deref().expect("decoded typed");
        let Decoded::Event(header) = &decoded[2].decoded else {
            panic!("not an event: {:?}", decoded[2].decoded);
        };
        let Decoded::Event(whole) = decoded[2].message.decode() else {
            panic!("the scraped fixture is not an event");
        };
        assert_eq!(header.data, serde_json::Value::Null);
        assert_eq!(header.event_id, whole.event_id);
        let data: HardwareScraped = whole.data_as().unwrap();
        assert_eq!(
            prepared.facts.document.as_deref().ok(),
            serde_json::to_string(&data.inventory).ok().as_deref()
        );
        assert_eq!(prepared, &PreparedScrape::of(data));
        assert!(decoded[1].scrape.is_none(), "only scraped inventories");
        assert!(
            decoded[3].scrape.is_none(),
            "duplicate keys go through the tree, which keeps the last"
        );
    }
}
