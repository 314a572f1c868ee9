//! Replay: rebuild a fresh projection file from sequence 1 while the live one keeps
//! applying and answering, then pause the live one, bring both to the same sequence,
//! compare canonical export digests and swap the fresh file in atomically.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::stream::Stream;
use futures::StreamExt;
use metal_core::jetstream::{follow_stream, last_sequence, JetStreamError, StoredMessage};
use metal_core::query::{ReplayProgress, ReplayReport};
use metal_projection::follow::{FollowError, MAX_BATCH};
use metal_projection::{
    replace_file, Applied, DecodedMessage, LiveProjection, Projection, ProjectionError,
};

/// Longest the live projection stays paused while the fresh one catches up to it.
const SYNC_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("replay projection failed")]
    Projection(#[source] ProjectionError),
    #[error("reading the stream for replay failed")]
    Stream(#[source] JetStreamError),
    #[error("replay task failed")]
    Task(#[source] tokio::task::JoinError),
    #[error("live projection failed during replay")]
    Live(#[source] FollowError),
    #[error("the stream ended before sequence {wanted} (replay reached {reached})")]
    StreamEnded { wanted: u64, reached: u64 },
    #[error("replay could not catch up with the live projection within {0:?}")]
    Deadline(Duration),
}

/// How far the replay running now has got, for the status query and metrics.
#[derive(Debug, Default)]
pub struct ReplayMeter {
    running: AtomicBool,
    applied: AtomicU64,
    target: AtomicU64,
}

impl ReplayMeter {
    /// The running replay's progress; `None` when none runs.
    pub fn progress(&self) -> Option<ReplayProgress> {
        self.running
            .load(Ordering::Relaxed)
            .then(|| ReplayProgress {
                applied: self.applied.load(Ordering::Relaxed),
                target_sequence: self.target.load(Ordering::Relaxed),
            })
    }

    fn start(&self, target: u64) {
        self.applied.store(0, Ordering::Relaxed);
        self.target.store(target, Ordering::Relaxed);
        self.running.store(true, Ordering::Relaxed);
        metrics::gauge!(metal_core::metrics::REPLAY_APPLIED).set(0.0);
        metrics::gauge!(metal_core::metrics::REPLAY_TARGET).set(target as f64);
    }

    fn applied(&self, count: u64) {
        self.applied.fetch_add(count, Ordering::Relaxed);
        metrics::gauge!(metal_core::metrics::REPLAY_APPLIED).increment(count as f64);
    }
}

/// Marks the meter's replay over when dropped, however it ended.
struct Running<'a>(&'a ReplayMeter);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Relaxed);
    }
}

/// Where the fresh projection is built: next to the live file, under a temporary name.
pub fn fresh_path(live_path: &Path) -> PathBuf {
    let mut name = live_path.as_os_str().to_owned();
    name.push(".replay");
    PathBuf::from(name)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ProjectionError> + Send + 'static,
) -> Result<T, ReplayError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ReplayError::Task)?
        .map_err(ReplayError::Projection)
}

/// Most messages one replay transaction applies: the scratch file has no journal, so a
/// large transaction costs nothing but the dirty pages it holds in the page cache.
pub const REPLAY_TRANSACTION: usize = 8 * MAX_BATCH;

/// Messages read and decoded together. Decoded, a message is larger than its JSON (a
/// scraped inventory's rows and document, other events' trees of maps), so chunks are
/// small and few wait: replay's memory stays bounded by a few chunks, not by a
/// transaction's worth of decoded messages.
pub const READ_CHUNK: usize = 256;

/// Chunks being decoded at once, and decoded chunks waiting for the writer: the stream is
/// read and decoded while SQLite writes.
pub const READ_AHEAD: usize = 2;

/// Applies the stream to `projection` from its last sequence + 1 up to and including
/// `until`, with a separate ordered read. Returns the projection and how many messages it
/// applied.
///
/// The read, the decoding and the writes are pipelined: this task reads chunks, has them
/// decoded on the blocking pool, a few at once, and hands them in order to a blocking
/// thread, which applies whatever has arrived (up to [`REPLAY_TRANSACTION`] messages) in
/// one transaction while the next chunks are read and decoded.
pub async fn catch_up(
    stream: &Stream,
    projection: Projection,
    until: u64,
    meter: &ReplayMeter,
) -> Result<(Projection, u64), ReplayError> {
    let reached = projection
        .last_sequence()
        .map_err(ReplayError::Projection)?;
    if reached >= until {
        return Ok((projection, 0));
    }
    let messages = follow_stream(stream, reached + 1)
        .await
        .map_err(ReplayError::Stream)?;
    let (chunks_in, chunks_out) = tokio::sync::mpsc::channel::<Vec<DecodedMessage>>(READ_AHEAD);
    let (counts_in, mut counts_out) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let writer =
        tokio::task::spawn_blocking(move || write_chunks(projection, chunks_out, counts_in));
    let read = read_chunks(messages, reached, until, chunks_in, &mut counts_out, meter).await;
    // The writer stops when the reader has dropped its sender, or on its own error.
    let written = writer.await.map_err(ReplayError::Task)?;
    while let Ok(count) = counts_out.try_recv() {
        meter.applied(count);
    }
    let (projection, applied) = written.map_err(ReplayError::Projection)?;
    read?;
    Ok((projection, applied))
}

