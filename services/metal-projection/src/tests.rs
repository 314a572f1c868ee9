//! Apply, query and export tests against in-memory SQLite, through one `check` helper.

use metal_core::jetstream::StoredMessage;
use metal_core::query::MachineState;
use metal_core::{subjects, Mac, MachineId};

use crate::fixtures::{self, at, inventory, onboarding, request, stored};
use crate::{Applied, Projection, ProjectionError};

const BMC_A: &str = "aa:bb:cc:00:00:01";
const BMC_B: &str = "aa:bb:cc:00:00:02";
const HOST_A: &str = "52:54:00:00:00:a1";
const HOST_B: &str = "52:54:00:00:00:b1";

fn intel(host: &str) -> metal_core::inventory::Inventory {
    inventory(
        "ProLiant DL360 Gen10",
        "Intel(R) Xeon(R) Gold 6130",
        &[host],
    )
}

fn amd(host: &str) -> metal_core::inventory::Inventory {
    inventory(
        "ProLiant DL385 Gen10",
        "AMD EPYC 7302 16-Core Processor",
        &[host],
    )
}

/// A BMC MAC, its expected state (`None`: no machine) and a fragment of its reason.
type Expected = (&'static str, Option<MachineState>, Option<&'static str>);

/// Applies `messages` one by one into one projection and as a single batch into another,
/// checks both export the same bytes, and checks each BMC's machine state
/// (`None`: no machine) and reason fragment.
pub(crate) fn check(
    messages: &[StoredMessage],
    expected: &[(&str, Option<MachineState>, Option<&str>)],
) -> Projection {
    let mut single = Projection::open_in_memory().unwrap();
    for message in messages {
        single.apply(message).unwrap();
    }
    let mut batched = Projection::open_in_memory().unwrap();
    batched.apply_batch(messages).unwrap();
    assert_eq!(
        String::from_utf8(single.canonical_export().unwrap()).unwrap(),
        String::from_utf8(batched.canonical_export().unwrap()).unwrap(),
        "batched and single apply differ"
    );
    // Replay's path: decoded beforehand, in chunks of two, all in one transaction.
    let mut decoded = Projection::open_in_memory().unwrap();
    let chunks: Vec<Vec<crate::DecodedMessage>> = messages
        .chunks(2)
        .map(|chunk| {
            chunk
                .iter()
                .cloned()
                .map(crate::DecodedMessage::new)
                .collect()
        })
        .collect();
    decoded.apply_decoded_chunks(chunks, drop).unwrap();
    assert_eq!(
        String::from_utf8(single.canonical_export().unwrap()).unwrap(),
        String::from_utf8(decoded.canonical_export().unwrap()).unwrap(),
        "applying decoded chunks and single apply differ"
    );
    let last = messages.iter().map(|m| m.sequence).max().unwrap_or(0);
    assert_eq!(single.last_sequence().unwrap(), last);
    for (bmc, state, reason) in expected {
        let got = single.machine(bmc).unwrap();
        assert_eq!(
            got.as_ref().map(|d| d.machine.state),
            *state,
            "state of {bmc}"
        );
        if let Some(fragment) = reason {
            let text = got.and_then(|d| d.machine.state_reason).unwrap_or_default();
            assert!(
                text.contains(fragment),
                "reason of {bmc}: {text:?} lacks {fragment:?}"
            );
        }
    }
    single
}

