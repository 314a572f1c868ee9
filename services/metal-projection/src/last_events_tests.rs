//! [`Projection::last_events`]: each machine's newest timeline entry, over fixtures, and
//! the same answer as the last entry of [`Projection::history`].

use metal_core::{subjects, MachineId};

use crate::fixtures::{assigned, inventory, mac, onboarding, provision, request, stored};
use crate::Projection;

#[test]
fn last_events_are_each_machines_newest_timeline_entry() {
    let mut messages = onboarding(
        1,
        "aa:bb:cc:00:00:01",
        inventory("DL360 Gen10", "Intel Xeon", &["52:54:00:00:01:01"]),
    );
    messages.extend(onboarding(
        4,
        "aa:bb:cc:00:00:02",
        inventory("R640", "Intel Xeon", &["52:54:00:00:02:01"]),
    ));
    let (requested, _) = request(7, "aa:bb:cc:00:00:03");
    messages.push(requested);
    let p = provision(8, "aa:bb:cc:00:00:01", None);
    messages.extend([stored(8, &p), stored(9, &assigned(&p, "G1"))]);
    let mut projection = Projection::open_in_memory().unwrap();
    projection.apply_batch(&messages).unwrap();

    let id = |bmc: &str| MachineId::from_bmc_mac(&mac(bmc));
    let ids = [
        id("aa:bb:cc:00:00:01"),
        id("aa:bb:cc:00:00:02"),
        id("aa:bb:cc:00:00:03"),
        id("aa:bb:cc:00:00:99"),
    ];
    let last = projection.last_events(&ids).unwrap();
    assert_eq!(last.len(), 3, "{last:?}");
    assert_eq!(last[&ids[0]].event_type, subjects::PROFILE_ASSIGNED);
    assert_eq!(last[&ids[1]].event_type, subjects::HARDWARE_SCRAPED);
    assert_eq!(last[&ids[2]].event_type, subjects::ONBOARD_REQUESTED);
    assert!(!last.contains_key(&ids[3]), "an unknown machine has none");
    for machine_id in &ids[..3] {
        let history = projection
            .history(&machine_id.to_string())
            .unwrap()
            .unwrap();
        let newest = history.events.last().unwrap();
        assert_eq!(last[machine_id].event_type, newest.event_type);
        assert_eq!(last[machine_id].time, newest.time);
    }
    assert!(projection.last_events(&[]).unwrap().is_empty());
}
