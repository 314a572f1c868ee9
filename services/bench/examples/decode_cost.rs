//! What decoding one scraped inventory costs, each way replay could decode it: the tree every
//! service decodes (`envelope::decode`, then `data_as`), typed straight from the JSON
//! (`envelope::decode_event_as`, what replay's decoding threads do), a scan that keeps
//! nothing (the floor of any decoding), and encoding the stored document again.
//!
//! `cargo run --release -p bench --example decode_cost`: absolute times of one process on
//! one core, for comparing the ways with each other, not across machines.

use std::time::Instant;

use metal_core::envelope::{decode, decode_event_as, StreamPosition};
use metal_core::events::HardwareScraped;
use metal_core::{subjects, Decoded};

const ROUNDS: u32 = 20_000;

fn per_call(what: &str, mut call: impl FnMut()) {
    let started = Instant::now();
    for _ in 0..ROUNDS {
        call();
    }
    let micros = started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS);
    println!("| {what} | {micros:.1} |");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let inventory = bench::mockup_inventory().await?;
    let now = time::OffsetDateTime::now_utc();
    let [_, _, (_, payload)] = bench::onboarding_messages(1, inventory.clone(), now)?;
    let position = StreamPosition {
        stream: subjects::STREAM,
        sequence: 3,
        published: now,
    };

    println!("one `machine.hardware.scraped` of the DMTF public-rackmount1 mockup, {} bytes, {ROUNDS} times", payload.len());
    println!("| way | µs a message |");
    println!("|---|---|");
    per_call("tree: `decode`, then `data_as`", || {
        if let Decoded::Event(envelope) =
            decode(subjects::HARDWARE_SCRAPED, None, &payload, position)
        {
            std::hint::black_box(envelope.data_as::<HardwareScraped>().ok());
        }
    });
    per_call("typed: `decode_event_as`", || {
        std::hint::black_box(decode_event_as::<HardwareScraped>(
            subjects::HARDWARE_SCRAPED,
            &payload,
        ));
    });
    per_call("scan only, nothing kept", || {
        std::hint::black_box(serde_json::from_slice::<serde::de::IgnoredAny>(&payload).ok());
    });
    per_call("encoding the stored document", || {
        std::hint::black_box(serde_json::to_string(&inventory).ok());
    });
    Ok(())
}
