//! boot-api: netboot decisions for Pixiecore (API mode) and iPXE, the installer's
//! phone-home, and arming machines with boot profiles. It follows the MACHINES stream into
//! its own projection file and keeps an in-memory boot index beside it.
//!
//! # Layout
//! - [`index`]: MAC → machine, state and provisioning, in memory; what a boot request reads.
//! - [`http`]: the routes (`/v1/boot/{mac}`, `/v1/ipxe/{mac}`, `/boot.ipxe`,
//!   `/v1/machines/{id}/installed|failed`, `/healthz`), testable with `oneshot`.
//! - [`boot_events`]: `machine.boot.*`, one per MAC, outcome and window, published off the
//!   request path.
//! - [`token`]: install tokens, HMACs of machine and provisioning under an environment key.
//! - [`provision`]: the `boot-api` consumer answering `machine.provision.requested`, and
//!   the install deadline.
//! - [`run`]: wires all of it until shutdown.
//!
//! Boot answers are pure reads of the index, so Pixiecore's repeated calls for one boot get
//! the same answer, and anything not armed gets a 404 (an `exit` script for iPXE).
//! Run the tests with `cargo test -p boot-api`.

pub mod boot_events;
pub mod http;
pub mod index;
pub mod provision;
pub mod token;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use metal_core::config::BootApiConfig;
use metal_core::jetstream::{consumer_with_retry, DurableConsumer};
use metal_core::profiles::{Profiles, ProfilesError};
use metal_projection::follow::{follow_with_retry, FollowError};
use metal_projection::{Applied, BootRecords, LiveProjection, Projection};

pub use boot_events::BootEvents;
pub use http::{router, BootSpec};
pub use index::{BootDecision, BootIndex};
pub use token::{TokenKey, TokenKeyError};

