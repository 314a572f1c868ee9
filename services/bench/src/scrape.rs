//! scrape-bench: how close onboarding a whole fleet at once comes to the time the
//! scraper's caps allow, through the real pipeline.
//!
//! It starts a nats-server and a fleet of fake BMCs (test harness) with a fixed latency
//! per response, runs the real `locator`, `redfish-scraper` and `inventory-projector`
//! binaries as child processes against a config whose static map names every BMC,
//! publishes one plain-MAC `machine.onboard.requested` per BMC and waits until the
//! projection shows every machine inventoried.
//!
//! The baseline is the critical path the caps imply, measured in the same run:
//! `T_cap = max(T_single, total requests × latency ÷ global_concurrency)`, where
//! `T_single` is one scrape of one BMC alone with the same settings (the per-BMC critical
//! path at `per_bmc_concurrency`) and the total is what the fleet counted.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_nats::jetstream;
use clap::{Parser, ValueEnum};
use futures::{StreamExt, TryStreamExt};
use metal_core::config::{Credentials, RedfishConfig, Secret};
use metal_core::jetstream::{ensure_stream, follow_stream};
use metal_core::query::{MachineList, MachineState, Status};
use metal_core::{subjects, Decoded, Mac, MachineId};
use redfish_scraper::http::{HttpSettings, Scraper, Target};
use test_harness::fake_bmc::{self, Auth, FakeBmcSpec, FakeFleet};
use test_harness::service::Service;
use time::OffsetDateTime;

/// Fleet onboarding wall time ÷ the critical path the scraper's caps imply, same run.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Fake BMCs onboarded at once.
    #[arg(long, default_value_t = 1000)]
    bmcs: usize,
    /// Latency of every fake BMC response, in milliseconds.
    #[arg(long, default_value_t = 200)]
    latency_ms: u64,
    /// `redfish.global_concurrency`: scrapes, and requests, in flight across all BMCs.
    #[arg(long, default_value_t = 256)]
    global_concurrency: usize,
    /// `redfish.per_bmc_concurrency` (the scraper caps it at 4).
    #[arg(long, default_value_t = 4)]
    per_bmc: usize,
    /// How the fake BMCs authenticate: `none`, or `basic` with the password in
    /// METAL_REDFISH_PASSWORD (a fixed one when unset).
    #[arg(long, value_enum, default_value_t = AuthMode::None)]
    auth: AuthMode,
    /// Publish the requests this many milliseconds apart instead of all at once (0). Spaced
    /// so that the fleet never fills the scrape slots, each onboarding's overhead is the
    /// pipeline's own time, with no queue in it: the overhead goal is judged then.
    #[arg(long, default_value_t = 0)]
    spacing_ms: u64,
    /// `redfish.request_timeout_secs`.
    #[arg(long, default_value_t = 15)]
    request_timeout_secs: u64,
    /// `redfish.scrape_deadline_secs`.
    #[arg(long, default_value_t = 120)]
    scrape_deadline_secs: u64,
    /// Give up when the fleet is not inventoried after this long.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
    /// Single-BMC scrapes measured for T_single (the fastest counts).
    #[arg(long, default_value_t = 3)]
    single_rounds: u32,
    /// Where the locator, redfish-scraper and inventory-projector binaries are
    /// (default: beside this one, i.e. target/release).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Keep the work directory (config, service logs, projection) and print its path.
    #[arg(long)]
    keep: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum AuthMode {
    None,
    Basic,
}

const USERNAME: &str = "bench";
/// The config's password variable when BMCs ask for none: never set, so the scraper reads
/// anonymously (with a password it would log in first, as against a real BMC).
const NO_PASSWORD_ENV: &str = "SCRAPE_BENCH_UNSET_PASSWORD";
const PASSWORD_ENV: &str = "METAL_REDFISH_PASSWORD";
const SERVICES: [&str; 3] = ["locator", "redfish-scraper", "inventory-projector"];

/// Starts one of [`SERVICES`] with the benchmark's config and, for basic auth, its password.
fn spawn_service(
    name: &str,
    bin_dir: &Path,
    work: &Path,
    config: &Path,
    nats_url: &str,
    password: Option<&str>,
) -> anyhow::Result<Service> {
    let config = config.display().to_string();
    let password = password.map(str::to_string);
    Service::spawn(
        name,
        &bin_dir.join(name),
        &format!("cargo build --release -p {name}"),
        &["--config", &config, "--nats-url", nats_url],
        work,
        move |command| {
            command.env_remove(NO_PASSWORD_ENV);
            match &password {
                Some(password) => command.env(PASSWORD_ENV, password),
                None => command.env_remove(PASSWORD_ENV),
            };
        },
    )
}

