//! SNOMED CT releases in SQLite: the RF2 rows, national (no practice key),
//! replaced whole by each load in one transaction on the writer thread.
//!
//! The tables have no secondary indexes: the server reads them once, in
//! full, to build its in-memory index, so an index would only slow the load.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use gp_fhir::Instant;
use gp_store::{Actor, ReleaseInfo, RowCounts, SnomedLoad, StoreError};
use gp_terminology::rf2::{Concept, Description, RefsetMember, Relationship, Rows};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params_from_iter};

use crate::db_err;

/// Schema migration 4: the terminology tables.
pub(crate) const MIGRATION: &str = "
    CREATE TABLE snomed_release (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        name TEXT NOT NULL, loaded_at INTEGER NOT NULL, loaded_by TEXT NOT NULL,
        concepts INTEGER NOT NULL, descriptions INTEGER NOT NULL,
        relationships INTEGER NOT NULL, members INTEGER NOT NULL
    );
    CREATE TABLE snomed_concept (id INTEGER NOT NULL, effective_time INTEGER NOT NULL,
        active INTEGER NOT NULL, module INTEGER NOT NULL, definition_status INTEGER NOT NULL);
    CREATE TABLE snomed_description (id INTEGER NOT NULL, effective_time INTEGER NOT NULL,
        active INTEGER NOT NULL, module INTEGER NOT NULL, concept INTEGER NOT NULL,
        language TEXT NOT NULL, type_id INTEGER NOT NULL, term TEXT NOT NULL,
        case_significance INTEGER NOT NULL);
    CREATE TABLE snomed_relationship (id INTEGER NOT NULL, effective_time INTEGER NOT NULL,
        active INTEGER NOT NULL, module INTEGER NOT NULL, source INTEGER NOT NULL,
        destination INTEGER NOT NULL, grp INTEGER NOT NULL, type_id INTEGER NOT NULL,
        characteristic_type INTEGER NOT NULL, modifier INTEGER NOT NULL);
    -- Language refset members carry an acceptability; simple refset members do not.
    CREATE TABLE snomed_member (id TEXT NOT NULL, effective_time INTEGER NOT NULL,
        active INTEGER NOT NULL, module INTEGER NOT NULL, refset INTEGER NOT NULL,
        component INTEGER NOT NULL, acceptability INTEGER);";

/// What the load handle sends the writer thread.
pub(crate) enum LoadMsg {
    Rows(Rows),
    Commit(SyncSender<Result<ReleaseInfo, StoreError>>),
}

/// The caller's side of a load running on the writer thread.
pub(crate) struct SqliteLoad {
    pub tx: SyncSender<LoadMsg>,
}

impl SnomedLoad for SqliteLoad {
    fn add(&mut self, rows: Rows) -> Result<(), StoreError> {
        self.tx
            .send(LoadMsg::Rows(rows))
            .map_err(|_| StoreError::Unavailable)
    }

    fn commit(self: Box<Self>) -> Result<ReleaseInfo, StoreError> {
        let (reply, answer) = sync_channel(1);
        self.tx
            .send(LoadMsg::Commit(reply))
            .map_err(|_| StoreError::Unavailable)?;
        answer.recv().unwrap_or(Err(StoreError::Unavailable))
    }
}

/// A channel for a load: a few batches in flight, so that parsing and
/// inserting overlap without the parser running ahead.
pub(crate) fn channel() -> (SyncSender<LoadMsg>, Receiver<LoadMsg>) {
    sync_channel(4)
}

/// Runs a whole load on the writer's connection: one transaction, rolled
/// back on any error or if the caller goes away without committing.
pub(crate) fn run_load(conn: &Connection, rx: &Receiver<LoadMsg>, name: &str, actor: &str) {
    if let Err(e) = conn.execute_batch(
        "BEGIN IMMEDIATE; DELETE FROM snomed_release; DELETE FROM snomed_concept;
         DELETE FROM snomed_description; DELETE FROM snomed_relationship; DELETE FROM snomed_member;",
    ) {
        let _ = conn.execute_batch("ROLLBACK");
        fail_all(rx, &db_err(e));
        return;
    }
    let mut counts = RowCounts::default();
    let mut failed: Option<StoreError> = None;
    while let Ok(msg) = rx.recv() {
        match msg {
            LoadMsg::Rows(rows) => {
                if failed.is_none() {
                    counts.add(&rows);
                    failed = insert(conn, &rows).err();
                }
            }
            LoadMsg::Commit(reply) => {
                let out = match failed.take() {
                    Some(e) => Err(e),
                    None => finish(conn, &counts, name, actor),
                };
                if out.is_err() {
                    let _ = conn.execute_batch("ROLLBACK");
                } else if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
                    tracing::warn!(error = %e, "checkpoint after the terminology load failed");
                }
                let _ = reply.send(out);
                return;
            }
        }
    }
    // The caller dropped the load without committing.
    let _ = conn.execute_batch("ROLLBACK");
}

