//! The locator against a real nats-server: bad input on the public entry point, and
//! redelivery after a replica dies between publishing and acking.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer;
use metal_core::config::{Config, StaticBmc};
use metal_core::jetstream::{ensure_stream, publish_event, DurableConsumer};
use metal_core::responder::{self, Handler, Input, Outcome};
use metal_core::{subjects, Mac};
use test_harness::nats::NatsServer;
use test_harness::stream::wait_for_events;
use tokio::sync::oneshot;

use common::spawn_locator;

fn config_with(bmc: &str) -> Config {
    let mut config = Config::default();
    config.locator.static_bmcs.push(StaticBmc {
        bmc_mac: Mac::parse_device(bmc).unwrap(),
        address: "http://127.0.0.1:9".into(),
    });
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_rejected_and_the_consumer_moves_on() {
    let server = NatsServer::start();
    let client = server.connect().await;
    let _stop = spawn_locator(config_with("52:54:00:00:00:aa"), client.clone());
    // Core publishes to a subject no stream holds yet would be dropped.
    ensure_stream(&async_nats::jetstream::new(client.clone()))
        .await
        .unwrap();

    let big = vec![b'a'; 10 * 1024 * 1024];
    let table: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", b"".to_vec(), "empty"),
        ("5-byte MAC", b"52:54:00:00:00".to_vec(), "not a MAC"),
        ("multicast MAC", b"01:00:5e:00:00:01".to_vec(), "multicast"),
        ("10 MB body", big, "at most 4096 bytes"),
        ("invalid UTF-8", vec![0xc3, 0x28, 0xff], "UTF-8"),
        (
            "JSON of the wrong shape",
            br#"{"host":"x","bmc_mac":3}"#.to_vec(),
            "JSON request",
        ),
        (
            "JSON array",
            br#"["52:54:00:00:00:aa"]"#.to_vec(),
            "not a MAC",
        ),
        (
            "emoji and control characters",
            "😀\u{7}".repeat(200).into_bytes(),
            "at most 32 characters",
        ),
    ];
    for (_, payload, _) in &table {
        // A plain core publish with no headers: exactly what `nats pub` sends.
        client
            .publish(subjects::ONBOARD_REQUESTED, payload.clone().into())
            .await
            .unwrap();
    }
    client
        .publish(subjects::ONBOARD_REQUESTED, "52-54-00-00-00-AA".into())
        .await
        .unwrap();
    client.flush().await.unwrap();

    let events = wait_for_events(
        &client,
        Duration::from_secs(30),
        "rejections and one location",
        |events| {
            events
                .iter()
                .filter(|e| e.event_type == subjects::ONBOARD_REJECTED)
                .count()
                == table.len()
                && events.iter().any(|e| e.event_type == subjects::BMC_LOCATED)
        },
    )
    .await;
    let mut rejections: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == subjects::ONBOARD_REJECTED)
        .collect();
    // Inputs are handled concurrently, so answers may be stored in any order; the table's
    // publishes were stored in its order, so their sequences put the answers back in it.
    rejections.sort_by_key(|e| e.data["stream_sequence"].as_u64());
    let mut sequences: Vec<_> = rejections
        .iter()
        .filter_map(|e| e.data["stream_sequence"].as_u64())
        .collect();
    sequences.dedup();
    assert_eq!(sequences.len(), table.len(), "one rejection per input");
    for ((name, payload, reason), event) in table.iter().zip(&rejections) {
        let got = event.data["reason"].as_str().unwrap();
        assert!(
            got.contains(reason),
            "{name}: reason {got:?} lacks {reason:?}"
        );
        assert_eq!(event.data["payload_bytes"], payload.len() as u64, "{name}");
        assert!(
            event.data["payload_excerpt"].as_str().unwrap().len()
                <= metal_core::intake::MAX_EXCERPT_LEN,
            "{name}"
        );
        assert!(event.machine_id.is_none());
    }
    let located = events
        .iter()
        .find(|e| e.event_type == subjects::BMC_LOCATED)
        .unwrap();
    assert_eq!(located.bmc_mac.unwrap().to_string(), "52:54:00:00:00:aa");
    assert_eq!(located.data["redfish_url"], "http://127.0.0.1:9");
}

/// Wraps the real locator: the first time, it publishes the answer itself and then
/// hangs before the loop can ack, as a replica killed at that instant would.
struct DiesAfterPublishing {
    inner: locator::Locator,
    js: async_nats::jetstream::Context,
    died: AtomicBool,
    published: tokio::sync::mpsc::UnboundedSender<()>,
}

impl Handler for DiesAfterPublishing {
    async fn handle(&self, input: Input) -> Outcome {
        let outcome = self.inner.handle(input).await;
        if self.died.swap(true, Ordering::SeqCst) {
            return outcome;
        }
        if let Outcome::Publish(events) = &outcome {
            for event in events {
                publish_event(&self.js, event).await.unwrap();
            }
        }
        let _ = self.published.send(());
        std::future::pending().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_dying_between_publish_and_ack_yields_no_duplicate() {
    let server = NatsServer::start();
    let client = server.connect().await;
    let js = async_nats::jetstream::new(client.clone());
    let stream = ensure_stream(&js).await.unwrap();
    // The locator's own consumer, with a short ack wait so redelivery comes quickly.
    let mut consumer_config = DurableConsumer::Locator.config().unwrap();
    consumer_config.ack_wait = Duration::from_secs(1);
    let consumer: consumer::Consumer<consumer::pull::Config> =
        stream.create_consumer(consumer_config).await.unwrap();

    let config = config_with("52:54:00:00:00:bb");
    let (published_tx, mut published_rx) = tokio::sync::mpsc::unbounded_channel();
    let dying = Arc::new(DiesAfterPublishing {
        inner: locator::Locator::new(&config.locator).unwrap(),
        js: js.clone(),
        died: AtomicBool::new(false),
        published: published_tx,
    });
    let first_replica = tokio::spawn(responder::run(
        js.clone(),
        consumer.clone(),
        dying,
        4,
        std::future::pending(),
    ));

    client
        .publish(subjects::ONBOARD_REQUESTED, "52:54:00:00:00:bb".into())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), published_rx.recv())
        .await
        .expect("first replica published");
    first_replica.abort();

    // A second replica picks the unacked request up after the ack wait and answers again.
    let second = Arc::new(locator::Locator::new(&config.locator).unwrap());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let second_replica = tokio::spawn(responder::run(
        js.clone(),
        consumer.clone(),
        second,
        4,
        async {
            let _ = stop_rx.await;
        },
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let info = consumer.clone().info().await.unwrap().clone();
        if info.num_ack_pending == 0
            && info.num_pending == 0
            && info.delivered.consumer_sequence >= 2
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "request was never redelivered and acked: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(());
    second_replica.await.unwrap();

    let events = test_harness::stream::read_events(&client).await;
    let located: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == subjects::BMC_LOCATED)
        .collect();
    assert_eq!(located.len(), 1, "exactly one located event: {events:#?}");
}
