//! Writing search index rows: a resource's rows are replaced with those of
//! its new current version, in the same transaction as the version itself,
//! one multi-row statement per table for everything the writer has buffered.

use gp_fhir::search::index::{IndexEntry, IndexValue};
use gp_store::StoreError;

use crate::conn::{Conn, db_err};

/// The index tables, one per value type (the schema of gp-store-sql).
const TABLES: [&str; 7] = [
    "idx_string",
    "idx_token",
    "idx_date",
    "idx_number",
    "idx_quantity",
    "idx_reference",
    "idx_uri",
];

/// One resource's new current version, for the index.
pub(crate) struct Current<'a> {
    pub ty: &'a str,
    pub id: &'a str,
    /// False when this is the resource's first version: there is nothing
    /// to delete.
    pub replaces: bool,
    pub entries: &'a [IndexEntry],
}

/// Column arrays of the rows to insert into each table.
#[derive(Default)]
struct Rows<'a> {
    ty: Vec<&'a str>,
    id: Vec<&'a str>,
    param: Vec<&'a str>,
    grp: Vec<i64>,
    /// Up to three text columns and two numeric ones, by table.
    t1: Vec<Option<&'a str>>,
    t2: Vec<Option<&'a str>>,
    t3: Vec<Option<&'a str>>,
    n1: Vec<i64>,
    n2: Vec<i64>,
    f1: Vec<f64>,
}

impl<'a> Rows<'a> {
    fn key(&mut self, c: &Current<'a>, e: &'a IndexEntry) {
        self.ty.push(c.ty);
        self.id.push(c.id);
        self.param.push(e.code.as_str());
        self.grp.push(i64::from(e.group));
    }
}

/// Replaces the index rows of each resource in `practice`.
pub(crate) fn replace(
    conn: &mut Conn,
    practice: i64,
    current: &[Current<'_>],
) -> Result<(), StoreError> {
    let stale: Vec<&Current<'_>> = current.iter().filter(|c| c.replaces).collect();
    if !stale.is_empty() {
        let types: Vec<&str> = stale.iter().map(|c| c.ty).collect();
        let ids: Vec<&str> = stale.iter().map(|c| c.id).collect();
        for table in TABLES {
            conn.execute(
                &format!(
                    "DELETE FROM {table} WHERE practice = $1
                     AND (type, id) IN (SELECT * FROM unnest($2::text[], $3::text[]))"
                ),
                &[&practice, &types, &ids],
            )
            .map_err(db_err)?;
        }
    }
    let mut rows: [Rows<'_>; 7] = Default::default();
    for c in current {
        for e in c.entries {
            let r = match &e.value {
                IndexValue::String { .. } => &mut rows[0],
                IndexValue::Token { .. } => &mut rows[1],
                IndexValue::Date { .. } => &mut rows[2],
                IndexValue::Number { .. } => &mut rows[3],
                IndexValue::Quantity { .. } => &mut rows[4],
                IndexValue::Reference { .. } => &mut rows[5],
                IndexValue::Uri(_) => &mut rows[6],
            };
            r.key(c, e);
            match &e.value {
                IndexValue::String { norm, exact } => {
                    r.t1.push(Some(norm));
                    r.t2.push(Some(exact));
                }
                IndexValue::Token { system, code, text } => {
                    r.t1.push(system.as_deref());
                    r.t2.push(code.as_deref());
                    r.t3.push(text.as_deref());
                }
                IndexValue::Date { low, high } => {
                    r.n1.push(*low);
                    r.n2.push(*high);
                }
                IndexValue::Number { value } => r.f1.push(*value),
                IndexValue::Quantity {
                    value,
                    system,
                    code,
                } => {
                    r.f1.push(*value);
                    r.t1.push(system.as_deref());
                    r.t2.push(code.as_deref());
                }
                IndexValue::Reference {
                    target_type,
                    target_id,
                    url,
                } => {
                    r.t1.push(target_type.as_deref());
                    r.t2.push(target_id.as_deref());
                    r.t3.push(url.as_deref());
                }
                IndexValue::Uri(uri) => r.t1.push(Some(uri)),
            }
        }
    }
    const KEY: &str = "$2::text[], $3::text[], $4::text[], $5::int8[]";
    let [string, token, date, number, quantity, reference, uri] = &rows;
    let p = &practice;
    let mut run = |sql: String, params: &[&(dyn postgres::types::ToSql + Sync)]| {
        conn.execute(&sql, params).map(|_| ()).map_err(db_err)
    };
    if !string.ty.is_empty() {
        let r = string;
        run(
            format!(
                "INSERT INTO idx_string (practice, type, id, param, grp, norm, exact) SELECT $1, * FROM unnest({KEY}, $6::text[], $7::text[])"
            ),
            &[p, &r.ty, &r.id, &r.param, &r.grp, &r.t1, &r.t2],
        )?;
    }
    if !token.ty.is_empty() {
        let r = token;
        run(
            format!(
                "INSERT INTO idx_token (practice, type, id, param, grp, system, code, text) SELECT $1, * FROM unnest({KEY}, $6::text[], $7::text[], $8::text[])"
            ),
            &[p, &r.ty, &r.id, &r.param, &r.grp, &r.t1, &r.t2, &r.t3],
        )?;
    }
    if !date.ty.is_empty() {
        let r = date;
        run(
            format!(
                "INSERT INTO idx_date (practice, type, id, param, grp, low, high) SELECT $1, * FROM unnest({KEY}, $6::int8[], $7::int8[])"
            ),
            &[p, &r.ty, &r.id, &r.param, &r.grp, &r.n1, &r.n2],
        )?;
    }
    if !number.ty.is_empty() {
        let r = number;
        run(
            format!(
                "INSERT INTO idx_number (practice, type, id, param, grp, value) SELECT $1, * FROM unnest({KEY}, $6::float8[])"
            ),
            &[p, &r.ty, &r.id, &r.param, &r.grp, &r.f1],
        )?;
    }
    if !quantity.ty.is_empty() {
        let r = quantity;
        run(
            format!(
                "INSERT INTO idx_quantity (practice, type, id, param, grp, value, system, code) SELECT $1, * FROM unnest({KEY}, $6::float8[], $7::text[], $8::text[])"
            ),
            &[p, &r.ty, &r.id, &r.param, &r.grp, &r.f1, &r.t1, &r.t2],
        )?;
    }
    if !reference.ty.is_empty() {
        let r = reference;
        run(
            format!(
                "INSERT INTO idx_reference (practice, type, id, param, grp, target_type, target_id, url) SELECT $1, * FROM unnest({KEY}, $6::text[], $7::text[], $8::text[])"
            ),
            &[p, &r.ty, &r.id, &r.param, &r.grp, &r.t1, &r.t2, &r.t3],
        )?;
    }
    if !uri.ty.is_empty() {
        let r = uri;
        run(
            format!(
                "INSERT INTO idx_uri (practice, type, id, param, grp, uri) SELECT $1, * FROM unnest({KEY}, $6::text[])"
            ),
            &[p, &r.ty, &r.id, &r.param, &r.grp, &r.t1],
        )?;
    }
    Ok(())
}
