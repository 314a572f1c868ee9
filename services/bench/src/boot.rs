//! boot-bench: the real boot-api binary's `GET /v1/boot/<mac>` throughput, with its boot
//! events, as a ratio of a trivial axum handler's under the same load, in the same run.
//!
//! It starts a nats-server (test harness), publishes a fleet of armed machines to
//! `MACHINES` (onboarding, provision request and profile assignment per machine), starts
//! the release `boot-api` binary against it and waits until its projection has caught up.
//! Then `wrk` loads boot-api and `trivial-boot-server` (one axum route answering boot-api's
//! own answer as a constant) alternately, with the same flags and a Lua script that walks
//! every machine's host MAC. Each boot-api round records a `machine.boot.served` per MAC
//! (boot-api's event window is set so every round starts a fresh one), which boot-api
//! publishes and its own follow loop applies while it serves.

use std::fmt::Write as _;
use std::future::IntoFuture;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_nats::jetstream;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use metal_core::jetstream::{ensure_stream, last_sequence, StoredMessage};
use metal_core::subjects;
use metal_projection::fixtures;
use test_harness::service::Service;

/// boot-api req/s ÷ a trivial axum handler's req/s, same wrk load, same run.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Armed machines on the stream (one host NIC each; MACs from three bytes of the index).
    #[arg(long, default_value_t = 100_000)]
    machines: u64,
    /// wrk threads (`-t`).
    #[arg(long, default_value_t = 1)]
    threads: u32,
    /// wrk connections, all keep-alive (`-c`).
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// Seconds of each wrk run (`-d`).
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Rounds of (trivial handler, boot-api); the best rate and the worst p99 of each count.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// boot-api's `boot_event_window_secs`. boot-api rounds start at least this plus
    /// `--duration-secs` apart, so every round records one `machine.boot.served` per MAC
    /// it reaches.
    #[arg(long, default_value_t = 10)]
    event_window_secs: u64,
    /// Least time between the starts of two boot-api rounds (default: the event window
    /// plus the duration plus 1 s, so every round records every MAC again). Shorter than
    /// that, with a longer window, later rounds measure repeated asks without new events.
    #[arg(long)]
    round_spacing_secs: Option<u64>,
    /// Give up when boot-api has not caught up with the stream after this long.
    #[arg(long, default_value_t = 900)]
    catch_up_timeout_secs: u64,
    /// Where the boot-api and trivial-boot-server binaries are (default: beside this one).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Keep the work directory (config, logs, wrk script, boot-api's projection).
    #[arg(long)]
    keep: bool,
    /// Skip the inventory-projector's part: its catch-up over the same stream, queries and
    /// a replay, with its peak RSS after each.
    #[arg(long)]
    no_projector: bool,
    /// Keep the stream's store and boot-api's projection in this directory, and start from
    /// them when an earlier run with the same `--machines` left them there: no publishing,
    /// catch-up or provision answers, so a run takes about 2 minutes instead of 10. For
    /// trying changes; catch-up and the RSS after it are then not a fresh run's.
    #[arg(long)]
    reuse_dir: Option<PathBuf>,
}

/// What `--reuse-dir` holds once a run has set it up: the machine count it was set up for.
const REUSE_MARKER: &str = "machines";

/// The install-token key handed to boot-api (it needs at least 16 bytes).
const TOKEN_KEY: &str = "boot-bench-install-token-key-0123456789";

/// How to build the binaries this benchmark runs.
const BUILD: &str = "cargo build --release -p bench -p boot-api -p inventory-projector";
/// Messages published before waiting for acks (the JetStream context allows 5,000).
const PUBLISH_IN_FLIGHT: usize = 4_096;

fn index_bytes(index: u64) -> [u8; 3] {
    let b = index.to_be_bytes();
    [b[5], b[6], b[7]]
}

