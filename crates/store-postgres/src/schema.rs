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
const MIGRATIONS: &[Migration] = &[
    Migration {
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
    },
    Migration {
        version: 2,
        name: "search indexes, one table per parameter type",
        // The same tables, columns and index names as the SQLite store, so that
        // one SQL builder (gp-store-sql) serves both. Rows describe the current
        // version of each resource only (search.html#ptypes); `grp` ties the
        // components of one composite value together (0 otherwise). Values are
        // compared byte-wise (`COLLATE "C"`, as SQLite does), so that a prefix is
        // a range of the value index and sort orders agree between the stores;
        // keys keep the database's collation, as `resource_current` does.
        // New tables: nothing running is locked.
        sql: r#"
    CREATE TABLE idx_string (practice bigint NOT NULL, type text NOT NULL, id text NOT NULL,
        param text NOT NULL, grp bigint NOT NULL, norm text COLLATE "C" NOT NULL, exact text COLLATE "C" NOT NULL);
    CREATE INDEX idx_string_value ON idx_string (practice, type, param, norm);
    CREATE INDEX idx_string_owner ON idx_string (practice, type, id);
    CREATE TABLE idx_token (practice bigint NOT NULL, type text NOT NULL, id text NOT NULL,
        param text NOT NULL, grp bigint NOT NULL, system text COLLATE "C", code text COLLATE "C", text text COLLATE "C");
    CREATE INDEX idx_token_value ON idx_token (practice, type, param, code, id, system);
    CREATE INDEX idx_token_owner ON idx_token (practice, type, id);
    CREATE TABLE idx_date (practice bigint NOT NULL, type text NOT NULL, id text NOT NULL,
        param text NOT NULL, grp bigint NOT NULL, low bigint NOT NULL, high bigint NOT NULL);
    CREATE INDEX idx_date_value ON idx_date (practice, type, param, low, high);
    CREATE INDEX idx_date_owner ON idx_date (practice, type, id);
    CREATE TABLE idx_number (practice bigint NOT NULL, type text NOT NULL, id text NOT NULL,
        param text NOT NULL, grp bigint NOT NULL, value double precision NOT NULL);
    CREATE INDEX idx_number_value ON idx_number (practice, type, param, value);
    CREATE INDEX idx_number_owner ON idx_number (practice, type, id);
    CREATE TABLE idx_quantity (practice bigint NOT NULL, type text NOT NULL, id text NOT NULL,
        param text NOT NULL, grp bigint NOT NULL, value double precision NOT NULL, system text COLLATE "C",
        code text COLLATE "C");
    CREATE INDEX idx_quantity_value ON idx_quantity (practice, type, param, code, value);
    CREATE INDEX idx_quantity_owner ON idx_quantity (practice, type, id);
    CREATE TABLE idx_reference (practice bigint NOT NULL, type text NOT NULL, id text NOT NULL,
        param text NOT NULL, grp bigint NOT NULL, target_type text, target_id text, url text COLLATE "C");
    CREATE INDEX idx_reference_value ON idx_reference (practice, type, param, target_id, id);
    CREATE INDEX idx_reference_target ON idx_reference (practice, target_type, target_id);
    CREATE INDEX idx_reference_owner ON idx_reference (practice, type, id);
    CREATE TABLE idx_uri (practice bigint NOT NULL, type text NOT NULL, id text NOT NULL,
        param text NOT NULL, grp bigint NOT NULL, uri text COLLATE "C" NOT NULL);
    CREATE INDEX idx_uri_value ON idx_uri (practice, type, param, uri);
    CREATE INDEX idx_uri_owner ON idx_uri (practice, type, id);
    "#,
    },
    Migration {
        version: 3,
        name: "SNOMED CT releases (national reference data)",
        // New tables, without a practice key: terminology is the same for
        // every practice (a reference table under Citus).
        sql: crate::terminology::MIGRATION,
    },
    Migration {
        version: 4,
        name: "dm+d releases (national reference data)",
        sql: crate::dmd::MIGRATION,
    },
    Migration {
        version: 5,
        name: "a practice can be frozen read-only",
        // A nullable column without a default: no table rewrite, no long lock.
        sql: "ALTER TABLE practice ADD COLUMN frozen text;",
    },
    Migration {
        version: 6,
        name: "staff accounts, sessions, the practice's access policy",
        sql: crate::accounts::MIGRATION,
    },
    Migration {
        version: 7,
        name: "the audit chain, and append-only AuditEvents",
        sql: crate::audit::MIGRATION,
    },
    Migration {
        version: 8,
        name: "restricted entries and break-glass grants",
        sql: crate::accounts::RESTRICTED_MIGRATION,
    },
    Migration {
        version: 9,
        name: "SMART on FHIR apps and the tokens issued to them",
        sql: crate::smart::MIGRATION,
    },
    Migration {
        version: 10,
        name: "the role profiles a session may switch between",
        // NULL for sessions opened before: the account's roles.
        sql: "ALTER TABLE app_session ADD COLUMN roles text;",
    },
    Migration {
        version: 11,
        name: "full-text search: _text and _content",
        // search.html#text: the words of each current version's narrative
        // (`_text`) and whole content (`_content`), one row per parameter,
        // searched through a GIN index of their tsvector. Rows stored
        // before are filled in Rust (`index::backfill_text`).
        sql:
            "CREATE TABLE idx_text (practice bigint NOT NULL, type text NOT NULL, id text NOT NULL,
            param text NOT NULL, grp bigint NOT NULL, body text NOT NULL);
        CREATE INDEX idx_text_owner ON idx_text (practice, type, id);
        CREATE INDEX idx_text_words ON idx_text USING gin (to_tsvector('simple', body));",
    },
    Migration {
        version: 12,
        name: "SMART apps can be disabled; the authorization server's one-time values",
        sql: crate::smart::ONCE_MIGRATION,
    },
    Migration {
        version: 13,
        name: "an administrator can disable an account",
        sql: "ALTER TABLE app_user ADD COLUMN disabled boolean NOT NULL DEFAULT false;",
    },
    Migration {
        version: 14,
        name: "the extraction version of each practice's index rows, and a reindex's cursor",
        // gp-store reindex.rs: the practices stored before have rows of an
        // unknown version (0), so the server reindexes them when it starts.
        sql: "CREATE TABLE index_state (
            practice bigint PRIMARY KEY,
            version integer NOT NULL,
            resume_version integer,
            after_type text,
            after_id text
        );
        INSERT INTO index_state (practice, version) SELECT key, 0 FROM practice;",
    },
    Migration {
        version: 15,
        name: "a break-glass grant belongs to the session that made it",
        // Grants made before belong to no session, so they end. A constant
        // default: no table rewrite.
        sql: "ALTER TABLE break_glass ADD COLUMN session text NOT NULL DEFAULT '';",
    },
    Migration {
        version: 16,
        name: "a UCUM quantity's canonical form beside it",
        // search.html#quantity, as SQLite's 17; rows stored before gain it
        // when the server reindexes (extraction version 2).
        sql: "ALTER TABLE idx_quantity ADD COLUMN canonical_value double precision;
        ALTER TABLE idx_quantity ADD COLUMN canonical_code text COLLATE \"C\";
        CREATE INDEX idx_quantity_canonical ON idx_quantity (practice, type, param, canonical_code, canonical_value);",
    },
    Migration {
        version: 17,
        name: "where a SMART app is opened from a patient's record",
        // As SQLite's 19; NULL: not launched from the record. A nullable
        // column without a default: no table rewrite.
        sql: "ALTER TABLE smart_app ADD COLUMN launch_url text;",
    },
    Migration {
        version: 18,
        name: "the zstd dictionaries each practice's versions' bodies are compressed with",
        // gp_store_sql::body, as SQLite's 18: each with the practice's
        // versions when it was trained. Versions stored before stay as
        // they are.
        sql: "CREATE TABLE body_dict (
            practice bigint NOT NULL REFERENCES practice(key),
            id bigint NOT NULL,
            trained_at bigint NOT NULL,
            created_at bigint NOT NULL,
            bytes bytea NOT NULL,
            PRIMARY KEY (practice, id)
        );",
    },
    Migration {
        version: 19,
        name: "index rows keyed by resource",
        // As SQLite's 20: each resource has a `rid`, given once from a
        // sequence (existing rows are numbered when the column is added)
        // and kept through its versions; index rows carry it instead of
        // the id, with an owner index on `(rid, param)` instead of
        // `(practice, type, id)`, and one value index per table (the
        // reference's target index is its value index). Full-text rows
        // keep their keys. The rows are written again from the bodies when
        // the server starts (reindex.rs in gp-store: version 0 is older
        // than any).
        sql: r#"ALTER TABLE resource_current ADD COLUMN rid bigserial;
        CREATE UNIQUE INDEX resource_current_rid ON resource_current (rid);
        DROP TABLE idx_string, idx_token, idx_date, idx_number, idx_quantity, idx_reference, idx_uri;
        CREATE TABLE idx_string (rid bigint NOT NULL, practice bigint NOT NULL, type text NOT NULL,
            param text NOT NULL, grp bigint NOT NULL, norm text COLLATE "C" NOT NULL, exact text COLLATE "C" NOT NULL);
        CREATE INDEX idx_string_value ON idx_string (practice, type, param, norm);
        CREATE INDEX idx_string_owner ON idx_string (rid, param);
        CREATE TABLE idx_token (rid bigint NOT NULL, practice bigint NOT NULL, type text NOT NULL,
            param text NOT NULL, grp bigint NOT NULL, system text COLLATE "C", code text COLLATE "C", text text COLLATE "C");
        CREATE INDEX idx_token_value ON idx_token (practice, type, param, code, system);
        CREATE INDEX idx_token_owner ON idx_token (rid, param);
        CREATE TABLE idx_date (rid bigint NOT NULL, practice bigint NOT NULL, type text NOT NULL,
            param text NOT NULL, grp bigint NOT NULL, low bigint NOT NULL, high bigint NOT NULL);
        CREATE INDEX idx_date_value ON idx_date (practice, type, param, low, high);
        CREATE INDEX idx_date_owner ON idx_date (rid, param);
        CREATE TABLE idx_number (rid bigint NOT NULL, practice bigint NOT NULL, type text NOT NULL,
            param text NOT NULL, grp bigint NOT NULL, value double precision NOT NULL);
        CREATE INDEX idx_number_value ON idx_number (practice, type, param, value);
        CREATE INDEX idx_number_owner ON idx_number (rid, param);
        CREATE TABLE idx_quantity (rid bigint NOT NULL, practice bigint NOT NULL, type text NOT NULL,
            param text NOT NULL, grp bigint NOT NULL, value double precision NOT NULL, system text COLLATE "C",
            code text COLLATE "C", canonical_value double precision, canonical_code text COLLATE "C");
        CREATE INDEX idx_quantity_value ON idx_quantity (practice, type, param, code, value);
        CREATE INDEX idx_quantity_canonical ON idx_quantity (practice, type, param, canonical_code, canonical_value);
        CREATE INDEX idx_quantity_owner ON idx_quantity (rid, param);
        CREATE TABLE idx_reference (rid bigint NOT NULL, practice bigint NOT NULL, type text NOT NULL,
            param text NOT NULL, grp bigint NOT NULL, target_type text, target_id text, url text COLLATE "C");
        CREATE INDEX idx_reference_value ON idx_reference (practice, type, param, target_id, target_type);
        CREATE INDEX idx_reference_owner ON idx_reference (rid, param);
        CREATE TABLE idx_uri (rid bigint NOT NULL, practice bigint NOT NULL, type text NOT NULL,
            param text NOT NULL, grp bigint NOT NULL, uri text COLLATE "C" NOT NULL);
        CREATE INDEX idx_uri_value ON idx_uri (practice, type, param, uri);
        CREATE INDEX idx_uri_owner ON idx_uri (rid, param);
        UPDATE index_state SET version = 0, resume_version = NULL, after_type = NULL, after_id = NULL;"#,
    },
];

