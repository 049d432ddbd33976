//! The PostgreSQL storage backend, for a deployment serving many practices.
//!
//! It implements the same traits as the embedded SQLite store, with the same
//! guarantees, on the synchronous `postgres` client running on its own
//! threads:
//!
//! - **Writers sharded by practice, with group commit.** A few writer
//!   threads (two by default) each own one connection; a practice's writes
//!   always go to the same one. A writer drains whatever jobs are queued
//!   into one transaction, each job inside its own savepoint, and tells a
//!   job its outcome only after `COMMIT` returns, which with PostgreSQL's
//!   default `synchronous_commit = on` means the WAL is flushed.
//! - **One lock per practice, not per table.** A write transaction begins by
//!   locking, in key order, the `practice_counter` row of every practice in
//!   its group (`SELECT ... FOR UPDATE`) and holds them to the commit. That
//!   row is the practice's write lock and its sequence: within a practice,
//!   writes are serialised, so an `If-Match` update cannot lose another's
//!   change and two conditional creates cannot both create; sequence numbers
//!   commit in order, so a history page mark (`_until`, the sequence number
//!   seen on the first page) gives stable pages. Other practices never wait.
//!   We chose this over advisory locks keyed by practice and type because it
//!   also covers several OpenGP servers sharing one database (sharding by
//!   practice inside one process alone would not), and over a global
//!   sequence because that would serialise every practice and cannot be
//!   distributed. `latest` in a write transaction still locks the current
//!   row (`FOR UPDATE`), so the guard does not rest on the counter alone.
//! - **Multi-row writes.** Versions are buffered and sent as one `INSERT ...
//!   SELECT FROM unnest(...)` per table before the next read and at the end
//!   of the job, so a transaction Bundle of 300 resources is two statements.
//!   The search indexes will be written the same way.
//! - **Readers** take a pooled connection and run each read job in one
//!   `REPEATABLE READ READ ONLY` transaction: one snapshot per job.
//! - **Migrations** are numbered, additive and recorded in
//!   `schema_migrations` (see [`schema`]).
//!
//! Architecture invariant: every table is keyed by practice first and every
//! statement on a practice's data binds the practice key as `$1` and filters
//! by it; no statement reads two practices, and nothing is numbered across
//! practices. So each practice can live on any node (Citus distributes by
//! the `practice` column).
//!
//! The `postgres` client runs its own small runtime, so it must be used off
//! the async executor: [`PgBackend::connect`] and every trait method block,
//! and `gp_store::Store` already calls them from blocking threads.

mod accounts;
mod audit;
mod body;
mod conn;
mod dmd;
mod index;
mod schema;
mod scoped;
mod smart;
mod terminology;
mod write;
mod writer;

use std::sync::Arc;

use gp_fhir::{Instant, OdsCode};
use gp_store::{
    Actor, Backend, Ctx, Practice, ReadTx, ReleaseInfo, SnomedLoad, StoreError, TerminologyStore,
    WriteJob,
};

pub use conn::StatementObserver;
pub use writer::WriterStats;

use crate::conn::{Connector, Pool, db_err};

/// How to run the backend.
#[derive(Clone)]
pub struct PgOptions {
    /// Writer threads (and connections). Practices are spread over them.
    pub writers: usize,
    /// The most reader connections open at once.
    pub readers: usize,
    /// Sees the text of every statement before it is sent: a test hook,
    /// used to check that every statement names the practice.
    pub on_statement: Option<StatementObserver>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            writers: 2,
            readers: 16,
            on_statement: None,
        }
    }
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("writers", &self.writers)
            .field("readers", &self.readers)
            .finish_non_exhaustive()
    }
}

/// The PostgreSQL backend.
pub struct PgBackend {
    writer: writer::Writer,
    readers: Pool,
    /// Opens the connection a terminology load runs on, outside the pool.
    connector: Connector,
    /// How versions' bodies are stored (`body.rs`).
    bodies: Arc<body::Bodies>,
}

