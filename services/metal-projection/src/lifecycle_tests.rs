//! The rest of a machine's life through the projection: spec and verdicts, BMC health
//! from the scrapes, retirement with and without a wipe, and onboarding anew.

use metal_core::events::{
    HardwareInvalid, HardwareValidated, InstallCompleted, InventoryRef, PowerFailed, PowerStep,
    ProfileAssigned, Purpose, RetireRequested, Retired, RuleFailure, ScrapeFailureKind,
    SpecAssigned, WipeCompleted,
};
use metal_core::query::MachineState::{self, *};
use metal_core::{subjects, Envelope};

use crate::fixtures::{
    about_provisioning, answer, assigned, at, bmc_lost, inventory, onboarding, provision, rescan,
    scrape_failed_kind, scraped, stored,
};
use crate::tests::check;
use crate::Projection;

const BMC: &str = "aa:bb:cc:00:00:07";
const HOST: &str = "52:54:00:00:00:b7";

/// A request about the machine at `sequence` (its own correlation), like metal-cli's.
fn request<D: serde::Serialize>(sequence: u64, event_type: &str, data: &D) -> Envelope {
    let mac = crate::fixtures::mac(BMC);
    let id = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("{event_type} {sequence}").as_bytes(),
    );
    Envelope {
        event_id: id,
        event_type: event_type.to_string(),
        machine_id: Some(metal_core::MachineId::from_bmc_mac(&mac)),
        bmc_mac: Some(mac),
        time: at(sequence as i64),
        correlation_id: id,
        causation_id: None,
        data: serde_json::to_value(data).unwrap_or_default(),
    }
}

fn retire(sequence: u64, wipe: bool) -> Envelope {
    request(
        sequence,
        subjects::RETIRE_REQUESTED,
        &RetireRequested {
            wipe,
            redfish_url: Some("https://10.0.0.1".to_string()),
            requested_by: Some("test".to_string()),
        },
    )
}

fn wipe_assigned(retire: &Envelope) -> Envelope {
    let mut event = assigned(retire, "wipe");
    let mut data: ProfileAssigned = event.data_as().unwrap();
    data.purpose = Purpose::Wipe;
    data.power = true;
    event.data = serde_json::to_value(data).unwrap();
    event
}

fn retired(retire: &Envelope, wiped: bool) -> Envelope {
    about_provisioning(
        retire,
        subjects::RETIRED,
        &Retired {
            retire_id: retire.event_id,
            wiped,
        },
        30,
    )
}

fn after(events: &[Envelope]) -> Projection {
    let mut messages = onboarding(1, BMC, inventory("DL360", "Intel Xeon", &[HOST]));
    messages.extend(
        events
            .iter()
            .enumerate()
            .map(|(i, e)| stored(10 + i as u64, e)),
    );
    check(&messages, &[])
}

fn state_after(events: &[Envelope]) -> MachineState {
    after(events).machine(BMC).unwrap().unwrap().machine.state
}

#[test]
fn the_expected_spec_and_each_verdict_are_kept() {
    let spec = request(
        10,
        subjects::SPEC_ASSIGNED,
        &SpecAssigned {
            spec: "dl360".to_string(),
            requested_by: None,
        },
    );
    let inventory_ref = InventoryRef {
        event_id: uuid::Uuid::nil(),
        sequence: 3,
    };
    let valid = answer(
        &spec,
        subjects::HARDWARE_VALIDATED,
        &HardwareValidated {
            spec: "dl360".to_string(),
            chosen_by: "operator".to_string(),
            inventory: inventory_ref,
        },
    );
    let detail = after(&[spec.clone(), valid.clone()])
        .machine(BMC)
        .unwrap()
        .unwrap();
    assert_eq!(detail.expected_spec.as_deref(), Some("dl360"));
    let validation = detail.validation.expect("a verdict");
    assert!(validation.valid);
    assert_eq!(validation.spec, "dl360");

    let failure = RuleFailure {
        rule: "drives".to_string(),
        wanted: "2".to_string(),
        found: "1".to_string(),
    };
    let mut invalid = answer(
        &spec,
        subjects::HARDWARE_INVALID,
        &HardwareInvalid {
            spec: "dl360".to_string(),
            chosen_by: "operator".to_string(),
            inventory: Some(inventory_ref),
            failures: vec![failure.clone()],
        },
    );
    invalid.event_id = uuid::Uuid::new_v4();
    let detail = after(&[spec, valid, invalid])
        .machine(BMC)
        .unwrap()
        .unwrap();
    let validation = detail.validation.expect("a verdict");
    assert!(!validation.valid, "the last verdict counts");
    assert_eq!(validation.failures, vec![failure]);
}

