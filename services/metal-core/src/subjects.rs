//! Subject names: the event types on the `MACHINES` stream and the query API subjects.
//! Every event subject is also its envelope `type`.

pub const STREAM: &str = "MACHINES";
pub const ALL_EVENTS: &str = "machine.>";

pub const ONBOARD_REQUESTED: &str = "machine.onboard.requested";
pub const ONBOARD_REJECTED: &str = "machine.onboard.rejected";
pub const BMC_LOCATED: &str = "machine.bmc.located";
pub const LOCATE_FAILED: &str = "machine.locate.failed";
pub const HARDWARE_SCRAPED: &str = "machine.hardware.scraped";
pub const SCRAPE_FAILED: &str = "machine.scrape.failed";
pub const RESCAN_REQUESTED: &str = "machine.rescan.requested";
pub const HARDWARE_CHANGED: &str = "machine.hardware.changed";
pub const TAGS_CHANGED: &str = "machine.tags.changed";
pub const PROVISION_REQUESTED: &str = "machine.provision.requested";
pub const PROVISION_FAILED: &str = "machine.provision.failed";
pub const PROFILE_ASSIGNED: &str = "machine.profile.assigned";
pub const POWER_REQUESTED: &str = "machine.power.requested";
pub const POWER_DONE: &str = "machine.power.done";
pub const POWER_FAILED: &str = "machine.power.failed";
pub const BOOT_SERVED: &str = "machine.boot.served";
pub const BOOT_IGNORED: &str = "machine.boot.ignored";
pub const BOOT_UNKNOWN: &str = "machine.boot.unknown";
pub const INSTALL_COMPLETED: &str = "machine.install.completed";
pub const INSTALL_FAILED: &str = "machine.install.failed";
pub const INSTALL_REJECTED: &str = "machine.install.rejected";
pub const SPEC_ASSIGNED: &str = "machine.spec.assigned";
pub const HARDWARE_VALIDATED: &str = "machine.hardware.validated";
pub const HARDWARE_INVALID: &str = "machine.hardware.invalid";
pub const BMC_LOST: &str = "machine.bmc.lost";
pub const BMC_FOUND: &str = "machine.bmc.found";
pub const RETIRE_REQUESTED: &str = "machine.retire.requested";
pub const WIPE_COMPLETED: &str = "machine.wipe.completed";
pub const RETIRED: &str = "machine.retired";
pub const INPUT_ABANDONED: &str = "machine.input.abandoned";

/// The JetStream object store bucket of raw scrape bundles.
pub const RAW_BUCKET: &str = "machine-raw";

/// Every event subject this workspace produces or consumes, for docs and schema checks.
pub const EVENT_SUBJECTS: &[&str] = &[
    ONBOARD_REQUESTED,
    ONBOARD_REJECTED,
    BMC_LOCATED,
    LOCATE_FAILED,
    HARDWARE_SCRAPED,
    SCRAPE_FAILED,
    RESCAN_REQUESTED,
    HARDWARE_CHANGED,
    TAGS_CHANGED,
    PROVISION_REQUESTED,
    PROVISION_FAILED,
    PROFILE_ASSIGNED,
    POWER_REQUESTED,
    POWER_DONE,
    POWER_FAILED,
    BOOT_SERVED,
    BOOT_IGNORED,
    BOOT_UNKNOWN,
    INSTALL_COMPLETED,
    INSTALL_FAILED,
    INSTALL_REJECTED,
    SPEC_ASSIGNED,
    HARDWARE_VALIDATED,
    HARDWARE_INVALID,
    BMC_LOST,
    BMC_FOUND,
    RETIRE_REQUESTED,
    WIPE_COMPLETED,
    RETIRED,
    INPUT_ABANDONED,
];

/// Whether `subject` is one of boot-api's records of its boot answers (`machine.boot.*`).
pub fn is_boot_record(subject: &str) -> bool {
    matches!(subject, BOOT_SERVED | BOOT_IGNORED | BOOT_UNKNOWN)
}

/// Every event subject but the boot records: what boot-api's own projection follows.
/// A boot storm stores one record per booting MAC, and boot-api answers the same whether or
/// not it has read them, so the server leaves them out instead of boot-api reading each back.
pub fn without_boot_records() -> Vec<String> {
    EVENT_SUBJECTS
        .iter()
        .filter(|subject| !is_boot_record(subject))
        .map(|subject| subject.to_string())
        .collect()
}