impl PgBackend {
    /// Connects to `url` (`postgres://user@host:port/db`), brings the
    /// schema up to date and starts the writers. Blocks.
    pub fn connect(url: &str, options: PgOptions) -> Result<Arc<Self>, StoreError> {
        let config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("the database URL is not valid: {e}")))?;
        let connector = Connector {
            config,
            observer: options.on_statement,
        };
        let mut first = connector.connect()?;
        schema::migrate(&mut first)?;
        let bodies = body::Bodies::new(connector.clone());
        let writer = writer::Writer::start(&connector, options.writers, &bodies)?;
        let readers = Pool::new(connector.clone(), options.readers);
        readers.adopt(first);
        Ok(Arc::new(PgBackend {
            writer,
            readers,
            connector,
            bodies,
        }))
    }

    /// Brings the database at `url` to schema version `version` and no
    /// further: the schema an older OpenGP left, for upgrade tests (the
    /// versions are those of `schema.rs`).
    pub fn migrate_to(url: &str, version: i32) -> Result<(), StoreError> {
        let config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("the database URL is not valid: {e}")))?;
        let mut conn = Connector {
            config,
            observer: None,
        }
        .connect()?;
        schema::migrate_to(&mut conn, version)
    }

    pub fn writer_stats(&self) -> WriterStats {
        self.writer.stats()
    }
}

impl Drop for PgBackend {
    fn drop(&mut self) {
        // Closing a client blocks on its own runtime, which must not happen
        // on an async executor thread: close idle readers on a plain thread.
        let idle = self.readers.drain();
        if !idle.is_empty() {
            let _ = std::thread::Builder::new()
                .name("pg-close".into())
                .spawn(move || drop(idle));
        }
    }
}

fn practice_of(row: &postgres::Row) -> Option<Practice> {
    Some(Practice {
        key: row.try_get(0).ok()?,
        ods: OdsCode::parse(row.try_get(1).ok()?)?,
        name: row.try_get(2).ok()?,
    })
}

/// A random positive practice key: no sequence shared between servers or
/// nodes, and below 2^52 so that it reads well anywhere.
fn new_practice_key() -> i64 {
    (uuid::Uuid::new_v4().as_u128() >> 76) as i64
}

impl Backend for PgBackend {
    fn practice(&self, ods: &OdsCode, _actor: &Actor) -> Result<Option<Practice>, StoreError> {
        self.readers.with(|c| {
            let row = c
                .query_opt(
                    "SELECT key, ods, name FROM practice WHERE ods = $1",
                    &[&ods.as_str()],
                )
                .map_err(db_err)?;
            Ok(row.as_ref().and_then(practice_of))
        })
    }

    fn ensure_practice(
        &self,
        ods: &OdsCode,
        name: &str,
        actor: &Actor,
    ) -> Result<Practice, StoreError> {
        self.readers.with(|c| {
            let mut step = || -> Result<Option<postgres::Row>, postgres::Error> {
                c.batch("BEGIN")?;
                c.execute(
                    "INSERT INTO practice (key, ods, name, created_at, created_by)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (ods) DO NOTHING",
                    &[
                        &new_practice_key(),
                        &ods.as_str(),
                        &name,
                        &Instant::now().millis(),
                        &actor.id(),
                    ],
                )?;
                let row = c.query_opt(
                    "SELECT key, ods, name FROM practice WHERE ods = $1",
                    &[&ods.as_str()],
                )?;
                if let Some(key) = row.as_ref().and_then(|r| r.try_get::<_, i64>(0).ok()) {
                    c.execute(
                        "INSERT INTO practice_counter (practice, seq, stamped)
                         VALUES ($1, 0, 0) ON CONFLICT (practice) DO NOTHING",
                        &[&key],
                    )?;
                    // A new practice's (no) rows are of this OpenGP's
                    // extraction version.
                    c.execute(
                        "INSERT INTO index_state (practice, version)
                         VALUES ($1, $2) ON CONFLICT (practice) DO NOTHING",
                        &[&key, &(gp_store::INDEX_VERSION as i32)],
                    )?;
                }
                c.batch("COMMIT")?;
                Ok(row)
            };
            match step() {
                Ok(row) => row.as_ref().and_then(practice_of).ok_or_else(|| {
                    StoreError::Backend("the practice vanished after insert".into())
                }),
                Err(e) => {
                    let _ = c.batch("ROLLBACK");
                    Err(db_err(e))
                }
            }
        })
    }

