//! Tags, boot profiles and provisioning end to end: real nats-server, every responder,
//! sushy-tools emulating an Intel and an AMD server, and metal-cli as the real binary.

mod common;

use std::time::Duration;

use common::{printed, stderr, stdout, System, E2E_TOKEN_KEY};
use metal_core::query::{MachineState, UnknownMacs};
use metal_core::{subjects, Mac, MachineId};
use test_harness::sushy::{SushyDrive, SushyEmulator, SushySystem};

fn server(name: &str, uuid: &str, vendor: &str, model: &str, nics: &[&str]) -> SushySystem {
    SushySystem {
        name: name.into(),
        uuid: uuid.into(),
        cpu_vendor: vendor.into(),
        cpu_model: model.into(),
        sockets: 1,
        cores: 4,
        threads: 1,
        memory_gib: 32,
        nic_macs: nics.iter().map(|m| m.to_string()).collect(),
        drives: vec![SushyDrive {
            id: "disk0".into(),
            capacity_bytes: 480_103_981_056,
            protocol: "SATA".into(),
        }],
    }
}

/// The dry-run line of `profiles check` for one BMC MAC.
fn dry_run_line<'a>(text: &'a str, bmc: &Mac) -> &'a str {
    text.lines()
        .find(|line| line.contains(&bmc.to_string()))
        .unwrap_or_else(|| panic!("profiles check does not list {bmc}:\n{text}"))
}

