//! Raw scrape bundles: every Redfish document one scrape read, by normalised path, stored
//! gzip-compressed in the `machine-raw` object store, and written back out as a mockup
//! folder (the DMTF layout of `../shared/redfish-mockups`) that a mockup server can serve.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The `format` of bundles this code writes.
pub const FORMAT: &str = "metal-raw-bundle/1";

/// Largest bundle accepted when reading one back (uncompressed), against gzip bombs.
pub const MAX_UNCOMPRESSED_BYTES: u64 = 512 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBundle {
    pub format: String,
    pub redfish_url: String,
    /// The `$expand` query the scrape used, if any.
    pub expand: Option<String>,
    /// Documents by normalised path (`/redfish/v1/Systems/1`).
    pub documents: BTreeMap<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum RawError {
    #[error("cannot compress or decompress the bundle")]
    Gzip(#[source] std::io::Error),
    #[error("bundle is larger than {MAX_UNCOMPRESSED_BYTES} bytes uncompressed")]
    TooLarge,
    #[error("bundle is not valid JSON")]
    Json(#[source] serde_json::Error),
    #[error("bundle format {0:?} is not {FORMAT:?}")]
    Format(String),
    #[error("bundle path {0:?} cannot be a folder inside the mockup")]
    Path(String),
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Gzip bytes and their SHA-256 (lower-case hex).
pub struct Encoded {
    pub gzip: Vec<u8>,
    pub sha256: String,
}

impl RawBundle {
    pub fn new(
        redfish_url: String,
        expand: Option<String>,
        documents: BTreeMap<String, Value>,
    ) -> RawBundle {
        RawBundle {
            format: FORMAT.to_string(),
            redfish_url,
            expand,
            documents,
        }
    }

    /// Deterministic gzip (no timestamp, sorted keys), so equal scrapes give equal bytes.
    pub fn encode(&self) -> Result<Encoded, RawError> {
        let json = serde_json::to_vec(self).map_err(RawError::Json)?;
        let mut encoder = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::default());
        encoder.write_all(&json).map_err(RawError::Gzip)?;
        let gzip = encoder.finish().map_err(RawError::Gzip)?;
        let sha256 = sha256_hex(&gzip);
        Ok(Encoded { gzip, sha256 })
    }

    pub fn decode(gzip: &[u8]) -> Result<RawBundle, RawError> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(gzip)
            .take(MAX_UNCOMPRESSED_BYTES + 1)
            .read_to_end(&mut json)
            .map_err(RawError::Gzip)?;
        if json.len() as u64 > MAX_UNCOMPRESSED_BYTES {
            return Err(RawError::TooLarge);
        }
        let bundle: RawBundle = serde_json::from_slice(&json).map_err(RawError::Json)?;
        if bundle.format != FORMAT {
            return Err(RawError::Format(bundle.format));
        }
        Ok(bundle)
    }

    /// Writes `<dir>/<path>/index.json` for every document (pretty JSON), so the folder
    /// serves as a Redfish mockup. Returns how many files were written.
    pub fn write_mockup(&self, dir: &Path) -> Result<usize, RawError> {
        for (path, doc) in &self.documents {
            let file = mockup_file(dir, path).ok_or_else(|| RawError::Path(path.clone()))?;
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(|source| RawError::Write {
                    path: parent.display().to_string(),
                    source,
                })?;
            }
            let text = serde_json::to_string_pretty(doc).map_err(RawError::Json)?;
            std::fs::write(&file, text + "\n").map_err(|source| RawError::Write {
                path: file.display().to_string(),
                source,
            })?;
        }
        Ok(self.documents.len())
    }
}

/// Where a mockup folder keeps the document of a (normalised) resource path:
/// `<dir>/<path>/index.json`. `None` for a path that would leave `dir` (`..`, `.`, a
/// backslash). Readers (`redfish_scraper::source::MockupDirSource`) and the bundle writer
/// both use it, so a written folder reads back the same.
pub fn mockup_file(dir: &Path, path: &str) -> Option<PathBuf> {
    let mut file = dir.to_path_buf();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        if segment == ".." || segment == "." || segment.contains('\\') {
            return None;
        }
        file.push(segment);
    }
    file.push("index.json");
    Some(file)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The object key of a bundle: `<machine id>/<sha256>.json.gz`.
pub fn object_key(machine_id: &crate::MachineId, sha256: &str) -> String {
    format!("{machine_id}/{sha256}.json.gz")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bundle() -> RawBundle {
        RawBundle::new(
            "http://127.0.0.1:1".into(),
            None,
            BTreeMap::from([
                ("/redfish/v1".to_string(), json!({"Id": "root"})),
                ("/redfish/v1/Systems/1".to_string(), json!({"Id": "1"})),
            ]),
        )
    }

    #[test]
    fn round_trip_is_deterministic() {
        let a = bundle().encode().unwrap();
        let b = bundle().encode().unwrap();
        assert_eq!(a.gzip, b.gzip);
        assert_eq!(a.sha256, sha256_hex(&a.gzip));
        assert_eq!(RawBundle::decode(&a.gzip).unwrap(), bundle());
    }

    #[test]
    fn writes_a_mockup_folder_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(bundle().write_mockup(dir.path()).unwrap(), 2);
        assert!(dir.path().join("redfish/v1/Systems/1/index.json").is_file());
        let mut evil = bundle();
        evil.documents
            .insert("/redfish/../../etc".to_string(), json!({}));
        assert!(matches!(
            evil.write_mockup(dir.path()),
            Err(RawError::Path(_))
        ));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(RawBundle::decode(b"not gzip").is_err());
    }
}
