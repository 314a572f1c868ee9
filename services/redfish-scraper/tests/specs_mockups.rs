//! Hardware specs against every recorded mockup folder, walked offline: each folder has a
//! committed `tests/data/specs/<folder>.toml` whose spec "fits" is the recorded hardware (no
//! failure) and whose spec "misfits" breaks the exact rules listed here.

mod common;

use std::path::{Path, PathBuf};

use metal_core::specs::{RuleFailure, Specs};

fn specs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/specs")
}

fn failure(rule: &str, wanted: &str, found: &str) -> RuleFailure {
    RuleFailure {
        rule: rule.to_string(),
        wanted: wanted.to_string(),
        found: found.to_string(),
    }
}

/// What "misfits" must find in each folder, and the spec the folder's [[map]] rules give.
fn expected(folder: &str) -> (Vec<RuleFailure>, Option<&'static str>) {
    match folder {
        "dmtf-public-rackmount1" => (
            vec![
                failure("cpu_count", "2", "1"),
                failure("cores", "≥ 16", "8"),
                failure("memory_gib", "128", "96"),
                failure("dimm_gib", "64 GiB each", "3 × 32 GiB"),
                failure(
                    "drives",
                    "≥ 2 SSD",
                    "0 SSD (drives: 1 × 8000 GB, 1 × 4000 GB)",
                ),
                failure(
                    "nics",
                    "≥ 2 ports at ≥ 10000 Mb/s",
                    "0 ports at ≥ 10000 Mb/s (ports: 2 × 1000 Mb/s, 1 × 100 Mb/s)",
                ),
                failure("firmware:BMC*", "≥ 1.46", "1.45.455b66-rev4"),
                failure("firmware:Contoso BIOS*", "≥ 1.45.1", "P79 v1.45"),
                failure("firmware:Backplane*", "≥ 1.0", "absent"),
            ],
            Some("fits"),
        ),
        "hpe-proliant-dl325-gen10plus" => (
            vec![
                failure("cpu_model", "*Xeon*", "AMD EPYC 7302P 16-Core Processor"),
                failure("cpu_count", "2", "1"),
                failure("memory_gib", "128", "64"),
                failure("dimm_count", "8", "4"),
                failure(
                    "drives",
                    "≥ 2 SSD of ≥ 480 GB",
                    "0 SSD of ≥ 480 GB (no drives listed)",
                ),
                failure(
                    "nics",
                    "≥ 4 ports at ≥ 25000 Mb/s",
                    "2 ports at ≥ 25000 Mb/s (ports: 2 × 25000 Mb/s, 2 × unknown speed)",
                ),
                failure(
                    "gpus",
                    "≥ 1 GPU matching *A100*",
                    "0 GPUs matching *A100* (GPUs: 1 × Embedded Video Controller)",
                ),
                failure("firmware:iLO*", "≥ 2.50", "2.46 May 11 2021"),
                failure(
                    "firmware:System Programmable Logic Device",
                    "≥ 0x0F",
                    "0x0D",
                ),
                failure("firmware:*System ROM", "≥ 2.52", "A43 v2.40 (02/23/2021)"),
            ],
            Some("fits"),
        ),
        "hpe-proliant-xl675d-gen10plus-a100" => (
            vec![
                failure("cores", "96", "128"),
                failure("memory_gib", "≥ 512", "256"),
                failure("dimm_gib", "32 GiB each", "16 × 16 GiB"),
                failure(
                    "drives",
                    "≥ 2 SSD of ≥ 960 GB",
                    "1 SSD of ≥ 960 GB (drives: 1 × 960 GB SSD, 1 × unknown size)",
                ),
                failure(
                    "nics",
                    "≥ 2 ports at ≥ 25000 Mb/s",
                    "0 ports at ≥ 25000 Mb/s (ports: 6 × unknown speed)",
                ),
                failure(
                    "gpus",
                    "≥ 8 GPUs matching *A100*",
                    "0 GPUs matching *A100* (no GPUs listed)",
                ),
                failure("firmware:Power Supply Firmware", "≥ 3.0", "2.03, 1.00"),
                failure("firmware:NVIDIA A100*", "≥ 92.00.20", "92.00.19.00.10"),
                failure("firmware:27", "≥ 1", "0\\u{14}"),
                failure("firmware:Network Controller", "≥ 1.0", "unknown (N/A)"),
            ],
            Some("fits"),
        ),
        "openbmc-stock" => (
            vec![
                failure("model", "*R640*", "unknown"),
                failure("cpu_model", "*Xeon*", "no CPUs"),
                failure("cpu_count", "2", "0"),
                failure("memory_gib", "64", "0"),
                failure("drives", "≥ 1 drive", "0 drives (no drives listed)"),
                failure("nics", "≥ 1 port", "0 ports (no ports listed)"),
                failure("gpus", "≥ 1 GPU", "0 GPUs (no GPUs listed)"),
                failure(
                    "firmware:Software Inventory",
                    "≥ 2.16",
                    "2.15.0-dev-686-g100c36de90",
                ),
                failure("firmware:BMC", "≥ 1.0", "absent"),
            ],
            None,
        ),
        other => panic!(
            "mockup folder {other} has no expected failures in tests/specs_mockups.rs: add them \
             with its tests/data/specs/{other}.toml"
        ),
    }
}

fn load(path: &Path) -> Specs {
    Specs::load(path).unwrap_or_else(|e| panic!("{}", metal_core::error_chain(&e)))
}

#[tokio::test]
async fn every_mockup_fits_its_spec_and_misfits_the_other() {
    let folders = test_harness::paths::mockup_folders();
    assert!(!folders.is_empty(), "no mockup folders found");
    for folder in &folders {
        let name = common::folder_name(folder);
        let path = specs_dir().join(format!("{name}.toml"));
        assert!(
            path.is_file(),
            "mockup folder {name} has no spec file {}: write one with specs \"fits\" and \"misfits\"",
            path.display()
        );
        let specs = load(&path);
        let (misfits_expected, mapped) = expected(&name);
        let inventory = common::walk_folder(folder).await;

        let fits = specs
            .get("fits")
            .unwrap_or_else(|| panic!("{name}: no spec \"fits\""));
        assert_eq!(fits.check(&inventory), [], "{name}: \"fits\" does not fit");

        let misfits = specs
            .get("misfits")
            .unwrap_or_else(|| panic!("{name}: no spec \"misfits\""));
        let found = misfits.check(&inventory);
        assert_eq!(
            found,
            misfits_expected,
            "{name}: \"misfits\" broke other rules:\n{}",
            found
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );

        assert_eq!(
            specs.spec_for(&inventory).map(|s| s.name.as_str()),
            mapped,
            "{name}: the [[map]] rules chose another spec"
        );
    }
}

#[test]
fn every_spec_file_belongs_to_a_mockup_folder() {
    let folders: Vec<String> = test_harness::paths::mockup_folders()
        .iter()
        .map(|f| common::folder_name(f))
        .collect();
    let entries = std::fs::read_dir(specs_dir()).expect("tests/data/specs exists");
    for entry in entries {
        let path = entry.expect("readable directory entry").path();
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        assert!(
            folders.contains(&stem),
            "{} is not the spec file of a mockup folder ({folders:?})",
            path.display()
        );
        load(&path);
    }
}

#[test]
fn the_shipped_example_parses() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../profiles/hardware-specs.toml");
    let specs = load(&path);
    assert!(!specs.specs().is_empty());
    assert!(!specs.maps().is_empty());
}
