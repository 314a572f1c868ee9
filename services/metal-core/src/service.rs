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
    /// Log lines on stderr: `text` for people, `json` (one object a line) for log collectors.
    /// `RUST_LOG` picks what is logged (e.g. `debug`, `info,locator=debug`).
    #[arg(long, value_enum, env = "METAL_LOG_FORMAT", default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Aligned text, coloured only when stderr is a terminal and `NO_COLOR` is unset.
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, `fields` (with `message`)
    /// and the spans it happened in.
    Json,
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

/// Logs to stderr in `format`, at `info` (and `async_nats` at `warn`) unless `RUST_LOG` says
/// otherwise.
pub fn init_tracing(format: LogFormat) {
    init_tracing_with(format, "info,async_nats=warn");
}

/// [`init_tracing`] with another default filter (metal-cli's is `warn`).
pub fn init_tracing_with(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Escape codes in a log file would split `key=value` apart for whoever greps it.
        LogFormat::Text => builder.with_ansi(colour_on_stderr()).init(),
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}

fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
