//! [`Projection::machines_page`] (filters and the page cut in SQL) against the same filters
//! applied in Rust to [`Projection::machines`], for several filters and every cursor.

use std::collections::BTreeMap;

use metal_core::events::TagsChanged;
use metal_core::inventory::{AdapterPort, ChassisInventory, Inventory, NetworkAdapter};
use metal_core::query::{MachineRow, MachineState};
use metal_core::{subjects, Mac, MachineId};

use crate::fixtures::{
    about_provisioning, assigned, inventory, mac, onboarding, provision, request, stored,
};
use crate::{MachinesQuery, Projection};

/// Eight machines: Intel and AMD models, one only requested (no inventory), two armed
/// with G1 and one with G2, tags on three, a permanent MAC, a chassis adapter port MAC.
fn fleet() -> Projection {
    let mut messages = Vec::new();
    let mut sequence = 1;
    let mut onboard = |bmc: &str, inventory: Inventory, messages: &mut Vec<_>| {
        messages.extend(onboarding(sequence, bmc, inventory));
        sequence += 3;
    };
    onboard(
        "aa:bb:cc:00:00:01",
        inventory("DL360 Gen10", "Intel Xeon", &["52:54:00:00:01:01"]),
        &mut messages,
    );
    onboard(
        "aa:bb:cc:00:00:02",
        inventory("DL385 Gen10", "AMD EPYC 7302", &["52:54:00:00:02:01"]),
        &mut messages,
    );
    onboard(
        "aa:bb:cc:00:00:03",
        inventory(
            "R640",
            "Intel Xeon",
            &["52:54:00:00:03:01", "52:54:00:00:03:02"],
        ),
        &mut messages,
    );
    let mut permanent = inventory("R650", "Intel Xeon", &["52:54:00:00:04:01"]);
    permanent.systems[0].ethernet_interfaces[0].permanent_mac = Some(mac("02:00:00:00:04:99"));
    permanent.systems[0].serial = Some("CZJ-Serial-0004".to_string());
    onboard("aa:bb:cc:00:00:04", permanent, &mut messages);
    let mut chassis = inventory("PowerEdge R750", "Intel Xeon", &["52:54:00:00:05:01"]);
    chassis.chassis = vec![ChassisInventory {
        id: "1".to_string(),
        network_adapters: vec![NetworkAdapter {
            id: "NIC.Slot.1".to_string(),
            ports: vec![AdapterPort {
                id: "1".to_string(),
                macs: vec![mac("b8:59:9f:00:05:77")],
                ..AdapterPort::default()
            }],
            ..NetworkAdapter::default()
        }],
        ..ChassisInventory::default()
    }];
    onboard("aa:bb:cc:00:00:05", chassis, &mut messages);
    onboard(
        "aa:bb:cc:00:00:06",
        inventory("DL385 Gen10 Plus", "AMD EPYC 7763", &["52:54:00:00:06:01"]),
        &mut messages,
    );
    onboard(
        "aa:bb:cc:00:00:07",
        inventory("DL360 Gen10", "Intel Xeon", &["52:54:00:00:07:01"]),
        &mut messages,
    );
    let mut sequence = 100;
    let (requested, _) = request(sequence, "aa:bb:cc:00:00:08");
    messages.push(requested);
    for (bmc, profile) in [
        ("aa:bb:cc:00:00:01", "G1"),
        ("aa:bb:cc:00:00:03", "G1"),
        ("aa:bb:cc:00:00:06", "G2"),
    ] {
        sequence += 2;
        let p = provision(sequence, bmc, None);
        messages.extend([
            stored(sequence, &p),
            stored(sequence + 1, &assigned(&p, profile)),
        ]);
    }
    for (bmc, set) in [
        ("aa:bb:cc:00:00:01", vec![("rack", "a1"), ("role", "db")]),
        ("aa:bb:cc:00:00:02", vec![("rack", "a1")]),
        ("aa:bb:cc:00:00:05", vec![("rack", "b2"), ("role", "db")]),
    ] {
        sequence += 2;
        let p = provision(sequence, bmc, None);
        let tags = about_provisioning(
            &p,
            subjects::TAGS_CHANGED,
            &TagsChanged {
                set: set
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                removed: Vec::new(),
                requested_by: None,
            },
            1,
        );
        messages.push(stored(sequence, &tags));
    }
    let mut projection = Projection::open_in_memory().unwrap();
    projection.apply_batch(&messages).unwrap();
    projection
}

