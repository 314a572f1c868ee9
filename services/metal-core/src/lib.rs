//! Shared library of the metal control plane.
//!
//! # Layout
//! - [`mac`]: the `Mac` newtype; every MAC is parsed once at the edge.
//! - [`ids`]: machine ids (UUID v5 of the BMC MAC) and deterministic event ids.
//! - [`subjects`]: stream subjects (= event types) and query-service subjects.
//! - [`envelope`]: the event envelope and [`envelope::decode`] of any stream message.
//! - [`intake`]: parsing of raw onboarding requests into a request or a rejection.
//! - [`events`]: the `data` of each event type.
//! - [`inventory`]: the normalised hardware inventory and its summary.
//! - [`jetstream`]: stream/consumer configs from nats/, publish-and-wait, stream reading.
//! - [`responder`]: the consumer loop shared by locator and redfish-scraper.
//! - [`config`]: the one TOML config file of every binary, with env overrides.
//! - [`service`]: the flags, config loading and logging every service binary shares.
//! - [`metrics`]: Prometheus `/metrics` of a binary, and the metric names services share.
//! - [`profiles`]: boot profiles: selectors over inventory and tags, priority, cmdline templates.
//! - [`specs`]: expected hardware specs (what was ordered) and the check of an inventory against them.
//! - [`query`]: request and reply types of the inventory query service.
//! - [`locate`]: request and reply of the locator's `metal.locator.locate` service.
//!
//! This crate knows nothing about HTTP (but the metrics exporter's listener), SQLite or Redfish.
//! Errors are `thiserror` enums per boundary; "bad input" is a value, never an error.

pub mod config;
pub mod envelope;
pub mod events;
pub mod ids;
pub mod intake;
pub mod inventory;
pub mod jetstream;
pub mod locate;
pub mod mac;
pub mod metrics;
pub mod profiles;
pub mod query;
pub mod raw;
pub mod responder;
pub mod service;
pub mod specs;
pub mod subjects;

pub use envelope::{Decoded, Envelope};
pub use ids::MachineId;
pub use mac::Mac;

/// Formats an error with its whole `source()` chain on one line.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        out.push_str(": ");
        out.push_str(&inner.to_string());
        source = inner.source();
    }
    out
}

/// `text` on one line: every control character (line breaks included) a space. For text
/// that travels in a header, an event field or one line of output.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// One shutdown future made into as many as the parts of a service need.
#[derive(Debug, Clone)]
pub struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    /// Spawns a task that waits for `shutdown` and then tells every [`Shutdown::wait`].
    pub fn spawn_from(
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Shutdown {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            stop.send_replace(true);
        });
        Shutdown(stopped)
    }

    /// Resolves once shutdown has come (at once if it already has).
    pub fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stopped = self.0.clone();
        async move {
            // An error means the sender is gone, which only happens after it said stop.
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    }
}

/// Resolves when the process gets ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
