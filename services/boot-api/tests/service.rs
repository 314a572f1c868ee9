//! boot-api as a service: start-up refuses a broken profiles file (naming the line) or a
//! missing token key before touching the network, and with a real nats-server an armed
//! machine that never phones home fails at the install deadline and is disarmed.

use std::time::Duration;

use metal_core::envelope::Envelope;
use metal_core::events::{InstallFailed, ProvisionRequested};
use metal_core::{subjects, MachineId};
use metal_projection::fixtures;
use test_harness::nats::NatsServer;
use test_harness::stream::{publish_stored, wait_for_events};

/// Runs the binary with a config; NATS on port 1 of loopback, where nothing listens.
fn start(profiles: &std::path::Path, key: Option<&str>) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("metal.toml");
    std::fs::write(
        &config,
        format!(
            "nats_url = \"nats://127.0.0.1:1\"\n[boot_api]\nlisten = \"127.0.0.1:0\"\ndatabase = \"{}\"\nprofiles = \"{}\"\n",
            dir.path().join("boot.db").display(),
            profiles.display()
        ),
    )
    .unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_boot-api"));
    command
        .arg("--config")
        .arg(&config)
        .env_remove("METAL_BOOT_TOKEN_KEY");
    if let Some(key) = key {
        command.env("METAL_BOOT_TOKEN_KEY", key);
    }
    command.output().unwrap()
}

