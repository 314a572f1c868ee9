//! boot-api binary: parses flags and config, connects to NATS, calls [`boot_api::run`].

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Pixiecore API-mode server (`GET /v1/boot/<mac>`) backed by its own projection of the
/// MACHINES stream.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: metal_core::service::CommonArgs,
    /// Address to listen on, e.g. 0.0.0.0:8081 (overrides boot_api.listen).
    #[arg(long)]
    listen: Option<String>,
    /// boot-api's own SQLite projection file (overrides boot_api.database).
    #[arg(long)]
    database: Option<PathBuf>,
    /// The boot profiles file (overrides boot_api.profiles).
    #[arg(long)]
    profiles: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    metal_core::service::init_tracing();
    let mut config = args.common.load().context("loading config")?;
    if let Some(listen) = args.listen {
        config.boot_api.listen = listen;
    }
    if let Some(database) = args.database {
        config.boot_api.database = database;
    }
    if let Some(profiles) = args.profiles {
        config.boot_api.profiles = profiles;
    }
    // Fail early and clearly on a bad profiles file, before touching the network.
    boot_api::Profiles::load(&config.boot_api.profiles)?;
    let listener = tokio::net::TcpListener::bind(&config.boot_api.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.boot_api.listen))?;
    let client = metal_core::jetstream::connect(&config.nats_url, "boot-api")
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.nats_url))?;
    boot_api::run(
        &config.boot_api,
        client,
        listener,
        metal_core::shutdown_signal(),
    )
    .await?;
    Ok(())
}
