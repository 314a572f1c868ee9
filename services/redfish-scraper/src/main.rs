//! redfish-scraper: answers every `machine.bmc.located` with the BMC's Redfish inventory.

use anyhow::Context;
use clap::Parser;

/// Reads the hardware inventory of every located BMC over Redfish and publishes it as
/// machine.hardware.scraped (or machine.scrape.failed). Section [redfish] of the config
/// configures it; METAL__REDFISH__<KEY> variables override it.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: metal_core::service::CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    metal_core::service::init_tracing();
    let config = args.common.load().context("cannot load configuration")?;
    let client = metal_core::jetstream::connect(&config.nats_url, "redfish-scraper")
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.nats_url))?;
    redfish_scraper::run(config, client, metal_core::shutdown_signal()).await?;
    Ok(())
}
