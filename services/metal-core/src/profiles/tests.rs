//! Profiles files: errors naming the line, every selector, priority, rendering.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::inventory::{
    ChassisInventory, Drive, NetworkInterface, PcieDevice, PcieFunction, Processor, SystemInventory,
};

const SHIPPED: &str = include_str!("../../../../profiles/boot-profiles.toml");

fn parse(text: &str) -> Result<Profiles, String> {
    Profiles::parse(text, Path::new("test-profiles.toml")).map_err(|e| crate::error_chain(&e))
}

fn machine(cpu: &str, cores: u64, memory_gib: u64, drives: &[(u64, &str)]) -> Inventory {
    Inventory {
        systems: vec![SystemInventory {
            id: "1".to_string(),
            manufacturer: Some("Dell Inc.".to_string()),
            model: Some("PowerEdge R640".to_string()),
            processors: (0..2)
                .map(|i| Processor {
                    id: format!("CPU{i}"),
                    processor_type: Some("CPU".to_string()),
                    model: Some(cpu.to_string()),
                    total_cores: Some(cores / 2),
                    ..Processor::default()
                })
                .collect(),
            memory_summary_gib: Some(memory_gib as f64),
            ethernet_interfaces: vec![NetworkInterface {
                id: "NIC1".to_string(),
                mac: Some(Mac::parse_device("52:54:00:00:00:01").unwrap()),
                speed_mbps: Some(25_000),
                ..NetworkInterface::default()
            }],
            drives: drives
                .iter()
                .enumerate()
                .map(|(i, (gb, media))| Drive {
                    path: format!("/redfish/v1/Systems/1/Storage/1/Drives/{i}"),
                    capacity_bytes: Some(gb * 1_000_000_000),
                    media_type: Some(media.to_string()),
                    ..Drive::default()
                })
                .collect(),
            ..SystemInventory::default()
        }],
        ..Inventory::default()
    }
}

#[test]
fn shipped_profiles_keep_the_origin_rule() {
    let profiles = parse(SHIPPED).unwrap();
    let none = BTreeMap::new();
    let intel = MachineFacts::of(&machine("Intel(R) Xeon(R) Gold 6130", 32, 64, &[]), &none);
    let amd = MachineFacts::of(&machine("AMD EPYC 7302", 32, 64, &[]), &none);
    let arm = MachineFacts::of(&machine("Ampere Altra", 80, 64, &[]), &none);
    assert_eq!(profiles.choose(&intel).map(|p| p.name.as_str()), Some("G1"));
    assert_eq!(profiles.choose(&amd).map(|p| p.name.as_str()), Some("G2"));
    assert_eq!(profiles.choose(&arm).map(|p| p.name.as_str()), None);
}