/// The reading half of [`catch_up`]: sends chunks of messages up to `until` to the writer
/// until it has sent `until` (or the stream has a gap there), passing the writer's counts
/// on to the meter meanwhile. Up to [`READ_AHEAD`] chunks are decoded at once, on the
/// blocking pool, while the next are read.
async fn read_chunks(
    messages: impl futures::Stream<Item = Result<StoredMessage, JetStreamError>>,
    mut reached: u64,
    until: u64,
    chunks: tokio::sync::mpsc::Sender<Vec<DecodedMessage>>,
    counts: &mut tokio::sync::mpsc::UnboundedReceiver<u64>,
    meter: &ReplayMeter,
) -> Result<(), ReplayError> {
    let decoded = messages
        .ready_chunks(READ_CHUNK)
        .map(|chunk| async move {
            let chunk = chunk
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .map_err(ReplayError::Stream)?;
            tokio::task::spawn_blocking(move || {
                chunk
                    .into_iter()
                    .filter(|m| m.sequence <= until)
                    .map(DecodedMessage::new)
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(ReplayError::Task)
        })
        .buffered(READ_AHEAD);
    let mut decoded = std::pin::pin!(decoded);
    while reached < until {
        while let Ok(count) = counts.try_recv() {
            meter.applied(count);
        }
        let Some(chunk) = decoded.next().await else {
            return Err(ReplayError::StreamEnded {
                wanted: until,
                reached,
            });
        };
        let chunk = chunk?;
        let Some(last) = chunk.last().map(DecodedMessage::sequence) else {
            // Everything in this chunk is past `until`: there is a gap in the stream.
            return Ok(());
        };
        reached = last;
        if chunks.send(chunk).await.is_err() {
            // The writer stopped: its error is the one to report.
            return Ok(());
        }
    }
    Ok(())
}

/// The writing half of [`catch_up`], on a blocking thread: applies the chunks as they come,
/// those waiting (up to [`REPLAY_TRANSACTION`] messages) in one transaction, and
/// reports how many messages each transaction applied. Applied chunks are freed on a
/// thread of their own: freeing thousands of decoded messages is work the writer, replay's
/// narrowest stage, need not do.
fn write_chunks(
    mut projection: Projection,
    mut chunks: tokio::sync::mpsc::Receiver<Vec<DecodedMessage>>,
    counts: tokio::sync::mpsc::UnboundedSender<u64>,
) -> Result<(Projection, u64), ProjectionError> {
    let (applied_chunks, to_free) = std::sync::mpsc::sync_channel::<Vec<DecodedMessage>>(4);
    let freeing = std::thread::Builder::new()
        .name("replay-free".into())
        .spawn(move || to_free.into_iter().for_each(drop));
    let mut applied = 0u64;
    while let Some(first) = chunks.blocking_recv() {
        // The chunks arriving meanwhile join the first one's transaction, up to its size.
        let mut taken = first.len();
        let waiting = std::iter::from_fn(|| {
            if taken >= REPLAY_TRANSACTION {
                return None;
            }
            let next = chunks.try_recv().ok()?;
            taken += next.len();
            Some(next)
        });
        let counted = projection
            .apply_decoded_chunks(std::iter::once(first).chain(waiting), |chunk| {
                // Without the freeing thread (it could not start) the chunk is dropped here.
                let _ = applied_chunks.send(chunk);
            })?
            .iter()
            .filter(|r| **r != Applied::AlreadyApplied)
            .count() as u64;
        applied += counted;
        let _ = counts.send(counted);
    }
    drop(applied_chunks);
    if let Ok(freeing) = freeing {
        let _ = freeing.join();
    }
    Ok((projection, applied))
}

/// Builds a projection at `path` from sequence 1 up to `until` (use the stream's last
/// sequence for "everything"). Any old file at `path` is removed first.
pub async fn rebuild(
    stream: &Stream,
    path: &Path,
    until: u64,
    meter: &ReplayMeter,
) -> Result<(Projection, u64), ReplayError> {
    let path = path.to_path_buf();
    let fresh = blocking(move || {
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            match std::fs::remove_file(PathBuf::from(name)) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(ProjectionError::Replace {
                        path: path.clone(),
                        source,
                    })
                }
            }
        }
        Projection::open_scratch(&path)
    })
    .await?;
    catch_up(stream, fresh, until, meter).await
}

