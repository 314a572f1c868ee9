//! web binary: parses flags and config, connects to NATS, calls [`web::run`].

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Serves the fleet read-only over HTTP from its own projection of the MACHINES stream:
/// a live web page (`/`: the fleet as a table with filters; `/machines/<id or MAC>`: one
/// machine's inventory and timeline; both updated by server-sent events from `/events`)
/// and a JSON API under /api/v1 (machines filtered by state, profile, tag and text, paged;
/// one machine; its timeline; unknown MACs; the boot profiles of boot_api.profiles; status
/// with the stream's last sequence), with the OpenAPI 3.1 document at
/// /api/v1/openapi.json. Publishes nothing.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: metal_core::service::CommonArgs,
    #[command(flatten)]
    metrics: metal_core::service::MetricsArgs,
    /// Address to listen on, e.g. 127.0.0.1:8090 (overrides web.listen).
    #[arg(long)]
    listen: Option<String>,
    /// web's own SQLite projection file (overrides web.database).
    #[arg(long)]
    database: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    metal_core::service::init_tracing(args.common.log_format);
    let mut config = args.common.load().context("loading config")?;
    args.metrics
        .serve(&config, "web")
        .context("cannot serve metrics")?;
    if let Some(listen) = args.listen {
        config.web.listen = listen;
    }
    if let Some(database) = args.database {
        config.web.database = database;
    }
    let listener = tokio::net::TcpListener::bind(&config.web.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.web.listen))?;
    // A broken profiles file stops web here, before NATS or the projection, its message
    // naming the line, as it stops boot-api.
    let profiles = metal_core::profiles::Profiles::load(&config.boot_api.profiles)?;
    let client = metal_core::jetstream::connect_as(&config.nats_url, "web", &config.nats).await?;
    web::run(
        &config.web,
        &profiles,
        client,
        listener,
        metal_core::shutdown_signal(),
    )
    .await?;
    Ok(())
}
