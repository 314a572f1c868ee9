//! redfish-scraper: answers every `machine.bmc.located` and `machine.rescan.requested` with
//! the BMC's Redfish inventory, and every `machine.profile.assigned` (with power) and
//! `machine.power.requested` with the BMC's boot override and reset.

use anyhow::Context;
use clap::Parser;

/// Reads the hardware inventory of every located BMC (and every machine a rescan names)
/// over Redfish and publishes it as machine.hardware.scraped (or machine.scrape.failed),
/// keeping the raw documents in the machine-raw object store. For machine.profile.assigned
/// (with power) it sets a one-time PXE boot and resets the machine, and it carries out
/// machine.power.requested (on, off, cycle, status), publishing machine.power.done or
/// machine.power.failed per step. Section [redfish] of the config configures it;
/// METAL__REDFISH__<KEY> variables override it.
#[derive(Debug, Parser)]
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
    raise_open_file_limit();
    let config = args.common.load().context("cannot load configuration")?;
    args.metrics
        .serve(&config, "redfish-scraper")
        .context("cannot serve metrics")?;
    let client =
        metal_core::jetstream::connect_as(&config.nats_url, "redfish-scraper", &config.nats)
            .await?;
    redfish_scraper::run(config, client, metal_core::shutdown_signal()).await?;
    Ok(())
}

/// Every request in flight is a socket: a fleet scrape needs more than the usual soft limit
/// of 1024, so take what the hard limit allows.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!("cannot raise the open-file limit");
            }
        }
    }
}
