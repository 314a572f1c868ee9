//! A projection behind the stream says so: the query service's status carries the stream's
//! last sequence beside the projection's, and `metal-cli machines`, `show` and `history`
//! add a note on stderr when the inventory that answered had not applied everything.
//! The projector's query service runs here over a projection that follows nothing, in
//! front of a stream holding one onboarding.

use std::process::Command;
use std::sync::Arc;

use metal_core::query::Status;
use metal_core::subjects;
use metal_projection::{fixtures, LiveProjection, Projection};
use test_harness::nats::NatsServer;
use test_harness::stream::publish_stored;

const BMC: &str = "aa:bb:cc:00:00:a1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inventory_behind_the_stream_is_noted_by_metal_cli() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let js = async_nats::jetstream::new(client.clone());
    let stream = metal_core::jetstream::ensure_stream(&js).await.unwrap();
    let onboarding = fixtures::onboarding(
        1,
        BMC,
        fixtures::inventory("DL360", "Intel Xeon", &["52:54:00:00:00:a1"]),
    );
    // The projection has the first event only; the stream has all three.
    let mut projection = Projection::open_in_memory().unwrap();
    projection.apply(&onboarding[0]).unwrap();
    for message in &onboarding {
        publish_stored(&js, message).await;
    }
    let live = LiveProjection::new(projection).unwrap();
    let context = inventory_projector::service::QueryContext {
        client: nats.connect().await,
        stream,
        live,
        database: std::path::PathBuf::from(":memory:"),
        replay_lock: Arc::new(tokio::sync::Mutex::new(())),
        replay_meter: Default::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(inventory_projector::service::serve(context, async {
        let _ = stopped.await;
    }));

    // The service answers once its endpoints are registered.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let reply = loop {
        match client.request(subjects::QUERY_STATUS, "{}".into()).await {
            Ok(reply) => break reply,
            Err(error) => assert!(tokio::time::Instant::now() < deadline, "{error}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let status: Status = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(status.last_sequence, 1);
    assert_eq!(status.stream_last_sequence, Some(3));
    assert_eq!(status.behind(), Some(2));

    for args in [vec!["machines"], vec!["show", BMC], vec!["history", BMC]] {
        let url = nats.url();
        let output = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_metal-cli"))
                .args(&args)
                .env("NATS_URL", url)
                .env_remove("METAL_CONFIG")
                .output()
                .expect("run metal-cli")
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert!(
            stderr.contains("the inventory is 2 event(s) behind the stream (applied 1 of 3)"),
            "{stderr}"
        );
    }
    let _ = stop.send(());
    service.await.unwrap().unwrap();
}

#[test]
fn an_inventory_that_applied_everything_gets_no_note() {
    let status = |last, end| Status {
        last_sequence: last,
        machines: 1,
        database: String::new(),
        stream_last_sequence: end,
        replay: None,
    };
    assert_eq!(metal_cli::commands::behind_note(&status(3, Some(3))), None);
    assert_eq!(metal_cli::commands::behind_note(&status(3, None)), None);
    assert!(metal_cli::commands::behind_note(&status(3, Some(5))).is_some());
}
