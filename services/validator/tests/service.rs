//! validator as a service: `--help`, start-up refusing a broken specs file (naming the line)
//! before touching the network, and with a real nats-server the verdicts on inventories
//! and spec assignments, and `machine.bmc.found` when a lost BMC answers a rescan.

use std::time::Duration;

use metal_core::envelope::Envelope;
use metal_core::events::{BmcFound, HardwareInvalid, HardwareValidated, SpecAssigned};
use metal_core::ids::derived_event_id;
use metal_core::{subjects, MachineId};
use metal_projection::fixtures;
use test_harness::nats::NatsServer;
use test_harness::stream::wait_for_events;

const BMC: &str = "aa:bb:cc:00:00:71";

const SPECS: &str = r#"# test specs
[[spec]]
name = "one-drive"
[[spec.drives]]
count = 1

[[spec]]
name = "two-drives"
[[spec.drives]]
count = 2

[[map]]
model = "DL360*"
spec = "one-drive"
"#;

#[test]
fn help_explains_every_flag() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_validator"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for flag in ["--config", "--nats-url", "--database", "--specs"] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
    assert!(text.contains("machine.hardware.invalid"), "{text}");
}

#[test]
fn start_up_refuses_a_broken_specs_file_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("specs.toml");
    // Line 5: a drive count of 0.
    std::fs::write(
        &specs,
        "[[spec]]\nname = \"ok\"\ncpu_count = 2\n\n[[spec.drives]]\ncount = 0\n",
    )
    .unwrap();
    let config = dir.path().join("metal.toml");
    std::fs::write(
        &config,
        format!(
            "nats_url = \"nats://127.0.0.1:1\"\n[validator]\ndatabase = \"{}\"\n",
            dir.path().join("validator.db").display(),
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_validator"))
        .arg("--config")
        .arg(&config)
        .arg("--specs")
        .arg(&specs)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("specs.toml, line 5") && stderr.contains("count must be at least 1"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("NATS"),
        "refused before connecting: {stderr}"
    );
    assert!(
        !dir.path().join("validator.db").exists(),
        "nothing opened before the specs were checked"
    );

    // A missing file is named too.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_validator"))
        .arg("--config")
        .arg(&config)
        .arg("--specs")
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("missing.toml"), "{stderr}");
}

/// An operator's `machine.spec.assigned` for the machine.
fn assignment(spec: &str) -> Envelope {
    let mac = fixtures::mac(BMC);
    let id = uuid::Uuid::new_v4();
    Envelope {
        event_id: id,
        event_type: subjects::SPEC_ASSIGNED.to_string(),
        machine_id: Some(MachineId::from_bmc_mac(&mac)),
        bmc_mac: Some(mac),
        time: time::OffsetDateTime::now_utc(),
        correlation_id: id,
        causation_id: None,
        data: serde_json::to_value(SpecAssigned {
            spec: spec.to_string(),
            requested_by: Some("test".to_string()),
        })
        .unwrap(),
    }
}

/// The one answer of `event_type` to `cause`, once it is in the stream (every event read
/// is validated against schemas/).
async fn answer_to(
    client: &async_nats::Client,
    cause: &Envelope,
    event_type: &str,
) -> (Envelope, Vec<Envelope>) {
    let id = derived_event_id(cause.event_id, event_type);
    answer_with_id(client, cause, event_type, id).await
}

