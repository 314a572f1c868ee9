//! Shared by the integration tests: the expected summary of a mockup folder, and the scraper
//! service running in the test's process.

#![allow(dead_code)]

use std::path::Path;

use std::time::Duration;

use metal_core::config::RedfishConfig;
use metal_core::inventory::{Inventory, InventorySummary};
use redfish_scraper::http::HttpSettings;
use serde_json::Value;

/// `expected.json` of a mockup folder without its `notes` key.
pub fn expected_summary(folder: &Path) -> Value {
    let path = folder.join("expected.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut expected: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    if let Some(object) = expected.as_object_mut() {
        object.remove("notes");
    }
    expected
}

/// Asserts that the inventory's summary is the folder's `expected.json`.
pub fn check_summary(folder: &Path, inventory: &Inventory) {
    let actual = serde_json::to_value(InventorySummary::of(inventory)).unwrap();
    let expected = expected_summary(folder);
    assert_eq!(
        actual,
        expected,
        "summary of {} differs from expected.json\nactual:   {}\nexpected: {}",
        folder.display(),
        serde_json::to_string_pretty(&actual).unwrap(),
        serde_json::to_string_pretty(&expected).unwrap()
    );
}

pub fn folder_name(folder: &Path) -> String {
    folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Generous timeouts for well-behaved servers on a loaded machine.
pub fn relaxed_settings() -> HttpSettings {
    HttpSettings {
        request_timeout: Duration::from_secs(10),
        scrape_deadline: Duration::from_secs(60),
        retries: 1,
        backoff: Duration::from_millis(10),
        ..HttpSettings::from_config(&RedfishConfig::default())
    }
}

/// Walks a mockup folder from disk; panics with the folder and the reason.
pub async fn walk_folder(folder: &Path) -> Inventory {
    redfish_scraper::walk::walk(
        &redfish_scraper::source::MockupDirSource::new(folder),
        redfish_scraper::walk::WalkLimits::default(),
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "walk of {} failed: {}",
            folder.display(),
            metal_core::error_chain(&e)
        )
    })
    .inventory
}

/// The scraper service (`run()`) running in this process with its own reconnecting client.
pub struct Scraper {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Scraper {
    pub async fn start(
        server: &test_harness::nats::NatsServer,
        config: metal_core::config::Config,
    ) -> Scraper {
        let client = metal_core::jetstream::connect(&server.url(), "redfish-scraper")
            .await
            .expect("scraper connects to NATS");
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            redfish_scraper::run(config, client, async move {
                let _ = shutdown_rx.await;
            })
            .await
            .unwrap_or_else(|e| panic!("run failed: {}", metal_core::error_chain(&e)));
        });
        Scraper {
            shutdown: Some(shutdown),
            task,
        }
    }

    /// Ends the scraper as a `kill -9` would: nothing finished, nothing acked or handed
    /// back, its connection gone.
    pub async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), &mut self.task)
            .await
            .expect("scraper stops within 20 s of shutdown")
            .expect("scraper task did not panic");
    }
}

/// A fresh event of `event_type` about the machine of `bmc_mac`, happening now, as the
/// responder would receive it.
pub fn event_for(bmc_mac: metal_core::Mac, event_type: &str, data: Value) -> metal_core::Envelope {
    metal_core::Envelope {
        event_id: uuid::Uuid::new_v4(),
        event_type: event_type.to_string(),
        machine_id: Some(metal_core::MachineId::from_bmc_mac(&bmc_mac)),
        bmc_mac: Some(bmc_mac),
        time: time::OffsetDateTime::now_utc(),
        correlation_id: uuid::Uuid::new_v4(),
        causation_id: Some(uuid::Uuid::new_v4()),
        data,
    }
}
