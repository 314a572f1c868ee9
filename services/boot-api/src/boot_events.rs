//! `machine.boot.*` events without slowing answers: a boot request only records what it
//! decided; at most one event per MAC and outcome per window is queued, and a publisher
//! task sends the queue to JetStream. A machine's NIC remembers its last recording in the
//! boot index's entry the request already holds; only MACs no machine has are remembered
//! here, in a bounded map. Event ids are derived from the MAC, the outcome and
//! the window, so replicas answering the same boot store one event between them.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use futures::StreamExt;
use metal_core::envelope::EnvelopeOf;
use metal_core::events::{BootIgnored, BootPath, BootServed, BootUnknown};
use metal_core::ids::METAL_NAMESPACE;
use metal_core::{subjects, Mac};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use uuid::Uuid;

use metal_projection::BootTarget;

use crate::index::{BootDecision, Lookup};

/// Most events waiting to be published; beyond it new ones are dropped (and counted).
pub const QUEUE: usize = 65_536;

/// Most (MAC, outcome) pairs of MACs no machine has remembered; a storm of random MACs
/// cannot grow memory past it.
const MAX_REMEMBERED: usize = 200_000;

/// Publishes at once, at most this many in flight.
const PUBLISH_CONCURRENCY: usize = 256;

/// The memory of (MAC, outcome) pairs is split by MAC over this many locks, so requests
/// for different MACs do not queue behind one another.
const SHARDS: usize = 64;

/// What a boot request's decision was, as the memory of pairs keeps it; its text (in event
/// ids) is `served:<provision id>`, `ignored:<state>` or `unknown:<reason>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Outcome {
    Served(Uuid),
    Ignored(&'static str),
    Unknown(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Served(provision_id) => write!(f, "served:{provision_id}"),
            Outcome::Ignored(state) => write!(f, "ignored:{state}"),
            Outcome::Unknown(reason) => write!(f, "unknown:{reason}"),
        }
    }
}

type Seen = HashMap<(Mac, Outcome), Instant, foldhash::fast::RandomState>;

/// A boot event as queued for publishing: its subject, its id (the `Nats-Msg-Id`) and its
/// envelope's JSON, encoded once on the request that recorded it.
#[derive(Debug, Clone)]
pub struct QueuedEvent {
    pub event_type: &'static str,
    pub event_id: Uuid,
    pub payload: Bytes,
}

#[derive(Debug)]
pub struct BootEvents {
    window: Duration,
    /// The clock of NIC slots' recordings: milliseconds since this, plus one.
    started: Instant,
    queue: mpsc::Sender<QueuedEvent>,
    /// When each (MAC, outcome) last queued an event, sharded by MAC.
    seen: Box<[Mutex<Seen>]>,
    /// Picks a MAC's shard.
    shard_of: foldhash::fast::RandomState,
    /// Pairs remembered over all shards.
    remembered: AtomicUsize,
    /// [`MAX_REMEMBERED`], smaller in tests.
    most_remembered: usize,
    dropped: AtomicU64,
}

impl BootEvents {
    /// The recorder and the receiving end of its queue (for [`publish`], or a test).
    pub fn new(window: Duration) -> (BootEvents, mpsc::Receiver<QueuedEvent>) {
        BootEvents::remembering(window, MAX_REMEMBERED)
    }

    fn remembering(window: Duration, most: usize) -> (BootEvents, mpsc::Receiver<QueuedEvent>) {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let events = BootEvents {
            window: window.max(Duration::from_secs(1)),
            started: Instant::now(),
            queue,
            seen: (0..SHARDS).map(|_| Mutex::new(Seen::default())).collect(),
            shard_of: foldhash::fast::RandomState::default(),
            remembered: AtomicUsize::new(0),
            most_remembered: most,
            dropped: AtomicU64::new(0),
        };
        (events, receiver)
    }

    /// Events dropped because the queue or the memory of MACs was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn shard(&self, mac: &Mac) -> MutexGuard<'_, Seen> {
        let shard = &self.seen[self.shard_of.hash_one(mac) as usize % self.seen.len()];
        // A pair is inserted whole or not at all: a panic leaves the map usable.
        shard.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the pairs older than the window in every shard, one shard at a time; boot-api
    /// runs it every window ([`sweep_every_window`]), so requests rarely find the memory full.
    pub fn forget_expired(&self, now: Instant) {
        for shard in self.seen.iter() {
            let mut seen = shard.lock().unwrap_or_else(|p| p.into_inner());
            self.forget_expired_in(&mut seen, now);
        }
    }