#[derive(Debug, thiserror::Error)]
pub enum BootApiError {
    #[error("cannot load boot profiles")]
    Profiles(#[source] ProfilesError),
    #[error("cannot read the install-token key")]
    TokenKey(#[source] TokenKeyError),
    #[error("boot_api.public_url {url:?} is not usable: {problem}")]
    PublicUrl { url: String, problem: String },
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
    pub index: Arc<BootIndex>,
    pub events: Arc<BootEvents>,
    pub key: TokenKey,
    /// `boot_api.public_url` without a trailing slash.
    pub public_url: String,
    pub event_window: Duration,
    /// Where phone-homes are recorded (`None` only in tests without NATS).
    pub js: Option<async_nats::jetstream::Context>,
}

/// Checks `boot_api.public_url` and returns it without a trailing slash.
pub fn public_url(config: &BootApiConfig) -> Result<String, BootApiError> {
    let url = config.public_url.trim_end_matches('/').to_string();
    metal_core::profiles::check_url("boot_api.public_url", &url).map_err(|problem| {
        BootApiError::PublicUrl {
            url: config.public_url.clone(),
            problem,
        }
    })?;
    Ok(url)
}

/// What start-up checks before touching the network: the profiles file, the token key
/// and the public URL.
#[derive(Debug, Clone)]
pub struct Checked {
    pub profiles: Profiles,
    pub key: TokenKey,
    /// `public_url` without a trailing slash.
    pub public_url: String,
}

impl Checked {
    /// Loads the profiles, reads the key from `config.token_key_env`, checks the URL.
    pub fn from_config(config: &BootApiConfig) -> Result<Checked, BootApiError> {
        let key = TokenKey::from_env(&config.token_key_env).map_err(BootApiError::TokenKey)?;
        Checked::with_key(config, key)
    }

    /// The same with a key from elsewhere (tests, benchmarks).
    pub fn with_key(config: &BootApiConfig, key: TokenKey) -> Result<Checked, BootApiError> {
        Ok(Checked {
            profiles: Profiles::load(&config.profiles).map_err(BootApiError::Profiles)?,
            key,
            public_url: public_url(config)?,
        })
    }
}

/// boot-api's SQLite page cache, in KiB. It answers from its index, never from SQLite, so
/// the cache only speeds up applying the stream and refreshing changed machines' entries;
/// the serving default (16 MiB) was a tenth of its memory goal at 100,000 machines.
const PAGE_CACHE_KIB: u32 = 4 * 1024;

/// Opens the projection with the boot index following it. Boot records are neither read
/// ([`LiveProjection::following`]) nor applied ([`BootRecords::Skipped`]): they record
/// boot-api's own answers and change none.
pub async fn open_indexed(
    database: std::path::PathBuf,
) -> Result<(LiveProjection, Arc<BootIndex>), FollowError> {
    let (projection, targets) = tokio::task::spawn_blocking(move || {
        let projection = Projection::open(&database)?
            .with_boot_records(BootRecords::Skipped)
            .with_page_cache_kib(PAGE_CACHE_KIB)?;
        let targets = projection.boot_targets(None)?;
        Ok::<_, metal_projection::ProjectionError>((projection, targets))
    })
    .await
    .map_err(FollowError::Task)?
    .map_err(FollowError::Projection)?;
    indexed(projection, targets)
}

/// A live projection whose every applied batch refreshes the index's changed machines.
pub fn indexed(
    projection: Projection,
    targets: Vec<metal_projection::BootTarget>,
) -> Result<(LiveProjection, Arc<BootIndex>), FollowError> {
    let index = Arc::new(BootIndex::new(targets));
    let observer = {
        let index = Arc::clone(&index);
        Arc::new(move |projection: &Projection, applied: &[Applied]| {
            let mut changed: Vec<_> = applied
                .iter()
                .filter_map(|a| match a {
                    Applied::Changed(id) => Some(*id),
                    _ => None,
                })
                .collect();
            changed.sort();
            changed.dedup();
            if changed.is_empty() {
                return;
            }
            match projection.boot_targets(Some(&changed)) {
                Ok(targets) => index.update(targets),
                Err(error) => {
                    tracing::error!(error = %metal_core::error_chain(&error), "cannot refresh the boot index")
                }
            }
        })
    };
    // Boot requests read the index, never the projection's lock: apply big batches. Its
    // own boot records are left on the server: they would be skipped anyway.
    let live = LiveProjection::new(projection)
        .map_err(FollowError::Projection)?
        .observed(observer)
        .batched(metal_projection::follow::MAX_BATCH)
        .following(metal_core::subjects::without_boot_records());
    Ok((live, index))
}

/// Runs boot-api until `shutdown` resolves: opens the projection at
/// `config.database`, follows the stream into it, answers provision requests, watches the
/// install deadline and serves HTTP on `listener`.
pub async fn run(
    config: &BootApiConfig,
    checked: Checked,
    client: async_nats::Client,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BootApiError> {
    let Checked {
        profiles,
        key,
        public_url,
    } = checked;
    let (live, index) = open_indexed(config.database.clone())
        .await
        .map_err(BootApiError::Open)?;
    let shutdown = metal_core::Shutdown::spawn_from(shutdown);
    let js = async_nats::jetstream::new(client);
    let window = Duration::from_secs(config.boot_event_window_secs.max(1));
    let (events, queue) = BootEvents::new(window);
    let events = Arc::new(events);

    let follower = {
        let live = live.clone();
        let js = js.clone();
        let stop = shutdown.wait();
        tokio::spawn(async move { follow_with_retry(js, &live, stop).await })
    };
    let responder = {
        let handler = Arc::new(provision::ProvisionHandler {
            live: live.clone(),
            profiles: Arc::new(profiles),
        });
        let js = js.clone();
        let stop = shutdown.wait();
        tokio::spawn(async move { answer_provisioning(js, handler, stop).await })
    };
    let publisher = tokio::spawn(boot_events::publish(js.clone(), queue));
    let sweeper = tokio::spawn(boot_events::sweep_every_window(
        Arc::clone(&events),
        shutdown.wait(),
    ));
    let deadlines = tokio::spawn(provision::watch_deadlines(
        js.clone(),
        Arc::clone(&index),
        Duration::from_secs(config.install_deadline_secs.max(1)),
        shutdown.wait(),
    ));
    let state = AppState {
        live,
        index,
        events,
        key,
        public_url,
        event_window: window,
        js: Some(js),
    };
    tracing::info!(address = ?listener.local_addr().ok(), machines = state.index.len(), "boot-api listening");
    let served = axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.wait())
    .await
    .map_err(BootApiError::Serve);
    // Whatever ended serving, stop the rest too.
    let followed = match follower.await {
        Ok(result) => result.map_err(BootApiError::Follow),
        Err(error) => Err(BootApiError::Follow(FollowError::Task(error))),
    };
    let _ = responder.await;
    let _ = deadlines.await;
    let _ = sweeper.await;
    // The router (and so the last sender of the queue) is gone: the publisher drains and ends.
    let _ = tokio::time::timeout(Duration::from_secs(5), publisher).await;
    served.and(followed)
}

/// Runs the `boot-api` consumer (provision and retire requests) once stream and consumer
/// exist.
async fn answer_provisioning(
    js: async_nats::jetstream::Context,
    handler: Arc<provision::ProvisionHandler>,
    stop: impl Future<Output = ()> + Send,
) {
    tokio::pin!(stop);
    let Some((_, consumer)) = consumer_with_retry(&js, DurableConsumer::BootApi, &mut stop).await
    else {
        return;
    };
    metal_core::responder::run(js, consumer, handler, 4, stop).await;
}

#[cfg(test)]
mod tests;
