//! Boot override and power through the scraper's handler, against recording fake BMCs
//! (test_harness::fake_bmc with a `PowerSpec`): what is PATCHed and POSTed for each system
//! shape, what is refused before anything is sent, and the events that come out (each
//! validated against schemas/). The handler is called directly with the input the consumer
//! loop would give it; tests/power_nats.rs goes through NATS against sushy-tools.

mod common;

use std::sync::Once;
use std::time::Duration;

use metal_core::config::Config;
use metal_core::events::{
    PowerAction, PowerDone, PowerFailed, PowerRequested, PowerStep, ProfileAssigned,
};
use metal_core::responder::{Handler, Input, Outcome};
use metal_core::{subjects, Decoded, Envelope, Mac};
use redfish_scraper::handler::power_event_id;
use redfish_scraper::http::HttpSettings;
use redfish_scraper::ScrapeHandler;
use serde_json::{json, Value};
use test_harness::fake_bmc::{
    Auth, FakeBmcSpec, FakeFleet, PowerSpec, ResetTypes, RESET_ACTION, SYSTEM,
};
use test_harness::nats::free_port;
use test_harness::schemas::validate_event;
use uuid::Uuid;

const USER: &str = "operator";
const PASSWORD: &str = "power-bmc-pw-51c9e0";
const PASSWORD_ENV: &str = "REDFISH_SCRAPER_POWER_TEST_PASSWORD";
const PROVISION_ID: Uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);

fn handler() -> ScrapeHandler {
    static SET: Once = Once::new();
    // Set once, before any handler reads it; never changed afterwards.
    SET.call_once(|| std::env::set_var(PASSWORD_ENV, PASSWORD));
    let mut config = Config::default();
    config.redfish.username = USER.to_string();
    config.redfish.password_env = PASSWORD_ENV.to_string();
    let settings = HttpSettings {
        request_timeout: Duration::from_secs(5),
        scrape_deadline: Duration::from_secs(20),
        retries: 0,
        backoff: Duration::from_millis(10),
        ..HttpSettings::from_config(&config.redfish)
    };
    ScrapeHandler::with_settings(config.redfish, settings).expect("handler")
}

fn sessions() -> Auth {
    Auth::Sessions {
        user: USER.to_string(),
        password: PASSWORD.to_string(),
        expire_after_requests: None,
        allow_basic: false,
    }
}

async fn bmc(power: PowerSpec) -> FakeFleet {
    FakeFleet::start(vec![FakeBmcSpec::synthetic().auth(sessions()).power(power)]).await
}

fn bmc_mac() -> Mac {
    Mac::parse_any("aa:bb:cc:00:20:01").unwrap()
}

fn event(event_type: &str, data: Value) -> Envelope {
    common::event_for(bmc_mac(), event_type, data)
}

fn assigned(redfish_url: &str, power: bool) -> Envelope {
    event(
        subjects::PROFILE_ASSIGNED,
        serde_json::to_value(ProfileAssigned {
            provision_id: PROVISION_ID,
            profile: "G1".to_string(),
            chosen_by: "operator".to_string(),
            kernel: "http://boot.example/vmlinuz".to_string(),
            initrd: vec!["http://boot.example/initrd".to_string()],
            cmdline: "console=ttyS0 metal.token={{token}}".to_string(),
            power,
            redfish_url: Some(redfish_url.to_string()),
            purpose: Default::default(),
        })
        .unwrap(),
    )
}

fn requested(redfish_url: &str, action: PowerAction) -> Envelope {
    event(
        subjects::POWER_REQUESTED,
        serde_json::to_value(PowerRequested {
            action,
            redfish_url: redfish_url.to_string(),
            requested_by: Some("ops@example".to_string()),
        })
        .unwrap(),
    )
}

/// The handler's answer to `cause` on the given delivery (of 3), every event validated.
async fn handle(cause: &Envelope, delivery_attempt: u64) -> Outcome {
    let input = Input {
        decoded: Decoded::Event(cause.clone()),
        sequence: 1,
        delivery_attempt,
        max_deliver: 3,
    };
    let outcome = handler().handle(input).await;
    if let Outcome::Publish(events) = &outcome {
        for event in events {
            validate_event(event);
            assert_eq!(event.causation_id, Some(cause.event_id));
            assert_eq!(event.correlation_id, cause.correlation_id);
            assert_eq!(event.machine_id, cause.machine_id);
        }
    }
    outcome
}

