//! Validation: which spec a machine must meet and the verdict on its inventory. Pure: the
//! handler ([`crate::ValidateHandler`]) reads the machine from its projection and publishes
//! what [`decide`] says.
//!
//! The spec is the operator's (`expected_spec`, `chosen_by` = `operator`), else the first
//! `[[map]]` rule's (`chosen_by` = `map`), else there is nothing to say. An operator's spec
//! the file does not define is a verdict too (`machine.hardware.invalid` with the one
//! failed rule `spec`), so `metal-cli provision` refuses the machine until it is fixed.

use std::path::Path;

use metal_core::events::{HardwareInvalid, HardwareValidated, RuleFailure};
use metal_core::query::MachineDetail;
use metal_core::specs::{self, Specs};

/// `chosen_by` of a spec the operator assigned (`machine.spec.assigned`).
pub const CHOSEN_BY_OPERATOR: &str = "operator";
/// `chosen_by` of a spec a `[[map]]` rule of the specs file gave.
pub const CHOSEN_BY_MAP: &str = "map";

/// What the validator answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// `machine.hardware.scraped`: a new inventory (onboarding or rescan).
    Scraped,
    /// `machine.spec.assigned`: the operator named the spec.
    SpecAssigned,
}

/// The verdict to publish.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Validated(HardwareValidated),
    Invalid(HardwareInvalid),
}

impl Verdict {
    pub fn event_type(&self) -> &'static str {
        match self {
            Verdict::Validated(_) => metal_core::subjects::HARDWARE_VALIDATED,
            Verdict::Invalid(_) => metal_core::subjects::HARDWARE_INVALID,
        }
    }
}

/// The verdict on `machine` as the projection knows it, or `None` when there is nothing to
/// say: no spec applies, or there is no inventory to check yet. `specs_file` only names
/// the file in the failure of an unknown operator spec.
///
/// The machine's current state decides, not the cause's data: when the projection is
/// already past the cause (a later assignment, a later scrape), the newest facts win, so
/// answers handled out of order never leave an outdated verdict last.
pub fn decide(
    cause: Cause,
    machine: &MachineDetail,
    specs: &Specs,
    specs_file: &Path,
) -> Option<Verdict> {
    let (spec, chosen_by) = match &machine.expected_spec {
        Some(name) => match specs.get(name) {
            Some(spec) => (spec, CHOSEN_BY_OPERATOR),
            None => {
                let known: Vec<&str> = specs.specs().iter().map(|s| s.name.as_str()).collect();
                return Some(Verdict::Invalid(HardwareInvalid {
                    spec: name.clone(),
                    chosen_by: CHOSEN_BY_OPERATOR.to_string(),
                    inventory: machine.inventory_event,
                    failures: vec![RuleFailure {
                        rule: "spec".to_string(),
                        wanted: format!("a spec named {name} in {}", specs_file.display()),
                        found: format!("no such spec (specs: {})", known.join(", ")),
                    }],
                }));
            }
        },
        // An assignment the projection did not record (the machine was never onboarded):
        // nothing to check against.
        None if cause == Cause::SpecAssigned => return None,
        None => {
            let inventory = machine.inventory.as_ref()?;
            (specs.spec_for(inventory)?, CHOSEN_BY_MAP)
        }
    };
    // Assigned before the first scrape: the scrape's answer will check it.
    let (Some(inventory), Some(reference)) = (&machine.inventory, machine.inventory_event) else {
        return None;
    };
    let failures = spec.check(inventory);
    if failures.is_empty() {
        Some(Verdict::Validated(HardwareValidated {
            spec: spec.name.clone(),
            chosen_by: chosen_by.to_string(),
            inventory: reference,
        }))
    } else {
        Some(Verdict::Invalid(HardwareInvalid {
            spec: spec.name.clone(),
            chosen_by: chosen_by.to_string(),
            inventory: Some(reference),
            failures: failures.into_iter().map(event_failure).collect(),
        }))
    }
}