fn is_ansible_group_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[test]
fn profiles_check_names_the_broken_line_without_nats() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("boot-profiles.toml");
    std::fs::write(
        &broken,
        "[[profile]]\nname = \"G1\"\nkernel = \"http://boot.example/g1/vmlinuz\"\n\n\
         [[profile]]\nname = \"G2\"\nkernel = \"file:///srv/g2/vmlinuz\"\n",
    )
    .unwrap();
    // Port 1 on loopback: nothing listens, so NATS could not have been asked.
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_metal-cli"))
            .args(args)
            .env_remove("METAL_CONFIG")
            .env("NATS_URL", "nats://127.0.0.1:1")
            .output()
            .unwrap()
    };
    let output = run(&["profiles", "check", broken.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", printed(&output));
    assert!(
        stderr(&output).contains("line 5") && stderr(&output).contains("kernel"),
        "the error names the line and the field: {}",
        printed(&output)
    );
    assert!(
        !printed(&output).contains("NATS"),
        "an invalid file is reported without trying NATS: {}",
        printed(&output)
    );
    // A TOML syntax error names its line too.
    std::fs::write(&broken, "[[profile]]\nname = \"G1\"\nkernel = [\n").unwrap();
    let output = run(&["profiles", "check", broken.to_str().unwrap(), "--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", printed(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert!(
        report["error"].as_str().unwrap().contains("line 3"),
        "{report}"
    );

    // The shipped file is valid; without NATS the dry run is skipped, and that is no failure.
    let shipped = test_harness::paths::workspace_root().join("profiles/boot-profiles.toml");
    let output = run(&["profiles", "check", shipped.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    assert!(
        stdout(&output).contains("valid, 2 profile(s)")
            && stdout(&output).contains("the dry run")
            && stdout(&output).contains("needs NATS"),
        "{}",
        printed(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tags_profiles_provisioning_unknown_macs_and_the_ansible_inventory() {
    let intel = SushyEmulator::start(&[server(
        "prov-intel",
        "6a0e4f3a-3c1e-4b9a-9d55-1d2f7a6b0c11",
        "Intel",
        "Skylake-Server",
        &["52:54:00:bb:10:01", "52:54:00:bb:10:02"],
    )]);
    let amd = SushyEmulator::start(&[server(
        "prov-amd",
        "6a0e4f3a-3c1e-4b9a-9d55-1d2f7a6b0c12",
        "AMD",
        "EPYC-Rome",
        &["52:54:00:bb:20:01"],
    )]);
    let intel_bmc = Mac::parse_device("02:4d:00:00:11:01").unwrap();
    let amd_bmc = Mac::parse_device("02:4d:00:00:21:01").unwrap();
    let system = System::start(vec![
        (intel_bmc, intel.base_url()),
        (amd_bmc, amd.base_url()),
    ])
    .await;
    for bmc in [intel_bmc, amd_bmc] {
        let output = system
            .cli_async(&["onboard", &bmc.to_string(), "--timeout", "120"])
            .await;
        assert!(
            output.status.success(),
            "onboard {bmc}: {}",
            printed(&output)
        );
    }
    let intel_id = MachineId::from_bmc_mac(&intel_bmc).to_string();
    let amd_id = MachineId::from_bmc_mac(&amd_bmc).to_string();

    // --- tag: set, show lists it, remove; an unknown machine is refused.
    let output = system
        .cli_async(&["tag", &intel_bmc.to_string(), "role=storage", "rack=r 12"])
        .await;
    assert!(output.status.success(), "{}", printed(&output));
    assert!(
        stdout(&output).contains(r#"rack="r 12" role=storage"#),
        "{}",
        printed(&output)
    );
    let output = system
        .cli_async(&["tag", "52:54:00:bb:10:02", "--remove", "rack"])
        .await;
    assert!(
        output.status.success(),
        "tag by host NIC MAC: {}",
        printed(&output)
    );
    let shown = system.cli_async(&["show", &intel_bmc.to_string()]).await;
    assert!(
        stdout(&shown).contains("tags       role=storage\n"),
        "{}",
        printed(&shown)
    );
    assert_eq!(
        system.show(&intel_id).await.tags,
        [("role".to_string(), "storage".to_string())].into()
    );
    let output = system
        .cli_async(&["tag", "02:4d:00:00:99:99", "role=storage"])
        .await;
    assert_eq!(output.status.code(), Some(1), "{}", printed(&output));
    assert!(
        stderr(&output).contains("no machine has this MAC"),
        "{}",
        printed(&output)
    );

    // --- profiles check: the shipped file (the config's boot_api.profiles, as boot-api has
    // it here) takes G1 for Intel, G2 for AMD...
    let config = system.path("metal.toml");
    std::fs::write(
        &config,
        format!(
            "[boot_api]\nprofiles = {:?}\n",
            system.config.boot_api.profiles.display().to_string()
        ),
    )
    .unwrap();
    let output = system
        .cli_async(&["profiles", "check", "--config", config.to_str().unwrap()])
        .await;
    assert!(output.status.success(), "{}", printed(&output));
    let text = stdout(&output);
    assert!(dry_run_line(&text, &intel_bmc).contains("G1"), "{text}");
    assert!(dry_run_line(&text, &amd_bmc).contains("G2"), "{text}");
    assert!(text.contains("2 machine(s) with an inventory"), "{text}");
    // ...and a file with a tag selector takes the tagged machine elsewhere.
    let tagged = system.path("tagged-profiles.toml");
    std::fs::write(
        &tagged,
        format!(
            "{}\n[[profile]]\nname = \"STORAGE\"\npriority = 10\n\
             kernel = \"http://boot.example/storage/vmlinuz\"\n\
             [profile.match]\ntags = {{ role = \"storage\" }}\n",
            std::fs::read_to_string(&system.config.boot_api.profiles).unwrap()
        ),
    )
    .unwrap();
    let output = system
        .cli_async(&["profiles", "check", tagged.to_str().unwrap(), "--json"])
        .await;
    assert!(output.status.success(), "{}", printed(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let would_take = |id: &str| {
        report["dry_run"]["machines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["machine_id"] == id)
            .unwrap_or_else(|| panic!("{id} not in {report}"))["would_take"]
            .clone()
    };
    assert_eq!(would_take(&intel_id), "STORAGE");
    assert_eq!(would_take(&amd_id), "G2");

    // --- provision refusals: nothing is published, nothing is armed.
    let output = system
        .cli_async(&["onboard", "02:4d:00:00:31:01", "--no-wait"])
        .await;
    assert!(output.status.success(), "{}", printed(&output));
    let not_inventoried = system
        .cli_async(&["provision", "02:4d:00:00:31:01", "--no-power"])
        .await;
    assert_eq!(
        not_inventoried.status.code(),
        Some(1),
        "{}",
        printed(&not_inventoried)
    );
    assert!(
        stderr(&not_inventoried).contains("without an inventory"),
        "{}",
        printed(&not_inventoried)
    );
    let never_onboarded = system
        .cli_async(&["provision", "02:4d:00:00:99:98", "--no-power"])
        .await;
    assert_eq!(
        never_onboarded.status.code(),
        Some(1),
        "{}",
        printed(&never_onboarded)
    );
    assert!(
        stderr(&never_onboarded).contains("no machine has this MAC"),
        "{}",
        printed(&never_onboarded)
    );
    // A machine without a Redfish URL cannot be powered either.
    let output = system
        .cli_async(&["power", "02:4d:00:00:31:01", "status"])
        .await;
    assert_eq!(output.status.code(), Some(1), "{}", printed(&output));
    assert!(
        stderr(&output).contains("no Redfish URL"),
        "{}",
        printed(&output)
    );
    // boot-api refuses a profile it does not have.
    let output = system
        .cli_async(&[
            "provision",
            &amd_bmc.to_string(),
            "--profile",
            "NOPE",
            "--no-power",
        ])
        .await;
    assert_eq!(output.status.code(), Some(1), "{}", printed(&output));
    assert!(
        stderr(&output).contains("unknown profile"),
        "{}",
        printed(&output)
    );
    let amd_detail = system.show(&amd_id).await;
    assert_eq!(amd_detail.machine.state, MachineState::Inventoried);
    assert_eq!(amd_detail.provisioning, None);
    system.boot_refused("52:54:00:bb:20:01", "not armed").await;
    let events = test_harness::stream::read_events(&system.client).await;
    let requested: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == subjects::PROVISION_REQUESTED)
        .collect();
    assert_eq!(
        requested.len(),
        1,
        "only the NOPE request was published: {requested:?}"
    );
    assert_eq!(requested[0].bmc_mac, Some(amd_bmc));
    assert!(events
        .iter()
        .any(|e| e.event_type == subjects::PROVISION_FAILED
            && e.correlation_id == requested[0].event_id));

    // --- provision --no-power arms: boot-api answers with the token in the cmdline.
    system.boot_refused("52:54:00:bb:10:01", "not armed").await;
    let output = system
        .cli_async(&[
            "provision",
            &intel_bmc.to_string(),
            "--no-power",
            "--timeout",
            "60",
        ])
        .await;
    assert!(output.status.success(), "{}", printed(&output));
    assert!(
        stdout(&output).contains("assigned   profile G1"),
        "{}",
        printed(&output)
    );
    assert!(
        stdout(&output).contains("phones home when installed"),
        "{}",
        printed(&output)
    );
    let armed = system.show(&intel_id).await;
    assert_eq!(armed.machine.state, MachineState::Provisioning);
    let provisioning = armed.provisioning.clone().expect("provisioning");
    assert_eq!(&*provisioning.profile, "G1");
    let spec = system.boot("52:54:00:bb:10:01", 200).await;
    let key = boot_api::TokenKey::new("test", E2E_TOKEN_KEY.as_bytes().to_vec()).unwrap();
    let token = key.token(armed.machine.machine_id, provisioning.provision_id);
    let cmdline = spec["cmdline"].as_str().unwrap();
    assert!(
        cmdline.contains(&format!("metal.token={token}")),
        "{cmdline}"
    );
    assert!(
        cmdline.contains(&format!(
            "metal.phone_home={}/v1/machines/{intel_id}/installed",
            system.boot_url
        )),
        "{cmdline}"
    );
    assert!(cmdline.contains("BOOTIF=52:54:00:bb:10:01"), "{cmdline}");
    // show renders the provisioning.
    let shown = system.cli_async(&["show", &intel_bmc.to_string()]).await;
    assert!(
        stdout(&shown).contains("profile    G1 since "),
        "{}",
        printed(&shown)
    );

    // --- a MAC nobody has asks Pixiecore to netboot: `metal-cli unknown` lists it.
    let output = system.cli_async(&["unknown"]).await;
    assert!(output.status.success(), "{}", printed(&output));
    assert!(
        stdout(&output).starts_with("no unknown MACs"),
        "{}",
        printed(&output)
    );
    system
        .boot_refused("02%3A00%3A00%3A00%3A00%3A77", "unknown MAC")
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let output = system.cli_async(&["unknown", "--json"]).await;
        assert!(output.status.success(), "{}", printed(&output));
        let reply: UnknownMacs = serde_json::from_slice(&output.stdout).unwrap();
        if !reply.macs.is_empty() {
            break reply;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the unknown MAC never showed up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(listed.macs.len(), 1, "{listed:?}");
    assert_eq!(listed.macs[0].mac.to_string(), "02:00:00:00:00:77");
    assert_eq!(listed.macs[0].events, 1);
    let output = system.cli_async(&["unknown"]).await;
    assert!(
        stdout(&output).contains("02:00:00:00:00:77")
            && stdout(&output).contains(&listed.macs[0].last_reason),
        "{}",
        printed(&output)
    );

    // --- the Ansible dynamic inventory.
    let output = system
        .cli_async(&["inventory", "--ansible", "--list"])
        .await;
    assert!(output.status.success(), "{}", printed(&output));
    let inventory: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&output)));
    let hostvars = &inventory["_meta"]["hostvars"];
    let intel_vars = &hostvars[&intel_id];
    assert_eq!(intel_vars["metal_bmc_mac"], intel_bmc.to_string());
    assert_eq!(intel_vars["metal_profile"], "G1");
    assert_eq!(
        intel_vars["metal_tags"],
        serde_json::json!({"role": "storage"})
    );
    assert_eq!(intel_vars["metal_cpu_model"], "Skylake-Server");
    assert_eq!(intel_vars["metal_memory_mib"], 32 * 1024);
    assert_eq!(intel_vars["metal_drive_count"], 1);
    assert_eq!(
        intel_vars["metal_host_nic_macs"],
        serde_json::json!(["52:54:00:bb:10:01", "52:54:00:bb:10:02"])
    );
    assert!(intel_vars["metal_redfish_url"]
        .as_str()
        .unwrap()
        .starts_with("http"));
    assert!(intel_vars["metal_cpu_count"].as_u64().unwrap() > 0);
    for key in [
        "metal_bmc_ip",
        "metal_state",
        "metal_system_model",
        "metal_system_manufacturer",
        "metal_system_serial",
    ] {
        assert!(intel_vars.get(key).is_some(), "no {key}: {intel_vars}");
    }
    let amd_vars = &hostvars[&amd_id];
    assert_eq!(amd_vars["metal_state"], "inventoried");
    assert_eq!(amd_vars["metal_profile"], serde_json::Value::Null);
    let hosts = |group: &str| -> Vec<String> {
        serde_json::from_value(inventory[group]["hosts"].clone())
            .unwrap_or_else(|_| panic!("no group {group}: {inventory}"))
    };
    assert_eq!(hosts("profile_G1"), vec![intel_id.clone()]);
    // The Pixiecore request above moved it from provisioning to booting; either way its
    // state group is the one its variables name.
    let intel_state = intel_vars["metal_state"].as_str().unwrap();
    assert!(
        ["provisioning", "booting"].contains(&intel_state),
        "{intel_state}"
    );
    assert!(hosts(&format!("state_{intel_state}")).contains(&intel_id));
    assert!(hosts("state_inventoried").contains(&amd_id));
    let children: Vec<String> =
        serde_json::from_value(inventory["all"]["children"].clone()).unwrap();
    for group in inventory.as_object().unwrap().keys() {
        if group == "_meta" || group == "all" {
            continue;
        }
        assert!(is_ansible_group_name(group), "{group}");
        assert!(children.contains(group), "all.children lacks {group}");
    }
    assert!(children.contains(&"profile_G1".to_string()));
    // --host prints one host's variables, {} for an unknown host.
    let output = system
        .cli_async(&["inventory", "--ansible", "--host", &intel_id])
        .await;
    let one: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(one["metal_bmc_mac"], intel_bmc.to_string());
    let output = system
        .cli_async(&["inventory", "--ansible", "--host", "nope"])
        .await;
    assert_eq!(stdout(&output).trim(), "{}");

    // Every event of all of this matches its schema (read_events validates).
    let events = test_harness::stream::read_events(&system.client).await;
    for event_type in [
        subjects::TAGS_CHANGED,
        subjects::PROVISION_REQUESTED,
        subjects::PROFILE_ASSIGNED,
        subjects::BOOT_UNKNOWN,
    ] {
        assert!(
            events.iter().any(|e| e.event_type == event_type),
            "no {event_type}"
        );
    }
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provisioning_with_power_pxe_boots_through_the_bmc_and_a_dead_bmc_disarms() {
    let mut sushy = SushyEmulator::start(&[server(
        "prov-power",
        "6a0e4f3a-3c1e-4b9a-9d55-1d2f7a6b0c31",
        "Intel",
        "Skylake-Server",
        &["52:54:00:bb:30:01"],
    )]);
    let bmc = Mac::parse_device("02:4d:00:00:13:01").unwrap();
    let system = System::start(vec![(bmc, sushy.base_url())]).await;
    let output = system
        .cli_async(&["onboard", &bmc.to_string(), "--timeout", "120"])
        .await;
    assert!(output.status.success(), "onboard: {}", printed(&output));

    // An operator's power request is answered by the BMC.
    let output = system
        .cli_async(&["power", &bmc.to_string(), "status"])
        .await;
    assert!(output.status.success(), "{}", printed(&output));
    assert_eq!(stdout(&output).trim(), format!("{bmc}: power On"));

    // Provisioning with power: armed, then the one-time PXE override and the reset, each a
    // step of its own; it ends once the reset is done.
    let output = system
        .cli_async(&["provision", &bmc.to_string(), "--timeout", "120"])
        .await;
    assert!(output.status.success(), "{}", printed(&output));
    let text = stdout(&output);
    let steps: Vec<&str> = text
        .lines()
        .map(|line| line.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(
        steps,
        ["assigned", "boot", "reset", "next"],
        "{}",
        printed(&output)
    );
    assert!(
        stdout(&output).contains("is PXE-booting"),
        "{}",
        printed(&output)
    );
    let armed = system.show(&bmc.to_string()).await;
    let provision_id = armed.provisioning.expect("provisioning").provision_id;
    assert!(armed.machine.state.is_armed(), "{:?}", armed.machine.state);
    system.boot("52:54:00:bb:30:01", 200).await;
    let events = test_harness::stream::read_events(&system.client).await;
    let power_steps: Vec<String> = events
        .iter()
        .filter(|e| e.event_type == subjects::POWER_DONE && e.correlation_id == provision_id)
        .map(|e| e.data["step"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(power_steps, ["boot_override", "reset"]);

    // The BMC goes away: provisioning again fails at the BMC, exits 1 with the reason, and
    // leaves the machine disarmed (boot-api no longer netboots it).
    sushy.stop();
    let output = system
        .cli_async(&["provision", &bmc.to_string(), "--timeout", "120"])
        .await;
    assert_eq!(output.status.code(), Some(1), "{}", printed(&output));
    assert!(
        stdout(&output).contains("assigned   profile G1"),
        "{}",
        printed(&output)
    );
    assert!(
        stderr(&output).contains("failed     BMC boot_override")
            && stderr(&output).contains("disarmed"),
        "{}",
        printed(&output)
    );
    let failed = system.show(&bmc.to_string()).await;
    assert_eq!(failed.machine.state, MachineState::ProvisionFailed);
    system.boot_refused("52:54:00:bb:30:01", "not armed").await;
    system.stop().await;
}

/// The issue's whole provisioning workflow on sushy-tools' fake driver (no libvirt) behind
/// basic auth: onboard, provision with power, the emulator shows the PXE override and the
/// power-on, a Pixiecore-style request for the host NIC gets kernel, initrd and a cmdline
/// carrying the install token, the phone-home disarms the machine (the next boot request is
/// a 404, the old token a 401), and a replay rebuilds the same projection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn onboard_provision_netboot_phone_home_and_replay_on_sushys_fake_driver() {
    use test_harness::sushy::SushyFakeSystem;
    const UUID: &str = "7d2e4c1a-0b6f-4e59-9a51-3c8d2f1e0a77";
    const HOST: &str = "52:54:00:7e:20:01";
    const PASSWORD: &str = "e2e-secret-value";
    let sushy = SushyEmulator::start_fake(
        &[SushyFakeSystem {
            name: "fake-node".to_string(),
            uuid: UUID.to_string(),
            power_state: "Off".to_string(),
            nic_macs: vec![HOST.to_string()],
            drives: Vec::new(),
        }],
        Some(("root", PASSWORD)),
    );
    let system_path = format!("/redfish/v1/Systems/{UUID}");
    let bmc = Mac::parse_device("aa:bb:cc:7e:20:01").unwrap();
    let system = System::start(vec![(bmc, sushy.base_url())]).await;
    let output = system
        .cli_async(&["onboard", &bmc.to_string(), "--timeout", "120"])
        .await;
    assert!(
        output.status.success(),
        "onboard: {}\n{}",
        printed(&output),
        sushy.log()
    );
    system.boot_refused(HOST, "not armed").await;
    let before = sushy.get_json(&system_path).await;
    assert_eq!(before["PowerState"], "Off");
    assert_ne!(before["Boot"]["BootSourceOverrideTarget"], "Pxe");

    // Provision with power (sushy's fake CPUs name no vendor, so the profile is named).
    let output = system
        .cli_async(&[
            "provision",
            &bmc.to_string(),
            "--profile",
            "G1",
            "--timeout",
            "120",
        ])
        .await;
    assert!(output.status.success(), "provision: {}", printed(&output));
    let armed = system.show(&bmc.to_string()).await;
    let provisioning = armed.provisioning.clone().expect("provisioning");
    assert_eq!(&*provisioning.profile, "G1");
    assert!(armed.machine.state.is_armed());
    // The emulator reports the boot target Pxe and, once its power change lands, On.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let after = loop {
        let now = sushy.get_json(&system_path).await;
        if now["PowerState"] == "On" || tokio::time::Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        after["Boot"]["BootSourceOverrideTarget"], "Pxe",
        "{after:#}"
    );
    assert_eq!(after["PowerState"], "On", "{after:#}");
    let events = test_harness::stream::read_events(&system.client).await;
    let steps: Vec<(String, String)> = events
        .iter()
        .filter(|e| {
            e.event_type == subjects::POWER_DONE && e.correlation_id == provisioning.provision_id
        })
        .map(|e| {
            (
                e.data["step"].as_str().unwrap_or_default().to_string(),
                e.data["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert_eq!(steps[0].0, "boot_override");
    assert!(steps[0].1.starts_with("Pxe Once"), "{steps:?}");
    assert_eq!(
        steps[1],
        ("reset".to_string(), "On".to_string()),
        "off, so On"
    );

    // Pixiecore asks for the host NIC, five times in one boot: one stable answer.
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(system.boot(HOST, 200).await);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    let spec = &answers[0];
    assert_eq!(
        spec["kernel"],
        "http://boot.example.internal/images/g1/vmlinuz"
    );
    assert_eq!(
        spec["initrd"],
        serde_json::json!(["http://boot.example.internal/images/g1/initrd.img"])
    );
    let cmdline = spec["cmdline"].as_str().unwrap();
    let machine_id = MachineId::from_bmc_mac(&bmc);
    let key = boot_api::TokenKey::new("test", E2E_TOKEN_KEY.as_bytes().to_vec()).unwrap();
    let token = key.token(machine_id, provisioning.provision_id);
    assert!(
        cmdline.contains(&format!("metal.token={token}")),
        "{cmdline}"
    );
    let phone_home = cmdline
        .split_whitespace()
        .find_map(|word| word.strip_prefix("metal.phone_home="))
        .expect("phone-home URL in the cmdline")
        .to_string();
    assert_eq!(
        phone_home,
        format!("{}/v1/machines/{machine_id}/installed", system.boot_url)
    );

    // The installer phones home; from then on the machine is not netbooted.
    let client = reqwest::Client::new();
    let response = client
        .post(&phone_home)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "{}",
        response.text().await.unwrap_or_default()
    );
    system.boot_refused(HOST, "not armed").await;
    let installed = system.show(&bmc.to_string()).await;
    assert_eq!(installed.machine.state, MachineState::Installed);
    // The same token again (a replay) is refused, and nothing changes.
    let again = client
        .post(&phone_home)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 401);
    let events = test_harness::stream::read_events(&system.client).await;
    let count = |t: &str| events.iter().filter(|e| e.event_type == t).count();
    assert_eq!(count(subjects::INSTALL_COMPLETED), 1);
    assert_eq!(
        count(subjects::BOOT_SERVED),
        1,
        "five calls of one boot, one event"
    );
    assert!(count(subjects::INSTALL_REJECTED) >= 1);
    let stored = format!("{events:?}");
    assert!(!stored.contains(&token), "the token is never stored");
    assert!(
        !stored.contains(PASSWORD),
        "the BMC password is never stored"
    );
    assert_eq!(
        system.show(&bmc.to_string()).await.machine.state,
        MachineState::Installed
    );

    // Replay gives the same projection.
    let before = system.path("before.jsonl");
    let after = system.path("after.jsonl");
    for (args, what) in [
        (vec!["export", "-o", before.to_str().unwrap()], "export"),
        (vec!["replay"], "replay"),
        (vec!["export", "-o", after.to_str().unwrap()], "export"),
    ] {
        let output = system.cli_async(&args).await;
        assert!(output.status.success(), "{what}: {}", printed(&output));
    }
    let (before, after) = (
        std::fs::read(before).unwrap(),
        std::fs::read(after).unwrap(),
    );
    assert!(!before.is_empty());
    assert!(before == after, "replay changed the projection");
    system.stop().await;
}
