//! The scraper over real HTTP (loopback) against every mockup folder served by the
//! test-harness mockup server, with session auth; plus basic-auth fallback and the handler.

mod common;

use std::path::Path;
use std::time::Duration;

use metal_core::config::{Credentials, RedfishConfig, Secret};
use metal_core::envelope::{Decoded, Envelope};
use metal_core::events::{BmcLocated, HardwareScraped, ScrapeFailed, ScrapeFailureKind};
use metal_core::responder::{Handler, Input, Outcome};
use metal_core::{subjects, Mac, MachineId};
use redfish_scraper::http::{scrape, BmcClient, HttpSettings};
use redfish_scraper::ScrapeHandler;
use test_harness::mockup::{serve_mockup, serve_mockup_with_auth};

const USER: &str = "operator";
const PASSWORD: &str = "not-the-default-0451";

fn credentials(password: &str) -> Credentials {
    Credentials {
        username: USER.to_string(),
        password: Secret::new(password.to_string()),
    }
}

#[tokio::test]
async fn every_mockup_over_http_with_a_session() {
    for folder in test_harness::paths::mockup_folders() {
        let server = serve_mockup_with_auth(&folder, USER, PASSWORD).await;
        let inventory = scrape(
            &server.base_url(),
            &credentials(PASSWORD),
            &common::relaxed_settings(),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "scrape of {} failed: {}",
                folder.display(),
                metal_core::error_chain(&e)
            )
        })
        .inventory;
        common::check_summary(&folder, &inventory);
        assert_eq!(
            server.sessions_created(),
            1,
            "{}: one session per scrape",
            common::folder_name(&folder)
        );
        assert_eq!(
            server.sessions_open(),
            0,
            "{}: session closed at the end",
            common::folder_name(&folder)
        );
    }
}

#[tokio::test]
async fn wrong_password_is_an_auth_error_without_retries() {
    let folder = &test_harness::paths::mockup_folders()[0];
    let server = serve_mockup_with_auth(folder, USER, PASSWORD).await;
    let error = scrape(
        &server.base_url(),
        &credentials("wrong"),
        &common::relaxed_settings(),
    )
    .await
    .expect_err("wrong password must fail");
    assert_eq!(error.kind(), ScrapeFailureKind::Auth, "{error}");
    assert!(!error.is_transient());
    assert!(
        !metal_core::error_chain(&error).contains("wrong"),
        "password leaked: {error}"
    );
    // The service root, then one session attempt: no retries of a refusal.
    assert_eq!(server.requests(), 2);
}

fn copy_tree(from: &Path, to: &Path, skip: &str) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_name() == skip {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target, skip);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn basic_auth_when_sessions_are_not_offered() {
    let folder = test_harness::paths::mockup_folders()
        .into_iter()
        .find(|f| f.ends_with("openbmc-stock"))
        .unwrap_or_else(|| test_harness::paths::mockup_folders()[0].clone());
    let copy = tempfile::tempdir().unwrap();
    copy_tree(&folder, copy.path(), "SessionService");
    std::fs::copy(
        folder.join("expected.json"),
        copy.path().join("expected.json"),
    )
    .unwrap();
    let server = serve_mockup_with_auth(copy.path(), USER, PASSWORD).await;
    let client = BmcClient::standalone(&server.base_url(), common::relaxed_settings())
        .unwrap()
        .login(Some(credentials(PASSWORD)))
        .await
        .unwrap();
    assert_eq!(client.auth_method(), "basic");
    let inventory = redfish_scraper::walk::walk(&client, Default::default())
        .await
        .unwrap()
        .inventory;
    common::check_summary(copy.path(), &inventory);
    assert_eq!(server.sessions_created(), 0);
}

