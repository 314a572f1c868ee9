//! The projection's tables. Every row has a natural key (a machine's inventory rows theirs
//! under the machine's id), so the canonical export sorts by it and never depends on rowids,
//! machine keys or insertion order.

use rusqlite::{Connection, OptionalExtension};

use crate::{sql, ProjectionError};

/// The schema version this binary writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 6;

/// The column holding a machine's internal integer key: never exported (see [`TABLES`]).
pub const MACHINE_KEY: &str = "machine_key";

/// A table as the canonical export lists it.
pub struct ExportedTable {
    pub name: &'static str,
    /// Keyed by [`MACHINE_KEY`]: exported with the machine's id in the key's place.
    by_machine: bool,
    /// The rest of its natural key, after the machine's id for a table keyed by machine.
    order: &'static str,
}

impl ExportedTable {
    const fn own(name: &'static str, order: &'static str) -> ExportedTable {
        ExportedTable {
            name,
            by_machine: false,
            order,
        }
    }

    const fn by_machine(name: &'static str, order: &'static str) -> ExportedTable {
        ExportedTable {
            name,
            by_machine: true,
            order,
        }
    }

    /// The query listing its rows sorted by natural key (machines by id, then the rest).
    pub fn query(&self) -> String {
        let (name, order) = (self.name, self.order);
        if !self.by_machine {
            return format!("SELECT * FROM {name} ORDER BY {order}");
        }
        let then = if order.is_empty() {
            String::new()
        } else {
            format!(", {order}")
        };
        format!(
            "SELECT m.machine_id, t.* FROM machines AS m JOIN {name} AS t USING (machine_key)
             ORDER BY m.machine_id{then}"
        )
    }
}

