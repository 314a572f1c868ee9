//! Replay while events keep arriving: the projector keeps answering, the rebuilt file is
//! identical to the one it replaces, and following goes on from the swap.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metal_core::config::ProjectorConfig;
use metal_core::jetstream::ensure_stream;
use metal_core::query::ReplayReport;
use metal_core::subjects;
use metal_projection::Projection;
use test_harness::nats::NatsServer;

const MACHINES: u64 = 1200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_under_load_is_identical_and_the_projector_keeps_serving() {
    let server = NatsServer::start();
    let client = server.connect().await;
    let js = async_nats::jetstream::new(client.clone());
    ensure_stream(&js).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = ProjectorConfig {
        database: dir.path().join("inventory.db"),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let projector = tokio::spawn({
        let client = server.connect().await;
        async move {
            inventory_projector::run(&config, client, async {
                let _ = stopped.await;
            })
            .await
        }
    });

    let all = common::onboardings(MACHINES, 0x03, "Contoso 3500", "Intel Xeon 7xxx");
    let total = all.len() as u64;
    let (before, during) = all.split_at(all.len() / 3);
    common::publish(js.clone(), before.to_vec()).await;

    // Publishing goes on, and a watcher keeps asking for status, all through the replay.
    let publisher = tokio::spawn(common::publish(js.clone(), during.to_vec()));
    let answered = Arc::new(AtomicU64::new(0));
    let (watch_stop, mut watch_stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn({
        let client = client.clone();
        let answered = answered.clone();
        async move {
            loop {
                tokio::select! {
                    _ = &mut watch_stopped => return,
                    reply = common::status(&client) => {
                        if reply.is_some() {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let reply = loop {
        match client.request(subjects::QUERY_REPLAY, "{}".into()).await {
            Ok(reply) => break reply,
            // The service may still be starting up.
            Err(error) if error.kind() == async_nats::RequestErrorKind::NoResponders => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(error) => panic!("replay request failed: {error}"),
        }
    };
    let _ = watch_stop.send(());
    watcher.await.unwrap();
    let report: ReplayReport = serde_json::from_slice(&reply.payload).unwrap_or_else(|e| {
        panic!(
            "replay reply {:?}: {e}",
            String::from_utf8_lossy(&reply.payload)
        )
    });
    assert!(report.identical, "{report:?}");
    assert!(report.last_sequence >= before.len() as u64, "{report:?}");
    assert!(
        answered.load(Ordering::Relaxed) > 0,
        "no status answered during the replay"
    );
    publisher.await.unwrap();

    // Following goes on from the swapped-in file to the end of the stream.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while common::status(&client).await.map(|s| s.last_sequence) != Some(total) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "projector stopped following after the swap"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    projector.await.unwrap().unwrap();

    let mut fresh = Projection::open_in_memory().unwrap();
    for message in test_harness::stream::read_all(&client).await {
        fresh.apply(&message).unwrap();
    }
    let live = Projection::open(&dir.path().join("inventory.db")).unwrap();
    assert!(
        live.canonical_export().unwrap() == fresh.canonical_export().unwrap(),
        "the live file after replay and more events differs from a projection of the log"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|name| !name.starts_with("inventory.db"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "replay left files behind: {leftovers:?}"
    );
}
