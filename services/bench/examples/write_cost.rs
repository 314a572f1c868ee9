//! What replay's writer, its narrowest stage, costs alone: onboardings decoded beforehand
//! (as replay's decoding threads do) applied to a scratch projection in replay's
//! transactions, with no NATS and no decoding on the clock. Each round builds a new file;
//! the last one's rows are then written again at SQLite's floor (`bench::floor`).
//!
//! `cargo run --release -p bench --example write_cost [MACHINES]`: absolute rates of one
//! thread, for comparing changes to `metal_projection::apply` with each other on one
//! machine, not across machines.

use std::time::Instant;

use metal_core::jetstream::StoredMessage;
use metal_projection::{DecodedMessage, Projection};

const ROUNDS: u32 = 5;

fn main() -> anyhow::Result<()> {
    let machines: u64 = match std::env::args().nth(1) {
        Some(text) => text
            .parse()
            .map_err(|e| anyhow::anyhow!("MACHINES {text:?}: {e}"))?,
        None => 20_000,
    };
    let inventory = tokio::runtime::Runtime::new()?.block_on(bench::mockup_inventory())?;
    let now = time::OffsetDateTime::now_utc();
    let mut messages = Vec::with_capacity(machines as usize * 3);
    for index in 0..machines {
        for (subject, payload) in bench::onboarding_messages(index, inventory.clone(), now)? {
            messages.push(StoredMessage {
                sequence: messages.len() as u64 + 1,
                subject,
                msg_id: None,
                payload,
                published: now,
            });
        }
    }
    let events = messages.len();
    println!("{machines} onboardings of the DMTF public-rackmount1 mockup ({events} events), {ROUNDS} rounds");
    println!("| round | events/s | µs an onboarding |");
    println!("|---|---|---|");
    let dir = tempfile::tempdir()?;
    for round in 1..=ROUNDS {
        let chunks: Vec<Vec<DecodedMessage>> = messages
            .chunks(inventory_projector::replay::READ_CHUNK)
            .map(|chunk| chunk.iter().cloned().map(DecodedMessage::new).collect())
            .collect();
        let path = dir.path().join(format!("write-{round}.db"));
        let mut projection = Projection::open_scratch(&path)?;
        let per_transaction = inventory_projector::replay::REPLAY_TRANSACTION
            / inventory_projector::replay::READ_CHUNK;
        let mut applied_chunks = Vec::with_capacity(chunks.len());
        let mut chunks = chunks.into_iter().peekable();
        let started = Instant::now();
        while chunks.peek().is_some() {
            projection.apply_decoded_chunks(chunks.by_ref().take(per_transaction), |chunk| {
                applied_chunks.push(chunk)
            })?;
        }
        let elapsed = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            projection.last_sequence()? == events as u64,
            "applied up to {} of {events}",
            projection.last_sequence()?
        );
        drop(applied_chunks);
        drop(projection);
        println!(
            "| {round} | {:.0} | {:.1} |",
            events as f64 / elapsed,
            elapsed * 1e6 / machines as f64
        );
        if round == ROUNDS {
            floor(&path, &dir.path().join("floor.db"), events, machines)?;
        }
        std::fs::remove_file(&path)?;
    }
    Ok(())
}

/// The SQLite floor of the last round's rows (`bench::floor`), in all and table by table.
fn floor(
    rebuilt: &std::path::Path,
    into: &std::path::Path,
    events: usize,
    machines: u64,
) -> anyhow::Result<()> {
    let floor = bench::floor::sqlite_floor(rebuilt, into)?;
    let seconds = floor.elapsed.as_secs_f64();
    println!(
        "| SQLite floor: its {} rows ({:.1} an onboarding), one cached INSERT a row | {:.0} | {:.1} |",
        floor.rows,
        floor.rows as f64 / machines as f64,
        events as f64 / seconds,
        seconds * 1e6 / machines as f64
    );
    println!();
    print!("{}", floor.table_shares());
    Ok(())
}
