//! boot-api: the Pixiecore API-mode server. It follows the MACHINES stream into its own
//! projection file and answers `GET /v1/boot/{mac}` from it.
//!
//! # Layout
//! - [`profiles`]: the boot profiles file, matching and rendering.
//! - [`app`]: the axum router (`/v1/boot/{mac}`, `/healthz`), testable with `oneshot`.
//! - [`run`]: profiles, projection, the follow loop and the HTTP server, until shutdown.
//!
//! Answers are pure reads of the projection, so Pixiecore's repeated calls for one boot
//! get the same answer. Anything that is not a bootable, inventoried machine with a matching
//! profile gets a 404, which Pixiecore takes as "ignore this machine".
//! Run the tests with `cargo test -p boot-api`.

pub mod profiles;

use std::future::Future;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metal_core::config::BootApiConfig;
use metal_core::query::MachineState;
use metal_core::Mac;
use metal_projection::follow::{follow, FollowError};
use metal_projection::LiveProjection;

pub use profiles::{BootSpec, Profiles, ProfilesError};

#[derive(Debug, thiserror::Error)]
pub enum BootApiError {
    #[error("cannot load boot profiles")]
    Profiles(#[source] ProfilesError),
    #[error("cannot open boot-api projection")]
    Open(#[source] FollowError),
    #[error("following the stream failed")]
    Follow(#[source] FollowError),
    #[error("HTTP server failed")]
    Serve(#[source] std::io::Error),
}

/// What every request handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub live: LiveProjection,
    pub profiles: Arc<Profiles>,
}

/// The HTTP API.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/boot/{mac}", get(boot))
        .route("/healthz", get(healthz))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

fn not_found(reason: &'static str) -> Response {
    (StatusCode::NOT_FOUND, reason).into_response()
}

/// Pixiecore's `GET /v1/boot/<mac>`: 200 with a boot spec, or 404.
async fn boot(State(state): State<AppState>, mac: Result<Path<String>, PathRejection>) -> Response {
    let Ok(Path(text)) = mac else {
        return not_found("malformed MAC\n");
    };
    let Ok(mac) = Mac::parse_device(&text) else {
        tracing::debug!(mac = %text.escape_debug(), "boot request for a malformed MAC");
        return not_found("malformed MAC\n");
    };
    let lookup = state
        .live
        .with(move |projection| projection.boot_lookup(&mac))
        .await;
    let facts = match lookup {
        Ok(Ok(Some(facts))) => facts,
        Ok(Ok(None)) => {
            tracing::info!(%mac, "boot request for an unknown or ambiguous MAC");
            return not_found("unknown MAC\n");
        }
        Ok(Err(error)) => {
            tracing::error!(%mac, error = %metal_core::error_chain(&error), "boot lookup failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "lookup failed\n").into_response();
        }
        Err(error) => {
            tracing::error!(%mac, error = %metal_core::error_chain(&error), "boot lookup failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "lookup failed\n").into_response();
        }
    };
    if facts.state != MachineState::Inventoried {
        tracing::info!(%mac, machine_id = %facts.machine_id, state = facts.state.as_str(), "machine is not to be booted");
        return not_found("machine is not to be booted\n");
    }
    let Some(profile) = state.profiles.choose(&facts) else {
        tracing::info!(%mac, machine_id = %facts.machine_id, "no boot profile matches");
        return not_found("no matching boot profile\n");
    };
    tracing::info!(%mac, machine_id = %facts.machine_id, profile = %profile.name, "boot spec served");
    Json(profile.render(&facts)).into_response()
}

/// Runs boot-api until `shutdown` resolves: loads the profiles, opens the projection at
/// `config.database`, follows the stream into it and serves HTTP on `listener`.
pub async fn run(
    config: &BootApiConfig,
    client: async_nats::Client,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BootApiError> {
    let profiles = Profiles::load(&config.profiles).map_err(BootApiError::Profiles)?;
    let live = LiveProjection::open(config.database.clone())
        .await
        .map_err(BootApiError::Open)?;
    let shutdown = metal_core::Shutdown::spawn_from(shutdown);

    let follower = {
        let live = live.clone();
        let stop = shutdown.wait();
        tokio::spawn(async move { follow_with_retry(client, &live, stop).await })
    };
    let state = AppState {
        live,
        profiles: Arc::new(profiles),
    };
    tracing::info!(address = ?listener.local_addr().ok(), "boot-api listening");
    let served = axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown.wait())
        .await
        .map_err(BootApiError::Serve);
    // Whatever ended serving, stop following too.
    let followed = match follower.await {
        Ok(result) => result.map_err(BootApiError::Follow),
        Err(error) => Err(BootApiError::Follow(FollowError::Task(error))),
    };
    served.and(followed)
}

/// Ensures the stream (retrying while NATS is away) and follows it; HTTP keeps answering
/// from the projection meanwhile.
async fn follow_with_retry(
    client: async_nats::Client,
    live: &LiveProjection,
    stop: impl Future<Output = ()>,
) -> Result<(), FollowError> {
    tokio::pin!(stop);
    let js = async_nats::jetstream::new(client);
    let stream = loop {
        match metal_core::jetstream::ensure_stream(&js).await {
            Ok(stream) => break stream,
            Err(error) => {
                tracing::warn!(error = %metal_core::error_chain(&error), "cannot ensure stream, retrying");
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
        }
    };
    follow(&stream, live, stop).await
}

#[cfg(test)]
mod tests;
