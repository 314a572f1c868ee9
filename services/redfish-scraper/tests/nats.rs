//! The scraper service in-process against a real `nats-server -js`: `run()` with its durable
//! consumer from nats/, a Redfish mockup server as the BMC, and `machine.bmc.located`
//! events published by the test. Every observed event is validated against schemas/
//! (`read_events` does that), and no stored message may contain the BMC password.

mod common;

use common::Scraper;

use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use metal_core::config::Config;
use metal_core::events::{BmcLocated, HardwareScraped, ScrapeFailed, ScrapeFailureKind};
use metal_core::jetstream::{publish_event, DurableConsumer};
use metal_core::{subjects, Envelope, Mac, MachineId};
use test_harness::fake_bmc::{Auth, FakeBmcSpec, FakeFleet, Tree};
use test_harness::mockup::{serve_mockup_with_auth, MockupServer};
use test_harness::nats::{free_port, NatsServer};
use test_harness::stream::{read_all, wait_for_events};
use time::OffsetDateTime;
use tokio::time::Instant;
use uuid::Uuid;

const USER: &str = "operator";
const PASSWORD: &str = "s3cret-bmc-pw-9f27c1";
const PASSWORD_ENV: &str = "REDFISH_SCRAPER_NATS_TEST_PASSWORD";
/// Holds a password the mockup does not accept.
const WRONG_PASSWORD: &str = "wrong-bmc-pw-4d8e02";
const WRONG_PASSWORD_ENV: &str = "REDFISH_SCRAPER_NATS_TEST_WRONG_PASSWORD";

const WAIT: Duration = Duration::from_secs(30);

fn set_password_env() {
    static SET: Once = Once::new();
    // Set once, before any scraper reads it; the values never change afterwards.
    SET.call_once(|| {
        std::env::set_var(PASSWORD_ENV, PASSWORD);
        std::env::set_var(WRONG_PASSWORD_ENV, WRONG_PASSWORD);
    });
}

fn mockup_folder() -> PathBuf {
    test_harness::paths::mockup_folders()
        .into_iter()
        .find(|f| common::folder_name(f) == "dmtf-public-rackmount1")
        .expect("mockup folder dmtf-public-rackmount1")
}

async fn bmc() -> MockupServer {
    serve_mockup_with_auth(&mockup_folder(), USER, PASSWORD).await
}

fn config(password_env: &str) -> Config {
    let mut config = Config::default();
    config.redfish.username = USER.to_string();
    config.redfish.password_env = password_env.to_string();
    // One try per delivery and short timeouts: redelivery (nak with delay, max_deliver)
    // is what retries here.
    config.redfish.retries = 0;
    config.redfish.request_timeout_secs = 5;
    config.redfish.scrape_deadline_secs = 20;
    config
}

/// The scraper running in this process, once the passwords it reads are set.
async fn start_scraper(server: &NatsServer, config: Config) -> Scraper {
    set_password_env();
    Scraper::start(server, config).await
}

fn bmc_mac(last: u8) -> Mac {
    Mac::parse_any(&format!("aa:bb:cc:00:10:{last:02x}")).unwrap()
}

fn located(mac: Mac, redfish_url: &str) -> Envelope {
    let event_id = Uuid::new_v4();
    Envelope {
        event_id,
        event_type: subjects::BMC_LOCATED.to_string(),
        machine_id: Some(MachineId::from_bmc_mac(&mac)),
        bmc_mac: Some(mac),
        time: OffsetDateTime::now_utc(),
        correlation_id: Uuid::new_v4(),
        causation_id: Some(Uuid::new_v4()),
        data: serde_json::to_value(BmcLocated {
            bmc_ip: Some("127.0.0.1".to_string()),
            redfish_url: redfish_url.to_string(),
            source: "static".to_string(),
            ..Default::default()
        })
        .unwrap(),
    }
}

/// A client for the test itself that survives server restarts.
async fn test_client(server: &NatsServer) -> async_nats::Client {
    metal_core::jetstream::connect(&server.url(), "test")
        .await
        .expect("test client connects")
}

/// Publishes and returns whether the stream saw it as a duplicate. Retries while the
/// server is coming back, within a deadline.
async fn publish(client: &async_nats::Client, event: &Envelope) -> bool {
    let js = async_nats::jetstream::new(client.clone());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match publish_event(&js, event).await {
            Ok(ack) => return ack.duplicate,
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %metal_core::error_chain(&error), "publish retry");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("cannot publish: {}", metal_core::error_chain(&error)),
        }
    }
}

fn answers<'a>(events: &'a [Envelope], cause: &Envelope, event_type: &str) -> Vec<&'a Envelope> {
    events
        .iter()
        .filter(|e| e.event_type == event_type && e.causation_id == Some(cause.event_id))
        .collect()
}

