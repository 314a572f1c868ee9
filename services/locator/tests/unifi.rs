//! The UniFi source against a strict fake controller (test_harness::unifi): one test per
//! flavour and per error case, each checking what the controller was asked, not only the
//! answer. The fake serves the shared fixtures over TLS with a console-like self-signed
//! certificate (CA:TRUE, an IP as its only name).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use axum::http::StatusCode;
use locator::sources::unifi::Controller;
use locator::sources::{Answer, Source};
use metal_core::config::{UnifiConfig, UnifiFlavour};
use metal_core::Mac;
use test_harness::unifi::{self, FakeUnifi, Fault, KnownIp, UnifiOptions};
use time::OffsetDateTime;

/// The fixture's wired Supermicro BMC, active in `stat/sta`.
const FIXTURE_BMC: &str = "02:00:5e:10:00:02";
/// The fixture's offline Supermicro BMC, only in `rest/user`, with a last IP.
const FIXTURE_OFFLINE_BMC: &str = "02:00:5e:10:00:05";

/// Every log line of this test binary, at every level and from every crate.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogSink;

impl std::io::Write for LogSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(|| LogSink)
            .with_ansi(false)
            .init();
    });
}

struct Setup {
    fake: FakeUnifi,
    config: UnifiConfig,
    _dir: tempfile::TempDir,
}

/// A controller config for `fake`, trusting its certificate through `ca_file`, with the
/// password or API key in a variable of its own (tests run in parallel).
async fn setup(options: UnifiOptions, flavour: UnifiFlavour) -> Setup {
    capture_logs();
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let fake = FakeUnifi::start(options).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("unifi-ca.pem");
    std::fs::write(&ca_file, fake.ca_pem()).unwrap();
    let password_env = format!("METAL_TEST_UNIFI_PASSWORD_{n}");
    let api_key_env = format!("METAL_TEST_UNIFI_API_KEY_{n}");
    std::env::set_var(&password_env, unifi::PASSWORD);
    std::env::set_var(&api_key_env, unifi::API_KEY);
    let config = UnifiConfig {
        name: "core".into(),
        url: fake.url(),
        flavour,
        sites: vec!["default".into()],
        username: Some(unifi::USERNAME.into()),
        password_env: Some(password_env),
        api_key_env: Some(api_key_env),
        ca_file: Some(ca_file),
        cert_sha256: None,
        insecure_tls: false,
        cache_secs: 30,
    };
    Setup {
        fake,
        config,
        _dir: dir,
    }
}

fn mac(text: &str) -> Mac {
    Mac::parse_any(text).unwrap()
}

async fn lookup(controller: &Controller, text: &str) -> Answer {
    controller
        .lookup(mac(text), OffsetDateTime::now_utc())
        .await
}

/// The one sighting's (ip, current) of a Seen answer.
fn single_sighting(answer: &Answer) -> (String, bool) {
    match answer {
        Answer::Seen(sightings) if sightings.len() == 1 => (
            sightings[0].ip.map(|ip| ip.to_string()).unwrap_or_default(),
            sightings[0].current,
        ),
        other => panic!("expected one sighting, got {other:?}"),
    }
}

