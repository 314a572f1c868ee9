//! The consumer loop every responder shares: fetch, decode, handle, publish with a
//! deterministic id, wait for PubAck, then ack. Each service only supplies `handle`.
//!
//! Poison never blocks a consumer: an input whose handler panics, or still asks for a retry
//! (or whose answer still cannot be published) at the last delivery the consumer's
//! `max_deliver` allows, gets a `machine.input.abandoned` (the dead letter, naming the
//! consumer, the input's subject and sequence and why) and is acked, and the loop moves on.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, AckKind};
use futures::{FutureExt, StreamExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::envelope::{Decoded, Envelope};
use crate::events::InputAbandoned;
use crate::ids::{derived_event_id, METAL_NAMESPACE};
use crate::jetstream::{publish_event, publish_event_patiently, StoredMessage};
use crate::subjects;

/// The longest reason kept in a dead letter, in characters.
const MAX_REASON_CHARS: usize = 500;

/// What a responder got: the decoded input and how often it has been delivered.
#[derive(Debug, Clone)]
pub struct Input {
    pub decoded: Decoded,
    pub sequence: u64,
    /// 1 on first delivery.
    pub delivery_attempt: u64,
    /// The consumer's `max_deliver` (-1 unbounded), so a handler knows its last try.
    pub max_deliver: i64,
}

impl Input {
    pub fn is_last_attempt(&self) -> bool {
        self.max_deliver > 0 && self.delivery_attempt >= self.max_deliver as u64
    }
}

/// The answer to one input.
#[derive(Debug)]
pub enum Outcome {
    /// Publish these (possibly none), then ack the input.
    Publish(Vec<Envelope>),
    /// Could not do it now; ask for redelivery after this delay.
    Retry { reason: String, delay: Duration },
}

pub trait Handler: Send + Sync + 'static {
    fn handle(&self, input: Input) -> impl Future<Output = Outcome> + Send;
}

/// How long one pull request waits on the server for inputs. It bounds how long a lost
/// request (a nats-server restart) goes unnoticed, and how long freed slots wait to be
/// asked for while an earlier request is still open.
const PULL_EXPIRES: Duration = Duration::from_secs(5);

/// How long a responder keeps trying to store an answer JetStream cannot take right now (a
/// stream leader being elected, a server restarting) before handing its input back: tries
/// that fail at once would spend the input's few deliveries in seconds, and lose it.
const PUBLISH_PATIENCE: Duration = Duration::from_secs(60);

/// How long inputs being handled when shutdown comes get to finish (and be acked). Those
/// still running after it are dropped unacked: they come back after the consumer's ack wait.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the loop until `shutdown` resolves, with at most `concurrency` inputs in flight.
///
/// It pulls only as many inputs as it has free slots, so every input it holds is being
/// handled and kept alive with progress acks (`AckKind::Progress`, three per ack wait): a
/// slow handler keeps its input however short the consumer's ack wait, and a responder
/// that dies gives its inputs back within one ack wait.
pub async fn run<H: Handler>(
    js: jetstream::Context,
    consumer: consumer::Consumer<consumer::pull::Config>,
    handler: Arc<H>,
    concurrency: usize,
    shutdown: impl Future<Output = ()> + Send,
) {
    let info = consumer.cached_info();
    let max_deliver = info.config.max_deliver;
    let keep_alive_every = progress_interval(info.config.ack_wait);
    let name: Arc<str> = Arc::from(info.name.as_str());
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut in_flight = JoinSet::new();
    // Reading the consumer's counts costs the server a request; only metrics want them.
    let gauges = crate::metrics::serving()
        .then(|| tokio::spawn(report_consumer(consumer.clone(), name.clone())));
    let mut shutdown = std::pin::pin!(shutdown);
    'pulling: loop {
        while in_flight.try_join_next().is_some() {}
        let first = tokio::select! {
            _ = &mut shutdown => break 'pulling,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break 'pulling,
            },
        };
        let mut permits = vec![first];
        while let Ok(permit) = slots.clone().try_acquire_owned() {
            permits.push(permit);
        }
        let pulled = consumer
            .batch()
            .max_messages(permits.len())
            .expires(PULL_EXPIRES)
            .messages()
            .await;
        let mut batch = match pulled {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(consumer = %name, error = %crate::error_chain(&error), "cannot pull messages, retrying");
                drop(permits);
                tokio::select! {
                    _ = &mut shutdown => break 'pulling,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue 'pulling,
                }
            }
        };
        loop {
            let next = tokio::select! {
                _ = &mut shutdown => break 'pulling,
                next = batch.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    // The batch asked for exactly as many inputs as there are permits.
                    let Some(permit) = permits.pop() else { break };
                    let js = js.clone();
                    let handler = handler.clone();
                    let name = name.clone();
                    in_flight.spawn(async move {
                        let _slot = permit;
                        process(
                            &js,
                            &*handler,
                            message,
                            &name,
                            max_deliver,
                            keep_alive_every,
                        )
                        .await
                    });
                }
                Some(Err(error)) => {
                    tracing::warn!(consumer = %name, error = %error, "pull error");
                }
                None => break,
            }
        }
    }
    if let Some(gauges) = gauges {
        gauges.abort();
    }
    if !in_flight.is_empty() {
        tracing::info!(consumer = %name, inputs = in_flight.len(), "stopping: finishing the inputs in hand");
        let finished = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!(consumer = %name, inputs = in_flight.len(), "stopping: inputs still running are left to be redelivered");
            in_flight.abort_all();
        }
    }
}

