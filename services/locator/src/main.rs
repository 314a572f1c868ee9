//! locator binary: parses flags and config, connects to NATS, calls [`locator::run`].

use anyhow::Context;
use clap::Parser;

/// locator: answers `machine.onboard.requested` with `machine.bmc.located` (or
/// `machine.locate.failed`, or `machine.onboard.rejected` for a malformed request).
/// It asks every source of the config's [locator] section at once: the static map, UniFi
/// controllers (classic, UniFi OS, Integration API), dnsmasq, ISC dhcpd and Kea lease
/// files, and the neighbour table; a BMC no source knows yet is looked for again until
/// locate_deadline_secs. It also answers `metal.locator.locate` (`metal-cli locate`).
/// UniFi passwords and API keys are read from the environment or .env, never the file.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: metal_core::service::CommonArgs,
    #[command(flatten)]
    metrics: metal_core::service::MetricsArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    metal_core::service::init_tracing(args.common.log_format);
    let config = args.common.load().context("loading configuration")?;
    args.metrics
        .serve(&config, "locator")
        .context("cannot serve metrics")?;
    let client =
        metal_core::jetstream::connect_as(&config.nats_url, "locator", &config.nats).await?;
    locator::run(&config, client, metal_core::shutdown_signal()).await
}
