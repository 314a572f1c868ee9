//! The locator with a UniFi source on a real nats-server: a burst of 1,000 onboardings
//! costs one login and a handful of list calls, a session that expires mid-burst still
//! locates every MAC, and a misbehaving controller ends in a clear `machine.locate.failed`
//! while the locator keeps answering other requests.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use common::spawn_locator;
use futures::StreamExt;
use metal_core::config::{Config, StaticBmc, UnifiConfig, UnifiFlavour};
use metal_core::{subjects, Mac};
use test_harness::nats::NatsServer;
use test_harness::unifi::{self, FakeUnifi, Fault, UnifiOptions};

fn unifi_config(fake: &FakeUnifi, dir: &tempfile::TempDir, sites: &[&str]) -> UnifiConfig {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let variable = format!(
        "METAL_TEST_UNIFI_NATS_PASSWORD_{}",
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    std::env::set_var(&variable, unifi::PASSWORD);
    let ca_file = dir.path().join(format!("{variable}.pem"));
    std::fs::write(&ca_file, fake.ca_pem()).unwrap();
    UnifiConfig {
        name: "core".into(),
        url: fake.url(),
        flavour: UnifiFlavour::Auto,
        sites: sites.iter().map(|s| s.to_string()).collect(),
        username: Some(unifi::USERNAME.into()),
        password_env: Some(variable),
        api_key_env: None,
        ca_file: Some(ca_file),
        cert_sha256: None,
        insecure_tls: false,
        cache_secs: 30,
    }
}

fn burst_mac(i: usize) -> String {
    format!("02:00:5e:30:{:02x}:{:02x}", i / 256, i % 256)
}

fn burst_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 3, (i / 256) as u8, (i % 256) as u8)
}

