use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// locator: answers `machine.onboard.requested` with `machine.bmc.located` (or
/// `machine.locate.failed`, or `machine.onboard.rejected` for a malformed request),
/// looking BMC MACs up in the static map and dnsmasq lease files of the config.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The TOML config file shared by every binary (see docs/configuration.md).
    #[arg(long, env = "METAL_CONFIG")]
    config: Option<PathBuf>,
    /// NATS server URL; overrides `nats_url` of the config.
    #[arg(long, env = "NATS_URL")]
    nats_url: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut config = metal_core::config::Config::load(args.config.as_deref())
        .context("loading configuration")?;
    if let Some(url) = args.nats_url {
        config.nats_url = url;
    }
    let client = metal_core::jetstream::connect(&config.nats_url, "locator")
        .await
        .with_context(|| format!("connecting to NATS at {}", config.nats_url))?;
    locator::run(&config, client, metal_core::shutdown_signal()).await
}
