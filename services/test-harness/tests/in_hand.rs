//! The consumer loop every responder shares (`metal_core::responder`) and the ack wait,
//! against a real nats-server: an input that takes longer than the ack wait is kept by
//! progress acks and handled once; a responder that dies mid-input gives it back within
//! one ack wait, to whoever consumes next; and a shutdown finishes the inputs in hand.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, Consumer};
use async_nats::jetstream::{self, stream};
use metal_core::responder::{Handler, Input, Outcome};
use metal_core::subjects;
use test_harness::nats::NatsServer;
use tokio::sync::Notify;
use tokio::time::Instant;

const ACK_WAIT: Duration = Duration::from_secs(1);

/// Takes `work` for every input, and notes each delivery it was given.
struct Slow {
    work: Duration,
    started: Notify,
    deliveries: Mutex<Vec<(u64, u64)>>,
    finished: Mutex<Vec<u64>>,
}

impl Slow {
    fn new(work: Duration) -> Arc<Slow> {
        Arc::new(Slow {
            work,
            started: Notify::new(),
            deliveries: Mutex::new(Vec::new()),
            finished: Mutex::new(Vec::new()),
        })
    }
}

impl Handler for Slow {
    async fn handle(&self, input: Input) -> Outcome {
        self.deliveries
            .lock()
            .unwrap()
            .push((input.sequence, input.delivery_attempt));
        self.started.notify_one();
        tokio::time::sleep(self.work).await;
        self.finished.lock().unwrap().push(input.sequence);
        Outcome::Publish(Vec::new())
    }
}

async fn setup(
    server: &NatsServer,
) -> (jetstream::Context, stream::Stream, Consumer<pull::Config>) {
    let client = server.connect().await;
    let js = jetstream::new(client);
    let stream = metal_core::jetstream::ensure_stream(&js).await.unwrap();
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("in-hand-test".to_string()),
            filter_subject: subjects::ONBOARD_REQUESTED.to_string(),
            ack_wait: ACK_WAIT,
            max_deliver: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    (js, stream, consumer)
}

async fn publish_request(js: &jetstream::Context, mac: &str) -> u64 {
    js.publish(subjects::ONBOARD_REQUESTED, mac.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence
}

/// The loop in a task of its own, with a way to stop it.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn run(js: &jetstream::Context, consumer: Consumer<pull::Config>, handler: &Arc<Slow>) -> Running {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let js = js.clone();
    let handler = Arc::clone(handler);
    let task = tokio::spawn(async move {
        metal_core::responder::run(js, consumer, handler, 4, async {
            let _ = stopped.await;
        })
        .await
    });
    Running { stop, task }
}

/// Waits until the consumer has nothing pending or unacked.
async fn wait_all_acked(stream: &stream::Stream) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = stream.consumer_info("in-hand-test").await.unwrap();
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return info.num_redelivered as u64;
        }
        assert!(
            Instant::now() < deadline,
            "{} pending, {} unacked",
            info.num_pending,
            info.num_ack_pending
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_that_outlasts_the_ack_wait_is_kept_and_handled_once() {
    let server = NatsServer::start();
    let (js, stream, consumer) = setup(&server).await;
    let handler = Slow::new(ACK_WAIT * 7 / 2);
    let running = run(&js, consumer, &handler);
    let sequence = publish_request(&js, "aa:bb:cc:00:20:01").await;

    let redelivered = wait_all_acked(&stream).await;
    assert_eq!(
        *handler.deliveries.lock().unwrap(),
        vec![(sequence, 1)],
        "one delivery, though the work took 3.5 ack waits"
    );
    assert_eq!(*handler.finished.lock().unwrap(), vec![sequence]);
    assert_eq!(redelivered, 0);
    let _ = running.stop.send(());
    running.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_in_the_hands_of_a_dead_responder_comes_back_within_one_ack_wait() {
    let server = NatsServer::start();
    let (js, stream, consumer) = setup(&server).await;
    // The first responder's client is its own, as a process's would be, and dies with it.
    let own_client = server.connect().await;
    let dying_js = jetstream::new(own_client);
    let stuck = Slow::new(Duration::from_secs(3600));
    let dying = run(&dying_js, consumer.clone(), &stuck);
    drop(dying_js);
    let sequence = publish_request(&js, "aa:bb:cc:00:20:02").await;
    tokio::time::timeout(Duration::from_secs(10), stuck.started.notified())
        .await
        .expect("the first responder takes the input");

    dying.task.abort();
    let died = Instant::now();
    let _ = dying.task.await;
    let heir = Slow::new(Duration::ZERO);
    let running = run(&js, consumer, &heir);
    tokio::time::timeout(Duration::from_secs(20), heir.started.notified())
        .await
        .expect("the input comes back");
    let waited = died.elapsed();
    wait_all_acked(&stream).await;

    assert_eq!(*heir.deliveries.lock().unwrap(), vec![(sequence, 2)]);
    assert!(
        waited <= ACK_WAIT * 3,
        "the input came back {waited:?} after its responder died; the ack wait is {ACK_WAIT:?}"
    );
    assert!(stuck.finished.lock().unwrap().is_empty());
    let _ = running.stop.send(());
    running.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_finishes_the_inputs_in_hand_and_acks_them() {
    let server = NatsServer::start();
    let (js, stream, consumer) = setup(&server).await;
    let handler = Slow::new(Duration::from_millis(1500));
    let running = run(&js, consumer, &handler);
    let sequence = publish_request(&js, "aa:bb:cc:00:20:03").await;
    tokio::time::timeout(Duration::from_secs(10), handler.started.notified())
        .await
        .expect("the responder takes the input");

    let _ = running.stop.send(());
    tokio::time::timeout(Duration::from_secs(15), running.task)
        .await
        .expect("the loop stops within its grace")
        .unwrap();
    assert_eq!(*handler.finished.lock().unwrap(), vec![sequence]);
    assert_eq!(wait_all_acked(&stream).await, 0);
}
