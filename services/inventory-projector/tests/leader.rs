//! The projector on a three-node cluster when the node holding its ordered consumer dies
//! while the projector's own connection, to another node, survives: it follows on within
//! seconds, not after the consumer's missed heartbeats (two of async-nats' 15 s).

mod common;

use std::process::Child;
use std::time::Duration;

use async_nats::jetstream;
use test_harness::nats::NatsCluster;
use tokio::time::Instant;

/// The projector process, killed when dropped: a failing test leaves none behind.
struct Projector(Child);

impl Drop for Projector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_projector(url: &str, database: &std::path::Path) -> Projector {
    Projector(common::start_projector(url, database))
}

/// The projector's last applied sequence once it reaches `at_least`, or the test fails
/// after `within`.
async fn applied_within(client: &async_nats::Client, at_least: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let status = common::status(client).await;
        if status.as_ref().is_some_and(|s| s.last_sequence >= at_least) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the projector is at {status:?} {within:?} on, not at {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stream_leader(stream: &mut jetstream::stream::Stream) -> Option<String> {
    stream.info().await.ok()?.cluster.clone()?.leader
}

/// The node holding the stream's newest consumer: the projector's, when it is the only
/// client reading.
async fn newest_consumer_node(stream: &jetstream::stream::Stream) -> Option<String> {
    use futures::StreamExt;
    let mut consumers = stream.consumers();
    let mut newest: Option<jetstream::consumer::Info> = None;
    while let Some(Ok(info)) = consumers.next().await {
        if newest.as_ref().is_none_or(|n| info.created > n.created) {
            newest = Some(info);
        }
    }
    newest?.cluster?.leader
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_follows_on_within_seconds_when_its_consumers_node_dies() {
    let mut cluster = NatsCluster::start(3);
    let client = metal_core::jetstream::connect(&cluster.urls(), "test")
        .await
        .unwrap();
    let js = jetstream::new(client.clone());
    let mut stream = test_harness::stream::create_replicated(&js, 3).await;
    let all = common::onboardings(20, 0x31, "ProLiant DL325 Gen10 Plus", "AMD EPYC 7302P");
    let (before, after) = all.split_at(all.len() / 2);
    common::publish(js.clone(), before.to_vec()).await;

    // The projector connects to one node; its consumer may land on any: start it again on
    // the next node until they differ (on the same node, the reconnection re-subscribes).
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    let (mut connected, mut attempts) = (0, 0);
    let (projector, consumer_node) = loop {
        let url = cluster.nodes[connected].url();
        let projector = start_projector(&url, &database);
        applied_within(&client, before.len() as u64, Duration::from_secs(60)).await;
        let node = newest_consumer_node(&stream)
            .await
            .expect("the projector's consumer");
        if node != format!("n{connected}") {
            break (projector, node);
        }
        drop(projector);
        // Each lands on one of the three nodes, on the projector's own a third of the time.
        attempts += 1;
        assert!(
            attempts < 12,
            "every consumer landed on its projector's node"
        );
        connected = (connected + 1) % 3;
    };

    cluster.node(&consumer_node).kill();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let leader = stream_leader(&mut stream).await;
        if leader.is_some_and(|leader| leader != consumer_node) {
            break;
        }
        assert!(Instant::now() < deadline, "the stream has no leader");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    common::publish(js.clone(), after.to_vec()).await;
    // A cluster check every 3 s and a re-subscription: well inside the 30 s the missed
    // heartbeats would take.
    applied_within(&client, all.len() as u64, Duration::from_secs(15)).await;
    drop(projector);
}