    fn forget_expired_in(&self, seen: &mut Seen, now: Instant) {
        let before = seen.len();
        seen.retain(|_, at| now.duration_since(*at) < self.window);
        self.remembered
            .fetch_sub(before - seen.len(), Ordering::Relaxed);
    }

    /// Notes one boot request's decision; queues an event unless this MAC had the same
    /// outcome within the window.
    pub fn record(&self, mac: Mac, path: BootPath, lookup: &Lookup) {
        let decision = &lookup.decision;
        let Some(outcome) = outcome(decision) else {
            return;
        };
        if let Some(nic) = &lookup.nic {
            let now = self.started.elapsed().as_millis() as u64 + 1;
            if nic.claim_recording(now, self.window.as_millis() as u64) {
                self.queue_event(mac, path, decision, &outcome);
            }
            return;
        }
        let now = Instant::now();
        let key = (mac, outcome);
        let recent = |seen: &Seen| {
            seen.get(&key)
                .is_some_and(|at| now.duration_since(*at) < self.window)
        };
        let mut seen = self.shard(&mac);
        if recent(&seen) {
            return;
        }
        if self.remembered.load(Ordering::Relaxed) >= self.most_remembered {
            // Only this shard: a request never scans the whole memory (that is the sweeper's).
            self.forget_expired_in(&mut seen, now);
            if self.remembered.load(Ordering::Relaxed) >= self.most_remembered {
                self.drop_one("too many MACs remembered in this window");
                return;
            }
        }
        if seen.insert(key.clone(), now).is_none() {
            self.remembered.fetch_add(1, Ordering::Relaxed);
        }
        drop(seen);
        let (_, outcome) = key;
        self.queue_event(mac, path, decision, &outcome);
    }

    fn queue_event(&self, mac: Mac, path: BootPath, decision: &BootDecision, outcome: &Outcome) {
        let Some(event) = self.encode(mac, path, decision, &outcome.to_string()) else {
            return;
        };
        if self.queue.try_send(event).is_err() {
            self.drop_one("event queue full");
        }
    }

    fn drop_one(&self, why: &str) {
        metrics::counter!(metal_core::metrics::BOOT_EVENTS_DROPPED).increment(1);
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if dropped.is_power_of_two() {
            tracing::warn!(dropped, why, "boot events dropped");
        }
    }

    fn encode(
        &self,
        mac: Mac,
        path: BootPath,
        decision: &BootDecision,
        outcome: &str,
    ) -> Option<QueuedEvent> {
        let now = OffsetDateTime::now_utc();
        let window = (now.unix_timestamp().max(0) as u64) / self.window.as_secs().max(1);
        let event_id = Uuid::new_v5(
            &METAL_NAMESPACE,
            format!("boot:{mac}:{outcome}:{window}").as_bytes(),
        );
        let json = |event_type, target: Option<&BootTarget>, correlation_id| EnvelopeOf {
            event_id,
            event_type,
            machine_id: target.map(|t| t.machine_id),
            bmc_mac: target.map(|t| t.bmc_mac),
            time: now,
            correlation_id,
            causation_id: None,
            data: &(),
        };
        let (event_type, payload) = match decision {
            BootDecision::Serve(target) => {
                let provisioning = target.provisioning.as_ref()?;
                let data = BootServed {
                    mac,
                    path,
                    provision_id: provisioning.provision_id,
                    profile: provisioning.profile.to_string(),
                };
                let event_type = subjects::BOOT_SERVED;
                let correlation = provisioning.provision_id;
                let json = json(event_type, Some(target), correlation).with_data(&data);
                (event_type, json)
            }
            BootDecision::Ignore(target) => {
                let data = BootIgnored {
                    mac,
                    path,
                    state: target.state.as_str().to_string(),
                };
                let event_type = subjects::BOOT_IGNORED;
                let json = json(event_type, Some(target), event_id).with_data(&data);
                (event_type, json)
            }
            BootDecision::Unknown { reason } => {
                let data = BootUnknown {
                    mac,
                    path,
                    reason: reason.clone(),
                };
                let event_type = subjects::BOOT_UNKNOWN;
                let json = json(event_type, None, event_id).with_data(&data);
                (event_type, json)
            }
        };
        match payload {
            Ok(json) => Some(QueuedEvent {
                event_type,
                event_id,
                // Exactly as long as the JSON: a storm queues tens of thousands.
                payload: Bytes::from(json.into_boxed_slice()),
            }),
            Err(error) => {
                tracing::warn!(error = %metal_core::error_chain(&error), "boot event not encoded");
                None
            }
        }
    }
}