/// Tables in export order. Tables keyed by [`MACHINE_KEY`] are exported with the machine's
/// id in its place, so the export never depends on the order in which keys were given.
pub const TABLES: &[ExportedTable] = &[
    ExportedTable::own("meta", "id"),
    ExportedTable::own("machines", "machine_id"),
    ExportedTable::by_machine("inventories", ""),
    ExportedTable::by_machine("nics", "t.kind, t.interface"),
    ExportedTable::by_machine("processors", "t.system_id, t.processor_id"),
    ExportedTable::by_machine("memory", "t.system_id, t.module_id"),
    ExportedTable::by_machine("drives", "t.system_id, t.path"),
    ExportedTable::by_machine("firmware", "t.firmware_id"),
    ExportedTable::own("tags", "machine_id, key"),
    ExportedTable::own("unknown_macs", "mac"),
    ExportedTable::own("events", "sequence"),
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

/// Version 6: every machine has an integer key, given in order of first appearance, and the
/// tables of its inventory are keyed by it instead of by its 36-character id. Machine ids
/// are random, so a rebuild inserted each inventory's rows at random places in B-trees far
/// larger than the page cache; keys in order of appearance make those inserts appends
/// (replay 0.054 → 0.103 of the raw read at 1,000,002 events, docs/benchmarks.md).
/// `machines` becomes a rowid table whose rowid is the key, its id a unique column. Existing
/// machines get keys in the order of their first timeline event.
const SCHEMA_V6: &str = "
CREATE TABLE machines_v6 (
    machine_key INTEGER PRIMARY KEY,
    machine_id TEXT NOT NULL UNIQUE,
    bmc_mac TEXT NOT NULL,
    bmc_ip TEXT,
    redfish_url TEXT,
    state TEXT NOT NULL,
    state_reason TEXT,
    correlation_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    inventory_event_id TEXT,
    system_model TEXT,
    cpu_vendor TEXT,
    cpu_count INTEGER NOT NULL DEFAULT 0,
    memory_mib INTEGER NOT NULL DEFAULT 0,
    host_nic_count INTEGER NOT NULL DEFAULT 0,
    drive_count INTEGER NOT NULL DEFAULT 0,
    rescan_correlation_id TEXT,
    provision_id TEXT,
    profile TEXT,
    boot_spec TEXT,
    provisioned_at TEXT,
    expected_spec TEXT,
    validation TEXT,
    bmc_last_seen TEXT,
    bmc_last_tried TEXT,
    bmc_failing_since TEXT,
    bmc_last_error TEXT,
    bmc_lost INTEGER NOT NULL DEFAULT 0,
    retire_id TEXT
);
INSERT INTO machines_v6 (machine_id, bmc_mac, bmc_ip, redfish_url, state, state_reason,
    correlation_id, created_at, updated_at, inventory_event_id, system_model, cpu_vendor,
    cpu_count, memory_mib, host_nic_count, drive_count, rescan_correlation_id, provision_id,
    profile, boot_spec, provisioned_at, expected_spec, validation, bmc_last_seen,
    bmc_last_tried, bmc_failing_since, bmc_last_error, bmc_lost, retire_id)
SELECT machine_id, bmc_mac, bmc_ip, redfish_url, state, state_reason,
    correlation_id, created_at, updated_at, inventory_event_id, system_model, cpu_vendor,
    cpu_count, memory_mib, host_nic_count, drive_count, rescan_correlation_id, provision_id,
    profile, boot_spec, provisioned_at, expected_spec, validation, bmc_last_seen,
    bmc_last_tried, bmc_failing_since, bmc_last_error, bmc_lost, retire_id
FROM machines
ORDER BY (SELECT MIN(sequence) FROM events WHERE events.machine_id = machines.machine_id),
    machine_id;

CREATE TABLE inventories_v6 (
    machine_key INTEGER PRIMARY KEY REFERENCES machines_v6 (machine_key),
    inventory TEXT NOT NULL
);
INSERT INTO inventories_v6 (machine_key, inventory)
    SELECT m.machine_key, i.inventory FROM inventories AS i JOIN machines_v6 AS m USING (machine_id);

CREATE TABLE nics_v6 (
    machine_key INTEGER NOT NULL REFERENCES machines_v6 (machine_key),
    kind TEXT NOT NULL CHECK (kind IN ('host', 'bmc')),
    interface TEXT NOT NULL,
    mac TEXT,
    permanent_mac TEXT,
    PRIMARY KEY (machine_key, kind, interface)
) WITHOUT ROWID;
INSERT INTO nics_v6 SELECT m.machine_key, t.kind, t.interface, t.mac, t.permanent_mac
    FROM nics AS t JOIN machines_v6 AS m USING (machine_id);

CREATE TABLE processors_v6 (
    machine_key INTEGER NOT NULL REFERENCES machines_v6 (machine_key),
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
    PRIMARY KEY (machine_key, system_id, processor_id)
) WITHOUT ROWID;
INSERT INTO processors_v6 SELECT m.machine_key, t.system_id, t.processor_id, t.socket,
    t.processor_type, t.state, t.manufacturer, t.model, t.vendor, t.total_cores, t.total_threads
    FROM processors AS t JOIN machines_v6 AS m USING (machine_id);

CREATE TABLE memory_v6 (
    machine_key INTEGER NOT NULL REFERENCES machines_v6 (machine_key),
    system_id TEXT NOT NULL,
    module_id TEXT NOT NULL,
    state TEXT,
    capacity_mib INTEGER,
    device_locator TEXT,
    PRIMARY KEY (machine_key, system_id, module_id)
) WITHOUT ROWID;
INSERT INTO memory_v6 SELECT m.machine_key, t.system_id, t.module_id, t.state, t.capacity_mib,
    t.device_locator
    FROM memory AS t JOIN machines_v6 AS m USING (machine_id);

CREATE TABLE drives_v6 (
    machine_key INTEGER NOT NULL REFERENCES machines_v6 (machine_key),
    system_id TEXT NOT NULL,
    path TEXT NOT NULL,
    serial TEXT,
    model TEXT,
    capacity_bytes INTEGER,
    media_type TEXT,
    protocol TEXT,
    PRIMARY KEY (machine_key, system_id, path)
) WITHOUT ROWID;
INSERT INTO drives_v6 SELECT m.machine_key, t.system_id, t.path, t.serial, t.model,
    t.capacity_bytes, t.media_type, t.protocol
    FROM drives AS t JOIN machines_v6 AS m USING (machine_id);

CREATE TABLE firmware_v6 (
    machine_key INTEGER NOT NULL REFERENCES machines_v6 (machine_key),
    firmware_id TEXT NOT NULL,
    name TEXT,
    version TEXT,
    PRIMARY KEY (machine_key, firmware_id)
) WITHOUT ROWID;
INSERT INTO firmware_v6 SELECT m.machine_key, t.firmware_id, t.name, t.version
    FROM firmware AS t JOIN machines_v6 AS m USING (machine_id);

DROP TABLE inventories;
DROP TABLE nics;
DROP TABLE processors;
DROP TABLE memory;
DROP TABLE drives;
DROP TABLE firmware;
DROP TABLE machines;
ALTER TABLE machines_v6 RENAME TO machines;
ALTER TABLE inventories_v6 RENAME TO inventories;
ALTER TABLE nics_v6 RENAME TO nics;
ALTER TABLE processors_v6 RENAME TO processors;
ALTER TABLE memory_v6 RENAME TO memory;
ALTER TABLE drives_v6 RENAME TO drives;
ALTER TABLE firmware_v6 RENAME TO firmware;
CREATE INDEX machines_by_bmc_mac ON machines (bmc_mac);
CREATE INDEX nics_by_mac ON nics (mac, kind);
CREATE INDEX nics_by_permanent_mac ON nics (permanent_mac, kind);
CREATE INDEX drives_by_serial ON drives (serial);
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
    // Version 6 drops and recreates `machines`, which other tables reference: SQLite's way
    // is to suspend foreign keys around the transaction and check them before committing.
    conn.execute_batch("PRAGMA foreign_keys = OFF")
        .map_err(sql("suspending foreign keys for the migration"))?;
    let migrated = migrate_in_transaction(conn, version);
    conn.execute_batch("PRAGMA foreign_keys = ON")
        .map_err(sql("restoring foreign keys after the migration"))?;
    migrated?;
    if version == 0 {
        // A new file went through every version's tables, some created only to be dropped:
        // compacting it (instant while empty) leaves only the current ones, packed.
        conn.execute_batch("VACUUM")
            .map_err(sql("compacting the new schema"))?;
    } else {
        // Version 6 rewrites every machine table: the WAL grows as large as the file (1 GB
        // at 100,000 machines) and would stay that large on disk until the next truncation.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(sql("checkpointing the migration"))?;
    }
    Ok(())
}