fn fail_all(rx: &Receiver<LoadMsg>, e: &StoreError) {
    while let Ok(msg) = rx.recv() {
        if let LoadMsg::Commit(reply) = msg {
            let _ = reply.send(Err(e.clone()));
            return;
        }
    }
}

fn finish(
    conn: &Connection,
    c: &RowCounts,
    name: &str,
    actor: &str,
) -> Result<ReleaseInfo, StoreError> {
    let info = ReleaseInfo {
        name: name.to_owned(),
        loaded_at: Instant::now().millis(),
        loaded_by: actor.to_owned(),
        concepts: c.concepts,
        descriptions: c.descriptions,
        relationships: c.relationships,
        members: c.members,
    };
    conn.execute(
        "INSERT INTO snomed_release (id, name, loaded_at, loaded_by, concepts, descriptions, relationships, members)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        rusqlite::params![
            info.name,
            info.loaded_at,
            info.loaded_by,
            c.concepts as i64,
            c.descriptions as i64,
            c.relationships as i64,
            c.members as i64
        ],
    )
    .map_err(db_err)?;
    conn.execute_batch("COMMIT").map_err(db_err)?;
    Ok(info)
}

/// Rows per INSERT statement.
const CHUNK: usize = 200;

fn n(x: u64) -> Value {
    Value::Integer(x as i64)
}

fn insert(conn: &Connection, rows: &Rows) -> Result<(), StoreError> {
    match rows {
        Rows::Concepts(v) => insert_rows(conn, "snomed_concept", 5, v, |c: &Concept, out| {
            out.extend([
                n(c.id),
                Value::Integer(i64::from(c.effective_time)),
                Value::Integer(i64::from(c.active)),
                n(c.module),
                n(c.definition_status),
            ])
        }),
        Rows::Descriptions(v) => {
            insert_rows(conn, "snomed_description", 9, v, |d: &Description, out| {
                out.extend([
                    n(d.id),
                    Value::Integer(i64::from(d.effective_time)),
                    Value::Integer(i64::from(d.active)),
                    n(d.module),
                    n(d.concept),
                    Value::Text(d.language.clone()),
                    n(d.type_id),
                    Value::Text(d.term.clone()),
                    n(d.case_significance),
                ])
            })
        }
        Rows::Relationships(v) => insert_rows(
            conn,
            "snomed_relationship",
            10,
            v,
            |r: &Relationship, out| {
                out.extend([
                    n(r.id),
                    Value::Integer(i64::from(r.effective_time)),
                    Value::Integer(i64::from(r.active)),
                    n(r.module),
                    n(r.source),
                    n(r.destination),
                    Value::Integer(i64::from(r.group)),
                    n(r.type_id),
                    n(r.characteristic_type),
                    n(r.modifier),
                ])
            },
        ),
        Rows::Members(v) => insert_rows(conn, "snomed_member", 7, v, |m: &RefsetMember, out| {
            out.extend([
                Value::Text(m.id.clone()),
                Value::Integer(i64::from(m.effective_time)),
                Value::Integer(i64::from(m.active)),
                n(m.module),
                n(m.refset),
                n(m.component),
                m.acceptability.map_or(Value::Null, n),
            ])
        }),
    }
}

/// Inserts rows `CHUNK` at a time with one prepared multi-row statement.
pub(crate) fn insert_rows<T>(
    conn: &Connection,
    table: &str,
    cols: usize,
    rows: &[T],
    values: impl Fn(&T, &mut Vec<Value>),
) -> Result<(), StoreError> {
    let sql = |k: usize| {
        let one = format!("({})", vec!["?"; cols].join(","));
        format!("INSERT INTO {table} VALUES {}", vec![one; k].join(","))
    };
    let mut buf = Vec::with_capacity(CHUNK * cols);
    for chunk in rows.chunks(CHUNK) {
        buf.clear();
        for r in chunk {
            values(r, &mut buf);
        }
        let mut stmt = conn.prepare_cached(&sql(chunk.len())).map_err(db_err)?;
        stmt.execute(params_from_iter(buf.iter())).map_err(db_err)?;
    }
    Ok(())
}

