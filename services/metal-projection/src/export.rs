//! The canonical export: every table as JSON Lines, tables in a fixed order, rows sorted by
//! natural key, keys sorted within a row, machines named by id (their internal integer keys
//! left out). Two projections of the same log export the same bytes, and so the same
//! [`digest`].

use std::io::Write;

use rusqlite::types::ValueRef;
use sha2::{Digest, Sha256};

use crate::schema::{MACHINE_KEY, TABLES};
use crate::{sql, Projection, ProjectionError};

impl Projection {
    /// One line per row: `{"row":{...},"table":"<name>"}`.
    pub fn canonical_export(&self) -> Result<Vec<u8>, ProjectionError> {
        let mut out = Vec::new();
        self.write_canonical_export(&mut out)?;
        Ok(out)
    }

    /// The canonical export, line by line into `out`, never held whole: at 100,000 machines
    /// it is about a gigabyte.
    pub fn write_canonical_export(&self, out: &mut impl Write) -> Result<(), ProjectionError> {
        let tables = TABLES.iter().map(|table| (table.name, table.query()));
        write_tables(&self.conn, tables, out)
    }

    /// The digest of the canonical export, computed as it is written.
    pub fn export_digest(&self) -> Result<String, ProjectionError> {
        let mut hashing = Digesting::new(std::io::sink());
        self.write_canonical_export(&mut hashing)?;
        Ok(hashing.finish().1)
    }

    /// The canonical export and its digest.
    pub fn export_with_digest(&self) -> Result<(Vec<u8>, String), ProjectionError> {
        let export = self.canonical_export()?;
        let digest = digest(&export);
        Ok((export, digest))
    }
}

/// Each of `tables` (name and the query that lists its rows in order) as JSON Lines into
/// `out`, leaving out machines' internal keys.
pub(crate) fn write_tables<'a>(
    conn: &rusqlite::Connection,
    tables: impl IntoIterator<Item = (&'a str, String)>,
    out: &mut impl Write,
) -> Result<(), ProjectionError> {
    let mut line = Vec::new();
    for (table, query) in tables {
        let mut statement = conn.prepare(&query).map_err(sql("exporting"))?;
        let names: Vec<String> = statement
            .column_names()
            .iter()
            .map(|n| n.to_string())
            .collect();
        let mut rows = statement.query([]).map_err(sql("exporting"))?;
        while let Some(row) = rows.next().map_err(sql("exporting"))? {
            let mut object = serde_json::Map::new();
            for (index, name) in names.iter().enumerate() {
                if name == MACHINE_KEY {
                    continue;
                }
                let value = row.get_ref(index).map_err(sql("exporting"))?;
                object.insert(name.clone(), json_value(value));
            }
            line.clear();
            // A JSON value of strings and numbers always serialises.
            let _ = serde_json::to_writer(
                &mut line,
                &serde_json::json!({ "table": table, "row": object }),
            );
            line.push(b'\n');
            out.write_all(&line).map_err(ProjectionError::Export)?;
        }
    }
    Ok(())
}

/// A writer that passes what it is given on to `inner` and hashes it: [`digest`] of all
/// that went through, without keeping it.
pub struct Digesting<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Digesting<W> {
    pub fn new(inner: W) -> Digesting<W> {
        Digesting {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The inner writer (flushed) and the digest.
    pub fn finish(mut self) -> (W, String) {
        let _ = self.inner.flush();
        (self.inner, hex(&self.hasher.finalize()))
    }
}

impl<W: Write> Write for Digesting<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn json_value(value: ValueRef<'_>) -> serde_json::Value {
    match value {
        ValueRef::Null => serde_json::Value::Null,
        ValueRef::Integer(n) => serde_json::Value::from(n),
        ValueRef::Real(f) => serde_json::Value::from(f),
        ValueRef::Text(bytes) => {
            serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned())
        }
        ValueRef::Blob(bytes) => serde_json::Value::String(hex(bytes)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower-case hex SHA-256 of an export.
pub fn digest(export: &[u8]) -> String {
    hex(&Sha256::digest(export))
}
