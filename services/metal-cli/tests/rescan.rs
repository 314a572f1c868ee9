//! Rescans and raw bundles end to end: sushy-tools' fake driver behind basic auth, a drive
//! added between two scrapes, `metal-cli rescan` naming it, `metal-cli raw` writing a
//! mockup that onboards to the same inventory, and a failed rescan that keeps the machine.

mod common;

use common::{printed, stdout, System};
use metal_core::inventory::Inventory;
use metal_core::query::{History, MachineDetail, MachineState};
use metal_core::Mac;
use test_harness::sushy::{SushyDrive, SushyEmulator, SushyFakeSystem};

const PASSWORD: &str = "e2e-secret-value";

fn drive(id: &str) -> SushyDrive {
    SushyDrive {
        id: id.to_string(),
        capacity_bytes: 960_000_000_000,
        protocol: "SATA".to_string(),
    }
}

fn systems(second_system_drives: &[&str]) -> Vec<SushyFakeSystem> {
    vec![
        SushyFakeSystem {
            name: "node-a".to_string(),
            uuid: "2b3c1a7e-59cf-4d7a-8a4e-6f1e9a2b0c01".to_string(),
            power_state: "On".to_string(),
            nic_macs: vec!["52:54:00:7e:00:01".to_string()],
            drives: vec![drive("a1")],
        },
        SushyFakeSystem {
            name: "node-b".to_string(),
            uuid: "2b3c1a7e-59cf-4d7a-8a4e-6f1e9a2b0c02".to_string(),
            power_state: "Off".to_string(),
            nic_macs: vec!["52:54:00:7e:00:02".to_string()],
            drives: second_system_drives.iter().map(|id| drive(id)).collect(),
        },
    ]
}

