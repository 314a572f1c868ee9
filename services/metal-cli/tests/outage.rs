//! `metal-cli onboard` while NATS is away: it says what it waits for, gives up at its
//! `--timeout` with a clear error, and when NATS comes back within it, stores its request
//! once (every try carries the same `Nats-Msg-Id`). With NATS up but no stream, it fails at
//! once saying so. Services started while NATS is away wait for it, then work.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{printed, System};
use metal_core::{subjects, Mac, MachineId};
use test_harness::mockup::serve_mockup;
use test_harness::nats::NatsServer;

const BMC: &str = "02:00:5e:10:00:81";

/// Starts `metal-cli onboard BMC --no-wait --timeout <secs>` against `url`.
fn onboard(url: &str, timeout_secs: u64) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_metal-cli"))
        .args(["onboard", BMC, "--no-wait", "--timeout"])
        .arg(timeout_secs.to_string())
        .env("NATS_URL", url)
        .env_remove("METAL_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run metal-cli")
}

async fn finished(child: std::process::Child) -> Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().expect("metal-cli output"))
        .await
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboard_waits_for_nats_and_stores_its_request_once() {
    let mut nats = NatsServer::start();
    // NATS is there but no stream takes the request: no point in waiting.
    let output = finished(onboard(&nats.url(), 60)).await;
    assert!(!output.status.success());
    let said = stderr(&output);
    assert!(
        said.contains("no stream takes machine.onboard.requested"),
        "{said}"
    );
    assert!(!said.contains("waiting"), "{said}");
    {
        let js = async_nats::jetstream::new(nats.connect().await);
        metal_core::jetstream::ensure_stream(&js).await.unwrap();
    }
    nats.kill();

    // NATS stays away: a clear failure at the timeout, nothing stored.
    let output = finished(onboard(&nats.url(), 3)).await;
    assert!(!output.status.success());
    let said = stderr(&output);
    assert!(
        said.contains("waiting for NATS to store the request"),
        "{said}"
    );
    assert!(
        said.contains("was not stored on machine.onboard.requested"),
        "{said}"
    );

    // NATS comes back 3 s into the wait: the request is stored, once.
    let child = onboard(&nats.url(), 60);
    tokio::time::sleep(Duration::from_secs(3)).await;
    nats.restart();
    let output = finished(child).await;
    let said = stderr(&output);
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains("waiting for NATS to store the request"),
        "{said}"
    );
    let request_id = String::from_utf8_lossy(&output.stdout).trim().to_string();

    let client = nats.connect().await;
    let requests: Vec<_> = test_harness::stream::read_events(&client)
        .await
        .into_iter()
        .filter(|e| e.event_type == subjects::ONBOARD_REQUESTED)
        .collect();
    assert_eq!(requests.len(), 1, "one request stored: {requests:?}");
    assert_eq!(requests[0].event_id.to_string(), request_id);
}

/// After a power cut the servers may boot before the NATS nodes: every service, started
/// while NATS is away, waits for it rather than exiting, and an onboarding then goes through
/// the locator, the scraper and the projector as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_started_before_nats_wait_for_it_then_onboard() {
    const LATE_BMC: &str = "02:00:5e:10:00:82";
    let folder = test_harness::paths::mockup_folders()
        .into_iter()
        .next()
        .expect("a Redfish mockup");
    let bmc = serve_mockup(&folder).await;
    let mac = Mac::parse_device(LATE_BMC).unwrap();
    let system = System::start_before_nats(vec![(mac, bmc.base_url())]).await;
    let output = system
        .cli_async(&["onboard", LATE_BMC, "--timeout", "90"])
        .await;
    assert!(output.status.success(), "{}", printed(&output));
    let machine = MachineId::from_bmc_mac(&mac).to_string();
    system
        .wait_inventoried(&machine, Duration::from_secs(60))
        .await;
    system.stop().await;
}
