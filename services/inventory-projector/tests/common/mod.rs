//! What the projector's NATS tests share: a log of onboardings, publishing it with the
//! fixtures' sequences, starting the projector binary, and asking the query service for
//! status.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use metal_core::jetstream::StoredMessage;
use metal_core::query::Status;
use metal_core::subjects;
use metal_projection::fixtures;

/// `machines` whole onboardings (three events each) from sequence 1; `tag` keeps the
/// MACs of one test apart from another's.
pub fn onboardings(
    machines: u64,
    tag: u8,
    system_model: &str,
    cpu_model: &str,
) -> Vec<StoredMessage> {
    (0..machines)
        .flat_map(|index| {
            let bmc = format!("02:4d:00:{tag:02x}:{:02x}:{:02x}", index / 256, index % 256);
            let host = format!("52:54:00:{tag:02x}:{:02x}:{:02x}", index / 256, index % 256);
            let inventory = fixtures::inventory(system_model, cpu_model, &[&host]);
            fixtures::onboarding(1 + 3 * index, &bmc, inventory)
        })
        .collect()
}

/// Publishes in order, awaiting each PubAck, so stream sequences match the fixtures' (1, 2, 3, ...).
pub async fn publish(js: async_nats::jetstream::Context, batch: Vec<StoredMessage>) {
    for message in batch {
        let mut headers = HeaderMap::new();
        if let Some(id) = &message.msg_id {
            headers.insert(NATS_MESSAGE_ID, id.as_str());
        }
        js.publish_with_headers(message.subject.clone(), headers, message.payload.clone())
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

/// The projector's status, or `None` when it does not answer within 2 s.
pub async fn status(client: &async_nats::Client) -> Option<Status> {
    let reply = tokio::time::timeout(
        Duration::from_secs(2),
        client.request(subjects::QUERY_STATUS, "{}".into()),
    )
    .await
    .ok()?
    .ok()?;
    serde_json::from_slice(&reply.payload).ok()
}

/// Starts the inventory-projector binary on `url` with its projection at `database`.
#[allow(dead_code)] // Not every test binary starts the process.
pub fn start_projector(url: &str, database: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_inventory-projector"))
        .arg("--nats-url")
        .arg(url)
        .arg("--database")
        .arg(database)
        .env_remove("METAL_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start inventory-projector")
}