async fn published(cause: &Envelope) -> Vec<Envelope> {
    match handle(cause, 1).await {
        Outcome::Publish(events) => events,
        Outcome::Retry { reason, .. } => panic!("unexpected retry: {reason}"),
    }
}

fn done(event: &Envelope, step: PowerStep) -> PowerDone {
    assert_eq!(event.event_type, subjects::POWER_DONE, "{}", event.data);
    let data: PowerDone = event.data_as().unwrap();
    assert_eq!(data.step, step, "{}", event.data);
    data
}

fn failed(event: &Envelope, step: PowerStep) -> PowerFailed {
    assert_eq!(event.event_type, subjects::POWER_FAILED, "{}", event.data);
    let data: PowerFailed = event.data_as().unwrap();
    assert_eq!(data.step, step, "{}", event.data);
    data
}

/// The (method, path, body) of every write the BMC received.
fn writes(fleet: &FakeFleet) -> Vec<(String, String, Value)> {
    fleet
        .writes(0)
        .into_iter()
        .map(|w| (w.method, w.path, w.body))
        .collect()
}

fn patch(body: Value) -> (String, String, Value) {
    ("PATCH".to_string(), SYSTEM.to_string(), body)
}

fn reset(reset_type: &str) -> (String, String, Value) {
    (
        "POST".to_string(),
        RESET_ACTION.to_string(),
        json!({"ResetType": reset_type}),
    )
}

#[tokio::test]
async fn provisioning_asks_for_pxe_once_uefi_then_restarts() {
    // An iLO-like system: UEFI offered, weak ETags required on PATCH, every reset type.
    let fleet = bmc(PowerSpec::default()
        .boot_mode("Legacy", Some(&["Legacy", "UEFI"]))
        .boot_enabled(Some(&["Disabled", "Once", "Continuous"]))
        .reset_types(ResetTypes::inline(&[
            "On",
            "ForceOff",
            "GracefulShutdown",
            "ForceRestart",
            "GracefulRestart",
            "PowerCycle",
        ]))
        .etag(true))
    .await;
    let cause = assigned(&fleet.base_url(0), true);
    let events = published(&cause).await;

    assert_eq!(events.len(), 2, "one event per step");
    let boot = done(&events[0], PowerStep::BootOverride);
    assert_eq!(boot.detail, "Pxe Once UEFI");
    assert_eq!(boot.provision_id, Some(PROVISION_ID));
    assert_eq!(boot.system, SYSTEM);
    assert_eq!(boot.power_state.as_deref(), Some("On"));
    let reset_done = done(&events[1], PowerStep::Reset);
    assert_eq!(reset_done.detail, "ForceRestart");
    assert_eq!(
        events[0].event_id,
        power_event_id(
            cause.event_id,
            subjects::POWER_DONE,
            PowerStep::BootOverride
        )
    );
    assert_eq!(
        events[1].event_id,
        metal_core::ids::derived_event_id(cause.event_id, "machine.power.done/reset")
    );

    assert_eq!(
        writes(&fleet),
        vec![
            patch(json!({"Boot": {"BootSourceOverrideTarget": "Pxe",
                                  "BootSourceOverrideEnabled": "Once",
                                  "BootSourceOverrideMode": "UEFI"}})),
            reset("ForceRestart"),
        ]
    );
    let recorded = fleet.writes(0);
    assert_eq!(
        recorded[0].if_match.as_deref(),
        Some("W/\"1\""),
        "the ETag read with the system"
    );
    assert_eq!(recorded[0].status, 204);
    assert_eq!(fleet.boots(0), vec!["Pxe".to_string()], "it netbooted");
    let stats = fleet.stats(0);
    assert_eq!(stats.logins, 1);
    assert_eq!(stats.session_deletions, 1, "logged out");

    // A redelivery answers with the same ids, so the stream keeps one of each.
    let again = published(&cause).await;
    let ids = |events: &[Envelope]| events.iter().map(|e| e.event_id).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&events));
    assert!(!format!("{events:?}").contains(PASSWORD));
}

