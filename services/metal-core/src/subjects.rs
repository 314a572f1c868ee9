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
];

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

/// The locator's own service (NATS micro): what every source says about a MAC right
/// now, onboarding nothing. Outside `machine.>` for the same reason.
pub const LOCATE_SERVICE_NAME: &str = "metal-locator";
pub const LOCATE: &str = "metal.locator.locate";
