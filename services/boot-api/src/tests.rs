//! The HTTP contract through `router(state).oneshot(request)`, against an index built from
//! fixture events: Pixiecore's answer shape (../shared/netboot/README.md §1.2), 404
//! semantics, MAC notations, stable answers, one event per boot, iPXE scripts, phone-home
//! checks, arming and the deadline.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use metal_core::events::{
    BootPath, BootServed, InstallCompleted, ProvisionRequested, Purpose, RetireRequested,
};
use metal_core::profiles::Profiles;
use metal_core::query::MachineState;
use metal_core::{subjects, MachineId};
use metal_projection::fixtures::{
    self, about_provisioning, assigned, inventory, onboarding, provision, request, stored,
};
use metal_projection::Projection;
use tokio::sync::mpsc;
use tower::ServiceExt;

use crate::boot_events::QueuedEvent;
use crate::{indexed, router, AppState, BootEvents, BootSpec, TokenKey};

const SHIPPED_PROFILES: &str = include_str!("../../../profiles/boot-profiles.toml");

const ARMED_BMC: &str = "aa:bb:cc:00:00:01";
const ARMED_HOST: &str = "52:54:00:12:34:56";
const ARMED_SECOND_NIC: &str = "52:54:00:12:34:57";
const IDLE_HOST: &str = "52:54:00:ab:cd:ef";
const INSTALLED_BMC: &str = "aa:bb:cc:00:00:03";
const INSTALLED_HOST: &str = "52:54:00:00:00:03";
const SHARED_HOST: &str = "52:54:00:00:00:99";

fn key() -> TokenKey {
    TokenKey::new("TEST_KEY", b"test key of at least sixteen bytes".to_vec()).unwrap()
}

struct Fixture {
    state: AppState,
    queue: mpsc::Receiver<QueuedEvent>,
    armed_provision: metal_core::Envelope,
}

/// Machines: armed (two NICs), inventoried only, installed, and two sharing a NIC.
fn fixture() -> Fixture {
    let mut messages = onboarding(
        1,
        ARMED_BMC,
        inventory(
            "DL360",
            "Intel(R) Xeon(R) Gold 6130",
            &[ARMED_HOST, ARMED_SECOND_NIC],
        ),
    );
    messages.extend(onboarding(
        4,
        "aa:bb:cc:00:00:02",
        inventory("DL385", "AMD EPYC 7302", &[IDLE_HOST]),
    ));
    messages.extend(onboarding(
        7,
        INSTALLED_BMC,
        inventory("DL360", "Intel Xeon", &[INSTALLED_HOST]),
    ));
    messages.extend(onboarding(
        10,
        "aa:bb:cc:00:00:04",
        inventory("DL360", "Intel Xeon", &[SHARED_HOST]),
    ));
    messages.extend(onboarding(
        13,
        "aa:bb:cc:00:00:05",
        inventory("DL360", "Intel Xeon", &[SHARED_HOST]),
    ));
    let armed = provision(20, ARMED_BMC, None);
    let installed = provision(22, INSTALLED_BMC, None);
    let installed_assigned = assigned(&installed, "G1");
    let done = about_provisioning(
        &installed,
        subjects::INSTALL_COMPLETED,
        &InstallCompleted {
            provision_id: installed.event_id,
            profile: "G1".to_string(),
        },
        60,
    );
    messages.extend([
        stored(20, &armed),
        stored(21, &assigned(&armed, "G1")),
        stored(22, &installed),
        stored(23, &installed_assigned),
        stored(24, &done),
    ]);
    let mut projection = Projection::open_in_memory().unwrap();
    projection.apply_batch(&messages).unwrap();
    let targets = projection.boot_targets(None).unwrap();
    let (live, index) = indexed(projection, targets).unwrap();
    let (events, queue) = BootEvents::new(Duration::from_secs(300));
    Fixture {
        state: AppState {
            live,
            index,
            events: Arc::new(events),
            key: key(),
            public_url: "http://boot.test:8081".to_string(),
            event_window: Duration::from_secs(300),
            js: None,
        },
        queue,
        armed_provision: armed,
    }
}

