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

/// The metrics flag of the service binaries (not metal-cli's).
#[derive(Debug, Clone, clap::Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9181); overrides this
    /// binary's entry in [metrics] of the config. Without either, no metrics are served.
    #[arg(long, value_name = "ADDR", env = "METAL_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
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

impl MetricsArgs {
    /// Serves `/metrics` for the binary `service` where `--metrics-listen` or `[metrics]`
    /// says; nothing when neither does. Call it inside the Tokio runtime.
    pub fn serve(
        &self,
        config: &Config,
        service: &str,
    ) -> Result<Option<std::net::SocketAddr>, crate::metrics::MetricsError> {
        let listen = self
            .metrics_listen
            .as_deref()
            .or_else(|| config.metrics.listen_for(service));
        listen.map(crate::metrics::serve).transpose()
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
