//! The versioned schema, recorded in `schema_migrations`.
//!
//! Migrations are **additive** (expand, then contract in a later release once
//! no running version needs the old shape), so an older OpenGP keeps serving
//! while a newer one migrates: it finds a schema version it does not know,
//! logs it, and carries on. Each migration runs in its own transaction with a
//! short `lock_timeout`, so a migration that would queue behind a busy table
//! fails fast instead of stalling every request behind its lock. A
//! session-level advisory lock keeps two servers starting at once from
//! migrating at the same time.

use gp_store::StoreError;

use crate::conn::{Conn, db_err};

/// One step of the schema. Never edit one that has shipped: add another.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

/// Every table is keyed by practice first, so that each can be distributed
/// by practice (Citus `create_distributed_table(..., 'practice')`) and no
/// statement ever needs rows of two practices. There is no sequence: the
/// practice key is random, and write order is a per-practice counter.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "practices, resource versions, current versions, per-practice counters",
    sql: "
    -- The registry of practices (a reference table under Citus).
    CREATE TABLE practice (
        key bigint PRIMARY KEY,
        ods text NOT NULL UNIQUE,
        name text NOT NULL,
        created_at bigint NOT NULL,
        created_by text NOT NULL
    );
    -- Each practice's write order and clock. A writer locks its practice's
    -- row for the length of its transaction, so sequence numbers commit in
    -- order within a practice (history pages stay stable) and conditional
    -- writes of one practice are serialised, while other practices never
    -- wait on it.
    CREATE TABLE practice_counter (
        practice bigint PRIMARY KEY,
        seq bigint NOT NULL,
        stamped bigint NOT NULL
    );
    -- Every version ever written, deletions included (body empty).
    CREATE TABLE resource_version (
        practice bigint NOT NULL,
        type text NOT NULL,
        id text NOT NULL,
        version bigint NOT NULL,
        seq bigint NOT NULL,
        last_updated bigint NOT NULL,
        deleted boolean NOT NULL,
        author text NOT NULL,
        body bytea NOT NULL,
        PRIMARY KEY (practice, type, id, version)
    );
    CREATE UNIQUE INDEX resource_version_by_seq ON resource_version (practice, seq);
    CREATE INDEX resource_version_by_type_seq ON resource_version (practice, type, seq);
    -- The current version of each resource, for reads, search and listing.
    CREATE TABLE resource_current (
        practice bigint NOT NULL,
        type text NOT NULL,
        id text NOT NULL,
        version bigint NOT NULL,
        seq bigint NOT NULL,
        last_updated bigint NOT NULL,
        deleted boolean NOT NULL,
        PRIMARY KEY (practice, type, id)
    );
    CREATE INDEX resource_current_by_time ON resource_current (practice, type, last_updated, seq);
    ",
}];

/// An arbitrary constant naming the migration lock.
const MIGRATION_LOCK: i64 = 0x4f70_656e_4750; // "OpenGP"

pub(crate) fn migrate(conn: &mut Conn) -> Result<(), StoreError> {
    conn.batch(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .map_err(db_err)?;
    let out = migrate_locked(conn);
    let _ = conn.batch(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
    out
}

fn migrate_locked(conn: &mut Conn) -> Result<(), StoreError> {
    conn.batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version integer PRIMARY KEY,
            name text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .map_err(db_err)?;
    let applied: Vec<i32> = conn
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .map_err(db_err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for m in MIGRATIONS {
        if applied.contains(&m.version) {
            continue;
        }
        let mut step = || -> Result<(), postgres::Error> {
            conn.batch("BEGIN; SET LOCAL lock_timeout = '5s'")?;
            conn.batch(m.sql)?;
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[&m.version, &m.name],
            )?;
            conn.batch("COMMIT")
        };
        if let Err(e) = step() {
            let _ = conn.batch("ROLLBACK");
            return Err(StoreError::Backend(format!(
                "schema migration {} ({}) failed: {e}",
                m.version, m.name
            )));
        }
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied schema migration"
        );
    }
    let known = MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some(newer) = applied.iter().copied().filter(|v| *v > known).max() {
        // Additive migrations keep the old shape working: serve on.
        tracing::info!(
            schema = newer,
            known,
            "the schema is newer than this OpenGP; serving with the columns it knows"
        );
    }
    Ok(())
}