/// What the memory of pairs keeps for a decision; `None` for a machine armed without a
/// provisioning (nothing to record).
fn outcome(decision: &BootDecision) -> Option<Outcome> {
    Some(match decision {
        BootDecision::Serve(target) => Outcome::Served(target.provisioning.as_ref()?.provision_id),
        BootDecision::Ignore(target) => Outcome::Ignored(target.state.as_str()),
        BootDecision::Unknown { reason } => Outcome::Unknown(reason.clone()),
    })
}

/// Forgets expired pairs every window until `stop`, off the request path.
pub async fn sweep_every_window(
    events: std::sync::Arc<BootEvents>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut ticks = tokio::time::interval(events.window);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = ticks.tick() => {
                // Off the runtime's workers, like every scan of the whole fleet.
                let events = std::sync::Arc::clone(&events);
                let _ = tokio::task::spawn_blocking(move || events.forget_expired(Instant::now())).await;
            }
        }
    }
}

/// How long a boot event waits for JetStream to take it (a NATS restart, a stream leader
/// election) before it is dropped.
const PUBLISH_PATIENCE: Duration = Duration::from_secs(60);

/// Publishes queued events until the queue closes, many at once, each tried again while
/// JetStream cannot take it for now; one that still cannot be published is logged and
/// dropped (it is a record of a boot, never a decision).
pub async fn publish(js: async_nats::jetstream::Context, receiver: mpsc::Receiver<QueuedEvent>) {
    let js = &js;
    tokio_stream_from(receiver)
        .for_each_concurrent(PUBLISH_CONCURRENCY, |event| async move {
            let QueuedEvent {
                event_type,
                event_id,
                payload,
            } = event;
            if let Err(error) =
                metal_core::jetstream::publish_encoded_patiently(
                    js,
                    event_type,
                    event_id,
                    payload,
                    PUBLISH_PATIENCE,
                )
                .await
            {
                metrics::counter!(metal_core::metrics::BOOT_EVENTS_DROPPED).increment(1);
                tracing::warn!(event_type, error = %metal_core::error_chain(&error), "boot event not published");
            }
        })
        .await;
}

fn tokio_stream_from<T>(mut receiver: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown() -> Lookup {
        Lookup {
            decision: BootDecision::Unknown {
                reason: "no machine has this MAC".to_string(),
            },
            nic: None,
        }
    }

    #[test]
    fn the_memory_of_outcomes_is_bounded_and_the_sweep_frees_it() {
        let (events, mut queue) = BootEvents::remembering(Duration::from_secs(1), 4);
        let mac = |last: u8| Mac::from_bytes([0x52, 0x54, 0, 0, 1, last]);
        for last in 0..4 {
            events.record(mac(last), BootPath::Pixiecore, &unknown());
        }
        // The same MAC and outcome again within the window: remembered, no new event.
        events.record(mac(0), BootPath::Pixiecore, &unknown());
        // A fifth MAC while all four are fresh: dropped and counted, not remembered.
        events.record(mac(4), BootPath::Pixiecore, &unknown());
        assert_eq!(events.dropped(), 1);
        let mut queued = Vec::new();
        while let Ok(event) = queue.try_recv() {
            queued.push(event);
        }
        assert_eq!(queued.len(), 4);

        // A sweep after the window forgets all four, so the fifth MAC is recorded again.
        events.forget_expired(Instant::now() + Duration::from_secs(2));
        assert_eq!(events.remembered.load(Ordering::Relaxed), 0);
        events.record(mac(4), BootPath::Pixiecore, &unknown());
        assert_eq!(events.dropped(), 1);
        assert!(queue.try_recv().is_ok(), "the fifth MAC's event");
    }
}