/// A mockup folder cannot answer HTTP 500: a collection the BMC failed to render (sushy's
/// Volumes) is simply not there in the copy, so `absent` loses its "(HTTP 500)". Every
/// other field must be equal.
fn without_statuses(mut inventory: Inventory) -> Inventory {
    let strip = |absent: &mut Vec<String>| {
        for entry in absent.iter_mut() {
            if let Some(cut) = entry.find(" (HTTP ") {
                entry.truncate(cut);
            }
        }
    };
    strip(&mut inventory.absent);
    for system in &mut inventory.systems {
        strip(&mut system.absent);
    }
    inventory
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rescan_names_the_added_drive_and_raw_bundles_onboard_alike() {
    let mut sushy = SushyEmulator::start_fake(&systems(&["b1"]), Some(("root", PASSWORD)));
    let bmc = Mac::parse_any("aa:bb:cc:7e:00:01").unwrap();
    let copy_bmc = Mac::parse_any("aa:bb:cc:7e:00:02").unwrap();
    let copy_dir = tempfile::tempdir().unwrap();
    let raw_dir = copy_dir.path().join("raw");
    // The copy's mockup server must be known to the locator before the system starts: its
    // port is taken now and served once the bundle is written.
    let copy_port = test_harness::nats::free_port();
    let copy_url = format!("http://127.0.0.1:{copy_port}");
    let system = System::start(vec![(bmc, sushy.base_url()), (copy_bmc, copy_url.clone())]).await;

    let onboard = system
        .cli_async(&["onboard", &bmc.to_string(), "--timeout", "120"])
        .await;
    assert!(
        onboard.status.success(),
        "{}\nsushy log:\n{}",
        printed(&onboard),
        sushy.log()
    );
    let before = system.show(&bmc.to_string()).await;
    let drives = |d: &MachineDetail| -> Vec<String> {
        let mut paths: Vec<String> = d
            .inventory
            .iter()
            .flat_map(|i| i.systems.iter())
            .flat_map(|s| s.drives.iter().map(|drive| drive.path.clone()))
            .collect();
        paths.sort();
        paths
    };
    assert_eq!(drives(&before).len(), 2, "{:?}", drives(&before));

    // Nothing changed yet: a rescan says so.
    let same = system
        .cli_async(&["rescan", &bmc.to_string(), "--timeout", "120"])
        .await;
    assert!(same.status.success(), "{}", printed(&same));
    assert_eq!(
        stdout(&same).trim(),
        "no hardware changes",
        "{}",
        printed(&same)
    );

    // One more drive in node-b, as after a technician's visit.
    sushy.restart_with(&systems(&["b1", "b2"]));
    let rescan = system
        .cli_async(&["rescan", &bmc.to_string(), "--timeout", "120"])
        .await;
    assert!(rescan.status.success(), "{}", printed(&rescan));
    let words = stdout(&rescan);
    assert!(
        words.contains("1 hardware change(s)") && words.contains("/Storage/1/Drives/b2 added"),
        "rescan output: {words}"
    );
    let after = system.show(&bmc.to_string()).await;
    assert_eq!(drives(&after).len(), 3);
    assert_eq!(after.machine.state, MachineState::Inventoried);

    // history says it in words.
    let history = system
        .cli_async(&["history", &bmc.to_string(), "--json"])
        .await;
    let history: History = serde_json::from_slice(&history.stdout).unwrap();
    let changed: Vec<&str> = history
        .events
        .iter()
        .filter(|e| e.event_type == metal_core::subjects::HARDWARE_CHANGED)
        .map(|e| e.summary.as_str())
        .collect();
    assert_eq!(changed.len(), 1, "{:?}", history.events);
    assert!(changed[0].contains("Drives/b2 added"), "{}", changed[0]);
    let text = system.cli_async(&["history", &bmc.to_string()]).await;
    assert!(
        stdout(&text).contains("Drives/b2 added"),
        "{}",
        printed(&text)
    );

    // The raw bundle of the rescan, written out as a mockup folder...
    let raw = system
        .cli_async(&["raw", &bmc.to_string(), "-o", raw_dir.to_str().unwrap()])
        .await;
    assert!(raw.status.success(), "{}", printed(&raw));
    assert!(raw_dir.join("redfish/v1/index.json").is_file());
    // ...refuses to overwrite...
    let again = system
        .cli_async(&["raw", &bmc.to_string(), "-o", raw_dir.to_str().unwrap()])
        .await;
    assert_eq!(again.status.code(), Some(2), "{}", printed(&again));
    // ...and onboards to the same inventory as the BMC it came from.
    let _server = test_harness::mockup::serve_mockup_on(
        &raw_dir,
        std::net::SocketAddr::from(([127, 0, 0, 1], copy_port)),
        None,
    )
    .await
    .unwrap();
    let onboard = system
        .cli_async(&["onboard", &copy_bmc.to_string(), "--timeout", "120"])
        .await;
    assert!(onboard.status.success(), "{}", printed(&onboard));
    let copy = system.show(&copy_bmc.to_string()).await;
    assert_eq!(
        copy.inventory.map(without_statuses),
        after.inventory.clone().map(without_statuses)
    );

    // An older scrape by sequence: the first inventory, two drives.
    let first_sequence = before.inventory_event.unwrap().sequence;
    let older_dir = copy_dir.path().join("older");
    let older = system
        .cli_async(&[
            "raw",
            &bmc.to_string(),
            "--seq",
            &first_sequence.to_string(),
            "-o",
            older_dir.to_str().unwrap(),
        ])
        .await;
    assert!(older.status.success(), "{}", printed(&older));
    let walked = redfish_scraper::walk::walk(
        &redfish_scraper::source::MockupDirSource::new(&older_dir),
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        Some(without_statuses(walked.inventory)),
        before.inventory.map(without_statuses)
    );
    // A sequence that is not this machine's scrape is refused with the reason.
    let wrong = system
        .cli_async(&[
            "raw",
            &bmc.to_string(),
            "--seq",
            "1",
            "-o",
            "/nonexistent/x",
        ])
        .await;
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        printed(&wrong).contains("not a machine.hardware.scraped"),
        "{}",
        printed(&wrong)
    );

    // A rescan of a BMC that has gone away fails, and the machine keeps its inventory.
    sushy.stop();
    let failed = system
        .cli_async(&["rescan", &bmc.to_string(), "--timeout", "120"])
        .await;
    assert_eq!(failed.status.code(), Some(1), "{}", printed(&failed));
    assert!(
        printed(&failed).contains("keeps its last inventory"),
        "{}",
        printed(&failed)
    );
    let kept = system.show(&bmc.to_string()).await;
    assert_eq!(kept.machine.state, MachineState::Inventoried);
    assert_eq!(kept.inventory, after.inventory);
    let text = system.cli_async(&["history", &bmc.to_string()]).await;
    assert!(
        stdout(&text).contains("rescan failed, keeping the last inventory"),
        "{}",
        printed(&text)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bmc_that_asks_for_no_credentials_is_scraped_without_any() {
    let folder = test_harness::paths::mockup_folders()
        .into_iter()
        .find(|f| f.ends_with("dmtf-public-rackmount1"))
        .unwrap();
    let server = test_harness::mockup::serve_mockup(&folder).await;
    let bmc = Mac::parse_any("aa:bb:cc:7e:00:03").unwrap();
    let system = System::start_with(vec![(bmc, server.base_url())], |config| {
        config.redfish.password_env = "METAL_E2E_NO_SUCH_PASSWORD_VARIABLE".to_string();
    })
    .await;
    let onboard = system
        .cli_async(&["onboard", &bmc.to_string(), "--timeout", "120"])
        .await;
    assert!(onboard.status.success(), "{}", printed(&onboard));
    assert_eq!(server.sessions_created(), 0, "no login without credentials");
}
