//! Following the stream into a projection: the loop inventory-projector, boot-api and the
//! validator share.
//! The only module of this crate that knows NATS; applying stays in [`crate::apply`].

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_nats::jetstream::stream::Stream;
use futures::StreamExt;
use metal_core::jetstream::{follow_subjects, JetStreamError, StoredMessage};
use tokio::sync::{watch, OwnedMutexGuard};

use crate::{Applied, Projection, ProjectionError};

/// Most messages applied in one transaction when many are pending, where nobody waits on
/// the projection's lock meanwhile: replay's scratch file, and boot-api, whose requests read
/// its in-memory index ([`LiveProjection::batched`]).
pub const MAX_BATCH: usize = 4096;

/// The same for a projection that answers queries under the lock it applies with (the
/// projector, the validator): a backlog never holds a query up for long.
pub const SERVING_BATCH: usize = 512;

/// Wait before re-subscribing after the stream ended or failed.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(500);

/// How often a follower asks how the stream's cluster stands. Its ordered consumer lives on
/// one node: when that node dies and the follower's own connection survives, async-nats
/// only notices after two missed idle heartbeats (30 s), so the follower re-subscribes as
/// soon as it sees the stream's leader change or one of its nodes fall silent instead.
const CLUSTER_CHECK: Duration = Duration::from_secs(3);

/// A replica the leader has not heard from for this long is taken for gone: the leader
/// hears from live ones every few milliseconds, and a dead one is not marked offline for
/// a long while (not within 12 s on nats-server 2.15).
const SILENT_REPLICA: Duration = Duration::from_secs(3);

/// Which node leads the stream and which of its replicas are offline or silent.
#[derive(Debug, PartialEq, Eq)]
struct ClusterView {
    leader: String,
    gone: Vec<String>,
}

/// The stream's [`ClusterView`], when it can be asked within [`CLUSTER_CHECK`] and has a
/// leader.
async fn cluster_view(stream: &Stream) -> Option<ClusterView> {
    let mut stream = stream.clone();
    let info = tokio::time::timeout(CLUSTER_CHECK, stream.info())
        .await
        .ok()?
        .ok()?;
    let cluster = info.cluster.as_ref()?;
    let mut gone: Vec<String> = cluster
        .replicas
        .iter()
        .filter(|peer| peer.offline || peer.active > SILENT_REPLICA)
        .map(|peer| peer.name.clone())
        .collect();
    gone.sort();
    Some(ClusterView {
        leader: cluster.leader.clone()?,
        gone,
    })
}

/// Wait before trying again to write a projection that refused a write without being
/// damaged (a full disk, a locked file).
const WRITE_RETRY_DELAY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("projection failed")]
    Projection(#[source] ProjectionError),
    #[error("reading the stream failed")]
    Stream(#[source] JetStreamError),
    #[error("projection task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// Called after each applied batch, under the projection's lock, with what each message
/// did: boot-api keeps its in-memory boot index in step with the file this way.
pub type BatchObserver = Arc<dyn Fn(&Projection, &[Applied]) + Send + Sync>;

/// A projection shared between the follow loop and its readers. SQLite work runs on the
/// blocking pool; `pause` holds the follow loop off (for replay's compare-and-swap).
#[derive(Clone)]
pub struct LiveProjection {
    db: Arc<Mutex<Projection>>,
    gate: Arc<tokio::sync::Mutex<()>>,
    applied: Arc<watch::Sender<u64>>,
    observer: Option<BatchObserver>,
    batch: usize,
    /// The subjects followed; every event subject when empty.
    subjects: Arc<[String]>,
    /// Why the projection cannot be trusted, once it is found damaged: it then answers
    /// nothing and applies nothing until a rebuild replaces it.
    damage: Arc<watch::Sender<Option<String>>>,
    /// Whether its service can rebuild it in place (the projector's replay): damage found
    /// while following is then marked and waited on, else it ends the follow loop.
    repairable: bool,
}

impl std::fmt::Debug for LiveProjection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveProjection")
            .field("applied", &*self.applied.borrow())
            .field("observed", &self.observer.is_some())
            .finish()
    }
}

impl LiveProjection {
    pub fn new(projection: Projection) -> Result<LiveProjection, ProjectionError> {
        let last = projection.last_sequence()?;
        Ok(LiveProjection {
            db: Arc::new(Mutex::new(projection)),
            gate: Arc::new(tokio::sync::Mutex::new(())),
            applied: Arc::new(watch::channel(last).0),
            observer: None,
            batch: SERVING_BATCH,
            subjects: Arc::new([]),
            damage: Arc::new(watch::channel(None).0),
            repairable: false,
        })
    }