fn history_types(projection: &Projection, reference: &str) -> Vec<String> {
    projection
        .history(reference)
        .unwrap()
        .unwrap()
        .events
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

#[test]
fn state_machine() {
    use MachineState::*;
    let (req_a, env_a) = request(1, BMC_A);
    let (req_b, env_b) = request(2, BMC_B);

    // Table: (name, messages, expectations).
    let cases: Vec<(&str, Vec<StoredMessage>, Vec<Expected>)> = vec![
        (
            "requested",
            vec![req_a.clone()],
            vec![(BMC_A, Some(Requested), None)],
        ),
        (
            "located",
            vec![
                req_a.clone(),
                stored(2, &fixtures::located(&env_a, "10.0.0.7")),
            ],
            vec![(BMC_A, Some(Located), None)],
        ),
        (
            "locate failed",
            vec![
                req_a.clone(),
                stored(2, &fixtures::locate_failed(&env_a, "no lease")),
            ],
            vec![(BMC_A, Some(LocateFailed), Some("no lease"))],
        ),
        (
            "scrape failed",
            vec![
                req_a.clone(),
                stored(2, &fixtures::located(&env_a, "10.0.0.7")),
                stored(
                    3,
                    &fixtures::scrape_failed(&fixtures::located(&env_a, "10.0.0.7"), "401"),
                ),
            ],
            vec![(BMC_A, Some(ScrapeFailed), Some("auth: 401"))],
        ),
        (
            "inventoried",
            onboarding(1, BMC_A, intel(HOST_A)),
            vec![(BMC_A, Some(Inventoried), None), (BMC_B, None, None)],
        ),
        (
            "two machines",
            vec![
                req_a.clone(),
                req_b.clone(),
                stored(3, &fixtures::locate_failed(&env_b, "x")),
            ],
            vec![
                (BMC_A, Some(Requested), None),
                (BMC_B, Some(LocateFailed), Some("x")),
            ],
        ),
        (
            "answer for a machine never onboarded",
            vec![stored(1, &fixtures::located(&env_a, "10.0.0.7"))],
            vec![(BMC_A, None, None)],
        ),
        (
            "malformed payload",
            vec![fixtures::raw(1, subjects::BMC_LOCATED, "{not json")],
            vec![(BMC_A, None, None)],
        ),
        (
            "rejected raw request",
            vec![fixtures::raw(1, subjects::ONBOARD_REQUESTED, "hello")],
            vec![],
        ),
        (
            "bad data is recorded, not applied",
            vec![req_a.clone(), {
                let mut bad = fixtures::located(&env_a, "10.0.0.7");
                bad.data = serde_json::json!({"nope": true});
                stored(2, &bad)
            }],
            vec![(BMC_A, Some(Requested), None)],
        ),
        (
            "unknown event type",
            vec![req_a.clone(), {
                let mut other = fixtures::located(&env_a, "10.0.0.7");
                other.event_type = "machine.boot.served".to_string();
                stored(2, &other)
            }],
            vec![(BMC_A, Some(Requested), None)],
        ),
    ];
    for (name, messages, expected) in cases {
        eprintln!("case: {name}");
        check(&messages, &expected);
    }
}

#[test]
fn stale_answers_are_kept_in_the_timeline_only() {
    let (first, first_env) = request(1, BMC_A);
    let (second, _) = request(2, BMC_A);
    let late = fixtures::located(&first_env, "10.0.0.7");
    let projection = check(
        &[first, second, stored(3, &late)],
        &[(BMC_A, Some(MachineState::Requested), None)],
    );
    let history = projection.history(BMC_A).unwrap().unwrap();
    assert_eq!(history.events.len(), 3);
    assert!(
        history.events[2].summary.contains("stale"),
        "{:?}",
        history.events[2]
    );
}

#[test]
fn reonboarding_keeps_inventory_until_replaced() {
    let mut messages = onboarding(1, BMC_A, intel(HOST_A));
    messages.push(request(4, BMC_A).0);
    let projection = check(&messages, &[(BMC_A, Some(MachineState::Requested), None)]);
    let detail = projection.machine(BMC_A).unwrap().unwrap();
    assert!(detail.inventory.is_some());
    assert_eq!(detail.summary.unwrap().systems[0].processors.count, 2);
    assert_eq!(
        detail.machine.correlation_id,
        request(4, BMC_A).1.correlation_id
    );
    assert_eq!(detail.machine.created_at, at(1));
    assert_eq!(detail.machine.updated_at, at(4));
    // Not inventoried any more, so not bootable.
    let facts = projection
        .boot_lookup(&fixtures::mac(HOST_A))
        .unwrap()
        .unwrap();
    assert_eq!(facts.state, MachineState::Requested);
}

#[test]
fn idempotent_on_sequence_and_event_id() {
    let messages = onboarding(1, BMC_A, intel(HOST_A));
    let mut projection = Projection::open_in_memory().unwrap();
    for message in &messages {
        assert!(matches!(
            projection.apply(message).unwrap(),
            Applied::Changed(_)
        ));
    }
    let before = projection.canonical_export().unwrap();
    for message in &messages {
        assert_eq!(projection.apply(message).unwrap(), Applied::AlreadyApplied);
    }
    assert_eq!(projection.canonical_export().unwrap(), before);
    // A batch stores the last sequence once: all old, nothing moves.
    let last = projection.last_sequence().unwrap();
    let applied = projection.apply_batch(&messages).unwrap();
    assert!(applied.iter().all(|a| *a == Applied::AlreadyApplied));
    assert_eq!(projection.last_sequence().unwrap(), last);

    // The same event stored again at a new sequence (outside the duplicate window).
    let mut again = messages[2].clone();
    again.sequence = 10;
    assert_eq!(projection.apply(&again).unwrap(), Applied::DuplicateEvent);
    assert_eq!(projection.last_sequence().unwrap(), 10);
    let history = projection.history(BMC_A).unwrap().unwrap();
    assert_eq!(history.events.len(), 3);
}

#[test]
fn rejections_are_timeline_rows_without_machine() {
    let bad = fixtures::raw(1, subjects::ONBOARD_REQUESTED, "not a mac");
    let metal_core::Decoded::RejectedRequest { rejection, .. } = bad.decode() else {
        panic!("expected a rejection");
    };
    let mut projection = Projection::open_in_memory().unwrap();
    assert_eq!(projection.apply(&bad).unwrap(), Applied::SequenceOnly);
    assert_eq!(
        projection.apply(&stored(2, &rejection)).unwrap(),
        Applied::Recorded
    );
    let export = String::from_utf8(projection.canonical_export().unwrap()).unwrap();
    let event_lines: Vec<&str> = export
        .lines()
        .filter(|l| l.contains("\"table\":\"events\""))
        .collect();
    assert_eq!(event_lines.len(), 1);
    assert!(event_lines[0].contains("\"machine_id\":null"));
    assert!(event_lines[0].contains("rejected"));
    assert_eq!(projection.machines().unwrap().machines.len(), 0);
}

#[test]
fn lookups_by_reference() {
    let mut messages = onboarding(1, BMC_A, intel(HOST_A));
    messages.extend(onboarding(4, BMC_B, amd(HOST_B)));
    let projection = check(&messages, &[]);
    let id_a = MachineId::from_bmc_mac(&fixtures::mac(BMC_A));
    for reference in [
        "AA-BB-CC-00-00-01",
        "aabb.cc00.0001",
        "aabbcc000001",
        HOST_A,
        &id_a.to_string(),
    ] {
        let detail = projection.machine(reference).unwrap();
        assert_eq!(
            detail.map(|d| d.machine.machine_id),
            Some(id_a),
            "reference {reference}"
        );
    }
    // Every iLO reports the same virtual NIC: it must not resolve, nor break anything.
    assert!(projection
        .machine(fixtures::ILO_VIRTUAL_NIC)
        .unwrap()
        .is_none());
    assert!(projection.machine("52:54:00:ff:ff:ff").unwrap().is_none());
    assert!(matches!(
        projection.machine("nonsense"),
        Err(ProjectionError::BadReference(_))
    ));

    let list = projection.machines().unwrap();
    assert_eq!(list.machines.len(), 2);
    assert_eq!(list.last_sequence, 6);
    assert!(list
        .machines
        .iter()
        .all(|m| m.cpu_count == 2 && m.memory_mib == 65536 && m.host_nic_count == 1));
    let status = projection.status().unwrap();
    assert_eq!((status.machines, status.last_sequence), (2, 6));
    assert_eq!(
        history_types(&projection, BMC_B),
        [
            subjects::ONBOARD_REQUESTED,
            subjects::BMC_LOCATED,
            subjects::HARDWARE_SCRAPED
        ]
    );
}

#[test]
fn boot_facts_and_ambiguous_macs() {
    let mut messages = onboarding(1, BMC_A, intel(HOST_A));
    messages.extend(onboarding(4, BMC_B, amd(HOST_B)));
    let projection = check(&messages, &[]);
    let facts = projection
        .boot_lookup(&fixtures::mac(HOST_B))
        .unwrap()
        .unwrap();
    assert_eq!(facts.state, MachineState::Inventoried);
    assert_eq!(
        facts.cpu_vendor,
        Some(metal_core::inventory::CpuVendor::Amd)
    );
    assert_eq!(facts.system_model.as_deref(), Some("ProLiant DL385 Gen10"));
    assert_eq!(
        (facts.cpu_count, facts.memory_mib, facts.drive_count),
        (2, 65536, 1)
    );
    assert_eq!(facts.bmc_mac, fixtures::mac(BMC_B));
    // BMC MACs are not host NICs.
    assert!(projection
        .boot_lookup(&fixtures::mac(ILO_NIC))
        .unwrap()
        .is_none());

    // A third machine reporting HOST_A makes it ambiguous: never boot the wrong machine.
    let mut more = messages.clone();
    more.extend(onboarding(7, "aa:bb:cc:00:00:03", intel(HOST_A)));
    let projection = check(&more, &[]);
    assert!(projection
        .boot_lookup(&fixtures::mac(HOST_A))
        .unwrap()
        .is_none());
    assert!(projection
        .boot_lookup(&fixtures::mac(HOST_B))
        .unwrap()
        .is_some());
}

const ILO_NIC: &str = fixtures::ILO_VIRTUAL_NIC;

#[test]
fn scrape_replaces_hardware_rows() {
    let mut messages = onboarding(1, BMC_A, intel(HOST_A));
    let (again, env) = request(4, BMC_A);
    messages.push(again);
    let found = fixtures::located(&env, "10.0.0.9");
    messages.push(stored(5, &found));
    messages.push(stored(6, &fixtures::scraped(&found, amd(HOST_B))));
    let projection = check(&messages, &[(BMC_A, Some(MachineState::Inventoried), None)]);
    assert!(projection
        .boot_lookup(&fixtures::mac(HOST_A))
        .unwrap()
        .is_none());
    let facts = projection
        .boot_lookup(&fixtures::mac(HOST_B))
        .unwrap()
        .unwrap();
    assert_eq!(
        facts.cpu_vendor,
        Some(metal_core::inventory::CpuVendor::Amd)
    );
    let export = String::from_utf8(projection.canonical_export().unwrap()).unwrap();
    assert_eq!(
        export
            .lines()
            .filter(|l| l.contains("\"table\":\"processors\""))
            .count(),
        2
    );
}

#[test]
fn exports_are_deterministic() {
    let mut messages = onboarding(1, BMC_B, amd(HOST_B));
    messages.extend(onboarding(4, BMC_A, intel(HOST_A)));
    messages.push(fixtures::raw(7, subjects::SCRAPE_FAILED, "garbage"));
    let first = check(&messages, &[]);
    // Split into uneven batches in a third projection.
    let mut third = Projection::open_in_memory().unwrap();
    third.apply_batch(&messages[..2]).unwrap();
    third.apply_batch(&messages[2..5]).unwrap();
    third.apply_batch(&messages[3..]).unwrap();
    let (export, digest) = first.export_with_digest().unwrap();
    assert_eq!(
        third.export_with_digest().unwrap(),
        (export.clone(), digest.clone())
    );
    assert_eq!(digest.len(), 64);
    let text = String::from_utf8(export).unwrap();
    assert!(
        text.starts_with("{\"row\":{\"id\":1,\"last_sequence\":7},\"table\":\"meta\"}\n"),
        "{text}"
    );
}

/// Every `sqlite_master` row but the tables' and indexes' root pages, sorted.
fn schema_of(path: &std::path::Path) -> Vec<(String, String, Option<String>)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut rows: Vec<(String, String, Option<String>)> = conn
        .prepare("SELECT type, name, sql FROM sqlite_master")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows.sort();
    rows
}

