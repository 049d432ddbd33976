//! dm+d releases in SQLite: products, their attributes and the lookup rows,
//! national (no practice key), replaced whole by each load in one
//! transaction on the writer thread. Read back whole at start to build the
//! in-memory index, so the tables have no secondary indexes.

use gp_fhir::Instant;
use gp_store::{DmdInfo, StoreError};
use gp_terminology::dmd::{DmdRelease, Kind, Lookup, Product};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};

use crate::db_err;
use crate::terminology::insert_rows;

/// Schema migration 5: the dm+d tables.
pub(crate) const MIGRATION: &str = "
    CREATE TABLE dmd_release (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        name TEXT NOT NULL, loaded_at INTEGER NOT NULL, loaded_by TEXT NOT NULL,
        products INTEGER NOT NULL, lookups INTEGER NOT NULL
    );
    CREATE TABLE dmd_product (id INTEGER NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
        invalid INTEGER NOT NULL, parent INTEGER, amp INTEGER);
    -- A product's attributes in the release's order (seq), by element name.
    CREATE TABLE dmd_attribute (product INTEGER NOT NULL, seq INTEGER NOT NULL,
        name TEXT NOT NULL, value TEXT NOT NULL);
    CREATE TABLE dmd_lookup (tbl TEXT NOT NULL, code TEXT NOT NULL, descr TEXT NOT NULL);";

fn id(x: u64) -> Value {
    Value::Integer(x as i64)
}

/// Replaces the stored release; runs on the writer's connection.
pub(crate) fn store(
    conn: &Connection,
    name: &str,
    actor: &str,
    release: &DmdRelease,
) -> Result<DmdInfo, StoreError> {
    conn.execute_batch(
        "BEGIN IMMEDIATE; DELETE FROM dmd_release; DELETE FROM dmd_product;
         DELETE FROM dmd_attribute; DELETE FROM dmd_lookup;",
    )
    .map_err(db_err)?;
    let out = write(conn, name, actor, release);
    match &out {
        Ok(_) => conn.execute_batch("COMMIT").map_err(db_err)?,
        Err(_) => {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
    out
}

fn write(
    conn: &Connection,
    name: &str,
    actor: &str,
    release: &DmdRelease,
) -> Result<DmdInfo, StoreError> {
    insert_rows(
        conn,
        "dmd_product",
        6,
        &release.products,
        |p: &Product, out| {
            out.extend([
                id(p.id),
                Value::Text(p.kind.code().to_owned()),
                Value::Text(p.name.clone()),
                Value::Integer(i64::from(p.invalid)),
                p.parent.map_or(Value::Null, id),
                p.amp.map_or(Value::Null, id),
            ])
        },
    )?;
    let attributes: Vec<(u64, usize, &str, &str)> = release
        .products
        .iter()
        .flat_map(|p| {
            p.attributes
                .iter()
                .enumerate()
                .map(move |(i, (n, v))| (p.id, i, n.as_str(), v.as_str()))
        })
        .collect();
    insert_rows(conn, "dmd_attribute", 4, &attributes, |a, out| {
        out.extend([
            id(a.0),
            Value::Integer(a.1 as i64),
            Value::Text(a.2.to_owned()),
            Value::Text(a.3.to_owned()),
        ])
    })?;
    insert_rows(
        conn,
        "dmd_lookup",
        3,
        &release.lookups,
        |l: &Lookup, out| {
            out.extend([
                Value::Text(l.table.clone()),
                Value::Text(l.code.clone()),
                Value::Text(l.description.clone()),
            ])
        },
    )?;
    let info = DmdInfo {
        name: name.to_owned(),
        loaded_at: Instant::now().millis(),
        loaded_by: actor.to_owned(),
        products: release.products.len() as u64,
        lookups: release.lookups.len() as u64,
    };
    conn.execute(
        "INSERT INTO dmd_release (id, name, loaded_at, loaded_by, products, lookups)
         VALUES (1, ?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![
            info.name,
            info.loaded_at,
            info.loaded_by,
            info.products as i64,
            info.lookups as i64
        ],
    )
    .map_err(db_err)?;
    Ok(info)
}

pub(crate) fn release(conn: &Connection) -> Result<Option<DmdInfo>, StoreError> {
    conn.query_row(
        "SELECT name, loaded_at, loaded_by, products, lookups FROM dmd_release WHERE id = 1",
        [],
        |r| {
            Ok(DmdInfo {
                name: r.get(0)?,
                loaded_at: r.get(1)?,
                loaded_by: r.get(2)?,
                products: r.get::<_, i64>(3)? as u64,
                lookups: r.get::<_, i64>(4)? as u64,
            })
        },
    )
    .optional()
    .map_err(db_err)
}

/// Reads the whole release, inside the caller's read transaction.
pub(crate) fn read(conn: &Connection) -> Result<Option<(DmdInfo, DmdRelease)>, StoreError> {
    let Some(info) = release(conn)? else {
        return Ok(None);
    };
    let mut out = DmdRelease::default();
    let mut stmt = conn
        .prepare("SELECT id, kind, name, invalid, parent, amp FROM dmd_product ORDER BY id")
        .map_err(db_err)?;
    let mut rows = stmt.query([]).map_err(db_err)?;
    while let Some(r) = rows.next().map_err(db_err)? {
        let kind: String = r.get(1).map_err(db_err)?;
        out.products.push(Product {
            id: r.get::<_, i64>(0).map_err(db_err)? as u64,
            kind: Kind::parse(&kind)
                .ok_or_else(|| StoreError::Backend(format!("unknown dm+d kind '{kind}'")))?,
            name: r.get(2).map_err(db_err)?,
            invalid: r.get::<_, i64>(3).map_err(db_err)? != 0,
            parent: r
                .get::<_, Option<i64>>(4)
                .map_err(db_err)?
                .map(|x| x as u64),
            amp: r
                .get::<_, Option<i64>>(5)
                .map_err(db_err)?
                .map(|x| x as u64),
            attributes: Vec::new(),
        });
    }
    let at: std::collections::HashMap<u64, usize> = out
        .products
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id, i))
        .collect();
    let mut stmt = conn
        .prepare("SELECT product, name, value FROM dmd_attribute ORDER BY product, seq")
        .map_err(db_err)?;
    let mut rows = stmt.query([]).map_err(db_err)?;
    while let Some(r) = rows.next().map_err(db_err)? {
        let product = r.get::<_, i64>(0).map_err(db_err)? as u64;
        if let Some(p) = at.get(&product).and_then(|i| out.products.get_mut(*i)) {
            p.attributes
                .push((r.get(1).map_err(db_err)?, r.get(2).map_err(db_err)?));
        }
    }
    let mut stmt = conn
        .prepare("SELECT tbl, code, descr FROM dmd_lookup")
        .map_err(db_err)?;
    let mut rows = stmt.query([]).map_err(db_err)?;
    while let Some(r) = rows.next().map_err(db_err)? {
        out.lookups.push(Lookup {
            table: r.get(0).map_err(db_err)?,
            code: r.get(1).map_err(db_err)?,
            description: r.get(2).map_err(db_err)?,
        });
    }
    out.sort();
    Ok(Some((info, out)))
}
