//! The validator responder: answers each inventory (and each spec assignment) with
//! `machine.hardware.validated` or `machine.hardware.invalid` against the specs file, and
//! keeps inventories fresh: periodic rescans per machine state, `machine.bmc.lost` and
//! `machine.bmc.found`. Follows the stream into its own projection.
//!
//! # Layout
//! - [`validate`]: which spec a machine must meet and the verdict on its inventory (pure).
//! - [`ValidateHandler`]: the `validator` consumer (`machine.hardware.scraped`,
//!   `machine.spec.assigned`): waits for its projection to reach the message, reads the
//!   machine, answers with [`validate::decide`]'s verdict, and with `machine.bmc.found`
//!   when a lost BMC answered a scrape.
//! - [`rescans`]: periodic rescans and `machine.bmc.lost`.
//! - [`run`]: wires all of it until shutdown.
//!
//! Run the tests with `cargo test -p validator`; the end-to-end test with the whole system
//! is `cargo test -p metal-cli --test lifecycle`.

pub mod rescans;
pub mod validate;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::Stream;
use metal_core::config::ValidatorConfig;
use metal_core::envelope::{Decoded, Envelope};
use metal_core::events::{BmcFound, BmcLost};
use metal_core::ids::derived_event_id;
use metal_core::jetstream::{
    consumer_with_retry, last_sequence, stream_with_retry, DurableConsumer,
};
use metal_core::query::{MachineDetail, TimelineEntry};
use metal_core::responder::{Handler, Input, Outcome};
use metal_core::specs::{Specs, SpecsError};
use metal_core::subjects;
use metal_projection::follow::{follow_with_retry, FollowError};
use metal_projection::LiveProjection;
use time::OffsetDateTime;

use validate::{Cause, Verdict};

