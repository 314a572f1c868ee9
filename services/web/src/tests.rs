//! The HTTP contract through `router(live).oneshot(request)` over an in-memory projection of
//! fixture events: filters, cursors, bounds, 400/404 as JSON, no secrets in answers, and the
//! checked-in OpenAPI document.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use metal_core::events::{BmcLocated, BootPath, BootUnknown, TagsChanged};
use metal_core::subjects;
use metal_projection::fixtures::{
    about_provisioning, answer, assigned, inventory, mac, onboarding, provision, request, scraped,
    stored,
};
use metal_projection::{LiveProjection, Projection};
use serde_json::Value;
use tower::ServiceExt;

use crate::api::{
    self, openapi_json_text, ApiState, MachinesPage, ProfilesBody, StatusBody, TimelinePage,
    UnknownMacsPage,
};

const PROVISIONED_BMC: &str = "aa:bb:cc:00:00:01";
const PROVISIONED_HOST: &str = "52:54:00:12:34:56";
const TAGGED_BMC: &str = "aa:bb:cc:00:00:02";
const PLAIN_BMC: &str = "aa:bb:cc:00:00:03";
const SECRET_BMC: &str = "aa:bb:cc:00:00:04";
const UNKNOWN_MAC: &str = "52:54:00:00:00:77";

/// Four onboarded machines: one provisioned with G1, one tagged rack=a1, one plain, one
/// whose Redfish URL carries credentials; and one unknown MAC that asked to netboot.
fn fixture() -> LiveProjection {
    let mut messages = onboarding(
        1,
        PROVISIONED_BMC,
        inventory("DL360 Gen10", "Intel Xeon", &[PROVISIONED_HOST]),
    );
    messages.extend(onboarding(
        4,
        TAGGED_BMC,
        inventory("DL385 Gen10", "AMD EPYC 7302", &["52:54:00:ab:cd:ef"]),
    ));
    messages.extend(onboarding(
        7,
        PLAIN_BMC,
        inventory("R640", "Intel Xeon", &["52:54:00:00:00:03"]),
    ));
    let (secret_request, secret) = request(10, SECRET_BMC);
    // A Redfish URL written with credentials (a static entry, say) must not reach clients.
    let found = answer(
        &secret,
        subjects::BMC_LOCATED,
        &BmcLocated {
            bmc_ip: Some("10.0.0.9".to_string()),
            redfish_url: "https://admin:hunter2@10.0.0.9".to_string(),
            source: "static".to_string(),
            ..Default::default()
        },
    );
    messages.extend([
        secret_request,
        stored(11, &found),
        stored(
            12,
            &scraped(
                &found,
                inventory("R650", "Intel Xeon", &["52:54:00:00:00:04"]),
            ),
        ),
    ]);
    let p = provision(20, PROVISIONED_BMC, None);
    messages.extend([stored(20, &p), stored(21, &assigned(&p, "G1"))]);
    let tag = provision(22, TAGGED_BMC, None);
    let tags = about_provisioning(
        &tag,
        subjects::TAGS_CHANGED,
        &TagsChanged {
            set: [("rack".to_string(), "a1".to_string())].into(),
            removed: Vec::new(),
            requested_by: None,
        },
        1,
    );
    let unknown = metal_core::Envelope {
        machine_id: None,
        bmc_mac: None,
        ..about_provisioning(
            &p,
            subjects::BOOT_UNKNOWN,
            &BootUnknown {
                mac: mac(UNKNOWN_MAC),
                path: BootPath::Ipxe,
                reason: "no machine has this MAC".to_string(),
            },
            3,
        )
    };
    messages.extend([stored(23, &tags), stored(24, &unknown)]);
    let mut projection = Projection::open_in_memory().unwrap();
    projection.apply_batch(&messages).unwrap();
    LiveProjection::new(projection).unwrap()
}

