//! Firmware drift (`metal.inventory.drift`): the fleet version per system model and
//! component, its ties, the bound on the reply, and the query's shape at fleet scale.

use std::cmp::Ordering;

use metal_core::inventory::Inventory;
use metal_core::query::{DriftRow, FirmwareDrift, DRIFT_MAX_ROWS};
use metal_core::MachineId;

use crate::fixtures::{inventory, mac, onboarding, with_firmware};
use crate::read::compare_versions;
use crate::Projection;

type Item = (&'static str, Option<&'static str>, Option<&'static str>);

fn bmc(n: u64) -> String {
    format!("aa:bb:cc:00:10:{n:02x}")
}

/// Machine `n` of `model` (`None`: the inventory names no model) reporting `items`.
type Spec = (u64, Option<&'static str>, Vec<Item>);

fn machine(n: u64, model: Option<&'static str>, items: &[Item]) -> Spec {
    (n, model, items.to_vec())
}

/// A projection of the machines onboarded one after the other (sequences 1, 2, 3, ...).
fn project(machines: &[Spec]) -> Projection {
    let mut projection = Projection::open_in_memory().unwrap();
    for (position, (n, model, items)) in machines.iter().enumerate() {
        let host = format!("52:54:00:00:10:{n:02x}");
        let mut inventory: Inventory = with_firmware(
            inventory(model.unwrap_or("-"), "Intel Xeon", &[&host]),
            items,
        );
        if model.is_none() {
            inventory.systems[0].model = None;
        }
        projection
            .apply_batch(&onboarding(1 + 3 * position as u64, &bmc(*n), inventory))
            .unwrap();
    }
    projection
}

/// (model, component, BMC MAC, version, fleet version, n, m), in the reply's order.
type Expected = (
    &'static str,
    &'static str,
    u64,
    &'static str,
    &'static str,
    u64,
    u64,
);

fn rows(expected: &[Expected]) -> Vec<DriftRow> {
    let mut rows: Vec<DriftRow> = expected
        .iter()
        .map(
            |&(model, component, n, version, fleet_version, fleet, all)| DriftRow {
                machine_id: MachineId::from_bmc_mac(&mac(&bmc(n))),
                bmc_mac: mac(&bmc(n)),
                model: model.to_string(),
                component: component.to_string(),
                version: version.to_string(),
                fleet_version: fleet_version.to_string(),
                fleet_machines: fleet,
                component_machines: all,
            },
        )
        .collect();
    rows.sort_by(|a, b| {
        (&a.model, &a.component, a.machine_id.to_string(), &a.version).cmp(&(
            &b.model,
            &b.component,
            b.machine_id.to_string(),
            &b.version,
        ))
    });
    rows
}

const ROM: &str = "System ROM";
const ILO: &str = "iLO 5";

#[test]
fn drift_is_each_version_other_than_the_fleets_per_model_and_component() {
    let fleet: [Item; 3] = [
        ("1", Some(ROM), Some("U30 v2.72")),
        ("2", Some(ILO), Some("2.72")),
        ("NIC.1", None, Some("14.1")),
    ];
    let projection = project(&[
        machine(0, Some("DL360"), &fleet),
        machine(1, Some("DL360"), &fleet),
        // Older ROM; nameless NIC firmware (its id is the component) at another version.
        machine(
            2,
            Some("DL360"),
            &[
                ("1", Some(ROM), Some("U30 v2.60")),
                ("2", Some(ILO), Some("2.72")),
                ("NIC.1", None, Some("14.2")),
            ],
        ),
        // Newer iLO, no NIC, and an item without a version (never compared).
        machine(
            3,
            Some("DL360"),
            &[
                ("1", Some(ROM), Some("U30 v2.72")),
                ("2", Some(ILO), Some("2.78")),
                ("3", Some("Drive"), None),
            ],
        ),
        // The only DL385: nothing to differ from.
        machine(4, Some("DL385"), &[("1", Some(ROM), Some("A40 v1.00"))]),
        // No model: not compared, only counted.
        machine(5, None, &[("1", Some(ROM), Some("U30 v1.00"))]),
        // No firmware at all.
        machine(6, Some("DL360"), &[]),
    ]);
    let reply = projection.firmware_drift().unwrap();
    assert_eq!(
        reply,
        FirmwareDrift {
            drift: rows(&[
                ("DL360", "NIC.1", 2, "14.2", "14.1", 2, 3),
                ("DL360", ROM, 2, "U30 v2.60", "U30 v2.72", 3, 4),
                ("DL360", ILO, 3, "2.78", "2.72", 3, 4),
            ]),
            total: 3,
            machines: 7,
            without_model: 1,
            last_sequence: 21,
        }
    );
    // Sorted by model, then component byte-wise (upper case first), then machine.
    let components: Vec<&str> = reply.drift.iter().map(|r| r.component.as_str()).collect();
    assert_eq!(components, ["NIC.1", ROM, ILO]);

    let none = project(&[
        machine(0, Some("DL360"), &fleet),
        machine(1, Some("DL360"), &fleet),
    ])
    .firmware_drift()
    .unwrap();
    assert_eq!((none.drift.len(), none.total, none.machines), (0, 0, 2));
    let empty = Projection::open_in_memory()
        .unwrap()
        .firmware_drift()
        .unwrap();
    assert_eq!((empty.drift.len(), empty.total, empty.machines), (0, 0, 0));
}

#[test]
fn ties_go_to_more_machines_then_the_greatest_version_numerically_then_byte_wise() {
    let psu = |id: &'static str, version: &'static str| -> Item {
        (id, Some("Power Supply"), Some(version))
    };
    let quoted = "C \"quoted\" ü";
    let machines = vec![
        // A: 1.0 on two items of one machine, 1.1 on one item each of two: 1.1 (more machines).
        machine(0, Some("A"), &[psu("PSU1", "1.0"), psu("PSU2", "1.0")]),
        machine(1, Some("A"), &[psu("PSU1", "1.1")]),
        machine(2, Some("A"), &[psu("PSU1", "1.1")]),
        // B: one machine each; 2.10 is greater than 2.9 by number, not by bytes.
        machine(3, Some("B"), &[("1", Some(ROM), Some("2.9"))]),
        machine(4, Some("B"), &[("1", Some(ROM), Some("2.10"))]),
        // C: 1.02 and 1.2 are the same number; byte-wise 1.2 is greater.
        machine(5, Some(quoted), &[("1", Some(ROM), Some("1.02"))]),
        machine(6, Some(quoted), &[("1", Some(ROM), Some("1.2"))]),
        // D: one machine's two power supplies disagree with each other only: never drift.
        machine(7, Some("D"), &[psu("PSU1", "1.0"), psu("PSU2", "1.1")]),
        // E: more items win over more machines: five supplies at 3.0 in two machines
        // outnumber four at 3.1 in three; a machine is listed once per version it drifts to.
        machine(
            8,
            Some("E"),
            &[
                psu("PSU1", "3.0"),
                psu("PSU2", "3.0"),
                psu("PSU3", "3.0"),
                psu("PSU4", "3.0"),
            ],
        ),
        machine(9, Some("E"), &[psu("PSU1", "3.1"), psu("PSU2", "3.1")]),
        machine(10, Some("E"), &[psu("PSU1", "3.1")]),
        machine(11, Some("E"), &[psu("PSU1", "3.0"), psu("PSU2", "3.1")]),
    ];
    let expected = rows(&[
        ("A", "Power Supply", 0, "1.0", "1.1", 2, 3),
        ("B", ROM, 3, "2.9", "2.10", 1, 2),
        (quoted, ROM, 5, "1.02", "1.2", 1, 2),
        ("E", "Power Supply", 9, "3.1", "3.0", 2, 4),
        ("E", "Power Supply", 10, "3.1", "3.0", 2, 4),
        ("E", "Power Supply", 11, "3.1", "3.0", 2, 4),
    ]);
    let reply = project(&machines).firmware_drift().unwrap();
    assert_eq!(reply.drift, expected);
    assert_eq!(reply.total, 6);

    // The order the machines were onboarded in changes nothing.
    let reversed: Vec<_> = machines.into_iter().rev().collect();
    assert_eq!(project(&reversed).firmware_drift().unwrap().drift, expected);
}

#[test]
fn versions_compare_by_number_where_both_have_digits() {
    use Ordering::*;
    for (a, b, order) in [
        ("2.10", "2.9", Greater),
        ("U30 v2.100", "U30 v2.72", Greater),
        ("1.2", "1.02", Equal),
        ("1.0", "1.0.0", Less),
        ("", "1", Less),
        ("", "", Equal),
        ("1.0a", "1.0b", Less),
        ("1.0-rc1", "1.0", Greater),
        ("A40", "A8", Greater),
        ("10", "9a", Greater),
        ("a", "1", Greater),
        (
            "99999999999999999999999",
            "99999999999999999999998",
            Greater,
        ),
        ("2.7ü", "2.7u", Greater),
    ] {
        assert_eq!(compare_versions(a, b), order, "{a:?} vs {b:?}");
        assert_eq!(compare_versions(b, a), order.reverse(), "{b:?} vs {a:?}");
    }
}

#[test]
fn the_reply_is_bounded_and_counts_what_it_leaves_out() {
    let at = |version: &'static str| -> [Item; 1] { [("1", Some(ROM), Some(version))] };
    let projection = project(&[
        machine(0, Some("DL360"), &at("1")),
        machine(1, Some("DL360"), &at("1")),
        machine(2, Some("DL360"), &at("1")),
        machine(3, Some("DL360"), &at("2")),
        machine(4, Some("DL360"), &at("3")),
        machine(5, Some("DL360"), &at("4")),
    ]);
    let all = projection.firmware_drift().unwrap();
    assert_eq!((all.drift.len(), all.total), (3, 3));
    let cut = projection.firmware_drift_at_most(2).unwrap();
    assert_eq!((cut.drift.len(), cut.total), (2, 3));
    assert_eq!(cut.drift[..], all.drift[..2]);
    let none = projection.firmware_drift_at_most(0).unwrap();
    assert_eq!((none.drift.len(), none.total), (0, 3));
    const { assert!(DRIFT_MAX_ROWS >= 100 && DRIFT_MAX_ROWS <= 2000) };
}

/// `machines` machines of two models straight into the tables (events would take minutes),
/// each with `components` firmware items; every 97th machine has one older item.
fn fleet(projection: &Projection, machines: u64, components: u64) {
    let tx = projection.conn.unchecked_transaction().unwrap();
    {
        let mut machine = tx
            .prepare(
                "INSERT INTO machines (machine_id, bmc_mac, state, correlation_id, created_at,
                     updated_at, system_model)
                 VALUES (?1, ?2, 'inventoried', ?1, 't', 't', ?3)",
            )
            .unwrap();
        let mut inventory = tx
            .prepare("INSERT INTO inventories (machine_key, inventory) VALUES (?1, '{}')")
            .unwrap();
        let mut item = tx
            .prepare(
                "INSERT INTO firmware (machine_key, firmware_id, name, version)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .unwrap();
        for n in 0..machines {
            let mac = metal_core::Mac::from_bytes([
                0x02,
                0x4d,
                (n >> 24) as u8,
                (n >> 16) as u8,
                (n >> 8) as u8,
                n as u8,
            ]);
            let id = MachineId::from_bmc_mac(&mac).to_string();
            let model = if n % 2 == 0 { "DL360" } else { "DL385" };
            machine
                .execute(rusqlite::params![id, mac.to_string(), model])
                .unwrap();
            let key = tx.last_insert_rowid();
            inventory.execute(rusqlite::params![key]).unwrap();
            for c in 0..components {
                let version = if n % 97 == 0 && c == n % components {
                    "1.0"
                } else {
                    "1.1"
                };
                item.execute(rusqlite::params![
                    key,
                    format!("FW{c}"),
                    format!("Component {c}"),
                    version
                ])
                .unwrap();
            }
        }
    }
    tx.commit().unwrap();
}

#[test]
fn the_items_are_read_in_one_scan_without_a_sort() {
    let projection = Projection::open_in_memory().unwrap();
    fleet(&projection, 2_000, 10);
    let plan: Vec<String> = projection
        .conn
        .prepare(&format!("EXPLAIN QUERY PLAN {}", crate::read::DRIFT_ITEMS))
        .unwrap()
        .query_map([], |row| row.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // machines in key order, each one's firmware by primary key: no temporary B-tree (a
    // sort of every item), no scan of the firmware per machine.
    assert_eq!(
        plan,
        ["SCAN m", "SEARCH f USING PRIMARY KEY (machine_key=?)"],
        "{plan:?}"
    );
    let reply = projection.firmware_drift().unwrap();
    // Machines 0, 97, 194, ... : every 97th of 2,000.
    assert_eq!((reply.total, reply.machines), (21, 2_000));
    assert!(reply
        .drift
        .iter()
        .all(|row| row.version == "1.0" && row.fleet_version == "1.1"));
}

/// The fleet the brief names: 100,000 machines with 30 firmware items each (3 million rows).
/// Slow in a debug build; run with
/// `cargo test --release -p metal-projection -- --ignored --nocapture drift_at_fleet_scale`.
#[test]
#[ignore]
fn drift_at_fleet_scale() {
    let dir = tempfile::tempdir().unwrap();
    let projection = Projection::open(&dir.path().join("drift.db")).unwrap();
    let started = std::time::Instant::now();
    fleet(&projection, 100_000, 30);
    eprintln!("100,000 machines written in {:?}", started.elapsed());
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let reply = projection.firmware_drift().unwrap();
        eprintln!(
            "drift: {} rows of {} in {:?}",
            reply.drift.len(),
            reply.total,
            started.elapsed()
        );
        assert_eq!((reply.total, reply.machines), (1_031, 100_000));
        assert_eq!(reply.drift.len(), DRIFT_MAX_ROWS);
    }
}
