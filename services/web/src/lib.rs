//! web: a read-only HTTP API (JSON under `/api/v1`, with its OpenAPI 3.1 document) over its
//! own projection of the MACHINES stream.
//!
//! # Layout
//! - [`api`]: the routes, their bounds and the OpenAPI document ([`api::ApiDoc`]);
//!   testable with `oneshot` over an in-memory projection.
//! - [`pages`]: the same projection as HTML (fleet table, one machine with its timeline)
//!   kept live by server-sent events at `/events`; no build step, no assets.
//! - [`run`]: follows the stream into the projection file and serves the routes until
//!   shutdown.
//!
//! Nothing here writes to the stream: every route is a read of the projection.
//! Run the tests with `cargo test -p web`; refresh docs/openapi.json with
//! `UPDATE_OPENAPI=1 cargo test -p web openapi_document_is_current`.

pub mod api;
pub mod pages;

use std::future::Future;

use metal_core::config::WebConfig;
use metal_projection::follow::{follow_with_retry, FollowError};
use metal_projection::LiveProjection;

pub use api::{router, ApiDoc};

/// Everything `run` serves: the JSON API and the HTML pages; `shutdown` ends the pages'
/// event streams so a graceful shutdown does not wait on open browsers.
pub fn app(live: LiveProjection, shutdown: metal_core::Shutdown) -> axum::Router {
    pages::router(live.clone(), shutdown).merge(router(live))
}

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("cannot open web projection")]
    Open(#[source] FollowError),
    #[error("following the stream failed")]
    Follow(#[source] FollowError),
    #[error("HTTP server failed")]
    Serve(#[source] std::io::Error),
}

/// Runs web until `shutdown` resolves: opens the projection at `config.database`, follows
/// the stream into it and serves the API on `listener` (`config.listen` is the binary's to
/// bind, so tests can pass a listener on a free port).
pub async fn run(
    config: &WebConfig,
    client: async_nats::Client,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WebError> {
    let live = LiveProjection::open(config.database.clone())
        .await
        .map_err(WebError::Open)?;
    let shutdown = metal_core::Shutdown::spawn_from(shutdown);
    let js = async_nats::jetstream::new(client);
    let follower = {
        let live = live.clone();
        let stop = shutdown.wait();
        tokio::spawn(async move { follow_with_retry(js, &live, stop).await })
    };
    tracing::info!(address = ?listener.local_addr().ok(), database = %config.database.display(), "web listening");
    let served = axum::serve(listener, app(live, shutdown.clone()))
        .with_graceful_shutdown(shutdown.wait())
        .await
        .map_err(WebError::Serve);
    // Serving ended (shutdown, or a failure): the follow loop has nothing left to serve.
    follower.abort();
    let followed = match follower.await {
        Ok(result) => result.map_err(WebError::Follow),
        Err(error) if error.is_cancelled() => Ok(()),
        Err(error) => Err(WebError::Follow(FollowError::Task(error))),
    };
    served.and(followed)
}

#[cfg(test)]
mod tests;
