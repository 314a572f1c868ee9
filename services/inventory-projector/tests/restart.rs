//! The projector binary against a real nats-server: killed with SIGKILL mid-stream and
//! restarted, with a nats-server restart in between, it applies every event exactly once
//! (its file equals a projection built from the stream alone).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use metal_core::jetstream::ensure_stream;
use metal_projection::Projection;
use test_harness::nats::NatsServer;

const MACHINES: u64 = 1500;

async fn wait_for_sequence(client: &async_nats::Client, at_least: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = common::status(client).await {
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
    let all = common::onboardings(
        MACHINES,
        0x02,
        "ProLiant DL325 Gen10 Plus",
        "AMD EPYC 7302P 16-Core Processor",
    );
    let total = all.len() as u64;
    let (first, rest) = all.split_at(all.len() / 2);
    let (second, third) = rest.split_at(rest.len() / 2);

    let client = server.connect().await;
    let js = async_nats::jetstream::new(client.clone());
    ensure_stream(&js).await.unwrap();

    let mut projector = common::start_projector(&server.url(), &database);
    common::publish(js.clone(), first.to_vec()).await;
    // Kill it as soon as it has applied something: most of the first half is still to come.
    let seen = wait_for_sequence(&client, 1).await;
    projector.kill().unwrap();
    projector.wait().unwrap();
    common::publish(js.clone(), second.to_vec()).await;

    // The server goes down and comes back (same port, same store) under a running projector.
    let mut projector = common::start_projector(&server.url(), &database);
    let resumed = wait_for_sequence(&client, seen).await;
    server.restart();
    let client = server.connect().await;
    let js = async_nats::jetstream::new(client.clone());
    common::publish(js.clone(), third.to_vec()).await;
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

/// How long the projector may take to follow again after a nats-server restart. It
/// re-subscribes as soon as its client is connected again; before, it waited for the
/// ordered consumer's missing heartbeats, about 15 s. Generous for a loaded machine.
const FOLLOWS_AGAIN_WITHIN: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_nats_restart_the_projector_follows_again_at_once_and_says_so() {
    let mut server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    let all = common::onboardings(
        2,
        0x03,
        "ProLiant DL325 Gen10 Plus",
        "AMD EPYC 7302P 16-Core Processor",
    );
    let (before, after) = all.split_at(3);
    let client = server.connect().await;
    let js = async_nats::jetstream::new(client.clone());
    ensure_stream(&js).await.unwrap();
    let log = dir.path().join("projector.log");
    let mut projector = Command::new(env!("CARGO_BIN_EXE_inventory-projector"))
        .arg("--nats-url")
        .arg(server.url())
        .arg("--database")
        .arg(&database)
        .env_remove("METAL_CONFIG")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start inventory-projector");
    common::publish(js.clone(), before.to_vec()).await;
    wait_for_sequence(&client, 3).await;

    server.restart();
    let client = server.connect().await;
    let js = async_nats::jetstream::new(client.clone());
    // The next event, stored as soon as the server is back.
    common::publish(js.clone(), after[..1].to_vec()).await;
    let stored = tokio::time::Instant::now();
    wait_for_sequence(&client, 4).await;
    let took = stored.elapsed();
    projector.kill().unwrap();
    projector.wait().unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        took < FOLLOWS_AGAIN_WITHIN,
        "applied {took:?} after it was stored:\n{logged}"
    );
    assert!(logged.contains("lost the connection to NATS"), "{logged}");
    assert!(
        logged.contains("NATS connection regained: following the stream again"),
        "{logged}"
    );
}
