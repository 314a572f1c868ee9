//! The projection's tables. Every table has a natural primary key, so the canonical export
//! can sort by it and never depends on rowids or insertion order.

use rusqlite::{Connection, OptionalExtension};

use crate::{sql, ProjectionError};

/// The schema version this binary writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 5;

/// Tables in export order, each with its primary-key ordering.
pub const TABLES: &[(&str, &str)] = &[
    ("meta", "id"),
    ("machines", "machine_id"),
    ("inventories", "machine_id"),
    ("nics", "machine_id, kind, interface"),
    ("processors", "machine_id, system_id, processor_id"),
    ("memory", "machine_id, system_id, module_id"),
    ("drives", "machine_id, system_id, path"),
    ("firmware", "machine_id, firmware_id"),
    ("tags", "machine_id, key"),
    ("unknown_macs", "mac"),
    ("events", "sequence"),
];

const SCHEMA_V1: &str = "
CREATE TABLE meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_sequence INTEGER NOT NULL
);
INSERT INTO meta (id, last_sequence) VALUES (1, 0);

CREATE TABLE machines (
    machine_id TEXT PRIMARY KEY,
    bmc_mac TEXT NOT NULL,
    bmc_ip TEXT,
    redfish_url TEXT,
    state TEXT NOT NULL,
    state_reason TEXT,
    correlation_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    inventory TEXT,
    inventory_event_id TEXT,
    system_model TEXT,
    cpu_vendor TEXT,
    cpu_count INTEGER NOT NULL DEFAULT 0,
    memory_mib INTEGER NOT NULL DEFAULT 0,
    host_nic_count INTEGER NOT NULL DEFAULT 0,
    drive_count INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX machines_by_bmc_mac ON machines (bmc_mac);

-- Not unique by MAC: HPE iLOs all report the same virtual BMC NIC.
CREATE TABLE nics (
    machine_id TEXT NOT NULL REFERENCES machines (machine_id),
    kind TEXT NOT NULL CHECK (kind IN ('host', 'bmc')),
    interface TEXT NOT NULL,
    mac TEXT,
    permanent_mac TEXT,
    PRIMARY KEY (machine_id, kind, interface)
) WITHOUT ROWID;
CREATE INDEX nics_by_mac ON nics (mac, kind);

CREATE TABLE processors (
    machine_id TEXT NOT NULL REFERENCES machines (machine_id),
    system_id TEXT NOT NULL,
    processor_id TEXT NOT NULL,
    socket TEXT,
    processor_type TEXT,
    state TEXT,
    manufacturer TEXT,
    model TEXT,
    vendor TEXT NOT NULL,
    total_cores INTEGER,
    total_threads INTEGER,
    PRIMARY KEY (machine_id, system_id, processor_id)
) WITHOUT ROWID;

CREATE TABLE memory (
    machine_id TEXT NOT NULL REFERENCES machines (machine_id),
    system_id TEXT NOT NULL,
    module_id TEXT NOT NULL,
    state TEXT,
    capacity_mib INTEGER,
    device_locator TEXT,
    PRIMARY KEY (machine_id, system_id, module_id)
) WITHOUT ROWID;

CREATE TABLE drives (
    machine_id TEXT NOT NULL REFERENCES machines (machine_id),
    system_id TEXT NOT NULL,
    path TEXT NOT NULL,
    serial TEXT,
    model TEXT,
    capacity_bytes INTEGER,
    media_type TEXT,
    protocol TEXT,
    PRIMARY KEY (machine_id, system_id, path)
) WITHOUT ROWID;
CREATE INDEX drives_by_serial ON drives (serial);

CREATE TABLE firmware (
    machine_id TEXT NOT NULL REFERENCES machines (machine_id),
    firmware_id TEXT NOT NULL,
    name TEXT,
    version TEXT,
    PRIMARY KEY (machine_id, firmware_id)
) WITHOUT ROWID;

-- The timeline: one row per stream message that carried an event (rejections and
-- malformed messages have no machine).
CREATE TABLE events (
    sequence INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    machine_id TEXT,
    type TEXT NOT NULL,
    time TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    causation_id TEXT,
    applied INTEGER NOT NULL,
    summary TEXT NOT NULL
);
CREATE INDEX events_by_machine ON events (machine_id, sequence);
";

/// Version 2: rescans (the correlation of the machine's current rescan, whose answers
/// update the inventory but whose failure leaves the machine as it was) and lookups by
/// permanent MAC.
const SCHEMA_V2: &str = "
ALTER TABLE machines ADD COLUMN rescan_correlation_id TEXT;
CREATE INDEX nics_by_permanent_mac ON nics (permanent_mac, kind);
";

/// Version 3: provisioning (the current provisioning's id and its profile, carried whole
/// from `machine.profile.assigned`), operator tags, and MACs that netbooted unknown.
const SCHEMA_V3: &str = "
ALTER TABLE machines ADD COLUMN provision_id TEXT;
ALTER TABLE machines ADD COLUMN profile TEXT;
ALTER TABLE machines ADD COLUMN boot_spec TEXT;
ALTER TABLE machines ADD COLUMN provisioned_at TEXT;

CREATE TABLE tags (
    machine_id TEXT NOT NULL REFERENCES machines (machine_id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (machine_id, key)
) WITHOUT ROWID;

CREATE TABLE unknown_macs (
    mac TEXT PRIMARY KEY,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    events INTEGER NOT NULL,
    last_reason TEXT NOT NULL
) WITHOUT ROWID;
";

/// Version 4: each inventory's JSON in a table of its own. In `machines` (a `WITHOUT
/// ROWID` table, whose rows live in the index itself) the 2 KB document made every row
/// span overflow pages, so reading a machine's state walked them and each state change
/// rewrote them; boot-api applies one such change per boot during a boot storm.
const SCHEMA_V4: &str = "
CREATE TABLE inventories (
    machine_id TEXT PRIMARY KEY REFERENCES machines (machine_id),
    inventory TEXT NOT NULL
);
INSERT INTO inventories (machine_id, inventory)
    SELECT machine_id, inventory FROM machines WHERE inventory IS NOT NULL;
ALTER TABLE machines DROP COLUMN inventory;
";

/// Version 5: the rest of a machine's life: the spec it is expected to meet and the
/// validator's verdict (JSON of `metal_core::query::Validation`), its BMC's health from the
/// scrapes' outcomes, and the retirement in progress.
const SCHEMA_V5: &str = "
ALTER TABLE machines ADD COLUMN expected_spec TEXT;
ALTER TABLE machines ADD COLUMN validation TEXT;
ALTER TABLE machines ADD COLUMN bmc_last_seen TEXT;
ALTER TABLE machines ADD COLUMN bmc_last_tried TEXT;
ALTER TABLE machines ADD COLUMN bmc_failing_since TEXT;
ALTER TABLE machines ADD COLUMN bmc_last_error TEXT;
ALTER TABLE machines ADD COLUMN bmc_lost INTEGER NOT NULL DEFAULT 0;
ALTER TABLE machines ADD COLUMN retire_id TEXT;
";

/// Brings the schema to [`SCHEMA_VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<(), ProjectionError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(sql("reading schema version"))?;
    if version > SCHEMA_VERSION {
        return Err(ProjectionError::SchemaTooNew {
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction().map_err(sql("starting migration"))?;
    if version < 1 {
        tx.execute_batch(SCHEMA_V1)
            .map_err(sql("creating schema"))?;
    }
    if version < 2 {
        tx.execute_batch(SCHEMA_V2)
            .map_err(sql("migrating schema to version 2"))?;
    }
    if version < 3 {
        tx.execute_batch(SCHEMA_V3)
            .map_err(sql("migrating schema to version 3"))?;
    }
    if version < 4 {
        tx.execute_batch(SCHEMA_V4)
            .map_err(sql("migrating schema to version 4"))?;
    }
    if version < 5 {
        tx.execute_batch(SCHEMA_V5)
            .map_err(sql("migrating schema to version 5"))?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
        .map_err(sql("setting schema version"))?;
    tx.commit().map_err(sql("committing migration"))
}

/// Drops every index the schema created with `CREATE INDEX` (not those behind primary keys
/// and `UNIQUE` constraints, which applying reads) and returns their exact statements, so
/// that running them again restores the same schema.
pub(crate) fn drop_secondary_indexes(conn: &Connection) -> Result<Vec<String>, ProjectionError> {
    let indexes: Vec<(String, String)> = conn
        .prepare(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL
             ORDER BY name",
        )
        .and_then(|mut statement| {
            statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect()
        })
        .map_err(sql("listing indexes"))?;
    for (name, _) in &indexes {
        conn.execute_batch(&format!("DROP INDEX \"{name}\""))
            .map_err(sql("dropping an index until the rebuild ends"))?;
    }
    Ok(indexes.into_iter().map(|(_, sql)| sql).collect())
}

pub(crate) fn last_sequence(conn: &Connection) -> Result<u64, ProjectionError> {
    let value: Option<i64> = conn
        .prepare_cached("SELECT last_sequence FROM meta WHERE id = 1")
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
        .optional()
        .map_err(sql("reading last sequence"))?;
    Ok(value.unwrap_or(0).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_3_inventories_move_to_their_own_table() {
        let mut conn = Connection::open_in_memory().expect("in-memory database");
        for step in [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, "PRAGMA user_version = 3"] {
            conn.execute_batch(step).expect("schema step");
        }
        conn.execute_batch(
            "INSERT INTO machines (machine_id, bmc_mac, state, correlation_id, created_at,
                 updated_at, inventory, inventory_event_id)
             VALUES ('m-1', '00:00:5e:00:53:01', 'inventoried', 'c', 't', 't', '{\"a\":1}', 'e'),
                    ('m-2', '00:00:5e:00:53:02', 'located', 'c', 't', 't', NULL, NULL);",
        )
        .expect("version 3 rows");

        migrate(&mut conn).expect("migration");

        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        let moved: Vec<(String, String)> = conn
            .prepare("SELECT machine_id, inventory FROM inventories ORDER BY machine_id")
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .expect("inventories");
        assert_eq!(moved, vec![("m-1".to_string(), "{\"a\":1}".to_string())]);
        let left = conn.prepare("SELECT inventory FROM machines");
        assert!(left.is_err(), "machines still has an inventory column");
        let kept: String = conn
            .query_row(
                "SELECT inventory_event_id FROM machines WHERE machine_id = 'm-1'",
                [],
                |row| row.get(0),
            )
            .expect("machine row");
        assert_eq!(kept, "e");
    }
}
