//! The pure walk against every recorded mockup folder, read from disk through the
//! `RedfishSource` trait: the summary must equal the folder's `expected.json`.

mod common;

use redfish_scraper::error::RedfishError;
use redfish_scraper::source::{MockupDirSource, RedfishSource};
use redfish_scraper::walk::{walk, WalkLimits};

#[tokio::test]
async fn every_mockup_matches_expected_json() {
    let folders = test_harness::paths::mockup_folders();
    assert!(!folders.is_empty(), "no mockup folders found");
    for folder in &folders {
        let inventory = common::walk_folder(folder).await;
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
        ..WalkLimits::default()
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

/// A recorded mockup whose chosen paths answer HTTP 500 (after the client's retries).
struct FailingPaths {
    inner: MockupDirSource,
    failing_suffixes: &'static [&'static str],
}

impl RedfishSource for FailingPaths {
    async fn get(&self, path: &str) -> Result<Option<serde_json::Value>, RedfishError> {
        let normalised = redfish_scraper::source::normalise_path(path);
        if self
            .failing_suffixes
            .iter()
            .any(|s| normalised.ends_with(s))
        {
            return Err(RedfishError::ServerError {
                url: format!("http://bmc{path}"),
                status: 500,
            });
        }
        self.inner.get(path).await
    }
}

#[tokio::test]
async fn a_broken_optional_collection_is_absent_not_fatal() {
    let folder = test_harness::paths::shared_dir()
        .join("redfish-mockups/hpe-proliant-xl675d-gen10plus-a100");
    let source = FailingPaths {
        inner: MockupDirSource::new(&folder),
        failing_suffixes: &["/Systems/1/Storage"],
    };
    let inventory = walk(&source, WalkLimits::default())
        .await
        .unwrap()
        .inventory;
    let system = &inventory.systems[0];
    assert!(
        system.absent.contains(&"Storage (HTTP 500)".to_string()),
        "{:?}",
        system.absent
    );
    assert!(system.drives.is_empty());
    assert_eq!(
        system.cpus().count(),
        2,
        "the rest of the inventory is kept"
    );

    // The service root and the Systems collection are not optional.
    for essential in [&["/redfish/v1"][..], &["/redfish/v1/Systems"][..]] {
        let source = FailingPaths {
            inner: MockupDirSource::new(&folder),
            failing_suffixes: essential,
        };
        let error = walk(&source, WalkLimits::default()).await.unwrap_err();
        assert!(
            matches!(error, RedfishError::ServerError { status: 500, .. }),
            "{error}"
        );
    }
}

/// The project's own recordings in `tests/data/mockups` (not in `shared/`): each one with an
/// `expected.json` (in the shared format, checked by hand) must match it too.
#[tokio::test]
async fn own_mockups_match_their_expected_json() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/mockups");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let folder = entry.unwrap().path();
        if !folder.join("redfish/v1/index.json").is_file()
            || !folder.join("expected.json").is_file()
        {
            continue;
        }
        let inventory = common::walk_folder(&folder).await;
        common::check_summary(&folder, &inventory);
        checked.push(common::folder_name(&folder));
    }
    assert!(
        checked.contains(&"dmtf-redfish-interface-emulator".to_string()),
        "the DMTF interface emulator tree was not checked: {checked:?}"
    );
}
