//! A machine's hardware against its spec, end to end: the whole system (validator
//! included), sushy-tools' fake driver behind basic auth, `onboard --expect` answered with
//! `machine.hardware.validated`; a drive pulled, `metal-cli rescan` answered with
//! `machine.hardware.changed` and `machine.hardware.invalid` naming the drives rule;
//! `provision` refusing the machine and `provision --force --no-power` arming it. And a BMC
//! stopped and restarted under periodic rescans: `machine.bmc.lost`, then `machine.bmc.found`.

mod common;

use std::time::Duration;

use common::{printed, stdout, System};
use metal_core::events::{
    BmcFound, BmcLost, HardwareChanged, HardwareInvalid, HardwareValidated, ScrapeFailed,
    ScrapeFailureKind,
};
use metal_core::ids::derived_event_id;
use metal_core::inventory::diff::ChangeKind;
use metal_core::query::MachineDetail;
use metal_core::{subjects, Envelope, Mac};
use test_harness::stream::wait_for_events;
use test_harness::sushy::{SushyDrive, SushyEmulator, SushyFakeSystem};

const PASSWORD: &str = "e2e-secret-value";
const UUID: &str = "5c1d7e2a-8b3f-4a6e-9c0d-2e4f6a8b0c31";
const HOST: &str = "52:54:00:7e:31:01";

const SPECS: &str = r#"# what was ordered for the test machine
[[spec]]
name = "two-drives"

[[spec.drives]]
count = 2
"#;

fn node(drives: &[&str]) -> Vec<SushyFakeSystem> {
    vec![SushyFakeSystem {
        name: "spec-node".to_string(),
        uuid: UUID.to_string(),
        power_state: "Off".to_string(),
        nic_macs: vec![HOST.to_string()],
        drives: drives
            .iter()
            .map(|id| SushyDrive {
                id: id.to_string(),
                capacity_bytes: 960_000_000_000,
                protocol: "SATA".to_string(),
            })
            .collect(),
    }]
}

