//! boot-bench: boot-api's `GET /v1/boot/<mac>` throughput as a ratio of a trivial axum
//! handler's on the same machine, in the same run, with the same load generator.
//!
//! boot-api serves from a projection of many inventoried machines (built directly with
//! the projection code, no NATS); the baseline route answers a constant boot spec.
//! Both listen on loopback; requests use keep-alive, as Pixiecore's Go client does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::routing::get;
use clap::Parser;
use futures::StreamExt;
use metal_projection::{fixtures, LiveProjection, Projection};

/// boot-api req/s ÷ trivial axum handler req/s, same load, same run.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Inventoried machines in boot-api's projection.
    #[arg(long, default_value_t = 10_000)]
    machines: u64,
    /// Requests per measurement.
    #[arg(long, default_value_t = 40_000)]
    requests: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Rounds of (baseline, boot-api); the best of each is reported.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
}

fn host_mac(index: u64) -> String {
    format!(
        "52:54:00:0b:{:02x}:{:02x}",
        (index / 256) % 256,
        index % 256
    )
}

async fn serve(router: axum::Router) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(format!("http://{address}"))
}

/// Sends `requests` GETs for host MACs of `machines` machines; every answer must be 200.
async fn load(
    base: &str,
    machines: u64,
    requests: u64,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let started = Instant::now();
    let failures = futures::stream::iter(0..requests)
        .map(|n| {
            let url = format!("{base}/v1/boot/{}", host_mac((n * 7919) % machines));
            let client = client.clone();
            async move {
                match client.get(&url).send().await {
                    Ok(response) if response.status() == 200 => {
                        response.bytes().await.is_err() as u64
                    }
                    _ => 1,
                }
            }
        })
        .buffer_unordered(concurrency)
        .fold(0u64, |sum, failed| async move { sum + failed })
        .await;
    anyhow::ensure!(
        failures == 0,
        "{failures} of {requests} requests did not answer 200"
    );
    Ok(started.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.machines <= 65_536,
        "at most 65536 machines (two MAC bytes)"
    );
    let dir = tempfile::tempdir()?;
    let mut projection = Projection::open(&dir.path().join("boot-api.db"))?;
    let messages: Vec<_> = (0..args.machines)
        .flat_map(|index| {
            let bmc = format!(
                "02:4d:00:0b:{:02x}:{:02x}",
                (index / 256) % 256,
                index % 256
            );
            let cpu = if index % 2 == 0 {
                "Intel(R) Xeon(R) Gold 6338"
            } else {
                "AMD EPYC 7302P 16-Core Processor"
            };
            let inventory =
                fixtures::inventory("ProLiant DL325 Gen10 Plus", cpu, &[&host_mac(index)]);
            fixtures::onboarding(1 + 3 * index, &bmc, inventory)
        })
        .collect();
    for chunk in messages.chunks(1024) {
        projection.apply_batch(chunk)?;
    }
    eprintln!(
        "projection of {} machines ({} events) built",
        args.machines,
        messages.len()
    );

    let profiles_path = test_harness::paths::workspace_root().join("profiles/boot-profiles.toml");
    let profiles = boot_api::Profiles::load(&profiles_path)
        .with_context(|| format!("loading {}", profiles_path.display()))?;
    let state = boot_api::AppState {
        live: LiveProjection::new(projection)?,
        profiles: Arc::new(profiles),
    };
    let boot_url = serve(boot_api::app(state)).await?;
    // The baseline answers what boot-api answers, without looking anything up.
    let constant = r#"{"kernel":"http://boot.example.internal/images/g1/vmlinuz","initrd":["http://boot.example.internal/images/g1/initrd.img"],"cmdline":"console=ttyS0,115200 metal.profile=G1","message":"metal boot profile G1"}"#;
    let trivial = axum::Router::new().route(
        "/v1/boot/{mac}",
        get(move || async move { ([("content-type", "application/json")], constant) }),
    );
    let trivial_url = serve(trivial).await?;

    let mut best_trivial = Duration::MAX;
    let mut best_boot = Duration::MAX;
    for round in 1..=args.rounds {
        let trivial = load(&trivial_url, args.machines, args.requests, args.concurrency).await?;
        let boot = load(&boot_url, args.machines, args.requests, args.concurrency).await?;
        eprintln!(
            "round {round}: trivial handler {:.0} req/s, boot-api {:.0} req/s",
            args.requests as f64 / trivial.as_secs_f64(),
            args.requests as f64 / boot.as_secs_f64()
        );
        best_trivial = best_trivial.min(trivial);
        best_boot = best_boot.min(boot);
    }
    let trivial_rate = args.requests as f64 / best_trivial.as_secs_f64();
    let boot_rate = args.requests as f64 / best_boot.as_secs_f64();
    println!("| machines | concurrency | trivial axum handler (req/s) | boot-api (req/s) | boot-api ÷ trivial |");
    println!("|---|---|---|---|---|");
    println!(
        "| {} | {} | {trivial_rate:.0} | {boot_rate:.0} | {:.3} |",
        args.machines,
        args.concurrency,
        boot_rate / trivial_rate
    );
    Ok(())
}
