//! `metal-cli onboard --file`: every MAC of a file requested at once and followed together
//! through the real pipeline (fake BMCs; one MAC no source knows); and a file with a line
//! that is not a MAC refused before anything is sent.

mod common;

use common::{printed, System};
use metal_core::{subjects, Mac};
use test_harness::fake_bmc::{self, FakeBmcSpec, FakeFleet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_macs_is_onboarded_together_and_the_failures_are_named() {
    let fleet = FakeFleet::start(vec![FakeBmcSpec::synthetic(); 3]).await;
    let bmcs: Vec<(Mac, String)> = (0..3)
        .map(|i| {
            (
                Mac::parse_any(&fake_bmc::synthetic_bmc_mac(i)).unwrap(),
                fleet.base_url(i),
            )
        })
        .collect();
    let system = System::start(bmcs.clone()).await;
    let unknown = "02:ee:00:00:00:99";
    let file = system.path("macs.txt");
    std::fs::write(
        &file,
        format!(
            "# rack 7\n{}\n{}  # top\n\n{}\n{unknown}\n{}\n",
            bmcs[0].0,
            bmcs[1].0.to_string().to_uppercase().replace(':', "-"),
            bmcs[2].0,
            bmcs[0].0
        ),
    )
    .unwrap();
    let output = system
        .cli_async(&[
            "onboard",
            "--file",
            file.to_str().unwrap(),
            "--timeout",
            "120",
        ])
        .await;
    let text = printed(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("requested  4 machines"), "{text}");
    assert!(text.contains("3 inventoried, 1 failed"), "{text}");
    assert!(
        text.contains(&format!("failed     {unknown}:")),
        "the unknown MAC is not named: {text}"
    );
    // Each machine once, the repeated line included; the inventory has the three.
    let events = test_harness::stream::read_events(&system.client).await;
    let requests = events
        .iter()
        .filter(|e| e.event_type == subjects::ONBOARD_REQUESTED)
        .count();
    assert_eq!(requests, 4);
    for (mac, _) in &bmcs {
        let detail = system.show(&mac.to_string()).await;
        assert_eq!(
            detail.machine.state,
            metal_core::query::MachineState::Inventoried
        );
    }

    // --no-wait prints each MAC with its request id and returns at once.
    std::fs::write(&file, format!("{}\n", bmcs[2].0)).unwrap();
    let output = system
        .cli_async(&["onboard", "--file", file.to_str().unwrap(), "--no-wait"])
        .await;
    assert!(output.status.success(), "{}", printed(&output));
    let line = common::stdout(&output);
    let (mac, id) = line.trim().split_once(' ').expect("MAC and request id");
    assert_eq!(mac, bmcs[2].0.to_string());
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{line}");
    system.stop().await;
}

#[test]
fn a_file_with_a_line_that_is_not_a_mac_onboards_nothing_and_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("macs.txt");
    std::fs::write(&file, "aa:bb:cc:00:00:01\nrack-7-node-3\n").unwrap();
    // No NATS at this URL: the file is refused before anything is sent.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_metal-cli"))
        .args(["onboard", "--file", file.to_str().unwrap()])
        .env("NATS_URL", "nats://127.0.0.1:1")
        .env_remove("METAL_CONFIG")
        .output()
        .unwrap();
    let text = printed(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("line 2: \"rack-7-node-3\" is not a BMC MAC"),
        "{text}"
    );
    let both = std::process::Command::new(env!("CARGO_BIN_EXE_metal-cli"))
        .args([
            "onboard",
            "aa:bb:cc:00:00:01",
            "--file",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2), "{}", printed(&both));
}
