//! No secret leaks, end to end: a BMC that needs its password, found through two UniFi
//! controllers (one logged into with a password, one read with an API key), onboarded,
//! provisioned, netbooted and phoned home with its install token. Then every stored
//! message, every log line of every service at debug level, every metal-cli output (run at
//! debug level too), every projection file and the web pages and API are searched for each
//! secret: none may appear anywhere.
//!
//! One test in this binary: it installs the process's tracing subscriber and sets
//! `RUST_LOG` for the metal-cli processes it runs.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::{cmdline_value, http_get, phone_home, printed, System, E2E_TOKEN_KEY};
use metal_core::config::{Config, UnifiConfig, UnifiFlavour};
use metal_core::query::MachineState;
use test_harness::mockup::serve_mockup_with_auth;
use test_harness::unifi::{FakeUnifi, UnifiOptions};

const BMC_USER: &str = "secrets-test-operator";
const BMC_PASSWORD: &str = "bmc-pw-Zq8k3VtL0xR2";
const UNIFI_USER: &str = "secrets-test-locator";
const UNIFI_PASSWORD: &str = "unifi-pw-Hn4sW9cB7yE1";
const UNIFI_API_KEY: &str = "unifi-key-Pm6dX2aQ5uJ8";
const BMC: &str = "02:00:5e:10:00:71";
/// The mockup system's host NIC.
const HOST_NIC: &str = "aa:bb:cc:dd:ee:00";

/// The controller `fake`, trusting its own certificate, with the password or the API key in
/// its own environment variable.
fn controller(fake: &FakeUnifi, dir: &std::path::Path, name: &str, with_key: bool) -> UnifiConfig {
    let ca_file = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&ca_file, fake.ca_pem()).unwrap();
    let (username, password_env, api_key_env) = if with_key {
        std::env::set_var("METAL_SECRETS_TEST_UNIFI_KEY", UNIFI_API_KEY);
        (None, None, Some("METAL_SECRETS_TEST_UNIFI_KEY".to_string()))
    } else {
        std::env::set_var("METAL_SECRETS_TEST_UNIFI_PASSWORD", UNIFI_PASSWORD);
        (
            Some(UNIFI_USER.to_string()),
            Some("METAL_SECRETS_TEST_UNIFI_PASSWORD".to_string()),
            None,
        )
    };
    UnifiConfig {
        name: name.into(),
        url: fake.url(),
        flavour: if with_key {
            UnifiFlavour::Integration
        } else {
            UnifiFlavour::Auto
        },
        sites: vec!["default".into()],
        username,
        password_env,
        api_key_env,
        ca_file: Some(ca_file),
        cert_sha256: None,
        insecure_tls: false,
        cache_secs: 5,
    }
}

