//! replay-bench: how fast replay rebuilds the projection, as a ratio of how fast the same
//! stream can merely be read by a JetStream ordered consumer, both measured in this run.
//!
//! It starts its own nats-server (test harness), fills the stream with realistic
//! onboardings (raw request, `bmc.located`, `hardware.scraped` carrying the DMTF mockup's
//! inventory with per-machine MACs), then alternates raw reads, reads that also decode as
//! replay does but write nothing (replay's ceiling were SQLite free), and replays. Each
//! replay's rows are then inserted again into an empty file as cheaply as SQLite allows
//! (`bench::floor`): the ceiling of any writer that stores those rows.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use metal_core::inventory::Inventory;
use metal_core::jetstream::{ensure_stream, follow_stream, last_sequence};
use metal_core::Mac;

/// Replay benchmark: replay events/s ÷ raw JetStream ordered-read events/s, same stream, same run.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Events to put on the stream (three per onboarded machine).
    #[arg(long, default_value_t = 1_000_002)]
    events: u64,
    /// Rounds of (raw read, replay); the best of each is reported.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
}

fn machine_inventory(template: &Inventory, index: u64) -> Inventory {
    let mut inventory = template.clone();
    let bytes = index.to_be_bytes();
    for (nic_index, nic) in inventory
        .systems
        .iter_mut()
        .flat_map(|s| s.ethernet_interfaces.iter_mut())
        .enumerate()
    {
        nic.mac = Some(Mac::from_bytes([
            0x02,
            0x10 + nic_index as u8,
            bytes[4],
            bytes[5],
            bytes[6],
            bytes[7],
        ]));
    }
    for system in &mut inventory.systems {
        system.serial = Some(format!("BENCH{index:08}"));
    }
    inventory
}

async fn fill(
    js: &async_nats::jetstream::Context,
    machines: u64,
    template: &Inventory,
) -> anyhow::Result<()> {
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let now = time::OffsetDateTime::now_utc();
    for index in 0..machines {
        let messages = bench::onboarding_messages(index, machine_inventory(template, index), now)?;
        for (subject, payload) in messages {
            in_flight.push(js.publish(subject, payload).await?.into_future());
            if in_flight.len() >= 512 {
                if let Some(ack) = in_flight.next().await {
                    ack?;
                }
            }
        }
    }
    while let Some(ack) = in_flight.next().await {
        ack?;
    }
    Ok(())
}

async fn raw_read(
    stream: &async_nats::jetstream::stream::Stream,
    last: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let messages = follow_stream(stream, 1).await?;
    let mut messages = std::pin::pin!(messages);
    let mut count = 0u64;
    while let Some(message) = messages.next().await {
        let message = message?;
        count += 1;
        if message.sequence >= last {
            break;
        }
    }
    anyhow::ensure!(count == last, "read {count} of {last} messages");
    Ok(started.elapsed())
}