/// `metal-cli show --json`, polled until `done` holds (the projector follows the stream).
async fn detail_when(
    system: &System,
    machine: &str,
    what: &str,
    done: impl Fn(&MachineDetail) -> bool,
) -> MachineDetail {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let output = system.cli_async(&["show", machine, "--json"]).await;
        assert!(output.status.success(), "{}", printed(&output));
        let detail: MachineDetail = serde_json::from_slice(&output.stdout).unwrap();
        if done(&detail) {
            return detail;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{machine}: {what} not shown within 30 s: {detail:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The one event of `event_type` caused by `cause` among `events`.
fn caused<'a>(events: &'a [Envelope], cause: &Envelope, event_type: &str) -> &'a Envelope {
    let found: Vec<&Envelope> = events
        .iter()
        .filter(|e| e.causation_id == Some(cause.event_id) && e.event_type == event_type)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{event_type} answering {}: {found:?}",
        cause.event_type
    );
    let event = found[0];
    assert_eq!(event.event_id, derived_event_id(cause.event_id, event_type));
    assert_eq!(event.correlation_id, cause.correlation_id);
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pulled_drive_breaks_the_spec_and_provisioning_needs_force() {
    let mut sushy = SushyEmulator::start_fake(&node(&["d1", "d2"]), Some(("root", PASSWORD)));
    let bmc = Mac::parse_device("aa:bb:cc:7e:31:01").unwrap();
    let specs_dir = tempfile::tempdir().unwrap();
    let specs = specs_dir.path().join("hardware-specs.toml");
    std::fs::write(&specs, SPECS).unwrap();
    let system = System::start_with(vec![(bmc, sushy.base_url())], |config| {
        config.validator.specs = specs.clone();
    })
    .await;
    let mac = bmc.to_string();

    // Onboarded with the spec it must meet: two drives, and it has two.
    let onboard = system
        .cli_async(&[
            "onboard",
            &mac,
            "--expect",
            "two-drives",
            "--timeout",
            "120",
        ])
        .await;
    assert!(
        onboard.status.success(),
        "{}\nsushy log:\n{}",
        printed(&onboard),
        sushy.log()
    );
    let events = wait_for_events(
        &system.client,
        Duration::from_secs(30),
        "hardware.validated",
        |events| {
            events
                .iter()
                .any(|e| e.event_type == subjects::HARDWARE_VALIDATED)
        },
    )
    .await;
    let first_scrape = events
        .iter()
        .find(|e| e.event_type == subjects::HARDWARE_SCRAPED)
        .expect("the onboarding's scrape");
    let validated: HardwareValidated = caused(&events, first_scrape, subjects::HARDWARE_VALIDATED)
        .data_as()
        .unwrap();
    assert_eq!(validated.spec, "two-drives");
    assert_eq!(validated.chosen_by, "operator");
    assert_eq!(validated.inventory.event_id, first_scrape.event_id);
    assert!(
        !events
            .iter()
            .any(|e| e.event_type == subjects::HARDWARE_INVALID),
        "{events:?}"
    );
    let valid = detail_when(&system, &mac, "the verdict", |d| d.validation.is_some()).await;
    assert_eq!(valid.expected_spec.as_deref(), Some("two-drives"));
    assert!(valid.validation.as_ref().is_some_and(|v| v.valid));

    // A technician pulls d2; the rescan says what changed, and the validator that the
    // hardware no longer meets the spec, naming the rule.
    sushy.restart_with(&node(&["d1"]));
    let rescan = system
        .cli_async(&["rescan", &mac, "--timeout", "120"])
        .await;
    assert!(rescan.status.success(), "{}", printed(&rescan));
    assert!(
        stdout(&rescan).contains("/Drives/d2 removed"),
        "{}",
        printed(&rescan)
    );
    let events = wait_for_events(
        &system.client,
        Duration::from_secs(30),
        "hardware.invalid",
        |events| {
            events
                .iter()
                .any(|e| e.event_type == subjects::HARDWARE_INVALID)
        },
    )
    .await;
    let request = events
        .iter()
        .find(|e| e.event_type == subjects::RESCAN_REQUESTED)
        .expect("the rescan request");
    let changed: HardwareChanged = caused(&events, request, subjects::HARDWARE_CHANGED)
        .data_as()
        .unwrap();
    assert_eq!(changed.previous.event_id, first_scrape.event_id);
    let drive_changes: Vec<(ChangeKind, &str)> = changed
        .changes
        .iter()
        .map(|c| (c.change, c.component.as_str()))
        .collect();
    assert_eq!(
        drive_changes,
        [(ChangeKind::Removed, "drive")],
        "{changed:?}"
    );
    let second_scrape = caused(&events, request, subjects::HARDWARE_SCRAPED);
    let invalid: HardwareInvalid = caused(&events, second_scrape, subjects::HARDWARE_INVALID)
        .data_as()
        .unwrap();
    assert_eq!(invalid.spec, "two-drives");
    assert_eq!(invalid.chosen_by, "operator");
    assert_eq!(
        invalid.inventory.map(|i| i.event_id),
        Some(second_scrape.event_id)
    );
    let rules: Vec<&str> = invalid.failures.iter().map(|f| f.rule.as_str()).collect();
    assert_eq!(rules, ["drives"], "{:?}", invalid.failures);
    assert!(
        invalid.failures[0].found.starts_with('1'),
        "{:?}",
        invalid.failures
    );
    let broken = detail_when(&system, &mac, "the invalid verdict", |d| {
        d.validation.as_ref().is_some_and(|v| !v.valid)
    })
    .await;
    assert_eq!(
        broken.validation.map(|v| v.failures),
        Some(invalid.failures.clone())
    );

    // Provisioning refuses it, naming the failed rule...
    let refused = system
        .cli_async(&["provision", &mac, "--profile", "G1", "--no-power"])
        .await;
    assert_eq!(refused.status.code(), Some(1), "{}", printed(&refused));
    assert!(
        printed(&refused).contains("drives: wanted"),
        "{}",
        printed(&refused)
    );
    let still = detail_when(&system, &mac, "the state", |_| true).await;
    assert!(!still.machine.state.is_armed(), "{:?}", still.machine.state);

    // ...unless forced.
    let forced = system
        .cli_async(&[
            "provision",
            &mac,
            "--profile",
            "G1",
            "--force",
            "--no-power",
            "--timeout",
            "120",
        ])
        .await;
    assert!(forced.status.success(), "{}", printed(&forced));
    let armed = detail_when(&system, &mac, "armed", |d| d.machine.state.is_armed()).await;
    assert_eq!(armed.provisioning.map(|p| p.profile).as_deref(), Some("G1"));

    // Every event of all of this matches its schema (read_events validates each).
    let events = test_harness::stream::read_events(&system.client).await;
    for event_type in [
        subjects::SPEC_ASSIGNED,
        subjects::HARDWARE_VALIDATED,
        subjects::HARDWARE_CHANGED,
        subjects::HARDWARE_INVALID,
        subjects::PROFILE_ASSIGNED,
    ] {
        assert!(
            events.iter().any(|e| e.event_type == event_type),
            "no {event_type}"
        );
    }
    system.stop().await;
}

/// The periodic rescans keep asking a BMC that stopped answering: after the threshold the
/// validator says `machine.bmc.lost` (once), and when the emulator is back, the next rescan's
/// answer is `machine.bmc.found` with the same outage start. The state never moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_bmc_is_lost_and_found_again_through_periodic_rescans() {
    let mut sushy = SushyEmulator::start_fake(&node(&["d1"]), Some(("root", PASSWORD)));
    let bmc = Mac::parse_device("aa:bb:cc:7e:31:02").unwrap();
    let system = System::start_with(vec![(bmc, sushy.base_url())], |config| {
        config.validator.rescan_interval_secs = [("inventoried".to_string(), 2)].into();
        config.validator.failing_rescan_interval_secs = 1;
        config.validator.bmc_lost_after_secs = 3;
        config.validator.tick_secs = 1;
        // A silent BMC is given up on after 3 s, not after the default two minutes.
        config.redfish.scrape_deadline_secs = 3;
    })
    .await;
    let mac = bmc.to_string();
    let onboard = system
        .cli_async(&["onboard", &mac, "--timeout", "120"])
        .await;
    assert!(
        onboard.status.success(),
        "{}\nsushy log:\n{}",
        printed(&onboard),
        sushy.log()
    );

    // Periodic rescans run by themselves while the BMC answers.
    let periodic = |e: &Envelope| {
        e.event_type == subjects::RESCAN_REQUESTED
            && e.data["requested_by"] == "validator (periodic rescan)"
    };
    let events = wait_for_events(
        &system.client,
        Duration::from_secs(30),
        "a periodic rescan answered",
        |events| {
            events.iter().filter(|e| periodic(e)).any(|request| {
                events.iter().any(|e| {
                    e.causation_id == Some(request.event_id)
                        && e.event_type == subjects::HARDWARE_SCRAPED
                })
            })
        },
    )
    .await;
    assert!(!events.iter().any(|e| e.event_type == subjects::BMC_LOST));

    // The BMC goes silent: its rescans fail as unreachable, and after 3 s it is lost.
    sushy.stop();
    let stopped_at = events.len();
    let events = wait_for_events(
        &system.client,
        Duration::from_secs(60),
        "machine.bmc.lost",
        |events| events.iter().any(|e| e.event_type == subjects::BMC_LOST),
    )
    .await;
    let silent: Vec<&Envelope> = events[stopped_at..]
        .iter()
        .filter(|e| e.event_type == subjects::SCRAPE_FAILED)
        .collect();
    assert!(!silent.is_empty(), "no failed rescan before the loss");
    let failed: ScrapeFailed = silent[0].data_as().unwrap();
    assert_eq!(failed.kind, ScrapeFailureKind::Unreachable, "{failed:?}");
    let lost_events: Vec<&Envelope> = events
        .iter()
        .filter(|e| e.event_type == subjects::BMC_LOST)
        .collect();
    let lost: BmcLost = lost_events[0].data_as().unwrap();
    let first_failure = silent
        .iter()
        .map(|e| e.time)
        .min()
        .expect("a failed rescan");
    assert!(
        lost.failing_since >= first_failure - time::Duration::seconds(2)
            && lost.failing_since <= lost_events[0].time - time::Duration::seconds(3),
        "lost {lost:?} at {}, first failure at {first_failure}",
        lost_events[0].time
    );
    let shown = detail_when(&system, &mac, "the lost BMC", |d| d.bmc_health.lost).await;
    assert_eq!(shown.bmc_health.failing_since, Some(lost.failing_since));
    assert_eq!(
        shown.machine.state,
        metal_core::query::MachineState::Inventoried
    );
    assert!(
        stdout(&system.cli_async(&["show", &mac]).await).contains("bmc        LOST"),
        "show says the BMC is lost"
    );

    // Back on the same port: the next rescan's answer finds it, with the same outage start.
    sushy.restart_with(&node(&["d1"]));
    let events = wait_for_events(
        &system.client,
        Duration::from_secs(60),
        "machine.bmc.found",
        |events| events.iter().any(|e| e.event_type == subjects::BMC_FOUND),
    )
    .await;
    let found: Vec<&Envelope> = events
        .iter()
        .filter(|e| e.event_type == subjects::BMC_FOUND)
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    let found_data: BmcFound = found[0].data_as().unwrap();
    assert_eq!(found_data.failing_since, lost.failing_since);
    let answer = events
        .iter()
        .find(|e| Some(e.event_id) == found[0].causation_id)
        .expect("the scrape that found it");
    assert_eq!(answer.event_type, subjects::HARDWARE_SCRAPED);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event_type == subjects::BMC_LOST)
            .count(),
        1,
        "one loss per outage"
    );
    let back = detail_when(&system, &mac, "the found BMC", |d| !d.bmc_health.lost).await;
    assert_eq!(back.bmc_health.failing_since, None);
    assert_eq!(
        back.machine.state,
        metal_core::query::MachineState::Inventoried
    );

    // Every event matches its schema (read_events validates each), and replay rebuilds the
    // BMC's health exactly.
    let _ = test_harness::stream::read_events(&system.client).await;
    let replay = system.cli_async(&["replay"]).await;
    assert!(replay.status.success(), "{}", printed(&replay));
    let replayed = system.show(&mac).await;
    assert_eq!(replayed.bmc_health, back.bmc_health);
    system.stop().await;
}
