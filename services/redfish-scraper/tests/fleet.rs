//! The scraper against fleets of fake BMCs (`test_harness::fake_bmc`) and against mockup
//! servers with `$expand`, paged collections and expiring sessions:
//! - each hostile BMC alone: classified, bounded, its message names the problem, no password;
//! - every hostile BMC at once beside healthy ones, through one [`Scraper`];
//! - the per-BMC and global caps on requests in flight, counted by the servers themselves;
//! - session renewal, basic auth, anonymous reads, missing credentials;
//! - `$expand` and paging give the inventory of the plain folder walk, and the scraped
//!   documents written out as a mockup folder walk to it again.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use metal_core::config::{Credentials, RedfishConfig, Secret};
use metal_core::events::ScrapeFailureKind;
use metal_core::inventory::Inventory;
use metal_core::raw::RawBundle;
use metal_core::Mac;
use redfish_scraper::http::{HttpSettings, Scraper, Target};
use redfish_scraper::source::MockupDirSource;
use redfish_scraper::walk::{walk, WalkLimits, Walked};
use redfish_scraper::{RedfishError, RedfishSource};
use serde_json::Value;
use test_harness::fake_bmc::{self, Auth, FakeBmcSpec, FakeFleet, Fault};
use test_harness::mockup::{serve_mockup_with, MockupOptions};

const USER: &str = "fleet-operator";
const PASSWORD: &str = "fleet-pw-7f3a9c1e";

fn credentials() -> Credentials {
    Credentials {
        username: USER.to_string(),
        password: Secret::new(PASSWORD.to_string()),
    }
}

fn session_auth(expire_after_requests: Option<u32>) -> Auth {
    Auth::Sessions {
        user: USER.to_string(),
        password: PASSWORD.to_string(),
        expire_after_requests,
        allow_basic: false,
    }
}

/// Short timeouts for hostile BMCs.
fn short_settings() -> HttpSettings {
    HttpSettings {
        request_timeout: Duration::from_millis(500),
        scrape_deadline: Duration::from_secs(5),
        retries: 2,
        backoff: Duration::from_millis(10),
        max_response_bytes: 1 << 20,
        max_resources: 200,
        ..HttpSettings::from_config(&RedfishConfig::default())
    }
}

async fn scrape_as(
    scraper: &Scraper,
    base_url: &str,
    credentials: Option<&Credentials>,
) -> Result<Walked, RedfishError> {
    scraper
        .scrape(Target {
            base_url,
            credentials,
            no_credentials_reason: None,
            insecure_tls: false,
        })
        .await
}

fn assert_no_password(error: &RedfishError) {
    let chain = metal_core::error_chain(error);
    assert!(
        !chain.contains(PASSWORD),
        "password in error chain: {chain}"
    );
    let debug = format!("{error:?}");
    assert!(!debug.contains(PASSWORD), "password in error: {debug}");
}

/// The synthetic tree of fleet member `index`, read without a network.
struct SyntheticSource(usize);

impl RedfishSource for SyntheticSource {
    async fn get(&self, path: &str) -> Result<Option<Value>, RedfishError> {
        Ok(fake_bmc::synthetic_resource(self.0, path))
    }
}

async fn synthetic_inventory(index: usize) -> Inventory {
    walk(&SyntheticSource(index), WalkLimits::default())
        .await
        .expect("the synthetic tree walks")
        .inventory
}

/// The whole inventory of synthetic fleet member `index`, and its serial and host MACs.
async fn check_synthetic(index: usize, walked: &Walked) {
    let inventory = &walked.inventory;
    assert_eq!(inventory.systems.len(), 1, "BMC {index}: {inventory:?}");
    let system = &inventory.systems[0];
    assert_eq!(
        system.serial.as_deref(),
        Some(fake_bmc::synthetic_serial(index).as_str()),
        "BMC {index}"
    );
    let macs: Vec<Mac> = system
        .ethernet_interfaces
        .iter()
        .filter_map(|nic| nic.mac)
        .collect();
    let expected: Vec<Mac> = fake_bmc::synthetic_host_macs(index)
        .iter()
        .map(|mac| Mac::parse_any(mac).unwrap())
        .collect();
    assert_eq!(macs, expected, "BMC {index}: host MACs");
    assert_eq!(system.processors.len(), 2, "BMC {index}");
    assert_eq!(system.memory.len(), 4, "BMC {index}");
    assert_eq!(system.drives.len(), 2, "BMC {index}");
    assert_eq!(inventory.firmware.len(), 2, "BMC {index}");
    assert_eq!(
        inventory.managers[0].ethernet_interfaces[0].mac,
        Some(Mac::parse_any(&fake_bmc::synthetic_bmc_mac(index)).unwrap()),
        "BMC {index}: BMC MAC"
    );
    assert_eq!(
        *inventory,
        synthetic_inventory(index).await,
        "BMC {index}: inventory differs from the synthetic tree's"
    );
}

// ---------------------------------------------------------------------------------------
// 1. Hostile BMCs, one at a time.
// ---------------------------------------------------------------------------------------

/// What one hostile BMC must come to.
struct Expect {
    kind: ScrapeFailureKind,
    /// Each must appear in the error chain.
    says: &'static [&'static str],
    /// Most requests the BMC may see.
    max_requests: u64,
}

