//! Versions' bodies on disk (`gp_store_sql::body`): the store's zstd
//! dictionaries in `body_dict`, and the training of a new one off the
//! writer thread.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Sender;

use bytes::Bytes;
use gp_store::StoreError;
use gp_store_sql::body::{Codec, SAMPLES, train};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::db_err;

/// A codec knowing every dictionary of the store, writing with the newest,
/// and the newest's `trained_at`.
pub(crate) fn load(conn: &Connection) -> Result<(Arc<Codec>, Option<i64>), StoreError> {
    let codec = Arc::new(Codec::default());
    let mut s = conn
        .prepare("SELECT bytes, trained_at FROM body_dict ORDER BY trained_at, id")
        .map_err(db_err)?;
    let dicts = s
        .query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(db_err)?;
    let last = dicts.last().map(|d| d.1);
    let n = dicts.len();
    for (i, (bytes, _)) in dicts.iter().enumerate() {
        codec.add(bytes, i + 1 == n);
    }
    Ok((codec, last))
}

/// A version's bytes from the stored column, as a row mapper's result.
pub(crate) fn decode(codec: &Codec, conn: &Connection, stored: Vec<u8>) -> rusqlite::Result<Bytes> {
    codec
        .decode(stored, |id| {
            conn.query_row(
                "SELECT bytes FROM body_dict WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)
        })
        .map(Bytes::from)
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
        })
}

/// The newest version's position in write order.
pub(crate) fn newest(conn: &Connection) -> i64 {
    conn.query_row(
        "SELECT coalesce(max(rowid), 0) FROM resource_version",
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

/// Stores a trained dictionary; from the next write on, bodies are
/// compressed with it.
pub(crate) fn store(
    conn: &Connection,
    codec: &Codec,
    dict: &[u8],
    trained_at: i64,
) -> Result<(), StoreError> {
    let Some(id) = gp_store_sql::body::dict_id(dict) else {
        return Err(StoreError::Backend("not a zstd dictionary".into()));
    };
    conn.execute(
        "INSERT INTO body_dict (id, trained_at, created_at, bytes) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO NOTHING",
        params![id, trained_at, gp_fhir::Instant::now().millis(), dict],
    )
    .map_err(db_err)?;
    codec.add(dict, true);
    Ok(())
}

/// Trains a dictionary on the newest versions, on a thread of its own with
/// a read-only connection, and hands it to the writer as `done(dict)`
/// (`None` when the samples were too few or too alike).
pub(crate) fn train_in_background<M: Send + 'static>(
    path: PathBuf,
    codec: Arc<Codec>,
    reply: Sender<M>,
    done: impl FnOnce(Option<Vec<u8>>) -> M + Send + 'static,
) {
    let spawned = std::thread::Builder::new()
        .name("sqlite-dict".into())
        .spawn(move || {
            let started = std::time::Instant::now();
            let dict = samples(&path, &codec)
                .map_err(|e| tracing::warn!(error = %e, "reading samples to train a dictionary"))
                .ok()
                .and_then(|s| train(&s));
            tracing::info!(
                trained = dict.is_some(),
                bytes = dict.as_ref().map_or(0, Vec::len),
                ms = started.elapsed().as_millis() as u64,
                "trained a dictionary for resource bodies"
            );
            let _ = reply.send(done(dict));
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "starting the dictionary training");
    }
}

fn samples(path: &PathBuf, codec: &Codec) -> Result<Vec<Vec<u8>>, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(db_err)?;
    let mut s = conn
        .prepare(
            "SELECT body FROM resource_version WHERE length(body) > 0 ORDER BY rowid DESC LIMIT ?1",
        )
        .map_err(db_err)?;
    let rows = s
        .query_map(params![SAMPLES as i64], |r| {
            let stored: Vec<u8> = r.get(0)?;
            decode(codec, &conn, stored).map(|b| b.to_vec())
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(db_err)?;
    Ok(rows)
}