    /// The database's size as PostgreSQL counts it (tables, indexes, TOAST).
    fn disk_bytes(&self) -> Result<u64, StoreError> {
        self.readers.with(|c| {
            let rows = c
                .query("SELECT pg_database_size(current_database())", &[])
                .map_err(db_err)?;
            let size: i64 = rows
                .first()
                .map(|r| r.try_get(0))
                .transpose()
                .map_err(db_err)?
                .unwrap_or(0);
            Ok(size.max(0) as u64)
        })
    }

    fn practices(&self, _actor: &Actor) -> Result<Vec<Practice>, StoreError> {
        self.readers.with(|c| {
            let rows = c
                .query("SELECT key, ods, name FROM practice ORDER BY ods", &[])
                .map_err(db_err)?;
            Ok(rows.iter().filter_map(practice_of).collect())
        })
    }

    fn read(
        &self,
        ctx: &Ctx,
        job: &mut dyn FnMut(&mut dyn ReadTx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.readers.with(|c| {
            // One snapshot for all of the job's statements.
            c.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .map_err(db_err)?;
            let out = job(&mut scoped::Scoped {
                conn: &mut *c,
                practice: ctx.practice.key,
                for_update: false,
                sees: ctx.sees(),
                bodies: &self.bodies,
            });
            let end = c.batch("COMMIT");
            if end.is_err() {
                let _ = c.batch("ROLLBACK");
            }
            out
        })
    }

    fn submit(&self, ctx: &Ctx, job: Box<dyn WriteJob>) {
        self.writer.submit(ctx, job);
    }

    fn close(&self) {
        self.writer.close();
        drop(self.readers.drain());
    }
}

impl TerminologyStore for PgBackend {
    fn begin_snomed_load(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<Box<dyn SnomedLoad>, StoreError> {
        // A connection of its own for the length of the load: practices'
        // writes go on meanwhile.
        let conn = self.connector.connect()?;
        Ok(Box::new(terminology::PgLoad::begin(conn, name, actor)?))
    }

    fn snomed_release(&self, _actor: &Actor) -> Result<Option<ReleaseInfo>, StoreError> {
        self.readers.with(terminology::release)
    }

    fn read_snomed(
        &self,
        _actor: &Actor,
        sink: &mut dyn FnMut(gp_terminology::rf2::Rows) -> Result<(), StoreError>,
    ) -> Result<Option<ReleaseInfo>, StoreError> {
        self.readers.with(|c| terminology::read_all(c, sink))
    }

    fn store_dmd(
        &self,
        actor: &Actor,
        name: &str,
        release: gp_terminology::dmd::DmdRelease,
    ) -> Result<gp_store::DmdInfo, StoreError> {
        let mut conn = self.connector.connect()?;
        dmd::store(&mut conn, actor, name, &release)
    }

    fn dmd_release(&self, _actor: &Actor) -> Result<Option<gp_store::DmdInfo>, StoreError> {
        self.readers.with(dmd::release)
    }

    fn read_dmd(
        &self,
        _actor: &Actor,
    ) -> Result<Option<(gp_store::DmdInfo, gp_terminology::dmd::DmdRelease)>, StoreError> {
        self.readers.with(dmd::read)
    }
}