/// [`answer_to`] for an answer whose id derives from something else than its cause.
async fn answer_with_id(
    client: &async_nats::Client,
    cause: &Envelope,
    event_type: &str,
    id: uuid::Uuid,
) -> (Envelope, Vec<Envelope>) {
    let events = wait_for_events(client, Duration::from_secs(30), event_type, |events| {
        events
            .iter()
            .any(|e| e.causation_id == Some(cause.event_id) && e.event_type == event_type)
    })
    .await;
    let answers: Vec<&Envelope> = events
        .iter()
        .filter(|e| e.causation_id == Some(cause.event_id) && e.event_type == event_type)
        .collect();
    assert_eq!(answers.len(), 1, "{answers:?}");
    let answer = answers[0].clone();
    assert_eq!(answer.event_id, id);
    assert_eq!(answer.correlation_id, cause.correlation_id);
    (answer, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_on_inventories_and_assignments_and_a_found_bmc() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let js = async_nats::jetstream::new(client.clone());
    metal_core::jetstream::ensure_stream(&js).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("specs.toml");
    std::fs::write(&specs, SPECS).unwrap();
    let config = metal_core::config::ValidatorConfig {
        database: dir.path().join("validator.db"),
        specs: specs.clone(),
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = {
        let client = nats.connect().await;
        let config = config.clone();
        tokio::spawn(async move {
            validator::run(&config, client, async {
                let _ = stopped.await;
            })
            .await
        })
    };

    // Onboarded (sequences 1-3): the map gives one-drive, which one drive fits.
    let inventory = fixtures::inventory("DL360 Gen10", "Intel Xeon", &["52:54:00:00:00:71"]);
    let onboarding = fixtures::onboarding(1, BMC, inventory.clone());
    for message in &onboarding {
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
    let metal_core::Decoded::Event(scrape) = onboarding[2].decode() else {
        panic!("the fixture scrape decodes");
    };
    let (validated, _) = answer_to(&client, &scrape, subjects::HARDWARE_VALIDATED).await;
    let validated: HardwareValidated = validated.data_as().unwrap();
    assert_eq!(validated.spec, "one-drive");
    assert_eq!(validated.chosen_by, "map");
    assert_eq!(validated.inventory.event_id, scrape.event_id);
    assert_eq!(validated.inventory.sequence, 3);

    // The operator wants two drives: invalid, naming the drives rule.
    let wants_two = assignment("two-drives");
    metal_core::jetstream::publish_event(&js, &wants_two)
        .await
        .unwrap();
    let (invalid, _) = answer_to(&client, &wants_two, subjects::HARDWARE_INVALID).await;
    let invalid: HardwareInvalid = invalid.data_as().unwrap();
    assert_eq!(
        (invalid.spec.as_str(), invalid.chosen_by.as_str()),
        ("two-drives", "operator")
    );
    assert_eq!(invalid.inventory.map(|i| i.sequence), Some(3));
    let rules: Vec<&str> = invalid.failures.iter().map(|f| f.rule.as_str()).collect();
    assert_eq!(rules, ["drives"]);

    // A spec the file does not define.
    let unknown = assignment("r999");
    metal_core::jetstream::publish_event(&js, &unknown)
        .await
        .unwrap();
    let (invalid, _) = answer_to(&client, &unknown, subjects::HARDWARE_INVALID).await;
    let invalid: HardwareInvalid = invalid.data_as().unwrap();
    assert_eq!(invalid.failures.len(), 1);
    assert_eq!(invalid.failures[0].rule, "spec");
    assert_eq!(
        invalid.failures[0].wanted,
        format!("a spec named r999 in {}", specs.display())
    );
    assert_eq!(
        invalid.failures[0].found,
        "no such spec (specs: one-drive, two-drives)"
    );

    // Back to one drive, then the BMC is lost and answers a rescan: found, with the lost
    // event's failing_since, and the rescan's inventory is judged too.
    let wants_one = assignment("one-drive");
    metal_core::jetstream::publish_event(&js, &wants_one)
        .await
        .unwrap();
    answer_to(&client, &wants_one, subjects::HARDWARE_VALIDATED).await;
    let failing_since = fixtures::at(-3600);
    let lost = fixtures::bmc_lost(100, BMC, failing_since);
    metal_core::jetstream::publish_event(&js, &lost)
        .await
        .unwrap();
    let rescan = fixtures::rescan(101, BMC, Some(3));
    metal_core::jetstream::publish_event(&js, &rescan)
        .await
        .unwrap();
    let rescanned = fixtures::scraped(&rescan, inventory);
    metal_core::jetstream::publish_event(&js, &rescanned)
        .await
        .unwrap();
    // One found per outage: its id derives from the lost event, not from the scrape.
    let found_id = derived_event_id(lost.event_id, subjects::BMC_FOUND);
    let (found, _) = answer_with_id(&client, &rescanned, subjects::BMC_FOUND, found_id).await;
    let found: BmcFound = found.data_as().unwrap();
    assert_eq!(found.failing_since, failing_since);
    let (validated, events) = answer_to(&client, &rescanned, subjects::HARDWARE_VALIDATED).await;
    let validated: HardwareValidated = validated.data_as().unwrap();
    assert_eq!(
        (validated.spec.as_str(), validated.chosen_by.as_str()),
        ("one-drive", "operator")
    );
    assert_eq!(validated.inventory.event_id, rescanned.event_id);
    // The same rescan's answer again (a redelivery, another replica) stores nothing new.
    let ack = metal_core::jetstream::publish_event(
        &js,
        events
            .iter()
            .find(|e| e.causation_id == Some(rescanned.event_id))
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(ack.duplicate);

    // Spec assigned before any inventory: no verdict until the scrape.
    let fresh = "aa:bb:cc:00:00:72";
    let (request, _) = fixtures::request(0, fresh);
    let stored = js
        .publish(request.subject.clone(), request.payload.clone())
        .await
        .unwrap()
        .await
        .unwrap();
    let mac = fixtures::mac(fresh);
    let id = uuid::Uuid::new_v4();
    let early = Envelope {
        event_id: id,
        event_type: subjects::SPEC_ASSIGNED.to_string(),
        machine_id: Some(MachineId::from_bmc_mac(&mac)),
        bmc_mac: Some(mac),
        time: time::OffsetDateTime::now_utc(),
        correlation_id: id,
        causation_id: None,
        data: serde_json::to_value(SpecAssigned {
            spec: "two-drives".to_string(),
            requested_by: None,
        })
        .unwrap(),
    };
    metal_core::jetstream::publish_event(&js, &early)
        .await
        .unwrap();
    // A marker after it: once the marker is answered, the early assignment was handled.
    let marker = assignment("two-drives");
    metal_core::jetstream::publish_event(&js, &marker)
        .await
        .unwrap();
    let (_, events) = answer_to(&client, &marker, subjects::HARDWARE_INVALID).await;
    assert!(
        events
            .iter()
            .all(|e| e.causation_id != Some(early.event_id)),
        "no verdict without an inventory (request at sequence {})",
        stored.sequence
    );

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), service)
        .await
        .expect("validator stops on shutdown")
        .unwrap()
        .unwrap();
}