/// How often a responder reads its consumer's counts for the metrics.
const CONSUMER_REPORT_EVERY: Duration = Duration::from_secs(5);

/// Sets the consumer's gauges (pending, ack pending, redelivered) from its info, every
/// [`CONSUMER_REPORT_EVERY`], until aborted.
async fn report_consumer(mut consumer: consumer::Consumer<consumer::pull::Config>, name: Arc<str>) {
    let mut tick = tokio::time::interval(CONSUMER_REPORT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Ok(info) = consumer.info().await else {
            continue;
        };
        let label = name.to_string();
        metrics::gauge!(crate::metrics::CONSUMER_PENDING, "consumer" => label.clone())
            .set(info.num_pending as f64);
        metrics::gauge!(crate::metrics::CONSUMER_ACK_PENDING, "consumer" => label.clone())
            .set(info.num_ack_pending as f64);
        metrics::gauge!(crate::metrics::CONSUMER_REDELIVERED, "consumer" => label)
            .set(info.num_redelivered as f64);
    }
}

/// How often an input in hand is reported as still being worked on: three times per ack
/// wait, so one late report does not cost the input.
fn progress_interval(ack_wait: Duration) -> Duration {
    (ack_wait / 3).max(Duration::from_millis(100))
}

/// Runs `work` while telling the server, every `every`, that `message` is still in hand.
async fn keeping_alive<T>(
    message: &jetstream::Message,
    every: Duration,
    work: impl Future<Output = T>,
) -> T {
    let progress = async {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = message.ack_with(AckKind::Progress).await {
                tracing::debug!(error = %error, "progress ack not sent");
            }
        }
    };
    tokio::select! {
        done = work => done,
        never = progress => never,
    }
}

/// The span of one input: every log line its handling causes carries the consumer, the
/// input's stream sequence and subject and, for an event, its correlation id (one
/// onboarding's or provisioning's, the same in every service) and machine.
fn input_span(consumer: &str, stored: &StoredMessage, decoded: &Decoded) -> tracing::Span {
    let span = tracing::info_span!(
        "input",
        consumer,
        sequence = stored.sequence,
        subject = %stored.subject,
        correlation_id = tracing::field::Empty,
        machine_id = tracing::field::Empty,
    );
    if let Decoded::Event(event) = decoded {
        span.record(
            "correlation_id",
            tracing::field::display(event.correlation_id),
        );
        if let Some(id) = event.machine_id {
            span.record("machine_id", tracing::field::display(id));
        }
    }
    span
}

