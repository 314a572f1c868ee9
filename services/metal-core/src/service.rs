//! What every service binary does before its `run`: the common flags, the config with
//! those flags applied, and logging. Keeps each `main.rs` down to its own flags.

use std::path::PathBuf;

use crate::config::{Config, ConfigError};

/// Flags every service binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// The TOML config file shared by every binary (keys in docs/configuration.md).
    // Global, so metal-cli takes them after a subcommand too.
    #[arg(long, env = "METAL_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// NATS server URL; overrides `nats_url` of the config.
    #[arg(long, env = "NATS_URL", global = true)]
    pub nats_url: Option<String>,
}

impl CommonArgs {
    /// Loads the config (file, `.env`, environment) and applies these flags over it.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(url) = &self.nats_url {
            config.nats_url = url.clone();
        }
        Ok(config)
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default filter.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
}
