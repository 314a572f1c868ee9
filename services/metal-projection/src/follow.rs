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
        })
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
/// applying what is pending in batches. Re-subscribes after stream errors; returns an error
/// only when the projection itself fails.
pub async fn follow(
    stream: &Stream,
    live: &LiveProjection,
    shutdown: impl Future<Output = ()>,
) -> Result<(), FollowError> {
    tokio::pin!(shutdown);
    let mut reconnected = metal_core::jetstream::reconnections();
    loop {
        let start = live
            .with(|projection| projection.last_sequence())
            .await?
            .map_err(FollowError::Projection)?
            + 1;
        reconnected.mark_unchanged();
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
                        let last = live.apply_batch(batch).await?;
                        tracing::debug!(last_sequence = last, "applied");
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
            _ = tokio::time::sleep(RESUBSCRIBE_DELAY) => {}
        }
    }
}