async fn get(state: &AppState, uri: &str) -> (StatusCode, Vec<u8>) {
    let response = router(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap();
    (status, body.to_vec())
}

/// The queued events, decoded as every consumer of the stream decodes them.
fn drain(queue: &mut mpsc::Receiver<QueuedEvent>) -> Vec<metal_core::Envelope> {
    let mut out = Vec::new();
    while let Ok(event) = queue.try_recv() {
        let envelope: metal_core::Envelope = serde_json::from_slice(&event.payload).unwrap();
        assert_eq!(envelope.event_type, event.event_type);
        assert_eq!(envelope.event_id, event.event_id);
        out.push(envelope);
    }
    out
}

#[tokio::test]
async fn pixiecore_gets_exactly_its_fields_for_an_armed_machine() {
    let f = fixture();
    let (status, body) = get(&f.state, &format!("/v1/boot/{ARMED_HOST}")).await;
    assert_eq!(status, StatusCode::OK);
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let object = value.as_object().unwrap();
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["cmdline", "initrd", "kernel", "message"]);
    assert!(object["kernel"].is_string());
    assert!(
        object["cmdline"].is_string(),
        "cmdline must be a string, not the deprecated object"
    );
    assert!(object["message"].is_string());
    let initrd = object["initrd"].as_array().unwrap();
    assert_eq!(initrd.len(), 1);
    assert!(initrd.iter().all(|u| u.is_string()));
    let spec: BootSpec = serde_json::from_value(value.clone()).unwrap();
    for url in std::iter::once(&spec.kernel).chain(&spec.initrd) {
        assert!(
            url.starts_with("http://") || url.starts_with("https://"),
            "{url} not absolute"
        );
    }
    let machine_id = MachineId::from_bmc_mac(&fixtures::mac(ARMED_BMC));
    let token = key().token(machine_id, f.armed_provision.event_id);
    assert_eq!(
        spec.cmdline,
        format!(
            "console=ttyS0 id={machine_id} bmc={ARMED_BMC} BOOTIF={ARMED_HOST} p=G1 token={token} home=http://boot.test:8081/v1/machines/{machine_id}/installed"
        )
    );
    assert!(!spec.cmdline.contains('{') && !spec.cmdline.contains('\n'));
}

