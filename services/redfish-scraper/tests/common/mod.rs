//! Shared by the integration tests: the expected summary of a mockup folder.

#![allow(dead_code)]

use std::path::Path;

use metal_core::inventory::{Inventory, InventorySummary};
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
