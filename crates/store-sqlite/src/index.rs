//! Writing search index rows: a resource's rows are replaced with those of
//! its new current version, in the same transaction as the version itself.

use gp_fhir::search::index::{IndexEntry, IndexValue};
use gp_store::StoreError;
use rusqlite::{Connection, params};

use crate::db_err;

/// The index tables, one per value type.
pub(crate) const TABLES: [&str; 7] = [
    "idx_string",
    "idx_token",
    "idx_date",
    "idx_number",
    "idx_quantity",
    "idx_reference",
    "idx_uri",
];

/// Replaces the index rows of `ty/id` in `practice` with `entries`.
/// `first` says the resource is new (version 1), so it has none to delete.
pub(crate) fn replace(
    conn: &Connection,
    practice: i64,
    ty: &str,
    id: &str,
    entries: &[IndexEntry],
    first: bool,
) -> Result<(), StoreError> {
    for table in TABLES.iter().filter(|_| !first) {
        conn.prepare_cached(&format!(
            "DELETE FROM {table} WHERE practice = ?1 AND type = ?2 AND id = ?3"
        ))
        .and_then(|mut s| s.execute(params![practice, ty, id]))
        .map_err(db_err)?;
    }
    for e in entries {
        let base = (practice, ty, id, e.code.as_str(), i64::from(e.group));
        let result = match &e.value {
            IndexValue::String { norm, exact } => conn
                .prepare_cached("INSERT INTO idx_string (practice, type, id, param, grp, norm, exact) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                .and_then(|mut s| s.execute(params![base.0, base.1, base.2, base.3, base.4, norm, exact])),
            IndexValue::Token { system, code, text } => conn
                .prepare_cached("INSERT INTO idx_token (practice, type, id, param, grp, system, code, text) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
                .and_then(|mut s| s.execute(params![base.0, base.1, base.2, base.3, base.4, system, code, text])),
            IndexValue::Date { low, high } => conn
                .prepare_cached("INSERT INTO idx_date (practice, type, id, param, grp, low, high) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                .and_then(|mut s| s.execute(params![base.0, base.1, base.2, base.3, base.4, low, high])),
            IndexValue::Number { value } => conn
                .prepare_cached("INSERT INTO idx_number (practice, type, id, param, grp, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                .and_then(|mut s| s.execute(params![base.0, base.1, base.2, base.3, base.4, value])),
            IndexValue::Quantity { value, system, code } => conn
                .prepare_cached("INSERT INTO idx_quantity (practice, type, id, param, grp, value, system, code) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
                .and_then(|mut s| s.execute(params![base.0, base.1, base.2, base.3, base.4, value, system, code])),
            IndexValue::Reference { target_type, target_id, url } => conn
                .prepare_cached("INSERT INTO idx_reference (practice, type, id, param, grp, target_type, target_id, url) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
                .and_then(|mut s| s.execute(params![base.0, base.1, base.2, base.3, base.4, target_type, target_id, url])),
            IndexValue::Uri(uri) => conn
                .prepare_cached("INSERT INTO idx_uri (practice, type, id, param, grp, uri) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                .and_then(|mut s| s.execute(params![base.0, base.1, base.2, base.3, base.4, uri])),
        };
        result.map_err(db_err)?;
    }
    Ok(())
}