/// The migration adding `idx_text`: its transaction also indexes the
/// current versions stored before it.
const TEXT_AT: i32 = 11;

/// The migration adding `resource_current.restricted`: its transaction
/// also marks the rows stored before it (`accounts::backfill_restricted`).
const RESTRICTED_AT: i32 = 8;

/// An arbitrary constant naming the migration lock.
const MIGRATION_LOCK: i64 = 0x4f70_656e_4750; // "OpenGP"

pub(crate) fn migrate(conn: &mut Conn) -> Result<(), StoreError> {
    migrate_to(conn, i32::MAX)
}

/// Applies the migrations up to version `target` (an older OpenGP's
/// schema, for the upgrade tests).
pub(crate) fn migrate_to(conn: &mut Conn, target: i32) -> Result<(), StoreError> {
    conn.batch(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .map_err(db_err)?;
    let out = migrate_locked(conn, target);
    let _ = conn.batch(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
    out
}

fn migrate_locked(conn: &mut Conn, target: i32) -> Result<(), StoreError> {
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
    for m in MIGRATIONS.iter().filter(|m| m.version <= target) {
        if applied.contains(&m.version) {
            continue;
        }
        let mut step = || -> Result<(), postgres::Error> {
            conn.batch("BEGIN; SET LOCAL lock_timeout = '5s'")?;
            conn.batch(m.sql)?;
            if m.version == RESTRICTED_AT {
                crate::accounts::backfill_restricted(conn)?;
            }
            if m.version == TEXT_AT {
                crate::index::backfill_text(conn)?;
            }
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
