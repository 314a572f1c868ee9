//! The pure walk against every recorded mockup folder, read from disk through the
//! `RedfishSource` trait: the summary must equal the folder's `expected.json`.

mod common;

use redfish_scraper::source::MockupDirSource;
use redfish_scraper::walk::{walk, WalkLimits};

#[tokio::test]
async fn every_mockup_matches_expected_json() {
    let folders = test_harness::paths::mockup_folders();
    assert!(!folders.is_empty(), "no mockup folders found");
    for folder in &folders {
        let source = MockupDirSource::new(folder);
        let inventory = walk(&source, WalkLimits::default())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "walk of {} failed: {}",
                    folder.display(),
                    metal_core::error_chain(&e)
                )
            });
        common::check_summary(folder, &inventory);
        // Every mockup here has at least one system.
        assert!(
            !inventory.systems.is_empty(),
            "{}: no systems",
            common::folder_name(folder)
        );
    }
}

#[tokio::test]
async fn resource_cap_is_enforced() {
    let folder = &test_harness::paths::mockup_folders()[0];
    let source = MockupDirSource::new(folder);
    let limits = WalkLimits {
        max_resources: 5,
        concurrency: 4,
    };
    let error = walk(&source, limits)
        .await
        .expect_err("5 resources are not enough");
    assert_eq!(
        error.kind(),
        metal_core::events::ScrapeFailureKind::TooLarge
    );
    assert!(!error.is_transient());
}
