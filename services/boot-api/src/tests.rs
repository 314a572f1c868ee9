//! Handler tests through `app(state).oneshot(request)`, and profiles-file checks.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use metal_projection::fixtures::{self, inventory, onboarding, request, stored};
use metal_projection::{LiveProjection, Projection};
use tower::ServiceExt;

use crate::{app, AppState, BootSpec, Profiles, ProfilesError};

const SHIPPED_PROFILES: &str = include_str!("../../../profiles/boot-profiles.toml");

const INTEL_HOST: &str = "52:54:00:12:34:56";
const AMD_HOST: &str = "52:54:00:ab:cd:ef";
const ARM_HOST: &str = "52:54:00:00:00:03";
const FRESH_HOST: &str = "52:54:00:00:00:04";

fn state() -> AppState {
    let mut messages = onboarding(
        1,
        "aa:bb:cc:00:00:01",
        inventory("DL360", "Intel(R) Xeon(R) Gold 6130", &[INTEL_HOST]),
    );
    messages.extend(onboarding(
        4,
        "aa:bb:cc:00:00:02",
        inventory("DL385", "AMD EPYC 7302", &[AMD_HOST]),
    ));
    messages.extend(onboarding(
        7,
        "aa:bb:cc:00:00:03",
        inventory("Altra", "Ampere Altra Q80-30", &[ARM_HOST]),
    ));
    // Inventoried, then onboarded again: back to requested, so not to be booted.
    messages.extend(onboarding(
        10,
        "aa:bb:cc:00:00:04",
        inventory("DL360", "Intel Xeon", &[FRESH_HOST]),
    ));
    messages.push(request(13, "aa:bb:cc:00:00:04").0);
    let mut projection = Projection::open_in_memory().unwrap();
    projection.apply_batch(&messages).unwrap();
    AppState {
        live: LiveProjection::new(projection).unwrap(),
        profiles: Arc::new(
            Profiles::parse(SHIPPED_PROFILES, Path::new("boot-profiles.toml")).unwrap(),
        ),
    }
}

