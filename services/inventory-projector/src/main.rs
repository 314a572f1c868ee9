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
    #[command(flatten)]
    common: metal_core::service::CommonArgs,
    #[command(flatten)]
    metrics: metal_core::service::MetricsArgs,
    /// The SQLite projection file (overrides projector.database).
    #[arg(long)]
    database: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    metal_core::service::init_tracing(args.common.log_format);
    let mut config = args.common.load().context("loading config")?;
    args.metrics
        .serve(&config, "inventory-projector")
        .context("cannot serve metrics")?;
    if let Some(database) = args.database {
        config.projector.database = database;
    }
    let client =
        metal_core::jetstream::connect_as(&config.nats_url, "inventory-projector", &config.nats)
            .await?;
    inventory_projector::run(&config.projector, client, metal_core::shutdown_signal()).await?;
    Ok(())
}
