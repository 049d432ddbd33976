//! Writing search index rows: a resource's rows are replaced with those of
//! its new current version, in the same transaction as the version itself,
//! one statement per table for everything the writer has buffered.

use gp_fhir::search::index::{IndexEntry, IndexValue};
use gp_store::StoreError;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};

use crate::conn::{Conn, db_err};

/// The index tables, one per value type (the schema of gp-store-sql).
const TABLES: [&str; 8] = [
    "idx_string",
    "idx_token",
    "idx_date",
    "idx_number",
    "idx_quantity",
    "idx_reference",
    "idx_uri",
    "idx_text",
];

/// One resource's new current version, for the index.
pub(crate) struct Current<'a> {
    pub ty: &'a str,
    pub id: &'a str,
    /// The resource's key in the index tables (`resource_current.rid`).
    pub rid: i64,
    /// False when this is the resource's first version: there is nothing
    /// to delete.
    pub replaces: bool,
    pub entries: &'a [IndexEntry],
}

/// Replaces the index rows of each resource in `practice`: one `DELETE` per
/// table for the resources that had rows, then one binary `COPY` per table
/// for the new rows (the fastest way PostgreSQL takes rows in).
pub(crate) fn replace(
    conn: &mut Conn,
    practice: i64,
    current: &[Current<'_>],
) -> Result<(), StoreError> {
    let stale: Vec<&Current<'_>> = current.iter().filter(|c| c.replaces).collect();
    if !stale.is_empty() {
        let types: Vec<&str> = stale.iter().map(|c| c.ty).collect();
        let ids: Vec<&str> = stale.iter().map(|c| c.id).collect();
        let rids: Vec<i64> = stale.iter().map(|c| c.rid).collect();
        for table in TABLES {
            if table == "idx_text" {
                conn.execute(
                    "DELETE FROM idx_text WHERE practice = $1
                     AND (type, id) IN (SELECT * FROM unnest($2::text[], $3::text[]))",
                    &[&practice, &types, &ids],
                )
            } else {
                conn.execute(
                    &format!("DELETE FROM {table} WHERE practice = $1 AND rid = ANY($2)"),
                    &[&practice, &rids],
                )
            }
            .map_err(db_err)?;
        }
    }
    let mut by_table: [Vec<(&Current<'_>, &IndexEntry)>; 8] = Default::default();
    for c in current {
        for e in c.entries {
            let n = match &e.value {
                IndexValue::String { .. } => 0,
                IndexValue::Token { .. } => 1,
                IndexValue::Date { .. } => 2,
                IndexValue::Number { .. } => 3,
                IndexValue::Quantity { .. } => 4,
                IndexValue::Reference { .. } => 5,
                IndexValue::Uri(_) => 6,
                IndexValue::Text(_) => 7,
            };
            by_table[n].push((c, e));
        }
    }
    for (table, rows) in TABLES.iter().zip(&by_table) {
        if rows.is_empty() {
            continue;
        }
        let (columns, types) = columns(table);
        // Full-text rows are keyed by type and id, the others by `rid`.
        let (owner, owner_type) = if *table == "idx_text" {
            ("id", Type::TEXT)
        } else {
            ("rid", Type::INT8)
        };
        let sql = format!(
            "COPY {table} (practice, type, {owner}, param, grp, {columns}) FROM STDIN (FORMAT binary)"
        );
        let mut all = vec![Type::INT8, Type::TEXT, owner_type, Type::TEXT, Type::INT8];
        all.extend_from_slice(types);
        let mut w = BinaryCopyInWriter::new(conn.copy_in(&sql).map_err(db_err)?, &all);
        for (c, e) in rows {
            let grp = i64::from(e.group);
            let key: [&(dyn ToSql + Sync); 5] = if *table == "idx_text" {
                [&practice, &c.ty, &c.id, &e.code, &grp]
            } else {
                [&practice, &c.ty, &c.rid, &e.code, &grp]
            };
            let out = match &e.value {
                IndexValue::String { norm, exact } => {
                    w.write(&[key[0], key[1], key[2], key[3], key[4], norm, exact])
                }
                IndexValue::Token { system, code, text } => {
                    w.write(&[key[0], key[1], key[2], key[3], key[4], system, code, text])
                }
                IndexValue::Date { low, high } => {
                    w.write(&[key[0], key[1], key[2], key[3], key[4], low, high])
                }
                IndexValue::Number { value } => {
                    w.write(&[key[0], key[1], key[2], key[3], key[4], value])
                }
                IndexValue::Quantity {
                    value,
                    system,
                    code,
                    canonical,
                } => {
                    let (cv, cc) = (
                        canonical.as_ref().map(|c| c.0),
                        canonical.as_ref().map(|c| c.1.as_str()),
                    );
                    w.write(&[
                        key[0], key[1], key[2], key[3], key[4], value, system, code, &cv, &cc,
                    ])
                }
                IndexValue::Reference {
                    target_type,
                    target_id,
                    url,
                } => w.write(&[
                    key[0],
                    key[1],
                    key[2],
                    key[3],
                    key[4],
                    target_type,
                    target_id,
                    url,
                ]),
                IndexValue::Uri(uri) | IndexValue::Text(uri) => {
                    w.write(&[key[0], key[1], key[2], key[3], key[4], uri])
                }
            };
            out.map_err(db_err)?;
        }
        w.finish().map_err(db_err)?;
    }
    Ok(())
}

/// A table's value columns and their types, after the key columns.
fn columns(table: &str) -> (&'static str, &'static [Type]) {
    match table {
        "idx_string" => ("norm, exact", &[Type::TEXT, Type::TEXT]),
        "idx_token" => ("system, code, text", &[Type::TEXT, Type::TEXT, Type::TEXT]),
        "idx_date" => ("low, high", &[Type::INT8, Type::INT8]),
        "idx_number" => ("value", &[Type::FLOAT8]),
        "idx_quantity" => (
            "value, system, code, canonical_value, canonical_code",
            &[
                Type::FLOAT8,
                Type::TEXT,
                Type::TEXT,
                Type::FLOAT8,
                Type::TEXT,
            ],
        ),
        "idx_reference" => (
            "target_type, target_id, url",
            &[Type::TEXT, Type::TEXT, Type::TEXT],
        ),
        "idx_text" => ("body", &[Type::TEXT]),
        _ => ("uri", &[Type::TEXT]),
    }
}

/// Fills `idx_text` for the current versions stored before it existed
/// (schema migration 11), inside the migration's transaction.
pub(crate) fn backfill_text(conn: &mut Conn) -> Result<(), postgres::Error> {
    let practices: Vec<i64> = conn
        .query("SELECT key FROM practice", &[])?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    for practice in practices {
        backfill_practice_text(conn, practice)?;
    }
    Ok(())
}

/// A page of the practice's current versions at a time, in key order, so
/// that a large practice's bodies are never all in memory; each page's
/// words go in with one statement.
fn backfill_practice_text(conn: &mut Conn, practice: i64) -> Result<(), postgres::Error> {
    const PAGE: i64 = 500;
    let mut after = (String::new(), String::new());
    loop {
        let rows = conn.query(
            "SELECT c.type, c.id, v.body FROM resource_current c
             JOIN resource_version v ON v.practice = $1 AND v.type = c.type AND v.id = c.id AND v.version = c.version
             WHERE c.practice = $1 AND (c.type, c.id) > ($2, $3) AND NOT c.deleted
             ORDER BY c.type, c.id LIMIT $4",
            &[&practice, &after.0, &after.1, &PAGE],
        )?;
        let mut cols: (Vec<String>, Vec<String>, Vec<String>, Vec<String>) = Default::default();
        for r in &rows {
            let (ty, id, body): (String, String, Vec<u8>) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            if let (Some(t), Ok(json)) = (
                gp_fhir::ResourceType::parse(&ty),
                serde_json::from_slice::<serde_json::Value>(&body),
            ) {
                for e in gp_fhir::search::index::text_entries(t, &json) {
                    if let IndexValue::Text(words) = e.value {
                        cols.0.push(ty.clone());
                        cols.1.push(id.clone());
                        cols.2.push(e.code);
                        cols.3.push(words);
                    }
                }
            }
            after = (ty, id);
        }
        if !cols.0.is_empty() {
            conn.execute(
                "INSERT INTO idx_text (practice, type, id, param, grp, body)
                 SELECT $1, t, i, c, 0, b FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS u(t, i, c, b)",
                &[&practice, &cols.0, &cols.1, &cols.2, &cols.3],
            )?;
        }
        if (rows.len() as i64) < PAGE {
            return Ok(());
        }
    }
}
