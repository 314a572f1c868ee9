//! Finding BMCs end to end: a BMC that shows up in the UniFi controller 20 s after it was
//! named is located and inventoried with no second request; `metal-cli locate` shows what
//! every source says; metal-cli reads `nats_url` from `--config`; a closed stdout pipe ends
//! metal-cli quietly.

mod common;

use std::net::Ipv4Addr;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::{stderr, stdout, System};
use metal_core::config::{Config, UnifiConfig, UnifiFlavour};
use metal_core::locate::{AnswerKind, LocateReply};
use metal_core::query::MachineState;
use metal_core::{subjects, Mac};
use test_harness::mockup::serve_mockup;
use test_harness::unifi::{self, FakeUnifi, UnifiOptions};

/// The controller `fake` as the locator's config names it, trusting its own certificate.
fn unifi_source(fake: &FakeUnifi, dir: &std::path::Path, variable: &str) -> UnifiConfig {
    std::env::set_var(variable, unifi::PASSWORD);
    let ca_file = dir.join("unifi-ca.pem");
    std::fs::write(&ca_file, fake.ca_pem()).unwrap();
    UnifiConfig {
        name: "core".into(),
        url: fake.url(),
        flavour: UnifiFlavour::Auto,
        sites: vec!["default".into()],
        username: Some(unifi::USERNAME.into()),
        password_env: Some(variable.into()),
        api_key_env: None,
        ca_file: Some(ca_file),
        cert_sha256: None,
        insecure_tls: false,
        cache_secs: 5,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bmc_that_appears_20_s_after_the_request_is_located_without_a_second_request() {
    let folder = test_harness::paths::mockup_folders()
        .into_iter()
        .next()
        .expect("a Redfish mockup");
    let bmc_server = serve_mockup(&folder).await;
    let fake = FakeUnifi::start(UnifiOptions::unifi_os().without_fixture_clients()).await;
    let certs = tempfile::tempdir().unwrap();
    let source = unifi_source(&fake, certs.path(), "METAL_TEST_LATE_UNIFI_PASSWORD");
    let port = bmc_server.addr().port();
    let system = System::start_with(Vec::new(), |config: &mut Config| {
        config.locator.unifi.push(source);
        config.locator.locate_deadline_secs = 120;
        config.locator.retry_secs = 4;
        config.locator.redfish_scheme = "http".into();
        config.locator.redfish_port = Some(port);
    })
    .await;
    let bmc = "02:00:5e:10:00:61";

    let started = tokio::time::Instant::now();
    let onboarding = system.cli_async(&["onboard", bmc, "--timeout", "150"]);
    let appears = async {
        // The BMC takes its DHCP lease, and so shows up in the controller, 20 s later.
        tokio::time::sleep(Duration::from_secs(20)).await;
        fake.add_client("default", bmc, Ipv4Addr::LOCALHOST);
    };
    let (output, ()) = futures::join!(onboarding, appears);
    assert!(
        output.status.success(),
        "metal-cli onboard: {}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(started.elapsed() >= Duration::from_secs(20));
    assert!(
        stderr(&output).contains(&format!("`metal-cli locate {bmc}` shows what each says")),
        "the wait is explained: {}",
        stderr(&output)
    );
    let detail = system.wait_inventoried(bmc, Duration::from_secs(30)).await;
    assert_eq!(detail.machine.state, MachineState::Inventoried);
    assert_eq!(detail.machine.bmc_ip.as_deref(), Some("127.0.0.1"));

    let events = test_harness::stream::read_events(&system.client).await;
    let mac = Mac::parse_any(bmc).unwrap();
    let of = |kind: &str| {
        events
            .iter()
            .filter(|e| e.event_type == kind && e.bmc_mac == Some(mac))
            .collect::<Vec<_>>()
    };
    assert_eq!(of(subjects::ONBOARD_REQUESTED).len(), 1, "one request only");
    assert!(of(subjects::LOCATE_FAILED).is_empty());
    let located = of(subjects::BMC_LOCATED);
    assert_eq!(located.len(), 1);
    assert_eq!(located[0].data["source"], "unifi");
    assert_eq!(located[0].data["source_name"], "core");
    let request_time = of(subjects::ONBOARD_REQUESTED)[0].time;
    assert!(
        located[0].time - request_time >= time::Duration::seconds(20),
        "located only once the controller knew the BMC"
    );
    assert_eq!(of(subjects::HARDWARE_SCRAPED).len(), 1);
    assert_eq!(fake.logins(), 1, "the waiting lookups shared one session");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metal_cli_locate_shows_what_every_source_says_and_onboards_nothing() {
    let fake = FakeUnifi::start(UnifiOptions::classic().without_fixture_clients()).await;
    let certs = tempfile::tempdir().unwrap();
    let source = unifi_source(&fake, certs.path(), "METAL_TEST_LOCATE_UNIFI_PASSWORD");
    let both = "02:00:5e:10:00:71";
    let only_leased = "02:00:5e:10:00:72";
    fake.add_client("default", both, Ipv4Addr::new(127, 0, 0, 5));
    let leases = certs.path().join("dnsmasq.leases");
    std::fs::write(
        &leases,
        format!("0 {both} 127.0.0.6 bmc-a *\n0 {only_leased} 127.0.0.7 bmc-b *\n"),
    )
    .unwrap();
    let static_bmc = Mac::parse_any("02:00:5e:10:00:73").unwrap();
    let system = System::start_with(
        vec![(static_bmc, "http://127.0.0.1:9".into())],
        |config: &mut Config| {
            config.locator.unifi.push(source);
            config.locator.dnsmasq_leases.push(leases.clone());
        },
    )
    .await;

    let output = system.cli_async(&["locate", both]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    for expected in [
        "would be located at https://127.0.0.5",
        "unifi core",
        "active client of site default",
        "127.0.0.6",
        "static",
    ] {
        assert!(text.contains(expected), "{expected:?} missing:\n{text}");
    }

    let output = system.cli_async(&["locate", only_leased, "--json"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let reply: LocateReply = serde_json::from_slice(&output.stdout).unwrap();
    let located = reply.located.expect("located");
    assert_eq!(located.sighting.source, "dnsmasq");
    assert_eq!(located.sighting.address, "127.0.0.7");
    let kinds: Vec<(&str, AnswerKind)> = reply
        .sources
        .iter()
        .map(|s| (s.source.as_str(), s.answer))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("static", AnswerKind::NotSeen),
            ("unifi", AnswerKind::NotSeen),
            ("dnsmasq", AnswerKind::Seen)
        ]
    );

    let output = system.cli_async(&["locate", "02:00:5e:10:00:7f"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("is not seen by any source"),
        "{}",
        stdout(&output)
    );
    let output = system.cli_async(&["locate", "02:00:5e:10"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("cannot locate"),
        "{}",
        stderr(&output)
    );

    let events = test_harness::stream::read_events(&system.client).await;
    assert!(events.is_empty(), "locate onboards nothing: {events:?}");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metal_cli_reads_nats_url_from_its_config_and_ends_quietly_on_a_closed_pipe() {
    let system = System::start(Vec::new()).await;
    // The projector answers queries once it has caught up with the stream.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !system.cli_async(&["machines"]).await.status.success() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "projector never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("metal.toml");
    std::fs::write(
        &config,
        format!(
            "nats_url = \"{}\"\n[projector]\ndatabase = \"var/inventory.db\"\n",
            system.nats.url()
        ),
    )
    .unwrap();
    let metal_cli = || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_metal-cli"));
        command.env_remove("NATS_URL").env_remove("METAL_CONFIG");
        command
    };
    let by_flag = metal_cli()
        .args(["--config", config.to_str().unwrap(), "machines"])
        .output()
        .unwrap();
    assert!(by_flag.status.success(), "{}", stderr(&by_flag));
    let by_env = metal_cli()
        .env("METAL_CONFIG", &config)
        .args(["machines", "--json"])
        .output()
        .unwrap();
    assert!(by_env.status.success(), "{}", stderr(&by_env));
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "nats_ulr = \"x\"\n").unwrap();
    let refused = metal_cli()
        .args(["--config", broken.to_str().unwrap(), "machines"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("nats_ulr"),
        "{}",
        stderr(&refused)
    );

    // `metal-cli machines | head` where head has already gone: the reader end is closed
    // before metal-cli writes a byte.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let closed = metal_cli()
        .env("NATS_URL", system.nats.url())
        .arg("machines")
        .stdout(writer)
        .output()
        .unwrap();
    assert!(!stderr(&closed).contains("panicked"), "{}", stderr(&closed));
    assert_eq!(closed.status.signal(), Some(libc::SIGPIPE), "{closed:?}");
    system.stop().await;
}