fn release(conn: &Connection) -> Result<Option<ReleaseInfo>, StoreError> {
    conn.query_row(
        "SELECT name, loaded_at, loaded_by, concepts, descriptions, relationships, members FROM snomed_release WHERE id = 1",
        [],
        |r| {
            Ok(ReleaseInfo {
                name: r.get(0)?,
                loaded_at: r.get(1)?,
                loaded_by: r.get(2)?,
                concepts: r.get::<_, i64>(3)? as u64,
                descriptions: r.get::<_, i64>(4)? as u64,
                relationships: r.get::<_, i64>(5)? as u64,
                members: r.get::<_, i64>(6)? as u64,
            })
        },
    )
    .optional()
    .map_err(db_err)
}

pub(crate) fn read_release(
    conn: &Connection,
    _actor: &Actor,
) -> Result<Option<ReleaseInfo>, StoreError> {
    release(conn)
}

/// Reads every row back, in batches, inside the caller's read transaction.
pub(crate) fn read_all(
    conn: &Connection,
    sink: &mut dyn FnMut(Rows) -> Result<(), StoreError>,
) -> Result<Option<ReleaseInfo>, StoreError> {
    let Some(info) = release(conn)? else {
        return Ok(None);
    };
    let u = |r: &rusqlite::Row<'_>, i: usize| r.get::<_, i64>(i).map(|x| x as u64);
    let t = |r: &rusqlite::Row<'_>, i: usize| r.get::<_, i64>(i).map(|x| x as u32);
    let b = |r: &rusqlite::Row<'_>, i: usize| r.get::<_, i64>(i).map(|x| x != 0);
    scan(
        conn,
        "SELECT * FROM snomed_concept",
        sink,
        Rows::Concepts,
        |r| {
            Ok(Concept {
                id: u(r, 0)?,
                effective_time: t(r, 1)?,
                active: b(r, 2)?,
                module: u(r, 3)?,
                definition_status: u(r, 4)?,
            })
        },
    )?;
    scan(
        conn,
        "SELECT * FROM snomed_description",
        sink,
        Rows::Descriptions,
        |r| {
            Ok(Description {
                id: u(r, 0)?,
                effective_time: t(r, 1)?,
                active: b(r, 2)?,
                module: u(r, 3)?,
                concept: u(r, 4)?,
                language: r.get(5)?,
                type_id: u(r, 6)?,
                term: r.get(7)?,
                case_significance: u(r, 8)?,
            })
        },
    )?;
    scan(
        conn,
        "SELECT * FROM snomed_relationship",
        sink,
        Rows::Relationships,
        |r| {
            Ok(Relationship {
                id: u(r, 0)?,
                effective_time: t(r, 1)?,
                active: b(r, 2)?,
                module: u(r, 3)?,
                source: u(r, 4)?,
                destination: u(r, 5)?,
                group: t(r, 6)?,
                type_id: u(r, 7)?,
                characteristic_type: u(r, 8)?,
                modifier: u(r, 9)?,
            })
        },
    )?;
    scan(
        conn,
        "SELECT * FROM snomed_member",
        sink,
        Rows::Members,
        |r| {
            Ok(RefsetMember {
                id: r.get(0)?,
                effective_time: t(r, 1)?,
                active: b(r, 2)?,
                module: u(r, 3)?,
                refset: u(r, 4)?,
                component: u(r, 5)?,
                acceptability: r.get::<_, Option<i64>>(6)?.map(|x| x as u64),
            })
        },
    )?;
    Ok(Some(info))
}

fn scan<T>(
    conn: &Connection,
    sql: &str,
    sink: &mut dyn FnMut(Rows) -> Result<(), StoreError>,
    wrap: fn(Vec<T>) -> Rows,
    row: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(sql).map_err(db_err)?;
    let mut rows = stmt.query([]).map_err(db_err)?;
    let mut batch = Vec::with_capacity(gp_terminology::rf2::BATCH);
    while let Some(r) = rows.next().map_err(db_err)? {
        batch.push(row(r).map_err(db_err)?);
        if batch.len() >= gp_terminology::rf2::BATCH {
            sink(wrap(std::mem::take(&mut batch)))?;
        }
    }
    if !batch.is_empty() {
        sink(wrap(batch))?;
    }
    Ok(())
}