#[tokio::test]
async fn mac_notations_all_find_the_machine() {
    let f = fixture();
    for uri in [
        "/v1/boot/52:54:00:12:34:56",
        "/v1/boot/52%3A54%3A00%3A12%3A34%3A56",
        "/v1/boot/52%3a54%3a00%3a12%3a34%3a56",
        "/v1/boot/52:54:00:12:34:56"
            .to_uppercase()
            .replace("/V1/BOOT/", "/v1/boot/")
            .as_str(),
        "/v1/boot/52-54-00-12-34-56",
        "/v1/boot/5254.0012.3456",
        // The second NIC of the same machine.
        "/v1/boot/52:54:00:12:34:57",
    ] {
        let (status, _) = get(&f.state, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn everything_not_armed_is_a_404() {
    let f = fixture();
    for uri in [
        format!("/v1/boot/{IDLE_HOST}"),
        format!("/v1/boot/{INSTALLED_HOST}"),
        format!("/v1/boot/{SHARED_HOST}"),
        "/v1/boot/52:54:00:99:99:99".to_string(),
        "/v1/boot/not-a-mac".to_string(),
        "/v1/boot/52:54:00:12:34".to_string(),
        "/v1/boot/%FF%FE".to_string(),
        "/v1/boot/ff:ff:ff:ff:ff:ff".to_string(),
        format!("/v1/boot/{}", fixtures::ILO_VIRTUAL_NIC),
        format!("/v1/boot/{ARMED_BMC}"),
        "/v1/boot/".to_string(),
        format!("/v1/boot/{ARMED_HOST}/extra"),
    ] {
        let (status, body) = get(&f.state, &uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert!(
            serde_json::from_slice::<serde_json::Value>(&body).is_err(),
            "{uri}: a 404 body is not a boot spec"
        );
    }
}

#[tokio::test]
async fn five_calls_of_one_boot_get_one_answer_and_one_event() {
    let mut f = fixture();
    let uri = format!("/v1/boot/{ARMED_HOST}");
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(get(&f.state, &uri).await);
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "answers changed within a boot"
    );
    let events = drain(&mut f.queue);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event_type, subjects::BOOT_SERVED);
    let served: BootServed = events[0].data_as().unwrap();
    assert_eq!(served.provision_id, f.armed_provision.event_id);
    assert_eq!(served.path, BootPath::Pixiecore);
    assert_eq!(events[0].correlation_id, f.armed_provision.event_id);
    crate::tests::schema_valid(&events[0]);
    // The same boot asking over iPXE is the same outcome; a storm stays one event per
    // MAC and outcome.
    for _ in 0..50 {
        get(&f.state, &format!("/v1/ipxe/{ARMED_HOST}")).await;
        get(&f.state, &format!("/v1/boot/{IDLE_HOST}")).await;
        get(&f.state, "/v1/boot/52:54:00:99:99:99").await;
    }
    let events = drain(&mut f.queue);
    let mut types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    types.sort();
    assert_eq!(types, [subjects::BOOT_IGNORED, subjects::BOOT_UNKNOWN]);
    for event in &events {
        crate::tests::schema_valid(event);
    }
    let unknown = events
        .iter()
        .find(|e| e.event_type == subjects::BOOT_UNKNOWN)
        .unwrap();
    assert!(unknown.machine_id.is_none());
    assert_eq!(f.state.events.dropped(), 0);
}

pub(crate) fn schema_valid(event: &metal_core::Envelope) {
    test_harness::schemas::validate_event(event);
}

#[tokio::test]
async fn ipxe_scripts_boot_the_armed_and_exit_for_the_rest() {
    let f = fixture();
    let (status, body) = get(&f.state, &format!("/v1/ipxe/{ARMED_HOST}")).await;
    assert_eq!(status, StatusCode::OK);
    let script = String::from_utf8(body).unwrap();
    let lines: Vec<&str> = script.lines().collect();
    assert_eq!(lines[0], "#!ipxe");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("kernel http://images.example/G1/vmlinuz console=ttyS0 ")),
        "{script}"
    );
    assert!(
        lines.contains(&"initrd http://images.example/G1/initrd.img"),
        "{script}"
    );
    assert_eq!(lines.last(), Some(&"boot"));
    for uri in [
        format!("/v1/ipxe/{IDLE_HOST}"),
        format!("/v1/ipxe/{INSTALLED_HOST}"),
        "/v1/ipxe/52-54-00-99-99-99".to_string(),
        "/v1/ipxe/garbage".to_string(),
    ] {
        let (status, body) = get(&f.state, &uri).await;
        let script = String::from_utf8(body).unwrap();
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert!(
            script.starts_with("#!ipxe\n") && script.trim_end().ends_with("exit"),
            "{uri}: {script}"
        );
        assert!(!script.contains("kernel"), "{uri}: {script}");
    }
    let (status, body) = get(&f.state, "/boot.ipxe").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "#!ipxe\nchain http://boot.test:8081/v1/ipxe/${net0/mac:hexhyp} || exit\n"
    );
}

