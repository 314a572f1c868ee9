//! The SQLite projection of the `MACHINES` stream, shared by inventory-projector and boot-api.
//!
//! # Layout
//! - [`schema`]: the tables and their migration (`PRAGMA user_version`).
//! - [`apply`]: folding stream messages into the tables, one transaction per message or batch,
//!   together with the stream sequence.
//! - [`read`]: queries answering with the [`metal_core::query`] types, and boot facts.
//! - [`export`]: the canonical export (JSON Lines of every table) and its digest.
//! - [`fixtures`]: hand-made stream messages for tests here, in boot-api and in the harness.
//! - [`follow`]: the async loop that follows the stream into a [`LiveProjection`]; the only
//!   module that knows NATS.
//!
//! This is the only crate that opens SQLite. Apply is pure with respect to the outside world:
//! every time it stores comes from an event or the stream, never from the clock, so two
//! projections of the same log are byte-identical in their export.
//! Bad input is never an error: it is recorded (or skipped) and the sequence advances.
//! Run the tests with `cargo test -p metal-projection`.

pub mod apply;
pub mod export;
pub mod fixtures;
pub mod follow;
pub mod read;
pub mod schema;

use std::path::{Path, PathBuf};

use rusqlite::Connection;

pub use apply::{Applied, DecodedMessage};
pub use follow::{FollowError, LiveProjection};
pub use read::{BootFacts, BootTarget, MachinesPage, MachinesQuery, RescanCandidate};

/// SQLite page cache of a serving connection, in KiB (negative `cache_size` means KiB).
/// Small: it counts in the service's memory for as long as it runs (the goal is 150 MB at
/// 100,000 machines), and a page it misses is a read from the OS's file cache.
const LIVE_PAGE_CACHE_KIB: i64 = -16 * 1024;

/// The same for a scratch file being rebuilt from the stream: large, since a rebuild
/// inserts rows all over every table and lives only as long as the replay. Public for the
/// replay benchmark's SQLite floor, which writes with the rebuild's settings.
pub const SCRATCH_PAGE_CACHE_KIB: i64 = -64 * 1024;

/// WAL pages between automatic checkpoints (SQLite's default is 1,000): a checkpoint writes
/// every page the WAL holds back into the file, so a page many small batches dirtied
/// is written back once, not once per thousand pages of WAL.
const WAL_CHECKPOINT_PAGES: i64 = 16 * 1024;

