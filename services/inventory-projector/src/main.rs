//! inventory-projector binary: parses flags and config, connects to NATS, calls
//! [`inventory_projector::run`].

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Folds every machine.> event into the SQLite inventory and answers the inventory query
/// service (metal.inventory.*).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The metal config file (TOML).
    #[arg(long, env = "METAL_CONFIG")]
    config: Option<PathBuf>,
    /// NATS server URL (overrides the config file).
    #[arg(long, env = "NATS_URL")]
    nats_url: Option<String>,
    /// The SQLite projection file (overrides projector.database).
    #[arg(long)]
    database: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let mut config =
        metal_core::config::Config::load(args.config.as_deref()).context("loading config")?;
    if let Some(url) = args.nats_url {
        config.nats_url = url;
    }
    if let Some(database) = args.database {
        config.projector.database = database;
    }
    let client = metal_core::jetstream::connect(&config.nats_url, "inventory-projector")
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.nats_url))?;
    inventory_projector::run(&config.projector, client, metal_core::shutdown_signal()).await?;
    Ok(())
}
