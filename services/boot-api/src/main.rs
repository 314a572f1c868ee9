//! boot-api binary: parses flags and config, connects to NATS, calls [`boot_api::run`].

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Netboots armed machines: answers Pixiecore (`GET /v1/boot/<mac>`) and iPXE
/// (`GET /v1/ipxe/<mac>`, `GET /boot.ipxe`), takes the installer's phone-home
/// (`POST /v1/machines/<id>/installed|failed`), and arms machines with boot profiles on
/// machine.provision.requested. Follows the MACHINES stream into its own projection.
/// Install tokens are derived from the key in $METAL_BOOT_TOKEN_KEY (boot_api.token_key_env).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: metal_core::service::CommonArgs,
    #[command(flatten)]
    metrics: metal_core::service::MetricsArgs,
    /// Address to listen on, e.g. 0.0.0.0:8081 (overrides boot_api.listen).
    #[arg(long)]
    listen: Option<String>,
    /// boot-api's own SQLite projection file (overrides boot_api.database).
    #[arg(long)]
    database: Option<PathBuf>,
    /// The boot profiles file (overrides boot_api.profiles).
    #[arg(long)]
    profiles: Option<PathBuf>,
    /// The URL machines reach boot-api at, e.g. http://10.0.0.1:8081 (overrides
    /// boot_api.public_url); phone-home URLs and the iPXE chain are built from it.
    #[arg(long)]
    public_url: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    metal_core::service::init_tracing(args.common.log_format);
    let mut config = args.common.load().context("loading config")?;
    args.metrics
        .serve(&config, "boot-api")
        .context("cannot serve metrics")?;
    if let Some(listen) = args.listen {
        config.boot_api.listen = listen;
    }
    if let Some(database) = args.database {
        config.boot_api.database = database;
    }
    if let Some(profiles) = args.profiles {
        config.boot_api.profiles = profiles;
    }
    if let Some(public_url) = args.public_url {
        config.boot_api.public_url = public_url;
    }
    // Fail early and clearly on a bad profiles file, key or URL, before touching the network.
    let checked = boot_api::Checked::from_config(&config.boot_api)?;
    let listener = tokio::net::TcpListener::bind(&config.boot_api.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.boot_api.listen))?;
    let client =
        metal_core::jetstream::connect_as(&config.nats_url, "boot-api", &config.nats).await?;
    boot_api::run(
        &config.boot_api,
        checked,
        client,
        listener,
        metal_core::shutdown_signal(),
    )
    .await?;
    Ok(())
}