#[test]
fn start_up_refuses_a_broken_profiles_file_or_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("profiles.toml");
    std::fs::write(
        &broken,
        "[[profile]]\nname = \"ok\"\nkernel = \"http://h/k\"\n\n[[profile]]\nname = \"bad\"\nkernel = \"http://h/k\"\ncmdline = \"a {{ .Bad }}\"\n",
    )
    .unwrap();
    let key = "a key of more than sixteen bytes";
    let output = start(&broken, Some(key));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("profiles.toml, line 5") && stderr.contains("braces"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("NATS"),
        "refused before connecting: {stderr}"
    );

    let shipped = test_harness::paths::workspace_root().join("profiles/boot-profiles.toml");
    let output = start(&shipped, None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("METAL_BOOT_TOKEN_KEY"), "{stderr}");
    let output = start(&shipped, Some("short"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("at least 16"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_that_never_phones_home_fails_at_the_deadline() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let js = async_nats::jetstream::new(client.clone());
    metal_core::jetstream::ensure_stream(&js).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = metal_core::config::BootApiConfig {
        listen: listener.local_addr().unwrap().to_string(),
        database: dir.path().join("boot.db"),
        profiles: test_harness::paths::workspace_root().join("profiles/boot-profiles.toml"),
        public_url: base.clone(),
        install_deadline_secs: 2,
        ..Default::default()
    };
    let key =
        boot_api::TokenKey::new("test", b"deadline test key of 32 bytes...".to_vec()).unwrap();
    let checked = boot_api::Checked::with_key(&config, key).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let client = nats.connect().await;
        let config = config.clone();
        tokio::spawn(async move {
            boot_api::run(&config, checked, client, listener, async {
                let _ = stopped.await;
            })
            .await
        })
    };
    let bmc = "aa:bb:cc:00:00:61";
    let host = "52:54:00:00:00:61";
    for message in fixtures::onboarding(1, bmc, fixtures::inventory("DL360", "Intel Xeon", &[host]))
    {
        publish_stored(&js, &message).await;
    }
    let id = uuid::Uuid::new_v4();
    let request = Envelope {
        event_id: id,
        event_type: subjects::PROVISION_REQUESTED.to_string(),
        machine_id: Some(MachineId::from_bmc_mac(&fixtures::mac(bmc))),
        bmc_mac: Some(fixtures::mac(bmc)),
        time: time::OffsetDateTime::now_utc(),
        correlation_id: id,
        causation_id: None,
        data: serde_json::to_value(ProvisionRequested {
            profile: None,
            power: false,
            requested_by: None,
            force: false,
        })
        .unwrap(),
    };
    metal_core::jetstream::publish_event(&js, &request)
        .await
        .unwrap();
    let events = wait_for_events(
        &client,
        Duration::from_secs(30),
        "install.failed",
        |events| {
            events
                .iter()
                .any(|e| e.event_type == subjects::INSTALL_FAILED)
        },
    )
    .await;
    let failed: InstallFailed = events
        .iter()
        .find(|e| e.event_type == subjects::INSTALL_FAILED)
        .unwrap()
        .data_as()
        .unwrap();
    assert_eq!(failed.provision_id, id);
    assert_eq!(failed.reason, "timeout: no phone-home within 2 s of arming");
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event_type == subjects::INSTALL_FAILED)
            .count(),
        1
    );
    // Disarmed: boot-api's own projection catches up and the boot answer becomes a 404.
    let url = format!("{base}/v1/boot/{host}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = reqwest::get(&url).await.unwrap().status();
        if status == 404 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// A `machine.boot.unknown` record, as boot-api publishes one; returns its sequence.
async fn boot_record(js: &async_nats::jetstream::Context, mac: &str) -> u64 {
    let (_, cause) = fixtures::request(1, "aa:bb:cc:00:00:99");
    let mut record = fixtures::answer(
        &cause,
        subjects::BOOT_UNKNOWN,
        &metal_core::events::BootUnknown {
            mac: fixtures::mac(mac),
            path: metal_core::events::BootPath::Pixiecore,
            reason: "no machine has this MAC".to_string(),
        },
    );
    record.event_id = uuid::Uuid::new_v4();
    metal_core::jetstream::publish_event(js, &record)
        .await
        .unwrap()
        .sequence
}

/// Follows the stream into boot-api's projection at `database` (as `boot_api::run` does)
/// until the projection has applied `sequence`, and half a second more; returns the
/// projection's last sequence then and the boot decision for host NIC `...:62`.
async fn follow_until(
    js: &async_nats::jetstream::Context,
    database: &std::path::Path,
    sequence: u64,
) -> (u64, boot_api::BootDecision) {
    let (live, index) = boot_api::open_indexed(database.to_path_buf())
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let follower = {
        let live = live.clone();
        let js = js.clone();
        tokio::spawn(async move {
            metal_projection::follow::follow_with_retry(js, &live, async {
                let _ = stopped.await;
            })
            .await
        })
    };
    let mut applied = live.subscribe();
    tokio::time::timeout(
        Duration::from_secs(20),
        applied.wait_for(|s| *s >= sequence),
    )
    .await
    .expect("boot-api's projection did not reach the sequence")
    .unwrap();
    // Time for a boot record after `sequence` to be applied, were it read.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop.send(());
    follower.await.unwrap().unwrap();
    let decision = index.decide(&fixtures::mac("52:54:00:00:00:62"));
    let last = live.with(|p| p.last_sequence()).await.unwrap().unwrap();
    (last, decision)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_apis_projection_never_reads_boot_records_and_resumes_past_them() {
    let nats = NatsServer::start();
    let js = async_nats::jetstream::new(nats.connect().await);
    metal_core::jetstream::ensure_stream(&js).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("boot.db");
    let bmc = "aa:bb:cc:00:00:62";
    let host = "52:54:00:00:00:62";

    // Boot records before, between and after the onboarding's events.
    let first = boot_record(&js, "52:54:00:00:00:01").await;
    // The raw request's event id comes from its sequence: the one after the first record.
    let onboarding = fixtures::onboarding(
        first + 1,
        bmc,
        fixtures::inventory("DL360", "Intel Xeon", &[host]),
    );
    let mut last_event = 0;
    for message in &onboarding {
        last_event = publish_stored(&js, message).await;
        boot_record(&js, "52:54:00:00:00:02").await;
    }
    let stream_end = boot_record(&js, "52:54:00:00:00:03").await;
    assert!(stream_end > last_event);
    let (last, decision) = follow_until(&js, &database, last_event).await;
    // Read and skipped, the last boot record would have moved the sequence to the stream's end.
    assert_eq!(
        last, last_event,
        "the projection stops at the last event it follows"
    );
    assert!(
        matches!(decision, boot_api::BootDecision::Ignore(_)),
        "onboarded, not armed: {decision:?}"
    );
    // A restart resumes after the last event it applied, past the boot records after it,
    // and applies what comes next.
    let provision = fixtures::provision(0, bmc, Some("G1"));
    let assigned = fixtures::assigned(&provision, "G1");
    publish_stored(&js, &fixtures::stored(0, &provision)).await;
    boot_record(&js, "52:54:00:00:00:04").await;
    let armed = publish_stored(&js, &fixtures::stored(0, &assigned)).await;
    boot_record(&js, "52:54:00:00:00:05").await;
    let (last, decision) = follow_until(&js, &database, armed).await;
    assert_eq!(last, armed);
    assert!(
        matches!(decision, boot_api::BootDecision::Serve(_)),
        "armed after the restart: {decision:?}"
    );
}