#[test]
fn errors_name_the_file_the_line_and_the_problem() {
    let profile = |kernel: &str, cmdline: &str| {
        format!("[[profile]]\nname = \"P\"\nkernel = \"{kernel}\"\ninitrd = []\ncmdline = \"{cmdline}\"\n")
    };
    let second =
        |text: String| format!("[[profile]]\nname = \"ok\"\nkernel = \"http://h/k\"\n\n{text}");
    let cases = [
        (
            profile(
                "http://h/k",
                "quiet {mac} {token} {phone_home_url} {profile}",
            ),
            None,
        ),
        (
            second(profile("/k", "")),
            Some(("line 5", "not an absolute")),
        ),
        (
            second(profile("file:///k", "")),
            Some(("line 5", "not an absolute")),
        ),
        (profile("http:///k", ""), Some(("line 1", "no host"))),
        (
            profile("http://h/k", "a {{ .X }}"),
            Some(("line 1", "braces")),
        ),
        (
            profile("http://h/k", "a {unknown}"),
            Some(("line 1", "braces")),
        ),
        (profile("http://h/k", "a } b"), Some(("line 1", "braces"))),
        (profile("http://h/k", "a\\nb"), Some(("line 1", "newline"))),
        (
            "".to_string(),
            Some(("test-profiles.toml", "no [[profile]]")),
        ),
        (
            "[[profile]]\nname = \"P\"\n".to_string(),
            Some(("line 1", "kernel")),
        ),
        (
            format!(
                "{}[profile.match]\ncpu_vendor = \"arm\"\n",
                profile("http://h/k", "")
            ),
            Some(("line 7", "arm")),
        ),
        (
            format!("{}bogus = 1\n", profile("http://h/k", "")),
            Some(("line 6", "bogus")),
        ),
        (
            format!(
                "{}[profile.match]\ntags = {{ \"bad key\" = \"x\" }}\n",
                profile("http://h/k", "")
            ),
            Some(("line 1", "tag key")),
        ),
        (
            format!("{}{}", profile("http://h/k", ""), profile("http://h/k", "")),
            Some(("line 6", "defined twice (first on line 1)")),
        ),
    ];
    for (text, expected) in cases {
        match (parse(&text), expected) {
            (Ok(_), None) => {}
            (Err(message), Some((line, fragment))) => {
                assert!(message.contains("test-profiles.toml"), "{message}");
                assert!(message.contains(line), "{message:?} lacks {line:?}");
                assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
            }
            (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
        }
    }
    let missing = Profiles::load(Path::new("/nonexistent/boot-profiles.toml")).unwrap_err();
    assert!(crate::error_chain(&missing).contains("/nonexistent/boot-profiles.toml"));
}

#[test]
fn every_selector_must_hold_and_priority_wins() {
    let text = r#"
        [[profile]]
        name = "fallback"
        kernel = "https://h/any"

        [[profile]]
        name = "storage"
        priority = 10
        kernel = "https://h/storage"
        [profile.match]
        cpu_vendor = "intel"
        cpu_model = "*xeon*gold*"
        min_cpus = 2
        min_cores = 32
        max_cores = 64
        min_memory_gib = 64
        max_memory_gib = 512
        min_memory_mib = 65536
        min_host_nics = 1
        min_nic_speed_mbps = 25000
        min_drives = 2
        max_drives = 24
        min_drive_gb = 4000
        drive_media = "hdd"
        max_gpus = 0
        manufacturer = "dell*"
        model = "*R640"
        system_model_contains = "poweredge"
        tags = { role = "storage" }

        [[profile]]
        name = "gpu"
        priority = 5
        kernel = "https://h/gpu"
        [profile.match]
        min_gpus = 1
    "#;
    let profiles = parse(text).unwrap();
    let tags = BTreeMap::from([("role".to_string(), "storage".to_string())]);
    let good = machine(
        "Intel(R) Xeon(R) Gold 6130",
        32,
        64,
        &[(8000, "HDD"), (480, "SSD")],
    );
    let chosen = |inventory: &Inventory, tags: &BTreeMap<String, String>| {
        profiles
            .choose(&MachineFacts::of(inventory, tags))
            .map(|p| p.name.clone())
    };
    assert_eq!(chosen(&good, &tags).as_deref(), Some("storage"));
    // Each selector alone turns the match off.
    let misses: Vec<(&str, Inventory, BTreeMap<String, String>)> = vec![
        ("no tag", good.clone(), BTreeMap::new()),
        (
            "cpu model",
            machine("Intel Xeon Silver", 32, 64, &[(8000, "HDD"), (480, "SSD")]),
            tags.clone(),
        ),
        (
            "few cores",
            machine("Intel Xeon Gold", 16, 64, &[(8000, "HDD"), (480, "SSD")]),
            tags.clone(),
        ),
        (
            "many cores",
            machine("Intel Xeon Gold", 128, 64, &[(8000, "HDD"), (480, "SSD")]),
            tags.clone(),
        ),
        (
            "memory",
            machine("Intel Xeon Gold", 32, 32, &[(8000, "HDD"), (480, "SSD")]),
            tags.clone(),
        ),
        (
            "one drive",
            machine("Intel Xeon Gold", 32, 64, &[(8000, "HDD")]),
            tags.clone(),
        ),
        (
            "small drives",
            machine("Intel Xeon Gold", 32, 64, &[(2000, "HDD"), (480, "HDD")]),
            tags.clone(),
        ),
        (
            "no HDD",
            machine("Intel Xeon Gold", 32, 64, &[(8000, "SSD"), (480, "SSD")]),
            tags.clone(),
        ),
        (
            "AMD",
            machine("AMD EPYC Gold", 32, 64, &[(8000, "HDD"), (480, "SSD")]),
            tags.clone(),
        ),
    ];
    for (what, inventory, tags) in &misses {
        assert_eq!(
            chosen(inventory, tags).as_deref(),
            Some("fallback"),
            "{what}"
        );
    }
    let mut slow = good.clone();
    slow.systems[0].ethernet_interfaces[0].speed_mbps = Some(10_000);
    assert_eq!(chosen(&slow, &tags).as_deref(), Some("fallback"));
    let mut other_vendor = good.clone();
    other_vendor.systems[0].manufacturer = Some("HPE".to_string());
    assert_eq!(chosen(&other_vendor, &tags).as_deref(), Some("fallback"));
    // A GPU (as a PCIe display controller) takes "gpu" over the fallback, and rules out
    // "storage" (max_gpus = 0).
    let mut gpu = good.clone();
    gpu.chassis.push(ChassisInventory {
        id: "1".to_string(),
        pcie_devices: vec![PcieDevice {
            id: "GPU0".to_string(),
            functions: vec![PcieFunction {
                id: "0".to_string(),
                device_class: Some("DisplayController".to_string()),
                ..PcieFunction::default()
            }],
            ..PcieDevice::default()
        }],
        ..ChassisInventory::default()
    });
    assert_eq!(MachineFacts::of(&gpu, &tags).gpus, 1);
    assert_eq!(chosen(&gpu, &tags).as_deref(), Some("gpu"));
}

#[test]
fn equal_priorities_go_by_file_order() {
    let profiles = parse(
        "[[profile]]\nname = \"a\"\nkernel = \"http://h/a\"\n[[profile]]\nname = \"b\"\nkernel = \"http://h/b\"\n",
    )
    .unwrap();
    let facts = MachineFacts::default();
    assert_eq!(profiles.choose(&facts).map(|p| p.name.as_str()), Some("a"));
    assert_eq!(profiles.get("b").map(|p| p.line), Some(4));
}

#[test]
fn render_fills_every_placeholder_and_nothing_else() {
    let bmc = Mac::parse_device("aa:bb:cc:00:00:01").unwrap();
    let values = CmdlineValues {
        machine_id: MachineId::from_bmc_mac(&bmc),
        bmc_mac: bmc,
        mac: Mac::parse_device("52:54:00:12:34:56").unwrap(),
        profile: "G1",
        token: "abc123",
        phone_home_url: "http://boot:8081/v1/machines/x/installed",
    };
    let out = render_cmdline(
        "m={machine_id} b={bmc_mac} n={mac} p={profile} t={token} u={phone_home_url} {mac}",
        &values,
    );
    assert_eq!(
        out,
        format!(
            "m={} b=aa:bb:cc:00:00:01 n=52:54:00:12:34:56 p=G1 t=abc123 u=http://boot:8081/v1/machines/x/installed 52:54:00:12:34:56",
            values.machine_id
        )
    );
}

#[test]
fn one_wipe_profile_is_marked_and_never_chosen_for_installs() {
    let shipped = parse(SHIPPED).unwrap();
    let wipe = shipped.wipe().expect("the shipped file has a wipe profile");
    assert_eq!(wipe.purpose, crate::events::Purpose::Wipe);
    assert!(wipe.cmdline.contains("{token}") && wipe.cmdline.contains("{phone_home_url}"));
    assert!(shipped.install().all(|p| p.name != wipe.name));
    assert_eq!(shipped.install().count(), 2);

    // A wipe profile without selectors matches every machine, yet selectors never take it.
    let text = "[[profile]]\nname = \"WIPE\"\npurpose = \"wipe\"\nkernel = \"http://h/w\"\n\
                [[profile]]\nname = \"only-amd\"\nkernel = \"http://h/a\"\n\
                [profile.match]\ncpu_vendor = \"amd\"\n";
    let profiles = parse(text).unwrap();
    assert_eq!(profiles.wipe().map(|p| p.name.as_str()), Some("WIPE"));
    assert_eq!(profiles.choose(&MachineFacts::default()), None);
    assert_eq!(
        profiles.get("WIPE").map(|p| p.purpose),
        Some(crate::events::Purpose::Wipe)
    );
    // No wipe profile at all is fine; install is the default purpose.
    let plain = parse("[[profile]]\nname = \"a\"\nkernel = \"http://h/a\"\n").unwrap();
    assert!(plain.wipe().is_none());

    let wipe_profile = |name: &str| {
        format!("[[profile]]\nname = \"{name}\"\npurpose = \"wipe\"\nkernel = \"http://h/w\"\n")
    };
    let cases = [
        (
            format!("{}{}", wipe_profile("W1"), wipe_profile("W2")),
            "line 5",
            "second wipe profile (the first is on line 1)",
        ),
        (
            format!(
                "{}[profile.match]\ncpu_vendor = \"intel\"\n",
                wipe_profile("W")
            ),
            "line 1",
            "a wipe profile has no [profile.match]",
        ),
        (
            format!("{}priority = 5\n", wipe_profile("W")),
            "line 1",
            "a wipe profile has no priority",
        ),
        (
            "[[profile]]\nname = \"W\"\npurpose = \"erase\"\nkernel = \"http://h/w\"\n".to_string(),
            "line 3",
            "erase",
        ),
    ];
    for (text, line, fragment) in cases {
        let message = parse(&text).unwrap_err();
        assert!(message.contains("test-profiles.toml"), "{message}");
        assert!(message.contains(line), "{message:?} lacks {line:?}");
        assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
    }
}
