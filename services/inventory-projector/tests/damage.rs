//! A damaged projection file against a real nats-server: garbage over its header, garbage
//! over its pages, or a file built from another stream. The projector starts anyway,
//! answers every query with a refusal that says why and names `metal-cli replay`, and a
//! replay rebuilds the file from the stream, after which it answers and follows again.

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use metal_core::config::ProjectorConfig;
use metal_core::jetstream::ensure_stream;
use metal_core::query::{MachineList, ReplayReport};
use metal_core::subjects;
use metal_projection::Projection;
use test_harness::nats::NatsServer;
use tokio::time::Instant;

const MACHINES: u64 = 40;

/// The projector running in this process on `database`.
struct Projector {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), inventory_projector::ProjectorError>>,
}

impl Projector {
    async fn start(server: &NatsServer, database: &Path) -> Projector {
        let config = ProjectorConfig {
            database: database.to_path_buf(),
        };
        let client = server.connect().await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            inventory_projector::run(&config, client, async {
                let _ = stopped.await;
            })
            .await
        });
        Projector { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{}", metal_core::error_chain(&e)));
    }
}

/// Asks the query service, waiting for it to come up; an error reply is
/// `Err((code, message))`.
async fn ask(client: &async_nats::Client, subject: &str) -> Result<Vec<u8>, (String, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.request(subject.to_string(), "{}".into()).await {
            Ok(reply) => {
                let header = |name: &str| {
                    reply
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(name))
                        .map(|v| v.as_str().to_string())
                };
                return match header("Nats-Service-Error-Code") {
                    Some(code) => Err((code, header("Nats-Service-Error").unwrap_or_default())),
                    None => Ok(reply.payload.to_vec()),
                };
            }
            Err(error)
                if error.kind() == async_nats::RequestErrorKind::NoResponders
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(error) => panic!("{subject} request failed: {error}"),
        }
    }
}

async fn machines(client: &async_nats::Client) -> usize {
    let reply = ask(client, subjects::QUERY_MACHINES)
        .await
        .unwrap_or_else(|e| panic!("machines refused: {e:?}"));
    serde_json::from_slice::<MachineList>(&reply)
        .unwrap()
        .machines
        .len()
}

async fn wait_applied(client: &async_nats::Client, sequence: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::status(client).await.map(|s| s.last_sequence) != Some(sequence) {
        assert!(Instant::now() < deadline, "never applied up to {sequence}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A stream of `MACHINES` onboardings and a projection of it, closed, in a temp dir.
async fn projected(server: &NatsServer, dir: &Path) -> (PathBuf, u64) {
    let client = server.connect().await;
    let js = async_nats::jetstream::new(client.clone());
    ensure_stream(&js).await.unwrap();
    let log = common::onboardings(MACHINES, 0x0d, "Contoso 3500", "Intel Xeon 7xxx");
    let total = log.len() as u64;
    common::publish(js, log).await;
    let database = dir.join("inventory.db");
    let projector = Projector::start(server, &database).await;
    wait_applied(&client, total).await;
    projector.stop().await;
    (database, total)
}

fn overwrite(path: &Path, offset: u64, length: usize) {
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(&vec![0xA5; length]).unwrap();
    file.sync_all().unwrap();
}

/// Starts the projector on the damaged `database` and checks it refuses, naming `why`,
/// until a replay rebuilds the file; then that it answers and follows again.
async fn refuses_until_replayed(server: &NatsServer, database: &Path, total: u64, why: &str) {
    let client = server.connect().await;
    let projector = Projector::start(server, database).await;

    for subject in [
        subjects::QUERY_MACHINES,
        subjects::QUERY_STATUS,
        subjects::QUERY_EXPORT,
    ] {
        let (code, message) = ask(&client, subject)
            .await
            .expect_err("a damaged projection answers nothing");
        assert_eq!(code, "503", "{subject}: {message}");
        assert!(
            message.contains("damaged") && message.contains(why),
            "{subject}: {message}"
        );
        assert!(
            message.contains("metal-cli replay"),
            "the refusal says what mends it: {message}"
        );
    }

    let report: ReplayReport = serde_json::from_slice(
        &ask(&client, subjects::QUERY_REPLAY)
            .await
            .unwrap_or_else(|e| panic!("replay refused: {e:?}")),
    )
    .unwrap();
    assert_eq!(report.last_sequence, total, "{report:?}");
    let repaired = report.repaired_damage.as_deref().unwrap_or_default();
    assert!(repaired.contains(why), "{report:?}");
    assert_eq!(machines(&client).await, MACHINES as usize);

    // It follows again: one more onboarding is applied.
    let js = async_nats::jetstream::new(client.clone());
    let more = common::onboardings(MACHINES + 1, 0x0d, "Contoso 3500", "Intel Xeon 7xxx");
    common::publish(js, more[total as usize..].to_vec()).await;
    wait_applied(&client, total + 3).await;
    assert_eq!(machines(&client).await, MACHINES as usize + 1);
    projector.stop().await;

    let mut fresh = Projection::open_in_memory().unwrap();
    for message in test_harness::stream::read_all(&client).await {
        fresh.apply(&message).unwrap();
    }
    let rebuilt = Projection::open(database).unwrap();
    assert!(
        rebuilt.canonical_export().unwrap() == fresh.canonical_export().unwrap(),
        "the rebuilt file differs from a projection of the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_over_the_header_is_refused_until_replay_rebuilds_it() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (database, total) = projected(&server, dir.path()).await;
    overwrite(&database, 0, 100);
    refuses_until_replayed(&server, &database, total, "not a database").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_over_its_pages_is_found_at_start_and_refused_until_replay_rebuilds_it() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (database, total) = projected(&server, dir.path()).await;
    let size = std::fs::metadata(&database).unwrap().len();
    assert!(size > 16 * 4096, "a projection of some pages: {size} bytes");
    // Pages past the first two (the header and the schema), where the tables live.
    overwrite(&database, 4 * 4096, 8 * 4096);
    refuses_until_replayed(&server, &database, total, "integrity").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_of_another_stream_is_refused_until_replay_rebuilds_it() {
    let dir = tempfile::tempdir().unwrap();
    let database = {
        let other = NatsServer::start();
        projected(&other, dir.path()).await.0
    };
    // A new, empty store: the projection is ahead of everything this stream holds.
    let server = NatsServer::start();
    let client = server.connect().await;
    ensure_stream(&async_nats::jetstream::new(client.clone()))
        .await
        .unwrap();
    let projector = Projector::start(&server, &database).await;
    let (code, message) = ask(&client, subjects::QUERY_MACHINES)
        .await
        .expect_err("a projection of another stream answers nothing");
    assert_eq!(code, "503");
    assert!(
        message.contains("another stream") && message.contains("ends at 0"),
        "{message}"
    );
    let report: ReplayReport =
        serde_json::from_slice(&ask(&client, subjects::QUERY_REPLAY).await.unwrap()).unwrap();
    assert_eq!(report.last_sequence, 0);
    assert!(report.repaired_damage.is_some());
    assert_eq!(machines(&client).await, 0);
    projector.stop().await;
}
