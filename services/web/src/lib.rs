//! web: a read-only HTTP API (JSON under `/api/v1`, with its OpenAPI 3.1 document) over its
//! own projection of the MACHINES stream.
//!
//! # Layout
//! - [`api`]: the routes, their bounds and the OpenAPI document ([`api::ApiDoc`]);
//!   testable with `oneshot` over an in-memory projection.
//! - [`pages`]: the same projection as HTML (fleet table, one machine with its timeline)
//!   kept live by server-sent events at `/events`; no build step, no assets.
//! - [`run`]: follows the stream into the projection file and serves the routes until
//!   shutdown; `/api/v1/status` also asks NATS for the stream's last sequence, and
//!   `/api/v1/profiles` lists the boot profiles of `boot_api.profiles` (loaded at start).
//!
//! Nothing here writes to the stream: every route is a read of the projection.
//! Run the tests with `cargo test -p web`; refresh docs/openapi.json with
//! `UPDATE_OPENAPI=1 cargo test -p web openapi_document_is_current`.

pub mod api;
pub mod pages;

use std::future::Future;

use metal_core::config::WebConfig;
use metal_core::profiles::Profiles;
use metal_projection::follow::{follow_with_retry, FollowError};
use metal_projection::LiveProjection;

pub use api::{router, router_with, ApiDoc, ApiState};

/// The JSON API and the HTML pages without NATS or boot profiles (see [`api::router`]);
/// `shutdown` ends the pages' event streams so a graceful shutdown does not wait on open
/// browsers.
pub fn app(live: LiveProjection, shutdown: metal_core::Shutdown) -> axum::Router {
    app_with(ApiState::new(live, None, None), shutdown)
}

/// Everything `run` serves: the JSON API over `state` and the HTML pages.
pub fn app_with(state: ApiState, shutdown: metal_core::Shutdown) -> axum::Router {
    pages::router(state.live.clone(), shutdown).merge(router_with(state))
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
/// bind, so tests can pass a listener on a free port), listing `profiles` (boot-api's
/// `boot_api.profiles` file, loaded by the caller so a broken one stops web before it
/// starts).
pub async fn run(
    config: &WebConfig,
    profiles: &Profiles,
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
        let js = js.clone();
        tokio::spawn(async move { follow_with_retry(js, &live, stop).await })
    };
    tracing::info!(address = ?listener.local_addr().ok(), database = %config.database.display(), "web listening");
    let state = ApiState::new(live, Some(js), Some(profiles));
    let served = axum::serve(listener, app_with(state, shutdown.clone()))
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