/// Fails naming where `secret` (named `what`) was found in `haystack`.
fn assert_absent(haystack: &[u8], secrets: &[(&str, &str)], place: &str) {
    for (what, secret) in secrets {
        let found = haystack
            .windows(secret.len())
            .position(|window| window == secret.as_bytes());
        if let Some(at) = found {
            let start = at.saturating_sub(120);
            let end = (at + secret.len() + 120).min(haystack.len());
            panic!(
                "the {what} appears in {place}: …{}…",
                String::from_utf8_lossy(&haystack[start..end])
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_reaches_the_stream_a_log_an_output_a_projection_or_a_page() {
    let logs = test_harness::logs::Captured::install(false);
    std::env::set_var("RUST_LOG", "debug");
    std::env::set_var("METAL_SECRETS_TEST_BMC_PASSWORD", BMC_PASSWORD);

    let folder = test_harness::paths::mockup_folders()
        .into_iter()
        .find(|f| f.ends_with("dmtf-public-rackmount1"))
        .expect("mockup folder dmtf-public-rackmount1");
    let bmc = serve_mockup_with_auth(&folder, BMC_USER, BMC_PASSWORD).await;
    let os = FakeUnifi::start(
        UnifiOptions::unifi_os()
            .account(UNIFI_USER, UNIFI_PASSWORD)
            .without_fixture_clients(),
    )
    .await;
    let integration = FakeUnifi::start(
        UnifiOptions::integration()
            .api_key(UNIFI_API_KEY)
            .without_fixture_clients(),
    )
    .await;
    for fake in [&os, &integration] {
        fake.add_client("default", BMC, Ipv4Addr::LOCALHOST);
    }
    let certs = tempfile::tempdir().unwrap();
    let sources = vec![
        controller(&os, certs.path(), "os", false),
        controller(&integration, certs.path(), "integration", true),
    ];
    let port = bmc.addr().port();
    let system = System::start_with(Vec::new(), |config: &mut Config| {
        config.locator.unifi = sources;
        config.locator.redfish_scheme = "http".into();
        config.locator.redfish_port = Some(port);
        config.redfish.username = BMC_USER.into();
        config.redfish.password_env = "METAL_SECRETS_TEST_BMC_PASSWORD".into();
    })
    .await;
    let mut outputs = Vec::new();
    let mut run = |output: std::process::Output, what: &str| {
        assert!(
            output.status.success(),
            "metal-cli {what}: {}",
            printed(&output)
        );
        outputs.extend_from_slice(&output.stdout);
        outputs.extend_from_slice(&output.stderr);
        output
    };

    run(
        system.cli_async(&["onboard", BMC, "--timeout", "90"]).await,
        "onboard",
    );
    let detail = system.wait_inventoried(BMC, Duration::from_secs(60)).await;
    assert_eq!(detail.machine.state, MachineState::Inventoried);
    assert!(os.logins() >= 1, "the password was used");
    assert!(integration.requests() >= 1, "the API key was used");
    assert!(bmc.sessions_created() >= 1, "the BMC password was used");
    run(
        system
            .cli_async(&[
                "provision",
                BMC,
                "--profile",
                "G1",
                "--no-power",
                "--timeout",
                "60",
            ])
            .await,
        "provision",
    );

    // Pixiecore's boot request gets the token in the cmdline; the installer phones home.
    let spec = system.boot(HOST_NIC, 200).await;
    let cmdline = spec["cmdline"].as_str().expect("a cmdline").to_string();
    let token = cmdline_value(&cmdline, "metal.token").expect("a token in the cmdline");
    let url = cmdline_value(&cmdline, "metal.phone_home").expect("a phone-home URL");
    assert!(token.len() >= 32, "{token}");
    let (status, body) = phone_home(&url, &token, true).await;
    assert_eq!(status, 200, "{body}");
    system.boot_refused(HOST_NIC, "not armed").await;
    // A wrong token is refused, and its rejection records no part of either.
    let wrong = format!("{}0", &token[..token.len() - 1]);
    let (status, _) = phone_home(&url, &wrong, false).await;
    assert_eq!(status, 401);

    for args in [
        vec!["show", BMC],
        vec!["show", BMC, "--json"],
        vec!["history", BMC],
        vec!["machines"],
        vec!["inventory", "--ansible"],
    ] {
        let what = args.join(" ");
        run(system.cli_async(&args).await, &what);
    }

    let secrets = [
        ("BMC password", BMC_PASSWORD),
        ("UniFi password", UNIFI_PASSWORD),
        ("UniFi API key", UNIFI_API_KEY),
        ("install token", token.as_str()),
        ("wrong token", wrong.as_str()),
        ("install-token key", E2E_TOKEN_KEY),
    ];
    for message in test_harness::stream::read_all(&system.client).await {
        let place = format!("message {} on {}", message.sequence, message.subject);
        assert_absent(&message.payload, &secrets, &place);
        if let Some(id) = &message.msg_id {
            assert_absent(id.as_bytes(), &secrets, &place);
        }
    }
    assert_absent(&outputs, &secrets, "metal-cli's output");
    let web = &system.web_url;
    for page in [
        format!("{web}/"),
        format!("{web}/machines/{BMC}"),
        format!("{web}/api/v1/machines"),
        format!("{web}/api/v1/machines/{BMC}"),
        format!("{web}/api/v1/machines/{BMC}/timeline"),
    ] {
        let (status, body) = http_get(&page).await;
        assert_eq!(status, 200, "{page}: {body}");
        assert_absent(body.as_bytes(), &secrets, &page);
    }
    // Every projection (the projector's, boot-api's, the validator's, the web's), WAL included.
    let mut files = 0;
    for entry in std::fs::read_dir(system.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert_absent(&bytes, &secrets, &path.display().to_string());
            files += 1;
        }
    }
    assert!(files >= 4, "the projection files were read");
    system.stop().await;

    let logged = logs.bytes();
    let text = String::from_utf8_lossy(&logged);
    assert!(
        text.contains("DEBUG") && text.contains("phone-home"),
        "the services' debug logs were captured"
    );
    assert_absent(&logged, &secrets, "the services' logs");
}
