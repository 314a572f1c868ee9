//! Provisioning through the projection: arming, boot served, power failures, phone-home,
//! deadline, stale provisionings, rescans of armed machines, tags and unknown MACs.

use metal_core::events::{
    BootPath, BootServed, BootUnknown, InstallCompleted, InstallFailed, PowerFailed, PowerStep,
    TagsChanged,
};
use metal_core::query::MachineState::{self, *};
use metal_core::subjects;

use crate::fixtures::{
    about_provisioning, assigned, inventory, mac, onboarding, provision, rescan, scraped, stored,
};
use crate::tests::check;
use crate::{Applied, BootRecords, Projection};

const BMC: &str = "aa:bb:cc:00:00:01";
const HOST: &str = "52:54:00:00:00:a1";

fn served(p: &metal_core::Envelope, later: i64) -> metal_core::Envelope {
    about_provisioning(
        p,
        subjects::BOOT_SERVED,
        &BootServed {
            mac: mac(HOST),
            path: BootPath::Pixiecore,
            provision_id: p.event_id,
            profile: "G1".to_string(),
        },
        later,
    )
}

fn completed(p: &metal_core::Envelope, later: i64) -> metal_core::Envelope {
    about_provisioning(
        p,
        subjects::INSTALL_COMPLETED,
        &InstallCompleted {
            provision_id: p.event_id,
            profile: "G1".to_string(),
        },
        later,
    )
}

fn onboarded() -> Vec<metal_core::jetstream::StoredMessage> {
    onboarding(1, BMC, inventory("DL360", "Intel Xeon", &[HOST]))
}

fn state_after(events: &[metal_core::Envelope]) -> (MachineState, Option<String>) {
    let mut messages = onboarded();
    messages.extend(
        events
            .iter()
            .enumerate()
            .map(|(i, e)| stored(10 + i as u64, e)),
    );
    let projection = check(&messages, &[]);
    let detail = projection.machine(BMC).unwrap().unwrap();
    (detail.machine.state, detail.machine.state_reason)
}

#[test]
fn a_provisioning_runs_from_armed_to_installed() {
    let p = provision(10, BMC, None);
    assert_eq!(
        state_after(std::slice::from_ref(&p)).0,
        Inventoried,
        "a request alone arms nothing"
    );
    assert_eq!(
        state_after(&[p.clone(), assigned(&p, "G1")]).0,
        Provisioning
    );
    assert_eq!(
        state_after(&[p.clone(), assigned(&p, "G1"), served(&p, 5)]).0,
        Booting
    );
    let (state, reason) = state_after(&[
        p.clone(),
        assigned(&p, "G1"),
        served(&p, 5),
        served(&p, 6),
        completed(&p, 60),
    ]);
    assert_eq!((state, reason), (Installed, None));
    // A boot served, or a phone-home, after the end changes nothing: no reinstall loop.
    assert_eq!(
        state_after(&[
            p.clone(),
            assigned(&p, "G1"),
            completed(&p, 60),
            served(&p, 70)
        ])
        .0,
        Installed
    );
    // The provisioning is kept whole for show and replay.
    let mut messages = onboarded();
    messages.extend([stored(10, &p), stored(11, &assigned(&p, "G1"))]);
    let projection = check(&messages, &[]);
    let detail = projection.machine(BMC).unwrap().unwrap();
    let provisioning = detail.provisioning.unwrap();
    assert_eq!(provisioning.provision_id, p.event_id);
    assert_eq!(&*provisioning.profile, "G1");
    assert!(
        provisioning.cmdline.contains("{token}"),
        "the template, never a token"
    );
}

#[test]
fn failures_disarm_with_their_reason() {
    let p = provision(10, BMC, None);
    let power_failed = about_provisioning(
        &p,
        subjects::POWER_FAILED,
        &PowerFailed {
            step: PowerStep::BootOverride,
            provision_id: Some(p.event_id),
            system: Some("/redfish/v1/Systems/1".to_string()),
            reason: "Pxe is not among the allowed targets (Hdd, Cd)".to_string(),
        },
        2,
    );
    let (state, reason) = state_after(&[p.clone(), assigned(&p, "G1"), power_failed]);
    assert_eq!(state, ProvisionFailed);
    assert!(reason
        .unwrap()
        .contains("boot_override failed: Pxe is not among"));
    let timeout = about_provisioning(
        &p,
        subjects::INSTALL_FAILED,
        &InstallFailed {
            provision_id: p.event_id,
            profile: "G1".to_string(),
            reason: "timeout: no phone-home within 3600 s of arming".to_string(),
        },
        3600,
    );
    let (state, reason) = state_after(&[
        p.clone(),
        assigned(&p, "G1"),
        served(&p, 5),
        timeout.clone(),
    ]);
    assert_eq!(state, InstallFailed);
    assert!(reason.unwrap().contains("timeout"));
    // A late phone-home of a failed provisioning does not revive it.
    assert_eq!(
        state_after(&[p.clone(), assigned(&p, "G1"), timeout, completed(&p, 4000)]).0,
        InstallFailed
    );
}

#[test]
fn a_new_provisioning_makes_the_old_ones_events_stale() {
    let first = provision(10, BMC, None);
    let second = provision(13, BMC, Some("G2"));
    let (state, _) = state_after(&[
        first.clone(),
        assigned(&first, "G1"),
        second.clone(),
        assigned(&second, "G2"),
        completed(&first, 60),
    ]);
    assert_eq!(
        state, Provisioning,
        "the first provisioning's phone-home is stale"
    );
    assert_eq!(
        state_after(&[
            first.clone(),
            assigned(&first, "G1"),
            completed(&first, 60),
            second.clone(),
            assigned(&second, "G2"),
            completed(&second, 90),
        ])
        .0,
        Installed
    );
}

