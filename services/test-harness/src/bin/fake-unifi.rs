//! Serves the strict fake UniFi controller of the tests, for the demo and manual testing.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use test_harness::unifi::{FakeUnifi, UnifiOptions, DEFAULT_SITE, PASSWORD, USERNAME};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Flavour {
    Classic,
    Unifios,
    Integration,
}

/// A fake UniFi controller over TLS on a free loopback port, speaking the API shapes of
/// ../shared/unifi (classic, UniFi OS, or UniFi OS with the Integration API), as strict
/// as a real one. Its account is `locator` with the password `fake-unifi-password`; its
/// Integration API key is `fake-unifi-api-key`. Prints its URL on stdout.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[arg(long, value_enum, default_value = "unifios")]
    flavour: Flavour,
    /// Write the controller's self-signed certificate (PEM) here, for `ca_file`.
    #[arg(long, value_name = "FILE")]
    ca_out: PathBuf,
    /// An active client of site `default`, as MAC=IPv4 (repeatable).
    #[arg(long = "client", value_name = "MAC=IP")]
    clients: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let options = match args.flavour {
        Flavour::Classic => UnifiOptions::classic(),
        Flavour::Unifios => UnifiOptions::unifi_os(),
        Flavour::Integration => UnifiOptions::integration(),
    };
    let mut clients = Vec::new();
    for client in &args.clients {
        let (mac, ip) = client
            .split_once('=')
            .with_context(|| format!("--client {client:?} is not MAC=IP"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .with_context(|| format!("--client {client:?}: {ip:?} is not an IPv4 address"))?;
        metal_core::Mac::parse_device(mac)
            .with_context(|| format!("--client {client:?}: bad MAC"))?;
        clients.push((mac.to_ascii_lowercase(), ip));
    }
    let fake = FakeUnifi::start(options.without_fixture_clients()).await;
    std::fs::write(&args.ca_out, fake.ca_pem())
        .with_context(|| format!("cannot write {}", args.ca_out.display()))?;
    for (mac, ip) in clients {
        fake.add_client(DEFAULT_SITE, &mac, ip);
    }
    eprintln!(
        "fake UniFi controller ({:?}) at {}; account {USERNAME}, password {PASSWORD}",
        args.flavour,
        fake.url()
    );
    println!("{}", fake.url());
    metal_core::shutdown_signal().await;
    Ok(())
}