#[test]
fn bmc_health_follows_the_scrapes() {
    let first = rescan(10, BMC, Some(3));
    let unreachable = scrape_failed_kind(&first, ScrapeFailureKind::Unreachable, "refused");
    let projection = after(&[first.clone(), unreachable.clone()]);
    let health = projection.machine(BMC).unwrap().unwrap().bmc_health;
    assert_eq!(health.failing_since, Some(at(11)));
    assert_eq!(
        health.last_error.as_deref(),
        Some("unreachable: refused (after 3 attempt(s))")
    );
    assert!(!health.lost);

    let second = rescan(12, BMC, Some(3));
    let again = scrape_failed_kind(&second, ScrapeFailureKind::Timeout, "timed out");
    let lost = bmc_lost(14, BMC, at(11));
    let health = after(&[
        first.clone(),
        unreachable.clone(),
        second.clone(),
        again.clone(),
        lost.clone(),
    ])
    .machine(BMC)
    .unwrap()
    .unwrap()
    .bmc_health;
    assert_eq!(
        health.failing_since,
        Some(at(11)),
        "the first silent scrape counts"
    );
    assert!(health.lost);

    let third = rescan(15, BMC, Some(3));
    let answered = scraped(&third, inventory("DL360", "Intel Xeon", &[HOST]));
    let detail = after(&[first, unreachable, second, again, lost, third, answered])
        .machine(BMC)
        .unwrap()
        .unwrap();
    assert_eq!(detail.bmc_health.failing_since, None);
    assert_eq!(detail.bmc_health.last_seen, Some(at(16)));
    assert!(detail.bmc_health.lost, "lost until machine.bmc.found");
    assert_eq!(
        detail.machine.state, Inventoried,
        "rescans never change the state"
    );
}

#[test]
fn a_bmc_that_answers_badly_is_not_silent() {
    let first = rescan(10, BMC, Some(3));
    let auth = scrape_failed_kind(&first, ScrapeFailureKind::Auth, "401");
    let health = after(&[first, auth])
        .machine(BMC)
        .unwrap()
        .unwrap()
        .bmc_health;
    assert_eq!(health.failing_since, None);
    assert_eq!(health.last_seen, Some(at(11)));
}

#[test]
fn a_bmc_not_dialled_is_neither_seen_nor_silent() {
    let first = rescan(10, BMC, Some(3));
    let unreachable = scrape_failed_kind(&first, ScrapeFailureKind::Unreachable, "refused");
    let second = rescan(12, BMC, Some(3));
    let refused = scrape_failed_kind(
        &second,
        ScrapeFailureKind::NotAllowed,
        "127.0.0.1 is outside redfish.allowed_networks (10.20.0.0/16)",
    );
    let health = after(&[first, unreachable, second, refused])
        .machine(BMC)
        .unwrap()
        .unwrap()
        .bmc_health;
    assert_eq!(health.failing_since, Some(at(11)), "the outage goes on");
    assert_eq!(
        health.last_error.as_deref(),
        Some("unreachable: refused (after 3 attempt(s))"),
        "a refusal to dial is no news of the BMC"
    );
}

#[test]
fn retirement_without_a_wipe_powers_off_and_stays_retired_until_onboarded_anew() {
    let r = retire(10, false);
    assert_eq!(state_after(std::slice::from_ref(&r)), Retiring);
    assert_eq!(state_after(&[r.clone(), retired(&r, false)]), Retired);

    let p = provision(20, BMC, None);
    assert_eq!(
        state_after(&[r.clone(), retired(&r, false), p.clone(), assigned(&p, "G1")]),
        Retired,
        "a retired machine is never armed"
    );
    let anew = onboarding(30, BMC, inventory("DL360", "Intel Xeon", &[HOST]));
    let mut messages = onboarding(1, BMC, inventory("DL360", "Intel Xeon", &[HOST]));
    messages.push(stored(10, &r));
    messages.push(stored(11, &retired(&r, false)));
    messages.extend(anew);
    let projection = check(&messages, &[]);
    assert_eq!(
        projection.machine(BMC).unwrap().unwrap().machine.state,
        Inventoried,
        "onboarded anew"
    );
}