fn bmc_mac(index: u64) -> String {
    let [a, b, c] = index_bytes(index);
    format!("02:4d:00:{a:02x}:{b:02x}:{c:02x}")
}

fn host_mac(index: u64) -> String {
    let [a, b, c] = index_bytes(index);
    format!("52:54:00:{a:02x}:{b:02x}:{c:02x}")
}

/// One machine's five messages: onboarding (request, located, scraped), a provision request
/// naming G1 (Intel, even indexes) or G2 (AMD, odd), and its `machine.profile.assigned`.
/// The provisioning happens now, so boot-api's install deadline is far away.
fn machine_messages(index: u64, now: time::OffsetDateTime) -> Vec<StoredMessage> {
    let (cpu, profile) = if index.is_multiple_of(2) {
        ("Intel(R) Xeon(R) Gold 6338", "G1")
    } else {
        ("AMD EPYC 7302P 16-Core Processor", "G2")
    };
    let bmc = bmc_mac(index);
    let inventory = fixtures::inventory("ProLiant DL325 Gen10 Plus", cpu, &[&host_mac(index)]);
    let first = 5 * index + 1;
    let mut messages = fixtures::onboarding(first, &bmc, inventory);
    let mut provision = fixtures::provision(first + 3, &bmc, Some(profile));
    provision.time = now;
    let assigned = fixtures::assigned(&provision, profile);
    messages.push(fixtures::stored(first + 3, &provision));
    messages.push(fixtures::stored(first + 4, &assigned));
    messages
}

/// Publishes every machine's messages with their `Nats-Msg-Id`, many acks outstanding.
async fn fill(js: &jetstream::Context, machines: u64) -> anyhow::Result<u64> {
    let now = time::OffsetDateTime::now_utc();
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut duplicates = 0u64;
    for index in 0..machines {
        for message in machine_messages(index, now) {
            let mut headers = async_nats::HeaderMap::new();
            if let Some(id) = &message.msg_id {
                headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
            }
            let ack = js
                .publish_with_headers(message.subject, headers, message.payload)
                .await?;
            in_flight.push(ack.into_future());
            if in_flight.len() >= PUBLISH_IN_FLIGHT {
                if let Some(ack) = in_flight.next().await {
                    duplicates += u64::from(ack?.duplicate);
                }
            }
        }
    }
    while let Some(ack) = in_flight.next().await {
        duplicates += u64::from(ack?.duplicate);
    }
    Ok(duplicates)
}

/// Publishes the fleet to a new stream (and removes a projection left at `database`).
async fn set_up_fleet(
    js: &jetstream::Context,
    stream: &mut jetstream::stream::Stream,
    machines: u64,
    database: &Path,
) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut path = database.as_os_str().to_owned();
        path.push(suffix);
        let _ = std::fs::remove_file(path);
    }
    eprintln!(
        "publishing {machines} armed machines ({} events)",
        machines * 5
    );
    let started = Instant::now();
    let duplicates = fill(js, machines).await?;
    let last = last_sequence(stream).await?;
    let info = stream.info().await?;
    eprintln!(
        "stored {last} events, {} MB, in {:.1} s",
        info.state.bytes / 1_000_000,
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        duplicates == 0 && last == machines * 5,
        "expected {} events stored, got {last} ({duplicates} duplicates)",
        machines * 5
    );
    Ok(())
}

/// What the inventory-projector's part measured.
struct ProjectorFigures {
    events: u64,
    catch_up: Duration,
    rss_caught_up: u64,
    rss_queried: u64,
    replay: Duration,
    rss_replayed: u64,
}

