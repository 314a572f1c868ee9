//! locator: answers `machine.onboard.requested` with where the BMC is.
//!
//! # Layout
//! - [`sources`]: the static map and dnsmasq lease files, parsed into MAC → address.
//! - [`decide`]: pure: a decoded request plus a lookup result → the events to publish.
//! - [`run`]: the consumer loop wiring (durable consumer `locator`, shared by replicas).
//!
//! Malformed requests become `machine.onboard.rejected` here: the locator is the
//! consumer of the public entry point.

pub mod decide;
pub mod sources;

use std::future::Future;
use std::sync::Arc;

use metal_core::config::Config;
use metal_core::jetstream::{ensure_consumer, ensure_stream, DurableConsumer};
use metal_core::responder::{self, Handler, Input, Outcome};

/// The responder: looks each request up in the configured sources.
pub struct Locator {
    sources: sources::Sources,
}

impl Locator {
    pub fn new(
        config: &metal_core::config::LocatorConfig,
    ) -> Result<Locator, sources::SourceError> {
        Ok(Locator {
            sources: sources::Sources::from_config(config)?,
        })
    }
}

impl Handler for Locator {
    async fn handle(&self, input: Input) -> Outcome {
        let now = time::OffsetDateTime::now_utc();
        let lookup = decide::requested_mac(&input.decoded).map(|mac| self.sources.lookup(&mac));
        decide::decide(&input, lookup, now)
    }
}

/// Runs the locator until `shutdown` resolves.
pub async fn run(
    config: &Config,
    client: async_nats::Client,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let locator = Arc::new(Locator::new(&config.locator)?);
    let js = async_nats::jetstream::new(client);
    let stream = ensure_stream(&js).await?;
    let consumer = ensure_consumer(&stream, DurableConsumer::Locator).await?;
    tracing::info!(
        static_bmcs = config.locator.static_bmcs.len(),
        lease_files = config.locator.dnsmasq_leases.len(),
        "locator running"
    );
    responder::run(js, consumer, locator, config.locator.concurrency, shutdown).await;
    Ok(())
}