#[test]
fn a_wipe_arms_the_machine_until_it_phones_home_then_the_power_off_retires_it() {
    let r = retire(10, true);
    let wipe = wipe_assigned(&r);
    assert_eq!(state_after(&[r.clone(), wipe.clone()]), Wiping);
    assert!(Wiping.is_armed());
    let provisioning = after(&[r.clone(), wipe.clone()])
        .machine(BMC)
        .unwrap()
        .unwrap()
        .provisioning
        .expect("the wipe's provisioning");
    assert_eq!(provisioning.purpose, Purpose::Wipe);
    assert_eq!(provisioning.provision_id, r.event_id);

    let installed = about_provisioning(
        &r,
        subjects::INSTALL_COMPLETED,
        &InstallCompleted {
            provision_id: r.event_id,
            profile: "wipe".to_string(),
        },
        5,
    );
    assert_eq!(
        state_after(&[r.clone(), wipe.clone(), installed]),
        Wiping,
        "a wipe is not an install"
    );
    let wiped = about_provisioning(
        &r,
        subjects::WIPE_COMPLETED,
        &WipeCompleted {
            provision_id: r.event_id,
            profile: "wipe".to_string(),
            redfish_url: Some("https://10.0.0.1".to_string()),
        },
        10,
    );
    assert_eq!(
        state_after(&[r.clone(), wipe.clone(), wiped.clone()]),
        Retiring
    );
    let refused = about_provisioning(
        &r,
        subjects::POWER_FAILED,
        &PowerFailed {
            step: PowerStep::Reset,
            provision_id: Some(r.event_id),
            system: None,
            reason: "ForceOff refused".to_string(),
        },
        20,
    );
    assert_eq!(
        state_after(&[r.clone(), wipe.clone(), wiped.clone(), refused]),
        RetireFailed
    );
    assert_eq!(
        state_after(&[r.clone(), wipe, wiped, retired(&r, true)]),
        Retired
    );
}

#[test]
fn a_wipe_for_another_retirement_arms_nothing() {
    let r = retire(10, true);
    let other = retire(11, true);
    assert_eq!(
        state_after(&[r, other.clone(), wipe_assigned(&retire(10, true))]),
        Retiring,
        "only the current retirement's wipe arms"
    );
    let _ = other;
}

#[test]
fn every_rescan_outcome_counts_in_event_time_order() {
    // Two rescans overlap: the first fails after the second was asked for, so it answers a
    // request that is no longer current, and it still says the BMC is silent.
    let first = rescan(10, BMC, Some(3));
    let second = rescan(11, BMC, Some(3));
    let silent = scrape_failed_kind(&first, ScrapeFailureKind::Unreachable, "refused");
    let health = after(&[first.clone(), second.clone(), silent.clone()])
        .machine(BMC)
        .unwrap()
        .unwrap()
        .bmc_health;
    assert_eq!(health.failing_since, Some(at(11)));

    // A failure older than the last answer says nothing about the BMC now.
    let answered = scraped(&second, inventory("DL360", "Intel Xeon", &[HOST]));
    let mut late = scrape_failed_kind(&first, ScrapeFailureKind::Timeout, "timed out");
    late.event_id = uuid::Uuid::new_v4();
    late.time = at(5);
    let health = after(&[first, second, answered, late])
        .machine(BMC)
        .unwrap()
        .unwrap()
        .bmc_health;
    assert_eq!(health.failing_since, None);
    assert_eq!(health.last_seen, Some(at(12)));
}

#[test]
fn a_stale_answer_stores_no_inventory_but_says_the_bmc_answers() {
    // The first rescan's inventory comes after the second rescan was asked for and has
    // failed: it answers a request that is no longer current, and the BMC did answer.
    let first = rescan(10, BMC, Some(3));
    let second = rescan(11, BMC, Some(3));
    let silent = scrape_failed_kind(&second, ScrapeFailureKind::Unreachable, "refused");
    let mut late = scraped(&first, inventory("R7525", "AMD EPYC", &[HOST]));
    late.time = at(20);
    let detail = after(&[first, second, silent, late])
        .machine(BMC)
        .unwrap()
        .unwrap();
    assert_eq!(detail.bmc_health.failing_since, None);
    assert_eq!(detail.bmc_health.last_seen, Some(at(20)));
    assert_eq!(
        detail.machine.system_model.as_deref(),
        Some("DL360"),
        "the stale inventory is not stored"
    );
}
