//! dm+d releases in PostgreSQL: products, their attributes and the lookup
//! rows, national reference data (no practice key; a reference table under
//! Citus), replaced whole by each load in one transaction on a connection
//! of its own. Rows go in as `INSERT ... SELECT FROM unnest(...)`.

use std::collections::HashMap;

use gp_fhir::Instant;
use gp_store::{Actor, DmdInfo, StoreError};
use gp_terminology::dmd::{DmdRelease, Kind, Lookup, Product};

use crate::conn::{Conn, db_err};

/// Schema migration 4: the dm+d tables.
pub(crate) const MIGRATION: &str = "
    CREATE TABLE dmd_release (
        id integer PRIMARY KEY CHECK (id = 1),
        name text NOT NULL, loaded_at bigint NOT NULL, loaded_by text NOT NULL,
        products bigint NOT NULL, lookups bigint NOT NULL
    );
    CREATE TABLE dmd_product (id bigint NOT NULL, kind text NOT NULL, name text NOT NULL,
        invalid boolean NOT NULL, parent bigint, amp bigint);
    -- A product's attributes in the release's order (seq), by element name.
    CREATE TABLE dmd_attribute (product bigint NOT NULL, seq integer NOT NULL,
        name text NOT NULL, value text NOT NULL);
    CREATE TABLE dmd_lookup (tbl text NOT NULL, code text NOT NULL, descr text NOT NULL);
";

/// Rows per INSERT, so that no statement carries unbounded arrays.
const CHUNK: usize = 5_000;

fn i(x: u64) -> i64 {
    x as i64
}

/// Replaces the stored release in one transaction on `conn`.
pub(crate) fn store(
    conn: &mut Conn,
    actor: &Actor,
    name: &str,
    release: &DmdRelease,
) -> Result<DmdInfo, StoreError> {
    conn.batch(
        "BEGIN; DELETE FROM dmd_release; DELETE FROM dmd_product;
         DELETE FROM dmd_attribute; DELETE FROM dmd_lookup;",
    )
    .map_err(db_err)?;
    match write(conn, actor, name, release).and_then(|info| {
        conn.batch("COMMIT").map_err(db_err)?;
        Ok(info)
    }) {
        Ok(info) => Ok(info),
        Err(e) => {
            let _ = conn.batch("ROLLBACK");
            Err(e)
        }
    }
}

fn write(
    conn: &mut Conn,
    actor: &Actor,
    name: &str,
    release: &DmdRelease,
) -> Result<DmdInfo, StoreError> {
    for v in release.products.chunks(CHUNK) {
        let ids: Vec<i64> = v.iter().map(|p| i(p.id)).collect();
        let kinds: Vec<&str> = v.iter().map(|p| p.kind.code()).collect();
        let names: Vec<&str> = v.iter().map(|p| p.name.as_str()).collect();
        let invalid: Vec<bool> = v.iter().map(|p| p.invalid).collect();
        let parents: Vec<Option<i64>> = v.iter().map(|p| p.parent.map(i)).collect();
        let amps: Vec<Option<i64>> = v.iter().map(|p| p.amp.map(i)).collect();
        conn.execute(
            "INSERT INTO dmd_product SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::bool[], $5::int8[], $6::int8[])",
            &[&ids, &kinds, &names, &invalid, &parents, &amps],
        )
        .map_err(db_err)?;
    }
    let attributes: Vec<(i64, i32, &str, &str)> = release
        .products
        .iter()
        .flat_map(|p| {
            p.attributes
                .iter()
                .enumerate()
                .map(move |(k, (n, v))| (i(p.id), k as i32, n.as_str(), v.as_str()))
        })
        .collect();
    for v in attributes.chunks(CHUNK) {
        let a: Vec<i64> = v.iter().map(|x| x.0).collect();
        let b: Vec<i32> = v.iter().map(|x| x.1).collect();
        let c: Vec<&str> = v.iter().map(|x| x.2).collect();
        let d: Vec<&str> = v.iter().map(|x| x.3).collect();
        conn.execute(
            "INSERT INTO dmd_attribute SELECT * FROM unnest($1::int8[], $2::int4[], $3::text[], $4::text[])",
            &[&a, &b, &c, &d],
        )
        .map_err(db_err)?;
    }
    for v in release.lookups.chunks(CHUNK) {
        let a: Vec<&str> = v.iter().map(|l| l.table.as_str()).collect();
        let b: Vec<&str> = v.iter().map(|l| l.code.as_str()).collect();
        let c: Vec<&str> = v.iter().map(|l| l.description.as_str()).collect();
        conn.execute(
            "INSERT INTO dmd_lookup SELECT * FROM unnest($1::text[], $2::text[], $3::text[])",
            &[&a, &b, &c],
        )
        .map_err(db_err)?;
    }
    let info = DmdInfo {
        name: name.to_owned(),
        loaded_at: Instant::now().millis(),
        loaded_by: actor.id().to_owned(),
        products: release.products.len() as u64,
        lookups: release.lookups.len() as u64,
    };
    conn.execute(
        "INSERT INTO dmd_release (id, name, loaded_at, loaded_by, products, lookups)
         VALUES (1, $1, $2, $3, $4, $5)",
        &[
            &info.name,
            &info.loaded_at,
            &info.loaded_by,
            &i(info.products),
            &i(info.lookups),
        ],
    )
    .map_err(db_err)?;
    Ok(info)
}

