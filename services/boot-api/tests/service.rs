//! boot-api as a service: start-up refuses a broken profiles file (naming the line) or a
//! missing token key before touching the network, and with a real nats-server an armed
//! machine that never phones home fails at the install deadline and is disarmed.

use std::time::Duration;

use metal_core::envelope::Envelope;
use metal_core::events::{InstallFailed, ProvisionRequested};
use metal_core::{subjects, MachineId};
use metal_projection::fixtures;
use test_harness::nats::NatsServer;
use test_harness::stream::wait_for_events;

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
        let mut headers = async_nats::HeaderMap::new();
        if let Some(id) = &message.msg_id {
            headers.insert("Nats-Msg-Id", id.as_str());
        }
        js.publish_with_headers(message.subject.clone(), headers, message.payload.clone())
            .await
            .unwrap()
            .await
            .unwrap();
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
