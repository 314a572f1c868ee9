//! Power end to end with real components: the scraper service in-process (`run()` with its
//! durable consumer from nats/) against a real `nats-server -js`, and sushy-tools' fake
//! driver (behind basic auth) as the BMC. A `machine.profile.assigned` published by the test
//! must leave the emulated system set to boot from PXE and powered on; a
//! `machine.power.requested` status reads it back. Every event observed is validated against
//! schemas/ (`wait_for_events` does that), and no stored message carries the password.
//!
//! sushy 2.2 ignores `BootSourceOverrideEnabled` (it always reports `Continuous`), so the
//! `Once` is proven against the recording fake BMC in tests/power.rs instead.

mod common;

use std::sync::Once;
use std::time::{Duration, Instant};

use common::Scraper;
use metal_core::config::Config;
use metal_core::events::{PowerAction, PowerDone, PowerRequested, PowerStep, ProfileAssigned};
use metal_core::jetstream::publish_event;
use metal_core::{subjects, Envelope, Mac};
use serde_json::Value;
use test_harness::nats::NatsServer;
use test_harness::stream::{read_all, wait_for_events};
use test_harness::sushy::{SushyEmulator, SushyFakeSystem};
use uuid::Uuid;

const USER: &str = "admin";
const PASSWORD: &str = "sushy-power-pw-3e71a9";
const PASSWORD_ENV: &str = "REDFISH_SCRAPER_POWER_NATS_TEST_PASSWORD";
const SYSTEM_UUID: &str = "5d1c3a7e-2b9f-4c61-8e0d-7f3a2b1c0d01";
const WAIT: Duration = Duration::from_secs(60);

fn config() -> Config {
    static SET: Once = Once::new();
    // Set once, before the scraper reads it; never changed afterwards.
    SET.call_once(|| std::env::set_var(PASSWORD_ENV, PASSWORD));
    let mut config = Config::default();
    config.redfish.username = USER.to_string();
    config.redfish.password_env = PASSWORD_ENV.to_string();
    config.redfish.retries = 1;
    config.redfish.request_timeout_secs = 10;
    config.redfish.scrape_deadline_secs = 60;
    config
}

fn bmc_mac() -> Mac {
    Mac::parse_any("aa:bb:cc:00:30:01").unwrap()
}

fn event(event_type: &str, data: Value) -> Envelope {
    common::event_for(bmc_mac(), event_type, data)
}

fn answers<'a>(events: &'a [Envelope], cause: &Envelope) -> Vec<&'a Envelope> {
    events
        .iter()
        .filter(|e| e.causation_id == Some(cause.event_id))
        .collect()
}

/// Whether `cause` has its answer for `step`, done or failed.
fn answered(events: &[Envelope], cause: &Envelope, step: PowerStep) -> bool {
    answers(events, cause).iter().any(|e| {
        e.data.get("step").and_then(Value::as_str) == Some(step.as_str())
            || e.event_type == subjects::POWER_FAILED
    })
}

fn done(event: &Envelope, step: PowerStep) -> PowerDone {
    assert_eq!(
        event.event_type,
        subjects::POWER_DONE,
        "{} {}",
        event.event_type,
        event.data
    );
    let data: PowerDone = event.data_as().expect("power.done data");
    assert_eq!(data.step, step);
    data
}

async fn publish(client: &async_nats::Client, event: &Envelope) {
    let js = async_nats::jetstream::new(client.clone());
    // The scraper may not have created the stream yet.
    metal_core::jetstream::ensure_stream(&js)
        .await
        .unwrap_or_else(|e| panic!("cannot ensure the stream: {}", metal_core::error_chain(&e)));
    publish_event(&js, event)
        .await
        .unwrap_or_else(|e| panic!("cannot publish: {}", metal_core::error_chain(&e)));
}