#[tokio::test]
async fn a_bmc_without_pxe_fails_at_the_boot_override_and_is_not_reset() {
    let fleet = bmc(PowerSpec::default().boot_targets(Some(&["None", "Hdd", "Cd"]))).await;
    let events = published(&assigned(&fleet.base_url(0), true)).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let data = failed(&events[0], PowerStep::BootOverride);
    assert!(
        data.reason.contains("None, Hdd, Cd"),
        "names the allowed targets: {}",
        data.reason
    );
    assert_eq!(data.system.as_deref(), Some(SYSTEM));
    assert_eq!(data.provision_id, Some(PROVISION_ID));
    assert!(
        writes(&fleet).is_empty(),
        "nothing PATCHed, no reset POSTed"
    );
    assert!(fleet.boots(0).is_empty());
}

#[tokio::test]
async fn a_bmc_without_force_restart_is_power_cycled() {
    // Reset types only in an ActionInfo, as OpenBMC publishes them; no boot mode property.
    let fleet = bmc(PowerSpec::default().reset_types(ResetTypes::action_info(&[
        "On",
        "ForceOff",
        "PowerCycle",
    ])))
    .await;
    let events = published(&assigned(&fleet.base_url(0), true)).await;
    assert_eq!(done(&events[0], PowerStep::BootOverride).detail, "Pxe Once");
    assert_eq!(done(&events[1], PowerStep::Reset).detail, "PowerCycle");
    assert_eq!(
        writes(&fleet),
        vec![
            patch(json!({"Boot": {"BootSourceOverrideTarget": "Pxe",
                                  "BootSourceOverrideEnabled": "Once"}})),
            reset("PowerCycle"),
        ]
    );
    assert_eq!(fleet.boots(0), vec!["Pxe".to_string()]);
}

#[tokio::test]
async fn a_system_that_is_off_is_powered_on() {
    let fleet = bmc(PowerSpec::default().power_state("Off")).await;
    let events = published(&assigned(&fleet.base_url(0), true)).await;
    let reset_done = done(&events[1], PowerStep::Reset);
    assert_eq!(reset_done.detail, "On");
    assert_eq!(
        reset_done.power_state.as_deref(),
        Some("Off"),
        "read before"
    );
    assert_eq!(writes(&fleet)[1], reset("On"));
    assert_eq!(fleet.power_state(0).as_deref(), Some("On"));
    assert_eq!(fleet.boots(0), vec!["Pxe".to_string()]);
}

#[tokio::test]
async fn a_refused_reset_fails_at_the_reset_with_the_bmcs_message() {
    let message = "The operation could not be completed: the server is in POST.";
    let fleet = bmc(PowerSpec::default().refuse_reset(400, message)).await;
    let events = published(&assigned(&fleet.base_url(0), true)).await;
    assert_eq!(events.len(), 2);
    done(&events[0], PowerStep::BootOverride);
    let data = failed(&events[1], PowerStep::Reset);
    assert!(data.reason.contains(message), "{}", data.reason);
    assert!(data.reason.contains("HTTP 400"), "{}", data.reason);
    assert_eq!(fleet.writes(0)[1].status, 400);
    assert_eq!(
        fleet.stats(0).session_deletions,
        1,
        "logged out after a failure too"
    );
}

#[tokio::test]
async fn operator_power_actions() {
    let fleet = bmc(PowerSpec::default().reset_types(ResetTypes::Unadvertised)).await;
    let url = fleet.base_url(0);
    let answer = |action| {
        let url = url.clone();
        async move {
            let events = published(&requested(&url, action)).await;
            assert_eq!(events.len(), 1, "{action:?}: {events:?}");
            events.into_iter().next().unwrap()
        }
    };

    let status = answer(PowerAction::Status).await;
    let data = done(&status, PowerStep::Status);
    assert_eq!((data.detail.as_str(), data.provision_id), ("On", None));
    assert_eq!(data.power_state.as_deref(), Some("On"));

    let on = done(&answer(PowerAction::On).await, PowerStep::Reset);
    assert_eq!(on.detail, "already On");
    assert!(
        writes(&fleet).is_empty(),
        "nothing sent for a system already on"
    );

    let off = done(&answer(PowerAction::Off).await, PowerStep::Reset);
    assert_eq!(off.detail, "ForceOff");
    assert_eq!(fleet.power_state(0).as_deref(), Some("Off"));
    let off_again = done(&answer(PowerAction::Off).await, PowerStep::Reset);
    assert_eq!(off_again.detail, "already Off");

    let cycle_from_off = done(&answer(PowerAction::Cycle).await, PowerStep::Reset);
    assert_eq!(cycle_from_off.detail, "On");
    let cycle = done(&answer(PowerAction::Cycle).await, PowerStep::Reset);
    assert_eq!(cycle.detail, "ForceRestart");
    assert_eq!(
        writes(&fleet),
        vec![reset("ForceOff"), reset("On"), reset("ForceRestart")]
    );
    // No boot override was asked for: both starts followed the boot order.
    assert_eq!(fleet.boots(0), vec!["BootOrder".to_string(); 2]);
}

