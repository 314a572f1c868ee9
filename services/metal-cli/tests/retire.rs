//! Reprovisioning and retirement end to end on the netboot path: real nats-server, every
//! responder in-process, sushy-tools' fake driver behind basic auth as the BMCs, metal-cli
//! as the real binary, and boot-api asked like Pixiecore asks it.

mod common;

use std::time::Duration;

use common::{
    cmdline_value, export_replay_export, install_token, phone_home, printed, stderr, stdout,
    wait_system, System,
};
use metal_core::events::Purpose;
use metal_core::query::{MachineDetail, MachineList, MachineState};
use metal_core::{subjects, Mac, MachineId};
use test_harness::sushy::{SushyEmulator, SushyFakeSystem};

const PASSWORD: &str = "e2e-secret-value";

fn fake(name: &str, uuid: &str, power_state: &str, nic: &str) -> SushyEmulator {
    SushyEmulator::start_fake(
        &[SushyFakeSystem {
            name: name.to_string(),
            uuid: uuid.to_string(),
            power_state: power_state.to_string(),
            nic_macs: vec![nic.to_string()],
            drives: Vec::new(),
        }],
        Some(("root", PASSWORD)),
    )
}

/// Polls `show` until the machine is in `state`.
async fn wait_state(system: &System, machine: &str, state: MachineState) -> MachineDetail {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let shown = system.show(machine).await;
        if shown.machine.state == state {
            return shown;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{machine} never became {}: {:?} ({:?})",
            state.as_str(),
            shown.machine.state,
            shown.machine.state_reason
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// The first word of each stdout line: the steps a command printed.
fn steps(output: &std::process::Output) -> Vec<String> {
    stdout(output)
        .lines()
        .map(|line| line.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

/// Provisions (with power, profile G1) and returns the provisioning id and the token and
/// phone-home URL boot-api renders into the cmdline for `host`.
async fn provision(system: &System, bmc: &Mac, host: &str) -> (uuid::Uuid, String, String) {
    let output = system
        .cli_async(&[
            "provision",
            &bmc.to_string(),
            "--profile",
            "G1",
            "--timeout",
            "60",
        ])
        .await;
    assert!(output.status.success(), "provision: {}", printed(&output));
    let armed = system.show(&bmc.to_string()).await;
    let provisioning = armed.provisioning.expect("provisioning");
    assert_eq!(provisioning.purpose, Purpose::Install);
    let spec = system.boot(host, 200).await;
    let cmdline = spec["cmdline"].as_str().unwrap().to_string();
    let token = cmdline_value(&cmdline, "metal.token").expect("token in the cmdline");
    assert_eq!(
        token,
        install_token(armed.machine.machine_id, provisioning.provision_id)
    );
    let url = cmdline_value(&cmdline, "metal.phone_home").expect("phone-home URL");
    (provisioning.provision_id, token, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reprovision_then_retire_with_a_wipe_and_without_on_sushys_fake_driver() {
    const UUID_A: &str = "8e3f5d2b-1c70-4f6a-8b62-4d9e3f2a1b01";
    const HOST_A: &str = "52:54:00:8e:30:01";
    const UUID_B: &str = "8e3f5d2b-1c70-4f6a-8b62-4d9e3f2a1b02";
    const HOST_B: &str = "52:54:00:8e:30:02";
    let sushy_a = fake("retire-a", UUID_A, "Off", HOST_A);
    let sushy_b = fake("retire-b", UUID_B, "On", HOST_B);
    let path_a = format!("/redfish/v1/Systems/{UUID_A}");
    let path_b = format!("/redfish/v1/Systems/{UUID_B}");
    let bmc_a = Mac::parse_device("aa:bb:cc:8e:30:01").unwrap();
    let bmc_b = Mac::parse_device("aa:bb:cc:8e:30:02").unwrap();
    let id_a = MachineId::from_bmc_mac(&bmc_a);
    // Boot events are windowed per MAC and outcome: a window of a second lets the test see
    // the boot.ignored of the retired machine after those of the installed one.
    let system = System::start_with(
        vec![(bmc_a, sushy_a.base_url()), (bmc_b, sushy_b.base_url())],
        |config| config.boot_api.boot_event_window_secs = 1,
    )
    .await;
    let (a, b) = (
        system.cli_async(&["onboard", &bmc_a.to_string(), "--timeout", "60"]),
        system.cli_async(&["onboard", &bmc_b.to_string(), "--timeout", "60"]),
    );
    for output in [a.await, b.await] {
        assert!(
            output.status.success(),
            "onboard: {}\n{}{}",
            printed(&output),
            sushy_a.log(),
            sushy_b.log()
        );
    }

    // --- provision, netboot, phone home: installed.
    let (first_id, first_token, installed_url) = provision(&system, &bmc_a, HOST_A).await;
    assert_eq!(
        installed_url,
        format!("{}/v1/machines/{id_a}/installed", system.boot_url)
    );
    let (status, body) = phone_home(&installed_url, &first_token, true).await;
    assert_eq!(status, 200, "{body}");
    wait_state(&system, &bmc_a.to_string(), MachineState::Installed).await;
    system.boot_refused(HOST_A, "not armed").await;

    // --- reprovision the installed machine: a new provisioning id, so a new token, and the
    // old token stops working.
    let (second_id, second_token, url) = provision(&system, &bmc_a, HOST_A).await;
    assert_ne!(second_id, first_id);
    assert_ne!(second_token, first_token);
    assert_eq!(url, installed_url);
    let (status, body) = phone_home(&installed_url, &first_token, true).await;
    assert_eq!(status, 401, "the old token: {body}");
    assert!(body.contains("does not match"), "{body}");
    let events = test_harness::stream::read_events(&system.client).await;
    assert!(
        events
            .iter()
            .any(|e| e.event_type == subjects::INSTALL_REJECTED
                && e.machine_id == Some(id_a)
                && e.data["outcome"] == "installed"
                && e.data["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("does not match"))),
        "the old token's phone-home is recorded as rejected"
    );
    assert!(system
        .show(&bmc_a.to_string())
        .await
        .machine
        .state
        .is_armed());
    let (status, body) = phone_home(&installed_url, &second_token, false).await;
    assert_eq!(status, 200, "the new token: {body}");
    wait_state(&system, &bmc_a.to_string(), MachineState::Installed).await;

    // --- retire --wipe. Power the machine off and clear the override first, so what the
    // emulator shows next is the wipe's doing.
    let output = system
        .cli_async(&["power", &bmc_a.to_string(), "off", "--timeout", "60"])
        .await;
    assert!(output.status.success(), "power off: {}", printed(&output));
    let cleared = reqwest::Client::new()
        .patch(format!("{}{path_a}", sushy_a.base_url()))
        .basic_auth("root", Some(PASSWORD))
        .json(&serde_json::json!({"Boot": {"BootSourceOverrideTarget": "None"}}))
        .send()
        .await
        .unwrap();
    assert!(cleared.status().is_success(), "{}", cleared.status());
    wait_system(&sushy_a, &path_a, "Off without an override", |s| {
        s["PowerState"] == "Off" && s["Boot"]["BootSourceOverrideTarget"] != "Pxe"
    })
    .await;
    let retiring = system.cli_async(&["retire", &bmc_a.to_string(), "--wipe", "--timeout", "60"]);
    let wiping = wait_state(&system, &bmc_a.to_string(), MachineState::Wiping).await;
    let wipe = wiping.provisioning.expect("the wipe's provisioning");
    assert_eq!(wipe.purpose, Purpose::Wipe);
    assert_eq!(&*wipe.profile, "WIPE");
    let events = test_harness::stream::read_events(&system.client).await;
    let request = events
        .iter()
        .rev()
        .find(|e| e.event_type == subjects::RETIRE_REQUESTED)
        .expect("retire.requested");
    assert_eq!(
        request.event_id, wipe.provision_id,
        "the wipe's id is the retirement's"
    );
    assert_eq!(request.data["wipe"], true);
    // The emulator shows the PXE override and the power-on.
    wait_system(&sushy_a, &path_a, "Pxe and On", |s| {
        s["Boot"]["BootSourceOverrideTarget"] == "Pxe" && s["PowerState"] == "On"
    })
    .await;
    // Pixiecore gets the wipe profile, phoning home to /wiped with the wipe's token.
    let spec = system.boot(HOST_A, 200).await;
    assert_eq!(
        spec["kernel"],
        "http://boot.example.internal/images/wipe/vmlinuz"
    );
    let cmdline = spec["cmdline"].as_str().unwrap();
    let wipe_token = install_token(id_a, wipe.provision_id);
    assert_eq!(
        cmdline_value(cmdline, "metal.token").as_deref(),
        Some(wipe_token.as_str()),
        "{cmdline}"
    );
    let wiped_url = cmdline_value(cmdline, "metal.phone_home").expect("phone-home URL");
    assert_eq!(
        wiped_url,
        format!("{}/v1/machines/{id_a}/wiped", system.boot_url)
    );
    // The install's token, or the wipe's on /installed, is refused.
    let (status, body) = phone_home(&wiped_url, &second_token, true).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = phone_home(&installed_url, &wipe_token, true).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("wiping"), "{body}");
    // The wipe phones home: wiped, then powered off, then retired.
    let (status, body) = phone_home(&wiped_url, &wipe_token, false).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(subjects::WIPE_COMPLETED), "{body}");
    wait_system(&sushy_a, &path_a, "Off", |s| s["PowerState"] == "Off").await;
    let output = retiring.await;
    assert!(
        output.status.success(),
        "retire --wipe: {}",
        printed(&output)
    );
    assert_eq!(
        steps(&output),
        ["assigned", "boot", "reset", "waiting", "wiped", "reset", "retired"],
        "{}",
        printed(&output)
    );
    assert!(
        stdout(&output).contains("reset      ForceOff"),
        "{}",
        printed(&output)
    );
    let retired = wait_state(&system, &bmc_a.to_string(), MachineState::Retired).await;
    assert_eq!(retired.machine.state_reason, None);
    let (status, _) = phone_home(&wiped_url, &wipe_token, true).await;
    assert_eq!(status, 401, "a replayed wipe phone-home");

    // Never netbooted again: a 404, recorded as boot.ignored of a retired machine.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        system.boot_refused(HOST_A, "not armed").await;
        let events = test_harness::stream::read_events(&system.client).await;
        if events.iter().any(|e| {
            e.event_type == subjects::BOOT_IGNORED
                && e.machine_id == Some(id_a)
                && e.data["state"] == "retired"
        }) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no boot.ignored for the retired machine"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // provision refuses it, naming the way back.
    let output = system
        .cli_async(&["provision", &bmc_a.to_string(), "--profile", "G1"])
        .await;
    assert_eq!(output.status.code(), Some(1), "{}", printed(&output));
    assert!(
        stderr(&output).contains("onboard it anew"),
        "{}",
        printed(&output)
    );

    // --- retire without a wipe: the power-off only.
    let output = system
        .cli_async(&["retire", &bmc_b.to_string(), "--timeout", "60"])
        .await;
    assert!(output.status.success(), "retire: {}", printed(&output));
    assert_eq!(steps(&output), ["reset", "retired"], "{}", printed(&output));
    assert!(
        stdout(&output).contains("reset      ForceOff"),
        "{}",
        printed(&output)
    );
    wait_system(&sushy_b, &path_b, "Off", |s| s["PowerState"] == "Off").await;
    wait_state(&system, &bmc_b.to_string(), MachineState::Retired).await;
    system.boot_refused(HOST_B, "not armed").await;
    let events = test_harness::stream::read_events(&system.client).await;
    let retired: Vec<(Option<MachineId>, bool)> = events
        .iter()
        .filter(|e| e.event_type == subjects::RETIRED)
        .map(|e| (e.machine_id, e.data["wiped"] == true))
        .collect();
    assert_eq!(
        retired,
        [
            (Some(id_a), true),
            (Some(MachineId::from_bmc_mac(&bmc_b)), false)
        ]
    );
    assert!(
        !events
            .iter()
            .any(|e| e.event_type == subjects::PROFILE_ASSIGNED
                && e.machine_id == Some(MachineId::from_bmc_mac(&bmc_b))),
        "no wipe was armed without --wipe"
    );
    let stored = format!("{events:?}");
    for token in [&first_token, &second_token, &wipe_token] {
        assert!(!stored.contains(token.as_str()), "a token is never stored");
    }

    // --- machines hides the retired, --all shows them.
    let output = system.cli_async(&["machines", "--json"]).await;
    assert!(output.status.success(), "{}", printed(&output));
    let shown: MachineList = serde_json::from_slice(&output.stdout).unwrap();
    assert!(shown.machines.is_empty(), "{:?}", shown.machines);
    assert!(
        stderr(&output).contains("2 retired machine(s) hidden"),
        "{}",
        printed(&output)
    );
    let output = system.cli_async(&["machines", "--all"]).await;
    assert!(output.status.success(), "{}", printed(&output));
    for bmc in [bmc_a, bmc_b] {
        assert!(
            stdout(&output).contains(&bmc.to_string()),
            "{}",
            printed(&output)
        );
    }
    assert!(!stderr(&output).contains("hidden"), "{}", printed(&output));

    // --- replay reproduces every state, byte for byte.
    let (before, after) = export_replay_export(&system).await;
    assert!(!before.is_empty());
    assert!(before == after, "replay changed the projection");
    for bmc in [bmc_a, bmc_b] {
        assert_eq!(
            system.show(&bmc.to_string()).await.machine.state,
            MachineState::Retired
        );
    }
    system.stop().await;
}