#[test]
fn a_scratch_rebuild_ends_with_the_same_schema_and_rows_as_a_live_projection() {
    let dir = tempfile::tempdir().unwrap();
    let mut messages = onboarding(1, BMC_A, intel(HOST_A));
    messages.extend(onboarding(4, BMC_B, amd(HOST_B)));
    let live_path = dir.path().join("live.db");
    let mut live = Projection::open(&live_path).unwrap();
    live.apply_batch(&messages).unwrap();
    let live_digest = live.export_digest().unwrap();
    live.close().unwrap();

    let scratch_path = dir.path().join("scratch.db");
    let mut scratch = Projection::open_scratch(&scratch_path).unwrap();
    let dropped = schema_of(&scratch_path);
    assert!(
        !dropped.iter().any(|(_, name, _)| name == "nics_by_mac"),
        "a scratch file is built without its secondary indexes: {dropped:?}"
    );
    scratch.apply_batch(&messages).unwrap();
    assert_eq!(scratch.export_digest().unwrap(), live_digest);
    scratch.close().unwrap();

    assert_eq!(schema_of(&scratch_path), schema_of(&live_path));
    let reopened = Projection::open(&scratch_path).unwrap();
    assert_eq!(reopened.export_digest().unwrap(), live_digest);
    assert_eq!(
        reopened.export_with_digest().unwrap().1,
        live_digest,
        "the streamed digest is the digest of the export"
    );
    let found = reopened
        .machine(HOST_B)
        .unwrap()
        .expect("found by host MAC");
    assert_eq!(found.machine.bmc_mac.to_string(), BMC_B);
}