fn failure(answer: &Answer) -> (String, bool) {
    match answer {
        Answer::Failed { error, permanent } => (error.clone(), *permanent),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn classic_active_clients_first_then_known_clients_with_one_login() {
    let s = setup(UnifiOptions::classic(), UnifiFlavour::Classic).await;
    let controller = Controller::new(&s.config).unwrap();
    // A DHCP reservation of an offline client.
    s.fake.add_known_client(
        "default",
        "02:00:5e:10:00:77",
        KnownIp::Fixed(Ipv4Addr::new(127, 0, 0, 77)),
        1_700_000_000,
    );

    let active = lookup(&controller, FIXTURE_BMC).await;
    assert_eq!(single_sighting(&active), ("198.51.100.17".into(), true));
    let Answer::Seen(sightings) = &active else {
        unreachable!()
    };
    assert_eq!(
        sightings[0].last_seen.map(|t| t.unix_timestamp()),
        Some(1717000010)
    );
    // Only known: its last IP, remembered rather than seen.
    let known = lookup(&controller, FIXTURE_OFFLINE_BMC).await;
    assert_eq!(single_sighting(&known), ("198.51.100.19".into(), false));
    let reserved = lookup(&controller, "02:00:5e:10:00:77").await;
    assert_eq!(single_sighting(&reserved), ("127.0.0.77".into(), false));
    let absent = lookup(&controller, "02:00:5e:10:00:99").await;
    let Answer::NotSeen(said) = &absent else {
        panic!("expected not seen, got {absent:?}");
    };
    assert!(said.contains("4 active clients of site default"), "{said}");

    assert_eq!(s.fake.logins(), 1, "one session for every lookup");
    assert_eq!(s.fake.probes(), 0, "flavour classic needs no probe");
    assert_eq!(
        s.fake.list_calls(unifi::STAT_STA),
        1,
        "cached for cache_secs"
    );
    assert_eq!(s.fake.list_calls(unifi::REST_USER), 1);
}

#[tokio::test]
async fn auto_flavour_probes_once_and_speaks_classic() {
    let mut s = setup(UnifiOptions::classic(), UnifiFlavour::Auto).await;
    s.config.cache_secs = 0;
    let controller = Controller::new(&s.config).unwrap();
    // A console still starting up: the probe is tried again at the next lookup.
    s.fake.set_fault(Some(Fault::Unavailable));
    let (error, permanent) = failure(&lookup(&controller, FIXTURE_BMC).await);
    assert!(error.contains("unavailable (HTTP 503)"), "{error}");
    assert!(!permanent);
    s.fake.set_fault(None);
    for _ in 0..3 {
        assert_eq!(
            single_sighting(&lookup(&controller, FIXTURE_BMC).await).0,
            "198.51.100.17"
        );
    }
    assert_eq!(s.fake.probes(), 1, "the answered probe is not repeated");
    assert_eq!(s.fake.logins(), 1);
}

#[tokio::test]
async fn unifi_os_probed_with_rotating_csrf_and_a_pinned_certificate() {
    let mut s = setup(
        UnifiOptions::unifi_os().rotate_csrf(true),
        UnifiFlavour::Auto,
    )
    .await;
    // Pinned as people paste it: lower case, no colons.
    s.config.ca_file = None;
    s.config.cert_sha256 = Some(s.fake.cert_sha256().replace(':', "").to_lowercase());
    s.config.cache_secs = 0;
    let controller = Controller::new(&s.config).unwrap();
    s.fake
        .add_client("default", "02:00:5e:10:00:42", Ipv4Addr::new(127, 0, 0, 42));
    for round in 0..4 {
        let answer = lookup(&controller, "02:00:5e:10:00:42").await;
        assert_eq!(
            single_sighting(&answer),
            ("127.0.0.42".into(), true),
            "round {round}"
        );
    }
    assert_eq!(s.fake.probes(), 1);
    assert_eq!(
        s.fake.logins(),
        1,
        "each rotated token was taken from the answer, so no re-login was needed"
    );
    assert!(s.fake.list_calls(unifi::STAT_STA) >= 4);
}

#[tokio::test]
async fn integration_api_pages_through_clients_by_site_name() {
    let mut s = setup(
        UnifiOptions::integration().without_fixture_clients(),
        UnifiFlavour::Integration,
    )
    .await;
    s.config.username = None;
    s.config.password_env = None;
    let controller = Controller::new(&s.config).unwrap();
    for i in 0..450u32 {
        s.fake.add_client(
            "default",
            &format!("02:00:5e:20:{:02x}:{:02x}", i / 256, i % 256),
            Ipv4Addr::new(127, 1, (i / 256) as u8, (i % 256) as u8),
        );
    }
    // The last one is on the third page of 200.
    let answer = lookup(&controller, "02:00:5e:20:01:c1").await;
    assert_eq!(single_sighting(&answer), ("127.1.1.193".into(), true));
    assert_eq!(s.fake.list_calls(unifi::INTEGRATION_CLIENTS), 3);
    assert_eq!(s.fake.list_calls(unifi::INTEGRATION_SITES), 1);
    assert_eq!(s.fake.logins(), 0, "an API key needs no login");
    // The site's id works as well as its legacy name.
    s.config.sites = vec![s.fake.site_id("default").unwrap()];
    let by_id = Controller::new(&s.config).unwrap();
    assert_eq!(
        single_sighting(&lookup(&by_id, "02:00:5e:20:00:05").await).0,
        "127.1.0.5"
    );
}

#[tokio::test]
async fn an_expired_session_logs_in_once_more_and_the_lookup_still_answers() {
    let mut s = setup(UnifiOptions::unifi_os(), UnifiFlavour::Unifios).await;
    s.config.cache_secs = 0;
    let controller = Controller::new(&s.config).unwrap();
    assert_eq!(
        single_sighting(&lookup(&controller, FIXTURE_BMC).await).0,
        "198.51.100.17"
    );
    s.fake.expire_sessions();
    assert_eq!(
        single_sighting(&lookup(&controller, FIXTURE_BMC).await).0,
        "198.51.100.17"
    );
    assert_eq!(s.fake.logins(), 2);
}

#[tokio::test]
async fn a_wrong_password_is_permanent_and_the_login_is_not_hammered() {
    let mut s = setup(UnifiOptions::classic(), UnifiFlavour::Classic).await;
    std::env::set_var(s.config.password_env.as_ref().unwrap(), "not-the-password");
    s.config.cache_secs = 0;
    let controller = Controller::new(&s.config).unwrap();
    for _ in 0..5 {
        let (error, permanent) = failure(&lookup(&controller, FIXTURE_BMC).await);
        assert!(error.contains("wrong user name or password"), "{error}");
        assert!(error.contains("api.err.Invalid"), "{error}");
        assert!(!error.contains("not-the-password"), "{error}");
        assert!(permanent);
    }
    assert_eq!(
        s.fake.failed_logins(),
        1,
        "a refused login is not retried within the backoff"
    );
    assert_eq!(s.fake.rate_limited(), 0);
}

#[tokio::test]
async fn two_factor_accounts_are_told_to_use_a_local_account_or_an_api_key() {
    for (options, flavour) in [
        (
            UnifiOptions::classic().account_with_second_factor("admin", "pw-2fa"),
            UnifiFlavour::Classic,
        ),
        (
            UnifiOptions::unifi_os().account_with_second_factor("admin", "pw-2fa"),
            UnifiFlavour::Unifios,
        ),
    ] {
        let mut s = setup(options, flavour).await;
        s.config.username = Some("admin".into());
        std::env::set_var(s.config.password_env.as_ref().unwrap(), "pw-2fa");
        let controller = Controller::new(&s.config).unwrap();
        let (error, permanent) = failure(&lookup(&controller, FIXTURE_BMC).await);
        assert!(error.contains("two-factor"), "{flavour:?}: {error}");
        assert!(
            error.contains("local account") && error.contains("API key"),
            "{flavour:?}: {error}"
        );
        assert!(permanent);
        assert_eq!(s.fake.second_factor_challenges(), 1);
    }
}

#[tokio::test]
async fn a_rate_limited_login_waits_for_retry_after() {
    let s = setup(
        UnifiOptions::unifi_os().login_limit(
            2,
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(120),
        ),
        UnifiFlavour::Unifios,
    )
    .await;
    // Someone else (a mistyped password elsewhere) has used up the login attempts.
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    for _ in 0..2 {
        let status = http
            .post(format!("{}/api/auth/login", s.fake.url()))
            .json(&serde_json::json!({"username": "locator", "password": "wrong"}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::UNAUTHORIZED.as_u16());
    }
    let mut config = s.config.clone();
    config.cache_secs = 0;
    let controller = Controller::new(&config).unwrap();
    for _ in 0..3 {
        let (error, permanent) = failure(&lookup(&controller, FIXTURE_BMC).await);
        assert!(error.contains("rate-limited"), "{error}");
        assert!(error.contains("120 s"), "{error}");
        assert!(!permanent, "a rate limit passes");
    }
    assert_eq!(
        s.fake.rate_limited(),
        1,
        "no login is tried again before Retry-After"
    );
}

#[tokio::test]
async fn controller_faults_are_clear_reasons() {
    let s = setup(UnifiOptions::classic(), UnifiFlavour::Classic).await;
    let mut config = s.config.clone();
    config.cache_secs = 0;
    let controller = Controller::new(&config).unwrap();
    let cases = [
        (Fault::Html, "answered text/html"),
        (
            Fault::ErrorEnvelope {
                status: StatusCode::OK,
                msg: "api.err.NoPermission".into(),
            },
            "may not read this",
        ),
        (
            Fault::ErrorEnvelope {
                status: StatusCode::BAD_REQUEST,
                msg: "api.err.Whatever".into(),
            },
            "api.err.Whatever",
        ),
        (
            Fault::HugeList {
                bytes: 10 * 1024 * 1024,
            },
            "larger than 8388608 bytes",
        ),
        (Fault::Unavailable, "HTTP 503"),
    ];
    for (fault, expected) in cases {
        s.fake.set_fault(Some(fault.clone()));
        let (error, _) = failure(&lookup(&controller, FIXTURE_BMC).await);
        assert!(error.contains(expected), "{fault:?}: {error}");
        assert!(error.contains("site default"), "{fault:?}: {error}");
    }
    s.fake.set_fault(None);
    assert_eq!(
        single_sighting(&lookup(&controller, FIXTURE_BMC).await).0,
        "198.51.100.17",
        "the controller is used again once it behaves"
    );
}

#[tokio::test]
async fn unknown_sites_are_permanent_and_named() {
    let mut s = setup(UnifiOptions::classic(), UnifiFlavour::Classic).await;
    s.config.sites = vec!["lab".into()];
    let classic = Controller::new(&s.config).unwrap();
    let (error, permanent) = failure(&lookup(&classic, FIXTURE_BMC).await);
    assert!(error.contains("unknown site \"lab\""), "{error}");
    assert!(error.contains("api.err.NoSiteContext"), "{error}");
    assert!(permanent);

    let mut i = setup(UnifiOptions::integration(), UnifiFlavour::Integration).await;
    i.config.sites = vec!["lab".into()];
    let integration = Controller::new(&i.config).unwrap();
    let (error, permanent) = failure(&lookup(&integration, FIXTURE_BMC).await);
    assert!(error.contains("unknown site \"lab\""), "{error}");
    assert!(error.contains("default (Default)"), "{error}");
    assert!(permanent);
}

#[tokio::test]
async fn a_refused_api_key_is_permanent() {
    let mut s = setup(UnifiOptions::integration(), UnifiFlavour::Integration).await;
    std::env::set_var(s.config.api_key_env.as_ref().unwrap(), "not-the-key");
    s.config.username = None;
    let controller = Controller::new(&s.config).unwrap();
    let (error, permanent) = failure(&lookup(&controller, FIXTURE_BMC).await);
    assert!(error.contains("API key was refused"), "{error}");
    assert!(!error.contains("not-the-key"), "{error}");
    assert!(permanent);
}

#[tokio::test]
async fn certificates_are_checked_unless_the_operator_says_otherwise() {
    let mut s = setup(UnifiOptions::classic(), UnifiFlavour::Classic).await;
    // No ca_file: public roots do not know a console's self-signed certificate.
    s.config.ca_file = None;
    let untrusted = Controller::new(&s.config).unwrap();
    let (error, permanent) = failure(&lookup(&untrusted, FIXTURE_BMC).await);
    assert!(error.contains("TLS"), "{error}");
    assert!(permanent);
    // A pin of another certificate.
    s.config.cert_sha256 = Some("00".repeat(32));
    let wrong_pin = Controller::new(&s.config).unwrap();
    let (error, _) = failure(&lookup(&wrong_pin, FIXTURE_BMC).await);
    assert!(error.contains("not the pinned cert_sha256"), "{error}");
    assert_eq!(
        s.fake.logins(),
        0,
        "no password was sent to an unverified peer"
    );
    // The pin as openssl prints it, prefix and all.
    s.config.cert_sha256 = Some(format!("sha256 Fingerprint={}", s.fake.cert_sha256()));
    let pinned = Controller::new(&s.config).unwrap();
    assert_eq!(
        single_sighting(&lookup(&pinned, FIXTURE_BMC).await).0,
        "198.51.100.17"
    );
    s.config.cert_sha256 = None;
    s.config.insecure_tls = true;
    let insecure = Controller::new(&s.config).unwrap();
    assert_eq!(
        single_sighting(&lookup(&insecure, FIXTURE_BMC).await).0,
        "198.51.100.17"
    );
}

#[tokio::test]
async fn the_same_mac_in_two_sites_is_seen_twice() {
    let mut s = setup(
        UnifiOptions::classic().sites(&["default", "rack2"]),
        UnifiFlavour::Classic,
    )
    .await;
    s.config.sites = vec!["default".into(), "rack2".into()];
    let controller = Controller::new(&s.config).unwrap();
    s.fake.add_client_seen_at(
        "rack2",
        FIXTURE_BMC,
        Ipv4Addr::new(127, 0, 0, 2),
        1_800_000_000,
    );
    let Answer::Seen(sightings) = lookup(&controller, FIXTURE_BMC).await else {
        panic!("not seen");
    };
    let mut ips: Vec<String> = sightings
        .iter()
        .map(|s| s.ip.unwrap().to_string())
        .collect();
    ips.sort();
    assert_eq!(ips, vec!["127.0.0.2", "198.51.100.17"]);
    let choice = locator::sources::choose(&[locator::sources::Report {
        kind: controller.kind(),
        name: controller.name(),
        answer: Answer::Seen(sightings),
    }]);
    assert_eq!(
        choice.chosen.unwrap().sighting.ip.unwrap().to_string(),
        "127.0.0.2",
        "the freshest wins"
    );
    assert_eq!(choice.others.len(), 1);
}

#[tokio::test]
async fn no_password_or_api_key_reaches_a_log_line() {
    // Logins that succeed, fail, need a second factor, and an API key in use.
    let classic = setup(UnifiOptions::classic(), UnifiFlavour::Auto).await;
    let ok = Controller::new(&classic.config).unwrap();
    assert!(matches!(lookup(&ok, FIXTURE_BMC).await, Answer::Seen(_)));
    classic.fake.expire_sessions();
    let mut config = classic.config.clone();
    config.cache_secs = 0;
    let relogin = Controller::new(&config).unwrap();
    assert!(matches!(
        lookup(&relogin, FIXTURE_BMC).await,
        Answer::Seen(_)
    ));
    let wrong = setup(UnifiOptions::unifi_os(), UnifiFlavour::Unifios).await;
    std::env::set_var(
        wrong.config.password_env.as_ref().unwrap(),
        "wrong-password-in-a-log",
    );
    let refused = Controller::new(&wrong.config).unwrap();
    assert!(matches!(
        lookup(&refused, FIXTURE_BMC).await,
        Answer::Failed { .. }
    ));
    let mut integration = setup(UnifiOptions::integration(), UnifiFlavour::Integration).await;
    integration.config.username = None;
    let keyed = Controller::new(&integration.config).unwrap();
    assert!(matches!(lookup(&keyed, FIXTURE_BMC).await, Answer::Seen(_)));

    let logs = String::from_utf8_lossy(&LOGS.lock().unwrap()).to_string();
    assert!(
        logs.contains("logged in to UniFi"),
        "the logs were captured: {logs}"
    );
    for secret in [unifi::PASSWORD, unifi::API_KEY, "wrong-password-in-a-log"] {
        assert!(!logs.contains(secret), "{secret} logged:\n{logs}");
    }
}
