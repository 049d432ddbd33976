//! SNOMED CT releases in PostgreSQL: the RF2 rows, national reference data
//! (no practice key; a reference table under Citus), replaced whole by each
//! load in one transaction on a connection of its own, so practices' writes
//! go on meanwhile. Rows go in as one `INSERT ... SELECT FROM unnest(...)`
//! per batch; they are read back as a stream, a batch at a time.

use gp_fhir::Instant;
use gp_store::{Actor, ReleaseInfo, RowCounts, SnomedLoad, StoreError};
use gp_terminology::rf2::{Concept, Description, RefsetMember, Relationship, Rows};

use crate::conn::{Conn, db_err};

/// Schema migration 3: the terminology tables.
pub(crate) const MIGRATION: &str = "
    CREATE TABLE snomed_release (
        id integer PRIMARY KEY CHECK (id = 1),
        name text NOT NULL, loaded_at bigint NOT NULL, loaded_by text NOT NULL,
        concepts bigint NOT NULL, descriptions bigint NOT NULL,
        relationships bigint NOT NULL, members bigint NOT NULL
    );
    CREATE TABLE snomed_concept (id bigint NOT NULL, effective_time integer NOT NULL,
        active boolean NOT NULL, module bigint NOT NULL, definition_status bigint NOT NULL);
    CREATE TABLE snomed_description (id bigint NOT NULL, effective_time integer NOT NULL,
        active boolean NOT NULL, module bigint NOT NULL, concept bigint NOT NULL,
        language text NOT NULL, type_id bigint NOT NULL, term text NOT NULL,
        case_significance bigint NOT NULL);
    CREATE TABLE snomed_relationship (id bigint NOT NULL, effective_time integer NOT NULL,
        active boolean NOT NULL, module bigint NOT NULL, source bigint NOT NULL,
        destination bigint NOT NULL, grp integer NOT NULL, type_id bigint NOT NULL,
        characteristic_type bigint NOT NULL, modifier bigint NOT NULL);
    -- Language refset members carry an acceptability; simple refset members do not.
    CREATE TABLE snomed_member (id text NOT NULL, effective_time integer NOT NULL,
        active boolean NOT NULL, module bigint NOT NULL, refset bigint NOT NULL,
        component bigint NOT NULL, acceptability bigint);
";

/// A load in its own transaction on a dedicated connection.
pub(crate) struct PgLoad {
    conn: Option<Conn>,
    name: String,
    actor: String,
    counts: RowCounts,
}

impl PgLoad {
    pub(crate) fn begin(mut conn: Conn, name: &str, actor: &Actor) -> Result<PgLoad, StoreError> {
        conn.batch(
            "BEGIN; DELETE FROM snomed_release; DELETE FROM snomed_concept;
             DELETE FROM snomed_description; DELETE FROM snomed_relationship; DELETE FROM snomed_member;",
        )
        .map_err(db_err)?;
        Ok(PgLoad {
            conn: Some(conn),
            name: name.to_owned(),
            actor: actor.id().to_owned(),
            counts: RowCounts::default(),
        })
    }
}

impl Drop for PgLoad {
    fn drop(&mut self) {
        if let Some(mut c) = self.conn.take() {
            let _ = c.batch("ROLLBACK");
        }
    }
}

fn i(x: u64) -> i64 {
    x as i64
}