/// Starts the inventory-projector on the same stream with a fresh projection and measures
/// its peak RSS once it has caught up, after the queries an operator makes (status, a
/// machine, its history, the unknown MACs, the firmware drift) and after a replay (a second
/// projection built beside the live one). The projector is stopped before the load runs.
async fn measure_projector(
    bin_dir: &Path,
    work: &Path,
    nats_url: &str,
    client: &async_nats::Client,
    stream: &mut jetstream::stream::Stream,
) -> anyhow::Result<ProjectorFigures> {
    let events = last_sequence(stream).await?;
    let config = work.join("projector.toml");
    std::fs::write(
        &config,
        format!(
            "nats_url = \"{nats_url}\"\n\n[projector]\ndatabase = {:?}\n",
            work.join("inventory.db").display().to_string()
        ),
    )?;
    let config_arg = config.display().to_string();
    eprintln!("starting inventory-projector on the same stream ({events} events)");
    let started = Instant::now();
    let mut projector = Service::spawn(
        "inventory-projector",
        &bin_dir.join("inventory-projector"),
        BUILD,
        &["--config", &config_arg, "--nats-url", nats_url],
        work,
        |_| {},
    )?;
    loop {
        projector.check_running()?;
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "inventory-projector did not catch up within 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Ok(payload) =
            bench::ask(client, subjects::QUERY_STATUS, "{}", Duration::from_secs(5)).await
        else {
            continue;
        };
        let status: metal_core::query::Status = serde_json::from_slice(&payload)?;
        if status.last_sequence >= events {
            break;
        }
    }
    let catch_up = started.elapsed();
    let rss_caught_up = bench::proc_status_kib(projector.pid(), "VmHWM")?;
    eprintln!(
        "inventory-projector caught up after {:.1} s; peak RSS {:.0} MiB",
        catch_up.as_secs_f64(),
        mib(rss_caught_up)
    );
    let first_bmc = bmc_mac(0);
    let query_timeout = Duration::from_secs(60);
    for subject in [subjects::QUERY_MACHINE, subjects::QUERY_HISTORY] {
        bench::ask(client, subject, &first_bmc, query_timeout).await?;
    }
    for subject in [subjects::QUERY_UNKNOWN, subjects::QUERY_DRIFT] {
        bench::ask(client, subject, "{}", query_timeout).await?;
    }
    let rss_queried = bench::proc_status_kib(projector.pid(), "VmHWM")?;
    let replay_started = Instant::now();
    let report = bench::ask(
        client,
        subjects::QUERY_REPLAY,
        "{}",
        Duration::from_secs(1800),
    )
    .await?;
    let replay = replay_started.elapsed();
    let report: metal_core::query::ReplayReport = serde_json::from_slice(&report)?;
    anyhow::ensure!(
        report.identical,
        "the projector's replay differs from its live projection"
    );
    let rss_replayed = bench::proc_status_kib(projector.pid(), "VmHWM")?;
    eprintln!(
        "inventory-projector replayed {} events in {:.1} s (identical); peak RSS after queries {:.0} MiB, after the replay {:.0} MiB",
        report.events_applied,
        replay.as_secs_f64(),
        mib(rss_queried),
        mib(rss_replayed)
    );
    projector.stop(Duration::from_secs(10));
    Ok(ProjectorFigures {
        events,
        catch_up,
        rss_caught_up,
        rss_queried,
        replay,
        rss_replayed,
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// CPU time (user + system, in clock ticks) a process has used so far.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// Waits until the process uses under 5 % of a core for a whole second: boot-api has
/// published its queued events and applied what its follow loop read.
async fn wait_idle(service: &mut Service, timeout: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut before = cpu_ticks(service.pid())?;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        service.check_running()?;
        let now = cpu_ticks(service.pid())?;
        if now - before <= 5 {
            return Ok(started.elapsed());
        }
        before = now;
        if started.elapsed() > timeout {
            bail!("{} was still busy after {timeout:?}", service.name());
        }
    }
}

/// How many messages the stream holds on `subject`.
async fn stored_on(stream: &jetstream::stream::Stream, subject: &str) -> anyhow::Result<u64> {
    let mut info = stream.info_with_subjects(subject).await?;
    let mut total = 0u64;
    while let Some((found, count)) = info.try_next().await? {
        if found == subject {
            total += count as u64;
        }
    }
    Ok(total)
}

/// The highest `dropped=N` boot-api logged for its boot-event queue (it logs at powers of two).
fn dropped_events(log: &Path) -> u64 {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("boot events dropped"))
        .filter_map(|line| {
            let rest = &line[line.find("dropped=")? + "dropped=".len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .max()
        .unwrap_or(0)
}

fn config_toml(nats_url: &str, listen: &str, database: &Path, window_secs: u64) -> String {
    let profiles = test_harness::paths::workspace_root().join("profiles/boot-profiles.toml");
    format!(
        "nats_url = \"{nats_url}\"\n\n[boot_api]\nlisten = \"{listen}\"\ndatabase = {:?}\nprofiles = {:?}\npublic_url = \"http://{listen}\"\ninstall_deadline_secs = 86400\nboot_event_window_secs = {window_secs}\n",
        database.display().to_string(),
        profiles.display().to_string(),
    )
}

/// The wrk script: every thread walks all host MACs in order from its own offset, with the
/// requests built in `init`; `done` prints what the benchmark parses.
fn wrk_script(machines: u64, threads: u32) -> String {
    format!(
        r#"-- boot-bench: GET /v1/boot/<host MAC> over all {machines} machines.
local machines = {machines}
local threads = {threads}
local next_id = 0
local requests = {{}}
local i = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  for k = 0, machines - 1 do
    local path = string.format("/v1/boot/52:54:00:%02x:%02x:%02x",
      math.floor(k / 65536) % 256, math.floor(k / 256) % 256, k % 256)
    requests[k] = wrk.format("GET", path)
  end
  i = math.floor(id * machines / threads)
end

function request()
  local r = requests[i]
  i = i + 1
  if i >= machines then i = 0 end
  return r
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BOOT-BENCH requests=%.0f duration_us=%.0f bytes=%.0f connect=%.0f read=%.0f write=%.0f status=%.0f timeout=%.0f p50_us=%.0f p99_us=%.0f p999_us=%.0f max_us=%.0f\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    latency.max))
end
"#
    )
}

/// One wrk run's figures.
#[derive(Debug, Clone)]
struct WrkRun {
    requests: u64,
    rate: f64,
    bytes_per_request: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    /// CPU time the server used during the run, per request, in µs.
    cpu_us: f64,
}

impl WrkRun {
    fn describe(&self) -> String {
        format!(
            "{:.0} req/s (p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.1} ms, {:.0} B/answer, {:.1} µs CPU/request)",
            self.rate,
            self.p50_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms,
            self.bytes_per_request,
            self.cpu_us
        )
    }
}

fn wrk_field(line: &str, key: &str) -> anyhow::Result<f64> {
    let wanted = format!("{key}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(wanted.as_str()))
        .with_context(|| format!("wrk printed no {key}: {line}"))?
        .parse()
        .with_context(|| format!("wrk's {key} is not a number: {line}"))
}

/// Parses wrk's output (the script's `done` line, and the summary's non-2xx count) and
/// fails unless every request answered 2xx without socket errors.
fn parse_wrk(output: &str) -> anyhow::Result<WrkRun> {
    let line = output
        .lines()
        .find(|line| line.starts_with("BOOT-BENCH "))
        .with_context(|| format!("wrk printed no result line:\n{output}"))?;
    let field = |key| wrk_field(line, key);
    let non_2xx: u64 = output
        .lines()
        .find_map(|line| line.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .map(|n| n.trim().parse())
        .transpose()?
        .unwrap_or(0);
    let errors = field("connect")? + field("read")? + field("write")? + field("timeout")?;
    let failed = field("status")?;
    anyhow::ensure!(
        non_2xx == 0 && failed == 0.0 && errors == 0.0,
        "not every answer was a 200: {non_2xx} non-2xx, {failed} ≥ 400, {errors} socket errors or timeouts:\n{output}"
    );
    let requests = field("requests")?;
    anyhow::ensure!(requests > 0.0, "wrk made no requests:\n{output}");
    let seconds = field("duration_us")? / 1e6;
    Ok(WrkRun {
        requests: requests as u64,
        rate: requests / seconds,
        bytes_per_request: field("bytes")? / requests,
        p50_ms: field("p50_us")? / 1e3,
        p99_ms: field("p99_us")? / 1e3,
        p999_ms: field("p999_us")? / 1e3,
        max_ms: field("max_us")? / 1e3,
        cpu_us: f64::NAN,
    })
}

async fn run_wrk(args: &Args, script: &Path, base_url: &str) -> anyhow::Result<WrkRun> {
    let output = tokio::process::Command::new("wrk")
        .arg(format!("-t{}", args.threads))
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{}s", args.duration_secs))
        .arg("--timeout")
        .arg("5s")
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(base_url)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("cannot run wrk (scripts/bench installs it: apt-get install -y wrk)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "wrk failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    parse_wrk(&stdout)
}

/// One wrk run against `server`, with the CPU time the server used meanwhile.
async fn load(
    args: &Args,
    script: &Path,
    base_url: &str,
    server: &Service,
    tick_us: f64,
) -> anyhow::Result<WrkRun> {
    let before = cpu_ticks(server.pid())?;
    let mut run = run_wrk(args, script, base_url).await?;
    let used = cpu_ticks(server.pid())?.saturating_sub(before);
    run.cpu_us = used as f64 * tick_us / run.requests as f64;
    Ok(run)
}

/// Microseconds per clock tick of /proc/<pid>/stat (`getconf CLK_TCK`, else 100 Hz).
fn tick_us() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|hz| *hz > 0.0)
        .map_or(10_000.0, |hz| 1e6 / hz)
}

fn have_wrk() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("wrk").is_file()))
}

