//! redfish-scraper: logs into a located BMC and reads its hardware inventory over Redfish;
//! arms a machine to netboot once and resets it (or carries out an operator's power action).
//!
//! # Layout
//! - [`source`]: the [`source::RedfishSource`] trait ("GET this Redfish path"), and a
//!   source that reads a recorded mockup folder from disk, so the walk runs without a network.
//! - [`walk`]: the inventory walk from the service root, following `@odata.id` links as
//!   written, into a [`metal_core::inventory::Inventory`].
//! - [`http`]: the reqwest client for one BMC: session auth with basic-auth fallback,
//!   timeouts, retries with backoff, a response-size cap and a per-BMC request cap; PATCH
//!   (with the ETag read) and POST whose refusals carry the BMC's own message.
//! - [`power`]: from a ComputerSystem document alone, the one-time PXE boot override to
//!   PATCH and the `ResetType` to POST, or why the BMC cannot (pure).
//! - [`error`]: [`RedfishError`], which says which [`metal_core::events::ScrapeFailureKind`]
//!   a failure is and whether trying again later could help.
//! - [`handler`]: the responder: `machine.bmc.located` and `machine.rescan.requested` in,
//!   `machine.hardware.scraped` or `machine.scrape.failed` out; `machine.profile.assigned`
//!   (with `power`) and `machine.power.requested` in, one `machine.power.done` or
//!   `machine.power.failed` per step out; its decisions are pure functions of (input, result,
//!   time).
//! - [`run`]: ensures the stream and durable consumer, then runs the shared consumer loop.
//!
//! Only this crate talks to BMCs. Passwords live in [`metal_core::config::Secret`] and never
//! reach an error, a log line or an event.
//!
//! Tests: `cargo test -p redfish-scraper` (mockup folders from `METAL_REDFISH_MOCKUPS`, else
//! `../shared/redfish-mockups`).

pub mod error;
pub mod handler;
pub mod http;
pub mod parse;
pub mod power;
pub mod source;
pub mod walk;

use std::future::Future;
use std::sync::Arc;

use metal_core::jetstream::{consumer_with_retry, retry_until_stopped, DurableConsumer};

pub use error::RedfishError;
pub use handler::ScrapeHandler;
pub use source::RedfishSource;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot set up the Redfish client")]
    Setup(#[source] RedfishError),
}

/// Runs the scraper until `shutdown` resolves: ensures the `MACHINES` stream and the
/// `redfish-scraper` durable consumer from nats/ (waiting while NATS cannot), then answers
/// every `machine.bmc.located`, `machine.rescan.requested`, `machine.profile.assigned` and
/// `machine.power.requested`.
pub async fn run(
    config: metal_core::config::Config,
    client: async_nats::Client,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let concurrency = config.redfish.global_concurrency.max(1);
    // A bad Redfish setting is said at once, not after waiting for NATS.
    let handler = ScrapeHandler::new(config.redfish).map_err(RunError::Setup)?;
    let js = async_nats::jetstream::new(client);
    // A service started before NATS, or with a cluster still electing leaders, waits.
    tokio::pin!(shutdown);
    let Some((stream, consumer)) =
        consumer_with_retry(&js, DurableConsumer::RedfishScraper, &mut shutdown).await
    else {
        return Ok(());
    };
    let Some(raw) = retry_until_stopped("ensure the raw bundle store", &mut shutdown, || {
        metal_core::jetstream::ensure_raw_store(&js)
    })
    .await
    else {
        return Ok(());
    };
    let handler = handler.with_storage(handler::Storage {
        raw,
        stream: stream.clone(),
    });
    let handler = Arc::new(handler);
    tracing::info!(
        concurrency,
        "redfish-scraper consuming located BMCs, rescans, profile assignments and power requests"
    );
    metal_core::responder::run(js, consumer, handler, concurrency, shutdown).await;
    tracing::info!("redfish-scraper stopped");
    Ok(())
}
