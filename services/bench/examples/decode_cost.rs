//! What decoding one scraped inventory costs, each way replay could decode it: the tree every
//! service decodes (`envelope::decode`, then `data_as`), typed straight from the JSON
//! (`envelope::decode_event_as`, what replay's decoding threads do), a scan that keeps
//! nothing (the floor of any decoding), and encoding the stored document again.
//!
//! `cargo run --release -p bench --example decode_cost`: absolute times of one process on
//! one core, for comparing the ways with each other, not across machines.

use std::time::Instant;

use metal_core::envelope::{decode, decode_event_as, StreamPosition};
use metal_core::events::{BmcLocated, HardwareScraped};
use metal_core::{subjects, Decoded, Envelope, Mac, MachineId};

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
    let mockup = test_harness::paths::redfish_mockups_dir().join("dmtf-public-rackmount1");
    let inventory = redfish_scraper::walk::walk(
        &redfish_scraper::source::MockupDirSource::new(&mockup),
        redfish_scraper::walk::WalkLimits::default(),
    )
    .await?
    .inventory;
    let now = time::OffsetDateTime::now_utc();
    let bmc = Mac::from_bytes([0x02, 0x4d, 0, 0, 0, 1]);
    let request_id = uuid::Uuid::from_u64_pair(0x6465_636f_6465_0000, 1);
    let request = Envelope {
        event_id: request_id,
        event_type: subjects::ONBOARD_REQUESTED.into(),
        machine_id: Some(MachineId::from_bmc_mac(&bmc)),
        bmc_mac: Some(bmc),
        time: now,
        correlation_id: request_id,
        causation_id: None,
        data: serde_json::Value::Null,
    };
    let located = BmcLocated {
        bmc_ip: Some("127.0.0.1".into()),
        redfish_url: "http://127.0.0.1:8000".into(),
        source: "static".into(),
        ..Default::default()
    };
    let located = Envelope::answering(&request, subjects::BMC_LOCATED, &located, now)?;
    let scraped = HardwareScraped {
        redfish_url: "http://127.0.0.1:8000".into(),
        inventory,
        raw: None,
    };
    let payload =
        Envelope::answering(&located, subjects::HARDWARE_SCRAPED, &scraped, now)?.to_json_bytes();
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
        std::hint::black_box(serde_json::to_string(&scraped.inventory).ok());
    });
    Ok(())
}