#[test]
fn file_projection_survives_restart_and_replace() {
    let dir = tempfile::tempdir().unwrap();
    let live_path = dir.path().join("nested/live.db");
    let messages = onboarding(1, BMC_A, intel(HOST_A));
    let mut live = Projection::open(&live_path).unwrap();
    live.apply_batch(&messages[..2]).unwrap();
    live.close().unwrap();
    let mut live = Projection::open(&live_path).unwrap();
    assert_eq!(live.last_sequence().unwrap(), 2);
    live.apply(&messages[2]).unwrap();
    let live_digest = live.export_with_digest().unwrap().1;
    live.close().unwrap();

    let fresh_path = dir.path().join("nested/fresh.db");
    let mut fresh = Projection::open(&fresh_path).unwrap();
    fresh.apply_batch(&messages).unwrap();
    assert_eq!(fresh.export_with_digest().unwrap().1, live_digest);
    fresh.close().unwrap();
    crate::replace_file(&fresh_path, &live_path).unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.path().join("nested"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["live.db"]);
    let reopened = Projection::open(&live_path).unwrap();
    assert_eq!(reopened.export_with_digest().unwrap().1, live_digest);
    assert_eq!(
        reopened.status().unwrap().database,
        live_path.display().to_string()
    );
}

#[test]
fn mac_references_are_normalised() {
    let projection = check(&onboarding(1, BMC_A, intel(HOST_A)), &[]);
    let upper: Mac = "52:54:00:00:00:A1".parse().unwrap();
    assert!(projection.boot_lookup(&upper).unwrap().is_some());
}