/// Counts `machine.bmc.located` per BMC MAC as they are published (a core subscription
/// sees every JetStream publish), until `want` distinct MACs are located.
async fn wait_located(
    located: &mut async_nats::Subscriber,
    seen: &mut HashMap<String, serde_json::Value>,
    want: usize,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    while seen.len() < want {
        let message = tokio::time::timeout_at(deadline, located.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {want} located in time", seen.len()))
            .expect("subscription open");
        let event: metal_core::Envelope = serde_json::from_slice(&message.payload).unwrap();
        seen.insert(event.bmc_mac.unwrap().to_string(), event.data);
    }
}

async fn publish_requests(client: &async_nats::Client, macs: impl Iterator<Item = String>) {
    // A core publish to a subject no stream holds yet is dropped; the locator creates the
    // stream too, but may not have yet.
    metal_core::jetstream::ensure_stream(&async_nats::jetstream::new(client.clone()))
        .await
        .unwrap();
    for mac in macs {
        // A plain core publish of a bare MAC: what `nats pub` sends.
        client
            .publish(subjects::ONBOARD_REQUESTED, mac.into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
}

/// Every event on the stream, and exactly one `located` per MAC in `macs`.
async fn assert_located_once(client: &async_nats::Client, macs: &HashSet<String>) {
    let events = test_harness::stream::read_events(client).await;
    let mut per_mac: HashMap<String, usize> = HashMap::new();
    for event in events
        .iter()
        .filter(|e| e.event_type == subjects::BMC_LOCATED)
    {
        *per_mac
            .entry(event.bmc_mac.unwrap().to_string())
            .or_default() += 1;
    }
    for mac in macs {
        assert_eq!(per_mac.get(mac), Some(&1), "{mac} located exactly once");
    }
    assert!(
        !events
            .iter()
            .any(|e| e.event_type == subjects::LOCATE_FAILED),
        "nothing failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_1000_onboardings_costs_one_login_and_a_handful_of_list_calls() {
    let server = NatsServer::start();
    let client = server.connect().await;
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeUnifi::start(
        UnifiOptions::unifi_os()
            .sites(&["default", "rack2"])
            .without_fixture_clients(),
    )
    .await;
    let macs: Vec<String> = (0..1000).map(burst_mac).collect();
    for (i, mac) in macs.iter().enumerate() {
        let site = if i % 2 == 0 { "default" } else { "rack2" };
        fake.add_client(site, mac, burst_ip(i));
    }
    let mut config = Config {
        nats_url: server.url(),
        ..Config::default()
    };
    config
        .locator
        .unifi
        .push(unifi_config(&fake, &dir, &["default", "rack2"]));
    config.locator.redfish_scheme = "http".into();
    let mut located = client.subscribe(subjects::BMC_LOCATED).await.unwrap();
    let _stop = spawn_locator(config, server.connect().await);

    publish_requests(&client, macs.iter().cloned()).await;
    let mut seen = HashMap::new();
    wait_located(
        &mut located,
        &mut seen,
        macs.len(),
        Duration::from_secs(120),
    )
    .await;

    for (i, mac) in macs.iter().enumerate() {
        let data = &seen[mac];
        assert_eq!(data["source"], "unifi");
        assert_eq!(data["source_name"], "core");
        assert_eq!(data["bmc_ip"], burst_ip(i).to_string());
        assert_eq!(data["redfish_url"], format!("http://{}", burst_ip(i)));
        assert!(data["last_seen"].is_string(), "{data}");
    }
    assert_eq!(fake.logins(), 1, "one login shared by every lookup");
    assert_eq!(fake.probes(), 1);
    assert!(
        fake.list_calls(unifi::STAT_STA) <= 4,
        "at most two list calls per site, not one per MAC: {}",
        fake.list_calls(unifi::STAT_STA)
    );
    assert_eq!(
        fake.list_calls(unifi::REST_USER),
        0,
        "every MAC was active, so known clients were never asked"
    );
    assert_located_once(&client, &macs.iter().cloned().collect()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_expiring_mid_burst_still_locates_every_mac() {
    let server = NatsServer::start();
    let client = server.connect().await;
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeUnifi::start(UnifiOptions::classic().without_fixture_clients()).await;
    let macs: Vec<String> = (0..1000).map(burst_mac).collect();
    // Half the BMCs are there at once; the other half shows up after the session expired.
    for (i, mac) in macs.iter().enumerate().take(500) {
        fake.add_client("default", mac, burst_ip(i));
    }
    let mut config = Config {
        nats_url: server.url(),
        ..Config::default()
    };
    let mut controller = unifi_config(&fake, &dir, &["default"]);
    controller.cache_secs = 1;
    config.locator.unifi.push(controller);
    config.locator.retry_secs = 1;
    config.locator.locate_deadline_secs = 120;
    let mut located = client.subscribe(subjects::BMC_LOCATED).await.unwrap();
    let _stop = spawn_locator(config, server.connect().await);

    publish_requests(&client, macs.iter().cloned()).await;
    let mut seen = HashMap::new();
    wait_located(&mut located, &mut seen, 500, Duration::from_secs(120)).await;
    assert_eq!(fake.logins(), 1);

    fake.expire_sessions();
    for (i, mac) in macs.iter().enumerate().skip(500) {
        fake.add_client("default", mac, burst_ip(i));
    }
    wait_located(&mut located, &mut seen, 1000, Duration::from_secs(120)).await;

    assert_eq!(
        fake.logins(),
        2,
        "the expired session was replaced once, not per lookup"
    );
    assert!(
        fake.list_calls(unifi::STAT_STA) < 200,
        "lists are shared, not fetched per MAC: {}",
        fake.list_calls(unifi::STAT_STA)
    );
    assert_located_once(&client, &macs.iter().cloned().collect()).await;
}

/// One misbehaving controller: what `machine.locate.failed` says, and a static BMC
/// requested next is still located.
struct BadCase {
    name: &'static str,
    options: UnifiOptions,
    fault: Option<Fault>,
    password: &'static str,
    site: &'static str,
    expected: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_controller_is_a_clear_reason_and_other_requests_go_on() {
    let server = NatsServer::start();
    let client = server.connect().await;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        BadCase {
            name: "HTML instead of JSON",
            options: UnifiOptions::classic(),
            fault: Some(Fault::Html),
            password: unifi::PASSWORD,
            site: "default",
            expected: "answered text/html",
        },
        BadCase {
            name: "rc: error envelope",
            options: UnifiOptions::unifi_os(),
            fault: Some(Fault::ErrorEnvelope {
                status: StatusCode::OK,
                msg: "api.err.NoPermission".into(),
            }),
            password: unifi::PASSWORD,
            site: "default",
            expected: "may not read this (api.err.NoPermission)",
        },
        BadCase {
            name: "wrong password",
            options: UnifiOptions::classic(),
            fault: None,
            password: "not-the-password",
            site: "default",
            expected: "wrong user name or password",
        },
        BadCase {
            name: "unknown site",
            options: UnifiOptions::classic(),
            fault: None,
            password: unifi::PASSWORD,
            site: "lab",
            expected: "unknown site \"lab\"",
        },
        BadCase {
            name: "10 MB client list",
            options: UnifiOptions::unifi_os(),
            fault: Some(Fault::HugeList {
                bytes: 10 * 1024 * 1024,
            }),
            password: unifi::PASSWORD,
            site: "default",
            expected: "larger than 8388608 bytes",
        },
    ];
    for (n, case) in cases.into_iter().enumerate() {
        let fake = FakeUnifi::start(case.options).await;
        fake.set_fault(case.fault);
        let mut controller = unifi_config(&fake, &dir, &[case.site]);
        std::env::set_var(controller.password_env.as_ref().unwrap(), case.password);
        controller.cache_secs = 1;
        let mut config = Config {
            nats_url: server.url(),
            ..Config::default()
        };
        config.locator.unifi.push(controller);
        config.locator.sources = Some(vec!["static".into(), "unifi".into()]);
        let static_mac = format!("02:00:5e:40:00:{n:02x}");
        config.locator.static_bmcs.push(StaticBmc {
            bmc_mac: Mac::parse_any(&static_mac).unwrap(),
            address: "http://127.0.0.1:9".into(),
        });
        // Faults that may pass are waited out; keep that short here.
        config.locator.locate_deadline_secs = 3;
        config.locator.retry_secs = 1;
        let stop = spawn_locator(config, server.connect().await);

        let unknown_mac = format!("02:00:5e:50:00:{n:02x}");
        publish_requests(
            &client,
            [unknown_mac.clone(), static_mac.clone()].into_iter(),
        )
        .await;
        let events = test_harness::stream::wait_for_events(
            &client,
            Duration::from_secs(60),
            case.name,
            |events| {
                let about = |mac: &str, kind: &str| {
                    events.iter().any(|e| {
                        e.event_type == kind
                            && e.bmc_mac.map(|m| m.to_string()).as_deref() == Some(mac)
                    })
                };
                about(&unknown_mac, subjects::LOCATE_FAILED)
                    && about(&static_mac, subjects::BMC_LOCATED)
            },
        )
        .await;
        let failed = events
            .iter()
            .find(|e| {
                e.event_type == subjects::LOCATE_FAILED
                    && e.bmc_mac.map(|m| m.to_string()).as_deref() == Some(unknown_mac.as_str())
            })
            .unwrap();
        let reason = failed.data["reason"].as_str().unwrap();
        assert!(
            reason.contains(case.expected),
            "{}: reason {reason:?} lacks {:?}",
            case.name,
            case.expected
        );
        assert!(reason.contains("unifi core"), "{}: {reason}", case.name);
        assert!(
            reason.contains("static: not among 1 entries"),
            "{}: every source is named: {reason}",
            case.name
        );
        assert!(!reason.contains("not-the-password"), "{}", case.name);
        let _ = stop.send(());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