#[test]
fn rescans_keep_an_armed_or_installed_machine_as_it_is() {
    let p = provision(10, BMC, None);
    let mut messages = onboarded();
    let rescan = rescan(13, BMC, Some(3));
    let again = scraped(
        &rescan,
        inventory("DL360", "Intel Xeon", &[HOST, "52:54:00:00:00:a2"]),
    );
    messages.extend([
        stored(10, &p),
        stored(11, &assigned(&p, "G1")),
        stored(12, &served(&p, 5)),
        stored(13, &rescan),
        stored(14, &again),
    ]);
    let projection = check(&messages, &[(BMC, Some(Booting), None)]);
    let targets = projection.boot_targets(None).unwrap();
    assert_eq!(targets[0].macs.len(), 2, "the new NIC boots too");
}

#[test]
fn tags_and_unknown_macs() {
    let p = provision(10, BMC, None);
    let tags = about_provisioning(
        &p,
        subjects::TAGS_CHANGED,
        &TagsChanged {
            set: [
                ("rack".to_string(), "a1".to_string()),
                ("role".to_string(), "db".to_string()),
            ]
            .into(),
            removed: Vec::new(),
            requested_by: None,
        },
        1,
    );
    let untag = about_provisioning(
        &p,
        subjects::TAGS_CHANGED,
        &TagsChanged {
            set: [("rack".to_string(), "b2".to_string())].into(),
            removed: vec!["role".to_string()],
            requested_by: None,
        },
        2,
    );
    let unknown = |m: &str, later: i64| metal_core::Envelope {
        machine_id: None,
        bmc_mac: None,
        ..about_provisioning(
            &p,
            subjects::BOOT_UNKNOWN,
            &BootUnknown {
                mac: mac(m),
                path: BootPath::Ipxe,
                reason: "no machine has this MAC".to_string(),
            },
            later,
        )
    };
    let mut messages = onboarded();
    messages.extend([
        stored(10, &tags),
        stored(11, &untag),
        stored(12, &unknown("52:54:00:00:00:77", 3)),
        stored(13, &unknown("52:54:00:00:00:77", 400)),
        // A MAC some machine has now is not listed as unknown.
        stored(14, &unknown(HOST, 5)),
    ]);
    let projection = check(&messages, &[]);
    let detail = projection.machine(BMC).unwrap().unwrap();
    assert_eq!(detail.tags, [("rack".to_string(), "b2".to_string())].into());
    let unknown = projection.unknown_macs().unwrap();
    assert_eq!(unknown.macs.len(), 1);
    assert_eq!(unknown.macs[0].mac, mac("52:54:00:00:00:77"));
    assert_eq!(unknown.macs[0].events, 2);
    assert!(unknown.macs[0].last_seen > unknown.macs[0].first_seen);
}

#[test]
fn boot_apis_projection_skips_boot_events_and_only_them() {
    let p = provision(10, BMC, None);
    let unknown = metal_core::Envelope {
        machine_id: None,
        bmc_mac: None,
        ..about_provisioning(
            &p,
            subjects::BOOT_UNKNOWN,
            &BootUnknown {
                mac: mac("52:54:00:00:00:77"),
                path: BootPath::Ipxe,
                reason: "no machine has this MAC".to_string(),
            },
            3,
        )
    };
    let mut messages = onboarded();
    messages.extend(
        [
            p.clone(),
            assigned(&p, "G1"),
            served(&p, 5),
            unknown,
            served(&p, 6),
            completed(&p, 60),
        ]
        .iter()
        .enumerate()
        .map(|(i, e)| stored(10 + i as u64, e)),
    );
    let last = messages.last().unwrap().sequence;
    let served_at = 12;

    let mut applied = Projection::open_in_memory().unwrap();
    let mut skipped = Projection::open_in_memory()
        .unwrap()
        .with_boot_records(BootRecords::Skipped);
    let state = |projection: &Projection| projection.machine(BMC).unwrap().unwrap().machine.state;
    for message in &messages {
        let a = applied.apply(message).unwrap();
        let s = skipped.apply(message).unwrap();
        if message.subject.starts_with("machine.boot.") {
            assert_eq!(s, Applied::SequenceOnly, "{}", message.subject);
        } else {
            assert_eq!(s, a, "{} applies alike", message.subject);
        }
        if message.sequence == served_at {
            assert_eq!((state(&applied), state(&skipped)), (Booting, Provisioning));
        }
    }
    assert_eq!(skipped.last_sequence().unwrap(), last);
    assert_eq!((state(&applied), state(&skipped)), (Installed, Installed));
    assert!(skipped.unknown_macs().unwrap().macs.is_empty());

    // Everything else is the same, row for row: the boot events' timeline rows and the
    // unknown MAC are all that is missing.
    let export = |projection: &Projection| -> Vec<String> {
        String::from_utf8(projection.canonical_export().unwrap())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let expected: Vec<String> = export(&applied)
        .into_iter()
        .filter(|line| !line.contains(r#""type":"machine.boot."#))
        .filter(|line| !line.contains(r#""table":"unknown_macs""#))
        .collect();
    assert_eq!(export(&skipped), expected);
    assert!(export(&applied).len() > expected.len() + 3);
}