#[test]
fn rescans_replace_the_inventory_and_a_failed_one_keeps_it() {
    let mut messages = onboarding(1, BMC_A, intel(HOST_A));
    // A rescan that finds an AMD board now (another NIC too), with its changes.
    let first = fixtures::rescan(4, BMC_A, Some(3));
    let changed = fixtures::answer(
        &first,
        subjects::HARDWARE_CHANGED,
        &metal_core::events::HardwareChanged {
            previous: metal_core::events::InventoryRef {
                event_id: uuid::Uuid::nil(),
                sequence: 3,
            },
            changes: metal_core::inventory::diff::diff(&intel(HOST_A), &amd(HOST_B)),
        },
    );
    messages.push(stored(4, &first));
    messages.push(stored(5, &changed));
    messages.push(stored(6, &fixtures::scraped(&first, amd(HOST_B))));
    // A second rescan whose BMC does not answer.
    let second = fixtures::rescan(7, BMC_A, Some(6));
    messages.push(stored(7, &second));
    messages.push(stored(
        8,
        &fixtures::scrape_failed(&second, "BMC unreachable"),
    ));
    let projection = check(&messages, &[(BMC_A, Some(MachineState::Inventoried), None)]);
    let detail = projection.machine(BMC_A).unwrap().unwrap();
    assert_eq!(
        detail.inventory_event.map(|r| r.sequence),
        Some(6),
        "the rescan's inventory is the machine's"
    );
    assert_eq!(
        projection
            .boot_lookup(&fixtures::mac(HOST_B))
            .unwrap()
            .map(|f| f.state),
        Some(MachineState::Inventoried),
        "still bootable after the failed rescan"
    );
    assert!(projection
        .boot_lookup(&fixtures::mac(HOST_A))
        .unwrap()
        .is_none());
    let history = projection.history(BMC_A).unwrap().unwrap();
    let summaries: Vec<&str> = history.events.iter().map(|e| e.summary.as_str()).collect();
    assert!(
        summaries[4].starts_with("hardware changed since sequence 3: "),
        "{summaries:?}"
    );
    assert!(
        summaries[4].contains("nic 52:54:00:00:00:b1 added"),
        "{summaries:?}"
    );
    assert!(
        summaries[5].starts_with("rescan inventory:"),
        "{summaries:?}"
    );
    assert!(
        summaries[7]
            .starts_with("rescan failed, keeping the last inventory: auth: BMC unreachable"),
        "{summaries:?}"
    );
    // A new onboarding request ends the rescan: its late answers are stale.
    messages.push(request(9, BMC_A).0);
    let late = fixtures::rescan(10, BMC_A, Some(6));
    messages.push(stored(10, &late));
    messages.push(request(11, BMC_A).0);
    messages.push(stored(12, &fixtures::scraped(&late, intel(HOST_A))));
    let projection = check(&messages, &[(BMC_A, Some(MachineState::Requested), None)]);
    let history = projection.history(BMC_A).unwrap().unwrap();
    assert!(history.events.last().unwrap().summary.contains("stale"));
}