/// GETs `uri` and returns the status and, for a 200, the boot spec.
async fn check(state: &AppState, uri: &str) -> (StatusCode, Option<BootSpec>) {
    let response = app(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap();
    let spec = (status == StatusCode::OK).then(|| serde_json::from_slice(&body).unwrap());
    (status, spec)
}

#[tokio::test]
async fn profiles_by_cpu_vendor() {
    let state = state();
    let cases = [
        (format!("/v1/boot/{INTEL_HOST}"), Some("G1")),
        (format!("/v1/boot/{AMD_HOST}"), Some("G2")),
        (
            "/v1/boot/52%3A54%3A00%3A12%3A34%3A56".to_string(),
            Some("G1"),
        ),
        (
            "/v1/boot/52%3a54%3a00%3aAB%3aCD%3aEF".to_string(),
            Some("G2"),
        ),
        (format!("/v1/boot/{}", AMD_HOST.to_uppercase()), Some("G2")),
        // Unknown, malformed, no matching profile, not inventoried (re-onboarding).
        ("/v1/boot/52:54:00:99:99:99".to_string(), None),
        ("/v1/boot/not-a-mac".to_string(), None),
        ("/v1/boot/52:54:00:12:34".to_string(), None),
        ("/v1/boot/%FF%FE".to_string(), None),
        ("/v1/boot/ff:ff:ff:ff:ff:ff".to_string(), None),
        (format!("/v1/boot/{ARM_HOST}"), None),
        (format!("/v1/boot/{FRESH_HOST}"), None),
        // BMC NICs never boot.
        (format!("/v1/boot/{}", fixtures::ILO_VIRTUAL_NIC), None),
        ("/v1/boot/".to_string(), None),
        (format!("/v1/boot/{INTEL_HOST}/extra"), None),
    ];
    for (uri, profile) in cases {
        let (status, spec) = check(&state, &uri).await;
        match profile {
            Some(name) => {
                assert_eq!(status, StatusCode::OK, "{uri}");
                let spec = spec.unwrap();
                assert!(spec.message.contains(name), "{uri}: {spec:?}");
                assert!(spec.kernel.starts_with("http://"), "{uri}: {spec:?}");
                assert_eq!(spec.initrd.len(), 1);
                assert!(
                    spec.cmdline.contains(&format!("metal.profile={name}")),
                    "{spec:?}"
                );
                assert!(
                    !spec.cmdline.contains('{') && !spec.cmdline.contains('\n'),
                    "{spec:?}"
                );
            }
            None => assert_eq!(status, StatusCode::NOT_FOUND, "{uri}"),
        }
    }
}

#[tokio::test]
async fn answers_are_stable_and_substituted() {
    let state = state();
    let uri = format!("/v1/boot/{INTEL_HOST}");
    let (_, first) = check(&state, &uri).await;
    let (_, second) = check(&state, &uri).await;
    assert_eq!(first, second);
    let spec = first.unwrap();
    let machine_id = metal_core::MachineId::from_bmc_mac(&fixtures::mac("aa:bb:cc:00:00:01"));
    assert!(
        spec.cmdline
            .contains(&format!("metal.machine_id={machine_id}")),
        "{spec:?}"
    );
    assert!(
        spec.cmdline.contains("metal.bmc_mac=aa:bb:cc:00:00:01"),
        "{spec:?}"
    );
    assert!(
        spec.cmdline.contains(&format!("BOOTIF={INTEL_HOST}")),
        "{spec:?}"
    );
}

#[tokio::test]
async fn healthz_answers() {
    let response = app(state())
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn scraped_after_start_becomes_bootable() {
    let state = state();
    let (again, envelope) = request(14, "aa:bb:cc:00:00:05");
    let found = fixtures::located(&envelope, "10.0.0.5");
    let scrape = fixtures::scraped(
        &found,
        inventory("DL385", "AMD EPYC", &["52:54:00:00:00:05"]),
    );
    assert_eq!(
        check(&state, "/v1/boot/52:54:00:00:00:05").await.0,
        StatusCode::NOT_FOUND
    );
    state
        .live
        .apply_batch(vec![again, stored(15, &found), stored(16, &scrape)])
        .await
        .unwrap();
    let (status, spec) = check(&state, "/v1/boot/52:54:00:00:00:05").await;
    assert_eq!(status, StatusCode::OK);
    assert!(spec.unwrap().message.contains("G2"));
}

/// Parses profiles text; `Err` carries the error's message.
fn parse(text: &str) -> Result<Profiles, String> {
    Profiles::parse(text, Path::new("test-profiles.toml"))
        .map_err(|e: ProfilesError| metal_core::error_chain(&e))
}

#[test]
fn profile_file_errors_name_file_and_problem() {
    let profile = |kernel: &str, cmdline: &str| {
        format!("[[profile]]\nname = \"P\"\nkernel = \"{kernel}\"\ninitrd = []\ncmdline = \"{cmdline}\"\n")
    };
    let cases = [
        (profile("http://h/k", "quiet {mac}"), None),
        (profile("/k", ""), Some("not an absolute")),
        (profile("file:///k", ""), Some("not an absolute")),
        (profile("http:///k", ""), Some("no host")),
        (profile("http://h/k", "a {{ .X }}"), Some("braces")),
        (profile("http://h/k", "a {unknown}"), Some("braces")),
        (profile("http://h/k", "a } b"), Some("braces")),
        (profile("http://h/k", "a\\nb"), Some("newline")),
        ("".to_string(), Some("no [[profile]]")),
        (
            "[[profile]]\nname = \"P\"\n".to_string(),
            Some("not valid TOML"),
        ),
        (
            format!(
                "{}\n[profile.match]\ncpu_vendor = \"arm\"\n",
                profile("http://h/k", "")
            ),
            Some("not valid TOML"),
        ),
        (
            format!("{}\nbogus = 1\n", profile("http://h/k", "")),
            Some("not valid TOML"),
        ),
        (
            format!("{}{}", profile("http://h/k", ""), profile("http://h/k", "")),
            Some("defined twice"),
        ),
    ];
    for (text, expected) in cases {
        match (parse(&text), expected) {
            (Ok(_), None) => {}
            (Err(message), Some(fragment)) => {
                assert!(message.contains("test-profiles.toml"), "{message}");
                assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
            }
            (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
        }
    }
    let missing = Profiles::load(Path::new("/nonexistent/boot-profiles.toml")).unwrap_err();
    assert!(metal_core::error_chain(&missing).contains("/nonexistent/boot-profiles.toml"));
}

#[test]
fn first_match_wins_and_all_conditions_hold() {
    let text = r#"
        [[profile]]
        name = "big-intel"
        kernel = "https://h/big"
        [profile.match]
        cpu_vendor = "intel"
        system_model_contains = "dl360"
        min_memory_mib = 65536
        min_cpus = 2
        min_host_nics = 1
        min_drives = 1

        [[profile]]
        name = "any"
        kernel = "https://h/any"
    "#;
    let profiles = parse(text).unwrap();
    let mut projection = Projection::open_in_memory().unwrap();
    projection
        .apply_batch(&onboarding(
            1,
            "aa:bb:cc:00:00:01",
            inventory("DL360", "Xeon", &[INTEL_HOST]),
        ))
        .unwrap();
    let mut facts = projection
        .boot_lookup(&fixtures::mac(INTEL_HOST))
        .unwrap()
        .unwrap();
    assert_eq!(
        profiles.choose(&facts).map(|p| p.name.as_str()),
        Some("big-intel")
    );
    facts.memory_mib = 1024;
    assert_eq!(
        profiles.choose(&facts).map(|p| p.name.as_str()),
        Some("any")
    );
}
