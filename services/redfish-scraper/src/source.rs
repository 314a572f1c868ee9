//! "GET this Redfish path": the one operation the walk needs.

use std::future::Future;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::RedfishError;

/// Something that answers Redfish GETs: a BMC over HTTP, or a mockup folder on disk.
pub trait RedfishSource: Send + Sync {
    /// Fetches `path` (an `@odata.id` as written, e.g. `/redfish/v1/Systems/1/`).
    /// `Ok(None)` means the resource is not there (404 or equivalent).
    fn get(&self, path: &str) -> impl Future<Output = Result<Option<Value>, RedfishError>> + Send;
}

/// Normalises a resource path for lookup and de-duplication: drops the query string and
/// fragment and any trailing `/` (`/redfish/v1/Systems/1/` is `/redfish/v1/Systems/1`).
pub fn normalise_path(path: &str) -> String {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    let trimmed = path[..end].trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    }
}

/// A recorded mockup folder in the DMTF layout: `GET <path>` reads `<dir>/<path>/index.json`.
#[derive(Debug, Clone)]
pub struct MockupDirSource {
    dir: PathBuf,
}

impl MockupDirSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        MockupDirSource { dir: dir.into() }
    }

    /// The `index.json` for a path, or `None` for a path that tries to leave the folder.
    pub fn file_for(dir: &Path, path: &str) -> Option<PathBuf> {
        metal_core::raw::mockup_file(dir, &normalise_path(path))
    }
}

impl RedfishSource for MockupDirSource {
    async fn get(&self, path: &str) -> Result<Option<Value>, RedfishError> {
        let Some(file) = MockupDirSource::file_for(&self.dir, path) else {
            return Ok(None);
        };
        let text = match tokio::fs::read(&file).await {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(RedfishError::File {
                    path: file.display().to_string(),
                    source,
                })
            }
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| RedfishError::InvalidJson {
                url: file.display().to_string(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        for (input, expected) in [
            ("/redfish/v1/Systems/1/", "/redfish/v1/Systems/1"),
            ("/redfish/v1/Systems/1", "/redfish/v1/Systems/1"),
            ("/redfish/v1/Systems?$expand=.", "/redfish/v1/Systems"),
            (
                "/redfish/v1/Chassis/1/Power#/PowerSupplies/0",
                "/redfish/v1/Chassis/1/Power",
            ),
            ("/", "/"),
        ] {
            assert_eq!(normalise_path(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn no_traversal() {
        assert!(MockupDirSource::file_for(Path::new("/m"), "/redfish/../../etc").is_none());
        assert_eq!(
            MockupDirSource::file_for(Path::new("/m"), "/redfish/v1/").unwrap(),
            PathBuf::from("/m/redfish/v1/index.json")
        );
    }
}
