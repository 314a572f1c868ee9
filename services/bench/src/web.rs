//! web-bench: server time of web's fleet and machine answers (JSON API and HTML pages) over
//! a projection of 100,000 inventoried machines, as a ratio of a trivial axum handler's
//! through the same in-process path, in the same run.
//!
//! No NATS: the projection is built directly from `metal_projection::fixtures` with
//! `Projection::apply_batch` into a scratch file in a temp dir, closed, and reopened in
//! WAL mode as web opens it. Each request goes through `tower::ServiceExt::oneshot` on
//! `web::app` (the API and pages routers merged, as `web::run` serves them), body read
//! to the end; the baseline is a one-route axum router answering a constant the same way.

use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use clap::Parser;
use metal_core::events::TagsChanged;
use metal_core::jetstream::StoredMessage;
use metal_core::{subjects, Mac, MachineId};
use metal_projection::{fixtures, LiveProjection, Projection};
use tower::ServiceExt;

/// web's answers ÷ a trivial axum handler's, in-process, same run.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Inventoried machines in the projection (one host NIC each; MACs from three bytes
    /// of the index).
    #[arg(long, default_value_t = 100_000)]
    machines: u64,
    /// Requests per route, one at a time.
    #[arg(long, default_value_t = 200)]
    requests: u32,
    /// Requests for the two text searches that read the whole fleet (a MAC that one
    /// machine has, text none has): each reads every inventory document.
    #[arg(long, default_value_t = 20)]
    scan_requests: u32,
    /// Keep the work directory (the projection file).
    #[arg(long)]
    keep: bool,
}

/// The goal of the issue: the first page of the fleet and a machine's page within this.
const GOAL: Duration = Duration::from_millis(200);
/// Messages per `apply_batch` transaction while building.
const BATCH: usize = 20_000;

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

const MODELS: [(&str, &str); 4] = [
    (
        "ProLiant DL325 Gen10 Plus",
        "AMD EPYC 7302P 16-Core Processor",
    ),
    ("ProLiant DL360 Gen10", "Intel(R) Xeon(R) Gold 6338"),
    ("PowerEdge R640", "Intel(R) Xeon(R) Silver 4214"),
    ("PowerEdge R6525", "AMD EPYC 7763 64-Core Processor"),
];

/// One machine's messages from `sequence` on: an onboarding (request, located, scraped),
/// then for every third machine a provisioning (requested, profile assigned: G1 or G2),
/// and for every tenth a tag change (`rack=r<index mod 50>`, `role=db` on every twentieth).
fn machine_messages(index: u64, sequence: &mut u64) -> Vec<StoredMessage> {
    let (model, cpu) = MODELS[(index % 4) as usize];
    let bmc = bmc_mac(index);
    let mut messages = fixtures::onboarding(
        *sequence,
        &bmc,
        fixtures::inventory(model, cpu, &[&host_mac(index)]),
    );
    *sequence += 3;
    if index.is_multiple_of(3) {
        let profile = if cpu.starts_with("AMD") { "G2" } else { "G1" };
        let provision = fixtures::provision(*sequence, &bmc, Some(profile));
        messages.push(fixtures::stored(*sequence, &provision));
        messages.push(fixtures::stored(
            *sequence + 1,
            &fixtures::assigned(&provision, profile),
        ));
        *sequence += 2;
    }
    if index.is_multiple_of(10) {
        let cause = fixtures::provision(*sequence, &bmc, None);
        let mut set = std::collections::BTreeMap::new();
        set.insert("rack".to_string(), format!("r{}", index % 50));
        if index.is_multiple_of(20) {
            set.insert("role".to_string(), "db".to_string());
        }
        let tags = fixtures::about_provisioning(
            &cause,
            subjects::TAGS_CHANGED,
            &TagsChanged {
                set,
                removed: Vec::new(),
                requested_by: None,
            },
            1,
        );
        messages.push(fixtures::stored(*sequence, &tags));
        *sequence += 1;
    }
    messages
}

