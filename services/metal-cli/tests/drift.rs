//! `metal-cli drift` against a real nats-server and inventory-projector: onboardings with
//! known firmware go on the stream (no BMC needed), and the real binary prints the machines
//! whose firmware differs from their model's most common version.

mod common;

use std::time::Duration;

use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use common::{printed, stdout};
use metal_core::config::ProjectorConfig;
use metal_core::jetstream::{ensure_stream, StoredMessage};
use metal_core::query::{FirmwareDrift, Status};
use metal_core::{subjects, Mac, MachineId};
use metal_projection::fixtures::{inventory, onboarding, with_firmware};
use test_harness::nats::NatsServer;

fn drift_cli(
    nats: &NatsServer,
    args: &[&str],
) -> impl std::future::Future<Output = std::process::Output> {
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.insert(0, "drift".to_string());
    let url = nats.url();
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_metal-cli"))
            .args(&args)
            .env("NATS_URL", url)
            .env_remove("METAL_CONFIG")
            .output()
            .expect("run metal-cli")
    });
    async move { run.await.unwrap() }
}

/// Publishes in order, so stream sequences are the fixtures' (1, 2, 3, ...).
async fn publish(js: &async_nats::jetstream::Context, messages: Vec<StoredMessage>) {
    for message in messages {
        let mut headers = HeaderMap::new();
        if let Some(id) = &message.msg_id {
            headers.insert(NATS_MESSAGE_ID, id.as_str());
        }
        js.publish_with_headers(message.subject.clone(), headers, message.payload.clone())
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

async fn wait_for_sequence(client: &async_nats::Client, at_least: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let reply = tokio::time::timeout(
            Duration::from_secs(2),
            client.request(subjects::QUERY_STATUS, "{}".into()),
        )
        .await;
        if let Ok(Ok(reply)) = reply {
            if let Ok(status) = serde_json::from_slice::<Status>(&reply.payload) {
                if status.last_sequence >= at_least {
                    return;
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the projector never reached sequence {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_lists_the_machines_whose_firmware_differs_from_their_models() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let js = async_nats::jetstream::new(client.clone());
    ensure_stream(&js).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = ProjectorConfig {
        database: dir.path().join("inventory.db"),
    };
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let projector = {
        let client = nats.connect().await;
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            inventory_projector::run(&config, client, shutdown)
                .await
                .expect("inventory-projector");
        })
    };
    wait_for_sequence(&client, 0).await;

    // --- nothing inventoried yet.
    let output = drift_cli(&nats, &[]).await;
    assert!(output.status.success(), "{}", printed(&output));
    assert_eq!(
        stdout(&output).trim_end(),
        "no firmware drift among 0 machines (projection at stream sequence 0)"
    );

    // --- three DL360s, one with an older System ROM; one DL385, alone with its model.
    let model = "ProLiant DL360 Gen10";
    let older_bmc = "02:4d:00:d0:00:03";
    let mut log = Vec::new();
    for (n, bmc, hardware) in [
        (
            0,
            "02:4d:00:d0:00:01",
            inventory(model, "Intel Xeon", &["52:54:00:d0:00:01"]),
        ),
        (
            1,
            "02:4d:00:d0:00:02",
            inventory(model, "Intel Xeon", &["52:54:00:d0:00:02"]),
        ),
        (
            2,
            older_bmc,
            with_firmware(
                inventory(model, "Intel Xeon", &["52:54:00:d0:00:03"]),
                &[("1", Some("System ROM"), Some("U30 v2.60"))],
            ),
        ),
        (
            3,
            "02:4d:00:d0:00:04",
            with_firmware(
                inventory("ProLiant DL385 Gen10", "AMD EPYC", &["52:54:00:d0:00:04"]),
                &[("1", Some("System ROM"), Some("A40 v1.00"))],
            ),
        ),
    ] {
        log.extend(onboarding(1 + 3 * n, bmc, hardware));
    }
    publish(&js, log).await;
    wait_for_sequence(&client, 12).await;

    let output = drift_cli(&nats, &[]).await;
    assert!(output.status.success(), "{}", printed(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for column in [
        "MODEL",
        "COMPONENT",
        "MACHINE",
        "BMC MAC",
        "VERSION",
        "FLEET VERSION (n/m)",
    ] {
        assert!(lines[0].contains(column), "no {column} column: {text}");
    }
    let older_mac: Mac = older_bmc.parse().unwrap();
    let older_id = MachineId::from_bmc_mac(&older_mac).to_string();
    let row: Vec<&str> = lines[1]
        .split("  ")
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .collect();
    assert_eq!(
        row,
        [
            model,
            "System ROM",
            older_id.as_str(),
            older_bmc,
            "U30 v2.60",
            "U30 v2.72 (2/3)"
        ],
        "{text}"
    );
    assert_eq!(
        lines[2],
        "1 drifting firmware component(s) among 4 machines, projection at stream sequence 12"
    );

    let output = drift_cli(&nats, &["--json"]).await;
    assert!(output.status.success(), "{}", printed(&output));
    let reply: FirmwareDrift = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not a FirmwareDrift ({e}): {}", printed(&output)));
    assert_eq!(
        (
            reply.total,
            reply.machines,
            reply.without_model,
            reply.last_sequence
        ),
        (1, 4, 0, 12)
    );
    assert_eq!(reply.drift.len(), 1);
    assert_eq!(reply.drift[0].bmc_mac, older_mac);
    assert_eq!(
        (
            reply.drift[0].fleet_machines,
            reply.drift[0].component_machines
        ),
        (2, 3)
    );

    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(30), projector)
        .await
        .expect("the projector stops on shutdown")
        .expect("projector task");
}