async fn process<H: Handler>(
    js: &jetstream::Context,
    handler: &H,
    message: jetstream::Message,
    consumer: &str,
    max_deliver: i64,
    keep_alive_every: Duration,
) {
    let stored = match StoredMessage::from_jetstream(&message) {
        Ok(stored) => stored,
        Err(error) => {
            tracing::warn!(subject = %message.subject, error = %error, "message without JetStream info; terminating it");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let delivery_attempt = message.info().map(|i| i.delivered as u64).unwrap_or(1);
    let input = Input {
        decoded: stored.decode(),
        sequence: stored.sequence,
        delivery_attempt,
        max_deliver,
    };
    let span = input_span(consumer, &stored, &input.decoded);
    let subject = stored.subject.clone();
    let started = std::time::Instant::now();
    let handled = handle_input(js, handler, &message, consumer, stored, input);
    let outcome = keeping_alive(&message, keep_alive_every, handled)
        .instrument(span)
        .await;
    metrics::counter!(crate::metrics::INPUTS, "consumer" => consumer.to_string(), "subject" => subject, "outcome" => outcome.as_str())
        .increment(1);
    metrics::histogram!(crate::metrics::INPUT_SECONDS, "consumer" => consumer.to_string())
        .record(started.elapsed().as_secs_f64());
}

/// What became of one input, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finished {
    Answered,
    Retry,
    Abandoned,
    HandedBack,
}

impl Finished {
    fn as_str(self) -> &'static str {
        match self {
            Finished::Answered => "answered",
            Finished::Retry => "retry",
            Finished::Abandoned => "abandoned",
            Finished::HandedBack => "handed_back",
        }
    }
}

/// Handles one decoded input, publishes what it answers and acks it (or hands it back, or
/// gives up on it: the module's doc).
async fn handle_input<H: Handler>(
    js: &jetstream::Context,
    handler: &H,
    message: &jetstream::Message,
    consumer: &str,
    stored: StoredMessage,
    input: Input,
) -> Finished {
    let delivery_attempt = input.delivery_attempt;
    let last_attempt = input.is_last_attempt();
    let cause = match &input.decoded {
        Decoded::Event(event) => Some(Cause {
            event_id: event.event_id,
            machine_id: event.machine_id,
            bmc_mac: event.bmc_mac,
            correlation_id: event.correlation_id,
        }),
        _ => None,
    };
    let abandon = |reason: String| Abandoned {
        consumer,
        stored: &stored,
        cause,
        attempts: delivery_attempt,
        reason,
    };
    let outcome = std::panic::AssertUnwindSafe(handler.handle(input))
        .catch_unwind()
        .await;
    match outcome {
        Ok(Outcome::Publish(events)) => {
            for event in &events {
                match publish_event_patiently(js, event, PUBLISH_PATIENCE).await {
                    Ok(ack) => {
                        metrics::counter!(crate::metrics::EVENTS_PUBLISHED, "type" => event.event_type.clone()).increment(1);
                        tracing::debug!(event_type = %event.event_type, sequence = ack.sequence, duplicate = ack.duplicate, "published")
                    }
                    Err(error) if last_attempt => {
                        let reason = format!(
                            "cannot publish its {}: {}",
                            event.event_type,
                            crate::error_chain(&error)
                        );
                        abandon(reason).publish_and_ack(js, message).await;
                        return Finished::Abandoned;
                    }
                    Err(error) => {
                        // Not acked: the input comes back and the same ids dedupe what did land.
                        tracing::warn!(error = %crate::error_chain(&error), "publish failed; input will be redelivered");
                        hand_back(message).await;
                        return Finished::HandedBack;
                    }
                }
            }
            ack(message, stored.sequence).await;
            Finished::Answered
        }
        Ok(Outcome::Retry { reason, .. }) if last_attempt => {
            let reason = format!("still failing at the last delivery: {reason}");
            abandon(reason).publish_and_ack(js, message).await;
            Finished::Abandoned
        }
        Ok(Outcome::Retry { reason, delay }) => {
            tracing::info!(sequence = stored.sequence, attempt = delivery_attempt, %reason, "will retry");
            let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
            Finished::Retry
        }
        Err(panic) => {
            // A panic is a bug meeting this input: it would meet it again on every delivery.
            let what = panic
                .downcast_ref::<&str>()
                .map(|text| text.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string());
            abandon(format!("the handler panicked: {what}"))
                .publish_and_ack(js, message)
                .await;
            Finished::Abandoned
        }
    }
}