/// What the stream follower has seen since the onboarding requests went out.
#[derive(Debug, Default)]
struct Progress {
    located: usize,
    scraped: usize,
    failed: usize,
    last_located: Option<OffsetDateTime>,
    last_scraped: Option<OffsetDateTime>,
    /// Stream sequence of the latest `machine.hardware.scraped`.
    last_scraped_sequence: u64,
    failures: Vec<String>,
    /// When the stream stored each machine's request, its location and its inventory.
    requested: HashMap<MachineId, OffsetDateTime>,
    located_at: HashMap<MachineId, OffsetDateTime>,
    inventoried: HashMap<MachineId, OffsetDateTime>,
}

fn redfish_config(args: &Args, password_env: &str) -> RedfishConfig {
    RedfishConfig {
        username: USERNAME.to_string(),
        password_env: password_env.to_string(),
        request_timeout_secs: args.request_timeout_secs,
        scrape_deadline_secs: args.scrape_deadline_secs,
        per_bmc_concurrency: args.per_bmc,
        global_concurrency: args.global_concurrency,
        ..RedfishConfig::default()
    }
}

fn config_toml(
    nats_url: &str,
    fleet: &FakeFleet,
    redfish: &RedfishConfig,
    database: &Path,
) -> String {
    let mut text = format!("nats_url = \"{nats_url}\"\n\n{}", fleet.locator_toml());
    text.push_str(&format!(
        "\n[redfish]\nusername = \"{}\"\npassword_env = \"{}\"\nrequest_timeout_secs = {}\nscrape_deadline_secs = {}\nretries = {}\nper_bmc_concurrency = {}\nglobal_concurrency = {}\n\n[projector]\ndatabase = {:?}\n",
        redfish.username,
        redfish.password_env,
        redfish.request_timeout_secs,
        redfish.scrape_deadline_secs,
        redfish.retries,
        redfish.per_bmc_concurrency,
        redfish.global_concurrency,
        database.display().to_string(),
    ));
    text
}

/// T_single: the fastest of `rounds` scrapes of one fake BMC alone, with the pipeline's
/// settings; also the requests one scrape makes and its peak in flight.
async fn single_bmc(
    spec: &FakeBmcSpec,
    redfish: &RedfishConfig,
    credentials: Option<&Credentials>,
    rounds: u32,
) -> anyhow::Result<(Duration, u64, u64)> {
    let fleet = FakeFleet::start(vec![spec.clone()]).await;
    let scraper = Scraper::new(HttpSettings::from_config(redfish))?;
    let base_url = fleet.base_url(0);
    let mut best = Duration::MAX;
    let rounds = rounds.max(1);
    for _ in 0..rounds {
        let started = Instant::now();
        let walked = scraper
            .scrape(Target {
                base_url: &base_url,
                credentials,
                no_credentials_reason: Some("scrape-bench runs this BMC without credentials"),
                insecure_tls: false,
            })
            .await
            .context("scraping one fake BMC alone")?;
        best = best.min(started.elapsed());
        anyhow::ensure!(
            !walked.inventory.systems.is_empty(),
            "the single-BMC scrape found no system"
        );
    }
    Ok((
        best,
        fleet.requests(0) / u64::from(rounds),
        fleet.peak_in_flight(0),
    ))
}

