use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use metal_cli::commands::{self, OnboardOptions};
use metal_cli::provision::{self, PowerOptions, ProvisionOptions, TagOptions};
use metal_core::events::PowerAction;

/// metal-cli: onboard bare-metal servers by their BMC's MAC address, look at the inventory,
/// tag machines and provision them. Talks to NATS only: requests go on the MACHINES stream,
/// queries to the inventory-projector's query service and the locator's locate service.
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
    ///
    /// With --file, onboard every MAC of a file at once (one a line, `#` comments), with a
    /// progress bar on a terminal; it lists the machines that failed and exits 1 if any
    /// did, and onboards nothing (exit 2) when a line is not a MAC.
    Onboard {
        /// The BMC's MAC address.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        mac: Option<String>,
        /// A file of BMC MACs, one a line, to onboard together.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// The hardware spec the machine must meet (a name in the validator's specs file,
        /// docs/hardware-specs.md); waits for the validator's verdict too, and exits 1 when
        /// the hardware breaks it.
        #[arg(long, value_name = "SPEC")]
        expect: Option<String>,
        /// Publish the request and return at once, printing the request id.
        #[arg(long)]
        no_wait: bool,
        /// Print JSON lines (the request, each event, the final machine) instead of text.
        #[arg(long)]
        json: bool,
        /// Give up waiting after this many seconds. The locator itself looks for a BMC that
        /// has no address yet for locate_deadline_secs (600 by default), then the scrape
        /// takes up to scrape_deadline_secs (120). While NATS is away, storing the request
        /// waits for it too, within this time, and stores it once.
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
    /// List the machines in the inventory (retired ones only with --all).
    Machines {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also list retired machines (hidden by default; stderr says how many).
        #[arg(long)]
        all: bool,
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
        /// Write to this file instead of stdout (`-`: stdout).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Expect a known machine to meet a hardware spec, and show the validator's verdict.
    ///
    /// The spec is a name in the validator's specs file (docs/hardware-specs.md). The
    /// validator checks the machine's inventory now and after every rescan; a machine whose
    /// hardware breaks its spec is not provisioned unless `provision --force`. Exit 0 when
    /// the hardware meets it (or there is no inventory yet), 1 when it breaks it (each
    /// failed rule is printed with what was wanted and found).
    #[command(after_help = "Example:\n  metal-cli expect aa:bb:cc:dd:ee:ff r640-gold")]
    Expect {
        /// The machine's BMC MAC (or one of its host NIC MACs).
        mac: String,
        /// The spec's name.
        spec: String,
        /// Print JSON lines (the request, the verdict) instead of text.
        #[arg(long)]
        json: bool,
        /// Give up waiting for the verdict after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Who asked, recorded in the request.
        #[arg(long, env = "USER")]
        requested_by: Option<String>,
    },
    /// Set or remove operator tags on a known machine; boot profiles can select on them.
    ///
    /// The machine is named by its BMC MAC or a host NIC MAC. Boot profiles select on tags: `[profile.match] tags = { role = "storage" }`. Keys are 1 to
    /// 64 letters, digits, '-', '_', '.' or '/'; values one line of at most 256 characters.
    /// Prints the machine's tags once the inventory shows the change.
    #[command(
        after_help = "Examples:\n  metal-cli tag aa:bb:cc:dd:ee:ff role=storage rack=r12\n  metal-cli tag aa:bb:cc:dd:ee:ff --remove rack"
    )]
    Tag {
        /// The machine's BMC MAC (or one of its host NIC MACs).
        mac: String,
        /// Tags to set; a tag that exists gets the new value.
        #[arg(value_name = "KEY=VALUE")]
        tags: Vec<String>,
        /// Remove this tag; repeat for several.
        #[arg(long, value_name = "KEY")]
        remove: Vec<String>,
        /// Print JSON (the machine and its tags) instead of text.
        #[arg(long)]
        json: bool,
        /// Give up waiting for the inventory to show the change after this many seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// Who asked, recorded in the event.
        #[arg(long, env = "USER")]
        requested_by: Option<String>,
    },
    /// Arm an inventoried machine to netboot and install a boot profile, and PXE-boot it.
    ///
    /// The machine is named by its BMC MAC or a host NIC MAC. boot-api assigns the profile of the boot profiles file whose [profile.match] fits the
    /// machine's hardware and tags (or the one --profile names); then redfish-scraper tells
    /// the BMC to boot from the network once and resets the machine. Pixiecore then gets the
    /// profile from boot-api, and the installed system phones home. Prints each step.
    /// Exit 0 once armed and reset (with --no-power: once armed); 1 if boot-api refused
    /// (unknown profile, no profile fits) or the BMC did; nothing is published for a machine
    /// that has no inventory.
    Provision {
        /// The machine's BMC MAC (or one of its host NIC MACs).
        mac: String,
        /// Arm with this profile instead of the one the selectors choose
        /// (`metal-cli profiles check` shows which that would be).
        #[arg(long, value_name = "NAME")]
        profile: Option<String>,
        /// Do not touch the BMC: only arm boot-api. Someone powers the machine on or
        /// PXE-boots it (or `metal-cli power <MAC> cycle`).
        #[arg(long)]
        no_power: bool,
        /// Arm the machine even though its hardware failed its spec (`metal-cli show`
        /// lists the failed rules).
        #[arg(long)]
        force: bool,
        /// Print JSON lines (the request, each event, the final machine) instead of text.
        #[arg(long)]
        json: bool,
        /// Give up waiting after this many seconds (each BMC step takes up to
        /// scrape_deadline_secs, 120 by default, per attempt).
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Who asked, recorded in the request.
        #[arg(long, env = "USER")]
        requested_by: Option<String>,
    },
    /// Power a known machine on or off, power-cycle it, or read its power state.
    ///
    /// The machine is named by its BMC MAC or a host NIC MAC; redfish-scraper talks to its
    /// BMC's Redfish API. Exit 0 once the BMC did it; 1 with the BMC's reason otherwise.
    Power {
        /// The machine's BMC MAC (or one of its host NIC MACs).
        mac: String,
        #[arg(value_enum)]
        action: PowerArg,
        /// Print JSON lines (the request and the answer) instead of text.
        #[arg(long)]
        json: bool,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Who asked, recorded in the request.
        #[arg(long, env = "USER")]
        requested_by: Option<String>,
    },
    /// Take a machine out of service: optionally wipe it, then power it off for good.
    ///
    /// The machine is named by its BMC MAC or a host NIC MAC. With --wipe, boot-api arms the
    /// wipe profile of the boot profiles file (the one with purpose = "wipe") and
    /// redfish-scraper PXE-boots the machine into it; the wipe phones home to
    /// /v1/machines/<id>/wiped with its token when the disks are erased. Then (at once
    /// without --wipe) redfish-scraper powers the machine off over Redfish and it is
    /// retired: boot-api never netboots it again, `metal-cli provision` refuses it and
    /// `metal-cli machines` hides it, until it is onboarded anew (metal-cli onboard).
    /// Prints each step; exit 0 once retired, 1 if boot-api, the BMC or the wipe failed
    /// (the machine is then retire_failed: retire again).
    #[command(after_help = "Examples:
  metal-cli retire aa:bb:cc:dd:ee:ff --wipe
  metal-cli retire aa:bb:cc:dd:ee:ff          (power off only)")]
    Retire {
        /// The machine's BMC MAC (or one of its host NIC MACs).
        mac: String,
        /// Netboot the wipe profile once (erasing the disks) before powering off.
        #[arg(long)]
        wipe: bool,
        /// Print JSON lines (the request and each event) instead of text.
        #[arg(long)]
        json: bool,
        /// Give up waiting after this many seconds (the retirement itself goes on; a wipe
        /// has until boot_api.install_deadline_secs to phone home).
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
        /// Who asked, recorded in the request.
        #[arg(long, env = "USER")]
        requested_by: Option<String>,
    },
    /// List the MACs that asked boot-api to netboot and that no machine has.
    ///
    /// Hardware nobody onboarded, or a NIC its BMC does not report; each with when it was first and last
    /// seen, how many boot windows it asked in, and why it is unknown.
    Unknown {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List machines whose firmware differs from the fleet's most common version per
    /// component and model.
    ///
    /// For each system model and firmware component (an item's name, or its id when it has
    /// none), the fleet version is the one the most firmware items of that model's machines
    /// report; ties go to the version more machines report, then to the greatest with
    /// numbers compared as numbers (2.10 after 2.9), then to the greatest byte by byte.
    /// Each machine at another version is listed with the fleet version and how many of the
    /// model's machines have it, out of those that have the component (n/m). A component
    /// only one machine of a model has never drifts; items without a version and machines
    /// without a system model are not compared. At most 1000 rows, sorted by model,
    /// component and machine; the last line says how many there are in all.
    #[command(
        after_help = "Examples:\n  metal-cli drift\n  metal-cli drift --json | jq -r '.drift[] | select(.component == \"System ROM\") | .bmc_mac'"
    )]
    Drift {
        /// Print JSON (the query service's FirmwareDrift reply) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Boot profiles (the file boot-api assigns from).
    Profiles {
        #[command(subcommand)]
        command: ProfilesCommand,
    },
    /// Print the machines as an Ansible dynamic inventory (JSON).
    ///
    /// Hosts are named by machine id, in groups state_<state> and profile_<profile> (once provisioned), with metal_* host
    /// variables (BMC MAC and IP, Redfish URL, state, profile, system model, manufacturer
    /// and serial, CPU count and model, memory, host NIC MACs, drive count, tags).
    #[command(
        after_help = "As an inventory script, e.g. inventory/metal.sh:\n  #!/bin/sh\n  exec metal-cli inventory --ansible \"$@\"\nthen: ansible-inventory -i inventory/metal.sh --graph"
    )]
    Inventory {
        /// Print the Ansible dynamic inventory JSON (the only format so far).
        #[arg(long, required = true)]
        ansible: bool,
        /// All groups and hosts with their variables (what Ansible asks for; the default).
        #[arg(long, conflicts_with = "host")]
        list: bool,
        /// Only this host's variables (`{}` for a host the inventory does not have).
        #[arg(long, value_name = "MACHINE_ID")]
        host: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum ProfilesCommand {
    /// Check a boot profiles file, and dry-run it: which profile each machine would take.
    ///
    /// The file (default: the config's boot_api.profiles, profiles/boot-profiles.toml) is
    /// checked without NATS: exit 1 with the problem and its line when it
    /// is not valid. Then, as a dry run, list each machine with an inventory and the profile
    /// `metal-cli provision` would arm it with, or "no profile"; without NATS the file is
    /// still checked (exit 0) and the dry run is skipped.
    Check {
        /// The profiles file.
        file: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// What `metal-cli power` asks of the BMC.
#[derive(ValueEnum, Clone, Copy, Debug)]
enum PowerArg {
    /// Power on (nothing to do when it is on).
    On,
    /// Power off (nothing to do when it is off).
    Off,
    /// Restart (or power on when it is off).
    Cycle,
    /// Print the power state.
    Status,
}

impl From<PowerArg> for PowerAction {
    fn from(action: PowerArg) -> PowerAction {
        match action {
            PowerArg::On => PowerAction::On,
            PowerArg::Off => PowerAction::Off,
            PowerArg::Cycle => PowerAction::Cycle,
            PowerArg::Status => PowerAction::Status,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    restore_default_sigpipe();
    let cli = Cli::parse();
    metal_core::service::init_tracing_with(cli.common.log_format, "warn");
    // Bad input is reported before anything touches the network.
    let given_mac = match &cli.command {
        Command::Onboard { mac: Some(mac), .. } => Some(("onboard", mac)),
        Command::Locate { mac, .. } => Some(("locate", mac)),
        Command::Tag { mac, .. } => Some(("tag", mac)),
        Command::Expect { mac, .. } => Some(("expect", mac)),
        Command::Provision { mac, .. } => Some(("provision", mac)),
        Command::Power { mac, .. } => Some(("power", mac)),
        Command::Retire { mac, .. } => Some(("retire", mac)),
        _ => None,
    };
    if let Some((verb, mac)) = given_mac {
        if let Err(code) = commands::device_mac(verb, mac) {
            return code;
        }
    }
    let problem = match &cli.command {
        Command::Tag {
            mac, tags, remove, ..
        } => provision::tag_change(tags, remove)
            .err()
            .map(|problem| format!("cannot tag {mac}: {problem}")),
        Command::Expect { mac, spec, .. } => metal_cli::expect::spec_name(spec)
            .err()
            .map(|problem| format!("cannot expect {mac} to meet {spec:?}: {problem}")),
        Command::Onboard {
            mac,
            expect: Some(spec),
            ..
        } => metal_cli::expect::spec_name(spec).err().map(|problem| {
            let which = mac.as_deref().unwrap_or("the machines");
            format!("cannot expect {which} to meet {spec:?}: {problem}")
        }),
        Command::Provision {
            mac,
            profile: Some(profile),
            ..
        } => provision::profile_name(profile)
            .err()
            .map(|problem| format!("cannot provision {mac}: {problem}")),
        _ => None,
    };
    if let Some(problem) = problem {
        eprintln!("metal-cli: {problem}");
        return ExitCode::from(2);
    }
    // A file of MACs is read once, here: a line that is not a MAC onboards nothing.
    let file_macs = match &cli.command {
        Command::Onboard {
            file: Some(file), ..
        } => match metal_cli::many::load_macs(file) {
            Ok(macs) => Some(macs),
            Err(problem) => {
                eprintln!("metal-cli: {problem}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    // Checking a profiles file needs no NATS; its dry run connects if it can.
    if let Command::Profiles {
        command: ProfilesCommand::Check { file, json },
    } = &cli.command
    {
        return metal_cli::fleet::profiles_check(&cli.common, file.as_deref(), *json).await;
    }
    let (nats_url, nats) = match cli.common.load() {
        Ok(config) => (config.nats_url, config.nats),
        Err(error) => {
            eprintln!("metal-cli: {}", metal_core::error_chain(&error));
            return ExitCode::from(2);
        }
    };
    // Onboarding waits for NATS (within its --timeout) rather than failing at once: the
    // operator asked for a machine, not for a query.
    let connected = if matches!(cli.command, Command::Onboard { .. }) {
        metal_cli::client::connect_waiting(&nats_url, &nats).await
    } else {
        metal_cli::client::connect(&nats_url, &nats).await
    };
    let client = match connected {
        Ok(client) => client,
        Err(error) => {
            eprintln!("metal-cli: {}", metal_core::error_chain(&error));
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Onboard {
            mac,
            file: _,
            expect,
            no_wait,
            json,
            timeout,
            requested_by,
        } => {
            let options = OnboardOptions {
                expect,
                no_wait,
                json,
                timeout: Duration::from_secs(timeout),
                requested_by,
            };
            match (mac, file_macs) {
                (Some(mac), _) => commands::onboard(&client, &mac, options).await,
                (None, Some(macs)) => metal_cli::many::onboard_many(&client, macs, options).await,
                (None, None) => Ok(ExitCode::from(2)),
            }
        }
        Command::Expect {
            mac,
            spec,
            json,
            timeout,
            requested_by,
        } => {
            metal_cli::expect::expect(
                &client,
                &mac,
                &spec,
                metal_cli::expect::ExpectOptions {
                    json,
                    timeout: Duration::from_secs(timeout),
                    requested_by,
                },
            )
            .await
        }
        Command::Locate { mac, json } => commands::locate(&client, &mac, json).await,
        Command::Machines { json, all } => commands::machines(&client, json, all).await,
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
        Command::Tag {
            mac,
            tags,
            remove,
            json,
            timeout,
            requested_by,
        } => {
            provision::tag(
                &client,
                &mac,
                &tags,
                &remove,
                TagOptions {
                    json,
                    timeout: Duration::from_secs(timeout),
                    requested_by,
                },
            )
            .await
        }
        Command::Provision {
            mac,
            profile,
            no_power,
            force,
            json,
            timeout,
            requested_by,
        } => {
            provision::provision(
                &client,
                &mac,
                ProvisionOptions {
                    profile,
                    power: !no_power,
                    force,
                    json,
                    timeout: Duration::from_secs(timeout),
                    requested_by,
                },
            )
            .await
        }
        Command::Power {
            mac,
            action,
            json,
            timeout,
            requested_by,
        } => {
            provision::power(
                &client,
                &mac,
                action.into(),
                PowerOptions {
                    json,
                    timeout: Duration::from_secs(timeout),
                    requested_by,
                },
            )
            .await
        }
        Command::Retire {
            mac,
            wipe,
            json,
            timeout,
            requested_by,
        } => {
            provision::retire(
                &client,
                &mac,
                provision::RetireOptions {
                    wipe,
                    json,
                    timeout: Duration::from_secs(timeout),
                    requested_by,
                },
            )
            .await
        }
        Command::Unknown { json } => metal_cli::fleet::unknown(&client, json).await,
        Command::Drift { json } => metal_cli::fleet::drift(&client, json).await,
        Command::Inventory { host, .. } => {
            metal_cli::fleet::ansible(&client, host.as_deref()).await
        }
        // Answered before connecting.
        Command::Profiles { .. } => Ok(ExitCode::SUCCESS),
    };
    // Whatever was published goes out before exiting; a NATS that is away cannot hold the
    // exit up for long.
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
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