pub(crate) fn release(conn: &mut Conn) -> Result<Option<DmdInfo>, StoreError> {
    let row = conn
        .query_opt(
            "SELECT name, loaded_at, loaded_by, products, lookups FROM dmd_release WHERE id = 1",
            &[],
        )
        .map_err(db_err)?;
    Ok(row.map(|r| DmdInfo {
        name: r.get(0),
        loaded_at: r.get(1),
        loaded_by: r.get(2),
        products: r.get::<_, i64>(3) as u64,
        lookups: r.get::<_, i64>(4) as u64,
    }))
}

/// Reads the whole release inside one snapshot.
pub(crate) fn read(conn: &mut Conn) -> Result<Option<(DmdInfo, DmdRelease)>, StoreError> {
    conn.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .map_err(db_err)?;
    let out = read_in_tx(conn);
    let _ = conn.batch("COMMIT");
    out
}

fn read_in_tx(conn: &mut Conn) -> Result<Option<(DmdInfo, DmdRelease)>, StoreError> {
    let Some(info) = release(conn)? else {
        return Ok(None);
    };
    let mut out = DmdRelease::default();
    for r in conn
        .query(
            "SELECT id, kind, name, invalid, parent, amp FROM dmd_product ORDER BY id",
            &[],
        )
        .map_err(db_err)?
    {
        let kind: String = r.get(1);
        out.products.push(Product {
            id: r.get::<_, i64>(0) as u64,
            kind: Kind::parse(&kind)
                .ok_or_else(|| StoreError::Backend(format!("unknown dm+d kind '{kind}'")))?,
            name: r.get(2),
            invalid: r.get(3),
            parent: r.get::<_, Option<i64>>(4).map(|x| x as u64),
            amp: r.get::<_, Option<i64>>(5).map(|x| x as u64),
            attributes: Vec::new(),
        });
    }
    let at: HashMap<u64, usize> = out
        .products
        .iter()
        .enumerate()
        .map(|(k, p)| (p.id, k))
        .collect();
    for r in conn
        .query(
            "SELECT product, name, value FROM dmd_attribute ORDER BY product, seq",
            &[],
        )
        .map_err(db_err)?
    {
        let product = r.get::<_, i64>(0) as u64;
        if let Some(p) = at.get(&product).and_then(|k| out.products.get_mut(*k)) {
            p.attributes.push((r.get(1), r.get(2)));
        }
    }
    for r in conn
        .query("SELECT tbl, code, descr FROM dmd_lookup", &[])
        .map_err(db_err)?
    {
        out.lookups.push(Lookup {
            table: r.get(0),
            code: r.get(1),
            description: r.get(2),
        });
    }
    out.sort();
    Ok(Some((info, out)))
}