#[tokio::test]
async fn no_auth_mockup_server_answers_like_the_files() {
    let folder = &test_harness::paths::mockup_folders()[0];
    let server = serve_mockup(folder).await;
    let client = reqwest::Client::new();
    let a = client
        .get(format!("{}/redfish/v1/Systems/", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 200);
    let b = client
        .get(format!(
            "{}/redfish/v1/Systems?$expand=.",
            server.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(b.status(), 200);
    assert_eq!(a.text().await.unwrap(), b.text().await.unwrap());
    let missing = client
        .get(format!("{}/redfish/v1/Nope", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert!(body.get("error").is_some());
    let traversal = client
        .get(format!(
            "{}/redfish/v1/%2e%2e/%2e%2e/expected.json",
            server.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert!(traversal.status().is_client_error());
}

fn located_input(redfish_url: &str, bmc_mac: Mac, delivery_attempt: u64) -> Input {
    let event = Envelope {
        event_id: uuid::Uuid::from_u128(7),
        event_type: subjects::BMC_LOCATED.to_string(),
        machine_id: Some(MachineId::from_bmc_mac(&bmc_mac)),
        bmc_mac: Some(bmc_mac),
        time: time::OffsetDateTime::UNIX_EPOCH,
        correlation_id: uuid::Uuid::from_u128(1),
        causation_id: None,
        data: serde_json::to_value(BmcLocated {
            bmc_ip: Some("127.0.0.1".to_string()),
            redfish_url: redfish_url.to_string(),
            source: "static".to_string(),
            ..Default::default()
        })
        .unwrap(),
    };
    Input {
        decoded: Decoded::Event(event),
        sequence: 1,
        delivery_attempt,
        max_deliver: 3,
    }
}

fn only_event(outcome: Outcome) -> Envelope {
    match outcome {
        Outcome::Publish(mut events) if events.len() == 1 => events.remove(0),
        other => panic!("expected one event, got {other:?}"),
    }
}

#[tokio::test]
async fn handler_scrapes_a_located_bmc() {
    let folder = &test_harness::paths::mockup_folders()[0];
    let server = serve_mockup_with_auth(folder, USER, PASSWORD).await;
    let variable = "REDFISH_SCRAPER_TEST_HANDLER_PASSWORD";
    std::env::set_var(variable, PASSWORD);
    let config = RedfishConfig {
        username: USER.to_string(),
        password_env: variable.to_string(),
        ..RedfishConfig::default()
    };
    let handler = ScrapeHandler::with_settings(config.clone(), common::relaxed_settings()).unwrap();
    let mac = Mac::parse_any("aa:bb:cc:00:00:01").unwrap();
    let event = only_event(
        handler
            .handle(located_input(&server.base_url(), mac, 1))
            .await,
    );
    assert_eq!(event.event_type, subjects::HARDWARE_SCRAPED);
    let data: HardwareScraped = event.data_as().unwrap();
    common::check_summary(folder, &data.inventory);
    assert!(!serde_json::to_string(&event).unwrap().contains(PASSWORD));

    // No password variable: read anonymously, refused, and failed without a retry.
    let config = RedfishConfig {
        password_env: "REDFISH_SCRAPER_TEST_UNSET_PASSWORD_VARIABLE".to_string(),
        ..config
    };
    let handler = ScrapeHandler::with_settings(config, common::relaxed_settings()).unwrap();
    let event = only_event(
        handler
            .handle(located_input(&server.base_url(), mac, 1))
            .await,
    );
    assert_eq!(event.event_type, subjects::SCRAPE_FAILED);
    let data: ScrapeFailed = event.data_as().unwrap();
    assert_eq!(data.kind, ScrapeFailureKind::NoCredentials);
}

#[tokio::test]
async fn handler_retries_an_unreachable_bmc_then_fails() {
    // A port that was free a moment ago: connection refused.
    let url = format!("http://127.0.0.1:{}", test_harness::nats::free_port());
    let variable = "REDFISH_SCRAPER_TEST_RETRY_PASSWORD";
    std::env::set_var(variable, "x");
    let config = RedfishConfig {
        password_env: variable.to_string(),
        retries: 0,
        ..RedfishConfig::default()
    };
    let handler = ScrapeHandler::with_settings(
        config,
        HttpSettings {
            retries: 0,
            ..common::relaxed_settings()
        },
    )
    .unwrap();
    let mac = Mac::parse_any("aa:bb:cc:00:00:02").unwrap();
    match handler.handle(located_input(&url, mac, 1)).await {
        Outcome::Retry { delay, .. } => assert!(delay > Duration::ZERO),
        other => panic!("expected a retry, got {other:?}"),
    }
    let event = only_event(handler.handle(located_input(&url, mac, 3)).await);
    let data: ScrapeFailed = event.data_as().unwrap();
    assert_eq!(data.kind, ScrapeFailureKind::Unreachable);
    assert_eq!(data.attempts, 3);
}

#[tokio::test]
async fn other_inputs_are_acked_without_output() {
    let handler = ScrapeHandler::new(RedfishConfig::default()).unwrap();
    let input = Input {
        decoded: Decoded::Malformed {
            subject: "machine.bmc.located".to_string(),
            reason: "not json".to_string(),
        },
        sequence: 9,
        delivery_attempt: 1,
        max_deliver: 3,
    };
    match handler.handle(input).await {
        Outcome::Publish(events) => assert!(events.is_empty()),
        other => panic!("expected an ack, got {other:?}"),
    }
}
