//! The projector binary against a real nats-server: killed with SIGKILL mid-stream and
//! restarted, with a nats-server restart in between, it applies every event exactly once
//! (its file equals a projection built from the stream alone).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use metal_core::jetstream::{ensure_stream, StoredMessage};
use metal_core::query::Status;
use metal_core::subjects;
use metal_projection::fixtures;
use metal_projection::Projection;
use test_harness::nats::NatsServer;

const MACHINES: u64 = 1500;

fn start_projector(server: &NatsServer, database: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_inventory-projector"))
        .arg("--nats-url")
        .arg(server.url())
        .arg("--database")
        .arg(database)
        .env_remove("METAL_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start inventory-projector")
}

fn messages() -> Vec<StoredMessage> {
    (0..MACHINES)
        .flat_map(|index| {
            let bmc = format!("02:4d:00:02:{:02x}:{:02x}", index / 256, index % 256);
            let host = format!("52:54:00:02:{:02x}:{:02x}", index / 256, index % 256);
            let inventory = fixtures::inventory(
                "ProLiant DL325 Gen10 Plus",
                "AMD EPYC 7302P 16-Core Processor",
                &[&host],
            );
            fixtures::onboarding(1 + 3 * index, &bmc, inventory)
        })
        .collect()
}

async fn publish(js: &async_nats::jetstream::Context, batch: &[StoredMessage]) {
    for message in batch {
        let mut headers = HeaderMap::new();
        if let Some(id) = &message.msg_id {
            headers.insert(NATS_MESSAGE_ID, id.as_str());
        }
        // Await each PubAck: sequences must match the fixtures' (1, 2, 3, ...).
        js.publish_with_headers(message.subject.clone(), headers, message.payload.clone())
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

async fn status(client: &async_nats::Client) -> Option<Status> {
    let reply = tokio::time::timeout(
        Duration::from_secs(2),
        client.request(subjects::QUERY_STATUS, "{}".into()),
    )
    .await
    .ok()?
    .ok()?;
    serde_json::from_slice(&reply.payload).ok()
}

async fn wait_for_sequence(client: &async_nats::Client, at_least: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = status(client).await {
            if status.last_sequence >= at_least {
                return status.last_sequence;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "projector never reached sequence {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_restarted_projector_applies_every_event_exactly_once() {
    let mut server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    let all = messages();
    let total = all.len() as u64;
    let (first, rest) = all.split_at(all.len() / 2);
    let (second, third) = rest.split_at(rest.len() / 2);

    let client = server.connect().await;
    let js = async_nats::jetstream::new(client.clone());
    ensure_stream(&js).await.unwrap();

    let mut projector = start_projector(&server, &database);
    publish(&js, first).await;
    // Kill it as soon as it has applied something: most of the first half is still to come.
    let seen = wait_for_sequence(&client, 1).await;
    projector.kill().unwrap();
    projector.wait().unwrap();
    publish(&js, second).await;

    // The server goes down and comes back (same port, same store) under a running projector.
    let mut projector = start_projector(&server, &database);
    let resumed = wait_for_sequence(&client, seen).await;
    server.restart();
    let client = server.connect().await;
    let js = async_nats::jetstream::new(client.clone());
    publish(&js, third).await;
    let reached = wait_for_sequence(&client, total).await;
    assert_eq!(reached, total, "applied past the end of the stream");
    eprintln!("killed at sequence {seen}, resumed at {resumed}, reached {reached} of {total}");

    projector.kill().unwrap();
    projector.wait().unwrap();

    // Compare with a projection built from the stream alone.
    let stored = test_harness::stream::read_all(&client).await;
    assert_eq!(
        stored.len() as u64,
        total,
        "the stream lost or duplicated messages"
    );
    let mut fresh = Projection::open_in_memory().unwrap();
    for message in &stored {
        fresh.apply(message).unwrap();
    }
    let survivor = Projection::open(&database).unwrap();
    assert_eq!(survivor.last_sequence().unwrap(), total);
    let expected = fresh.canonical_export().unwrap();
    let got = survivor.canonical_export().unwrap();
    assert!(
        expected == got,
        "the restarted projector's file differs from a replay"
    );
    let timeline_rows = String::from_utf8(got)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"table\":\"events\""))
        .count();
    assert_eq!(
        timeline_rows as u64, total,
        "each event exactly once in the timeline"
    );
}
