//! redfish-scraper: answers every `machine.bmc.located` with the BMC's Redfish inventory.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Reads the hardware inventory of every located BMC over Redfish and publishes it as
/// machine.hardware.scraped (or machine.scrape.failed).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The deployment's TOML config file (section [redfish] configures the scraper;
    /// METAL__REDFISH__<KEY> variables override it). Built-in defaults when omitted.
    #[arg(long, env = "METAL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// NATS server URL, overriding `nats_url` from the config file.
    #[arg(long, env = "NATS_URL", value_name = "URL")]
    nats_url: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut config = metal_core::config::Config::load(args.config.as_deref())
        .context("cannot load configuration")?;
    if let Some(url) = args.nats_url {
        config.nats_url = url;
    }
    let client = metal_core::jetstream::connect(&config.nats_url, "redfish-scraper")
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.nats_url))?;
    redfish_scraper::run(config, client, metal_core::shutdown_signal()).await?;
    Ok(())
}