/// The filter in Rust, over the full list and each machine's detail: the reference.
fn expected(projection: &Projection, query: &MachinesQuery) -> (Vec<MachineRow>, bool) {
    let mut matching = Vec::new();
    for row in projection.machines().unwrap().machines {
        if query.after.is_some_and(|after| row.machine_id <= after)
            || query.state.is_some_and(|state| row.state != state)
        {
            continue;
        }
        let detail = projection
            .machine(&row.machine_id.to_string())
            .unwrap()
            .unwrap();
        if let Some(profile) = &query.profile {
            if detail.provisioning.as_ref().map(|p| &*p.profile) != Some(profile.as_str()) {
                continue;
            }
        }
        let tags: &BTreeMap<String, String> = &detail.tags;
        let tagged = query.tags.iter().all(|(key, value)| match value {
            Some(value) => tags.get(key) == Some(value),
            None => tags.contains_key(key),
        });
        if !tagged {
            continue;
        }
        if let Some((text, spelt)) = &query.text {
            let contains = |v: &Option<String>| {
                v.as_deref()
                    .is_some_and(|v| v.to_lowercase().contains(text.as_str()))
            };
            let mac_matches = |m: &Mac| spelt.as_ref() == Some(m) || m.to_string().contains(text);
            let mut macs = vec![row.bmc_mac];
            let mut found = contains(&row.system_model);
            if let Some(inventory) = &detail.inventory {
                found |= inventory.systems.iter().any(|s| contains(&s.serial));
                macs.extend(
                    inventory
                        .systems
                        .iter()
                        .flat_map(|s| &s.ethernet_interfaces)
                        .chain(
                            inventory
                                .managers
                                .iter()
                                .flat_map(|m| &m.ethernet_interfaces),
                        )
                        .flat_map(|nic| [nic.mac, nic.permanent_mac])
                        .flatten(),
                );
                macs.extend(
                    inventory
                        .chassis
                        .iter()
                        .flat_map(|c| &c.network_adapters)
                        .flat_map(|a| &a.ports)
                        .flat_map(|p| p.macs.iter().copied()),
                );
            }
            if !(found || macs.iter().any(mac_matches)) {
                continue;
            }
        }
        matching.push(row);
    }
    let more = matching.len() > query.limit;
    matching.truncate(query.limit);
    (matching, more)
}

fn text(text: &str) -> Option<(String, Option<Mac>)> {
    Some((text.to_lowercase(), Mac::parse_any(text).ok()))
}

#[test]
fn sql_pages_match_the_filters_applied_in_rust() {
    let projection = fleet();
    let all = projection.machines().unwrap().machines;
    assert_eq!(all.len(), 8);
    let tag = |key: &str, value: Option<&str>| (key.to_string(), value.map(str::to_string));
    let filters = [
        MachinesQuery::default(),
        MachinesQuery {
            state: Some(MachineState::Inventoried),
            ..MachinesQuery::default()
        },
        MachinesQuery {
            state: Some(MachineState::Requested),
            ..MachinesQuery::default()
        },
        MachinesQuery {
            profile: Some("G1".to_string()),
            ..MachinesQuery::default()
        },
        MachinesQuery {
            profile: Some("G3".to_string()),
            ..MachinesQuery::default()
        },
        MachinesQuery {
            tags: vec![tag("rack", Some("a1"))],
            ..MachinesQuery::default()
        },
        MachinesQuery {
            tags: vec![tag("role", None)],
            ..MachinesQuery::default()
        },
        MachinesQuery {
            tags: vec![tag("rack", Some("a1")), tag("role", Some("db"))],
            ..MachinesQuery::default()
        },
        MachinesQuery {
            tags: vec![tag("rack", None)],
            profile: Some("G1".to_string()),
            ..MachinesQuery::default()
        },
        MachinesQuery {
            text: text("gen10"),
            ..MachinesQuery::default()
        },
        MachinesQuery {
            text: text("DL385"),
            state: Some(MachineState::Inventoried),
            ..MachinesQuery::default()
        },
        MachinesQuery {
            text: text("czj-serial"),
            ..MachinesQuery::default()
        },
        MachinesQuery {
            text: text("SN-R640"),
            ..MachinesQuery::default()
        },
        MachinesQuery {
            text: text("AA-BB-CC-00-00-03"),
            ..MachinesQuery::default()
        },
        MachinesQuery {
            text: text("525400000302"),
            ..MachinesQuery::default()
        },
        MachinesQuery {
            text: text("02:00:00:00:04:99"),
            ..MachinesQuery::default()
        },
        MachinesQuery {
            text: text("B8599F000577"),
            ..MachinesQuery::default()
        },
        MachinesQuery {
            text: text("05:77"),
            ..MachinesQuery::default()
        },
        MachinesQuery {
            text: text("0a:ca:fe:f0:0d:04"),
            ..MachinesQuery::default()
        },
        MachinesQuery {
            text: text("52:54:00"),
            tags: vec![tag("role", Some("db"))],
            ..MachinesQuery::default()
        },
        MachinesQuery {
            text: text("no such thing"),
            ..MachinesQuery::default()
        },
    ];
    let mut nonempty = 0;
    for filter in filters {
        for limit in [1, 2, 3, 50] {
            let cursors = std::iter::once(None).chain(all.iter().map(|row| Some(row.machine_id)));
            for after in cursors {
                let query = MachinesQuery {
                    limit,
                    after,
                    ..filter.clone()
                };
                let page = projection.machines_page(&query).unwrap();
                let (machines, more) = expected(&projection, &query);
                assert_eq!(page.machines, machines, "{query:?}");
                assert_eq!(page.more, more, "{query:?}");
                nonempty += usize::from(!machines.is_empty());
            }
        }
    }
    assert!(nonempty > 100, "the filters select too little: {nonempty}");
}

#[test]
fn sql_page_follows_cursors_through_a_filter() {
    let projection = fleet();
    let mut query = MachinesQuery {
        text: text("gen10"),
        limit: 1,
        ..MachinesQuery::default()
    };
    let mut seen: Vec<MachineId> = Vec::new();
    loop {
        let page = projection.machines_page(&query).unwrap();
        seen.extend(page.machines.iter().map(|row| row.machine_id));
        if !page.more {
            break;
        }
        query.after = seen.last().copied();
    }
    let models: Vec<MachineId> = projection
        .machines()
        .unwrap()
        .machines
        .into_iter()
        .filter(|row| {
            row.system_model
                .as_deref()
                .is_some_and(|m| m.to_lowercase().contains("gen10"))
        })
        .map(|row| row.machine_id)
        .collect();
    assert_eq!(seen, models);
    assert_eq!(seen.len(), 4);
}
