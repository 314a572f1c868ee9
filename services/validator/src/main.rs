//! validator binary: parses flags and config, connects to NATS, calls `validator::run`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Checks every scraped inventory against the hardware spec the machine must meet: the one
/// an operator assigned (machine.spec.assigned, `metal-cli expect`), else the one the first
/// matching [[map]] rule of the specs file gives (docs/hardware-specs.md). Answers
/// machine.hardware.scraped and machine.spec.assigned with machine.hardware.validated or
/// machine.hardware.invalid (which makes `metal-cli provision` refuse the machine unless
/// --force), and with machine.bmc.found when a lost BMC answers again. Also rescans machines
/// periodically (validator.rescan_interval_secs per state) and publishes machine.bmc.lost for
/// a BMC silent longer than validator.bmc_lost_after_secs. Follows the MACHINES stream into
/// its own projection. Refuses to start on an invalid specs file (naming the line) or invalid
/// [validator] settings (naming the key).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: metal_core::service::CommonArgs,
    #[command(flatten)]
    metrics: metal_core::service::MetricsArgs,
    /// validator's own SQLite projection file (overrides validator.database).
    #[arg(long)]
    database: Option<PathBuf>,
    /// The hardware specs file (overrides validator.specs), e.g. profiles/hardware-specs.toml.
    #[arg(long)]
    specs: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    metal_core::service::init_tracing(args.common.log_format);
    let mut config = args.common.load().context("loading config")?;
    args.metrics
        .serve(&config, "validator")
        .context("cannot serve metrics")?;
    if let Some(database) = args.database {
        config.validator.database = database;
    }
    if let Some(specs) = args.specs {
        config.validator.specs = specs;
    }
    // Fail early and clearly on a bad specs file or settings, before touching the network.
    let checked = validator::Checked::from_config(&config.validator)?;
    let client =
        metal_core::jetstream::connect_as(&config.nats_url, "validator", &config.nats).await?;
    validator::run_checked(
        &config.validator,
        checked,
        client,
        metal_core::shutdown_signal(),
    )
    .await?;
    Ok(())
}
