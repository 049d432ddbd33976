//! Search: the statements [`gp_store_sql`] writes, run on SQLite.

use gp_fhir::ResourceType;
use gp_fhir::search::SearchQuery;
use gp_store::access::Sees;
use gp_store::{SearchPage, StoreError};
use gp_store_sql::body::Codec;
use gp_store_sql::{Arg, Dialect};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, params_from_iter};

use crate::db_err;
use crate::scoped::full_row;

pub(crate) fn value(a: &Arg) -> SqlValue {
    match a {
        Arg::Int(v) => SqlValue::Integer(*v),
        Arg::Real(v) => SqlValue::Real(*v),
        Arg::Text(v) => SqlValue::Text(v.clone()),
    }
}

/// Runs a search over the practice's current resources.
pub(crate) fn search(
    bodies: (&Codec, &Connection, i64),
    practice: i64,
    sees: &Sees,
    ty: Option<ResourceType>,
    q: &SearchQuery,
) -> Result<SearchPage, StoreError> {
    let conn = bodies.1;
    let built = gp_store_sql::search(Dialect::Sqlite, practice, sees, ty, q)?;
    let entries = match &built.page {
        None => Vec::new(),
        Some(st) => {
            let mut s = conn.prepare_cached(&st.sql).map_err(db_err)?;
            let rows = s
                .query_map(params_from_iter(st.args.iter().map(value)), |r| {
                    full_row(r, bodies)
                })
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
        }
    };
    let total = match &built.total {
        Some(st) if built.needs_count(entries.len()) => {
            let count: i64 = conn
                .prepare_cached(&st.sql)
                .and_then(|mut s| {
                    s.query_row(params_from_iter(st.args.iter().map(value)), |r| r.get(0))
                })
                .map_err(db_err)?;
            Some(count as u64)
        }
        Some(_) => Some(entries.len() as u64),
        None => None,
    };
    Ok(SearchPage { total, entries })
}
