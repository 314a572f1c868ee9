//! The fake BMC fleet serves unique identities, enforces its auth modes, injects each fault
//! observably, and counts requests in flight.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use test_harness::fake_bmc::{
    synthetic_bmc_mac, synthetic_host_macs, synthetic_resource, synthetic_serial,
    synthetic_system_uuid, Auth, FakeBmcSpec, FakeFleet, Fault, PowerSpec, RecordedWrite,
    ResetTypes, Tree, HUGE_BYTES, RESET_ACTION, RESET_ACTION_INFO, SESSIONS, SYNTHETIC_PATHS,
    SYSTEM,
};
use test_harness::paths::redfish_mockups_dir;

const USER: &str = "admin";
const PASSWORD: &str = "fake-password";

fn client(timeout: Duration) -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .unwrap()
}

async fn get_json(client: &Client, url: String) -> Value {
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    response.json().await.unwrap()
}

async fn one(spec: FakeBmcSpec) -> FakeFleet {
    FakeFleet::start(vec![spec]).await
}

/// Waits for a counter that changes once a dropped connection is noticed.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn synthetic_trees_have_a_unique_identity_per_index() {
    let fleet = FakeFleet::start(vec![FakeBmcSpec::synthetic(); 3]).await;
    let http = client(Duration::from_secs(5));
    let mut seen = HashSet::new();
    for i in 0..fleet.len() {
        let base = fleet.base_url(i);
        assert!(seen.insert(base.clone()), "each BMC has its own port");
        let system = get_json(&http, format!("{base}/redfish/v1/Systems/1")).await;
        assert_eq!(system["Manufacturer"], "Fake");
        assert_eq!(system["SerialNumber"], json!(synthetic_serial(i)));
        assert_eq!(system["UUID"], json!(synthetic_system_uuid(i)));
        assert!(system["Boot"]["BootSourceOverrideTarget@Redfish.AllowableValues"].is_array());
        let bmc_nic = get_json(
            &http,
            format!("{base}/redfish/v1/Managers/BMC/EthernetInterfaces/eth0/"),
        )
        .await;
        assert_eq!(bmc_nic["MACAddress"], json!(synthetic_bmc_mac(i)));
        for (n, mac) in synthetic_host_macs(i).iter().enumerate() {
            let nic = get_json(
                &http,
                format!(
                    "{base}/redfish/v1/Systems/1/EthernetInterfaces/NIC{}",
                    n + 1
                ),
            )
            .await;
            assert_eq!(nic["MACAddress"], json!(mac));
        }
        for path in SYNTHETIC_PATHS {
            get_json(&http, format!("{base}{path}?$select=Id")).await;
        }
        let missing = http
            .get(format!("{base}/redfish/v1/Systems/2"))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let error: Value = missing.json().await.unwrap();
        assert!(error["error"]["message"].is_string());
    }
    assert_eq!(fleet.path_requests(0, "/redfish/v1/Systems/1/"), 2);
}

