//! The consumer loop every responder shares (`metal_core::responder`), against a real
//! nats-server: a poison input never blocks the consumer. One input panics its handler,
//! another keeps asking for a retry; each ends in one `machine.input.abandoned` (schema
//! checked) naming the consumer, its sequence and why, and the 100 valid inputs behind
//! them are all handled, one at a time.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use metal_core::envelope::Decoded;
use metal_core::events::InputAbandoned;
use metal_core::responder::{Handler, Input, Outcome};
use metal_core::subjects;
use test_harness::nats::NatsServer;
use test_harness::stream::wait_for_events;

const PANICS: &str = "aa:bb:cc:00:0f:01";
const RETRIES: &str = "aa:bb:cc:00:0f:02";
const VALID: usize = 100;
const MAX_DELIVER: i64 = 3;

/// Panics on one MAC, asks for a retry on another every time, handles the rest.
#[derive(Default)]
struct Poisoned {
    handled: Mutex<BTreeSet<u64>>,
}

impl Handler for Poisoned {
    async fn handle(&self, input: Input) -> Outcome {
        let Decoded::Event(event) = &input.decoded else {
            panic!(
                "the test publishes only onboarding requests: {:?}",
                input.decoded
            )
        };
        match event.bmc_mac.map(|mac| mac.to_string()).as_deref() {
            Some(PANICS) => panic!("poison input at sequence {}", input.sequence),
            Some(RETRIES) => Outcome::Retry {
                reason: "the BMC is still busy".to_string(),
                delay: Duration::from_millis(50),
            },
            _ => {
                self.handled.lock().unwrap().insert(input.sequence);
                Outcome::Publish(Vec::new())
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_inputs_are_dead_lettered_and_the_valid_ones_behind_them_handled() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let js = async_nats::jetstream::new(client.clone());
    let stream = metal_core::jetstream::ensure_stream(&js).await.unwrap();
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("poison-test".to_string()),
            filter_subject: subjects::ONBOARD_REQUESTED.to_string(),
            ack_wait: Duration::from_secs(5),
            max_deliver: MAX_DELIVER,
            ..Default::default()
        })
        .await
        .unwrap();

    let mut sequences = Vec::new();
    let macs = [PANICS.to_string(), RETRIES.to_string()]
        .into_iter()
        .chain((0..VALID).map(|i| format!("aa:bb:cc:00:10:{i:02x}")));
    for mac in macs {
        let ack = js
            .publish(subjects::ONBOARD_REQUESTED, mac.into())
            .await
            .unwrap()
            .await
            .unwrap();
        sequences.push(ack.sequence);
    }
    let (panicked_at, retried_at) = (sequences[0], sequences[1]);

    let handler = Arc::new(Poisoned::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = {
        let js = js.clone();
        let handler = Arc::clone(&handler);
        // One input at a time: the poison is in the way of everything behind it.
        tokio::spawn(async move {
            metal_core::responder::run(js, consumer, handler, 1, async {
                let _ = stopped.await;
            })
            .await
        })
    };

    let letters = |events: &[metal_core::Envelope]| -> Vec<InputAbandoned> {
        events
            .iter()
            .filter(|e| e.event_type == subjects::INPUT_ABANDONED)
            .map(|e| e.data_as().unwrap())
            .collect()
    };
    let events = wait_for_events(
        &client,
        Duration::from_secs(60),
        "two dead letters",
        |events| letters(events).len() >= 2,
    )
    .await;
    let mut letters = letters(&events);
    letters.sort_by_key(|letter| letter.stream_sequence);
    assert_eq!(letters.len(), 2, "one dead letter per poison input");
    let (panicked, retried) = (&letters[0], &letters[1]);
    assert_eq!(panicked.consumer, "poison-test");
    assert_eq!(panicked.subject, subjects::ONBOARD_REQUESTED);
    assert_eq!(panicked.stream_sequence, panicked_at);
    assert_eq!(panicked.attempts, 1, "a panic is not tried again");
    assert_eq!(
        panicked.reason,
        format!("the handler panicked: poison input at sequence {panicked_at}")
    );
    assert_eq!(retried.stream_sequence, retried_at);
    assert_eq!(
        retried.attempts, MAX_DELIVER as u64,
        "every delivery was tried"
    );
    assert_eq!(
        retried.reason,
        "still failing at the last delivery: the BMC is still busy"
    );
    // The dead letter of an event answers it: same machine and correlation.
    let letter = events
        .iter()
        .find(|e| {
            e.event_type == subjects::INPUT_ABANDONED
                && e.bmc_mac.map(|m| m.to_string()).as_deref() == Some(PANICS)
        })
        .expect("the panic's dead letter names its machine");
    let request = events
        .iter()
        .find(|e| Some(e.event_id) == letter.causation_id)
        .expect("it is caused by the request");
    assert_eq!(letter.correlation_id, request.correlation_id);

    // Every valid input was handled, and nothing is left pending or unacked.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let handled = handler.handled.lock().unwrap().len();
        let info = stream.consumer_info("poison-test").await.unwrap();
        if handled == VALID && info.num_pending == 0 && info.num_ack_pending == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{handled} of {VALID} valid inputs handled; {} pending, {} unacked",
            info.num_pending,
            info.num_ack_pending
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expected: BTreeSet<u64> = sequences[2..].iter().copied().collect();
    assert_eq!(*handler.handled.lock().unwrap(), expected);
    let _ = stop.send(());
    running.await.unwrap();
}
