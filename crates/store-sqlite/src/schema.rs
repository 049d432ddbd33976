//! Connection settings and the versioned schema (`PRAGMA user_version`).

use rusqlite::Connection;

use crate::db_err;
use gp_store::StoreError;

/// Settings every connection needs. Writers make the WAL durable at each
/// commit (`synchronous=FULL`); readers only need the timeout.
pub(crate) fn configure(conn: &Connection, read_only: bool) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db_err)?;
    let common =
        "PRAGMA cache_size = -65536; PRAGMA mmap_size = 268435456; PRAGMA temp_store = MEMORY;";
    conn.execute_batch(common).map_err(db_err)?;
    if !read_only {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(db_err)?;
    }
    Ok(())
}

/// Each migration runs once, in order, inside a transaction; the schema
/// version is the count applied. Never edit one that has shipped: add another.
const MIGRATIONS: &[&str] = &[
    // 1: practices, and every version of every resource.
    "CREATE TABLE practice (
        key INTEGER PRIMARY KEY,
        ods TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL
    );
    -- Every version ever written, deletions included (body empty). The rowid
    -- orders versions as they were written, which history paging relies on.
    CREATE TABLE resource_version (
        practice INTEGER NOT NULL REFERENCES practice(key),
        type TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        last_updated INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        author TEXT NOT NULL,
        body BLOB NOT NULL,
        UNIQUE (practice, type, id, version)
    );
    CREATE INDEX resource_version_by_time ON resource_version (practice, last_updated);
    CREATE INDEX resource_version_by_type_time ON resource_version (practice, type, last_updated);
    -- The current version of each resource, for search and listing.
    CREATE TABLE resource_current (
        practice INTEGER NOT NULL,
        type TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        last_updated INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        vrow INTEGER NOT NULL,
        PRIMARY KEY (practice, type, id)
    ) WITHOUT ROWID;
    CREATE INDEX resource_current_by_time ON resource_current (practice, type, last_updated);",
    // 2: search indexes, one table per parameter type, rows for the current
    // version of each resource only (search.html#ptypes). `grp` ties the
    // components of one composite value together (0 otherwise).
    "CREATE TABLE idx_string (practice INTEGER NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL,
        param TEXT NOT NULL, grp INTEGER NOT NULL, norm TEXT NOT NULL, exact TEXT NOT NULL);
    CREATE INDEX idx_string_value ON idx_string (practice, type, param, norm);
    CREATE INDEX idx_string_owner ON idx_string (practice, type, id);
    CREATE TABLE idx_token (practice INTEGER NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL,
        param TEXT NOT NULL, grp INTEGER NOT NULL, system TEXT, code TEXT, text TEXT);
    CREATE INDEX idx_token_value ON idx_token (practice, type, param, code, system);
    CREATE INDEX idx_token_owner ON idx_token (practice, type, id);
    CREATE TABLE idx_date (practice INTEGER NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL,
        param TEXT NOT NULL, grp INTEGER NOT NULL, low INTEGER NOT NULL, high INTEGER NOT NULL);
    CREATE INDEX idx_date_value ON idx_date (practice, type, param, low, high);
    CREATE INDEX idx_date_owner ON idx_date (practice, type, id);
    CREATE TABLE idx_number (practice INTEGER NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL,
        param TEXT NOT NULL, grp INTEGER NOT NULL, value REAL NOT NULL);
    CREATE INDEX idx_number_value ON idx_number (practice, type, param, value);
    CREATE INDEX idx_number_owner ON idx_number (practice, type, id);
    CREATE TABLE idx_quantity (practice INTEGER NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL,
        param TEXT NOT NULL, grp INTEGER NOT NULL, value REAL NOT NULL, system TEXT, code TEXT);
    CREATE INDEX idx_quantity_value ON idx_quantity (practice, type, param, code, value);
    CREATE INDEX idx_quantity_owner ON idx_quantity (practice, type, id);
    CREATE TABLE idx_reference (practice INTEGER NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL,
        param TEXT NOT NULL, grp INTEGER NOT NULL, target_type TEXT, target_id TEXT, url TEXT);
    CREATE INDEX idx_reference_value ON idx_reference (practice, type, param, target_id);
    CREATE INDEX idx_reference_target ON idx_reference (practice, target_type, target_id);
    CREATE INDEX idx_reference_owner ON idx_reference (practice, type, id);
    CREATE TABLE idx_uri (practice INTEGER NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL,
        param TEXT NOT NULL, grp INTEGER NOT NULL, uri TEXT NOT NULL);
    CREATE INDEX idx_uri_value ON idx_uri (practice, type, param, uri);
    CREATE INDEX idx_uri_owner ON idx_uri (practice, type, id);",
    // 3: token and reference value indexes end with the resource id, so that
    // checking one candidate against a code or a target is one seek.
    "DROP INDEX idx_token_value;
    CREATE INDEX idx_token_value ON idx_token (practice, type, param, code, id, system);
    DROP INDEX idx_reference_value;
    CREATE INDEX idx_reference_value ON idx_reference (practice, type, param, target_id, id);",
    // 4: SNOMED CT releases (national reference data, no practice key).
    crate::terminology::MIGRATION,
    // 5: dm+d releases (national reference data, no practice key).
    crate::dmd::MIGRATION,
    // 6: a practice can be frozen read-only (a migration's cut-over), with
    // the reason writes are refused.
    "ALTER TABLE practice ADD COLUMN frozen TEXT;",
    // 7: staff accounts, sessions, the practice's access policy.
    crate::accounts::MIGRATION,
    // 8: the audit chain, and append-only AuditEvents.
    crate::audit::MIGRATION,
    // 9: restricted entries and break-glass grants.
    crate::accounts::RESTRICTED_MIGRATION,
    // 10: SMART on FHIR apps and the tokens issued to them.
    crate::smart::MIGRATION,
    // 11: the role profiles a session may switch between (NULL for
    // sessions opened before: the account's).
    "ALTER TABLE app_session ADD COLUMN roles TEXT;",
    // 12: full-text search (search.html#text): the words of each current
    // version's narrative (`_text`) and whole content (`_content`), keyed
    // by the version's `resource_version` rowid; contentless, so the words
    // are stored once, in the index. Rows stored before are filled in Rust
    // (`index::backfill_text`).
    "CREATE VIRTUAL TABLE idx_text USING fts5(narrative, content, content='', contentless_delete=1,
        detail=column, tokenize='unicode61 remove_diacritics 2');",
];

/// The migration adding `idx_text`, after which the current versions stored
/// before it are indexed in Rust.
const TEXT_AT: usize = 12;

/// The migration adding `resource_current.restricted`, after which the
/// rows stored before it are marked in Rust (`accounts::backfill_restricted`).
const RESTRICTED_AT: usize = 9;

pub(crate) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let current: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(db_err)? as usize;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "the database is at schema version {current}, newer than this OpenGP ({}); upgrade OpenGP",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = i + 1;
        let batch = format!("BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {version}; COMMIT;");
        if let Err(e) = conn.execute_batch(&batch) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(StoreError::Backend(format!(
                "schema migration {version} failed: {e}"
            )));
        }
        tracing::info!(version, "applied schema migration");
        if version == RESTRICTED_AT {
            crate::accounts::backfill_restricted(conn)?;
        }
        if version == TEXT_AT {
            crate::index::backfill_text(conn)?;
        }
    }
    Ok(())
}
