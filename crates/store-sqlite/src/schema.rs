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
    // 13: SMART apps can be disabled; the authorization server's codes,
    // launch contexts and client assertion ids survive a restart.
    crate::smart::ONCE_MIGRATION,
    // 14: an administrator can disable an account (no sign-in, no session).
    "ALTER TABLE app_user ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;",
    // 15: which extraction version each practice's index rows are of, and
    // the cursor of a reindex under way (gp-store reindex.rs). The
    // practices stored before have rows of an unknown version (0), so the
    // server reindexes them when it starts.
    "CREATE TABLE index_state (
        practice INTEGER PRIMARY KEY REFERENCES practice(key),
        version INTEGER NOT NULL,
        resume_version INTEGER,
        after_type TEXT,
        after_id TEXT
    );
    INSERT INTO index_state (practice, version) SELECT key, 0 FROM practice;",
    // 16: a break-glass grant belongs to the session that made it (the hash
    // of its token); grants made before belong to none, so they end.
    "ALTER TABLE break_glass ADD COLUMN session TEXT NOT NULL DEFAULT '';",
    // 17: a UCUM quantity's canonical form beside it (search.html#quantity),
    // with the index a UCUM search seeks; rows stored before gain it when
    // the server reindexes (extraction version 2).
    "ALTER TABLE idx_quantity ADD COLUMN canonical_value REAL;
    ALTER TABLE idx_quantity ADD COLUMN canonical_code TEXT;
    CREATE INDEX idx_quantity_canonical ON idx_quantity (practice, type, param, canonical_code, canonical_value);",
    // 18: the zstd dictionaries each practice's versions' bodies are
    // compressed with (`gp_store_sql::body`), each with the practice's
    // versions when it was trained. Versions stored before stay as they are.
    "CREATE TABLE body_dict (
        practice INTEGER NOT NULL REFERENCES practice(key),
        id INTEGER NOT NULL,
        trained_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        bytes BLOB NOT NULL,
        PRIMARY KEY (practice, id)
    );",
    // 19: where a user-facing SMART app is opened from a patient's record
    // (EHR launch); NULL: it is not launched from the record.
    "ALTER TABLE smart_app ADD COLUMN launch_url TEXT;",
    // 20: index rows keyed by resource. Each resource has a `rid`, given
    // when it is first stored (the rowid of that first version, so never
    // another resource's) and kept through its versions; the index tables
    // are `WITHOUT ROWID`, each row stored once in its owner's order
    // (`rid, param, n`: `n` numbers a resource's rows), with one value
    // index (practice, type and parameter, then the value) instead of a
    // table, an owner index and one or two value indexes repeating the
    // practice, type and id. The rows are written again from the bodies
    // when the server starts (reindex.rs in gp-store: version 0 is older
    // than any).
    "ALTER TABLE resource_current ADD COLUMN rid INTEGER;
    UPDATE resource_current SET rid = vrow;
    CREATE UNIQUE INDEX resource_current_rid ON resource_current (rid);
    DROP TABLE idx_string; DROP TABLE idx_token; DROP TABLE idx_date; DROP TABLE idx_number;
    DROP TABLE idx_quantity; DROP TABLE idx_reference; DROP TABLE idx_uri;
    CREATE TABLE idx_string (rid INTEGER NOT NULL, param TEXT NOT NULL, n INTEGER NOT NULL,
        practice INTEGER NOT NULL, type TEXT NOT NULL, grp INTEGER NOT NULL,
        norm TEXT NOT NULL, exact TEXT NOT NULL, PRIMARY KEY (rid, param, n)) WITHOUT ROWID;
    CREATE INDEX idx_string_value ON idx_string (practice, type, param, norm);
    CREATE TABLE idx_token (rid INTEGER NOT NULL, param TEXT NOT NULL, n INTEGER NOT NULL,
        practice INTEGER NOT NULL, type TEXT NOT NULL, grp INTEGER NOT NULL,
        system TEXT, code TEXT, text TEXT, PRIMARY KEY (rid, param, n)) WITHOUT ROWID;
    CREATE INDEX idx_token_value ON idx_token (practice, type, param, code, system);
    CREATE TABLE idx_date (rid INTEGER NOT NULL, param TEXT NOT NULL, n INTEGER NOT NULL,
        practice INTEGER NOT NULL, type TEXT NOT NULL, grp INTEGER NOT NULL,
        low INTEGER NOT NULL, high INTEGER NOT NULL, PRIMARY KEY (rid, param, n)) WITHOUT ROWID;
    CREATE INDEX idx_date_value ON idx_date (practice, type, param, low, high);
    CREATE TABLE idx_number (rid INTEGER NOT NULL, param TEXT NOT NULL, n INTEGER NOT NULL,
        practice INTEGER NOT NULL, type TEXT NOT NULL, grp INTEGER NOT NULL,
        value REAL NOT NULL, PRIMARY KEY (rid, param, n)) WITHOUT ROWID;
    CREATE INDEX idx_number_value ON idx_number (practice, type, param, value);
    CREATE TABLE idx_quantity (rid INTEGER NOT NULL, param TEXT NOT NULL, n INTEGER NOT NULL,
        practice INTEGER NOT NULL, type TEXT NOT NULL, grp INTEGER NOT NULL,
        value REAL NOT NULL, system TEXT, code TEXT, canonical_value REAL, canonical_code TEXT,
        PRIMARY KEY (rid, param, n)) WITHOUT ROWID;
    CREATE INDEX idx_quantity_value ON idx_quantity (practice, type, param, code, value);
    CREATE INDEX idx_quantity_canonical ON idx_quantity (practice, type, param, canonical_code, canonical_value);
    CREATE TABLE idx_reference (rid INTEGER NOT NULL, param TEXT NOT NULL, n INTEGER NOT NULL,
        practice INTEGER NOT NULL, type TEXT NOT NULL, grp INTEGER NOT NULL,
        target_type TEXT, target_id TEXT, url TEXT, PRIMARY KEY (rid, param, n)) WITHOUT ROWID;
    CREATE INDEX idx_reference_value ON idx_reference (practice, type, param, target_id, target_type);
    CREATE TABLE idx_uri (rid INTEGER NOT NULL, param TEXT NOT NULL, n INTEGER NOT NULL,
        practice INTEGER NOT NULL, type TEXT NOT NULL, grp INTEGER NOT NULL,
        uri TEXT NOT NULL, PRIMARY KEY (rid, param, n)) WITHOUT ROWID;
    CREATE INDEX idx_uri_value ON idx_uri (practice, type, param, uri);
    UPDATE index_state SET version = 0, resume_version = NULL, after_type = NULL, after_id = NULL;",
];