    /// A projection found damaged before it could be opened (`why`): it holds an empty
    /// placeholder, answers nothing and applies nothing until a rebuild replaces it.
    pub fn damaged(why: String) -> Result<LiveProjection, ProjectionError> {
        let live = LiveProjection::new(Projection::open_in_memory()?)?;
        live.mark_damaged(why);
        Ok(live)
    }

    /// The same projection, followed in transactions of up to `most` pending messages
    /// (default [`SERVING_BATCH`]).
    pub fn batched(mut self, most: usize) -> LiveProjection {
        self.batch = most.max(1);
        self
    }

    /// The same projection, following only the messages on `subjects` (names, no
    /// wildcards needed): the last applied sequence is then that of the last message among
    /// them, not the stream's.
    pub fn following(mut self, subjects: Vec<String>) -> LiveProjection {
        self.subjects = subjects.into();
        self
    }

    /// The same projection, with `observer` told of every batch applied from now on.
    pub fn observed(mut self, observer: BatchObserver) -> LiveProjection {
        self.observer = Some(observer);
        self
    }

    /// Opens (or creates) the projection file off the async runtime.
    pub async fn open(path: std::path::PathBuf) -> Result<LiveProjection, FollowError> {
        let projection = tokio::task::spawn_blocking(move || Projection::open(&path))
            .await
            .map_err(FollowError::Task)?
            .map_err(FollowError::Projection)?;
        LiveProjection::new(projection).map_err(FollowError::Projection)
    }

    /// Opens (or creates) the projection file and checks every page of it
    /// ([`Projection::open_checked`]), for a service that can rebuild it in place: a
    /// damaged file gives a [`LiveProjection::damaged`] one instead of an error, so the
    /// service can say why until a rebuild mends it, and damage found later is marked too.
    pub async fn open_checked(path: std::path::PathBuf) -> Result<LiveProjection, FollowError> {
        let opened = tokio::task::spawn_blocking(move || Projection::open_checked(&path))
            .await
            .map_err(FollowError::Task)?;
        let live = match opened {
            Ok(projection) => LiveProjection::new(projection),
            Err(error) if error.is_damage() => {
                LiveProjection::damaged(metal_core::error_chain(&error))
            }
            Err(error) => Err(error),
        };
        live.map(|live| LiveProjection {
            repairable: true,
            ..live
        })
        .map_err(FollowError::Projection)
    }

    /// Why the projection cannot be trusted, if it was found damaged.
    pub fn damage(&self) -> Option<String> {
        self.damage.borrow().clone()
    }

    /// Marks the projection damaged: it stops applying, and its services answer nothing
    /// from it, until [`LiveProjection::mark_repaired`].
    pub fn mark_damaged(&self, why: String) {
        tracing::error!(damage = %why, "the projection is damaged: it answers nothing until it is rebuilt from the stream (metal-cli replay)");
        self.damage.send_replace(Some(why));
    }

    /// Marks the projection sound again, once a rebuilt file has replaced the damaged one.
    pub fn mark_repaired(&self) {
        if self.damage.send_replace(None).is_some() {
            tracing::info!("the projection was rebuilt: following the stream again");
        }
    }

    /// Takes damage found while following: marked on a projection its service can rebuild
    /// (the loop then waits for the rebuild), handed back to end the loop otherwise.
    fn damaged_while_following(&self, error: ProjectionError) -> Result<(), FollowError> {
        if !self.repairable {
            return Err(FollowError::Projection(error));
        }
        self.mark_damaged(metal_core::error_chain(&error));
        Ok(())
    }

    /// Waits until the projection is not marked damaged.
    async fn sound(&self) {
        let mut damage = self.damage.subscribe();
        let _ = damage.wait_for(Option::is_none).await;
    }

    /// Locks the projection on the current thread. Prefer [`LiveProjection::with`] in async code.
    pub fn lock(&self) -> MutexGuard<'_, Projection> {
        // A panic while holding the lock leaves SQLite consistent (the transaction rolls back).
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `work` on the projection on the blocking pool.
    pub async fn with<T, F>(&self, work: F) -> Result<T, FollowError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Projection) -> T + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let mut guard = db.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut guard)
        })
        .await
        .map_err(FollowError::Task)
    }

    /// Stops the follow loop from applying until the guard is dropped.
    pub async fn pause(&self) -> OwnedMutexGuard<()> {
        Arc::clone(&self.gate).lock_owned().await
    }

    /// The last applied sequence, updated after every batch.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Tells subscribers the projection is at `sequence` (after a swap, for instance).
    pub fn announce(&self, sequence: u64) {
        self.applied.send_replace(sequence);
    }

    /// Applies a batch in one transaction, unless paused; returns the last applied sequence.
    pub async fn apply_batch(&self, batch: Vec<StoredMessage>) -> Result<u64, FollowError> {
        let _running = self.gate.lock().await;
        let observer = self.observer.clone();
        let count = batch.len() as u64;
        let last = self
            .with(move |projection| {
                let applied = projection.apply_batch(&batch)?;
                if let Some(observer) = &observer {
                    observer(projection, &applied);
                }
                projection.last_sequence()
            })
            .await?
            .map_err(FollowError::Projection)?;
        metrics::counter!(metal_core::metrics::PROJECTION_APPLIED).increment(count);
        metrics::gauge!(metal_core::metrics::PROJECTION_SEQUENCE).set(last as f64);
        self.announce(last);
        Ok(last)
    }
}