/// Builds the projection file and returns the last sequence applied.
fn build(path: &std::path::Path, machines: u64) -> anyhow::Result<u64> {
    let mut projection = Projection::open_scratch(path).context("opening scratch projection")?;
    let mut sequence = 1;
    let mut batch = Vec::with_capacity(BATCH + 8);
    for index in 0..machines {
        batch.extend(machine_messages(index, &mut sequence));
        if batch.len() >= BATCH {
            projection.apply_batch(&batch).context("applying a batch")?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        projection.apply_batch(&batch).context("applying a batch")?;
    }
    let last = projection.last_sequence()?;
    projection.close().context("closing scratch projection")?;
    Ok(last)
}

/// How a measured route's URI is made from the request's number.
type Uri = Box<dyn Fn(u32) -> String>;

/// Latencies of one route, sorted.
struct Timings {
    name: String,
    sorted: Vec<Duration>,
    bytes: usize,
}

impl Timings {
    fn at(&self, fraction: f64) -> Duration {
        let last = self.sorted.len().saturating_sub(1);
        let index = ((last as f64) * fraction).round() as usize;
        self.sorted
            .get(index.min(last))
            .copied()
            .unwrap_or_default()
    }
    fn p50(&self) -> Duration {
        self.at(0.50)
    }
    fn p99(&self) -> Duration {
        self.at(0.99)
    }
    fn max(&self) -> Duration {
        self.sorted.last().copied().unwrap_or_default()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `requests` GETs of `uri(i)` through `router.oneshot`, one at a time, each until its
/// body is read; any status but 200 fails the run.
async fn measure(
    name: &str,
    router: &axum::Router,
    requests: u32,
    uri: impl Fn(u32) -> String,
) -> anyhow::Result<Timings> {
    let mut sorted = Vec::with_capacity(requests as usize);
    let mut bytes = 0;
    for i in 0..requests {
        let uri = uri(i);
        let request = Request::get(&uri).body(Body::empty())?;
        let started = Instant::now();
        let response = router.clone().oneshot(request).await?;
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
        sorted.push(started.elapsed());
        if status != StatusCode::OK {
            anyhow::bail!(
                "{name}: GET {uri} answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        bytes = body.len();
    }
    sorted.sort();
    Ok(Timings {
        name: name.to_string(),
        sorted,
        bytes,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.machines >= 1, "--machines must be at least 1");
    anyhow::ensure!(args.requests >= 1, "--requests must be at least 1");
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("web.sqlite");
    let started = Instant::now();
    let last = tokio::task::spawn_blocking({
        let path = path.clone();
        let machines = args.machines;
        move || build(&path, machines)
    })
    .await??;
    let built = started.elapsed();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "web-bench: {} machines, {last} events applied in {:.1} s ({:.0} MB)",
        args.machines,
        built.as_secs_f64(),
        size as f64 / 1e6
    );

    let live = LiveProjection::open(path.clone())
        .await
        .context("opening the projection as web does")?;
    let shutdown = metal_core::Shutdown::spawn_from(std::future::pending());
    let app = web::app(live.clone(), shutdown);
    let trivial = axum::Router::new().route(
        "/trivial",
        axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
    );

    let n = args.machines;
    let requests = args.requests;
    // Machines spread over the fleet, so each request reads different pages of the file.
    let pick = move |i: u32| (u64::from(i) * 7919 + 13) % n;
    let id = move |i: u32| MachineId::from_bmc_mac(&Mac::parse_any(&bmc_mac(pick(i))).unwrap());
    let middle = host_mac(n / 2);

    // Warm-up: one pass over a few routes, so the first measured request pays no start-up.
    for uri in ["/trivial"] {
        measure("warm-up", &trivial, 10, |_| uri.to_string()).await?;
    }
    measure("warm-up", &app, 10, |_| "/api/v1/machines".to_string()).await?;

    let mut results = vec![
        measure("baseline: trivial axum handler", &trivial, requests, |_| {
            "/trivial".to_string()
        })
        .await?,
    ];
    let routes: Vec<(&str, Uri)> = vec![
        (
            "GET /api/v1/machines (first page)",
            Box::new(|_| "/api/v1/machines".to_string()),
        ),
        ("GET / (fleet page, HTML)", Box::new(|_| "/".to_string())),
        (
            "GET /api/v1/machines/{id}",
            Box::new(move |i| format!("/api/v1/machines/{}", id(i))),
        ),
        (
            "GET /api/v1/machines/{host MAC}",
            Box::new(move |i| format!("/api/v1/machines/{}", host_mac(pick(i)))),
        ),
        (
            "GET /api/v1/machines/{id}/timeline",
            Box::new(move |i| format!("/api/v1/machines/{}/timeline", id(i))),
        ),
        (
            "GET /machines/{id} (machine page, HTML)",
            Box::new(move |i| format!("/machines/{}", id(i))),
        ),
        (
            "GET /api/v1/machines?state=provisioning",
            Box::new(|_| "/api/v1/machines?state=provisioning".to_string()),
        ),
        (
            "GET /api/v1/machines?profile=G2",
            Box::new(|_| "/api/v1/machines?profile=G2".to_string()),
        ),
        (
            "GET /api/v1/machines?tag=rack=r20&tag=role=db",
            Box::new(|_| "/api/v1/machines?tag=rack%3Dr20&tag=role%3Ddb".to_string()),
        ),
        (
            "GET /api/v1/machines?q=r640",
            Box::new(|_| "/api/v1/machines?q=r640".to_string()),
        ),
        (
            "GET /api/v1/machines?q=<host MAC mid-fleet> (one match)",
            Box::new(move |_| format!("/api/v1/machines?q={middle}")),
        ),
        (
            "GET /api/v1/machines?q=<no match> (whole fleet)",
            Box::new(|_| "/api/v1/machines?q=zz-no-such-text".to_string()),
        ),
    ];
    for (name, uri) in &routes {
        let count = if name.contains("q=<") {
            requests.min(args.scan_requests.max(1))
        } else {
            requests
        };
        results.push(measure(name, &app, count, uri).await?);
    }

    // What the first page cost before the filters moved into SQL: it read every row.
    let mut sorted = Vec::new();
    for _ in 0..args.scan_requests.max(1) {
        let started = Instant::now();
        let listed = live
            .with(|p| p.machines().map(|list| list.machines.len()))
            .await??;
        sorted.push(started.elapsed());
        anyhow::ensure!(listed as u64 == n, "machines() listed {listed}, not {n}");
    }
    sorted.sort();
    results.push(Timings {
        name: "before: Projection::machines() alone (the old first page read it all)".to_string(),
        sorted,
        bytes: 0,
    });

    let baseline = results[0].p50();
    println!();
    println!("| route | requests | bytes | p50 (ms) | p99 (ms) | max (ms) | p50 ÷ baseline p50 |");
    println!("|---|---|---|---|---|---|---|");
    for timings in &results {
        println!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.0} |",
            timings.name,
            timings.sorted.len(),
            timings.bytes,
            ms(timings.p50()),
            ms(timings.p99()),
            ms(timings.max()),
            timings.p50().as_secs_f64() / baseline.as_secs_f64().max(1e-9),
        );
    }
    let goal_routes = [
        "GET /api/v1/machines (first page)",
        "GET / (fleet page, HTML)",
        "GET /api/v1/machines/{id}",
        "GET /machines/{id} (machine page, HTML)",
    ];
    let worst = results
        .iter()
        .filter(|t| goal_routes.contains(&t.name.as_str()))
        .map(Timings::max)
        .max()
        .unwrap_or_default();
    println!();
    println!(
        "goal: first page and machine page < {} ms server time with {} machines: worst max {:.3} ms: {}",
        GOAL.as_millis(),
        args.machines,
        ms(worst),
        if worst < GOAL { "met" } else { "NOT met" }
    );
    bench::summary_row(
        "web",
        &format!("{} machines", args.machines),
        &format!(
            "first page and machine page worst {:.3} ms server time",
            ms(worst)
        ),
        &format!("< {} ms", GOAL.as_millis()),
        bench::verdict(worst < GOAL),
    );
    if args.keep {
        let kept = dir.keep();
        println!("kept {}", kept.display());
    }
    Ok(())
}