/// Polls `url` until it answers 200 (boot-api's projection has the machine armed) and
/// returns the body; fails if the service exits or `timeout` passes.
async fn wait_for_200(
    http: &reqwest::Client,
    url: &str,
    service: &mut Service,
    timeout: Duration,
) -> anyhow::Result<bytes::Bytes> {
    let started = Instant::now();
    loop {
        service.check_running()?;
        if let Ok(response) = http.get(url).send().await {
            if response.status() == 200 {
                return Ok(response.bytes().await?);
            }
        }
        if started.elapsed() > timeout {
            bail!("{url} did not answer 200 within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until boot-api's durable consumer has answered every provision request.
async fn wait_consumer_drained(
    stream: &jetstream::stream::Stream,
    service: &mut Service,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        service.check_running()?;
        if let Ok(info) = stream.consumer_info("boot-api").await {
            if info.num_pending == 0
                && info.num_ack_pending == 0
                && info.delivered.stream_sequence > 0
            {
                return Ok(());
            }
        }
        if started.elapsed() > timeout {
            bail!("boot-api's consumer did not drain within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What one boot-api round stored.
#[derive(Debug, Default, Clone, Copy)]
struct Events {
    /// `machine.boot.served` stored by the moment wrk finished.
    during: u64,
    /// The same once boot-api was idle again.
    total: u64,
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
    anyhow::ensure!(
        (1..=1 << 24).contains(&args.machines),
        "--machines must be between 1 and 16777216 (three MAC bytes)"
    );
    anyhow::ensure!(
        args.threads >= 1 && args.connections >= args.threads,
        "wrk needs at least one thread and a connection per thread"
    );
    anyhow::ensure!(
        args.event_window_secs >= 1,
        "--event-window-secs must be at least 1"
    );
    anyhow::ensure!(
        have_wrk(),
        "wrk not found on PATH: `apt-get install -y wrk` (scripts/bench does this)"
    );
    let bin_dir = test_harness::service::bin_dir(args.bin_dir.as_deref())?;
    let work = tempfile::Builder::new().prefix("boot-bench.").tempdir()?;

    let reused = match &args.reuse_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            std::fs::read_to_string(dir.join(REUSE_MARKER))
                .is_ok_and(|text| text.trim() == args.machines.to_string())
        }
        None => false,
    };
    let store = args.reuse_dir.as_ref().map(|dir| dir.join("nats-store"));
    if !reused {
        if let Some(store) = &store {
            // A half-made or other-sized setup: start over.
            let _ = std::fs::remove_dir_all(store);
        }
    }
    let server = test_harness::nats::NatsServer::start_with_store(store.as_deref());
    let client = server.connect().await;
    let js = jetstream::new(client.clone());
    let mut stream = ensure_stream(&js).await?;
    let database = match &args.reuse_dir {
        Some(dir) => dir.join("boot-api.db"),
        None => work.path().join("boot-api.db"),
    };
    if reused {
        eprintln!(
            "reusing the stream ({} events) and boot-api's projection in {}",
            last_sequence(&mut stream).await?,
            args.reuse_dir.as_deref().unwrap_or(Path::new("")).display()
        );
    } else {
        set_up_fleet(&js, &mut stream, args.machines, &database).await?;
    }

    let boot_port = test_harness::nats::free_port();
    let boot_listen = format!("127.0.0.1:{boot_port}");
    let config = work.path().join("metal.toml");
    std::fs::write(
        &config,
        config_toml(
            &server.url(),
            &boot_listen,
            &database,
            args.event_window_secs,
        ),
    )?;
    let config_arg = config.display().to_string();
    let nats_url = server.url();
    eprintln!("starting boot-api; waiting for its projection to catch up");
    let started = Instant::now();
    let mut boot_api = Service::spawn(
        "boot-api",
        &bin_dir.join("boot-api"),
        BUILD,
        &["--config", &config_arg, "--nats-url", &nats_url],
        work.path(),
        |command| {
            command.env("METAL_BOOT_TOKEN_KEY", TOKEN_KEY);
        },
    )?;
    let http = reqwest::Client::new();
    let boot_url = format!("http://{boot_listen}");
    let catch_up_timeout = Duration::from_secs(args.catch_up_timeout_secs);
    let last_mac = host_mac(args.machines - 1);
    let body = wait_for_200(
        &http,
        &format!("{boot_url}/v1/boot/{last_mac}"),
        &mut boot_api,
        catch_up_timeout,
    )
    .await?;
    let catch_up = started.elapsed();
    eprintln!(
        "boot-api serves the last machine after {:.1} s (peak RSS {:.0} MiB)",
        catch_up.as_secs_f64(),
        mib(bench::proc_status_kib(boot_api.pid(), "VmHWM")?)
    );
    wait_consumer_drained(&stream, &mut boot_api, catch_up_timeout).await?;
    let drained = started.elapsed();
    let refused = stored_on(&stream, subjects::PROVISION_FAILED).await?;
    anyhow::ensure!(
        refused == 0,
        "boot-api answered {refused} provision requests with machine.provision.failed (see its log)"
    );
    let settled = wait_idle(&mut boot_api, catch_up_timeout).await?;
    let rss_after_catch_up = bench::proc_status_kib(boot_api.pid(), "VmHWM")?;
    eprintln!(
        "boot-api answered all {} provision requests (duplicates of the stored assignments) after {:.1} s, idle {:.1} s later; peak RSS {:.0} MiB",
        args.machines,
        drained.as_secs_f64(),
        settled.as_secs_f64(),
        mib(rss_after_catch_up)
    );
    if let Some(dir) = &args.reuse_dir {
        std::fs::write(dir.join(REUSE_MARKER), args.machines.to_string())?;
    }
    anyhow::ensure!(
        serde_json::from_slice::<boot_api::BootSpec>(&body).is_ok(),
        "boot-api's answer is not a boot spec: {}",
        String::from_utf8_lossy(&body)
    );

    let projector = if args.no_projector {
        None
    } else {
        Some(measure_projector(&bin_dir, work.path(), &server.url(), &client, &mut stream).await?)
    };

    // The baseline answers boot-api's own answer for the last machine, as a constant.
    let body_file = work.path().join("trivial-body.json");
    std::fs::write(&body_file, &body)?;
    let trivial_listen = format!("127.0.0.1:{}", test_harness::nats::free_port());
    let body_arg = body_file.display().to_string();
    let mut trivial = Service::spawn(
        "trivial-boot-server",
        &bin_dir.join("trivial-boot-server"),
        BUILD,
        &["--listen", &trivial_listen, "--body-file", &body_arg],
        work.path(),
        |_| {},
    )?;
    let trivial_url = format!("http://{trivial_listen}");
    wait_for_200(
        &http,
        &format!("{trivial_url}/v1/boot/{last_mac}"),
        &mut trivial,
        Duration::from_secs(30),
    )
    .await?;

    let script = work.path().join("boot.lua");
    std::fs::write(&script, wrk_script(args.machines, args.threads))?;
    let served_before = stored_on(&stream, subjects::BOOT_SERVED).await?;
    let spacing = Duration::from_secs(args.event_window_secs + args.duration_secs + 1);
    let spacing = args.round_spacing_secs.map_or(spacing, Duration::from_secs);
    let mut last_boot_round: Option<Instant> = None;
    let tick = tick_us();
    let mut trivial_runs = Vec::new();
    let mut boot_runs = Vec::new();
    let mut events = Vec::new();
    for round in 1..=args.rounds {
        let baseline = load(&args, &script, &trivial_url, &trivial, tick).await?;
        trivial.check_running()?;
        if let Some(at) = last_boot_round {
            let next = at + spacing;
            tokio::time::sleep_until(next.into()).await;
        }
        last_boot_round = Some(Instant::now());
        let before = stored_on(&stream, subjects::BOOT_SERVED).await?;
        let boot = load(&args, &script, &boot_url, &boot_api, tick).await?;
        let during = stored_on(&stream, subjects::BOOT_SERVED).await? - before;
        boot_api.check_running()?;
        let idle_after = wait_idle(&mut boot_api, Duration::from_secs(300)).await?;
        let total = stored_on(&stream, subjects::BOOT_SERVED).await? - before;
        eprintln!(
            "round {round}: trivial {}; boot-api {}, {} requests, boot.served stored {during} \
             while loaded and {total} in all (idle {:.1} s after)",
            baseline.describe(),
            boot.describe(),
            boot.requests,
            idle_after.as_secs_f64()
        );
        trivial_runs.push(baseline);
        boot_runs.push(boot);
        events.push(Events { during, total });
    }
    let peak_rss = bench::proc_status_kib(boot_api.pid(), "VmHWM")?;
    eprintln!(
        "boot-api after the load: peak RSS {:.0} MiB, RSS now {:.0} MiB",
        mib(peak_rss),
        mib(bench::proc_status_kib(boot_api.pid(), "VmRSS")?)
    );
    let dropped = dropped_events(boot_api.log());
    let served_total = stored_on(&stream, subjects::BOOT_SERVED).await? - served_before;

    let best = |runs: &[WrkRun]| runs.iter().map(|r| r.rate).fold(0.0, f64::max);
    let worst_p99 = |runs: &[WrkRun]| runs.iter().map(|r| r.p99_ms).fold(0.0, f64::max);
    let (trivial_rate, boot_rate) = (best(&trivial_runs), best(&boot_runs));
    let (trivial_p99, boot_p99) = (worst_p99(&trivial_runs), worst_p99(&boot_runs));
    let ratio = boot_rate / trivial_rate;
    let during_min = events.iter().map(|e| e.during).min().unwrap_or(0);
    let mut per_round = String::new();
    for (i, e) in events.iter().enumerate() {
        let _ = write!(
            per_round,
            "{}{} / {}",
            if i == 0 { "" } else { ", " },
            e.during,
            e.total
        );
    }
    eprintln!(
        "boot.served stored per boot-api round (while loaded / in all): {per_round}; {served_total} in the whole run; boot-api dropped {dropped} events"
    );
    if during_min == 0 {
        eprintln!("warning: a boot-api round stored no boot.served event while it was loaded");
    }
    println!(
        "| machines | wrk threads / connections | trivial axum handler (req/s) | boot-api (req/s) | boot-api ÷ trivial | p99 trivial (ms) | p99 boot-api (ms) | boot.served stored (whole run) | catch-up (s) | boot-api peak RSS (MiB): caught up / after load |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} / {} | {trivial_rate:.0} | {boot_rate:.0} | {ratio:.3} | {trivial_p99:.2} | {boot_p99:.2} | {served_total} | {:.1} | {:.0} / {:.0} |",
        args.machines,
        args.threads,
        args.connections,
        catch_up.as_secs_f64(),
        mib(rss_after_catch_up),
        mib(peak_rss)
    );
    if let Some(projector) = &projector {
        println!();
        println!("| inventory-projector, same stream | catch-up (s) | peak RSS caught up (MiB) | after queries (MiB) | replay (s) | after replay (MiB) |");
        println!("|---|---|---|---|---|---|");
        println!(
            "| {} machines, {} events | {:.1} | {:.0} | {:.0} | {:.1} | {:.0} |",
            args.machines,
            projector.events,
            projector.catch_up.as_secs_f64(),
            mib(projector.rss_caught_up),
            mib(projector.rss_queried),
            projector.replay.as_secs_f64(),
            mib(projector.rss_replayed),
        );
        bench::summary_row(
            "projector memory",
            &format!("{} machines", args.machines),
            &format!(
                "peak RSS {:.0} MiB (caught up {:.0}, after a replay {:.0})",
                mib(projector.rss_replayed),
                mib(projector.rss_caught_up),
                mib(projector.rss_replayed)
            ),
            "≤ 150 MB",
            bench::verdict(projector.rss_replayed as f64 * 1024.0 <= 150e6),
        );
    }
    // The goal counts boot events in: it is judged only if the best boot-api round stored
    // some while it was loaded.
    let best_round = boot_runs
        .iter()
        .zip(&events)
        .max_by(|a, b| a.0.rate.total_cmp(&b.0.rate))
        .map_or(0, |(_, e)| e.during);
    let verdict = if best_round == 0 {
        "not judged: the fastest boot-api round stored no boot event while loaded"
    } else if ratio >= 0.7 && boot_p99 < 5.0 {
        "met"
    } else {
        "NOT met"
    };
    println!(
        "\ngoal (boot-api ÷ trivial ≥ 0.7 and boot-api p99 < 5 ms, boot events included): {verdict}"
    );
    bench::summary_row(
        "boot",
        &format!("{} machines", args.machines),
        &format!(
            "boot-api ÷ trivial = {ratio:.3}, p99 {boot_p99:.2} ms, peak RSS {:.0} MiB",
            mib(peak_rss)
        ),
        "≥ 0.7, p99 < 5 ms",
        verdict,
    );
    bench::summary_row(
        "boot-api memory",
        &format!("{} machines", args.machines),
        &format!(
            "peak RSS {:.0} MiB (caught up {:.0})",
            mib(peak_rss),
            mib(rss_after_catch_up)
        ),
        "≤ 150 MB",
        bench::verdict(peak_rss as f64 * 1024.0 <= 150e6),
    );

    drop(trivial);
    drop(boot_api);
    if args.keep {
        let kept = work.keep();
        eprintln!("kept {}", kept.display());
    }
    Ok(())
}