/// Scrapes one BMC with `fault` (session auth) using [`short_settings`]; checks the kind,
/// the message, the request count, the time taken and that no password leaked.
async fn hostile(fault: Fault, expect: Expect) -> RedfishError {
    let settings = short_settings();
    let fleet = FakeFleet::start(vec![FakeBmcSpec::synthetic()
        .auth(session_auth(None))
        .fault(fault.clone())])
    .await;
    let scraper = Scraper::new(settings.clone()).unwrap();
    let started = Instant::now();
    let result = scrape_as(&scraper, &fleet.base_url(0), Some(&credentials())).await;
    let elapsed = started.elapsed();
    let error = match result {
        Ok(walked) => panic!(
            "{fault:?}: a hostile BMC yielded an inventory: {:?}",
            walked.inventory
        ),
        Err(error) => error,
    };
    let chain = metal_core::error_chain(&error);
    assert_eq!(error.kind(), expect.kind, "{fault:?}: {chain}");
    for says in expect.says {
        assert!(
            chain.contains(says),
            "{fault:?}: error does not say {says:?}: {chain}"
        );
    }
    assert_no_password(&error);
    assert!(
        fleet.requests(0) <= expect.max_requests,
        "{fault:?}: {} requests (at most {} expected): {:?}",
        fleet.requests(0),
        expect.max_requests,
        fleet.requests_by_path(0)
    );
    let bound = settings.scrape_deadline + Duration::from_secs(3);
    assert!(
        elapsed < bound,
        "{fault:?}: took {elapsed:?}, more than the deadline and slack {bound:?}"
    );
    error
}

#[tokio::test]
async fn status_401_is_auth() {
    let error = hostile(
        Fault::Status(401),
        Expect {
            kind: ScrapeFailureKind::Auth,
            says: &["refused the credentials (HTTP 401)"],
            // The service root, then the session login; no retries.
            max_requests: 2,
        },
    )
    .await;
    assert!(!error.is_transient());
}

#[tokio::test]
async fn status_403_is_auth() {
    let error = hostile(
        Fault::Status(403),
        Expect {
            kind: ScrapeFailureKind::Auth,
            says: &["refused the credentials (HTTP 403)"],
            max_requests: 2,
        },
    )
    .await;
    assert!(!error.is_transient());
}

#[tokio::test]
async fn server_errors_then_ok_are_retried_to_success() {
    let fleet = FakeFleet::start(vec![FakeBmcSpec::synthetic()
        .auth(session_auth(None))
        .fault(Fault::ServerErrorsThenOk(2))])
    .await;
    let settings = HttpSettings {
        retries: 2,
        ..short_settings()
    };
    let scraper = Scraper::new(settings).unwrap();
    let walked = scrape_as(&scraper, &fleet.base_url(0), Some(&credentials()))
        .await
        .unwrap_or_else(|e| panic!("{}", metal_core::error_chain(&e)));
    check_synthetic(0, &walked).await;
    // Every resource was asked three times: two 500s, then the answer.
    assert_eq!(fleet.path_requests(0, "/redfish/v1/Systems/1"), 3);
    assert_eq!(fleet.stats(0).logins, 1);

    // One retry fewer and the BMC's 500s win.
    let fleet = FakeFleet::start(vec![FakeBmcSpec::synthetic()
        .auth(session_auth(None))
        .fault(Fault::ServerErrorsThenOk(2))])
    .await;
    let scraper = Scraper::new(HttpSettings {
        retries: 1,
        ..short_settings()
    })
    .unwrap();
    let error = scrape_as(&scraper, &fleet.base_url(0), Some(&credentials()))
        .await
        .expect_err("two 500s per resource and one retry cannot succeed");
    assert_eq!(
        error.kind(),
        ScrapeFailureKind::Unreachable,
        "{}",
        metal_core::error_chain(&error)
    );
    assert!(metal_core::error_chain(&error).contains("HTTP 500"));
    assert_no_password(&error);
}

#[tokio::test]
async fn a_hanging_bmc_times_out() {
    let settings = short_settings();
    let error = hostile(
        Fault::Hang,
        Expect {
            kind: ScrapeFailureKind::Timeout,
            says: &["timed out"],
            max_requests: u64::from(settings.retries) + 1,
        },
    )
    .await;
    assert!(error.is_transient());
}

#[tokio::test]
async fn a_trickling_bmc_times_out() {
    let settings = short_settings();
    let error = hostile(
        Fault::Trickle,
        Expect {
            kind: ScrapeFailureKind::Timeout,
            says: &["timed out"],
            max_requests: u64::from(settings.retries) + 1,
        },
    )
    .await;
    assert!(error.is_transient());
}

/// A body cut at the cap: had the client read the gigabyte, the 500 ms request timeout
/// would have fired first and the error would be a timeout, not `TooLarge`.
#[tokio::test]
async fn a_huge_body_is_cut_off() {
    let error = hostile(
        Fault::Huge,
        Expect {
            kind: ScrapeFailureKind::TooLarge,
            says: &["larger than 1048576 bytes"],
            // Not retried.
            max_requests: 1,
        },
    )
    .await;
    assert!(matches!(error, RedfishError::TooLarge { .. }), "{error:?}");
    assert!(!error.is_transient());
}

#[tokio::test]
async fn a_huge_announced_body_is_refused() {
    let error = hostile(
        Fault::HugeWithLength,
        Expect {
            kind: ScrapeFailureKind::TooLarge,
            says: &["larger than 1048576 bytes"],
            max_requests: 1,
        },
    )
    .await;
    assert!(matches!(error, RedfishError::TooLarge { .. }), "{error:?}");
}

