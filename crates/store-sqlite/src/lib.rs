//! The embedded storage backend: one SQLite file per data directory.
//!
//! - WAL journal with `synchronous=FULL`: a write is acknowledged only once
//!   its commit is in the WAL on disk, so acknowledged writes survive a crash
//!   or power loss.
//! - One writer thread owns the only writing connection. It drains whatever
//!   jobs are queued into one transaction (group commit), each job inside its
//!   own savepoint so one job's failure leaves the others intact. Throughput
//!   then pays one fsync per batch, not per request.
//! - Readers use a pool of read-only connections; WAL lets them run
//!   concurrently with the writer, each on a consistent snapshot.
//!
//! Architecture invariant: every statement is filtered by the practice key,
//! which [`scoped::Scoped`] holds and callers cannot change.

mod accounts;
mod audit;
mod body;
mod dmd;
mod index;
mod schema;
mod scoped;
mod search;
mod smart;
mod terminology;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use gp_fhir::OdsCode;
use gp_store::{
    Actor, Backend, Ctx, Practice, ReadTx, ReleaseInfo, SnomedLoad, StoreError, TerminologyStore,
    WriteJob,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

pub use writer::WriterStats;

/// The SQLite backend.
pub struct SqliteBackend {
    path: PathBuf,
    writer: writer::Writer,
    /// The dictionaries bodies are compressed with (`body.rs`).
    codec: Arc<gp_store_sql::body::Codec>,
    /// Idle read-only connections, reused to keep their statement caches.
    readers: Mutex<Vec<Connection>>,
}

pub(crate) fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqliteBackend {
    /// Opens (creating if needed) the store in `dir`, as `dir/opengp.db`.
    pub fn open(dir: &Path) -> Result<Arc<Self>, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join("opengp.db");
        let conn = Connection::open(&path).map_err(db_err)?;
        schema::configure(&conn, false)?;
        schema::migrate(&conn)?;
        let codec = body::load(&conn)?;
        let writer = writer::Writer::start(conn, path.clone(), codec.clone())?;
        Ok(Arc::new(SqliteBackend {
            path,
            writer,
            codec,
            readers: Mutex::new(Vec::new()),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn writer_stats(&self) -> WriterStats {
        self.writer.stats()
    }

    fn reader(&self) -> Result<Connection, StoreError> {
        if let Some(c) = self.readers.lock().ok().and_then(|mut r| r.pop()) {
            return Ok(c);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(db_err)?;
        schema::configure(&conn, true)?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut r) = self.readers.lock()
            && r.len() < 16
        {
            r.push(conn);
        }
    }

    fn with_reader<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let conn = self.reader()?;
        let out = f(&conn);
        self.give_back(conn);
        out
    }
}

fn practice_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, String, String)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
}

fn to_practice((key, ods, name): (i64, String, String)) -> Option<Practice> {
    Some(Practice {
        key,
        ods: OdsCode::parse(&ods)?,
        name,
    })
}

impl Backend for SqliteBackend {
    fn practice(&self, ods: &OdsCode, _actor: &Actor) -> Result<Option<Practice>, StoreError> {
        self.with_reader(|c| {
            let row = c
                .prepare_cached("SELECT key, ods, name FROM practice WHERE ods = ?1")
                .and_then(|mut s| s.query_row(params![ods.as_str()], practice_row).optional())
                .map_err(db_err)?;
            Ok(row.and_then(to_practice))
        })
    }

    fn ensure_practice(
        &self,
        ods: &OdsCode,
        name: &str,
        actor: &Actor,
    ) -> Result<Practice, StoreError> {
        self.writer.ensure_practice(ods, name, actor)
    }

    /// The database file and its write-ahead log.
    fn disk_bytes(&self) -> Result<u64, StoreError> {
        let size = |suffix: &str| {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
        };
        Ok(size("") + size("-wal"))
    }

    fn practices(&self, _actor: &Actor) -> Result<Vec<Practice>, StoreError> {
        self.with_reader(|c| {
            let mut s = c
                .prepare_cached("SELECT key, ods, name FROM practice ORDER BY ods")
                .map_err(db_err)?;
            let rows = s.query_map([], practice_row).map_err(db_err)?;
            Ok(rows
                .filter_map(Result::ok)
                .filter_map(to_practice)
                .collect())
        })
    }

    fn read(
        &self,
        ctx: &Ctx,
        job: &mut dyn FnMut(&mut dyn ReadTx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.with_reader(|c| {
            // A read transaction pins one WAL snapshot for all of the job's
            // statements.
            c.execute_batch("BEGIN").map_err(db_err)?;
            let mut tx = scoped::Scoped {
                conn: c,
                practice: ctx.practice.key,
                sees: ctx.sees(),
                codec: &self.codec,
            };
            let out = job(&mut tx);
            let _ = c.execute_batch("COMMIT");
            out
        })
    }

    fn submit(&self, ctx: &Ctx, job: Box<dyn WriteJob>) {
        self.writer.submit(ctx, job);
    }

    fn close(&self) {
        self.writer.close();
        if let Ok(mut r) = self.readers.lock() {
            r.clear();
        }
    }
}

impl TerminologyStore for SqliteBackend {
    fn begin_snomed_load(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<Box<dyn SnomedLoad>, StoreError> {
        Ok(Box::new(self.writer.begin_snomed(name, actor)?))
    }

    fn snomed_release(&self, actor: &Actor) -> Result<Option<ReleaseInfo>, StoreError> {
        self.with_reader(|c| terminology::read_release(c, actor))
    }

    fn read_snomed(
        &self,
        _actor: &Actor,
        sink: &mut dyn FnMut(gp_terminology::rf2::Rows) -> Result<(), StoreError>,
    ) -> Result<Option<ReleaseInfo>, StoreError> {
        self.with_reader(|c| {
            // One snapshot for the whole read.
            c.execute_batch("BEGIN").map_err(db_err)?;
            let out = terminology::read_all(c, sink);
            let _ = c.execute_batch("COMMIT");
            out
        })
    }

    fn store_dmd(
        &self,
        actor: &Actor,
        name: &str,
        release: gp_terminology::dmd::DmdRelease,
    ) -> Result<gp_store::DmdInfo, StoreError> {
        self.writer.store_dmd(name, actor, release)
    }

    fn dmd_release(&self, _actor: &Actor) -> Result<Option<gp_store::DmdInfo>, StoreError> {
        self.with_reader(dmd::release)
    }

    fn read_dmd(
        &self,
        _actor: &Actor,
    ) -> Result<Option<(gp_store::DmdInfo, gp_terminology::dmd::DmdRelease)>, StoreError> {
        self.with_reader(|c| {
            c.execute_batch("BEGIN").map_err(db_err)?;
            let out = dmd::read(c);
            let _ = c.execute_batch("COMMIT");
            out
        })
    }
}