/// The emulated system as sushy serves it now, read with a client of the test's own.
async fn sushy_system(emulator: &SushyEmulator) -> Value {
    emulator
        .get_json(&format!("/redfish/v1/Systems/{SYSTEM_UUID}"))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_assignment_sets_pxe_and_powers_sushy_on() {
    let emulator = SushyEmulator::start_fake(
        &[SushyFakeSystem {
            name: "power-node".to_string(),
            uuid: SYSTEM_UUID.to_string(),
            power_state: "Off".to_string(),
            nic_macs: vec!["52:54:00:cc:00:01".to_string()],
            drives: Vec::new(),
        }],
        Some((USER, PASSWORD)),
    );
    let before = sushy_system(&emulator).await;
    assert_eq!(before["PowerState"], "Off");
    assert_ne!(before["Boot"]["BootSourceOverrideTarget"], "Pxe");

    let server = NatsServer::start();
    let client = metal_core::jetstream::connect(&server.url(), "test")
        .await
        .expect("test client connects");
    let scraper = Scraper::start(&server, config()).await;

    let provision_id = Uuid::new_v4();
    let assigned = event(
        subjects::PROFILE_ASSIGNED,
        serde_json::to_value(ProfileAssigned {
            provision_id,
            profile: "G1".to_string(),
            chosen_by: "selectors".to_string(),
            kernel: "http://boot.example/vmlinuz".to_string(),
            initrd: vec!["http://boot.example/initrd.img".to_string()],
            cmdline: "console=ttyS0 metal.token={{token}}".to_string(),
            power: true,
            redfish_url: Some(emulator.base_url()),
            purpose: Default::default(),
        })
        .unwrap(),
    );
    publish(&client, &assigned).await;
    let events = wait_for_events(&client, WAIT, "power.done reset", |events| {
        answered(events, &assigned, PowerStep::Reset)
    })
    .await;
    let answer = answers(&events, &assigned);
    assert_eq!(answer.len(), 2, "one event per step: {answer:?}");
    let system_path = format!("/redfish/v1/Systems/{SYSTEM_UUID}");
    let boot = done(answer[0], PowerStep::BootOverride);
    assert_eq!(boot.detail, "Pxe Once UEFI", "sushy has a UEFI boot mode");
    assert_eq!(boot.system, system_path);
    assert_eq!(boot.provision_id, Some(provision_id));
    let reset = done(answer[1], PowerStep::Reset);
    assert_eq!(reset.detail, "On", "an Off system is powered on");
    assert_eq!(reset.power_state.as_deref(), Some("Off"));

    // What the emulator says now, read independently of the scraper.
    let system = sushy_system(&emulator).await;
    assert_eq!(system["Boot"]["BootSourceOverrideTarget"], "Pxe");
    assert_eq!(system["Boot"]["BootSourceOverrideMode"], "UEFI");
    // The fake driver applies a power change 1 to 11 s after the request.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut system = system;
    while system["PowerState"] != "On" {
        assert!(
            Instant::now() < deadline,
            "sushy never reported On: {}\nlog:\n{}",
            system["PowerState"],
            emulator.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        system = sushy_system(&emulator).await;
    }

    // The operator asks for the power state: read, nothing sent.
    let status = event(
        subjects::POWER_REQUESTED,
        serde_json::to_value(PowerRequested {
            action: PowerAction::Status,
            redfish_url: emulator.base_url(),
            requested_by: Some("ops@example".to_string()),
        })
        .unwrap(),
    );
    publish(&client, &status).await;
    let events = wait_for_events(&client, WAIT, "power.done status", |events| {
        answered(events, &status, PowerStep::Status)
    })
    .await;
    let answer = answers(&events, &status);
    assert_eq!(answer.len(), 1);
    let read = done(answer[0], PowerStep::Status);
    assert_eq!((read.detail.as_str(), read.provision_id), ("On", None));
    assert_eq!(
        answer[0].event_id,
        metal_core::ids::derived_event_id(status.event_id, "machine.power.done/status")
    );

    for message in read_all(&client).await {
        assert!(
            !String::from_utf8_lossy(&message.payload).contains(PASSWORD),
            "message {} on {} contains the password",
            message.sequence,
            message.subject
        );
    }
    scraper.stop().await;
}

/// A durable created before the power subjects existed gains them at the next start:
/// `ensure_consumer` updates a consumer whose filter differs from nats/.
#[tokio::test]
async fn an_existing_consumer_gains_the_power_subjects() {
    use metal_core::jetstream::{ensure_consumer, ensure_stream, DurableConsumer};

    let server = NatsServer::start();
    let client = metal_core::jetstream::connect(&server.url(), "test")
        .await
        .expect("test client connects");
    let js = async_nats::jetstream::new(client);
    let stream = ensure_stream(&js).await.expect("stream");
    let wanted = DurableConsumer::RedfishScraper
        .config()
        .expect("consumer config");
    let mut before = wanted.clone();
    before.filter_subjects = vec![
        subjects::BMC_LOCATED.to_string(),
        subjects::RESCAN_REQUESTED.to_string(),
    ];
    stream
        .create_consumer(before)
        .await
        .expect("the consumer as it was");

    let mut consumer = ensure_consumer(&stream, DurableConsumer::RedfishScraper)
        .await
        .expect("ensure_consumer");
    let info = consumer.info().await.expect("consumer info");
    let mut filters = info.config.filter_subjects.clone();
    filters.sort();
    let mut expected = vec![
        subjects::BMC_LOCATED.to_string(),
        subjects::RESCAN_REQUESTED.to_string(),
        subjects::PROFILE_ASSIGNED.to_string(),
        subjects::POWER_REQUESTED.to_string(),
        subjects::RETIRE_REQUESTED.to_string(),
        subjects::WIPE_COMPLETED.to_string(),
    ];
    expected.sort();
    assert_eq!(filters, expected);
    assert_eq!(info.config.description, wanted.description);

    // boot-api's durable as it was, with the single filter_subject, gains retirements.
    let wanted = DurableConsumer::BootApi.config().expect("consumer config");
    let mut before = wanted.clone();
    before.filter_subjects = Vec::new();
    before.filter_subject = subjects::PROVISION_REQUESTED.to_string();
    stream
        .create_consumer(before)
        .await
        .expect("the boot-api consumer as it was");
    let mut consumer = ensure_consumer(&stream, DurableConsumer::BootApi)
        .await
        .expect("ensure_consumer");
    let info = consumer.info().await.expect("consumer info");
    assert_eq!(
        info.config.filter_subjects,
        vec![
            subjects::PROVISION_REQUESTED.to_string(),
            subjects::RETIRE_REQUESTED.to_string(),
        ]
    );
    assert_eq!(info.config.filter_subject, "");
}
