use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use metal_cli::commands::{self, OnboardOptions};

/// metal-cli: onboard bare-metal servers by their BMC's MAC address and look at the
/// inventory. Talks to NATS only: requests go on the MACHINES stream, queries to the
/// inventory-projector's query service and the locator's locate service.
#[derive(Parser, Debug)]
#[command(version, propagate_version = true)]
struct Cli {
    /// The config file (metal-cli reads its `nats_url`) and the NATS URL, as every binary takes them.
    #[command(flatten)]
    common: metal_core::service::CommonArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Onboard a server by its BMC's MAC address (aa:bb:cc:dd:ee:ff, AA-BB-..., aabb.ccdd.eeff
    /// or aabbccddeeff) and follow it until it is inventoried. Exit code 0 only on success.
    Onboard {
        /// The BMC's MAC address.
        mac: String,
        /// Publish the request and return at once, printing the request id.
        #[arg(long)]
        no_wait: bool,
        /// Print JSON lines (the request, each event, the final machine) instead of text.
        #[arg(long)]
        json: bool,
        /// Give up waiting after this many seconds. The locator itself looks for a BMC that
        /// has no address yet for locate_deadline_secs (600 by default), then the scrape
        /// takes up to scrape_deadline_secs (120).
        #[arg(long, default_value_t = 900)]
        timeout: u64,
        /// Who asked, recorded in the request.
        #[arg(long, env = "USER")]
        requested_by: Option<String>,
    },
    /// Ask the locator what every source (static map, UniFi, lease files, neighbour table)
    /// says about a BMC MAC right now, onboarding nothing. Exit code 0 when some source
    /// sees it, 1 when none does.
    Locate {
        /// The BMC's MAC address.
        mac: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List every machine in the inventory.
    Machines {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one machine's inventory, by BMC MAC, host NIC MAC or machine id.
    Show {
        machine: String,
        /// Print JSON (with the full normalised inventory) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show one machine's event timeline, by BMC MAC, host NIC MAC or machine id.
    History {
        machine: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Walk a known machine's BMC again (by BMC MAC, host NIC MAC or machine id) and say
    /// what changed since its last inventory: DIMMs, drives, NICs, firmware versions...
    /// Exit 0 once the new inventory is in; 1 if the rescan failed (the machine keeps its
    /// last inventory and state).
    Rescan {
        machine: String,
        /// Print JSON lines (the request, each event) instead of text.
        #[arg(long)]
        json: bool,
        /// Give up waiting after this many seconds (a scrape takes up to
        /// scrape_deadline_secs, 120 by default, per attempt).
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Who asked, recorded in the request.
        #[arg(long, env = "USER")]
        requested_by: Option<String>,
    },
    /// Write the raw Redfish documents of a machine's scrape (its latest, or the one at
    /// --seq) as a mockup folder that `redfish-mockup-server --dir` serves: a misbehaving
    /// BMC becomes a test case.
    Raw {
        machine: String,
        /// The stream sequence of a machine.hardware.scraped (see `metal-cli history`).
        #[arg(long = "seq", value_name = "N")]
        sequence: Option<u64>,
        /// The folder to write (must not exist or be empty); default raw-<bmc mac>-<seq>.
        #[arg(long, short, value_name = "DIR")]
        output: Option<PathBuf>,
    },
    /// Rebuild the projection from stream sequence 1 into a new file and swap it in
    /// atomically while the projector keeps serving; exit 1 if it differs from the old one.
    Replay {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// Write the canonical export of the projection (JSON lines, sorted): two projections of
    /// the same log export byte-identical files.
    Export {
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    restore_default_sigpipe();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Bad input is reported before anything touches the network.
    let given_mac = match &cli.command {
        Command::Onboard { mac, .. } => Some(("onboard", mac)),
        Command::Locate { mac, .. } => Some(("locate", mac)),
        _ => None,
    };
    if let Some((verb, mac)) = given_mac {
        if let Err(code) = commands::device_mac(verb, mac) {
            return code;
        }
    }
    let nats_url = match cli.common.load() {
        Ok(config) => config.nats_url,
        Err(error) => {
            eprintln!("metal-cli: {}", metal_core::error_chain(&error));
            return ExitCode::from(2);
        }
    };
    let client = match metal_cli::client::connect(&nats_url).await {
        Ok(client) => client,
        Err(error) => {
            eprintln!("metal-cli: {}", metal_core::error_chain(&error));
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Onboard {
            mac,
            no_wait,
            json,
            timeout,
            requested_by,
        } => {
            commands::onboard(
                &client,
                &mac,
                OnboardOptions {
                    no_wait,
                    json,
                    timeout: Duration::from_secs(timeout),
                    requested_by,
                },
            )
            .await
        }
        Command::Locate { mac, json } => commands::locate(&client, &mac, json).await,
        Command::Machines { json } => commands::machines(&client, json).await,
        Command::Show { machine, json } => commands::show(&client, &machine, json).await,
        Command::History { machine, json } => commands::history(&client, &machine, json).await,
        Command::Replay { json, timeout } => {
            commands::replay(&client, json, Duration::from_secs(timeout)).await
        }
        Command::Export { output } => commands::export(&client, output.as_deref()).await,
        Command::Rescan {
            machine,
            json,
            timeout,
            requested_by,
        } => {
            metal_cli::rescan::rescan(
                &client,
                &machine,
                metal_cli::rescan::RescanOptions {
                    json,
                    timeout: Duration::from_secs(timeout),
                    requested_by,
                },
            )
            .await
        }
        Command::Raw {
            machine,
            sequence,
            output,
        } => metal_cli::rescan::raw(&client, &machine, sequence, output.as_deref()).await,
    };
    let _ = client.flush().await;
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("metal-cli: {}", metal_core::error_chain(&error));
            ExitCode::FAILURE
        }
    }
}

/// `metal-cli show ... | head` ends quietly, like any Unix tool whose reader went away,
/// instead of panicking in `println!` (Rust ignores SIGPIPE by default). Sockets are not
/// affected: Rust writes to them with MSG_NOSIGNAL.
fn restore_default_sigpipe() {
    // SAFETY: called first thing in main, before any thread exists; it only resets one
    // signal's disposition to the OS default.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