/// Rebuilds the live projection at `live_path` from the stream and swaps it in.
pub async fn replay(
    stream: &Stream,
    live: &LiveProjection,
    live_path: &Path,
    meter: &ReplayMeter,
) -> Result<ReplayReport, ReplayError> {
    let started = Instant::now();
    let tail = last_sequence(&mut stream.clone())
        .await
        .map_err(ReplayError::Stream)?;
    let fresh_path = fresh_path(live_path);
    tracing::info!(tail, fresh = %fresh_path.display(), "replay started");
    meter.start(tail);
    let _running = Running(meter);
    let (fresh, mut events_applied) = rebuild(stream, &fresh_path, tail, meter).await?;
    // Before the live projection is paused: the sorts take seconds at fleet scale.
    let mut fresh = blocking(move || {
        let mut fresh = fresh;
        fresh.build_deferred_indexes()?;
        Ok(fresh)
    })
    .await?;
    if let Some(damage) = live.damage() {
        // The follow loop waits for the repair: nothing to catch up with, nothing to compare.
        let paused = live.pause().await;
        let report = swap(live, fresh, &fresh_path, live_path, true).await?;
        live.mark_repaired();
        drop(paused);
        tracing::warn!(last_sequence = report.last_sequence, digest = %report.new_digest, %damage, "replay replaced the damaged projection");
        return Ok(ReplayReport {
            events_applied,
            seconds: started.elapsed().as_secs_f64(),
            repaired_damage: Some(damage),
            ..report
        });
    }

    let deadline = Instant::now() + SYNC_DEADLINE;
    let mut progress = live.subscribe();
    loop {
        let paused = live.pause().await;
        let live_sequence = live
            .with(|projection| projection.last_sequence())
            .await
            .map_err(ReplayError::Live)?
            .map_err(ReplayError::Projection)?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let caught_up =
            tokio::time::timeout(remaining, catch_up(stream, fresh, live_sequence, meter))
                .await
                .map_err(|_| ReplayError::Deadline(SYNC_DEADLINE))??;
        fresh = caught_up.0;
        events_applied += caught_up.1;
        let fresh_sequence = fresh.last_sequence().map_err(ReplayError::Projection)?;
        if fresh_sequence > live_sequence {
            // The live projection is behind the fresh one: let it follow, then try again.
            drop(paused);
            let waited =
                tokio::time::timeout(remaining, progress.wait_for(|s| *s >= fresh_sequence)).await;
            if waited.is_err() {
                return Err(ReplayError::Deadline(SYNC_DEADLINE));
            }
            continue;
        }
        let report = swap(live, fresh, &fresh_path, live_path, false).await?;
        drop(paused);
        let report = ReplayReport {
            events_applied,
            seconds: started.elapsed().as_secs_f64(),
            ..report
        };
        if report.identical {
            tracing::info!(last_sequence = report.last_sequence, digest = %report.new_digest, "replay identical, swapped");
        } else {
            tracing::warn!(
                last_sequence = report.last_sequence,
                old_digest = %report.old_digest,
                new_digest = %report.new_digest,
                "replay differs from the live projection; the rebuilt one replaced it"
            );
        }
        return Ok(report);
    }
}

/// Renames the fresh file over the live one and reopens the live projection (whatever
/// file is at its path then, so the service keeps working). A sound live projection is
/// compared by digest first and closed cleanly; a damaged one is neither read nor
/// checkpointed, its connection only dropped.
async fn swap(
    live: &LiveProjection,
    fresh: Projection,
    fresh_path: &Path,
    live_path: &Path,
    damaged: bool,
) -> Result<ReplayReport, ReplayError> {
    let fresh_path = fresh_path.to_path_buf();
    let live_path = live_path.to_path_buf();
    let result = live
        .with(move |projection| -> Result<ReplayReport, ProjectionError> {
            let (last_sequence, old_digest) = if damaged {
                (fresh.last_sequence()?, String::new())
            } else {
                let old = projection.export_digest()?;
                (projection.last_sequence()?, old)
            };
            let new_digest = fresh.export_digest()?;
            fresh.close()?;
            let old = std::mem::replace(projection, Projection::open_in_memory()?);
            let closed = if damaged {
                drop(old);
                Ok(())
            } else {
                old.close()
            };
            let replaced = closed.and_then(|()| replace_file(&fresh_path, &live_path));
            *projection = Projection::open(&live_path)?;
            replaced?;
            Ok(ReplayReport {
                events_applied: 0,
                last_sequence,
                identical: !damaged && old_digest == new_digest,
                old_digest,
                new_digest,
                seconds: 0.0,
                repaired_damage: None,
            })
        })
        .await
        .map_err(ReplayError::Live)?
        .map_err(ReplayError::Projection)?;
    live.announce(result.last_sequence);
    Ok(result)
}

#[cfg(test)]
mod meter_tests {
    use super::*;

    #[test]
    fn the_meter_shows_a_running_replay_and_nothing_after_it() {
        let meter = ReplayMeter::default();
        assert_eq!(meter.progress(), None);
        {
            meter.start(1000);
            let _running = Running(&meter);
            meter.applied(250);
            meter.applied(250);
            assert_eq!(
                meter.progress(),
                Some(ReplayProgress {
                    applied: 500,
                    target_sequence: 1000
                })
            );
        }
        assert_eq!(
            meter.progress(),
            None,
            "a replay that ended, however, is over"
        );
    }
}