/// Ensures the stream (retrying while NATS is away) and follows it into `live` until
/// `stop`; a service keeps answering from what it has meanwhile.
pub async fn follow_with_retry(
    js: async_nats::jetstream::Context,
    live: &LiveProjection,
    stop: impl Future<Output = ()>,
) -> Result<(), FollowError> {
    tokio::pin!(stop);
    let Some(stream) = metal_core::jetstream::stream_with_retry(&js, &mut stop).await else {
        return Ok(());
    };
    follow(&stream, live, stop).await
}

/// Follows `stream` from the projection's last sequence + 1 until `shutdown` resolves,
/// applying what is pending in batches. Re-subscribes after stream errors; a projection
/// that refuses a write is tried again after a while. A damaged one ends the loop with
/// the error, unless its service can rebuild it ([`LiveProjection::open_checked`]): it is
/// then marked so and waited on until a rebuild replaces it.
pub async fn follow(
    stream: &Stream,
    live: &LiveProjection,
    shutdown: impl Future<Output = ()>,
) -> Result<(), FollowError> {
    tokio::pin!(shutdown);
    let mut reconnected = metal_core::jetstream::reconnections();
    let mut delay = RESUBSCRIBE_DELAY;
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = live.sound() => {}
        }
        let start = match live.with(|projection| projection.last_sequence()).await? {
            Ok(last) => last + 1,
            Err(error) if error.is_damage() => {
                live.damaged_while_following(error)?;
                continue;
            }
            Err(error) => return Err(FollowError::Projection(error)),
        };
        reconnected.mark_unchanged();
        let view = cluster_view(stream).await;
        let mut cluster_checks =
            tokio::time::interval_at(tokio::time::Instant::now() + CLUSTER_CHECK, CLUSTER_CHECK);
        cluster_checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        match follow_subjects(stream, start, &live.subjects).await {
            Ok(messages) => {
                let mut chunks = Box::pin(messages.ready_chunks(live.batch));
                loop {
                    let chunk = tokio::select! {
                        _ = &mut shutdown => return Ok(()),
                        chunk = chunks.next() => chunk,
                        Ok(()) = reconnected.changed() => {
                            let applied = *live.applied.borrow();
                            tracing::warn!(last_sequence = applied, "NATS connection regained: following the stream again");
                            break;
                        }
                        _ = cluster_checks.tick() => {
                            let now = cluster_view(stream).await;
                            if now.is_some() && now != view {
                                let applied = *live.applied.borrow();
                                tracing::warn!(last_sequence = applied, from = ?view, to = ?now, "the stream's cluster changed: following the stream again");
                                break;
                            }
                            continue;
                        }
                    };
                    let Some(chunk) = chunk else {
                        tracing::warn!("stream subscription ended, re-subscribing");
                        break;
                    };
                    let mut batch = Vec::with_capacity(chunk.len());
                    let mut failure = None;
                    for item in chunk {
                        match item {
                            Ok(message) => batch.push(message),
                            Err(error) => {
                                failure = Some(error);
                                break;
                            }
                        }
                    }
                    if !batch.is_empty() {
                        match live.apply_batch(batch).await {
                            Ok(last) => tracing::debug!(last_sequence = last, "applied"),
                            Err(FollowError::Projection(error)) if error.is_damage() => {
                                live.damaged_while_following(error)?;
                                break;
                            }
                            Err(FollowError::Projection(error)) => {
                                // Nothing of the batch was committed: read it again later.
                                tracing::error!(error = %metal_core::error_chain(&error), retry_in_secs = WRITE_RETRY_DELAY.as_secs(), "cannot write the projection; its answers stay as they were");
                                delay = WRITE_RETRY_DELAY;
                                break;
                            }
                            Err(other) => return Err(other),
                        }
                    }
                    if let Some(error) = failure {
                        // Never skip a message: start again after the last one applied.
                        tracing::warn!(error = %metal_core::error_chain(&error), "reading stream failed, re-subscribing");
                        break;
                    }
                }
            }
            Err(error) => {
                tracing::warn!(error = %metal_core::error_chain(&error), "cannot subscribe to stream, retrying");
            }
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = RESUBSCRIBE_DELAY;
    }
}
