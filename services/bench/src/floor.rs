//! The least SQLite makes any writer of a rebuilt projection pay: every row of a rebuilt
//! file inserted again into an empty file of the same tables, one cached `INSERT` a row,
//! table after table, in replay's transaction size, with the rebuild's scratch settings.
//! Nothing is read, decided or looked up while it runs (every table's rows are loaded into
//! memory beforehand: loading each table just before inserting it made the inserts two to
//! three times slower, for reasons not pinned down; perf showed malloc's consolidation and
//! reads of the source file among the samples), so no writer that stores the same rows can
//! be faster.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use rusqlite::types::Value;
use rusqlite::Connection;

/// How long the floor's inserts took, in all and table by table.
pub struct Floor {
    pub elapsed: Duration,
    pub rows: usize,
    pub tables: Vec<TableFloor>,
}

impl Floor {
    /// The tables with more than one row as a Markdown table: rows, µs a row, share.
    pub fn table_shares(&self) -> String {
        let seconds = self.elapsed.as_secs_f64();
        let mut out =
            String::from("| table | rows | µs a row | share of the floor |\n|---|---|---|---|\n");
        for table in self.tables.iter().filter(|t| t.rows > 1) {
            out.push_str(&format!(
                "| {} | {} | {:.2} | {:.0} % |\n",
                table.name,
                table.rows,
                table.elapsed.as_secs_f64() * 1e6 / table.rows as f64,
                table.elapsed.as_secs_f64() * 100.0 / seconds
            ));
        }
        out
    }
}

pub struct TableFloor {
    pub name: String,
    pub rows: usize,
    pub elapsed: Duration,
}

/// Inserts every row of the projection file `rebuilt` into a new file `into` (which must
/// not exist) and times the inserts. The secondary indexes a rebuild defers are not made.
pub fn sqlite_floor(rebuilt: &Path, into: &Path) -> anyhow::Result<Floor> {
    let source = Connection::open(rebuilt)
        .with_context(|| format!("opening the rebuilt {}", rebuilt.display()))?;
    let tables: Vec<(String, String)> = source
        .prepare(
            "SELECT name, sql FROM sqlite_master
             WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rootpage",
        )?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(
        !into.exists(),
        "{} exists: the floor writes a new file",
        into.display()
    );
    let mut conn = Connection::open(into)?;
    conn.pragma_update(None, "journal_mode", "OFF")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "cache_size", metal_projection::SCRATCH_PAGE_CACHE_KIB)?;
    for (_, sql) in &tables {
        conn.execute_batch(sql)?;
    }
    let mut floor = Floor {
        elapsed: Duration::ZERO,
        rows: 0,
        tables: Vec::with_capacity(tables.len()),
    };
    let mut contents = Vec::with_capacity(tables.len());
    for (name, _) in &tables {
        let mut select = source.prepare(&format!("SELECT * FROM \"{name}\""))?;
        let columns = select.column_count();
        let rows: Vec<Vec<Value>> = select
            .query_map([], |row| (0..columns).map(|i| row.get(i)).collect())?
            .collect::<Result<_, _>>()?;
        contents.push((name, columns, rows));
    }
    drop(source);
    for (name, columns, rows) in contents {
        let insert = format!(
            "INSERT INTO \"{name}\" VALUES ({})",
            vec!["?"; columns].join(", ")
        );
        let started = Instant::now();
        for transaction in rows.chunks(inventory_projector::replay::REPLAY_TRANSACTION) {
            let tx = conn.transaction()?;
            for row in transaction {
                tx.prepare_cached(&insert)?
                    .execute(rusqlite::params_from_iter(row))?;
            }
            tx.commit()?;
        }
        let elapsed = started.elapsed();
        floor.elapsed += elapsed;
        floor.rows += rows.len();
        floor.tables.push(TableFloor {
            name: name.clone(),
            rows: rows.len(),
            elapsed,
        });
    }
    Ok(floor)
}
