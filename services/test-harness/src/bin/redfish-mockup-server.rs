//! Serves one recorded Redfish mockup folder over HTTP, for the demo and manual testing.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Serves a recorded Redfish mockup folder (DMTF layout: <dir>/redfish/v1/index.json) as a
/// fake BMC: GET answers <dir>/<path>/index.json, missing files are 404, and
/// POST /redfish/v1/SessionService/Sessions opens a session when the mockup has a SessionService.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The mockup folder to serve (the one holding redfish/v1/index.json).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Address and port to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8000", value_name = "ADDR")]
    listen: SocketAddr,
    /// Require this user name (with --password-env) for sessions, basic auth and every
    /// resource except the service root. Without it, no authentication is required.
    #[arg(long, value_name = "USER", requires = "password_env")]
    username: Option<String>,
    /// Name of the environment variable holding the password for --username.
    #[arg(long, value_name = "VAR", requires = "username")]
    password_env: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Logs go to stderr: stdout carries only the base URL, for scripts.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    anyhow::ensure!(
        args.dir.join("redfish/v1/index.json").is_file(),
        "{} is not a mockup folder: it has no redfish/v1/index.json",
        args.dir.display()
    );
    let credentials = match (args.username, args.password_env) {
        (Some(username), Some(variable)) => {
            let password = std::env::var(&variable).with_context(|| {
                format!("environment variable {variable} (--password-env) is not set")
            })?;
            Some((username, password))
        }
        _ => None,
    };
    let authenticated = credentials.is_some();
    let server = test_harness::mockup::serve_mockup_on(&args.dir, args.listen, credentials)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(url = %server.base_url(), dir = %args.dir.display(), authenticated, "serving Redfish mockup");
    println!("{}", server.base_url());
    tokio::select! {
        _ = metal_core::shutdown_signal() => {}
        _ = server.wait() => {}
    }
    Ok(())
}