/// Waits until the locator and scraper pull from their consumers and the projector answers.
async fn wait_ready(
    client: &async_nats::Client,
    stream: &mut jetstream::stream::Stream,
    services: &mut [Service],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for service in services.iter_mut() {
            service.check_running()?;
        }
        let mut ready = true;
        for consumer in ["locator", "redfish-scraper"] {
            ready &= match stream.consumer_info(consumer).await {
                Ok(info) => info.num_waiting > 0,
                Err(_) => false,
            };
        }
        ready &= status(client).await.is_ok();
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the services were not ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn query<T: serde::de::DeserializeOwned>(
    client: &async_nats::Client,
    subject: &str,
) -> anyhow::Result<T> {
    let payload = bench::ask(client, subject, "{}", Duration::from_secs(30)).await?;
    Ok(serde_json::from_slice(&payload)?)
}

async fn status(client: &async_nats::Client) -> anyhow::Result<Status> {
    query(client, subjects::QUERY_STATUS).await
}

/// Follows the stream from `from`, counting what the pipeline answers.
async fn follow(
    stream: jetstream::stream::Stream,
    from: u64,
    progress: Arc<Mutex<Progress>>,
) -> anyhow::Result<()> {
    let messages = follow_stream(&stream, from).await?;
    let mut messages = std::pin::pin!(messages);
    while let Some(message) = messages.next().await {
        let message = message?;
        let mut progress = progress.lock().unwrap_or_else(|e| e.into_inner());
        let machine = || match message.decode() {
            Decoded::Event(event) => event.machine_id,
            _ => None,
        };
        match message.subject.as_str() {
            subjects::ONBOARD_REQUESTED => {
                if let Some(machine) = machine() {
                    progress.requested.insert(machine, message.published);
                }
            }
            subjects::BMC_LOCATED => {
                progress.located += 1;
                progress.last_located = Some(message.published);
                if let Some(machine) = machine() {
                    progress.located_at.insert(machine, message.published);
                }
            }
            subjects::HARDWARE_SCRAPED => {
                progress.scraped += 1;
                progress.last_scraped = Some(message.published);
                progress.last_scraped_sequence = message.sequence;
                if let Some(machine) = machine() {
                    progress.inventoried.insert(machine, message.published);
                }
            }
            subjects::LOCATE_FAILED | subjects::SCRAPE_FAILED | subjects::ONBOARD_REJECTED => {
                progress.failed += 1;
                if progress.failures.len() < 5 {
                    let excerpt = String::from_utf8_lossy(&message.payload);
                    let excerpt: String = excerpt.chars().take(400).collect();
                    progress
                        .failures
                        .push(format!("{}: {excerpt}", message.subject));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Each machine's overhead and its three stages, in ms, each sorted on its own.
#[derive(Default)]
struct Overheads {
    /// From the stream storing the request to the stream storing the inventory, less the
    /// time the BMC was busy (its first request to its last answer): the pipeline's own
    /// time, which is the sum of the three stages below.
    total: Vec<f64>,
    /// Request stored → `machine.bmc.located` stored: the locator.
    locate: Vec<f64>,
    /// `machine.bmc.located` stored → the BMC's first request: the scraper's pull and, when
    /// the fleet is larger than `global_concurrency`, the wait for a scrape slot.
    handoff: Vec<f64>,
    /// The BMC's last answer → the inventory stored: the raw documents into the object
    /// store, then the event.
    tail: Vec<f64>,
}

fn overheads_ms(progress: &Progress, macs: &[Mac], fleet: &FakeFleet) -> Overheads {
    let ms = |from: OffsetDateTime, to: OffsetDateTime| (to - from).as_seconds_f64() * 1000.0;
    let mut overheads = Overheads::default();
    for (index, mac) in macs.iter().enumerate() {
        let machine = MachineId::from_bmc_mac(mac);
        let (Some(requested), Some(located), Some(inventoried), Some((first, last))) = (
            progress.requested.get(&machine),
            progress.located_at.get(&machine),
            progress.inventoried.get(&machine),
            fleet.busy_window(index),
        ) else {
            continue;
        };
        let (first, last) = (OffsetDateTime::from(first), OffsetDateTime::from(last));
        overheads
            .total
            .push(ms(*requested, *inventoried) - ms(first, last));
        overheads.locate.push(ms(*requested, *located));
        overheads.handoff.push(ms(*located, first));
        overheads.tail.push(ms(last, *inventoried));
    }
    for values in [
        &mut overheads.total,
        &mut overheads.locate,
        &mut overheads.handoff,
        &mut overheads.tail,
    ] {
        values.sort_by(f64::total_cmp);
    }
    overheads
}

/// The `q` quantile of sorted values (NaN when there are none).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn seconds_since(start: OffsetDateTime, at: Option<OffsetDateTime>) -> f64 {
    at.map(|at| (at - start).as_seconds_f64())
        .unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::select! {
        result = run(args) => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let n = args.bmcs;
    anyhow::ensure!(n > 0, "--bmcs must be at least 1");
    let latency = Duration::from_millis(args.latency_ms);
    // The fleet's listeners and server ends live in this process, the scraper's client
    // ends in its own; both inherit this limit.
    let open_files = fake_bmc::raise_open_file_limit().context("raising the open file limit")?;
    let per_bmc = args
        .per_bmc
        .clamp(1, redfish_scraper::http::MAX_PER_BMC_CONCURRENCY);
    let wanted = n + args.global_concurrency * per_bmc + 256;
    anyhow::ensure!(
        open_files as usize >= wanted,
        "{n} BMCs need about {wanted} open files here (a listener each, plus the connections in flight) \
         but the limit is {open_files}; raise `ulimit -n` or use fewer --bmcs"
    );
    let bin_dir = test_harness::service::bin_dir(args.bin_dir.as_deref())?;

    let (spec, password, password_env) = match args.auth {
        AuthMode::None => (FakeBmcSpec::synthetic(), None, NO_PASSWORD_ENV),
        AuthMode::Basic => {
            let password =
                std::env::var(PASSWORD_ENV).unwrap_or_else(|_| "scrape-bench-only".to_string());
            let spec = FakeBmcSpec::synthetic().auth(Auth::Basic {
                user: USERNAME.to_string(),
                password: password.clone(),
            });
            (spec, Some(password), PASSWORD_ENV)
        }
    };
    let spec = spec.latency(latency);
    let redfish = redfish_config(&args, password_env);
    let credentials = password.as_ref().map(|password| Credentials {
        username: USERNAME.to_string(),
        password: Secret::new(password.clone()),
    });

    eprintln!(
        "measuring T_single: one fake BMC alone, {} ms a response, {per_bmc} requests at once",
        args.latency_ms
    );
    let (t_single, single_requests, single_peak) =
        single_bmc(&spec, &redfish, credentials.as_ref(), args.single_rounds).await?;
    eprintln!(
        "T_single {:.3} s, {single_requests} requests, peak {single_peak} in flight",
        t_single.as_secs_f64()
    );
    // The scraper keeps a scraped BMC's connections (up to per_bmc) idle in its pool for
    // 30 to 60 s; their server ends are open in this process too.
    let bmcs_per_second = args.global_concurrency as f64
        / (single_requests.max(1) as f64 * latency.as_secs_f64().max(0.001));
    let lingering = ((bmcs_per_second * 60.0) as usize).min(n) * per_bmc;
    if n + lingering + 256 > open_files as usize {
        eprintln!(
            "warning: with up to {lingering} idle scraper connections besides {n} listeners this \
             process may run out of its {open_files} open files; BMCs then accept late"
        );
    }

    let server = test_harness::nats::NatsServer::start();
    let client = server.connect().await;
    let js = jetstream::new(client.clone());
    let mut stream = ensure_stream(&js).await?;

    eprintln!("starting {n} fake BMCs");
    let fleet = FakeFleet::start(vec![spec; n]).await;

    let work = tempfile::Builder::new().prefix("scrape-bench.").tempdir()?;
    let config = work.path().join("metal.toml");
    std::fs::write(
        &config,
        config_toml(
            &server.url(),
            &fleet,
            &redfish,
            &work.path().join("inventory.db"),
        ),
    )?;
    let mut services = SERVICES
        .iter()
        .map(|name| {
            spawn_service(
                name,
                &bin_dir,
                work.path(),
                &config,
                &server.url(),
                password.as_deref(),
            )
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    wait_ready(&client, &mut stream, &mut services).await?;
    let from = stream.info().await?.state.last_sequence + 1;
    let progress = Arc::new(Mutex::new(Progress::default()));
    let follower = tokio::spawn(follow(stream.clone(), from, progress.clone()));

    let macs: Vec<Mac> = (0..n)
        .map(|index| fake_bmc::synthetic_bmc_mac(index).parse())
        .collect::<Result<_, _>>()
        .map_err(|error| anyhow::anyhow!("synthetic MAC: {error}"))?;
    let spacing = Duration::from_millis(args.spacing_ms);
    if spacing.is_zero() {
        eprintln!(
            "onboarding {n} BMCs at once (global_concurrency {}, per_bmc {per_bmc})",
            args.global_concurrency
        );
    } else {
        eprintln!(
            "onboarding {n} BMCs, one every {} ms (global_concurrency {}, per_bmc {per_bmc})",
            args.spacing_ms, args.global_concurrency
        );
    }
    let start_time = OffsetDateTime::now_utc();
    let started = Instant::now();
    // PubAcks awaited as they come, a bounded number pending: the JetStream context holds
    // at most 5,000 unanswered publishes and waits for a permit beyond that.
    // Spaced requests are sent on a timer, each without waiting for the last one's ack.
    let mut pace = tokio::time::interval(spacing.max(Duration::from_micros(1)));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    futures::stream::unfold((0..n, pace), |(mut indices, mut pace)| async move {
        let index = indices.next()?;
        if !spacing.is_zero() {
            pace.tick().await;
        }
        Some((index, (indices, pace)))
    })
    .map(|index| {
        let js = js.clone();
        async move {
            let payload = fake_bmc::synthetic_bmc_mac(index);
            js.publish(subjects::ONBOARD_REQUESTED, payload.into())
                .await?
                .await
        }
    })
    .buffer_unordered(1024)
    .try_for_each(|_| async { Ok(()) })
    .await
    .context("publishing the onboarding requests")?;
    let published = started.elapsed();

    let deadline = started + Duration::from_secs(args.timeout_secs);
    let mut last_report = Instant::now();
    let wall = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        for service in &mut services {
            service.check_running()?;
        }
        if follower.is_finished() {
            bail!("stopped following the stream: {:?}", follower.await);
        }
        let (scraped, failed, sequence) = {
            let progress = progress.lock().unwrap_or_else(|e| e.into_inner());
            if last_report.elapsed() > Duration::from_secs(10) {
                eprintln!(
                    "  {:.0} s: {} located, {} scraped, {} failed, {} requests in flight",
                    started.elapsed().as_secs_f64(),
                    progress.located,
                    progress.scraped,
                    progress.failed,
                    fleet.in_flight_total()
                );
                last_report = Instant::now();
            }
            (
                progress.scraped,
                progress.failed,
                progress.last_scraped_sequence,
            )
        };
        if failed > 0 {
            let failures = progress
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .failures
                .join("\n");
            bail!("{failed} onboardings failed; first ones:\n{failures}");
        }
        if Instant::now() > deadline {
            bail!(
                "only {scraped} of {n} machines scraped after {} s",
                args.timeout_secs
            );
        }
        if scraped < n {
            continue;
        }
        let at = started.elapsed();
        if status(&client).await?.last_sequence < sequence {
            continue;
        }
        let list: MachineList = query(&client, subjects::QUERY_MACHINES).await?;
        let inventoried: HashSet<Mac> = list
            .machines
            .iter()
            .filter(|row| row.state == MachineState::Inventoried)
            .map(|row| row.bmc_mac)
            .collect();
        if macs.iter().all(|mac| inventoried.contains(mac)) {
            break at;
        }
    };
    follower.abort();

    let mut peak_rss = Vec::new();
    for service in &services {
        peak_rss.push((
            service.name().to_string(),
            bench::proc_status_kib(service.pid(), "VmHWM")?,
        ));
    }
    drop(services);
    let scraper_rss_kib = peak_rss[1].1;

    let total_requests = fleet.requests_total();
    let peak_total = fleet.peak_in_flight_total();
    let peak_per_bmc = (0..n).map(|i| fleet.peak_in_flight(i)).max().unwrap_or(0);
    let t_throughput =
        total_requests as f64 * latency.as_secs_f64() / args.global_concurrency.max(1) as f64;
    // Spaced requests: the last one cannot finish before it is sent and scraped.
    let t_spaced = (n - 1) as f64 * spacing.as_secs_f64() + t_single.as_secs_f64();
    let t_cap = t_single.as_secs_f64().max(t_throughput).max(t_spaced);
    let ratio = wall.as_secs_f64() / t_cap;
    let (last_located, last_scraped, overheads) = {
        let progress = progress.lock().unwrap_or_else(|e| e.into_inner());
        (
            seconds_since(start_time, progress.last_located),
            seconds_since(start_time, progress.last_scraped),
            overheads_ms(&progress, &macs, &fleet),
        )
    };
    let (overhead_p50, overhead_p99, overhead_max) = (
        percentile(&overheads.total, 0.50),
        percentile(&overheads.total, 0.99),
        overheads.total.last().copied().unwrap_or(f64::NAN),
    );
    let stage = |values: &[f64]| (percentile(values, 0.50), percentile(values, 0.99));
    let (locate, handoff, tail) = (
        stage(&overheads.locate),
        stage(&overheads.handoff),
        stage(&overheads.tail),
    );
    eprintln!(
        "request → inventory stored, the BMC's own time taken out, over {} machines: p50 {overhead_p50:.1} ms, p99 {overhead_p99:.1} ms, max {overhead_max:.1} ms",
        overheads.total.len()
    );
    eprintln!(
        "  stages (p50 / p99 ms): locate {:.1} / {:.1}; located → BMC's first request {:.1} / {:.1}; BMC's last answer → inventory stored {:.1} / {:.1}",
        locate.0, locate.1, handoff.0, handoff.1, tail.0, tail.1
    );
    eprintln!(
        "published {n} requests in {:.2} s; last bmc.located at {last_located:.2} s, \
         last hardware.scraped at {last_scraped:.2} s, projection complete at {:.2} s",
        published.as_secs_f64(),
        wall.as_secs_f64()
    );
    eprintln!(
        "peak RSS: {}",
        peak_rss
            .iter()
            .map(|(name, kib)| format!("{name} {:.1} MiB", *kib as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(", ")
    );

    println!("| BMCs | spacing (ms) | latency (ms) | global | per BMC | wall (s) | T_single (s) | requests | T_cap (s) | wall ÷ T_cap | overhead p50 / p99 (ms) | peak in flight (total / per BMC) | scraper peak RSS (MiB) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {n} | {} | {} | {} | {per_bmc} | {:.2} | {:.3} | {total_requests} | {t_cap:.2} | {ratio:.3} | {overhead_p50:.1} / {overhead_p99:.1} | {peak_total} / {peak_per_bmc} | {:.1} |",
        args.spacing_ms,
        args.latency_ms,
        args.global_concurrency,
        wall.as_secs_f64(),
        t_single.as_secs_f64(),
        scraper_rss_kib as f64 / 1024.0
    );
    // At once, a fleet larger than the slots queues for them, and the overhead is mostly
    // that queue (which T_cap counts); spaced, the overhead is the pipeline's own and is
    // what the goal judges.
    let (size, goal, met) = if spacing.is_zero() {
        (
            format!("{n} BMCs at once, {} ms each call", args.latency_ms),
            "≤ 1.3",
            ratio <= 1.3,
        )
    } else {
        (
            format!(
                "{n} BMCs one every {} ms, {} ms each call",
                args.spacing_ms, args.latency_ms
            ),
            "≤ 1.3; overhead p99 ≤ 20 ms",
            ratio <= 1.3 && overhead_p99 <= 20.0,
        )
    };
    bench::summary_row(
        "scrape",
        &size,
        &format!(
            "wall ÷ T_cap = {ratio:.3}; overhead p50 {overhead_p50:.1} ms, p99 {overhead_p99:.1} ms; scraper peak RSS {:.0} MiB",
            scraper_rss_kib as f64 / 1024.0
        ),
        goal,
        bench::verdict(met),
    );
    println!(
        "{}",
        serde_json::json!({
            "bench": "scrape",
            "bmcs": n,
            "latency_ms": args.latency_ms,
            "global_concurrency": args.global_concurrency,
            "per_bmc_concurrency": per_bmc,
            "auth": format!("{:?}", args.auth).to_lowercase(),
            "wall_s": wall.as_secs_f64(),
            "overhead_ms": {"p50": overhead_p50, "p99": overhead_p99, "max": overhead_max},
            "spacing_ms": args.spacing_ms,
            "locate_ms": {"p50": locate.0, "p99": locate.1},
            "handoff_ms": {"p50": handoff.0, "p99": handoff.1},
            "tail_ms": {"p50": tail.0, "p99": tail.1},
            "publish_s": published.as_secs_f64(),
            "last_located_s": last_located,
            "last_scraped_s": last_scraped,
            "t_single_s": t_single.as_secs_f64(),
            "single_bmc_requests": single_requests,
            "total_requests": total_requests,
            "t_throughput_s": t_throughput,
            "t_cap_s": t_cap,
            "ratio": ratio,
            "peak_in_flight_total": peak_total,
            "peak_in_flight_per_bmc": peak_per_bmc,
            "scraper_peak_rss_kib": scraper_rss_kib,
            "locator_peak_rss_kib": peak_rss[0].1,
            "projector_peak_rss_kib": peak_rss[2].1,
        })
    );
    if args.keep {
        eprintln!("work directory kept: {}", work.keep().display());
    }
    Ok(())
}