async fn post(
    state: &AppState,
    uri: &str,
    bearer: Option<&str>,
    body: &str,
) -> (StatusCode, String) {
    let mut request = Request::post(uri);
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = router(state.clone())
        .oneshot(request.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn phone_home_refuses_wrong_old_and_foreign_tokens() {
    let f = fixture();
    let armed = MachineId::from_bmc_mac(&fixtures::mac(ARMED_BMC));
    let installed = MachineId::from_bmc_mac(&fixtures::mac(INSTALLED_BMC));
    let good = key().token(armed, f.armed_provision.event_id);
    let installed_old = key().token(installed, provision(22, INSTALLED_BMC, None).event_id);
    let cases = [
        (
            format!("/v1/machines/{armed}/installed"),
            None,
            String::new(),
            "no token",
        ),
        (
            format!("/v1/machines/{armed}/installed"),
            Some("0".repeat(32)),
            String::new(),
            "does not match",
        ),
        // The armed machine's token presented for another machine.
        (
            format!("/v1/machines/{installed}/installed"),
            Some(good.clone()),
            String::new(),
            "not being provisioned",
        ),
        // An installed machine's own, old token: replayed.
        (
            format!("/v1/machines/{installed}/installed"),
            Some(installed_old),
            String::new(),
            "not being provisioned",
        ),
        (
            format!(
                "/v1/machines/{}/installed",
                MachineId(uuid::Uuid::from_u128(5))
            ),
            Some(good.clone()),
            String::new(),
            "no such machine",
        ),
        (
            format!("/v1/machines/{armed}/failed"),
            None,
            r#"{"token": "nope"}"#.to_string(),
            "does not match",
        ),
    ];
    for (uri, bearer, body, why) in cases {
        let (status, text) = post(&f.state, &uri, bearer.as_deref(), &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri} {why}: {text}");
        assert!(text.contains(why), "{uri}: {text:?} lacks {why:?}");
        assert!(!text.contains(&good), "a token never appears in an answer");
    }
    let (status, _) = post(
        &f.state,
        &format!("/v1/machines/{armed}/installed"),
        None,
        "{not json",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = post(
        &f.state,
        "/v1/machines/not-a-uuid/installed",
        Some(&good),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let big = format!(r#"{{"token": "{}"}}"#, "x".repeat(64 * 1024));
    let (status, _) = post(
        &f.state,
        &format!("/v1/machines/{armed}/installed"),
        None,
        &big,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Nothing changed: still armed.
    assert_eq!(
        get(&f.state, &format!("/v1/boot/{ARMED_HOST}")).await.0,
        StatusCode::OK
    );
    // A good token without an event log to record it: 503, still armed.
    let (status, _) = post(
        &f.state,
        &format!("/v1/machines/{armed}/installed"),
        Some(&good),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn index_follows_batches_applied_after_start() {
    let f = fixture();
    let idle_bmc = "aa:bb:cc:00:00:02";
    assert_eq!(
        get(&f.state, &format!("/v1/boot/{IDLE_HOST}")).await.0,
        StatusCode::NOT_FOUND
    );
    let request = provision(30, idle_bmc, Some("G2"));
    f.state
        .live
        .apply_batch(vec![
            stored(30, &request),
            stored(31, &assigned(&request, "G2")),
        ])
        .await
        .unwrap();
    let (status, body) = get(&f.state, &format!("/v1/boot/{IDLE_HOST}")).await;
    assert_eq!(status, StatusCode::OK);
    let spec: BootSpec = serde_json::from_slice(&body).unwrap();
    assert!(spec.kernel.contains("/G2/"));
    let done = about_provisioning(
        &request,
        subjects::INSTALL_COMPLETED,
        &InstallCompleted {
            provision_id: request.event_id,
            profile: "G2".to_string(),
        },
        5,
    );
    f.state
        .live
        .apply_batch(vec![stored(32, &done)])
        .await
        .unwrap();
    assert_eq!(
        get(&f.state, &format!("/v1/boot/{IDLE_HOST}")).await.0,
        StatusCode::NOT_FOUND
    );
    let id = MachineId::from_bmc_mac(&fixtures::mac(idle_bmc));
    assert_eq!(
        f.state.index.machine(&id).unwrap().state,
        MachineState::Installed
    );
}

#[test]
fn assign_by_name_by_selectors_or_says_why_not() {
    let profiles = Profiles::parse(SHIPPED_PROFILES, Path::new("boot-profiles.toml")).unwrap();
    let mut projection = Projection::open_in_memory().unwrap();
    let mut messages = onboarding(
        1,
        ARMED_BMC,
        inventory("DL360", "Intel(R) Xeon(R) Gold", &[ARMED_HOST]),
    );
    messages.extend(onboarding(
        4,
        "aa:bb:cc:00:00:07",
        inventory("Altra", "Ampere Altra", &[IDLE_HOST]),
    ));
    messages.push(request(7, "aa:bb:cc:00:00:08").0);
    projection.apply_batch(&messages).unwrap();
    let detail = |mac: &str| projection.machine(mac).unwrap();
    let ask = |profile: Option<&str>, power: bool| ProvisionRequested {
        profile: profile.map(str::to_string),
        power,
        requested_by: None,
        force: false,
    };
    let intel = detail(ARMED_BMC);
    let chosen = crate::provision::assign(&ask(None, true), intel.as_ref(), &profiles).unwrap();
    assert_eq!(
        (chosen.profile.as_str(), chosen.chosen_by.as_str()),
        ("G1", "selectors")
    );
    assert!(chosen.power);
    assert_eq!(chosen.redfish_url.as_deref(), Some("https://10.0.0.1"));
    let named =
        crate::provision::assign(&ask(Some("G2"), false), intel.as_ref(), &profiles).unwrap();
    assert_eq!(
        (named.profile.as_str(), named.chosen_by.as_str()),
        ("G2", "operator")
    );
    let cases = [
        (
            ask(Some("G9"), false),
            detail(ARMED_BMC),
            "unknown profile \"G9\" (profiles: G1, G2)",
        ),
        (
            ask(None, false),
            detail("aa:bb:cc:00:00:07"),
            "no profile matches this machine",
        ),
        (
            ask(None, false),
            detail("aa:bb:cc:00:00:08"),
            "machine is requested, without an inventory",
        ),
        (ask(None, false), None, "no such machine"),
    ];
    for (request, machine, why) in cases {
        let error = crate::provision::assign(&request, machine.as_ref(), &profiles).unwrap_err();
        assert!(error.contains(why), "{error:?} lacks {why:?}");
    }
}

#[tokio::test]
async fn overdue_provisionings_fail_with_a_timeout_once_per_provisioning() {
    let f = fixture();
    let assigned_at = f
        .state
        .index
        .armed_at_or_before(time::OffsetDateTime::now_utc() + time::Duration::days(36_500))[0]
        .1
        .assigned_at;
    let deadline = Duration::from_secs(600);
    let early = crate::provision::overdue(
        &f.state.index,
        deadline,
        assigned_at + time::Duration::seconds(599),
    );
    assert!(early.is_empty());
    let late = crate::provision::overdue(
        &f.state.index,
        deadline,
        assigned_at + time::Duration::seconds(600),
    );
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].event_type, subjects::INSTALL_FAILED);
    let again = crate::provision::overdue(
        &f.state.index,
        deadline,
        assigned_at + time::Duration::seconds(900),
    );
    assert_eq!(
        again[0].event_id, late[0].event_id,
        "replicas and later sweeps send the same event id"
    );
    let data: metal_core::events::InstallFailed = late[0].data_as().unwrap();
    assert!(
        data.reason.contains("timeout") && data.reason.contains("600 s"),
        "{}",
        data.reason
    );
    schema_valid(&late[0]);
}

#[test]
fn old_provision_requests_arm_nothing() {
    let requested = fixtures::at(0);
    let limit = time::Duration::try_from(crate::provision::MAX_REQUEST_AGE).unwrap();
    assert_eq!(crate::provision::stale(requested, requested + limit), None);
    let reason = crate::provision::stale(requested, requested + limit + time::Duration::minutes(5))
        .expect("stale");
    assert!(
        reason.starts_with("stale: requested 20 min ago"),
        "{reason}"
    );
}

#[tokio::test]
async fn healthz_answers() {
    let f = fixture();
    assert_eq!(get(&f.state, "/healthz").await.0, StatusCode::OK);
}

/// `metal-cli retire --wipe` of the machine of `bmc_mac` at `sequence`.
fn retire(sequence: u64, bmc_mac: &str, wipe: bool) -> metal_core::Envelope {
    let mac = fixtures::mac(bmc_mac);
    let id = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("retire {bmc_mac} {sequence}").as_bytes(),
    );
    metal_core::Envelope {
        event_id: id,
        event_type: subjects::RETIRE_REQUESTED.to_string(),
        machine_id: Some(MachineId::from_bmc_mac(&mac)),
        bmc_mac: Some(mac),
        time: fixtures::at(sequence as i64),
        correlation_id: id,
        causation_id: None,
        data: serde_json::to_value(RetireRequested {
            wipe,
            redfish_url: Some("https://10.0.0.1".to_string()),
            requested_by: Some("test".to_string()),
        })
        .unwrap(),
    }
}

#[tokio::test]
async fn a_wipe_phones_home_to_wiped_and_only_there() {
    let f = fixture();
    // The installed machine is retired with a wipe: boot-api's answer arms the wipe profile.
    let profiles = Profiles::parse(SHIPPED_PROFILES, Path::new("boot-profiles.toml")).unwrap();
    let request = retire(40, INSTALLED_BMC, true);
    let installed = MachineId::from_bmc_mac(&fixtures::mac(INSTALLED_BMC));
    let machine = f
        .state
        .live
        .with(move |p| p.machine(&installed.to_string()))
        .await
        .unwrap()
        .unwrap();
    let mut wipe = crate::provision::assign_wipe(
        &request.data_as::<RetireRequested>().unwrap(),
        machine.as_ref(),
        &profiles,
    )
    .unwrap()
    .expect("a wipe");
    wipe.provision_id = request.event_id;
    let armed_wipe = fixtures::answer(&request, subjects::PROFILE_ASSIGNED, &wipe);
    schema_valid(&armed_wipe);
    f.state
        .live
        .apply_batch(vec![stored(40, &request), stored(41, &armed_wipe)])
        .await
        .unwrap();
    assert_eq!(
        f.state.index.machine(&installed).unwrap().state,
        MachineState::Wiping
    );

    // Pixiecore gets the wipe profile, its phone-home URL ending in /wiped.
    let (status, body) = get(&f.state, &format!("/v1/boot/{INSTALLED_HOST}")).await;
    assert_eq!(status, StatusCode::OK);
    let spec: BootSpec = serde_json::from_slice(&body).unwrap();
    let token = key().token(installed, request.event_id);
    let wiped = format!("http://boot.test:8081/v1/machines/{installed}/wiped");
    assert!(spec.kernel.contains("/wipe/"), "{}", spec.kernel);
    assert!(
        spec.cmdline.contains(&format!("metal.phone_home={wiped} "))
            || spec.cmdline.ends_with(&format!("metal.phone_home={wiped}")),
        "{}",
        spec.cmdline
    );
    assert!(spec.cmdline.contains(&format!("metal.token={token}")));
    assert!(spec.message.contains("wiping"), "{}", spec.message);
    assert_eq!(
        crate::http::phone_home_url("http://b", installed, Purpose::Install),
        format!("http://b/v1/machines/{installed}/installed")
    );

    // /installed with the wipe's token, /wiped of an install, a wrong token: refused.
    let armed = MachineId::from_bmc_mac(&fixtures::mac(ARMED_BMC));
    let armed_token = key().token(armed, f.armed_provision.event_id);
    let cases = [
        (
            format!("/v1/machines/{installed}/installed"),
            token.clone(),
            "wiping before its retirement",
        ),
        (
            format!("/v1/machines/{armed}/wiped"),
            armed_token.clone(),
            "not wiping",
        ),
        (
            format!("/v1/machines/{installed}/wiped"),
            key().token(installed, provision(22, INSTALLED_BMC, None).event_id),
            "does not match",
        ),
        (
            format!("/v1/machines/{installed}/wiped"),
            armed_token.clone(),
            "does not match",
        ),
    ];
    for (uri, bearer, why) in cases {
        let (status, text) = post(&f.state, &uri, Some(&bearer), "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri} {why}: {text}");
        assert!(text.contains(why), "{uri}: {text:?} lacks {why:?}");
    }
    // The wipe's own token in a JSON body passes every check (503: no event log here).
    let (status, text) = post(
        &f.state,
        &format!("/v1/machines/{installed}/wiped"),
        None,
        &format!(r#"{{"token": "{token}"}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");

    // The pure check, outcome by outcome.
    let target = f.state.index.machine(&installed).unwrap();
    let check = |outcome| {
        crate::http::check_phone_home(&key(), installed, Some(&target), Some(&token), outcome)
    };
    assert_eq!(check(crate::http::Outcome::Wiped), Ok(()));
    assert_eq!(
        check(crate::http::Outcome::Failed),
        Ok(()),
        "a wipe may fail"
    );
    assert!(check(crate::http::Outcome::Installed).is_err());
    assert!(crate::http::check_phone_home(
        &key(),
        installed,
        Some(&target),
        None,
        crate::http::Outcome::Wiped
    )
    .unwrap_err()
    .contains("no token"));
}

#[test]
fn retirements_arm_the_wipe_profile_or_say_why_not() {
    let profiles = Profiles::parse(SHIPPED_PROFILES, Path::new("boot-profiles.toml")).unwrap();
    let mut projection = Projection::open_in_memory().unwrap();
    let mut messages = onboarding(
        1,
        ARMED_BMC,
        inventory("DL360", "Intel(R) Xeon(R) Gold", &[ARMED_HOST]),
    );
    messages.push(request(4, "aa:bb:cc:00:00:08").0);
    projection.apply_batch(&messages).unwrap();
    let machine = projection.machine(ARMED_BMC).unwrap();
    let ask = |wipe: bool| {
        retire(10, ARMED_BMC, wipe)
            .data_as::<RetireRequested>()
            .unwrap()
    };
    let assign = |wipe: bool, machine: Option<&metal_core::query::MachineDetail>, profiles| {
        crate::provision::assign_wipe(&ask(wipe), machine, profiles)
    };

    // Without a wipe boot-api has nothing to do.
    assert_eq!(assign(false, machine.as_ref(), &profiles), Ok(None));
    let wipe = assign(true, machine.as_ref(), &profiles)
        .unwrap()
        .expect("the wipe profile");
    assert_eq!(wipe.profile, "WIPE");
    assert_eq!(wipe.purpose, Purpose::Wipe);
    assert_eq!(wipe.chosen_by, "retire");
    assert!(wipe.power);
    assert_eq!(wipe.redfish_url.as_deref(), Some("https://10.0.0.1"));

    let plain = Profiles::parse(
        "[[profile]]\nname = \"G1\"\nkernel = \"http://h/k\"\n",
        Path::new("plain.toml"),
    )
    .unwrap();
    let error = assign(true, machine.as_ref(), &plain).unwrap_err();
    assert!(error.contains("no wipe profile"), "{error}");
    let error = assign(true, None, &profiles).unwrap_err();
    assert!(error.contains("no such machine"), "{error}");
    // A machine whose BMC was never located, asked without a URL: no power, no wipe.
    let unlocated = projection.machine("aa:bb:cc:00:00:08").unwrap();
    let mut request = ask(true);
    request.redfish_url = None;
    let error = crate::provision::assign_wipe(&request, unlocated.as_ref(), &profiles).unwrap_err();
    assert!(error.contains("no Redfish URL"), "{error}");

    // The wipe profile is never an install's, not even by name.
    let by_name = ProvisionRequested {
        profile: Some("WIPE".to_string()),
        power: false,
        requested_by: None,
        force: false,
    };
    let error = crate::provision::assign(&by_name, machine.as_ref(), &profiles).unwrap_err();
    assert!(error.contains("is the wipe profile"), "{error}");
}