#[test]
fn lookups_by_permanent_mac_and_macs_shared_between_machines() {
    const SHARED: &str = "52:54:00:00:00:ff";
    const PERMANENT: &str = "52:54:00:00:00:a9";
    let mut a = inventory("A", "Intel Xeon", &[HOST_A, SHARED]);
    a.systems[0].ethernet_interfaces[0].permanent_mac = Some(fixtures::mac(PERMANENT));
    // A board that reports its unique MAC twice (a VLAN) is still one machine.
    let vlan = a.systems[0].ethernet_interfaces[0].clone();
    a.systems[0].ethernet_interfaces.push(vlan);
    let b = inventory("B", "AMD EPYC", &[HOST_B, SHARED]);
    let mut messages = onboarding(1, BMC_A, a);
    messages.extend(onboarding(4, BMC_B, b));
    let projection = check(&messages, &[]);
    let machine_of = |mac: &str| {
        projection
            .boot_lookup(&fixtures::mac(mac))
            .unwrap()
            .map(|facts| facts.bmc_mac.to_string())
    };
    assert_eq!(machine_of(HOST_A).as_deref(), Some(BMC_A));
    assert_eq!(
        machine_of(PERMANENT).as_deref(),
        Some(BMC_A),
        "by permanent MAC"
    );
    assert_eq!(machine_of(HOST_B).as_deref(), Some(BMC_B));
    assert_eq!(
        machine_of(SHARED),
        None,
        "a MAC two machines report boots neither"
    );
    assert_eq!(
        projection
            .machine(PERMANENT)
            .unwrap()
            .map(|d| d.machine.bmc_mac.to_string())
            .as_deref(),
        Some(BMC_A),
        "show finds a machine by a NIC's permanent MAC"
    );
    // Each BMC is still its own machine.
    assert_eq!(projection.machines().unwrap().machines.len(), 2);
}