/// The service that publishes events of `event_type`, as checked against each publish
/// site; requests come from the operator's tool. `machine.rescan.requested` is also
/// published by validator for periodic rescans (its `requested_by` says so). `None` for a
/// type this workspace does not produce.
pub fn responder(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        ONBOARD_REQUESTED | RESCAN_REQUESTED | TAGS_CHANGED | PROVISION_REQUESTED
        | POWER_REQUESTED | SPEC_ASSIGNED | RETIRE_REQUESTED => "metal-cli",
        ONBOARD_REJECTED | BMC_LOCATED | LOCATE_FAILED => "locator",
        HARDWARE_SCRAPED | SCRAPE_FAILED | HARDWARE_CHANGED | POWER_DONE | POWER_FAILED
        | RETIRED => "redfish-scraper",
        PROVISION_FAILED | PROFILE_ASSIGNED | BOOT_SERVED | BOOT_IGNORED | BOOT_UNKNOWN
        | INSTALL_COMPLETED | INSTALL_FAILED | INSTALL_REJECTED | WIPE_COMPLETED => "boot-api",
        HARDWARE_VALIDATED | HARDWARE_INVALID | BMC_LOST | BMC_FOUND => "validator",
        // Published by the shared consumer loop of whichever responder gave up (its data
        // names the consumer).
        INPUT_ABANDONED => "any responder",
        _ => return None,
    })
}

/// The inventory query service (NATS micro). Deliberately outside `machine.>`, so
/// queries are never captured by the stream.
pub const QUERY_SERVICE_NAME: &str = "metal-inventory";
pub const QUERY_PREFIX: &str = "metal.inventory";
pub const QUERY_MACHINES: &str = "metal.inventory.machines";
pub const QUERY_MACHINE: &str = "metal.inventory.machine";
pub const QUERY_HISTORY: &str = "metal.inventory.history";
pub const QUERY_EXPORT: &str = "metal.inventory.export";
pub const QUERY_REPLAY: &str = "metal.inventory.replay";
pub const QUERY_STATUS: &str = "metal.inventory.status";
pub const QUERY_UNKNOWN: &str = "metal.inventory.unknown";
pub const QUERY_DRIFT: &str = "metal.inventory.drift";

/// The locator's own service (NATS micro): what every source says about a MAC right
/// now, onboarding nothing. Outside `machine.>` for the same reason.
pub const LOCATE_SERVICE_NAME: &str = "metal-locator";
pub const LOCATE: &str = "metal.locator.locate";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_subject_has_its_responder() {
        let table = [
            (ONBOARD_REQUESTED, "metal-cli"),
            (ONBOARD_REJECTED, "locator"),
            (BMC_LOCATED, "locator"),
            (LOCATE_FAILED, "locator"),
            (HARDWARE_SCRAPED, "redfish-scraper"),
            (SCRAPE_FAILED, "redfish-scraper"),
            (RESCAN_REQUESTED, "metal-cli"),
            (HARDWARE_CHANGED, "redfish-scraper"),
            (TAGS_CHANGED, "metal-cli"),
            (PROVISION_REQUESTED, "metal-cli"),
            (PROVISION_FAILED, "boot-api"),
            (PROFILE_ASSIGNED, "boot-api"),
            (POWER_REQUESTED, "metal-cli"),
            (POWER_DONE, "redfish-scraper"),
            (POWER_FAILED, "redfish-scraper"),
            (BOOT_SERVED, "boot-api"),
            (BOOT_IGNORED, "boot-api"),
            (BOOT_UNKNOWN, "boot-api"),
            (INSTALL_COMPLETED, "boot-api"),
            (INSTALL_FAILED, "boot-api"),
            (INSTALL_REJECTED, "boot-api"),
            (SPEC_ASSIGNED, "metal-cli"),
            (HARDWARE_VALIDATED, "validator"),
            (HARDWARE_INVALID, "validator"),
            (BMC_LOST, "validator"),
            (BMC_FOUND, "validator"),
            (RETIRE_REQUESTED, "metal-cli"),
            (WIPE_COMPLETED, "boot-api"),
            (RETIRED, "redfish-scraper"),
            (INPUT_ABANDONED, "any responder"),
        ];
        assert_eq!(table.len(), EVENT_SUBJECTS.len());
        for subject in EVENT_SUBJECTS {
            let expected = table
                .iter()
                .find(|(s, _)| s == subject)
                .map(|(_, who)| *who);
            assert_eq!(responder(subject), expected, "{subject}");
            assert!(expected.is_some(), "{subject} has no responder");
        }
        assert_eq!(responder("machine.unheard.of"), None);
    }
}