#[tokio::test]
async fn an_unreachable_bmc_is_retried_then_reported_at_the_first_step() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let cause = assigned(&closed, true);
    assert!(matches!(handle(&cause, 1).await, Outcome::Retry { .. }));
    let Outcome::Publish(events) = handle(&cause, 3).await else {
        panic!("the last delivery reports")
    };
    assert_eq!(events.len(), 1);
    let data = failed(&events[0], PowerStep::BootOverride);
    assert!(data.reason.contains("cannot reach"), "{}", data.reason);
    assert_eq!(data.system, None);

    let status = requested(&closed, PowerAction::Status);
    let Outcome::Publish(events) = handle(&status, 3).await else {
        panic!("the last delivery reports")
    };
    failed(&events[0], PowerStep::Status);
}

#[tokio::test]
async fn assignments_without_power_are_not_ours() {
    let fleet = bmc(PowerSpec::default()).await;
    let events = published(&assigned(&fleet.base_url(0), false)).await;
    assert!(events.is_empty());
    assert_eq!(fleet.requests(0), 0, "the BMC was not contacted");
}

#[tokio::test]
async fn a_session_that_expires_at_the_patch_is_renewed_once() {
    // Authenticated requests before the PATCH: the root, Systems, the system.
    let fleet = FakeFleet::start(vec![FakeBmcSpec::synthetic()
        .auth(Auth::Sessions {
            user: USER.to_string(),
            password: PASSWORD.to_string(),
            expire_after_requests: Some(3),
            allow_basic: false,
        })
        .power(PowerSpec::default())])
    .await;
    let events = published(&assigned(&fleet.base_url(0), true)).await;
    done(&events[0], PowerStep::BootOverride);
    done(&events[1], PowerStep::Reset);
    let stats = fleet.stats(0);
    assert_eq!(stats.sessions_expired, 1);
    assert_eq!(stats.logins, 2, "one re-login");
    assert_eq!(
        writes(&fleet).len(),
        2,
        "the refused PATCH never reached the system"
    );
}

#[tokio::test]
async fn a_stale_etag_is_read_again_once() {
    let fleet = bmc(PowerSpec::default().etag(true)).await;
    let base = fleet.base_url(0);
    let credentials = metal_core::config::Credentials {
        username: USER.to_string(),
        password: metal_core::config::Secret::new(PASSWORD.to_string()),
    };
    let settings = HttpSettings {
        request_timeout: Duration::from_secs(5),
        retries: 0,
        ..HttpSettings::from_config(&metal_core::config::RedfishConfig::default())
    };
    let client = redfish_scraper::http::BmcClient::standalone(&base, settings)
        .unwrap()
        .login(Some(credentials))
        .await
        .unwrap();
    client.get_json(SYSTEM).await.unwrap().expect("the system");

    // Someone else changes the system between our read and our PATCH.
    let other = redfish_scraper::http::BmcClient::standalone(
        &base,
        HttpSettings::from_config(&metal_core::config::RedfishConfig::default()),
    )
    .unwrap()
    .login(Some(metal_core::config::Credentials {
        username: USER.to_string(),
        password: metal_core::config::Secret::new(PASSWORD.to_string()),
    }))
    .await
    .unwrap();
    other.get_json(SYSTEM).await.unwrap();
    other
        .patch_json(
            SYSTEM,
            &json!({"Boot": {"BootSourceOverrideTarget": "Hdd"}}),
        )
        .await
        .unwrap();

    client
        .patch_json(
            SYSTEM,
            &json!({"Boot": {"BootSourceOverrideTarget": "Pxe"}}),
        )
        .await
        .expect("read again and PATCHed with the fresh ETag");
    let tried: Vec<(Option<String>, u16)> = fleet
        .writes(0)
        .into_iter()
        .map(|w| (w.if_match, w.status))
        .collect();
    assert_eq!(
        tried,
        vec![
            (Some("W/\"1\"".to_string()), 204),
            (Some("W/\"1\"".to_string()), 412),
            (Some("W/\"2\"".to_string()), 204),
        ]
    );
    other.logout().await;
    client.logout().await;
}
