//! End to end: real nats-server, every responder, real BMC emulators (sushy-tools) and
//! recorded vendor mockups, onboarding through `metal-cli onboard` and a raw publish.

mod common;

use std::time::Duration;

use common::{stderr, stdout, System};
use metal_core::query::MachineDetail;
use metal_core::{subjects, Mac};
use test_harness::mockup::serve_mockup;
use test_harness::sushy::{SushyDrive, SushyEmulator, SushySystem};

const ONBOARD_TIMEOUT: Duration = Duration::from_secs(120);

fn drives(drives: &[(&str, u64)]) -> Vec<SushyDrive> {
    drives
        .iter()
        .map(|(id, bytes)| SushyDrive {
            id: id.to_string(),
            capacity_bytes: *bytes,
            protocol: "SATA".into(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn onboards_sushy_emulated_servers_and_boots_their_host_nics() {
    let intel = SushyEmulator::start(&[SushySystem {
        name: "rack1-intel".into(),
        uuid: "8f0e4f3a-3c1e-4b9a-9d55-1d2f7a6b0c01".into(),
        cpu_vendor: "Intel".into(),
        cpu_model: "Skylake-Server".into(),
        sockets: 2,
        cores: 8,
        threads: 1,
        memory_gib: 64,
        nic_macs: vec!["52:54:00:aa:10:01".into(), "52:54:00:aa:10:02".into()],
        drives: drives(&[("disk0", 480_103_981_056), ("disk1", 960_197_124_096)]),
    }]);
    let amd = SushyEmulator::start(&[SushySystem {
        name: "rack1-amd".into(),
        uuid: "8f0e4f3a-3c1e-4b9a-9d55-1d2f7a6b0c02".into(),
        cpu_vendor: "AMD".into(),
        cpu_model: "EPYC-Rome".into(),
        sockets: 1,
        cores: 16,
        threads: 1,
        memory_gib: 128,
        nic_macs: vec!["52:54:00:aa:20:01".into()],
        drives: drives(&[("nvme0", 1_920_383_410_176)]),
    }]);
    let intel_bmc = Mac::parse_device("02:4d:00:00:10:01").unwrap();
    let amd_bmc = Mac::parse_device("02:4d:00:00:20:01").unwrap();
    let system = System::start(vec![
        (intel_bmc, intel.base_url()),
        (amd_bmc, amd.base_url()),
    ])
    .await;

    // One by metal-cli, in a notation people type.
    let output = system
        .cli_async(&["onboard", "02-4D-00-00-10-01", "--timeout", "120"])
        .await;
    assert!(
        output.status.success(),
        "metal-cli onboard failed: {}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("located"),
        "progress shown: {}",
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("Skylake-Server"),
        "{}",
        stdout(&output)
    );

    // One by a raw core publish of a bare MAC, exactly what `nats pub` sends.
    system
        .client
        .publish(subjects::ONBOARD_REQUESTED, "024d.0000.2001".into())
        .await
        .unwrap();
    system.client.flush().await.unwrap();

    let intel_detail = system
        .wait_inventoried("02:4d:00:00:10:01", ONBOARD_TIMEOUT)
        .await;
    let amd_detail = system
        .wait_inventoried(&amd_bmc.to_string(), ONBOARD_TIMEOUT)
        .await;

    let check = |detail: &MachineDetail,
                 model: &str,
                 count: u64,
                 cores: u64,
                 gib: f64,
                 macs: &[&str],
                 drive_sizes: &[u64]| {
        let inventory = detail.inventory.as_ref().expect("inventory");
        let summary = detail.summary.as_ref().expect("summary");
        let system = &summary.systems[0];
        assert_eq!(system.processors.count, count, "cpu count");
        assert!(
            system.processors.models.iter().all(|m| m == model),
            "{:?}",
            system.processors.models
        );
        assert_eq!(system.processors.total_cores, cores);
        assert_eq!(inventory.systems[0].memory_summary_gib, Some(gib));
        assert_eq!(
            detail.machine.memory_mib,
            (gib as u64) * 1024,
            "memory in the machine row"
        );
        let got: Vec<String> = system.host_nic_macs.iter().map(|m| m.to_string()).collect();
        assert_eq!(got, macs);
        let mut sizes: Vec<u64> = system
            .drives
            .iter()
            .filter_map(|d| d.capacity_bytes)
            .collect();
        sizes.sort();
        assert_eq!(sizes, drive_sizes);
    };
    // sushy renders one Processor per vCPU, each with the domain's cores per socket.
    check(
        &intel_detail,
        "Skylake-Server",
        16,
        16 * 8,
        64.0,
        &["52:54:00:aa:10:01", "52:54:00:aa:10:02"],
        &[480_103_981_056, 960_197_124_096],
    );
    check(
        &amd_detail,
        "EPYC-Rome",
        16,
        16 * 16,
        128.0,
        &["52:54:00:aa:20:01"],
        &[1_920_383_410_176],
    );

    // Inventoried is not armed: boot-api knows both machines and still netboots neither.
    system.boot_refused("52:54:00:aa:10:02", "not armed").await;
    system
        .boot_refused("52%3A54%3A00%3AAA%3A20%3A01", "not armed")
        .await;

    // Armed without touching the BMC; the selectors pick G1 for Intel, G2 for AMD.
    for (bmc, profile) in [(intel_bmc, "G1"), (amd_bmc, "G2")] {
        let output = system
            .cli_async(&[
                "provision",
                &bmc.to_string(),
                "--no-power",
                "--timeout",
                "60",
            ])
            .await;
        assert!(
            output.status.success(),
            "metal-cli provision {bmc} --no-power failed: {}{}",
            stdout(&output),
            stderr(&output)
        );
        assert!(
            stdout(&output).contains(&format!("profile {profile}")),
            "{}",
            stdout(&output)
        );
    }

    // Pixiecore asks with the host NIC: raw colons, percent-encoded, upper case.
    let spec = system.boot("52:54:00:aa:10:02", 200).await;
    assert!(spec["message"].as_str().unwrap().contains("G1"), "{spec}");
    assert!(
        spec["kernel"].as_str().unwrap().starts_with("http"),
        "{spec}"
    );
    assert!(spec["initrd"].is_array(), "{spec}");
    assert!(spec["cmdline"].is_string(), "{spec}");
    let spec = system.boot("52%3A54%3A00%3AAA%3A20%3A01", 200).await;
    assert!(spec["message"].as_str().unwrap().contains("G2"), "{spec}");
    // The BMC's own MAC and an unknown MAC do not boot.
    system
        .boot_refused("02:4d:00:00:10:01", "unknown MAC")
        .await;
    system
        .boot_refused("02:00:00:00:00:99", "unknown MAC")
        .await;

    // The sushy password never reached the log.
    let events = test_harness::stream::read_events(&system.client).await;
    let log = serde_json::to_string(&events).unwrap();
    assert!(!log.contains("e2e-secret-value"));
    assert!(events
        .iter()
        .any(|e| e.event_type == subjects::HARDWARE_SCRAPED));

    let history = system.cli_async(&["history", "52:54:00:aa:10:01"]).await;
    assert!(history.status.success(), "{}", stderr(&history));
    for event_type in [
        subjects::ONBOARD_REQUESTED,
        subjects::BMC_LOCATED,
        subjects::HARDWARE_SCRAPED,
    ] {
        assert!(
            stdout(&history).contains(event_type),
            "{}",
            stdout(&history)
        );
    }
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_recorded_mockup_onboards_to_its_expected_inventory_and_replays_identically() {
    let folders = test_harness::paths::mockup_folders();
    assert!(!folders.is_empty(), "no mockups found");
    let mut servers = Vec::new();
    let mut bmcs = Vec::new();
    for (index, folder) in folders.iter().enumerate() {
        let server = serve_mockup(folder).await;
        let mac = Mac::parse_device(&format!(
            "02:4d:00:01:{:02x}:{:02x}",
            index / 256,
            index % 256
        ))
        .unwrap();
        bmcs.push((mac, server.base_url()));
        servers.push(server);
    }
    let system = System::start(bmcs.clone()).await;

    // All at once, as an operator onboarding a rack would.
    let mut onboarding = Vec::new();
    for (mac, _) in &bmcs {
        onboarding.push(system.cli_async(&["onboard", &mac.to_string(), "--timeout", "120"]));
    }
    for ((mac, _), output) in bmcs.iter().zip(futures::future::join_all(onboarding).await) {
        assert!(
            output.status.success(),
            "onboard {mac}: {}{}",
            stdout(&output),
            stderr(&output)
        );
    }

    for ((mac, _), folder) in bmcs.iter().zip(&folders) {
        let output = system
            .cli_async(&["show", &mac.to_string(), "--json"])
            .await;
        assert!(output.status.success(), "{}", stderr(&output));
        let detail: MachineDetail = serde_json::from_slice(&output.stdout).unwrap();
        let mut expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(folder.join("expected.json")).unwrap())
                .unwrap();
        expected.as_object_mut().unwrap().remove("notes");
        let got = serde_json::to_value(detail.summary.expect("summary")).unwrap();
        assert_eq!(
            got,
            expected,
            "{} differs from its expected.json",
            folder.display()
        );
    }

    let table = system.cli_async(&["machines"]).await;
    assert!(table.status.success());
    assert_eq!(
        stdout(&table).matches("inventoried").count(),
        folders.len(),
        "{}",
        stdout(&table)
    );

    // Replay: two projections of the same log export byte-identical files.
    let before = system.path("before.jsonl");
    let output = system
        .cli_async(&["export", "-o", before.to_str().unwrap()])
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let output = system.cli_async(&["replay", "--json"]).await;
    assert!(
        output.status.success(),
        "replay: {}{}",
        stdout(&output),
        stderr(&output)
    );
    let report: metal_core::query::ReplayReport = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report.identical, "{report:?}");
    assert!(
        report.events_applied >= 3 * folders.len() as u64,
        "{report:?}"
    );
    let after = system.path("after.jsonl");
    let output = system
        .cli_async(&["export", "-o", after.to_str().unwrap()])
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let before_bytes = std::fs::read(&before).unwrap();
    assert!(!before_bytes.is_empty());
    assert_eq!(
        before_bytes,
        std::fs::read(&after).unwrap(),
        "export changed across replay"
    );

    // And a third projection, built here from the stream alone, exports the same bytes.
    let mut fresh = metal_projection::Projection::open(&system.path("fresh.db")).unwrap();
    for message in test_harness::stream::read_all(&system.client).await {
        fresh.apply(&message).unwrap();
    }
    assert_eq!(
        fresh.canonical_export().unwrap(),
        before_bytes,
        "an independent projection differs"
    );

    // Every event in the log matches its schema.
    let events = test_harness::stream::read_events(&system.client).await;
    assert!(events.len() >= 3 * folders.len());
    system.stop().await;
    drop(servers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn onboarding_failures_exit_non_zero_with_the_reason() {
    // A BMC the locator knows at a port where nothing answers, and one it does not know.
    let closed_port = test_harness::nats::free_port();
    let dead_bmc = Mac::parse_device("02:4d:00:00:30:01").unwrap();
    let system = System::start(vec![(dead_bmc, format!("http://127.0.0.1:{closed_port}"))]).await;

    let unknown = system.cli_async(&["onboard", "02:4d:00:00:30:02", "--timeout", "120"]);
    let dead = system.cli_async(&["onboard", &dead_bmc.to_string(), "--timeout", "120"]);
    let (unknown, dead) = futures::join!(unknown, dead);

    assert_eq!(
        unknown.status.code(),
        Some(1),
        "{}{}",
        stdout(&unknown),
        stderr(&unknown)
    );
    assert!(
        stderr(&unknown).contains("could not locate the BMC"),
        "{}",
        stderr(&unknown)
    );
    assert!(
        stderr(&unknown).contains("not found"),
        "{}",
        stderr(&unknown)
    );

    assert_eq!(
        dead.status.code(),
        Some(1),
        "{}{}",
        stdout(&dead),
        stderr(&dead)
    );
    assert!(stderr(&dead).contains("located"), "{}", stderr(&dead));
    assert!(
        stderr(&dead).contains("Redfish scrape (unreachable)"),
        "{}",
        stderr(&dead)
    );

    // The projection carries the failed states and their reasons.
    let output = system
        .cli_async(&["show", "02:4d:00:00:30:02", "--json"])
        .await;
    let detail: MachineDetail = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        detail.machine.state,
        metal_core::query::MachineState::LocateFailed
    );
    assert!(detail.machine.state_reason.unwrap().contains("not found"));

    // --no-wait returns at once with the request id; --json prints parseable lines.
    let output = system
        .cli_async(&["onboard", "02:4d:00:00:30:03", "--no-wait"])
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let request_id: uuid::Uuid = stdout(&output).trim().parse().expect("a request id");
    let output = system
        .cli_async(&["onboard", "02:4d:00:00:30:04", "--no-wait", "--json"])
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let line: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(line["bmc_mac"], "02:4d:00:00:30:04");
    assert_ne!(line["request_id"].as_str().unwrap(), request_id.to_string());

    // The failures are events that match their schemas.
    let events = test_harness::stream::read_events(&system.client).await;
    for event_type in [subjects::LOCATE_FAILED, subjects::SCRAPE_FAILED] {
        assert!(
            events.iter().any(|e| e.event_type == event_type),
            "no {event_type}"
        );
    }
    system.stop().await;
}