async fn get(live: &LiveProjection, uri: &str) -> (StatusCode, String) {
    let response = api::router(live.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn get_json<T: serde::de::DeserializeOwned>(live: &LiveProjection, uri: &str) -> T {
    let (status, body) = get(live, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{uri}: {e}: {body}"))
}

async fn error(live: &LiveProjection, uri: &str, status: StatusCode) -> String {
    let (got, body) = get(live, uri).await;
    assert_eq!(got, status, "{uri}: {body}");
    let body: api::ErrorBody =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{uri}: not an error body: {e}"));
    body.error
}

fn bmcs(page: &MachinesPage) -> Vec<String> {
    page.machines
        .iter()
        .map(|m| m.bmc_mac.to_string())
        .collect()
}

#[tokio::test]
async fn machines_filter_by_state_profile_tag_and_text() {
    let live = fixture();
    let all: MachinesPage = get_json(&live, "/api/v1/machines").await;
    assert_eq!(all.machines.len(), 4);
    assert_eq!(all.next_cursor, None);
    assert_eq!(all.last_sequence, 24);

    let provisioning: MachinesPage = get_json(&live, "/api/v1/machines?state=provisioning").await;
    assert_eq!(bmcs(&provisioning), [PROVISIONED_BMC]);
    let profile: MachinesPage = get_json(&live, "/api/v1/machines?profile=G1").await;
    assert_eq!(bmcs(&profile), [PROVISIONED_BMC]);
    let none: MachinesPage = get_json(&live, "/api/v1/machines?profile=G2").await;
    assert!(none.machines.is_empty());

    let tagged: MachinesPage = get_json(&live, "/api/v1/machines?tag=rack%3Da1").await;
    assert_eq!(bmcs(&tagged), [TAGGED_BMC]);
    let both: MachinesPage = get_json(&live, "/api/v1/machines?tag=rack=a1&tag=rack=b2").await;
    assert!(both.machines.is_empty(), "tags are all required");
    let with_key: MachinesPage = get_json(&live, "/api/v1/machines?tag=rack").await;
    assert_eq!(bmcs(&with_key), [TAGGED_BMC]);

    // Model (any case), serial, BMC MAC and host MAC in any notation, inventory-only MAC.
    let model: MachinesPage = get_json(&live, "/api/v1/machines?q=dl385").await;
    assert_eq!(bmcs(&model), [TAGGED_BMC]);
    let serial: MachinesPage = get_json(&live, "/api/v1/machines?q=SN-R640").await;
    assert_eq!(bmcs(&serial), [PLAIN_BMC]);
    let bmc: MachinesPage = get_json(&live, "/api/v1/machines?q=AA-BB-CC-00-00-03").await;
    assert_eq!(bmcs(&bmc), [PLAIN_BMC]);
    let host: MachinesPage = get_json(&live, "/api/v1/machines?q=525400123456").await;
    assert_eq!(bmcs(&host), [PROVISIONED_BMC]);
    let part: MachinesPage = get_json(&live, "/api/v1/machines?q=00:00:03").await;
    assert_eq!(bmcs(&part), [PLAIN_BMC], "part of a MAC");
    // The iLO virtual NIC is in every fixture's manager: every machine reports it.
    let shared: MachinesPage = get_json(&live, "/api/v1/machines?q=0a:ca:fe:f0:0d:04").await;
    assert_eq!(shared.machines.len(), 4);
    let combined: MachinesPage =
        get_json(&live, "/api/v1/machines?q=gen10&state=provisioning").await;
    assert_eq!(bmcs(&combined), [PROVISIONED_BMC]);
}

#[tokio::test]
async fn machines_pages_follow_the_cursor_to_the_end() {
    let live = fixture();
    let all: MachinesPage = get_json(&live, "/api/v1/machines").await;
    let mut seen = Vec::new();
    let mut uri = "/api/v1/machines?limit=3".to_string();
    let mut pages = 0;
    loop {
        let page: MachinesPage = get_json(&live, &uri).await;
        pages += 1;
        assert!(page.machines.len() <= 3);
        seen.extend(page.machines);
        match page.next_cursor {
            Some(cursor) => uri = format!("/api/v1/machines?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(seen, all.machines);
    // A page that ends exactly at the last machine says so.
    let exact: MachinesPage = get_json(&live, "/api/v1/machines?limit=4").await;
    assert_eq!(exact.next_cursor, None);
}

#[tokio::test]
async fn bad_parameters_are_400s_naming_the_parameter() {
    let live = fixture();
    for (uri, named) in [
        ("/api/v1/machines?state=broken", "state"),
        ("/api/v1/machines?limit=0", "limit"),
        ("/api/v1/machines?limit=501", "limit"),
        ("/api/v1/machines?limit=ten", "limit"),
        ("/api/v1/machines?cursor=nope", "cursor"),
        ("/api/v1/machines?tag==a1", "tag"),
        ("/api/v1/machines?state=installed&state=booting", "state"),
        ("/api/v1/machines?stat=installed", "stat"),
        ("/api/v1/machines/not-a-mac", "reference"),
        ("/api/v1/machines/not-a-mac/timeline", "reference"),
        (
            "/api/v1/machines/aa:bb:cc:00:00:01/timeline?limit=1001",
            "limit",
        ),
        (
            "/api/v1/machines/aa:bb:cc:00:00:01/timeline?cursor=x",
            "cursor",
        ),
        ("/api/v1/unknown-macs?limit=-1", "limit"),
        ("/api/v1/status?verbose=1", "verbose"),
    ] {
        let message = error(&live, uri, StatusCode::BAD_REQUEST).await;
        assert!(message.contains(named), "{uri}: {message}");
    }
    let long = "x".repeat(300);
    let message = error(
        &live,
        &format!("/api/v1/machines?q={long}"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(message.starts_with("q:"), "{message}");
    let message = error(
        &live,
        &format!("/api/v1/machines?cursor={long}"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(message.len() < 200, "echoed input is cut short: {message}");
}

#[tokio::test]
async fn one_machine_by_id_or_any_mac_and_404s() {
    let live = fixture();
    let by_bmc: Value = get_json(&live, "/api/v1/machines/AA:BB:CC:00:00:01").await;
    let id = by_bmc["machine"]["machine_id"]
        .as_str()
        .unwrap()
        .to_string();
    let by_id: Value = get_json(&live, &format!("/api/v1/machines/{id}")).await;
    let by_host: Value = get_json(&live, "/api/v1/machines/5254.0012.3456").await;
    assert_eq!(by_bmc, by_id);
    assert_eq!(by_bmc, by_host);
    assert_eq!(by_bmc["provisioning"]["profile"], "G1");
    assert_eq!(
        by_bmc["inventory"]["systems"][0]["model"], "DL360 Gen10",
        "the inventory comes along"
    );
    let message = error(
        &live,
        "/api/v1/machines/aa:bb:cc:00:00:99",
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(message.contains("aa:bb:cc:00:00:99"), "{message}");
    error(
        &live,
        "/api/v1/machines/00000000-0000-0000-0000-000000000000/timeline",
        StatusCode::NOT_FOUND,
    )
    .await;
    error(&live, "/api/v1/nothing-here", StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn timeline_pages_go_back_from_the_newest() {
    let live = fixture();
    let uri = format!("/api/v1/machines/{PROVISIONED_BMC}/timeline");
    let all: TimelinePage = get_json(&live, &uri).await;
    let sequences: Vec<u64> = all.events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, [1, 2, 3, 20, 21]);
    assert_eq!(all.next_cursor, None);

    let newest: TimelinePage = get_json(&live, &format!("{uri}?limit=3")).await;
    let sequences: Vec<u64> = newest.events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, [3, 20, 21]);
    assert_eq!(newest.next_cursor.as_deref(), Some("3"));
    let older: TimelinePage = get_json(&live, &format!("{uri}?limit=3&cursor=3")).await;
    let sequences: Vec<u64> = older.events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, [1, 2]);
    assert_eq!(older.next_cursor, None);
}

#[tokio::test]
async fn unknown_macs_status_and_health() {
    let live = fixture();
    let unknown: UnknownMacsPage = get_json(&live, "/api/v1/unknown-macs").await;
    assert_eq!(unknown.total, 1);
    assert_eq!(unknown.macs[0].mac, mac(UNKNOWN_MAC));
    let status: Value = get_json(&live, "/api/v1/status").await;
    assert_eq!(
        status,
        serde_json::json!({
            "last_sequence": 24,
            "machines": 4,
            "stream_last_sequence": null,
            "behind": null
        }),
        "no file path in the status; without NATS the stream's side is null"
    );
    let (code, body) = get(&live, "/api/v1/healthz").await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, "ok"));
    let (code, body) = get(&live, "/api/v1/openapi.json").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body, openapi_json_text());
}

#[tokio::test]
async fn no_answer_carries_credentials_or_tokens() {
    let live = fixture();
    let secret = mac(SECRET_BMC).to_string();
    let mut bodies = Vec::new();
    for uri in [
        "/api/v1/machines".to_string(),
        format!("/api/v1/machines/{secret}"),
        format!("/api/v1/machines/{PROVISIONED_BMC}"),
        format!("/api/v1/machines/{PROVISIONED_BMC}/timeline"),
        format!("/api/v1/machines/{secret}/timeline"),
        "/api/v1/unknown-macs".to_string(),
        "/api/v1/status".to_string(),
    ] {
        let (code, body) = get(&live, &uri).await;
        assert_eq!(code, StatusCode::OK, "{uri}");
        bodies.push(body);
    }
    let all = bodies.join("\n");
    assert!(!all.contains("hunter2"), "a password in an answer");
    assert!(!all.contains("admin@"), "a user name in a URL");
    assert!(
        all.contains("https://10.0.0.9"),
        "the URL stays, without credentials"
    );
    // The cmdline is the template: the token is rendered only by boot-api.
    assert!(all.contains("token={token}"));
}

/// The profiles boot-api ships with (profiles/boot-profiles.toml).
fn shipped_profiles() -> metal_core::profiles::Profiles {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../profiles/boot-profiles.toml");
    metal_core::profiles::Profiles::load(&path).unwrap()
}

async fn get_with(state: &ApiState, uri: &str) -> (StatusCode, String) {
    let response = api::router_with(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn profiles_are_listed_from_the_shipped_file_as_templates() {
    let shipped = shipped_profiles();
    let state = ApiState::new(fixture(), None, Some(&shipped));
    let (code, body) = get_with(&state, "/api/v1/profiles").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let answer: ProfilesBody = serde_json::from_str(&body).unwrap();
    assert_eq!(answer.total, shipped.profiles().len() as u64);
    let names: Vec<&str> = answer.profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["G1", "G2", "WIPE"], "file order");
    let g1 = &answer.profiles[0];
    assert_eq!(g1.purpose, metal_core::events::Purpose::Install);
    assert_eq!(g1.priority, 0);
    assert_eq!(g1.kernel, shipped.profiles()[0].kernel);
    assert_eq!(g1.initrd, shipped.profiles()[0].initrd);
    assert_eq!(g1.selectors.cpu_vendor.as_deref(), Some("intel"));
    assert_eq!(
        answer.profiles[1].selectors.cpu_vendor.as_deref(),
        Some("amd")
    );
    assert_eq!(
        answer.profiles[2].purpose,
        metal_core::events::Purpose::Wipe
    );
    // Readable: only the selectors given, under their file names.
    let raw: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        raw["profiles"][0]["selectors"],
        serde_json::json!({"cpu_vendor": "intel"})
    );
    // Templates only: the placeholder, never a rendered token.
    assert!(g1.cmdline.contains("metal.token={token}"), "{}", g1.cmdline);
    assert_eq!(g1.cmdline, shipped.profiles()[0].cmdline);

    let message = {
        let (code, body) = get_with(&state, "/api/v1/profiles?name=G1").await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
        serde_json::from_str::<api::ErrorBody>(&body).unwrap().error
    };
    assert!(message.contains("name"), "{message}");
    // Without a profiles file (`api::router`), the list is empty.
    let none: ProfilesBody = get_json(&fixture(), "/api/v1/profiles").await;
    assert_eq!((none.profiles.len(), none.total), (0, 0));
}

#[test]
fn profiles_answer_is_bounded_and_keeps_credentials_out_of_urls() {
    let mut text = String::new();
    for n in 0..api::PROFILES_MAX + 5 {
        text.push_str(&format!(
            "[[profile]]\nname = \"P{n}\"\nkernel = \"http://boot:s3cret@boot.example/k\"\n\
             initrd = [\"http://boot:s3cret@boot.example/i\"]\ncmdline = \"metal.token={{token}}\"\n\n"
        ));
    }
    let profiles =
        metal_core::profiles::Profiles::parse(&text, std::path::Path::new("many.toml")).unwrap();
    let answer = api::profiles_body(Some(&profiles));
    assert_eq!(answer.profiles.len(), api::PROFILES_MAX);
    assert_eq!(answer.total, (api::PROFILES_MAX + 5) as u64);
    assert_eq!(answer.profiles[0].kernel, "http://boot.example/k");
    assert_eq!(answer.profiles[0].initrd, ["http://boot.example/i"]);
    assert_eq!(answer.profiles[0].line, 1);
}

#[tokio::test]
async fn status_without_nats_has_null_stream_fields() {
    let state = ApiState::new(fixture(), None, Some(&shipped_profiles()));
    let (code, body) = get_with(&state, "/api/v1/status").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let status: StatusBody = serde_json::from_str(&body).unwrap();
    assert_eq!(
        status,
        StatusBody {
            last_sequence: 24,
            machines: 4,
            stream_last_sequence: None,
            behind: None,
        }
    );
    let raw: Value = serde_json::from_str(&body).unwrap();
    assert!(
        raw["stream_last_sequence"].is_null() && raw["behind"].is_null(),
        "{raw}"
    );
    assert!(
        raw.get("behind").is_some(),
        "present as null, not left out: {raw}"
    );
}

#[test]
fn openapi_document_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let generated = openapi_json_text();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/openapi.json is stale (or missing); refresh it with \
         `UPDATE_OPENAPI=1 cargo test -p web openapi_document_is_current`"
    );
    let document: Value = serde_json::from_str(&generated).unwrap();
    assert!(
        document["openapi"]
            .as_str()
            .unwrap_or("")
            .starts_with("3.1"),
        "{}",
        document["openapi"]
    );
}
