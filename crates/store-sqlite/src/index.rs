//! Writing search index rows: a resource's rows are replaced with those of
//! its new current version, in the same transaction as the version itself.

use gp_fhir::search::index::{IndexEntry, IndexValue};
use gp_store::{IndexState, Reindexed, StoreError};
use rusqlite::{Connection, OptionalExtension, params};

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

/// Where a version's rows go: the full-text table (`idx_text`, FTS5) is
/// keyed by the version's `resource_version` rowid rather than by
/// practice, type and id, which it cannot index.
pub(crate) struct Rows {
    /// The new current version's rowid.
    pub vrow: i64,
    /// None for a new resource (nothing to delete); otherwise the rowid of
    /// the version it replaces, if it had one.
    pub replaced: Option<Option<i64>>,
}

/// Replaces the index rows of the resource `rid` (`ty` in `practice`)
/// with `entries`.
pub(crate) fn replace(
    conn: &Connection,
    practice: i64,
    ty: &str,
    rid: i64,
    entries: &[IndexEntry],
    rows: Rows,
) -> Result<(), StoreError> {
    let first = rows.replaced.is_none();
    if let Some(Some(old)) = rows.replaced {
        conn.prepare_cached("DELETE FROM idx_text WHERE rowid = ?1")
            .and_then(|mut s| s.execute([old]))
            .map_err(db_err)?;
    }
    let (narrative, content) = (text(entries, "_text"), text(entries, "_content"));
    if narrative.is_some() || content.is_some() {
        conn.prepare_cached("INSERT INTO idx_text (rowid, narrative, content) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![rows.vrow, narrative, content]))
            .map_err(db_err)?;
    }
    for table in TABLES.iter().filter(|_| !first) {
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE rid = ?1"))
            .and_then(|mut s| s.execute(params![rid]))
            .map_err(db_err)?;
    }
    for (n, e) in entries.iter().enumerate() {
        // `n` tells a resource's rows of one parameter apart.
        let base = (
            rid,
            e.code.as_str(),
            n as i64,
            practice,
            ty,
            i64::from(e.group),
        );
        let result = match &e.value {
            IndexValue::String { norm, exact } => conn
                .prepare_cached("INSERT INTO idx_string (rid, param, n, practice, type, grp, norm, exact) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
                .and_then(|mut s| s.execute(params![base.0, base.1, base.2, base.3, base.4, base.5, norm, exact])),
            IndexValue::Token { system, code, text } => conn
                .prepare_cached("INSERT INTO idx_token (rid, param, n, practice, type, grp, system, code, text) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")
                .and_then(|mut s| s.execute(params![base.0, base.1, base.2, base.3, base.4, base.5, system, code, text])),
            IndexValue::Date { low, high } => conn
                .prepare_cached("INSERT INTO idx_date (rid, param, n, practice, type, grp, low, high) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
                .and_then(|mut s| s.execute(params![base.0, base.1, base.2, base.3, base.4, base.5, low, high])),
            IndexValue::Number { value } => conn
                .prepare_cached("INSERT INTO idx_number (rid, param, n, practice, type, grp, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                .and_then(|mut s| s.execute(params![base.0, base.1, base.2, base.3, base.4, base.5, value])),
            IndexValue::Quantity { value, system, code, canonical } => conn
                .prepare_cached("INSERT INTO idx_quantity (rid, param, n, practice, type, grp, value, system, code, canonical_value, canonical_code) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)")
                .and_then(|mut s| s.execute(params![base.0, base.1, base.2, base.3, base.4, base.5, value, system, code, canonical.as_ref().map(|c| c.0), canonical.as_ref().map(|c| c.1.as_str())])),
            IndexValue::Reference { target_type, target_id, url } => conn
                .prepare_cached("INSERT INTO idx_reference (rid, param, n, practice, type, grp, target_type, target_id, url) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")
                .and_then(|mut s| s.execute(params![base.0, base.1, base.2, base.3, base.4, base.5, target_type, target_id, url])),
            IndexValue::Uri(uri) => conn
                .prepare_cached("INSERT INTO idx_uri (rid, param, n, practice, type, grp, uri) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                .and_then(|mut s| s.execute(params![base.0, base.1, base.2, base.3, base.4, base.5, uri])),
            IndexValue::Text(_) => Ok(0),
        };
        result.map_err(db_err)?;
    }
    Ok(())
}

/// Replaces the rows of each resource whose current version is still the
/// one its entries were computed from (reindex.rs in gp-store).
pub(crate) fn reindex(
    conn: &Connection,
    practice: i64,
    rows: &[Reindexed],
) -> Result<usize, StoreError> {
    let mut replaced = 0;
    for r in rows {
        let ty = r.resource_type.as_str();
        let rows: Option<(i64, i64)> = conn
            .prepare_cached(
                "SELECT vrow, rid FROM resource_current
                 WHERE practice = ?1 AND type = ?2 AND id = ?3 AND version = ?4 AND NOT deleted",
            )
            .and_then(|mut s| {
                s.query_row(params![practice, ty, r.id, r.version as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
            })
            .map_err(db_err)?;
        let Some((vrow, rid)) = rows else { continue };
        replace(
            conn,
            practice,
            ty,
            rid,
            &r.index,
            Rows {
                vrow,
                replaced: Some(Some(vrow)),
            },
        )?;
        replaced += 1;
    }
    Ok(replaced)
}

/// Where the practice's index stands (schema migration 15); a practice
/// with no row has rows of an unknown version.
pub(crate) fn state(conn: &Connection, practice: i64) -> Result<IndexState, StoreError> {
    conn.prepare_cached(
        "SELECT version, resume_version, after_type, after_id FROM index_state WHERE practice = ?1",
    )
    .and_then(|mut s| {
        s.query_row(params![practice], |r| {
            let resume: (Option<i64>, Option<String>, Option<String>) =
                (r.get(1)?, r.get(2)?, r.get(3)?);
            Ok(IndexState {
                version: r.get::<_, i64>(0)? as u32,
                resume: match resume {
                    (Some(v), Some(ty), Some(id)) => Some((v as u32, ty, id)),
                    _ => None,
                },
            })
        })
        .optional()
    })
    .map(Option::unwrap_or_default)
    .map_err(db_err)
}

pub(crate) fn set_state(
    conn: &Connection,
    practice: i64,
    state: &IndexState,
) -> Result<(), StoreError> {
    let (rv, ty, id) = match &state.resume {
        Some((v, ty, id)) => (Some(i64::from(*v)), Some(ty.as_str()), Some(id.as_str())),
        None => (None, None, None),
    };
    conn.prepare_cached(
        "INSERT INTO index_state (practice, version, resume_version, after_type, after_id)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (practice) DO UPDATE SET version = excluded.version,
           resume_version = excluded.resume_version, after_type = excluded.after_type,
           after_id = excluded.after_id",
    )
    .and_then(|mut s| s.execute(params![practice, i64::from(state.version), rv, ty, id]))
    .map(|_| ())
    .map_err(db_err)
}

/// Fills `idx_text` for the current versions stored before it existed
/// (schema migration 12), inside the migration's transaction.
pub(crate) fn backfill_text(conn: &Connection) -> Result<(), StoreError> {
    let mut s = conn
        .prepare(
            "SELECT c.type, c.vrow, v.body FROM resource_current c
             JOIN resource_version v ON v.rowid = c.vrow WHERE NOT c.deleted",
        )
        .map_err(db_err)?;
    let mut rows = s.query([]).map_err(db_err)?;
    while let Some(r) = rows.next().map_err(db_err)? {
        let (ty, vrow): (String, i64) = (r.get(0).map_err(db_err)?, r.get(1).map_err(db_err)?);
        let body: Vec<u8> = r.get(2).map_err(db_err)?;
        let (Some(ty), Ok(json)) = (
            gp_fhir::ResourceType::parse(&ty),
            serde_json::from_slice::<serde_json::Value>(&body),
        ) else {
            continue;
        };
        let entries = gp_fhir::search::index::text_entries(ty, &json);
        conn.execute(
            "INSERT INTO idx_text (rowid, narrative, content) VALUES (?1, ?2, ?3)",
            params![vrow, text(&entries, "_text"), text(&entries, "_content")],
        )
        .map_err(db_err)?;
    }
    Ok(())
}

/// The words entry of the full-text parameter `code`, if any.
fn text<'e>(entries: &'e [IndexEntry], code: &str) -> Option<&'e str> {
    entries.iter().find_map(|e| match &e.value {
        IndexValue::Text(t) if e.code == code => Some(t.as_str()),
        _ => None,
    })
}