fn answered(events: &[Envelope], cause: &Envelope, event_type: &str) -> bool {
    !answers(events, cause, event_type).is_empty()
}

/// The one `machine.hardware.scraped` answering `cause`, checked against it and the mockup.
fn check_scraped(events: &[Envelope], cause: &Envelope, redfish_url: &str) {
    let scraped = answers(events, cause, subjects::HARDWARE_SCRAPED);
    assert_eq!(
        scraped.len(),
        1,
        "one scraped event answers {}",
        cause.event_id
    );
    let scraped = scraped[0];
    assert_eq!(scraped.correlation_id, cause.correlation_id);
    assert_eq!(scraped.machine_id, cause.machine_id);
    assert_eq!(scraped.bmc_mac, cause.bmc_mac);
    assert_eq!(
        scraped.event_id,
        metal_core::ids::derived_event_id(cause.event_id, subjects::HARDWARE_SCRAPED)
    );
    let data: HardwareScraped = scraped.data_as().expect("scraped data");
    assert_eq!(data.redfish_url, redfish_url);
    common::check_summary(&mockup_folder(), &data.inventory);
    assert!(
        answers(events, cause, subjects::SCRAPE_FAILED).is_empty(),
        "no failure for a scraped input"
    );
}

/// No stored message, in any form, carries a BMC password.
async fn assert_no_secrets(client: &async_nats::Client) {
    let messages = read_all(client).await;
    assert!(!messages.is_empty());
    for message in &messages {
        let payload = String::from_utf8_lossy(&message.payload);
        for secret in [PASSWORD, WRONG_PASSWORD] {
            assert!(
                !payload.contains(secret),
                "message {} on {} contains a password",
                message.sequence,
                message.subject
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn located_bmc_is_scraped() {
    let server = NatsServer::start();
    let client = test_client(&server).await;
    let bmc = bmc().await;
    let scraper = start_scraper(&server, config(PASSWORD_ENV)).await;

    let cause = located(bmc_mac(1), &bmc.base_url());
    assert!(!publish(&client, &cause).await);
    let events = wait_for_events(&client, WAIT, "hardware.scraped", |events| {
        answered(events, &cause, subjects::HARDWARE_SCRAPED)
    })
    .await;
    check_scraped(&events, &cause, &bmc.base_url());
    assert_eq!(events.len(), 2, "the located event and its answer");
    assert_eq!(bmc.sessions_created(), 1);
    assert_eq!(bmc.sessions_open(), 0, "the scraper logged out");
    assert_no_secrets(&client).await;
    scraper.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_inputs_give_one_answer_each() {
    let server = NatsServer::start();
    let client = test_client(&server).await;
    let bmc = bmc().await;
    let scraper = start_scraper(&server, config(PASSWORD_ENV)).await;

    let first = located(bmc_mac(2), &bmc.base_url());
    assert!(!publish(&client, &first).await);
    assert!(
        publish(&client, &first).await,
        "same event id is a duplicate"
    );
    // The same machine located again: a distinct input that deserves its own answer.
    let second = located(bmc_mac(2), &bmc.base_url());
    assert!(!publish(&client, &second).await);

    let events = wait_for_events(&client, WAIT, "two hardware.scraped", |events| {
        answered(events, &first, subjects::HARDWARE_SCRAPED)
            && answered(events, &second, subjects::HARDWARE_SCRAPED)
    })
    .await;
    check_scraped(&events, &first, &bmc.base_url());
    check_scraped(&events, &second, &bmc.base_url());
    let located_ids: Vec<Uuid> = events
        .iter()
        .filter(|e| e.event_type == subjects::BMC_LOCATED)
        .map(|e| e.event_id)
        .collect();
    assert_eq!(located_ids, vec![first.event_id, second.event_id]);
    assert_eq!(events.len(), 4, "two inputs, two answers");
    // Stop the scraper first, so a late redelivery would have shown up as a third scrape.
    scraper.stop().await;
    assert_eq!(bmc.sessions_created(), 2, "one scrape per distinct input");
    assert_no_secrets(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraper_survives_a_server_restart() {
    let mut server = NatsServer::start();
    let client = test_client(&server).await;
    let bmc = bmc().await;
    let scraper = start_scraper(&server, config(PASSWORD_ENV)).await;

    let before = located(bmc_mac(3), &bmc.base_url());
    publish(&client, &before).await;
    wait_for_events(&client, WAIT, "scraped before the restart", |events| {
        answered(events, &before, subjects::HARDWARE_SCRAPED)
    })
    .await;

    server.restart();

    // The same scraper (same process, its client reconnects) answers a new input.
    let after = located(bmc_mac(4), &bmc.base_url());
    assert!(!publish(&client, &after).await);
    let events = wait_for_events(
        &client,
        Duration::from_secs(60),
        "scraped after the restart",
        |events| answered(events, &after, subjects::HARDWARE_SCRAPED),
    )
    .await;
    // File storage survived: the earlier input and its answer are still there.
    check_scraped(&events, &before, &bmc.base_url());
    check_scraped(&events, &after, &bmc.base_url());
    assert_eq!(events.len(), 4);
    assert_eq!(
        events[0].event_id, before.event_id,
        "the stream starts with the event from before the restart"
    );
    assert_no_secrets(&client).await;
    scraper.stop().await;
}

/// The ack wait of the scraper's consumer is short, and progress acks keep a slow scrape's
/// input in hand: a scraper killed mid-scrape gives its input back within one ack wait (not
/// the minutes a scrape may take), and the heir's scrape, longer than the ack wait, is not
/// handed to anyone else meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scraper_killed_mid_scrape_gives_its_input_back_within_the_ack_wait() {
    let ack_wait = DurableConsumer::RedfishScraper.config().unwrap().ack_wait;
    assert!(
        ack_wait <= Duration::from_secs(10),
        "a dead scraper's input must come back within seconds; the ack wait is {ack_wait:?}"
    );
    let server = NatsServer::start();
    let client = test_client(&server).await;
    let tree = Tree::mockup(&mockup_folder()).expect("mockup tree");
    // About ten rounds of four requests, 1.5 s each: a scrape longer than the ack wait.
    let fleet = FakeFleet::start(vec![FakeBmcSpec::new(tree)
        .latency(Duration::from_millis(1500))
        .auth(Auth::Sessions {
            user: USER.to_string(),
            password: PASSWORD.to_string(),
            expire_after_requests: None,
            allow_basic: false,
        })])
    .await;
    let mut config = config(PASSWORD_ENV);
    config.redfish.scrape_deadline_secs = 120;
    let dying = start_scraper(&server, config.clone()).await;

    let cause = located(bmc_mac(9), &fleet.base_url(0));
    publish(&client, &cause).await;
    let deadline = Instant::now() + WAIT;
    while fleet.stats(0).requests < 4 {
        assert!(Instant::now() < deadline, "the first scraper never got far");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    dying.crash().await;
    let died = Instant::now();

    let heir = start_scraper(&server, config).await;
    let deadline = Instant::now() + ack_wait * 2;
    while fleet.stats(0).logins < 2 {
        assert!(
            Instant::now() < deadline,
            "the input did not come back within two ack waits ({ack_wait:?} each)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let came_back = died.elapsed();
    let events = wait_for_events(
        &client,
        Duration::from_secs(120),
        "hardware.scraped",
        |events| answered(events, &cause, subjects::HARDWARE_SCRAPED),
    )
    .await;
    let scrape = died.elapsed() - came_back;
    // Stopped first, so a redelivery during the scrape would have been a third login.
    heir.stop().await;

    eprintln!("the input came back after {came_back:?}; the heir's scrape took {scrape:?}");
    check_scraped(&events, &cause, &fleet.base_url(0));
    assert!(
        came_back <= ack_wait + Duration::from_secs(3),
        "the input came back {came_back:?} after its scraper died; the ack wait is {ack_wait:?}"
    );
    assert!(
        scrape > ack_wait,
        "the heir's scrape ({scrape:?}) outlasts the ack wait, or this proves no progress acks"
    );
    assert_eq!(
        fleet.stats(0).logins,
        2,
        "one scrape by the killed scraper, one by its heir"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_bmc_fails_after_redeliveries_without_blocking_others() {
    let server = NatsServer::start();
    let client = test_client(&server).await;
    let bmc = bmc().await;
    let scraper = start_scraper(&server, config(PASSWORD_ENV)).await;

    // A loopback port nothing listens on: connection refused at once.
    let closed_url = format!("http://127.0.0.1:{}", free_port());
    let down = located(bmc_mac(5), &closed_url);
    let up = located(bmc_mac(6), &bmc.base_url());
    publish(&client, &down).await;
    publish(&client, &up).await;

    // max_deliver 3 with naks of 5 s and 10 s (nats/consumers/redfish-scraper.json and
    // handler::retry_delay): the failure lands after about 15 s.
    let events = wait_for_events(
        &client,
        Duration::from_secs(60),
        "scrape.failed",
        |events| answered(events, &down, subjects::SCRAPE_FAILED),
    )
    .await;
    let failed = answers(&events, &down, subjects::SCRAPE_FAILED);
    assert_eq!(failed.len(), 1);
    let failed = failed[0];
    assert_eq!(failed.correlation_id, down.correlation_id);
    assert_eq!(failed.bmc_mac, down.bmc_mac);
    let data: ScrapeFailed = failed.data_as().expect("failed data");
    assert_eq!(data.kind, ScrapeFailureKind::Unreachable, "{}", data.reason);
    assert_eq!(data.attempts, 3, "every delivery was tried");
    assert_eq!(data.redfish_url, closed_url);
    assert!(answers(&events, &down, subjects::HARDWARE_SCRAPED).is_empty());

    // The next input was not held up behind the retries: it was answered first.
    check_scraped(&events, &up, &bmc.base_url());
    let position = |id: Uuid| events.iter().position(|e| e.event_id == id).unwrap();
    let up_answer = answers(&events, &up, subjects::HARDWARE_SCRAPED)[0].event_id;
    assert!(
        position(up_answer) < position(failed.event_id),
        "the reachable BMC is answered while the unreachable one waits for redelivery"
    );
    assert_no_secrets(&client).await;
    scraper.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_password_is_an_auth_failure_and_never_stored() {
    let server = NatsServer::start();
    let client = test_client(&server).await;
    let bmc = bmc().await;
    let scraper = start_scraper(&server, config(WRONG_PASSWORD_ENV)).await;

    let cause = located(bmc_mac(7), &bmc.base_url());
    publish(&client, &cause).await;
    let events = wait_for_events(&client, WAIT, "scrape.failed", |events| {
        answered(events, &cause, subjects::SCRAPE_FAILED)
    })
    .await;
    let failed = answers(&events, &cause, subjects::SCRAPE_FAILED)[0];
    let data: ScrapeFailed = failed.data_as().expect("failed data");
    assert_eq!(data.kind, ScrapeFailureKind::Auth, "{}", data.reason);
    assert_eq!(data.attempts, 1, "a refused password is not retried");
    assert!(!data.reason.contains(WRONG_PASSWORD));
    assert_no_secrets(&client).await;
    scraper.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bmc_outside_the_allowed_networks_is_never_dialled() {
    let server = NatsServer::start();
    let client = test_client(&server).await;
    let bmc = bmc().await;
    let mut config = config(PASSWORD_ENV);
    config.redfish.allowed_networks = vec!["10.20.0.0/16".parse().unwrap()];
    let scraper = start_scraper(&server, config.clone()).await;

    let outside = located(bmc_mac(8), &bmc.base_url());
    let by_name = located(
        bmc_mac(9),
        &format!("http://localhost:{}", bmc.addr().port()),
    );
    let power = common::event_for(
        bmc_mac(8),
        subjects::POWER_REQUESTED,
        serde_json::to_value(metal_core::events::PowerRequested {
            action: metal_core::events::PowerAction::Status,
            redfish_url: bmc.base_url(),
            requested_by: None,
        })
        .unwrap(),
    );
    for event in [&outside, &by_name, &power] {
        publish(&client, event).await;
    }
    let events = wait_for_events(&client, WAIT, "refusals", |events| {
        answered(events, &outside, subjects::SCRAPE_FAILED)
            && answered(events, &by_name, subjects::SCRAPE_FAILED)
            && answered(events, &power, subjects::POWER_FAILED)
    })
    .await;
    let reason = |cause: &Envelope| {
        let data: ScrapeFailed = answers(&events, cause, subjects::SCRAPE_FAILED)[0]
            .data_as()
            .expect("failed data");
        assert_eq!(data.kind, ScrapeFailureKind::NotAllowed, "{}", data.reason);
        assert_eq!(data.attempts, 1, "a refusal is final");
        data.reason
    };
    assert!(
        reason(&outside).contains("127.0.0.1 is outside redfish.allowed_networks (10.20.0.0/16)"),
        "{}",
        reason(&outside)
    );
    assert!(reason(&by_name).contains("\"localhost\" is a host name"));
    let refused: metal_core::events::PowerFailed = answers(&events, &power, subjects::POWER_FAILED)
        [0]
    .data_as()
    .expect("power.failed data");
    assert!(
        refused.reason.contains("outside redfish.allowed_networks"),
        "{}",
        refused.reason
    );
    assert_eq!(bmc.requests(), 0, "nothing was dialled");
    scraper.stop().await;

    // Listed, loopback is dialled like any allowed network.
    config.redfish.allowed_networks = vec!["127.0.0.0/8".parse().unwrap()];
    let scraper = start_scraper(&server, config).await;
    let inside = located(bmc_mac(10), &bmc.base_url());
    publish(&client, &inside).await;
    let events = wait_for_events(&client, WAIT, "scraped", |events| {
        answered(events, &inside, subjects::HARDWARE_SCRAPED)
    })
    .await;
    check_scraped(&events, &inside, &bmc.base_url());
    scraper.stop().await;
}