/// Acks an input once its answers are stored (waiting for the server to confirm the ack).
async fn ack(message: &jetstream::Message, sequence: u64) {
    if let Err(error) = message.double_ack().await {
        tracing::warn!(sequence, error = %error, "ack not confirmed; a redelivery will be deduplicated");
    }
}

/// Hands an input back for redelivery in a second: its answers could not all be stored.
async fn hand_back(message: &jetstream::Message) {
    let _ = message
        .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
        .await;
}

/// What a dead letter keeps of an input that is an event.
#[derive(Debug, Clone, Copy)]
struct Cause {
    event_id: uuid::Uuid,
    machine_id: Option<crate::MachineId>,
    bmc_mac: Option<crate::Mac>,
    correlation_id: uuid::Uuid,
}

/// An input a consumer gives up on, and why.
struct Abandoned<'a> {
    consumer: &'a str,
    stored: &'a StoredMessage,
    cause: Option<Cause>,
    attempts: u64,
    reason: String,
}

impl Abandoned<'_> {
    /// The dead letter: it answers the input when the input is an event (same machine and
    /// correlation), and has an id derived from the consumer and the input, so every
    /// redelivery of the input names the same dead letter.
    fn envelope(&self) -> Envelope {
        let reason: String = crate::one_line(&self.reason)
            .chars()
            .take(MAX_REASON_CHARS)
            .collect();
        let data = InputAbandoned {
            consumer: self.consumer.to_string(),
            subject: self.stored.subject.clone(),
            stream_sequence: self.stored.sequence,
            attempts: self.attempts,
            reason,
        };
        // Serialising five plain fields cannot fail.
        let data = serde_json::to_value(&data).unwrap_or_default();
        let event_type = subjects::INPUT_ABANDONED;
        let now = time::OffsetDateTime::now_utc();
        match self.cause {
            Some(cause) => Envelope {
                event_id: derived_event_id(
                    cause.event_id,
                    &format!("{event_type}/{}", self.consumer),
                ),
                event_type: event_type.to_string(),
                machine_id: cause.machine_id,
                bmc_mac: cause.bmc_mac,
                time: now,
                correlation_id: cause.correlation_id,
                causation_id: Some(cause.event_id),
                data,
            },
            None => {
                let event_id = uuid::Uuid::new_v5(
                    &METAL_NAMESPACE,
                    format!(
                        "abandoned:{}:{}:{}",
                        self.consumer,
                        subjects::STREAM,
                        self.stored.sequence
                    )
                    .as_bytes(),
                );
                Envelope {
                    event_id,
                    event_type: event_type.to_string(),
                    machine_id: None,
                    bmc_mac: None,
                    time: now,
                    correlation_id: event_id,
                    causation_id: None,
                    data,
                }
            }
        }
    }

    /// Publishes the dead letter and acks the input; if the dead letter cannot be
    /// published, the input is left for redelivery (there may be none: it is logged).
    async fn publish_and_ack(self, js: &jetstream::Context, message: &jetstream::Message) {
        let letter = self.envelope();
        tracing::error!(
            consumer = self.consumer,
            subject = %self.stored.subject,
            sequence = self.stored.sequence,
            attempts = self.attempts,
            reason = %self.reason,
            "input abandoned"
        );
        match publish_event(js, &letter).await {
            Ok(_) => ack(message, self.stored.sequence).await,
            Err(error) => {
                tracing::error!(sequence = self.stored.sequence, error = %crate::error_chain(&error), "dead letter not published; the input may be redelivered");
                hand_back(message).await;
            }
        }
    }
}