/// Everything that can go wrong with the projection itself (never with its input).
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("cannot open projection database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create directory {path} for the projection database")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "projection database schema version {found} is newer than this binary knows ({known})"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("projection database error while {context}")]
    Sqlite {
        context: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("projection database holds a value that cannot be read: {0}")]
    Corrupt(String),
    #[error("cannot write the canonical export")]
    Export(#[source] std::io::Error),
    #[error("projection database {path} failed its integrity check: {findings}")]
    FailedCheck { path: PathBuf, findings: String },
    #[error("{0:?} is neither a machine id nor a MAC address")]
    BadReference(String),
    #[error("cannot replace projection file {path}")]
    Replace {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ProjectionError {
    /// Whether the file itself is damaged (not a database, malformed pages, a failed
    /// integrity check): nothing it answers can be trusted, and only a rebuild from the
    /// stream mends it. A full disk or a locked file is not damage: what was committed
    /// stands, and writing can be tried again.
    pub fn is_damage(&self) -> bool {
        match self {
            ProjectionError::FailedCheck { .. } => true,
            ProjectionError::Open { source, .. } | ProjectionError::Sqlite { source, .. } => {
                matches!(
                    source.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
                )
            }
            _ => false,
        }
    }
}

/// How many findings of a failed integrity check are kept in its error.
const CHECK_FINDINGS: usize = 3;

/// Wraps a rusqlite error with what we were doing.
pub(crate) fn sql(context: &'static str) -> impl FnOnce(rusqlite::Error) -> ProjectionError {
    move |source| ProjectionError::Sqlite { context, source }
}

/// Whether a projection applies the `machine.boot.*` events boot-api publishes for every
/// boot it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BootRecords {
    /// Applied like any event: a timeline row each, unknown MACs listed, a served boot moves
    /// its machine from `provisioning` to `booting`. The inventory projector's projection.
    #[default]
    Applied,
    /// Skipped unread; only the stream sequence advances. boot-api's own projection: these
    /// events record what boot-api answered and never change what it answers next (a machine
    /// armed is armed whether `provisioning` or `booting`), while applying a boot storm's
    /// events would cost it a lookup, a state change and an index refresh per booting
    /// machine, and a timeline row at random keys per boot, as it answers the storm.
    Skipped,
}

#[derive(Debug, Clone, Copy)]
enum Durability {
    /// Serving: WAL, so readers never block the writer; a crash loses no commit.
    Wal,
    /// Rebuilding a file nobody reads yet.
    Scratch,
}

#[derive(Debug)]
pub struct Projection {
    conn: Connection,
    path: Option<PathBuf>,
    boot_records: BootRecords,
    /// A scratch file's secondary indexes, dropped while it is built and created again by
    /// [`Projection::close`]: applying never reads them, and one sorted build at the end
    /// costs less than keeping them up to date row by row.
    deferred_indexes: Vec<String>,
}

impl Projection {
    /// Opens (creating if needed) the projection at `path`, in WAL mode, and migrates it.
    pub fn open(path: &Path) -> Result<Projection, ProjectionError> {
        Projection::open_with(path, Durability::Wal)
    }

    /// Opens the projection at `path` as [`Projection::open`] does, then reads every page of
    /// it (`PRAGMA quick_check`, linear in the file's size) so a damaged file is found before
    /// anything is answered from it ([`ProjectionError::is_damage`]).
    pub fn open_checked(path: &Path) -> Result<Projection, ProjectionError> {
        let projection = Projection::open(path)?;
        projection.check_integrity()?;
        Ok(projection)
    }

    /// `PRAGMA quick_check`: every page and index entry well-formed, or
    /// [`ProjectionError::FailedCheck`] with the first findings.
    pub fn check_integrity(&self) -> Result<(), ProjectionError> {
        let mut statement = self
            .conn
            .prepare("PRAGMA quick_check")
            .map_err(sql("checking integrity"))?;
        let findings: Vec<String> = statement
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(sql("checking integrity"))?
            .take(CHECK_FINDINGS + 1)
            .collect::<Result<_, _>>()
            .map_err(sql("checking integrity"))?;
        if findings.len() == 1 && findings[0] == "ok" {
            return Ok(());
        }
        let mut findings_text = findings
            .iter()
            .take(CHECK_FINDINGS)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("; ");
        if findings.len() > CHECK_FINDINGS {
            findings_text.push_str("; ...");
        }
        Err(ProjectionError::FailedCheck {
            path: self
                .path
                .clone()
                .unwrap_or_else(|| PathBuf::from(":memory:")),
            findings: findings_text,
        })
    }

    /// Creates the secondary indexes a scratch file was built without (nothing for any
    /// other projection, or once done); [`Projection::close`] does it too.
    pub fn build_deferred_indexes(&mut self) -> Result<(), ProjectionError> {
        if self.deferred_indexes.is_empty() {
            return Ok(());
        }
        // Building an index sorts in up to `cache_size` of memory besides the page cache: a
        // serving connection's size bounds both, the memory the large rebuild cache frees
        // being reused for the sort.
        self.conn
            .pragma_update(None, "cache_size", LIVE_PAGE_CACHE_KIB)
            .map_err(sql("shrinking the page cache"))?;
        for index in std::mem::take(&mut self.deferred_indexes) {
            self.conn
                .execute_batch(&index)
                .map_err(sql("building a deferred index"))?;
        }
        Ok(())
    }

    /// Opens a scratch file to rebuild from the stream: no journal and no fsync, since a
    /// crash midway only loses a file the next rebuild starts afresh. Close it and
    /// [`Projection::open`] it before serving from it.
    /// Its secondary indexes are built when it is closed.
    pub fn open_scratch(path: &Path) -> Result<Projection, ProjectionError> {
        let mut projection = Projection::open_with(path, Durability::Scratch)?;
        projection.deferred_indexes = schema::drop_secondary_indexes(&projection.conn)?;
        Ok(projection)
    }

    fn open_with(path: &Path, durability: Durability) -> Result<Projection, ProjectionError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| ProjectionError::CreateDir {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let open_error = |source| ProjectionError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(open_error)?;
        let (journal_mode, synchronous) = match durability {
            Durability::Wal => ("WAL", "NORMAL"),
            Durability::Scratch => ("OFF", "OFF"),
        };
        conn.pragma_update_and_check(None, "journal_mode", journal_mode, |row| {
            row.get::<_, String>(0)
        })
        .map_err(open_error)?;
        conn.pragma_update(None, "synchronous", synchronous)
            .map_err(open_error)?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
            .map_err(open_error)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_error)?;
        // A scraped inventory touches a few dozen rows across six tables; with SQLite's
        // default 2 MiB page cache, replay spends its time re-reading pages from the OS.
        let cache_kib = match durability {
            Durability::Wal => LIVE_PAGE_CACHE_KIB,
            Durability::Scratch => SCRATCH_PAGE_CACHE_KIB,
        };
        conn.pragma_update(None, "cache_size", cache_kib)
            .map_err(open_error)?;
        conn.set_prepared_statement_cache_capacity(64);
        let mut projection = Projection {
            conn,
            path: Some(path.to_path_buf()),
            boot_records: BootRecords::Applied,
            deferred_indexes: Vec::new(),
        };
        schema::migrate(&mut projection.conn)?;
        Ok(projection)
    }

    /// A projection in memory, for tests and benchmarks.
    pub fn open_in_memory() -> Result<Projection, ProjectionError> {
        let conn = Connection::open_in_memory().map_err(|source| ProjectionError::Open {
            path: PathBuf::from(":memory:"),
            source,
        })?;
        let mut projection = Projection {
            conn,
            path: None,
            boot_records: BootRecords::Applied,
            deferred_indexes: Vec::new(),
        };
        schema::migrate(&mut projection.conn)?;
        Ok(projection)
    }

    /// The same projection, treating boot events as `records` says from now on.
    pub fn with_boot_records(mut self, records: BootRecords) -> Projection {
        self.boot_records = records;
        self
    }

    /// The same projection with a page cache of `kib` KiB instead of the serving default
    /// (16 MiB), for a service that answers from memory of its own and only writes here.
    pub fn with_page_cache_kib(self, kib: u32) -> Result<Projection, ProjectionError> {
        self.conn
            .pragma_update(None, "cache_size", -i64::from(kib))
            .map_err(sql("sizing the page cache"))?;
        Ok(self)
    }

    /// The file this projection lives in (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The last stream sequence applied (0 for a fresh projection).
    pub fn last_sequence(&self) -> Result<u64, ProjectionError> {
        schema::last_sequence(&self.conn)
    }

    /// Checkpoints the WAL and closes the connection, so the file stands alone
    /// (no `-wal`/`-shm` left behind) and may be renamed.
    pub fn close(mut self) -> Result<(), ProjectionError> {
        self.build_deferred_indexes()?;
        if self.path.is_some() {
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(sql("checkpointing before close"))?;
        }
        self.conn
            .close()
            .map_err(|(_, source)| ProjectionError::Sqlite {
                context: "closing",
                source,
            })
    }
}

/// Moves the closed projection file `from` over `to` atomically (rename) and removes any
/// stale `-wal`/`-shm` files of both names. Both files must be closed.
pub fn replace_file(from: &Path, to: &Path) -> Result<(), ProjectionError> {
    for path in [from, to] {
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            match std::fs::remove_file(PathBuf::from(side)) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(ProjectionError::Replace {
                        path: to.to_path_buf(),
                        source,
                    })
                }
            }
        }
    }
    std::fs::rename(from, to).map_err(|source| ProjectionError::Replace {
        path: to.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod drift_tests;
#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod machines_page_tests;
#[cfg(test)]
mod provisioning_tests;
#[cfg(test)]
mod rescan_tests;
#[cfg(test)]
mod tests;