/// The migration keying index rows by resource (`resource_current.rid`).
#[cfg(test)]
const RID_AT: usize = 20;

/// The migration adding `idx_text`, after which the current versions stored
/// before it are indexed in Rust.
const TEXT_AT: usize = 12;

/// The migration adding `resource_current.restricted`, after which the
/// rows stored before it are marked in Rust (`accounts::backfill_restricted`).
const RESTRICTED_AT: usize = 9;

pub(crate) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    migrate_to(conn, MIGRATIONS.len())
}

/// Applies the migrations up to schema version `target` (an older
/// OpenGP's schema, for the upgrade tests).
fn migrate_to(conn: &Connection, target: usize) -> Result<(), StoreError> {
    let current: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(db_err)? as usize;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "the database is at schema version {current}, newer than this OpenGP ({}); upgrade OpenGP",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().take(target).skip(current) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A database from before index rows were keyed by resource (schema
    /// 19): each current resource gets its current version's rowid as its
    /// `rid`, the old rows are gone and every practice's index is marked
    /// as needing the rebuild the server runs at start.
    #[test]
    fn upgrading_keys_resources_and_asks_for_a_reindex() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let conn = Connection::open(dir.path().join("opengp.db")).unwrap_or_else(|e| panic!("{e}"));
        configure(&conn, false).unwrap_or_else(|e| panic!("{e}"));
        migrate_to(&conn, RID_AT - 1).unwrap_or_else(|e| panic!("{e}"));
        conn.execute_batch(
            "INSERT INTO practice (key, ods, name, created_at, created_by) VALUES (1, 'A81001', 'Old', 0, 'system');
             INSERT INTO index_state (practice, version) VALUES (1, 7);
             INSERT INTO resource_version (rowid, practice, type, id, version, last_updated, deleted, author, body)
               VALUES (1, 1, 'Patient', 'p1', 1, 1, 0, 'u', X''), (2, 1, 'Patient', 'p1', 2, 2, 0, 'u', X''),
                      (3, 1, 'Patient', 'p2', 1, 3, 0, 'u', X'');
             INSERT INTO resource_current (practice, type, id, version, last_updated, deleted, vrow)
               VALUES (1, 'Patient', 'p1', 2, 2, 0, 2), (1, 'Patient', 'p2', 1, 3, 0, 3);
             INSERT INTO idx_token (practice, type, id, param, grp, system, code)
               VALUES (1, 'Patient', 'p1', 'gender', 0, NULL, 'female');",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        migrate(&conn).unwrap_or_else(|e| panic!("{e}"));
        let one = |sql: &str| -> i64 {
            conn.query_row(sql, [], |r| r.get(0))
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        };
        assert_eq!(one("SELECT rid FROM resource_current WHERE id = 'p1'"), 2);
        assert_eq!(one("SELECT rid FROM resource_current WHERE id = 'p2'"), 3);
        assert_eq!(one("SELECT count(*) FROM idx_token"), 0);
        assert_eq!(one("SELECT version FROM index_state WHERE practice = 1"), 0);
    }

    /// A database written by an OpenGP from before full-text search (schema
    /// 11) gains the words of its current versions when opened, and only
    /// theirs: not a deleted resource's, not an old version's.
    #[test]
    fn upgrading_indexes_the_words_of_resources_stored_before() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let conn = Connection::open(dir.path().join("opengp.db")).unwrap_or_else(|e| panic!("{e}"));
        configure(&conn, false).unwrap_or_else(|e| panic!("{e}"));
        migrate_to(&conn, TEXT_AT - 1).unwrap_or_else(|e| panic!("{e}"));
        let condition = |words: &str| {
            serde_json::json!({
                "resourceType": "Condition", "id": "c1",
                "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{words}</div>")},
                "subject": {"reference": "Patient/p1"}
            })
            .to_string()
        };
        conn.execute_batch(&format!(
            "INSERT INTO practice (key, ods, name, created_at, created_by) VALUES (1, 'A81001', 'Old', 0, 'system');
             INSERT INTO resource_version (rowid, practice, type, id, version, last_updated, deleted, author, body)
               VALUES (1, 1, 'Condition', 'c1', 1, 1, 0, 'u', CAST('{}' AS BLOB)),
                      (2, 1, 'Condition', 'c1', 2, 2, 0, 'u', CAST('{}' AS BLOB)),
                      (3, 1, 'Condition', 'c2', 1, 3, 0, 'u', CAST('{}' AS BLOB)),
                      (4, 1, 'Condition', 'c2', 2, 4, 1, 'u', X'');
             INSERT INTO resource_current (practice, type, id, version, last_updated, deleted, vrow)
               VALUES (1, 'Condition', 'c1', 2, 2, 0, 2), (1, 'Condition', 'c2', 2, 4, 1, 4);",
            condition("Hay fever"),
            condition("Asthma, well controlled"),
            condition("Gout"),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        migrate(&conn).unwrap_or_else(|e| panic!("{e}"));
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(version as usize, MIGRATIONS.len());
        let matching = |q: &str| -> Vec<i64> {
            let mut s = conn
                .prepare("SELECT rowid FROM idx_text WHERE idx_text MATCH ?1 ORDER BY rowid")
                .unwrap_or_else(|e| panic!("{e}"));
            s.query_map([q], |r| r.get(0))
                .and_then(|rows| rows.collect())
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(matching("narrative : \"asthm\"*"), vec![2]);
        assert_eq!(matching("content : \"controlled\"*"), vec![2]);
        assert!(
            matching("content : \"hay\"*").is_empty(),
            "an old version's words"
        );
        assert!(
            matching("content : \"gout\"*").is_empty(),
            "a deleted resource's words"
        );
    }
}