#[tokio::test]
async fn a_redirect_loop_is_refused() {
    let settings = short_settings();
    let error = hostile(
        Fault::RedirectLoop,
        Expect {
            kind: ScrapeFailureKind::Protocol,
            says: &["redirect", "more than 3 redirects"],
            // The request and max_redirects hops.
            max_requests: settings.max_redirects as u64 + 1,
        },
    )
    .await;
    assert!(!error.is_transient());
}

#[tokio::test]
async fn a_redirect_to_another_host_is_refused() {
    let error = hostile(
        Fault::RedirectOtherHost,
        Expect {
            kind: ScrapeFailureKind::Protocol,
            says: &["redirect to another host refused"],
            max_requests: 1,
        },
    )
    .await;
    assert!(!error.is_transient());
}

#[tokio::test]
async fn invalid_json_is_a_protocol_error() {
    let error = hostile(
        Fault::InvalidJson,
        Expect {
            kind: ScrapeFailureKind::Protocol,
            says: &["is not valid JSON", "EOF while parsing"],
            max_requests: 1,
        },
    )
    .await;
    assert!(
        matches!(error, RedfishError::InvalidJson { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn deep_nesting_is_refused_by_the_parser() {
    let error = hostile(
        Fault::DeepNesting,
        Expect {
            kind: ScrapeFailureKind::Protocol,
            says: &["is not valid JSON", "recursion limit exceeded"],
            max_requests: 1,
        },
    )
    .await;
    assert!(
        matches!(error, RedfishError::InvalidJson { .. }),
        "{error:?}"
    );
}

/// The fault's endless structure hangs off links the walk has no reason to follow (a
/// processor's `Members`, an `Oem` link to the next system): the walk reads the one system
/// and its one processor, and stops.
#[tokio::test]
async fn a_link_loop_off_the_walk_is_not_followed() {
    let fleet = FakeFleet::start(vec![FakeBmcSpec::synthetic()
        .auth(session_auth(None))
        .fault(Fault::LinkLoop)])
    .await;
    let scraper = Scraper::new(short_settings()).unwrap();
    let walked = scrape_as(&scraper, &fleet.base_url(0), Some(&credentials()))
        .await
        .unwrap_or_else(|e| panic!("{}", metal_core::error_chain(&e)));
    check_link_loop(&walked);
    for never in [
        "/redfish/v1/Systems/1/Processors/2",
        "/redfish/v1/Systems/2",
    ] {
        assert_eq!(
            fleet.path_requests(0, never),
            0,
            "{never} was followed: {:?}",
            fleet.requests_by_path(0)
        );
    }
    assert_eq!(
        fleet.path_requests(0, "/redfish/v1/Systems/1/Processors/1"),
        1
    );
    // The synthetic tree's 31 requests at most: nothing of the endless structure.
    assert!(
        fleet.requests(0) <= 31,
        "{} requests: {:?}",
        fleet.requests(0),
        fleet.requests_by_path(0)
    );
}

/// What a walk of a [`Fault::LinkLoop`] BMC finds: one system, `LOOP1`, with one processor.
fn check_link_loop(walked: &Walked) {
    let systems = &walked.inventory.systems;
    assert_eq!(systems.len(), 1, "{systems:?}");
    assert_eq!(systems[0].serial.as_deref(), Some("LOOP1"));
    assert_eq!(systems[0].processors.len(), 1, "{systems:?}");
}

/// A tree whose processor collection lists the system itself: followed naively, the
/// system's processors would be read again and again.
fn looping_tree() -> fake_bmc::Tree {
    let dir = tempfile::tempdir().unwrap();
    let documents = [
        (
            "redfish/v1",
            serde_json::json!({
                "@odata.id": "/redfish/v1",
                "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
                "Id": "RootService",
                "Systems": {"@odata.id": "/redfish/v1/Systems"},
                "Links": {"Sessions": {"@odata.id": fake_bmc::SESSIONS}},
            }),
        ),
        (
            "redfish/v1/Systems",
            serde_json::json!({
                "@odata.id": "/redfish/v1/Systems",
                "Members": [{"@odata.id": "/redfish/v1/Systems/1"}],
            }),
        ),
        (
            "redfish/v1/Systems/1",
            serde_json::json!({
                "@odata.id": "/redfish/v1/Systems/1",
                "@odata.type": "#ComputerSystem.v1_10_0.ComputerSystem",
                "Id": "1",
                "SerialNumber": "LOOPING",
                "Processors": {"@odata.id": "/redfish/v1/Systems/1/Processors"},
            }),
        ),
        (
            "redfish/v1/Systems/1/Processors",
            serde_json::json!({
                "@odata.id": "/redfish/v1/Systems/1/Processors",
                "Members": [{"@odata.id": "/redfish/v1/Systems/1"}],
            }),
        ),
    ];
    for (path, doc) in documents {
        let folder = dir.path().join(path);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("index.json"), doc.to_string()).unwrap();
    }
    fake_bmc::Tree::mockup(dir.path()).unwrap()
}

#[tokio::test]
async fn a_link_loop_on_the_walk_is_refused() {
    let fleet = FakeFleet::start(vec![
        FakeBmcSpec::new(looping_tree()).auth(session_auth(None))
    ])
    .await;
    let scraper = Scraper::new(short_settings()).unwrap();
    let error = scrape_as(&scraper, &fleet.base_url(0), Some(&credentials()))
        .await
        .expect_err("a system listed as its own processor is a loop");
    let chain = metal_core::error_chain(&error);
    assert_eq!(error.kind(), ScrapeFailureKind::Protocol, "{chain}");
    assert!(
        chain.contains("link loop: linked as a Processor but already read as a ComputerSystem"),
        "{chain}"
    );
    assert!(chain.contains("/redfish/v1/Systems/1"), "{chain}");
    assert_no_password(&error);
    assert_eq!(fleet.path_requests(0, "/redfish/v1/Systems/1"), 1);
}

#[tokio::test]
async fn an_endless_collection_hits_the_resource_cap() {
    let error = hostile(
        Fault::EndlessNextLink,
        Expect {
            kind: ScrapeFailureKind::TooLarge,
            says: &["more than 200 resources"],
            // The cap, plus the login's service root and session, and the logout.
            max_requests: 200 + 3,
        },
    )
    .await;
    assert!(
        matches!(error, RedfishError::TooManyResources { limit: 200, .. }),
        "{error:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 2. Hostile and healthy BMCs at once, through one scraper.
// ---------------------------------------------------------------------------------------

/// How a BMC of the mixed fleet must end.
#[derive(Debug)]
enum Ends {
    /// The synthetic inventory of its index.
    Synthetic,
    /// What [`check_link_loop`] checks.
    LinkLoop,
    Fails(ScrapeFailureKind),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bmcs_do_not_hold_up_healthy_ones() {
    const HEALTHY: usize = 6;
    // A hang lasts until the scrape deadline: the request timeout is most of it.
    let settings = HttpSettings {
        request_timeout: Duration::from_secs(4),
        scrape_deadline: Duration::from_secs(6),
        retries: 2,
        backoff: Duration::from_millis(10),
        max_response_bytes: 1 << 20,
        max_resources: 200,
        ..HttpSettings::from_config(&RedfishConfig::default())
    };
    let faulty = |fault: Fault| {
        FakeBmcSpec::synthetic()
            .auth(session_auth(None))
            .fault(fault)
    };
    let hostile: Vec<(FakeBmcSpec, Ends)> = vec![
        (
            faulty(Fault::Status(401)),
            Ends::Fails(ScrapeFailureKind::Auth),
        ),
        (
            faulty(Fault::Status(403)),
            Ends::Fails(ScrapeFailureKind::Auth),
        ),
        (faulty(Fault::ServerErrorsThenOk(2)), Ends::Synthetic),
        (faulty(Fault::Hang), Ends::Fails(ScrapeFailureKind::Timeout)),
        (
            faulty(Fault::Trickle),
            Ends::Fails(ScrapeFailureKind::Timeout),
        ),
        (
            faulty(Fault::Huge),
            Ends::Fails(ScrapeFailureKind::TooLarge),
        ),
        (
            faulty(Fault::HugeWithLength),
            Ends::Fails(ScrapeFailureKind::TooLarge),
        ),
        (
            faulty(Fault::RedirectLoop),
            Ends::Fails(ScrapeFailureKind::Protocol),
        ),
        (
            faulty(Fault::RedirectOtherHost),
            Ends::Fails(ScrapeFailureKind::Protocol),
        ),
        (
            faulty(Fault::InvalidJson),
            Ends::Fails(ScrapeFailureKind::Protocol),
        ),
        (faulty(Fault::LinkLoop), Ends::LinkLoop),
        (
            FakeBmcSpec::new(looping_tree()).auth(session_auth(None)),
            Ends::Fails(ScrapeFailureKind::Protocol),
        ),
        (
            faulty(Fault::DeepNesting),
            Ends::Fails(ScrapeFailureKind::Protocol),
        ),
        (
            faulty(Fault::EndlessNextLink),
            Ends::Fails(ScrapeFailureKind::TooLarge),
        ),
    ];
    // Healthy ones first, so their indexes are their synthetic indexes.
    let mut specs: Vec<FakeBmcSpec> = (0..HEALTHY)
        .map(|_| {
            FakeBmcSpec::synthetic()
                .latency(Duration::from_millis(100))
                .auth(session_auth(None))
        })
        .collect();
    specs.extend(hostile.iter().map(|(spec, _)| spec.clone()));
    let fleet = FakeFleet::start(specs).await;
    let scraper = Scraper::new(settings.clone()).unwrap();
    let mut scrapes = tokio::task::JoinSet::new();
    for i in 0..fleet.len() {
        let scraper = scraper.clone();
        let url = fleet.base_url(i);
        scrapes.spawn(async move {
            let credentials = credentials();
            let started = Instant::now();
            let result = scrape_as(&scraper, &url, Some(&credentials)).await;
            (i, result, started.elapsed())
        });
    }
    let mut results: Vec<_> = scrapes.join_all().await;
    results.sort_by_key(|(i, _, _)| *i);

    // Well within the hang's own scrape, which lasts the whole deadline.
    let healthy_bound = settings.scrape_deadline / 2;
    for (i, result, elapsed) in &results[..HEALTHY] {
        let walked = result
            .as_ref()
            .unwrap_or_else(|e| panic!("healthy BMC {i}: {}", metal_core::error_chain(e)));
        check_synthetic(*i, walked).await;
        assert!(
            *elapsed < healthy_bound,
            "healthy BMC {i} took {elapsed:?} beside hostile ones (bound {healthy_bound:?})"
        );
    }
    let deadline_bound = settings.scrape_deadline + Duration::from_secs(3);
    for ((spec, ends), (i, result, elapsed)) in hostile.iter().zip(&results[HEALTHY..]) {
        let fault = &spec.fault;
        match (ends, result) {
            (Ends::Synthetic, Ok(walked)) => check_synthetic(*i, walked).await,
            (Ends::LinkLoop, Ok(walked)) => check_link_loop(walked),
            (Ends::Fails(kind), Err(error)) => {
                assert_eq!(
                    error.kind(),
                    *kind,
                    "BMC {i} {fault:?}: {}",
                    metal_core::error_chain(error)
                );
                assert_no_password(error);
            }
            (ends, Ok(_)) => panic!("BMC {i} {fault:?}: yielded an inventory, not {ends:?}"),
            (ends, Err(error)) => panic!(
                "BMC {i} {fault:?}: {}, not {ends:?}",
                metal_core::error_chain(error)
            ),
        }
        assert!(
            *elapsed < deadline_bound,
            "BMC {i} {fault:?} took {elapsed:?}, more than the deadline and slack"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 3. Requests in flight, counted by the BMCs.
// ---------------------------------------------------------------------------------------

async fn scrape_fleet(fleet: &FakeFleet, settings: HttpSettings) {
    let scraper = Scraper::new(settings).unwrap();
    let mut scrapes = tokio::task::JoinSet::new();
    for i in 0..fleet.len() {
        let scraper = scraper.clone();
        let url = fleet.base_url(i);
        scrapes.spawn(async move {
            let credentials = credentials();
            (i, scrape_as(&scraper, &url, Some(&credentials)).await)
        });
    }
    for (i, result) in scrapes.join_all().await {
        let walked = result.unwrap_or_else(|e| panic!("BMC {i}: {}", metal_core::error_chain(&e)));
        check_synthetic(i, &walked).await;
        assert_eq!(
            fleet.stats(i).sessions_open,
            0,
            "BMC {i}: session left open"
        );
    }
}

fn synthetic_fleet(count: usize, latency: Duration) -> Vec<FakeBmcSpec> {
    (0..count)
        .map(|_| {
            FakeBmcSpec::synthetic()
                .latency(latency)
                .auth(session_auth(None))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_bmc_and_global_caps_hold_and_are_reached() {
    let fleet = FakeFleet::start(synthetic_fleet(50, Duration::from_millis(50))).await;
    scrape_fleet(
        &fleet,
        HttpSettings {
            per_bmc_concurrency: 4,
            global_concurrency: 16,
            ..common::relaxed_settings()
        },
    )
    .await;
    let peaks: Vec<u64> = (0..fleet.len()).map(|i| fleet.peak_in_flight(i)).collect();
    let total = fleet.peak_in_flight_total();
    assert!(
        peaks.iter().all(|&peak| peak <= 4),
        "a BMC saw more than 4 requests at once: {peaks:?}"
    );
    assert!(
        total <= 16,
        "the fleet saw {total} requests at once, global cap 16"
    );
    // The caps were worked against, not avoided by serialising.
    assert!(total > 8, "the fleet never saw more than {total} at once");
    assert!(
        peaks.iter().any(|&peak| peak > 1),
        "no BMC ever saw two requests at once: {peaks:?}"
    );
}

/// The caps during the walk alone: no credentials, so no login and no logout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_hold_for_anonymous_scrapes() {
    let fleet = FakeFleet::start(
        (0..24)
            .map(|_| FakeBmcSpec::synthetic().latency(Duration::from_millis(50)))
            .collect(),
    )
    .await;
    let scraper = Scraper::new(HttpSettings {
        per_bmc_concurrency: 4,
        global_concurrency: 16,
        ..common::relaxed_settings()
    })
    .unwrap();
    let mut scrapes = tokio::task::JoinSet::new();
    for i in 0..fleet.len() {
        let scraper = scraper.clone();
        let url = fleet.base_url(i);
        scrapes.spawn(async move { (i, scrape_as(&scraper, &url, None).await) });
    }
    for (i, result) in scrapes.join_all().await {
        let walked = result.unwrap_or_else(|e| panic!("BMC {i}: {}", metal_core::error_chain(&e)));
        check_synthetic(i, &walked).await;
    }
    let peaks: Vec<u64> = (0..fleet.len()).map(|i| fleet.peak_in_flight(i)).collect();
    let total = fleet.peak_in_flight_total();
    assert!(peaks.iter().all(|&peak| peak <= 4), "{peaks:?}");
    assert!(
        total <= 16,
        "the fleet saw {total} requests at once, global cap 16"
    );
    assert!(total > 8, "the fleet never saw more than {total} at once");
    assert!(peaks.iter().any(|&peak| peak > 1), "{peaks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_bmc_cap_of_two() {
    let fleet = FakeFleet::start(synthetic_fleet(10, Duration::from_millis(50))).await;
    scrape_fleet(
        &fleet,
        HttpSettings {
            per_bmc_concurrency: 2,
            global_concurrency: 64,
            ..common::relaxed_settings()
        },
    )
    .await;
    let peaks: Vec<u64> = (0..fleet.len()).map(|i| fleet.peak_in_flight(i)).collect();
    assert!(
        peaks.iter().all(|&peak| peak <= 2),
        "a BMC saw more than 2 requests at once: {peaks:?}"
    );
    assert!(
        peaks.contains(&2),
        "no BMC ever saw two requests at once: {peaks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_bmc_concurrency_is_capped_at_four_whatever_the_config() {
    let fleet = FakeFleet::start(synthetic_fleet(4, Duration::from_millis(50))).await;
    scrape_fleet(
        &fleet,
        HttpSettings {
            per_bmc_concurrency: 32,
            global_concurrency: 64,
            ..common::relaxed_settings()
        },
    )
    .await;
    let peaks: Vec<u64> = (0..fleet.len()).map(|i| fleet.peak_in_flight(i)).collect();
    assert!(peaks.iter().all(|&peak| peak <= 4), "{peaks:?}");
}

// ---------------------------------------------------------------------------------------
// 4. Sessions that expire.
// ---------------------------------------------------------------------------------------

/// Requests one full scrape of a synthetic BMC makes with a session that never expires.
async fn synthetic_scrape_requests() -> u64 {
    let fleet = FakeFleet::start(vec![FakeBmcSpec::synthetic().auth(session_auth(None))]).await;
    let scraper = Scraper::new(common::relaxed_settings()).unwrap();
    scrape_as(&scraper, &fleet.base_url(0), Some(&credentials()))
        .await
        .unwrap_or_else(|e| panic!("{}", metal_core::error_chain(&e)));
    let stats = fleet.stats(0);
    assert_eq!(stats.logins, 1);
    assert_eq!(stats.session_deletions, 1);
    assert_eq!(stats.sessions_expired, 0);
    stats.requests
}

#[tokio::test]
async fn an_expired_session_is_renewed_once() {
    let requests = synthetic_scrape_requests().await;
    assert!(
        requests > 20,
        "a scrape of the synthetic tree is {requests} requests"
    );
    // The first session serves about two thirds of the walk, the second the rest.
    let expire = u32::try_from(requests * 2 / 3).unwrap();
    let fleet = FakeFleet::start(vec![FakeBmcSpec::synthetic()
        .latency(Duration::from_millis(5))
        .auth(session_auth(Some(expire)))])
    .await;
    let scraper = Scraper::new(common::relaxed_settings()).unwrap();
    let walked = scrape_as(&scraper, &fleet.base_url(0), Some(&credentials()))
        .await
        .unwrap_or_else(|e| panic!("expire after {expire}: {}", metal_core::error_chain(&e)));
    check_synthetic(0, &walked).await;
    let stats = fleet.stats(0);
    assert_eq!(stats.logins, 2, "one login and one re-login: {stats:?}");
    assert_eq!(stats.sessions_expired, 1, "{stats:?}");
    // The second, live session was deleted at the end; the first had already expired.
    assert_eq!(stats.session_deletions, 1, "{stats:?}");
    assert_eq!(stats.sessions_open, 0, "{stats:?}");
}

#[tokio::test]
async fn a_session_that_keeps_expiring_fails_after_one_relogin() {
    // Some(1): the re-login's session expires at once. Some(5): two sessions of five
    // requests cannot cover the walk, and only one re-login is allowed.
    for expire in [1, 5] {
        let fleet = FakeFleet::start(vec![FakeBmcSpec::synthetic()
            .latency(Duration::from_millis(5))
            .auth(session_auth(Some(expire)))])
        .await;
        let scraper = Scraper::new(common::relaxed_settings()).unwrap();
        let error = scrape_as(&scraper, &fleet.base_url(0), Some(&credentials()))
            .await
            .expect_err("a session that keeps expiring cannot give an inventory");
        let chain = metal_core::error_chain(&error);
        assert_eq!(
            error.kind(),
            ScrapeFailureKind::Auth,
            "expire {expire}: {chain}"
        );
        assert!(chain.contains("HTTP 401"), "expire {expire}: {chain}");
        assert_no_password(&error);
        let stats = fleet.stats(0);
        assert_eq!(
            stats.logins, 2,
            "expire {expire}: one re-login only: {stats:?}"
        );
        assert_eq!(stats.failed_logins, 0, "{stats:?}");
    }
}

fn mockup_folder(name: &str) -> std::path::PathBuf {
    let folder = test_harness::paths::redfish_mockups_dir().join(name);
    assert!(
        folder.join("redfish/v1/index.json").is_file(),
        "mockup {} missing",
        folder.display()
    );
    folder
}

async fn folder_walk(folder: &Path) -> Inventory {
    walk(&MockupDirSource::new(folder), WalkLimits::default())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "walking {}: {}",
                folder.display(),
                metal_core::error_chain(&e)
            )
        })
        .inventory
}

fn mockup_credentials() -> Option<(String, String)> {
    Some((USER.to_string(), PASSWORD.to_string()))
}

#[tokio::test]
async fn mockup_session_expiring_mid_walk_is_renewed() {
    let folder = mockup_folder("hpe-proliant-xl675d-gen10plus-a100");
    let expected = folder_walk(&folder).await;
    let scraper = Scraper::new(common::relaxed_settings()).unwrap();

    // How many requests a scrape takes when the session lasts.
    let server = serve_mockup_with(
        &folder,
        MockupOptions {
            credentials: mockup_credentials(),
            ..MockupOptions::default()
        },
    )
    .await;
    let walked = scrape_as(&scraper, &server.base_url(), Some(&credentials()))
        .await
        .unwrap_or_else(|e| panic!("{}", metal_core::error_chain(&e)));
    assert_eq!(walked.inventory, expected);
    assert_eq!(server.sessions_created(), 1);
    let requests = server.requests();
    assert!(requests > 20, "{requests} requests");

    let expire = u32::try_from(requests * 2 / 3).unwrap();
    let server = serve_mockup_with(
        &folder,
        MockupOptions {
            credentials: mockup_credentials(),
            session_expire_after_requests: Some(expire),
            ..MockupOptions::default()
        },
    )
    .await;
    let walked = scrape_as(&scraper, &server.base_url(), Some(&credentials()))
        .await
        .unwrap_or_else(|e| panic!("expire after {expire}: {}", metal_core::error_chain(&e)));
    assert_eq!(walked.inventory, expected);
    assert_one_relogin(&server);

    // With $expand honoured the walk is short: sessions of ten requests and one re-login
    // cover it.
    let server = serve_mockup_with(
        &folder,
        MockupOptions {
            credentials: mockup_credentials(),
            expand: true,
            session_expire_after_requests: Some(10),
            ..MockupOptions::default()
        },
    )
    .await;
    let walked = scrape_as(&scraper, &server.base_url(), Some(&credentials()))
        .await
        .unwrap_or_else(|e| panic!("expanded, expire after 10: {}", metal_core::error_chain(&e)));
    assert_eq!(walked.inventory, expected);
    assert_one_relogin(&server);

    // Walked plainly, a session of ten requests cannot be renewed often enough.
    let server = serve_mockup_with(
        &folder,
        MockupOptions {
            credentials: mockup_credentials(),
            session_expire_after_requests: Some(10),
            ..MockupOptions::default()
        },
    )
    .await;
    let error = scrape_as(&scraper, &server.base_url(), Some(&credentials()))
        .await
        .expect_err("sessions of ten requests cannot cover the walk with one re-login");
    assert_eq!(
        error.kind(),
        ScrapeFailureKind::Auth,
        "{}",
        metal_core::error_chain(&error)
    );
    assert_no_password(&error);
    assert_eq!(server.sessions_created(), 2, "one re-login only");
}

// ---------------------------------------------------------------------------------------
// 5. Basic auth, anonymous reads, missing credentials.
// ---------------------------------------------------------------------------------------

fn basic_auth() -> Auth {
    Auth::Basic {
        user: USER.to_string(),
        password: PASSWORD.to_string(),
    }
}

#[tokio::test]
async fn basic_auth_when_sessions_are_refused() {
    let fleet = FakeFleet::start(vec![FakeBmcSpec::synthetic().auth(basic_auth())]).await;
    let scraper = Scraper::new(common::relaxed_settings()).unwrap();
    let walked = scrape_as(&scraper, &fleet.base_url(0), Some(&credentials()))
        .await
        .unwrap_or_else(|e| panic!("{}", metal_core::error_chain(&e)));
    check_synthetic(0, &walked).await;
    let stats = fleet.stats(0);
    assert_eq!(stats.logins, 0, "{stats:?}");
    assert_eq!(
        stats.unauthorized, 0,
        "every request carried basic auth: {stats:?}"
    );
}

#[tokio::test]
async fn wrong_basic_password_is_auth() {
    let fleet = FakeFleet::start(vec![FakeBmcSpec::synthetic().auth(basic_auth())]).await;
    let scraper = Scraper::new(short_settings()).unwrap();
    let wrong = Credentials {
        username: USER.to_string(),
        password: Secret::new("wrong-pw-0c4d".to_string()),
    };
    let error = scrape_as(&scraper, &fleet.base_url(0), Some(&wrong))
        .await
        .expect_err("a wrong password cannot read the BMC");
    assert_eq!(error.kind(), ScrapeFailureKind::Auth);
    assert!(!metal_core::error_chain(&error).contains("wrong-pw-0c4d"));
}

#[tokio::test]
async fn anonymous_bmc_without_credentials() {
    let fleet = FakeFleet::start(vec![FakeBmcSpec::synthetic().auth(Auth::None)]).await;
    let scraper = Scraper::new(common::relaxed_settings()).unwrap();
    let walked = scrape_as(&scraper, &fleet.base_url(0), None)
        .await
        .unwrap_or_else(|e| panic!("{}", metal_core::error_chain(&e)));
    check_synthetic(0, &walked).await;
    let stats = fleet.stats(0);
    assert_eq!(stats.logins, 0, "no session without credentials: {stats:?}");
    assert_eq!(stats.unauthorized, 0, "{stats:?}");
}

#[tokio::test]
async fn basic_bmc_without_credentials_is_no_credentials() {
    let fleet = FakeFleet::start(vec![FakeBmcSpec::synthetic().auth(basic_auth())]).await;
    let scraper = Scraper::new(short_settings()).unwrap();
    let reason = "METAL_REDFISH_PASSWORD is not set for rack 7";
    let error = scraper
        .scrape(Target {
            base_url: &fleet.base_url(0),
            credentials: None,
            no_credentials_reason: Some(reason),
            insecure_tls: false,
        })
        .await
        .expect_err("a BMC asking for credentials cannot be read without them");
    let chain = metal_core::error_chain(&error);
    assert_eq!(error.kind(), ScrapeFailureKind::NoCredentials, "{chain}");
    assert!(chain.contains(reason), "{chain}");
    assert!(chain.contains("HTTP 401"), "{chain}");
    assert!(!error.is_transient());
}

// ---------------------------------------------------------------------------------------
// 6. $expand, paging and the raw round trip, for every mockup folder.
// ---------------------------------------------------------------------------------------

/// One mockup folder served and scraped.
struct Served {
    name: String,
    /// Requests the server answered.
    requests: u64,
    /// Of which carried `$expand`.
    expand_requests: u64,
    /// The `$expand` query the scrape reports.
    expand: Option<String>,
}

/// The plain walk of a mockup folder, documents included.
async fn folder_walked(folder: &Path) -> Walked {
    walk(&MockupDirSource::new(folder), WalkLimits::default())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "walking {}: {}",
                folder.display(),
                metal_core::error_chain(&e)
            )
        })
}

/// Serves every mockup folder with `options`, scrapes it with `settings`, and checks the
/// inventory and the set of documents against the plain folder walk, and the inventory
/// again after a round trip of the scraped documents through a mockup folder.
async fn mockups_served(options: MockupOptions, settings: HttpSettings) -> Vec<Served> {
    let scraper = Scraper::new(settings).unwrap();
    let mut served = Vec::new();
    for folder in test_harness::paths::mockup_folders() {
        let name = common::folder_name(&folder);
        let expected = folder_walked(&folder).await;
        let server = serve_mockup_with(
            &folder,
            MockupOptions {
                credentials: mockup_credentials(),
                ..options.clone()
            },
        )
        .await;
        let walked = scrape_as(&scraper, &server.base_url(), Some(&credentials()))
            .await
            .unwrap_or_else(|e| panic!("{name} {options:?}: {}", metal_core::error_chain(&e)));
        assert_eq!(
            walked.inventory, expected.inventory,
            "{name} {options:?}: scraped inventory differs from the folder walk"
        );
        assert_eq!(
            walked.documents.keys().collect::<Vec<_>>(),
            expected.documents.keys().collect::<Vec<_>>(),
            "{name} {options:?}: scraped documents differ from the folder walk's"
        );
        assert_eq!(server.sessions_open(), 0, "{name}");

        let copy = tempfile::tempdir().unwrap();
        let bundle = RawBundle::new(
            server.base_url(),
            walked.expand.clone(),
            walked.documents.clone(),
        );
        let written = bundle.write_mockup(copy.path()).unwrap();
        assert_eq!(written, walked.documents.len());
        let again = folder_walk(copy.path()).await;
        assert_eq!(
            again, expected.inventory,
            "{name} {options:?}: the scraped documents as a mockup folder walk differently"
        );
        served.push(Served {
            name,
            requests: server.requests(),
            expand_requests: server.expand_requests(),
            expand: walked.expand,
        });
    }
    assert!(!served.is_empty(), "no mockup folders");
    served
}

/// Each folder served as recorded (no `$expand` honoured, no paging).
async fn mockups_plain() -> Vec<Served> {
    mockups_served(MockupOptions::default(), common::relaxed_settings()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expanded_mockups_give_the_folder_inventory() {
    let plain = mockups_plain().await;
    let expanded = mockups_served(
        MockupOptions {
            expand: true,
            ..MockupOptions::default()
        },
        common::relaxed_settings(),
    )
    .await;
    for (plain, expanded) in plain.iter().zip(&expanded) {
        let name = &expanded.name;
        assert!(expanded.expand_requests > 0, "{name}: $expand was not used");
        assert!(expanded.expand.is_some(), "{name}: no $expand reported");
        // Members came inline, not one request each.
        assert!(
            expanded.requests < plain.requests,
            "{name}: {} requests expanded, {} plain",
            expanded.requests,
            plain.requests
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_mockups_give_the_folder_inventory() {
    let plain = mockups_plain().await;
    let paged = mockups_served(
        MockupOptions {
            page_size: Some(2),
            ..MockupOptions::default()
        },
        common::relaxed_settings(),
    )
    .await;
    // Pages were followed: more requests than the plain scrape, for some folder at least.
    assert!(
        plain
            .iter()
            .zip(&paged)
            .all(|(plain, paged)| paged.requests >= plain.requests),
        "a paged scrape took fewer requests than the plain one"
    );
    assert!(
        plain
            .iter()
            .zip(&paged)
            .any(|(plain, paged)| paged.requests > plain.requests),
        "no folder was paged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_and_expanded_mockups_give_the_folder_inventory() {
    let served = mockups_served(
        MockupOptions {
            expand: true,
            page_size: Some(2),
            ..MockupOptions::default()
        },
        common::relaxed_settings(),
    )
    .await;
    for served in served {
        let name = &served.name;
        assert!(served.expand_requests > 0, "{name}: $expand was not used");
        assert!(served.expand.is_some(), "{name}: no $expand reported");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expand_off_in_the_settings_is_never_sent() {
    let served = mockups_served(
        MockupOptions {
            expand: true,
            page_size: Some(2),
            ..MockupOptions::default()
        },
        HttpSettings {
            use_expand: false,
            ..common::relaxed_settings()
        },
    )
    .await;
    for served in served {
        let name = &served.name;
        assert_eq!(
            served.expand_requests, 0,
            "{name}: $expand sent though use_expand is off"
        );
        assert_eq!(served.expand, None, "{name}");
    }
}

/// The mockup server saw one expired session, one re-login, and the live session deleted.
fn assert_one_relogin(server: &test_harness::mockup::MockupServer) {
    assert_eq!(server.sessions_created(), 2, "one re-login");
    assert_eq!(server.sessions_expired(), 1);
    assert_eq!(server.sessions_deleted(), 1, "the live session is deleted");
    assert_eq!(server.sessions_open(), 0);
}