/// A full disk (here: SQLite's page limit reached) refuses the write whole and is not
/// damage: what was committed stands, and the same batch applies once there is room.
#[test]
fn a_full_disk_is_not_damage_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.db");
    let mut projection = Projection::open(&path).unwrap();
    let first = onboarding(1, BMC_A, intel(HOST_A));
    projection.apply_batch(&first).unwrap();
    let before = projection.export_with_digest().unwrap().1;
    let pages: i64 = projection
        .conn
        .query_row("PRAGMA page_count", [], |row| row.get(0))
        .unwrap();
    projection
        .conn
        .pragma_update(None, "max_page_count", pages)
        .unwrap();

    let more: Vec<StoredMessage> = (0..40u64)
        .flat_map(|i| {
            let bmc = format!("aa:bb:cc:00:01:{i:02x}");
            let host = format!("52:54:00:00:01:{i:02x}");
            onboarding(4 + 3 * i, &bmc, intel(&host))
        })
        .collect();
    let error = projection.apply_batch(&more).unwrap_err();
    assert!(!error.is_damage(), "a full disk is not damage: {error}");
    assert_eq!(projection.last_sequence().unwrap(), 3);
    assert_eq!(projection.export_with_digest().unwrap().1, before);
    projection.check_integrity().unwrap();

    projection
        .conn
        .pragma_update(None, "max_page_count", 1 << 30)
        .unwrap();
    projection.apply_batch(&more).unwrap();
    assert_eq!(projection.last_sequence().unwrap(), 3 + 120);
}

#[test]
fn garbage_pages_fail_the_integrity_check_as_damage() {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.db");
    let mut projection = Projection::open(&path).unwrap();
    let messages: Vec<StoredMessage> = (0..40u64)
        .flat_map(|i| {
            let bmc = format!("aa:bb:cc:00:02:{i:02x}");
            let host = format!("52:54:00:00:02:{i:02x}");
            onboarding(1 + 3 * i, &bmc, intel(&host))
        })
        .collect();
    projection.apply_batch(&messages).unwrap();
    projection.check_integrity().unwrap();
    projection.close().unwrap();

    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.seek(SeekFrom::Start(4 * 4096)).unwrap();
    file.write_all(&[0x5a; 4 * 4096]).unwrap();
    drop(file);
    let error = Projection::open_checked(&path).unwrap_err();
    assert!(error.is_damage(), "{error}");
    // Found by the check: as findings, or as pages too malformed to be checked at all.
    let chain = metal_core::error_chain(&error);
    assert!(chain.contains("integrity"), "{chain}");
}

#[test]
fn a_service_sizes_its_page_cache() {
    let dir = tempfile::tempdir().unwrap();
    let projection = Projection::open(&dir.path().join("sized.db"))
        .unwrap()
        .with_page_cache_kib(4096)
        .unwrap();
    let cache_size: i64 = projection
        .conn
        .query_row("PRAGMA cache_size", [], |row| row.get(0))
        .unwrap();
    assert_eq!(cache_size, -4096, "negative: KiB, not pages");
}
