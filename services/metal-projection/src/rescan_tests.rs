//! `Projection::rescan_candidates`: every machine with a Redfish URL, its BMC's health from
//! the scrapes' outcomes and `machine.bmc.lost`, and its last inventory.

use metal_core::events::{InventoryRef, ScrapeFailureKind};
use metal_core::query::MachineState;
use metal_core::MachineId;

use crate::fixtures::{
    at, bmc_lost, inventory, located, mac, onboarding, request, rescan, scrape_failed_kind,
    scraped, stored,
};
use crate::tests::check;

const SCANNED: &str = "aa:bb:cc:00:10:01";
const LOCATED: &str = "aa:bb:cc:00:10:02";
const REQUESTED: &str = "aa:bb:cc:00:10:03";
const SILENT: &str = "aa:bb:cc:00:10:04";
const RESCANNED: &str = "aa:bb:cc:00:10:05";

fn id(bmc: &str) -> MachineId {
    MachineId::from_bmc_mac(&mac(bmc))
}

#[test]
fn rescan_candidates_carry_bmc_health_and_last_inventory() {
    let mut messages = Vec::new();
    // Onboarded: answered once, inventory at sequence 3.
    messages.extend(onboarding(
        1,
        SCANNED,
        inventory("DL360", "Intel Xeon", &[]),
    ));
    let scanned_inventory = messages[2].clone();
    // Located, scrape in flight: a URL, no health yet.
    let (requested, envelope) = request(10, LOCATED);
    messages.push(requested);
    messages.push(stored(11, &located(&envelope, "10.0.0.2")));
    // Requested only: no URL, not a candidate.
    messages.push(request(20, REQUESTED).0);
    // Never answered: failing since its first scrape, then declared lost.
    let (requested, envelope) = request(30, SILENT);
    let found = located(&envelope, "10.0.0.4");
    let failed = scrape_failed_kind(&found, ScrapeFailureKind::Unreachable, "no route to host");
    messages.push(requested);
    messages.push(stored(31, &found));
    messages.push(stored(32, &failed));
    messages.push(stored(33, &bmc_lost(33, SILENT, failed.time)));
    // Answered, then a rescan the BMC did not answer: failing, last seen kept, not lost.
    messages.extend(onboarding(
        40,
        RESCANNED,
        inventory("DL380", "Intel Xeon", &[]),
    ));
    let request = rescan(43, RESCANNED, Some(42));
    let timeout = scrape_failed_kind(&request, ScrapeFailureKind::Timeout, "timed out");
    messages.push(stored(43, &request));
    messages.push(stored(44, &timeout));

    let projection = check(
        &messages,
        &[
            (SCANNED, Some(MachineState::Inventoried), None),
            (SILENT, Some(MachineState::ScrapeFailed), None),
            (RESCANNED, Some(MachineState::Inventoried), None),
        ],
    );
    let candidates = projection.rescan_candidates().unwrap();

    let mut ids: Vec<MachineId> = [SCANNED, LOCATED, SILENT, RESCANNED]
        .into_iter()
        .map(id)
        .collect();
    ids.sort();
    assert_eq!(
        candidates.iter().map(|c| c.machine_id).collect::<Vec<_>>(),
        ids,
        "machines with a Redfish URL, by machine id"
    );
    let of = |bmc: &str| {
        candidates
            .iter()
            .find(|c| c.machine_id == id(bmc))
            .unwrap_or_else(|| panic!("{bmc} is not a candidate"))
    };

    let scanned = of(SCANNED);
    let scrape_time = at(3);
    assert_eq!(scanned.bmc_mac, mac(SCANNED));
    assert_eq!(scanned.state, MachineState::Inventoried);
    assert_eq!(scanned.redfish_url, "https://10.0.0.1");
    assert_eq!(scanned.last_tried, Some(scrape_time));
    assert_eq!(scanned.last_seen, Some(scrape_time));
    assert_eq!(scanned.failing_since, None);
    assert_eq!(scanned.last_error, None);
    assert!(!scanned.lost);
    let scanned_event = match scanned_inventory.decode() {
        metal_core::Decoded::Event(envelope) => envelope.event_id,
        other => panic!("scrape fixture does not decode: {other:?}"),
    };
    assert_eq!(
        scanned.inventory,
        Some(InventoryRef {
            event_id: scanned_event,
            sequence: 3
        })
    );

    let located = of(LOCATED);
    assert_eq!(located.state, MachineState::Located);
    assert_eq!(located.redfish_url, "https://10.0.0.2");
    assert_eq!(
        (located.last_tried, located.last_seen, located.failing_since),
        (None, None, None)
    );
    assert_eq!(located.inventory, None);
    assert!(!located.lost);

    let silent = of(SILENT);
    assert_eq!(silent.state, MachineState::ScrapeFailed);
    assert_eq!(silent.last_tried, Some(failed.time));
    assert_eq!(silent.last_seen, None);
    assert_eq!(silent.failing_since, Some(failed.time));
    assert!(silent
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("no route to host")));
    assert!(silent.lost);
    assert_eq!(silent.inventory, None);

    let rescanned = of(RESCANNED);
    assert_eq!(rescanned.state, MachineState::Inventoried);
    assert_eq!(rescanned.last_seen, Some(at(42)));
    assert_eq!(rescanned.last_tried, Some(timeout.time));
    assert_eq!(rescanned.failing_since, Some(timeout.time));
    assert!(!rescanned.lost);
    assert_eq!(
        rescanned.inventory.map(|i| i.sequence),
        Some(42),
        "a failed rescan keeps the last inventory"
    );
}

#[test]
fn rescan_candidates_of_an_empty_projection() {
    let projection = check(&[], &[]);
    assert_eq!(projection.rescan_candidates().unwrap(), Vec::new());
}

#[test]
fn a_rescan_replaces_the_hardware_rows_of_the_inventory_before() {
    const FIRST_NIC: &str = "52:54:00:00:20:01";
    const SECOND_NIC: &str = "52:54:00:00:20:02";
    const NEW_NIC: &str = "52:54:00:00:20:03";
    let mut messages = onboarding(
        1,
        RESCANNED,
        inventory("DL380", "Intel Xeon", &[FIRST_NIC, SECOND_NIC]),
    );
    let request = rescan(4, RESCANNED, Some(3));
    // One NIC fewer: the first slot has a new MAC, the second slot is gone.
    let answer = scraped(&request, inventory("DL380", "Intel Xeon", &[NEW_NIC]));
    messages.push(stored(4, &request));
    messages.push(stored(5, &answer));

    let projection = check(
        &messages,
        &[(RESCANNED, Some(MachineState::Inventoried), None)],
    );
    assert_eq!(projection.resolve(NEW_NIC).unwrap(), Some(id(RESCANNED)));
    assert_eq!(projection.resolve(FIRST_NIC).unwrap(), None);
    assert_eq!(
        projection.resolve(SECOND_NIC).unwrap(),
        None,
        "the slot only the first inventory had is gone"
    );
}