fn migrate_in_transaction(conn: &mut Connection, version: i64) -> Result<(), ProjectionError> {
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
    if version < 6 {
        tx.execute_batch(SCHEMA_V6)
            .map_err(sql("migrating schema to version 6"))?;
    }
    let dangling: Option<String> = tx
        .query_row("PRAGMA foreign_key_check", [], |row| row.get(0))
        .optional()
        .map_err(sql("checking foreign keys after the migration"))?;
    if let Some(table) = dangling {
        return Err(ProjectionError::Corrupt(format!(
            "a row of {table} names a machine that does not exist"
        )));
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
            .prepare(
                "SELECT m.machine_id, i.inventory FROM inventories AS i
                 JOIN machines AS m USING (machine_key) ORDER BY m.machine_id",
            )
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

    /// Version 5's export: every table by its primary key, machines named by id.
    const V5_TABLES: &[(&str, &str)] = &[
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

    #[test]
    fn version_5_gets_machine_keys_in_order_of_appearance_and_exports_the_same() {
        let mut conn = Connection::open_in_memory().expect("in-memory database");
        for step in [
            SCHEMA_V1,
            SCHEMA_V2,
            SCHEMA_V3,
            SCHEMA_V4,
            SCHEMA_V5,
            "PRAGMA user_version = 5",
        ] {
            conn.execute_batch(step).expect("schema step");
        }
        // 'm-b' appeared first in the stream, 'm-a' second: keys follow the stream, the
        // export machine ids.
        conn.execute_batch(
            "INSERT INTO machines (machine_id, bmc_mac, state, correlation_id, created_at,
                 updated_at, inventory_event_id, system_model, cpu_count, provision_id,
                 bmc_lost, retire_id)
             VALUES ('m-a', '00:00:5e:00:53:01', 'inventoried', 'c1', 't1', 't2', 'e2', 'X1', 2,
                     NULL, 0, NULL),
                    ('m-b', '00:00:5e:00:53:02', 'armed', 'c2', 't0', 't3', 'e1', 'X2', 1, 'p',
                     1, 'r');
             INSERT INTO inventories VALUES ('m-a', '{\"a\":1}'), ('m-b', '{\"b\":2}');
             INSERT INTO nics VALUES ('m-a', 'host', 'S/1', '52:54:00:00:00:01', NULL),
                 ('m-a', 'bmc', 'M/1', '00:00:5e:00:53:01', NULL),
                 ('m-b', 'host', 'S/1', '52:54:00:00:00:02', '52:54:00:00:00:03');
             INSERT INTO processors VALUES ('m-a', 'S', 'CPU1', 's1', 'CPU', 'Enabled', 'Intel',
                 'Xeon', 'intel', 8, 16), ('m-b', 'S', 'CPU1', NULL, NULL, NULL, NULL, NULL, 'amd',
                 NULL, NULL);
             INSERT INTO memory VALUES ('m-a', 'S', 'DIMM1', 'Enabled', 16384, 'A1'),
                 ('m-b', 'S', 'DIMM1', NULL, NULL, NULL);
             INSERT INTO drives VALUES ('m-a', 'S', 'd/1', 'SER1', 'SSD', 480000000000, 'SSD',
                 'SATA'), ('m-b', 'S', 'd/1', 'SER2', NULL, NULL, NULL, NULL);
             INSERT INTO firmware VALUES ('m-a', 'BIOS', 'BIOS', '1.0'),
                 ('m-b', 'BIOS', 'BIOS', '1.1'), ('m-b', 'BMC', NULL, '2.0');
             INSERT INTO tags VALUES ('m-b', 'role', 'storage');
             INSERT INTO unknown_macs VALUES ('52:54:00:00:00:09', 't', 't', 1, 'unknown');
             INSERT INTO events VALUES
                 (1, 'e0', 'm-b', 'machine.onboard.requested', 't0', 'c2', NULL, 1, 'requested'),
                 (2, 'e3', 'm-a', 'machine.onboard.requested', 't1', 'c1', NULL, 1, 'requested'),
                 (3, 'e1', 'm-b', 'machine.hardware.scraped', 't3', 'c2', 'e0', 1, 'scraped'),
                 (4, 'e2', 'm-a', 'machine.hardware.scraped', 't2', 'c1', 'e3', 1, 'scraped');
             UPDATE meta SET last_sequence = 4;",
        )
        .expect("version 5 rows");
        let mut before = Vec::new();
        let v5 = V5_TABLES
            .iter()
            .map(|(name, order)| (*name, format!("SELECT * FROM {name} ORDER BY {order}")));
        crate::export::write_tables(&conn, v5, &mut before).expect("version 5 export");

        migrate(&mut conn).expect("migration");

        let mut after = Vec::new();
        let v6 = TABLES.iter().map(|table| (table.name, table.query()));
        crate::export::write_tables(&conn, v6, &mut after).expect("version 6 export");
        assert_eq!(
            String::from_utf8_lossy(&after),
            String::from_utf8_lossy(&before)
        );
        assert_eq!(before.iter().filter(|&&b| b == b'\n').count(), 23);
        let keys: Vec<(String, i64)> = conn
            .prepare("SELECT machine_id, machine_key FROM machines ORDER BY machine_key")
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .expect("keys");
        assert_eq!(keys, [("m-b".to_string(), 1), ("m-a".to_string(), 2)]);
        let indexes: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("indexes");
        assert_eq!(
            indexes,
            [
                "drives_by_serial",
                "events_by_machine",
                "machines_by_bmc_mac",
                "nics_by_mac",
                "nics_by_permanent_mac"
            ]
        );
    }

    #[test]
    fn a_version_5_file_is_migrated_on_open_and_leaves_no_large_wal() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("v5.db");
        {
            let conn = Connection::open(&path).expect("version 5 file");
            conn.pragma_update(None, "journal_mode", "WAL")
                .expect("WAL");
            for step in [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5] {
                conn.execute_batch(step).expect("schema step");
            }
            conn.execute_batch(
                "INSERT INTO machines (machine_id, bmc_mac, state, correlation_id, created_at,
                     updated_at)
                 VALUES ('m-1', '00:00:5e:00:53:01', 'inventoried', 'c', 't', 't');
                 INSERT INTO inventories VALUES ('m-1', '{}');
                 INSERT INTO nics VALUES ('m-1', 'host', 'S/1', '52:54:00:00:00:01', NULL);
                 PRAGMA user_version = 5;",
            )
            .expect("version 5 rows");
        }

        let projection = crate::Projection::open(&path).expect("migrated on open");
        let export = String::from_utf8(projection.canonical_export().expect("export"))
            .expect("UTF-8 export");
        assert!(
            export.contains(r#"{"row":{"interface":"S/1","kind":"host","mac":"52:54:00:00:00:01","machine_id":"m-1","permanent_mac":null},"table":"nics"}"#),
            "{export}"
        );
        let wal = std::fs::metadata(dir.path().join("v5.db-wal")).map_or(0, |m| m.len());
        assert_eq!(wal, 0, "the migration's WAL is truncated");
    }
}
