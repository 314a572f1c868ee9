//! NATS as deployed with nats/auth.conf, over TLS: every service, metal-cli and the test
//! connect as their own user, trusting only the test's CA. The whole pipeline runs
//! (onboard, locate, tag, expect, rescan, provision, boot, phone-home, history, export,
//! replay, the web page) without one permission refused; then each service's user, trying
//! to publish or subscribe outside what it must, is refused by the server, and nothing it
//! tried is stored. No NATS password appears in a log line or metal-cli's output.
//!
//! One test in this binary: it installs the process's tracing subscriber.

mod common;

use std::time::Duration;

use common::{cmdline_value, http_get, phone_home, printed, SecuredNats, System, NATS_USERS};
use metal_core::query::MachineState;
use metal_core::{subjects, Mac};
use test_harness::mockup::serve_mockup;

const BMC: &str = "02:00:5e:10:00:91";
/// The mockup system's host NIC.
const HOST_NIC: &str = "aa:bb:cc:dd:ee:00";

/// Something a user may not do.
#[derive(Debug, Clone, Copy)]
enum Trespass {
    Publish(&'static str),
    Subscribe(&'static str),
}

/// One forbidden step per service, of the kinds that would hurt: forging another service's
/// events, deleting or purging the record, taking over a consumer, reading others' replies.
const TRESPASSES: &[(&str, Trespass)] = &[
    ("locator", Trespass::Publish("machine.hardware.scraped")),
    ("locator", Trespass::Subscribe("machine.>")),
    (
        "redfish-scraper",
        Trespass::Publish("machine.onboard.requested"),
    ),
    (
        "redfish-scraper",
        Trespass::Publish("$JS.API.STREAM.DELETE.MACHINES"),
    ),
    (
        "boot-api",
        Trespass::Publish("$JS.API.CONSUMER.DELETE.MACHINES.locator"),
    ),
    ("validator", Trespass::Publish("machine.profile.assigned")),
    (
        "inventory-projector",
        Trespass::Publish("machine.bmc.located"),
    ),
    ("web", Trespass::Publish("$JS.API.STREAM.PURGE.MACHINES")),
    ("web", Trespass::Subscribe("_INBOX.metal-cli.>")),
    ("metal-cli", Trespass::Publish("machine.hardware.scraped")),
    (
        "metal-cli",
        Trespass::Publish("$JS.ACK.MACHINES.locator.1.1.1.1.1"),
    ),
];

/// The server's log lines reporting a refusal.
fn violations(server_log: &str) -> Vec<&str> {
    server_log
        .lines()
        .filter(|line| line.contains("Violation"))
        .collect()
}

fn run_ok(system: &System, output: std::process::Output, what: &str, outputs: &mut Vec<u8>) {
    if !output.status.success() {
        let server_log = std::fs::read_to_string(system.nats.log_path()).unwrap_or_default();
        panic!(
            "metal-cli {what}: {}\nthe server refused: {:#?}",
            printed(&output),
            violations(&server_log)
        );
    }
    outputs.extend_from_slice(&output.stdout);
    outputs.extend_from_slice(&output.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pipeline_runs_with_a_nats_user_per_service_and_none_steps_outside_its_subjects() {
    let logs = test_harness::logs::Captured::install(false);
    let folder = test_harness::paths::mockup_folders()
        .into_iter()
        .find(|f| f.ends_with("dmtf-public-rackmount1"))
        .expect("mockup folder dmtf-public-rackmount1");
    let bmc = serve_mockup(&folder).await;
    let mac = Mac::parse_any(BMC).unwrap();
    let system = System::start_secured(vec![(mac, bmc.base_url())], |_| {}).await;
    let mut outputs = Vec::new();

    run_ok(
        &system,
        system.cli_async(&["onboard", BMC, "--timeout", "30"]).await,
        "onboard",
        &mut outputs,
    );
    let detail = system.wait_inventoried(BMC, Duration::from_secs(60)).await;
    assert_eq!(detail.machine.state, MachineState::Inventoried);
    for args in [
        vec!["locate", BMC],
        vec!["tag", BMC, "rack=r7"],
        vec!["rescan", BMC, "--timeout", "60"],
        vec![
            "provision",
            BMC,
            "--profile",
            "G1",
            "--no-power",
            "--timeout",
            "60",
        ],
    ] {
        let what = args.join(" ");
        run_ok(&system, system.cli_async(&args).await, &what, &mut outputs);
    }
    // A verdict either way: the validator published it.
    let verdict = system
        .cli_async(&["expect", BMC, "one-drive", "--timeout", "60"])
        .await;
    assert!(
        printed(&verdict).contains("one-drive"),
        "expect: {}",
        printed(&verdict)
    );
    outputs.extend_from_slice(&verdict.stdout);

    let spec = system.boot(HOST_NIC, 200).await;
    let cmdline = spec["cmdline"].as_str().expect("a cmdline").to_string();
    let token = cmdline_value(&cmdline, "metal.token").expect("a token in the cmdline");
    let url = cmdline_value(&cmdline, "metal.phone_home").expect("a phone-home URL");
    let (status, body) = phone_home(&url, &token, true).await;
    assert_eq!(status, 200, "{body}");
    system.boot_refused(HOST_NIC, "not armed").await;
    for args in [
        vec!["show", BMC],
        vec!["history", BMC],
        vec!["machines"],
        vec!["unknown"],
        vec!["export", "--output", "-"],
        vec!["replay"],
    ] {
        let what = args.join(" ");
        run_ok(&system, system.cli_async(&args).await, &what, &mut outputs);
    }
    assert!(
        !std::path::Path::new("-").exists(),
        "export --output - writes to stdout, not to a file named -"
    );
    // web follows the stream into its own projection, and the pipeline above can finish
    // before web has caught up with it (it once answered from sequence 0).
    let page_url = format!("{}/machines/{BMC}", system.web_url);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let (status, page) = loop {
        let (status, page) = http_get(&page_url).await;
        if status == 200 || tokio::time::Instant::now() >= deadline {
            break (status, page);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 200, "{page}");

    let events = test_harness::stream::read_all(&system.client).await;
    for wanted in [
        subjects::BMC_LOCATED,
        subjects::HARDWARE_SCRAPED,
        subjects::TAGS_CHANGED,
        subjects::SPEC_ASSIGNED,
        subjects::PROFILE_ASSIGNED,
        subjects::BOOT_SERVED,
        subjects::INSTALL_COMPLETED,
    ] {
        assert!(
            events.iter().any(|m| m.subject == wanted),
            "no {wanted} on the stream"
        );
    }
    assert!(
        events
            .iter()
            .any(|m| m.subject == subjects::HARDWARE_VALIDATED
                || m.subject == subjects::HARDWARE_INVALID),
        "no verdict of the validator on the stream"
    );
    let server_log = std::fs::read_to_string(system.nats.log_path()).unwrap();
    assert_eq!(
        violations(&server_log),
        Vec::<&str>::new(),
        "the pipeline needed a permission nats/auth.conf does not give"
    );

    // Outside their subjects, every one is refused, and nothing they tried is stored.
    let stored = events.len();
    for (user, trespass) in TRESPASSES {
        let client = system.client_as(user).await;
        match trespass {
            Trespass::Publish(subject) => {
                client
                    .publish(subject.to_string(), "{}".into())
                    .await
                    .unwrap();
            }
            Trespass::Subscribe(subject) => {
                // Refused by the server, not by the client: the subscription exists here.
                let _subscription = client.subscribe(subject.to_string()).await.unwrap();
                client.flush().await.unwrap();
            }
        }
        let _ = client.flush().await;
        let (kind, subject) = match trespass {
            Trespass::Publish(subject) => ("Publish Violation", subject),
            Trespass::Subscribe(subject) => ("Subscription Violation", subject),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let server_log = std::fs::read_to_string(system.nats.log_path()).unwrap();
            let refused = violations(&server_log).iter().any(|line| {
                line.contains(kind)
                    && line.contains(&format!("/user:{user}\""))
                    && line.contains(&format!("Subject {subject:?}"))
            });
            if refused {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{user} was not refused {trespass:?}; the server logged: {:?}",
                violations(&server_log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let after = test_harness::stream::read_all(&system.client).await;
    assert_eq!(after.len(), stored, "a refused publish was stored");
    let js = async_nats::jetstream::new(system.client.clone());
    let mut stream = js.get_stream(subjects::STREAM).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, stored as u64);
    stream
        .consumer_info("locator")
        .await
        .expect("the locator's consumer is still there");
    system.stop().await;

    let passwords: Vec<String> = NATS_USERS
        .iter()
        .map(|u| SecuredNats::password(u))
        .collect();
    let logged = logs.bytes();
    for password in &passwords {
        for (place, text) in [
            ("the services' logs", &logged),
            ("metal-cli's output", &outputs),
        ] {
            assert!(
                !text
                    .windows(password.len())
                    .any(|window| window == password.as_bytes()),
                "a NATS password appears in {place}"
            );
        }
    }
}