impl SnomedLoad for PgLoad {
    fn add(&mut self, rows: Rows) -> Result<(), StoreError> {
        let conn = self.conn.as_mut().ok_or(StoreError::Unavailable)?;
        self.counts.add(&rows);
        match &rows {
            Rows::Concepts(v) => {
                let cols = (
                    v.iter().map(|c| i(c.id)).collect::<Vec<_>>(),
                    v.iter().map(|c| c.effective_time as i32).collect::<Vec<_>>(),
                    v.iter().map(|c| c.active).collect::<Vec<_>>(),
                    v.iter().map(|c| i(c.module)).collect::<Vec<_>>(),
                    v.iter().map(|c| i(c.definition_status)).collect::<Vec<_>>(),
                );
                conn.execute(
                    "INSERT INTO snomed_concept SELECT * FROM unnest($1::int8[], $2::int4[], $3::bool[], $4::int8[], $5::int8[])",
                    &[&cols.0, &cols.1, &cols.2, &cols.3, &cols.4],
                )
            }
            Rows::Descriptions(v) => {
                let cols = (
                    v.iter().map(|d| i(d.id)).collect::<Vec<_>>(),
                    v.iter().map(|d| d.effective_time as i32).collect::<Vec<_>>(),
                    v.iter().map(|d| d.active).collect::<Vec<_>>(),
                    v.iter().map(|d| i(d.module)).collect::<Vec<_>>(),
                    v.iter().map(|d| i(d.concept)).collect::<Vec<_>>(),
                    v.iter().map(|d| d.language.as_str()).collect::<Vec<_>>(),
                    v.iter().map(|d| i(d.type_id)).collect::<Vec<_>>(),
                    v.iter().map(|d| d.term.as_str()).collect::<Vec<_>>(),
                    v.iter().map(|d| i(d.case_significance)).collect::<Vec<_>>(),
                );
                conn.execute(
                    "INSERT INTO snomed_description SELECT * FROM unnest($1::int8[], $2::int4[], $3::bool[], $4::int8[], $5::int8[], $6::text[], $7::int8[], $8::text[], $9::int8[])",
                    &[&cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5, &cols.6, &cols.7, &cols.8],
                )
            }
            Rows::Relationships(v) => {
                let cols = (
                    v.iter().map(|r| i(r.id)).collect::<Vec<_>>(),
                    v.iter().map(|r| r.effective_time as i32).collect::<Vec<_>>(),
                    v.iter().map(|r| r.active).collect::<Vec<_>>(),
                    v.iter().map(|r| i(r.module)).collect::<Vec<_>>(),
                    v.iter().map(|r| i(r.source)).collect::<Vec<_>>(),
                    v.iter().map(|r| i(r.destination)).collect::<Vec<_>>(),
                    v.iter().map(|r| r.group as i32).collect::<Vec<_>>(),
                    v.iter().map(|r| i(r.type_id)).collect::<Vec<_>>(),
                    v.iter().map(|r| i(r.characteristic_type)).collect::<Vec<_>>(),
                    v.iter().map(|r| i(r.modifier)).collect::<Vec<_>>(),
                );
                conn.execute(
                    "INSERT INTO snomed_relationship SELECT * FROM unnest($1::int8[], $2::int4[], $3::bool[], $4::int8[], $5::int8[], $6::int8[], $7::int4[], $8::int8[], $9::int8[], $10::int8[])",
                    &[&cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5, &cols.6, &cols.7, &cols.8, &cols.9],
                )
            }
            Rows::Members(v) => {
                let cols = (
                    v.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
                    v.iter().map(|m| m.effective_time as i32).collect::<Vec<_>>(),
                    v.iter().map(|m| m.active).collect::<Vec<_>>(),
                    v.iter().map(|m| i(m.module)).collect::<Vec<_>>(),
                    v.iter().map(|m| i(m.refset)).collect::<Vec<_>>(),
                    v.iter().map(|m| i(m.component)).collect::<Vec<_>>(),
                    v.iter().map(|m| m.acceptability.map(i)).collect::<Vec<_>>(),
                );
                conn.execute(
                    "INSERT INTO snomed_member SELECT * FROM unnest($1::text[], $2::int4[], $3::bool[], $4::int8[], $5::int8[], $6::int8[], $7::int8[])",
                    &[&cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5, &cols.6],
                )
            }
        }
        .map_err(db_err)?;
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<ReleaseInfo, StoreError> {
        let mut conn = self.conn.take().ok_or(StoreError::Unavailable)?;
        let c = self.counts;
        let info = ReleaseInfo {
            name: self.name.clone(),
            loaded_at: Instant::now().millis(),
            loaded_by: self.actor.clone(),
            concepts: c.concepts,
            descriptions: c.descriptions,
            relationships: c.relationships,
            members: c.members,
        };
        let out = conn
            .execute(
                "INSERT INTO snomed_release (id, name, loaded_at, loaded_by, concepts, descriptions, relationships, members)
                 VALUES (1, $1, $2, $3, $4, $5, $6, $7)",
                &[
                    &info.name,
                    &info.loaded_at,
                    &info.loaded_by,
                    &i(c.concepts),
                    &i(c.descriptions),
                    &i(c.relationships),
                    &i(c.members),
                ],
            )
            .and_then(|_| conn.batch("COMMIT"));
        if let Err(e) = out {
            let _ = conn.batch("ROLLBACK");
            return Err(db_err(e));
        }
        Ok(info)
    }
}

pub(crate) fn release(conn: &mut Conn) -> Result<Option<ReleaseInfo>, StoreError> {
    let row = conn
        .query_opt(
            "SELECT name, loaded_at, loaded_by, concepts, descriptions, relationships, members FROM snomed_release WHERE id = 1",
            &[],
        )
        .map_err(db_err)?;
    Ok(row.map(|r| ReleaseInfo {
        name: r.get(0),
        loaded_at: r.get(1),
        loaded_by: r.get(2),
        concepts: r.get::<_, i64>(3) as u64,
        descriptions: r.get::<_, i64>(4) as u64,
        relationships: r.get::<_, i64>(5) as u64,
        members: r.get::<_, i64>(6) as u64,
    }))
}

/// Reads every row back inside one snapshot, through cursors.
pub(crate) fn read_all(
    conn: &mut Conn,
    sink: &mut dyn FnMut(Rows) -> Result<(), StoreError>,
) -> Result<Option<ReleaseInfo>, StoreError> {
    conn.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .map_err(db_err)?;
    let out = read_in_tx(conn, sink);
    let _ = conn.batch("COMMIT");
    out
}

fn read_in_tx(
    conn: &mut Conn,
    sink: &mut dyn FnMut(Rows) -> Result<(), StoreError>,
) -> Result<Option<ReleaseInfo>, StoreError> {
    let Some(info) = release(conn)? else {
        return Ok(None);
    };
    let u = |r: &postgres::Row, k: usize| r.get::<_, i64>(k) as u64;
    let t = |r: &postgres::Row, k: usize| r.get::<_, i32>(k) as u32;
    scan(conn, "snomed_concept", sink, Rows::Concepts, |r| Concept {
        id: u(r, 0),
        effective_time: t(r, 1),
        active: r.get(2),
        module: u(r, 3),
        definition_status: u(r, 4),
    })?;
    scan(conn, "snomed_description", sink, Rows::Descriptions, |r| {
        Description {
            id: u(r, 0),
            effective_time: t(r, 1),
            active: r.get(2),
            module: u(r, 3),
            concept: u(r, 4),
            language: r.get(5),
            type_id: u(r, 6),
            term: r.get(7),
            case_significance: u(r, 8),
        }
    })?;
    scan(
        conn,
        "snomed_relationship",
        sink,
        Rows::Relationships,
        |r| Relationship {
            id: u(r, 0),
            effective_time: t(r, 1),
            active: r.get(2),
            module: u(r, 3),
            source: u(r, 4),
            destination: u(r, 5),
            group: t(r, 6),
            type_id: u(r, 7),
            characteristic_type: u(r, 8),
            modifier: u(r, 9),
        },
    )?;
    scan(conn, "snomed_member", sink, Rows::Members, |r| {
        RefsetMember {
            id: r.get(0),
            effective_time: t(r, 1),
            active: r.get(2),
            module: u(r, 3),
            refset: u(r, 4),
            component: u(r, 5),
            acceptability: r.get::<_, Option<i64>>(6).map(|x| x as u64),
        }
    })?;
    Ok(Some(info))
}

fn scan<T>(
    conn: &mut Conn,
    table: &str,
    sink: &mut dyn FnMut(Rows) -> Result<(), StoreError>,
    wrap: fn(Vec<T>) -> Rows,
    row: impl Fn(&postgres::Row) -> T,
) -> Result<(), StoreError> {
    let size = gp_terminology::rf2::BATCH;
    let mut batch = Vec::with_capacity(size);
    conn.for_each_row(&format!("SELECT * FROM {table}"), &mut |r| {
        batch.push(row(r));
        if batch.len() >= size {
            sink(wrap(std::mem::replace(
                &mut batch,
                Vec::with_capacity(size),
            )))?;
        }
        Ok(())
    })?;
    if !batch.is_empty() {
        sink(wrap(batch))?;
    }
    Ok(())
}