/// `metal_core::specs`' failure as the event carries it.
fn event_failure(failure: specs::RuleFailure) -> RuleFailure {
    RuleFailure {
        rule: failure.rule,
        wanted: failure.wanted,
        found: failure.found,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metal_core::events::InventoryRef;
    use metal_core::inventory::{Drive, Inventory, SystemInventory};
    use metal_core::query::{MachineRow, MachineState};
    use metal_core::{Mac, MachineId};

    const SPECS: &str = r#"
[[spec]]
name = "two-drives"
[[spec.drives]]
count = 2

[[spec]]
name = "acme-box"
manufacturer = "Acme*"

[[map]]
manufacturer = "Acme*"
spec = "acme-box"
"#;

    fn specs() -> Specs {
        Specs::parse(SPECS, Path::new("specs.toml")).expect("test specs parse")
    }

    fn inventory(manufacturer: &str, drives: usize) -> Inventory {
        Inventory {
            systems: vec![SystemInventory {
                id: "1".to_string(),
                manufacturer: Some(manufacturer.to_string()),
                drives: (0..drives)
                    .map(|i| Drive {
                        path: format!("/redfish/v1/Systems/1/Storage/1/Drives/{i}"),
                        serial: Some(format!("S{i}")),
                        ..Drive::default()
                    })
                    .collect(),
                ..SystemInventory::default()
            }],
            ..Inventory::default()
        }
    }

    const SCRAPE: InventoryRef = InventoryRef {
        event_id: uuid::Uuid::from_u128(7),
        sequence: 42,
    };

    fn machine(inventory: Option<Inventory>, expected_spec: Option<&str>) -> MachineDetail {
        let bmc_mac = Mac::parse_any("aa:bb:cc:00:00:01").expect("test MAC");
        let time = time::OffsetDateTime::UNIX_EPOCH;
        MachineDetail {
            machine: MachineRow {
                machine_id: MachineId::from_bmc_mac(&bmc_mac),
                bmc_mac,
                bmc_ip: None,
                redfish_url: Some("http://127.0.0.1:8000".to_string()),
                state: MachineState::Inventoried,
                state_reason: None,
                correlation_id: uuid::Uuid::from_u128(1),
                system_model: None,
                cpu_count: 0,
                memory_mib: 0,
                host_nic_count: 0,
                created_at: time,
                updated_at: time,
            },
            summary: None,
            inventory_event: inventory.as_ref().map(|_| SCRAPE),
            inventory,
            last_sequence: 42,
            tags: Default::default(),
            provisioning: None,
            expected_spec: expected_spec.map(str::to_string),
            validation: None,
            bmc_health: Default::default(),
        }
    }

    fn decide_for(cause: Cause, machine: &MachineDetail) -> Option<Verdict> {
        decide(cause, machine, &specs(), Path::new("specs.toml"))
    }

    #[test]
    fn the_operators_spec_is_checked_first() {
        // The map would give acme-box (which fits); the operator's two-drives does not.
        let m = machine(Some(inventory("Acme Corp", 1)), Some("two-drives"));
        let Some(Verdict::Invalid(invalid)) = decide_for(Cause::Scraped, &m) else {
            panic!("expected invalid");
        };
        assert_eq!(invalid.spec, "two-drives");
        assert_eq!(invalid.chosen_by, "operator");
        assert_eq!(invalid.inventory, Some(SCRAPE));
        assert_eq!(invalid.failures.len(), 1);
        assert_eq!(invalid.failures[0].rule, "drives");

        let m = machine(Some(inventory("Other", 2)), Some("two-drives"));
        assert_eq!(
            decide_for(Cause::SpecAssigned, &m),
            Some(Verdict::Validated(HardwareValidated {
                spec: "two-drives".to_string(),
                chosen_by: "operator".to_string(),
                inventory: SCRAPE,
            }))
        );
    }

    #[test]
    fn without_an_operators_spec_the_map_chooses() {
        let m = machine(Some(inventory("Acme Corp", 0)), None);
        let verdict = decide_for(Cause::Scraped, &m);
        assert_eq!(
            verdict,
            Some(Verdict::Validated(HardwareValidated {
                spec: "acme-box".to_string(),
                chosen_by: "map".to_string(),
                inventory: SCRAPE,
            }))
        );
        assert_eq!(
            verdict.map(|v| v.event_type()),
            Some(metal_core::subjects::HARDWARE_VALIDATED)
        );
    }

    #[test]
    fn no_spec_no_verdict() {
        // No rule maps it and nobody named one.
        let m = machine(Some(inventory("Other", 2)), None);
        assert_eq!(decide_for(Cause::Scraped, &m), None);
        // An assignment the projection did not record says nothing either, even when the
        // map would give a spec (the scrape's own answer said that).
        let m = machine(Some(inventory("Acme Corp", 2)), None);
        assert_eq!(decide_for(Cause::SpecAssigned, &m), None);
    }

    #[test]
    fn an_unknown_operator_spec_is_invalid_naming_the_file_and_the_specs() {
        for inv in [Some(inventory("Acme Corp", 2)), None] {
            let had_inventory = inv.is_some();
            let m = machine(inv, Some("r999"));
            let Some(Verdict::Invalid(invalid)) = decide_for(Cause::SpecAssigned, &m) else {
                panic!("expected invalid");
            };
            assert_eq!(invalid.spec, "r999");
            assert_eq!(invalid.chosen_by, "operator");
            assert_eq!(invalid.inventory, had_inventory.then_some(SCRAPE));
            assert_eq!(
                invalid.failures,
                vec![RuleFailure {
                    rule: "spec".to_string(),
                    wanted: "a spec named r999 in specs.toml".to_string(),
                    found: "no such spec (specs: two-drives, acme-box)".to_string(),
                }]
            );
        }
    }

    #[test]
    fn a_spec_assigned_before_the_first_scrape_waits_for_it() {
        let m = machine(None, Some("two-drives"));
        assert_eq!(decide_for(Cause::SpecAssigned, &m), None);
        assert_eq!(decide_for(Cause::Scraped, &m), None);
        // The map needs an inventory too.
        let m = machine(None, None);
        assert_eq!(decide_for(Cause::Scraped, &m), None);
    }
}