#[tokio::test]
async fn a_mockup_tree_is_shared_and_served_with_or_without_trailing_slash() {
    let tree = Tree::mockup(&redfish_mockups_dir().join("hpe-proliant-dl325-gen10plus")).unwrap();
    let fleet = FakeFleet::start(vec![FakeBmcSpec::new(tree); 2]).await;
    let http = client(Duration::from_secs(5));
    for i in 0..2 {
        let base = fleet.base_url(i);
        let a = get_json(&http, format!("{base}/redfish/v1/Systems/1/")).await;
        let b = get_json(&http, format!("{base}/redfish/v1/Systems/1?$expand=.")).await;
        assert_eq!(a, b);
        assert_eq!(a["Id"], "1");
    }
    let missing = http
        .get(format!("{}/redfish/v1/Nope", fleet.base_url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_thousand_bmcs_answer_each_on_its_own_port() {
    let fleet = FakeFleet::start(vec![FakeBmcSpec::synthetic(); 1000]).await;
    let http = client(Duration::from_secs(30));
    let serials: HashSet<String> = futures::stream::iter(0..fleet.len())
        .map(|i| {
            let http = http.clone();
            let url = format!("{}/redfish/v1/Systems/1", fleet.base_url(i));
            async move { get_json(&http, url).await["SerialNumber"].to_string() }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert_eq!(serials.len(), 1000);
    assert_eq!(fleet.requests_total(), 1000);
}

fn sessions(expire_after_requests: Option<u32>, allow_basic: bool) -> Auth {
    Auth::Sessions {
        user: USER.to_string(),
        password: PASSWORD.to_string(),
        expire_after_requests,
        allow_basic,
    }
}

async fn login(http: &Client, base: &str, password: &str) -> reqwest::Response {
    http.post(format!("{base}{SESSIONS}"))
        .json(&json!({"UserName": USER, "Password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn sessions_need_a_token_that_expires_and_can_be_deleted() {
    let fleet = one(FakeBmcSpec::synthetic().auth(sessions(Some(3), false))).await;
    let base = fleet.base_url(0);
    let http = client(Duration::from_secs(5));
    let system = format!("{base}/redfish/v1/Systems/1");

    get_json(&http, format!("{base}/redfish/v1")).await;
    let anonymous = http.get(&system).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let basic = http
        .get(&system)
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(
        basic.status(),
        StatusCode::UNAUTHORIZED,
        "basic not allowed"
    );

    let wrong = login(&http, &base, "wrong").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let created = login(&http, &base, PASSWORD).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let token = created.headers()["x-auth-token"]
        .to_str()
        .unwrap()
        .to_string();
    let location = created.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&format!("{SESSIONS}/")));
    let body: Value = created.json().await.unwrap();
    assert_eq!(body["@odata.id"], json!(location));
    assert_eq!(fleet.stats(0).sessions_open, 1);

    for _ in 0..3 {
        let ok = http
            .get(&system)
            .header("X-Auth-Token", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
    }
    let expired = http
        .get(&system)
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED, "4th request");

    let again = login(&http, &base, PASSWORD).await;
    let token = again.headers()["x-auth-token"]
        .to_str()
        .unwrap()
        .to_string();
    let location = again.headers()["location"].to_str().unwrap().to_string();
    let listed = http
        .get(format!("{base}{SESSIONS}"))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(listed["Members"], json!([{"@odata.id": location}]));
    let deleted = http
        .delete(format!("{base}{location}"))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let after = http
        .get(&system)
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);

    let stats = fleet.stats(0);
    assert_eq!(stats.logins, 2);
    assert_eq!(stats.failed_logins, 1);
    assert_eq!(stats.session_deletions, 1);
    assert_eq!(stats.sessions_expired, 1);
    assert_eq!(stats.sessions_open, 0);
    assert_eq!(stats.unauthorized, 5);
}

#[tokio::test]
async fn sessions_may_allow_basic_auth() {
    let fleet = one(FakeBmcSpec::synthetic().auth(sessions(None, true))).await;
    let http = client(Duration::from_secs(5));
    let system = format!("{}/redfish/v1/Systems/1", fleet.base_url(0));
    let basic = http
        .get(&system)
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::OK);
    let refused = http.get(&system).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().contains_key("www-authenticate"));
}

#[tokio::test]
async fn basic_auth_guards_everything_but_the_service_root() {
    let fleet = one(FakeBmcSpec::synthetic().auth(Auth::Basic {
        user: USER.to_string(),
        password: PASSWORD.to_string(),
    }))
    .await;
    let base = fleet.base_url(0);
    let http = client(Duration::from_secs(5));
    get_json(&http, format!("{base}/redfish/v1/")).await;
    let system = format!("{base}/redfish/v1/Systems/1");
    let refused = http.get(&system).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    let wrong = http
        .get(&system)
        .basic_auth(USER, Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let ok = http
        .get(&system)
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let no_sessions = login(&http, &base, PASSWORD).await;
    assert_eq!(no_sessions.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(fleet.stats(0).unauthorized, 2);
}

#[tokio::test]
async fn status_and_server_errors_then_ok() {
    let fleet = FakeFleet::start(vec![
        FakeBmcSpec::synthetic().fault(Fault::Status(403)),
        FakeBmcSpec::synthetic().fault(Fault::ServerErrorsThenOk(2)),
    ])
    .await;
    let http = client(Duration::from_secs(5));
    let forbidden = http
        .get(format!("{}/redfish/v1", fleet.base_url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    let flaky = format!("{}/redfish/v1/Systems", fleet.base_url(1));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(http.get(&flaky).send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [500, 500, 200]);
    let other = http
        .get(format!("{}/redfish/v1/Chassis", fleet.base_url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "per path"
    );
}

#[tokio::test]
async fn hang_never_answers_and_stops_counting_when_the_client_leaves() {
    let fleet = one(FakeBmcSpec::synthetic().fault(Fault::Hang)).await;
    let started = Instant::now();
    let error = client(Duration::from_secs(1))
        .get(format!("{}/redfish/v1", fleet.base_url(0)))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(fleet.peak_in_flight(0), 1);
    eventually("the hung request to be dropped", || fleet.in_flight(0) == 0).await;
}

#[tokio::test]
async fn trickle_sends_a_byte_a_second_without_length() {
    let fleet = one(FakeBmcSpec::synthetic().fault(Fault::Trickle)).await;
    let mut response = client(Duration::from_secs(1))
        .get(format!("{}/redfish/v1", fleet.base_url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.content_length(), None);
    assert_eq!(fleet.in_flight(0), 1, "the body is still streaming");
    let mut received = Vec::new();
    let error = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Err(error) => break error,
            Ok(None) => panic!("a trickled body ended within a second"),
        }
    };
    assert!(error.is_timeout(), "{error}");
    assert!(
        !received.is_empty() && received.len() <= 2,
        "{} bytes",
        received.len()
    );
    assert_eq!(received[0], b'{');
    drop(response);
    eventually("the trickle to stop", || fleet.in_flight(0) == 0).await;
}

async fn read_a_mebibyte_of_huge(with_length: bool) {
    let fault = if with_length {
        Fault::HugeWithLength
    } else {
        Fault::Huge
    };
    let fleet = one(FakeBmcSpec::synthetic().fault(fault)).await;
    let mut response = client(Duration::from_secs(10))
        .get(format!("{}/redfish/v1", fleet.base_url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let expected_length = with_length.then_some(HUGE_BYTES);
    assert_eq!(response.content_length(), expected_length);
    let mut received = Vec::new();
    while received.len() < 1 << 20 {
        received.extend_from_slice(&response.chunk().await.unwrap().unwrap());
    }
    assert!(received.starts_with(b"{\""));
    assert_eq!(fleet.in_flight(0), 1);
    drop(response);
    eventually("the huge body to be dropped", || fleet.in_flight(0) == 0).await;
}

#[tokio::test]
async fn huge_bodies_stream_without_length() {
    read_a_mebibyte_of_huge(false).await;
}

#[tokio::test]
async fn huge_bodies_stream_with_length() {
    read_a_mebibyte_of_huge(true).await;
}

#[tokio::test]
async fn redirects_loop_or_leave_the_host() {
    let fleet = FakeFleet::start(vec![
        FakeBmcSpec::synthetic().fault(Fault::RedirectLoop),
        FakeBmcSpec::synthetic().fault(Fault::RedirectOtherHost),
    ])
    .await;
    let following = Client::builder()
        .redirect(reqwest::redirect::Policy::limited(5))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let error = following
        .get(format!("{}/redfish/v1", fleet.base_url(0)))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_redirect(), "{error}");
    assert_eq!(fleet.requests(0), 6);
    let first = client(Duration::from_secs(5))
        .get(format!("{}/redfish/v1", fleet.base_url(0)))
        .send()
        .await
        .unwrap();
    let next = first.headers()["location"].to_str().unwrap();
    assert!(next.starts_with("/redfish/v1/"), "{next}");

    let away = client(Duration::from_secs(5))
        .get(format!("{}/redfish/v1/Systems", fleet.base_url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(away.status(), StatusCode::FOUND);
    assert_eq!(
        away.headers()["location"].to_str().unwrap(),
        format!("http://127.0.0.2:{}/redfish/v1", fleet.addr(1).port())
    );
}

#[tokio::test]
async fn invalid_and_deeply_nested_json() {
    let fleet = FakeFleet::start(vec![
        FakeBmcSpec::synthetic().fault(Fault::InvalidJson),
        FakeBmcSpec::synthetic().fault(Fault::DeepNesting),
    ])
    .await;
    let http = client(Duration::from_secs(5));
    let invalid = http
        .get(format!("{}/redfish/v1", fleet.base_url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), StatusCode::OK);
    let text = invalid.text().await.unwrap();
    assert_eq!(text, "{\"Members\": [");
    assert!(serde_json::from_str::<Value>(&text).is_err());
    let deep = http
        .get(format!("{}/redfish/v1", fleet.base_url(1)))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(deep.len(), 200_000);
    assert!(deep.starts_with(b"[[[[") && deep.ends_with(b"]]]]"));
    assert!(
        serde_json::from_slice::<Value>(&deep).is_err(),
        "past serde's depth limit"
    );
}

#[tokio::test]
async fn link_loop_and_endless_next_link_never_end() {
    let fleet = FakeFleet::start(vec![
        FakeBmcSpec::synthetic().fault(Fault::LinkLoop),
        FakeBmcSpec::synthetic().fault(Fault::EndlessNextLink),
    ])
    .await;
    let http = client(Duration::from_secs(5));
    let base = fleet.base_url(0);
    let systems = get_json(&http, format!("{base}/redfish/v1/Systems")).await;
    let system_path = systems["Members"][0]["@odata.id"].as_str().unwrap();
    let system = get_json(&http, format!("{base}{system_path}")).await;
    let mut next = system["Processors"]["@odata.id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut visited = HashSet::new();
    for _ in 0..50 {
        assert!(visited.insert(next.clone()), "{next} seen twice");
        let doc = get_json(&http, format!("{base}{next}")).await;
        next = doc["Members"][0]["@odata.id"].as_str().unwrap().to_string();
    }
    get_json(&http, format!("{base}/redfish/v1/Chassis/1")).await;

    let base = fleet.base_url(1);
    let mut page = "/redfish/v1/Systems".to_string();
    let mut members = HashSet::new();
    for _ in 0..50 {
        let doc = get_json(&http, format!("{base}{page}")).await;
        let member = doc["Members"][0]["@odata.id"].as_str().unwrap();
        assert!(members.insert(member.to_string()), "{member} seen twice");
        page = doc["Members@odata.nextLink"].as_str().unwrap().to_string();
    }
    let member = members.iter().next().unwrap();
    get_json(&http, format!("{base}{member}")).await;
}

#[tokio::test]
async fn a_fault_on_one_path_leaves_the_others_alone() {
    let fleet = one(FakeBmcSpec::synthetic().fault(Fault::FaultOnPath {
        path: "/redfish/v1/Systems/1/Memory/".to_string(),
        fault: Box::new(Fault::Status(500)),
    }))
    .await;
    let http = client(Duration::from_secs(5));
    let base = fleet.base_url(0);
    get_json(&http, format!("{base}/redfish/v1/Systems/1")).await;
    let failing = http
        .get(format!("{base}/redfish/v1/Systems/1/Memory"))
        .send()
        .await
        .unwrap();
    assert_eq!(failing.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_in_flight_counts_concurrent_requests_per_bmc_and_fleet() {
    let latency = Duration::from_millis(300);
    let fleet = FakeFleet::start(vec![FakeBmcSpec::synthetic().latency(latency); 2]).await;
    let http = client(Duration::from_secs(10));

    for _ in 0..3 {
        get_json(&http, format!("{}/redfish/v1", fleet.base_url(1))).await;
    }
    assert_eq!(fleet.peak_in_flight(1), 1, "sequential requests");

    let started = Instant::now();
    let concurrent = (0..8).map(|_| get_json(&http, format!("{}/redfish/v1", fleet.base_url(0))));
    futures::future::join_all(concurrent).await;
    assert!(started.elapsed() < latency * 3, "answered concurrently");
    assert_eq!(fleet.peak_in_flight(0), 8);
    assert_eq!(fleet.in_flight(0), 0);
    assert_eq!(fleet.requests(0), 8);

    fleet.reset_peaks();
    let both = (0..8).map(|n| get_json(&http, format!("{}/redfish/v1", fleet.base_url(n % 2))));
    futures::future::join_all(both).await;
    assert_eq!(fleet.peak_in_flight_total(), 8);
    assert_eq!(fleet.peak_in_flight(0), 4);
    assert_eq!(fleet.in_flight_total(), 0);
}

#[tokio::test]
async fn dropping_the_fleet_stops_its_servers() {
    let fleet = one(FakeBmcSpec::synthetic()).await;
    let url = format!("{}/redfish/v1", fleet.base_url(0));
    let http = client(Duration::from_secs(2));
    get_json(&http, url.clone()).await;
    drop(fleet);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fresh = client(Duration::from_secs(2));
    assert!(fresh.get(&url).send().await.is_err());
}

/// The first `@Message.ExtendedInfo` message of a Redfish error answer.
async fn extended_message(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["error"]["@Message.ExtendedInfo"][0]["Message"]
        .as_str()
        .unwrap_or_else(|| panic!("no ExtendedInfo message in {body}"))
        .to_string()
}

#[tokio::test]
async fn a_power_spec_makes_the_boot_override_and_power_state_live() {
    let spec = PowerSpec::default()
        .power_state("Off")
        .boot_mode("Legacy", Some(&["Legacy", "UEFI"]))
        .reset_types(ResetTypes::inline(&["On", "ForceOff", "PowerCycle"]))
        .etag(true);
    let fleet = one(FakeBmcSpec::synthetic().power(spec)).await;
    let http = client(Duration::from_secs(5));
    let base = fleet.base_url(0);
    let system_url = format!("{base}{SYSTEM}");

    let response = http.get(&system_url).send().await.unwrap();
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    let system: Value = response.json().await.unwrap();
    assert_eq!(system["@odata.etag"], json!(etag), "header and body agree");
    assert!(etag.starts_with("W/"), "weak, as iLO sends them");
    assert_eq!(system["PowerState"], "Off");
    assert_eq!(system["Boot"]["BootSourceOverrideMode"], "Legacy");
    assert_eq!(
        system["Actions"]["#ComputerSystem.Reset"]["ResetType@Redfish.AllowableValues"],
        json!(["On", "ForceOff", "PowerCycle"])
    );
    // Everything else is the synthetic system.
    let plain = synthetic_resource(0, SYSTEM).unwrap();
    assert_eq!(system["SerialNumber"], plain["SerialNumber"]);

    let pxe = json!({"Boot": {"BootSourceOverrideTarget": "Pxe",
                              "BootSourceOverrideEnabled": "Once",
                              "BootSourceOverrideMode": "UEFI"}});
    let without = http.patch(&system_url).json(&pxe).send().await.unwrap();
    assert_eq!(without.status(), StatusCode::PRECONDITION_REQUIRED);
    let stale = http
        .patch(&system_url)
        .header("If-Match", "W/\"0\"")
        .json(&pxe)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let accepted = http
        .patch(&system_url)
        .header("If-Match", &etag)
        .json(&pxe)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::NO_CONTENT);
    let response = http.get(&system_url).send().await.unwrap();
    assert_ne!(response.headers()["etag"].to_str().unwrap(), etag);
    let system: Value = response.json().await.unwrap();
    assert_eq!(system["Boot"]["BootSourceOverrideTarget"], "Pxe");
    assert_eq!(system["Boot"]["BootSourceOverrideEnabled"], "Once");
    assert_eq!(system["Boot"]["BootSourceOverrideMode"], "UEFI");

    // A value outside the allowable ones is refused, naming it.
    let new_etag = system["@odata.etag"].as_str().unwrap().to_string();
    let refused = http
        .patch(&system_url)
        .header("If-Match", &new_etag)
        .json(&json!({"Boot": {"BootSourceOverrideTarget": "Usb"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(extended_message(refused).await.contains("Usb"));

    let reset_url = format!("{base}{RESET_ACTION}");
    let not_allowed = http
        .post(&reset_url)
        .json(&json!({"ResetType": "ForceRestart"}))
        .send()
        .await
        .unwrap();
    assert_eq!(not_allowed.status(), StatusCode::BAD_REQUEST);
    assert!(extended_message(not_allowed).await.contains("ForceRestart"));
    let on = http
        .post(&reset_url)
        .json(&json!({"ResetType": "On"}))
        .send()
        .await
        .unwrap();
    assert_eq!(on.status(), StatusCode::NO_CONTENT);
    assert_eq!(fleet.power_state(0).as_deref(), Some("On"));
    assert_eq!(
        fleet.boots(0),
        vec!["Pxe".to_string()],
        "booted from the override"
    );
    let system = get_json(&http, system_url.clone()).await;
    assert_eq!(system["PowerState"], "On");
    assert_eq!(
        system["Boot"]["BootSourceOverrideEnabled"], "Disabled",
        "a one-time override is used up by the boot"
    );
    let cycle = http
        .post(&reset_url)
        .json(&json!({"ResetType": "PowerCycle"}))
        .send()
        .await
        .unwrap();
    assert_eq!(cycle.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        fleet.boots(0),
        vec!["Pxe".to_string(), "BootOrder".to_string()]
    );
    let off = http
        .post(&reset_url)
        .json(&json!({"ResetType": "ForceOff"}))
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), StatusCode::NO_CONTENT);
    assert_eq!(fleet.power_state(0).as_deref(), Some("Off"));

    // A login is not recorded (it carries a password); every other write is, in order.
    http.post(format!("{base}{SESSIONS}"))
        .json(&json!({"UserName": USER, "Password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let writes = fleet.writes(0);
    let summary: Vec<(&str, &str, u16)> = writes
        .iter()
        .map(|w| (w.method.as_str(), w.path.as_str(), w.status))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("PATCH", SYSTEM, 428),
            ("PATCH", SYSTEM, 412),
            ("PATCH", SYSTEM, 204),
            ("PATCH", SYSTEM, 400),
            ("POST", RESET_ACTION, 400),
            ("POST", RESET_ACTION, 204),
            ("POST", RESET_ACTION, 204),
            ("POST", RESET_ACTION, 204),
        ]
    );
    assert_eq!(
        writes[2],
        RecordedWrite {
            method: "PATCH".into(),
            path: SYSTEM.into(),
            body: pxe,
            if_match: Some(etag),
            status: 204,
        }
    );
    assert_eq!(writes[5].body, json!({"ResetType": "On"}));
    assert!(!format!("{writes:?}").contains(PASSWORD));
}

#[tokio::test]
async fn reset_types_via_action_info_and_refused_resets() {
    let fleet = FakeFleet::start(vec![
        FakeBmcSpec::synthetic().power(
            PowerSpec::default()
                .reset_types(ResetTypes::action_info(&["On", "ForceOff", "PowerCycle"]))
                .refuse_reset(400, "iLO is busy: the server is in POST"),
        ),
        FakeBmcSpec::synthetic(),
    ])
    .await;
    let http = client(Duration::from_secs(5));
    let base = fleet.base_url(0);
    let system = get_json(&http, format!("{base}{SYSTEM}")).await;
    let action = &system["Actions"]["#ComputerSystem.Reset"];
    assert_eq!(action["@Redfish.ActionInfo"], RESET_ACTION_INFO);
    assert!(action.get("ResetType@Redfish.AllowableValues").is_none());
    let info = get_json(&http, format!("{base}{RESET_ACTION_INFO}")).await;
    assert_eq!(info["Parameters"][0]["Name"], "ResetType");
    assert_eq!(
        info["Parameters"][0]["AllowableValues"],
        json!(["On", "ForceOff", "PowerCycle"])
    );
    let refused = http
        .post(format!("{base}{RESET_ACTION}"))
        .json(&json!({"ResetType": "PowerCycle"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        extended_message(refused).await,
        "iLO is busy: the server is in POST"
    );
    assert_eq!(fleet.power_state(0).as_deref(), Some("On"));
    assert!(fleet.boots(0).is_empty());

    // Without a power spec nothing is live: writes are refused, and still recorded.
    let plain = fleet.base_url(1);
    let refused = http
        .patch(format!("{plain}{SYSTEM}"))
        .json(&json!({"Boot": {"BootSourceOverrideTarget": "Pxe"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(fleet.writes(1).len(), 1);
    assert_eq!(fleet.power_state(1), None);
    let response = http.get(format!("{plain}{SYSTEM}")).send().await.unwrap();
    assert!(response.headers().get("etag").is_none());
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        synthetic_resource(1, SYSTEM).unwrap(),
        "served as without power"
    );
}