/// Reads the stream as replay does and decodes it as replay does, in replay's chunks on the
/// blocking pool as many ahead, but writes nothing: how fast replay could go if SQLite cost
/// nothing.
async fn decode_only(
    stream: &async_nats::jetstream::stream::Stream,
    last: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let messages = follow_stream(stream, 1).await?;
    let decoded = messages
        .ready_chunks(inventory_projector::replay::READ_CHUNK)
        .map(|chunk| {
            tokio::task::spawn_blocking(move || {
                let chunk = chunk.into_iter().collect::<Result<Vec<_>, _>>()?;
                let last_sequence = chunk.last().map_or(0, |m| m.sequence);
                let count = chunk
                    .into_iter()
                    .map(metal_projection::DecodedMessage::new)
                    .count() as u64;
                Ok::<_, metal_core::jetstream::JetStreamError>((count, last_sequence))
            })
        })
        .buffered(inventory_projector::replay::READ_AHEAD);
    let mut decoded = std::pin::pin!(decoded);
    let mut count = 0u64;
    while let Some(chunk) = decoded.next().await {
        let (chunk_count, last_sequence) = chunk??;
        count += chunk_count;
        if last_sequence >= last {
            break;
        }
    }
    anyhow::ensure!(count == last, "decoded {count} of {last} messages");
    Ok(started.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let machines = args.events.div_ceil(3);
    let template = bench::mockup_inventory().await?;

    let server = test_harness::nats::NatsServer::start();
    let client = server.connect().await;
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = ensure_stream(&js).await?;
    eprintln!(
        "filling the stream with {machines} onboardings ({} events)",
        machines * 3
    );
    let started = Instant::now();
    fill(&js, machines, &template).await?;
    let last = last_sequence(&mut stream).await?;
    let info = stream.info().await?;
    eprintln!(
        "stored {last} events, {} MB, in {:.1} s",
        info.state.bytes / 1_000_000,
        started.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir()?;
    let mut best_raw = Duration::MAX;
    let mut best_replay = Duration::MAX;
    let mut best_decode = Duration::MAX;
    let mut best_floor: Option<bench::floor::Floor> = None;
    for round in 1..=args.rounds {
        let raw = raw_read(&stream, last).await?;
        let decode = decode_only(&stream, last).await?;
        let path = dir.path().join(format!("replay-{round}.db"));
        let started = Instant::now();
        let (projection, applied) = inventory_projector::replay::rebuild(
            &stream,
            &path,
            last,
            &inventory_projector::replay::ReplayMeter::default(),
        )
        .await?;
        anyhow::ensure!(applied == last, "replay applied {applied} of {last}");
        anyhow::ensure!(projection.last_sequence()? == last, "replay stopped early");
        // Closing builds the indexes a rebuild defers: part of the replay's cost.
        projection.close()?;
        let replay = started.elapsed();
        let floor_path = dir.path().join(format!("floor-{round}.db"));
        let floor = bench::floor::sqlite_floor(&path, &floor_path)?;
        std::fs::remove_file(&path)?;
        std::fs::remove_file(&floor_path)?;
        eprintln!(
            "round {round}: raw read {:.0} events/s, read and decode {:.0} events/s, replay {:.0} events/s, SQLite floor {:.0} events/s",
            last as f64 / raw.as_secs_f64(),
            last as f64 / decode.as_secs_f64(),
            last as f64 / replay.as_secs_f64(),
            last as f64 / floor.elapsed.as_secs_f64()
        );
        best_raw = best_raw.min(raw);
        best_decode = best_decode.min(decode);
        best_replay = best_replay.min(replay);
        if best_floor
            .as_ref()
            .is_none_or(|best| floor.elapsed < best.elapsed)
        {
            best_floor = Some(floor);
        }
    }
    let Some(floor) = best_floor else {
        anyhow::bail!("no rounds (--rounds 0)");
    };
    let raw_rate = last as f64 / best_raw.as_secs_f64();
    let replay_rate = last as f64 / best_replay.as_secs_f64();
    let decode_rate = last as f64 / best_decode.as_secs_f64();
    let floor_rate = last as f64 / floor.elapsed.as_secs_f64();
    println!(
        "| events | raw ordered read (events/s) | read and decode, no writes (events/s) | replay into SQLite (events/s) | SQLite floor of its rows (events/s) | decode ÷ raw | replay ÷ raw | floor ÷ raw |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {last} | {raw_rate:.0} | {decode_rate:.0} | {replay_rate:.0} | {floor_rate:.0} | {:.3} | {:.3} | {:.3} |",
        decode_rate / raw_rate,
        replay_rate / raw_rate,
        floor_rate / raw_rate
    );
    println!();
    println!(
        "SQLite floor, table by table ({} rows, {:.1} an onboarding):",
        floor.rows,
        floor.rows as f64 / machines as f64
    );
    print!("{}", floor.table_shares());
    let ratio = replay_rate / raw_rate;
    bench::summary_row(
        "replay",
        &format!("{last} events"),
        &format!("replay ÷ raw ordered read = {ratio:.3}"),
        "≥ 0.5",
        bench::verdict(ratio >= 0.5),
    );
    bench::summary_row(
        "replay",
        &format!("{last} events"),
        &format!(
            "SQLite floor of the rebuilt rows ÷ raw ordered read = {:.3}",
            floor_rate / raw_rate
        ),
        "reported: no writer of these rows beats it",
        "—",
    );
    Ok(())
}
