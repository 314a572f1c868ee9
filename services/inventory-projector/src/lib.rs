//! inventory-projector: folds every `machine.>` event into the SQLite inventory and answers
//! the inventory query service over NATS.
//!
//! # Layout
//! - [`run`]: ensure the stream, open the projection, follow the stream, serve queries.
//! - [`answer`]: pure answers of the read queries (machines, machine, history, status, and
//!   unknown: MACs that asked boot-api to netboot and that no machine has; drift: machines
//!   whose firmware differs from the most common version of their model).
//! - [`service`]: the NATS micro service, including the streamed export.
//! - [`replay`]: rebuild from sequence 1, compare digests, swap atomically; `rebuild` for
//!   tests and benchmarks.
//!
//! The projection itself (schema, apply, export) lives in metal-projection, shared with
//! boot-api. Run the tests with `cargo test -p inventory-projector`.

pub mod answer;
pub mod replay;
pub mod service;

use std::future::Future;
use std::sync::Arc;

use metal_core::config::ProjectorConfig;
use metal_core::jetstream::{last_sequence, stream_with_retry};
use metal_projection::follow::{follow, FollowError};
use metal_projection::LiveProjection;

pub use replay::{rebuild, ReplayError};

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error("cannot open the projection")]
    Open(#[source] FollowError),
    #[error("following the stream failed")]
    Follow(#[source] FollowError),
    #[error("query service failed: {0}")]
    Service(String),
}

/// Runs the projector until `shutdown` resolves: follows the stream into the projection at
/// `config.database` and answers the query service. Restarts continue from the stored sequence.
pub async fn run(
    config: &ProjectorConfig,
    client: async_nats::Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ProjectorError> {
    let js = async_nats::jetstream::new(client.clone());
    let shutdown = metal_core::Shutdown::spawn_from(shutdown);
    // A projector started before NATS, or with a cluster still electing leaders, waits.
    let stopped = shutdown.wait();
    tokio::pin!(stopped);
    let Some(stream) = stream_with_retry(&js, &mut stopped).await else {
        return Ok(());
    };
    let database = config.database.clone();
    let live = LiveProjection::open_checked(database.clone())
        .await
        .map_err(ProjectorError::Open)?;
    let applied = *live.subscribe().borrow();
    tracing::info!(
        database = %database.display(),
        last_sequence = applied,
        "projection opened"
    );
    if live.damage().is_none() {
        match last_sequence(&mut stream.clone()).await {
            Ok(end) if applied > end => live.mark_damaged(format!(
                "it has applied the stream up to sequence {applied}, but the stream ends at {end}: it was built from another stream"
            )),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %metal_core::error_chain(&error), "cannot compare the projection with the stream's end")
            }
        }
    }

    let follower = {
        let live = live.clone();
        let stream = stream.clone();
        let stop = shutdown.wait();
        tokio::spawn(async move { follow(&stream, &live, stop).await })
    };
    let context = service::QueryContext {
        client,
        stream,
        live,
        database,
        replay_lock: Arc::new(tokio::sync::Mutex::new(())),
        replay_meter: Arc::default(),
    };
    let served = service::serve(context, shutdown.wait())
        .await
        .map_err(|error| ProjectorError::Service(error.to_string()));
    if served.is_err() {
        // Do not keep following without a query service; let the process restart whole.
        follower.abort();
    }
    let followed = match follower.await {
        Ok(result) => result.map_err(ProjectorError::Follow),
        Err(error) if error.is_cancelled() => Ok(()),
        Err(error) => Err(ProjectorError::Follow(FollowError::Task(error))),
    };
    served.and(followed)
}

#[cfg(test)]
mod tests;