/// How long a message waits for this replica's projection to reach it before retrying.
const CATCH_UP: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ValidatorError {
    #[error("cannot load hardware specs")]
    Specs(#[source] SpecsError),
    #[error("cannot open validator projection")]
    Open(#[source] FollowError),
    #[error("following the stream failed")]
    Follow(#[source] FollowError),
    #[error("invalid [validator] settings: {0}")]
    Policy(String),
}

/// What start-up checks before touching the network: the specs file and the rescan
/// settings.
#[derive(Debug, Clone)]
pub struct Checked {
    pub specs: Specs,
    /// The file the specs came from, named in verdicts about specs it lacks.
    pub specs_file: PathBuf,
    pub policy: rescans::Policy,
}

impl Checked {
    /// Loads `config.specs` (the error names the file and the line) and checks the rescan
    /// intervals (the error names the key).
    pub fn from_config(config: &ValidatorConfig) -> Result<Checked, ValidatorError> {
        Ok(Checked {
            specs: Specs::load(&config.specs).map_err(ValidatorError::Specs)?,
            specs_file: config.specs.clone(),
            policy: rescans::Policy::from_config(config).map_err(ValidatorError::Policy)?,
        })
    }
}

/// Runs the validator until `shutdown` resolves: loads the specs, then as [`run_checked`].
pub async fn run(
    config: &ValidatorConfig,
    client: async_nats::Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ValidatorError> {
    let checked = Checked::from_config(config)?;
    run_checked(config, checked, client, shutdown).await
}

/// Runs the validator with specs loaded beforehand: opens the projection at
/// `config.database`, follows the stream into it, answers inventories and spec
/// assignments, and watches for machines due a rescan and BMCs gone silent.
pub async fn run_checked(
    config: &ValidatorConfig,
    checked: Checked,
    client: async_nats::Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ValidatorError> {
    let live = LiveProjection::open(config.database.clone())
        .await
        .map_err(ValidatorError::Open)?;
    // Stops everything on `shutdown`, or when following the stream fails for good.
    let failed = Arc::new(tokio::sync::Notify::new());
    let shutdown = {
        let failed = Arc::clone(&failed);
        metal_core::Shutdown::spawn_from(async move {
            tokio::select! {
                _ = shutdown => {}
                _ = failed.notified() => {}
            }
        })
    };
    let js = async_nats::jetstream::new(client);

    let follower = {
        let live = live.clone();
        let js = js.clone();
        let stop = shutdown.wait();
        tokio::spawn(async move { follow_with_retry(js, &live, stop).await })
    };
    let responder = {
        let live = live.clone();
        let js = js.clone();
        let stop = shutdown.wait();
        let specs = Arc::new(checked.specs);
        let specs_file = checked.specs_file;
        tokio::spawn(async move { answer(js, live, specs, specs_file, stop).await })
    };
    let watcher = {
        let (js, live, stop) = (js.clone(), live.clone(), shutdown.wait());
        let mut early_stop = Box::pin(shutdown.wait());
        let tick = Duration::from_secs(config.tick_secs.max(1));
        let policy = checked.policy;
        tokio::spawn(async move {
            if caught_up(&js, &live, &mut early_stop).await {
                rescans::watch(js, live, policy, tick, stop).await;
            }
        })
    };
    tracing::info!(database = %config.database.display(), specs = %config.specs.display(), "validator running");

    // The follow loop ends on shutdown, or on an error that stops the rest too.
    let followed = match follower.await {
        Ok(result) => result.map_err(ValidatorError::Follow),
        Err(error) => Err(ValidatorError::Follow(FollowError::Task(error))),
    };
    failed.notify_one();
    let _ = responder.await;
    let _ = watcher.await;
    followed
}

/// Waits until this replica's projection has reached the stream's last sequence at
/// start-up: periodic checks on a stale projection would rescan what was just scanned and
/// declare lost BMCs that have answered since. `false` when stopped first.
async fn caught_up(
    js: &async_nats::jetstream::Context,
    live: &LiveProjection,
    stop: &mut std::pin::Pin<Box<impl Future<Output = ()>>>,
) -> bool {
    let mut stop = stop.as_mut();
    let Some(mut stream) = stream_with_retry(js, &mut stop).await else {
        return false;
    };
    let last = loop {
        match last_sequence(&mut stream).await {
            Ok(last) => break last,
            Err(error) => {
                tracing::warn!(error = %metal_core::error_chain(&error), "cannot read the stream's last sequence, retrying");
                tokio::select! {
                    _ = stop.as_mut() => return false,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let mut applied = live.subscribe();
    tokio::select! {
        _ = stop.as_mut() => false,
        reached = applied.wait_for(|sequence| *sequence >= last) => reached.is_ok(),
    }
}

/// Runs the `validator` consumer once stream and consumer exist.
async fn answer(
    js: async_nats::jetstream::Context,
    live: LiveProjection,
    specs: Arc<Specs>,
    specs_file: PathBuf,
    stop: impl Future<Output = ()> + Send,
) {
    tokio::pin!(stop);
    let Some((stream, consumer)) =
        consumer_with_retry(&js, DurableConsumer::Validator, &mut stop).await
    else {
        return;
    };
    let handler = Arc::new(ValidateHandler {
        live,
        specs,
        specs_file,
        stream: Some(stream),
    });
    // One at a time: the answers to one machine's scrapes come out in stream order, and a
    // lost BMC answering two scrapes in a row is found once.
    metal_core::responder::run(js, consumer, handler, 1, stop).await;
}

/// The `validator` consumer: `machine.hardware.scraped` and `machine.spec.assigned` in,
/// the verdict (and `machine.bmc.found`) out.
#[derive(Debug)]
pub struct ValidateHandler {
    pub live: LiveProjection,
    pub specs: Arc<Specs>,
    pub specs_file: PathBuf,
    /// Where the `machine.bmc.lost` of a found BMC is read from (`None`: found BMCs are
    /// reported with the lost event's time as `failing_since`).
    pub stream: Option<Stream>,
}

/// What the projection says about the machine of a message, read in one go.
struct Seen {
    machine: MachineDetail,
    /// The `machine.bmc.lost` this scrape ends, if the BMC was lost.
    lost: Option<TimelineEntry>,
}

impl Handler for ValidateHandler {
    async fn handle(&self, input: Input) -> Outcome {
        let Decoded::Event(cause) = &input.decoded else {
            return Outcome::Publish(Vec::new());
        };
        let kind = match cause.event_type.as_str() {
            subjects::HARDWARE_SCRAPED => Cause::Scraped,
            subjects::SPEC_ASSIGNED => Cause::SpecAssigned,
            _ => return Outcome::Publish(Vec::new()),
        };
        let Some(machine_id) = cause.machine_id else {
            return Outcome::Publish(Vec::new());
        };
        let sequence = input.sequence;
        let mut applied = self.live.subscribe();
        if tokio::time::timeout(CATCH_UP, applied.wait_for(|s| *s >= sequence))
            .await
            .is_err()
        {
            return retry(format!(
                "projection has not reached sequence {sequence} yet"
            ));
        }
        let reference = machine_id.to_string();
        let seen = self
            .live
            .with(move |projection| read_machine(projection, &reference, kind, sequence))
            .await;
        let seen = match seen {
            Ok(Ok(Some(seen))) => seen,
            Ok(Ok(None)) => {
                tracing::debug!(%machine_id, "not a known machine; nothing to validate");
                return Outcome::Publish(Vec::new());
            }
            Ok(Err(error)) => return retry(metal_core::error_chain(&error)),
            Err(error) => return retry(metal_core::error_chain(&error)),
        };

        let mut events = Vec::new();
        if let Some(lost) = &seen.lost {
            let failing_since = match self.failing_since(lost, cause).await {
                Ok(failing_since) => failing_since,
                Err(reason) => return retry(reason),
            };
            tracing::info!(%machine_id, %failing_since, "lost BMC answered again");
            match answering(cause, subjects::BMC_FOUND, &BmcFound { failing_since }) {
                Some(mut event) => {
                    // One found per outage: two scrapes answered before the first found is
                    // applied both see the BMC lost, and JetStream keeps one of them.
                    event.event_id = derived_event_id(lost.event_id, subjects::BMC_FOUND);
                    events.push(event)
                }
                None => return Outcome::Publish(Vec::new()),
            }
        }
        // A scrape a later one superseded gets no verdict: the later one's answer says it
        // (and a consumer reading old history does not re-judge every inventory).
        let current = kind == Cause::SpecAssigned
            || seen.machine.inventory_event.map(|r| r.sequence) == Some(sequence);
        let verdict = if current {
            validate::decide(kind, &seen.machine, &self.specs, &self.specs_file)
        } else {
            tracing::debug!(%machine_id, sequence, "scrape superseded by a later one; no verdict");
            None
        };
        if let Some(verdict) = verdict {
            let event = match &verdict {
                Verdict::Validated(data) => {
                    tracing::info!(%machine_id, spec = %data.spec, chosen_by = %data.chosen_by, "hardware meets its spec");
                    answering(cause, verdict.event_type(), data)
                }
                Verdict::Invalid(data) => {
                    tracing::info!(%machine_id, spec = %data.spec, chosen_by = %data.chosen_by, failures = data.failures.len(), "hardware breaks its spec");
                    answering(cause, verdict.event_type(), data)
                }
            };
            events.extend(event);
        }
        Outcome::Publish(events)
    }
}

impl ValidateHandler {
    /// `failing_since` of the `machine.bmc.lost` a scrape ends.
    ///
    /// By the time the projection has applied the scrape, it has already cleared the BMC's
    /// `failing_since` (the BMC answered), and only `lost` still says it was lost. So the
    /// value is read from the `machine.bmc.lost` event itself: its sequence comes from the
    /// machine's timeline, its data from the stream (a direct read). That is exact, stays
    /// right across restarts and replays, and needs nothing more from the projection. An
    /// undecodable lost event (it passed the projection, so this is not expected) falls back
    /// to the lost event's own time, which is after the true `failing_since`.
    async fn failing_since(
        &self,
        lost: &TimelineEntry,
        cause: &Envelope,
    ) -> Result<OffsetDateTime, String> {
        let Some(stream) = &self.stream else {
            return Ok(lost.time);
        };
        let message = metal_core::jetstream::read_message(stream, lost.sequence)
            .await
            .map_err(|error| {
                format!(
                    "cannot read machine.bmc.lost at sequence {}: {}",
                    lost.sequence,
                    metal_core::error_chain(&error)
                )
            })?;
        let data = match message.decode() {
            Decoded::Event(event)
                if event.event_type == subjects::BMC_LOST
                    && event.machine_id == cause.machine_id =>
            {
                event.data_as::<BmcLost>().ok()
            }
            _ => None,
        };
        Ok(match data {
            Some(data) => data.failing_since,
            None => {
                tracing::warn!(
                    sequence = lost.sequence,
                    "machine.bmc.lost unreadable; reporting its time as failing_since"
                );
                lost.time
            }
        })
    }
}

/// The machine, and for a scrape of a lost BMC the `machine.bmc.lost` it ends.
fn read_machine(
    projection: &mut metal_projection::Projection,
    reference: &str,
    kind: Cause,
    sequence: u64,
) -> Result<Option<Seen>, metal_projection::ProjectionError> {
    let Some(machine) = projection.machine(reference)? else {
        return Ok(None);
    };
    let lost = if kind == Cause::Scraped && machine.bmc_health.lost {
        projection
            .history(reference)?
            .and_then(|history| lost_before(&history.events, sequence))
    } else {
        None
    };
    Ok(Some(Seen { machine, lost }))
}

/// The `machine.bmc.lost` a scrape at `sequence` ends: the last word on the BMC in the
/// whole timeline is a `machine.bmc.lost` stored before the scrape. A lost event after
/// the scrape means the BMC went silent again since; a `machine.bmc.found` after the
/// lost event means an earlier scrape already ended it.
pub fn lost_before(timeline: &[TimelineEntry], sequence: u64) -> Option<TimelineEntry> {
    timeline
        .iter()
        .filter(|e| e.event_type == subjects::BMC_LOST || e.event_type == subjects::BMC_FOUND)
        .max_by_key(|e| e.sequence)
        .filter(|e| e.event_type == subjects::BMC_LOST && e.sequence < sequence)
        .cloned()
}

fn retry(reason: String) -> Outcome {
    Outcome::Retry {
        reason,
        delay: Duration::from_secs(2),
    }
}

/// `data` as the answer to `cause` (id derived from the cause and the type).
fn answering<D: serde::Serialize>(
    cause: &Envelope,
    event_type: &str,
    data: &D,
) -> Option<Envelope> {
    match Envelope::answering(cause, event_type, data, OffsetDateTime::now_utc()) {
        Ok(event) => Some(event),
        Err(error) => {
            tracing::error!(error = %metal_core::error_chain(&error), "cannot encode answer");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sequence: u64, event_type: &str) -> TimelineEntry {
        TimelineEntry {
            sequence,
            event_id: uuid::Uuid::from_u128(sequence as u128),
            event_type: event_type.to_string(),
            time: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(sequence as i64),
            correlation_id: uuid::Uuid::nil(),
            causation_id: None,
            summary: String::new(),
        }
    }

    #[test]
    fn a_scrape_after_the_last_lost_finds_the_bmc() {
        let timeline = [
            entry(3, subjects::HARDWARE_SCRAPED),
            entry(5, subjects::SCRAPE_FAILED),
            entry(8, subjects::BMC_LOST),
            entry(10, subjects::HARDWARE_SCRAPED),
        ];
        assert_eq!(lost_before(&timeline, 10).map(|e| e.sequence), Some(8));
        // The scrape before the loss finds nothing.
        assert_eq!(lost_before(&timeline, 3), None);
    }

    #[test]
    fn found_once_and_lost_again_are_respected() {
        let found = [
            entry(8, subjects::BMC_LOST),
            entry(10, subjects::HARDWARE_SCRAPED),
            entry(11, subjects::BMC_FOUND),
            entry(12, subjects::HARDWARE_SCRAPED),
        ];
        // Scrape 10 was answered with found already (a redelivery would dedupe anyway).
        assert_eq!(lost_before(&found, 12), None);
        assert_eq!(lost_before(&found, 10), None);
        let lost_again = [
            entry(8, subjects::BMC_LOST),
            entry(10, subjects::HARDWARE_SCRAPED),
            entry(15, subjects::BMC_LOST),
        ];
        // The projection is past a newer loss: scrape 10 must not clear it.
        assert_eq!(lost_before(&lost_again, 10), None);
        assert_eq!(lost_before(&[], 10), None);
    }
}
