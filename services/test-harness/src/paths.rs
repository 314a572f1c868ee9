//! Where things are: the workspace root, `../shared`, the Redfish mockups and the UniFi fixtures.

use std::path::PathBuf;

/// The workspace root (the directory holding the top Cargo.toml).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .unwrap_or(manifest)
}

/// `shared/` beside the checkout (`METAL_SHARED_DIR` overrides).
pub fn shared_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("METAL_SHARED_DIR") {
        return PathBuf::from(dir);
    }
    workspace_root().join("..").join("shared")
}

/// The Redfish mockups directory: `METAL_REDFISH_MOCKUPS`, else `shared/redfish-mockups`.
pub fn redfish_mockups_dir() -> PathBuf {
    match std::env::var("METAL_REDFISH_MOCKUPS") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => shared_dir().join("redfish-mockups"),
    }
}

/// The UniFi API fixtures: `METAL_UNIFI_FIXTURES`, else `shared/unifi/fixtures`.
pub fn unifi_fixtures_dir() -> PathBuf {
    match std::env::var("METAL_UNIFI_FIXTURES") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => shared_dir().join("unifi").join("fixtures"),
    }
}

/// Every mockup folder (a folder with `redfish/v1/index.json`), sorted by name.
pub fn mockup_folders() -> Vec<PathBuf> {
    let root = redfish_mockups_dir();
    let entries = std::fs::read_dir(&root).unwrap_or_else(|error| {
        panic!(
            "cannot read the Redfish mockups directory {} ({error}); set METAL_REDFISH_MOCKUPS or put shared/ beside the checkout",
            root.display()
        )
    });
    let mut folders: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("redfish/v1/index.json").is_file())
        .collect();
    folders.sort();
    folders
}
