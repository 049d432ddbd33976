//! Versions' bodies on disk (`gp_store_sql::body`): each practice's zstd
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

/// A codec knowing every practice's dictionaries, each practice writing
/// with its newest. Store-wide: it runs at open, like the migrations.
pub(crate) fn load(conn: &Connection) -> Result<Arc<Codec>, StoreError> {
    let codec = Arc::new(Codec::default());
    let mut s = conn
        .prepare(
            "SELECT practice, bytes, trained_at FROM body_dict ORDER BY practice, trained_at, id",
        )
        .map_err(db_err)?;
    let dicts = s
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(db_err)?;
    for (practice, bytes, trained_at) in dicts {
        // In order, so each practice ends up writing with its newest.
        codec.add(practice, &bytes, trained_at, true);
    }
    Ok(codec)
}

/// A version's bytes from the stored column, as a row mapper's result.
pub(crate) fn decode(
    (codec, conn, practice): (&Codec, &Connection, i64),
    stored: Vec<u8>,
) -> rusqlite::Result<Bytes> {
    codec
        .decode(practice, stored, |id| {
            conn.query_row(
                "SELECT bytes FROM body_dict WHERE practice = ?1 AND id = ?2",
                params![practice, id],
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

/// Counts the versions of the practices that wrote in this process for the
/// first time (once per practice), then starts training for those that
/// have grown enough, each on a read-only connection of its own; each
/// dictionary goes to the writer as `done(...)`, which stores it before
/// anything is compressed with it.
pub(crate) fn maybe_train<M: Send + 'static>(
    conn: &Connection,
    path: &std::path::Path,
    codec: &Arc<Codec>,
    reply: &Sender<M>,
    done: impl Fn(i64, i64, Vec<u8>) -> M + Send + Clone + 'static,
) {
    for practice in codec.uncounted() {
        let n = conn
            .query_row(
                "SELECT count(*) FROM resource_version WHERE practice = ?1",
                params![practice],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_or(0);
        codec.counted(practice, n);
    }
    let (path, mine, reply) = (path.to_path_buf(), codec.clone(), reply.clone());
    codec.spawn_training("sqlite-dict", move |practice, versions| {
        let dict = train(&samples(&path, &mine, practice)?)?;
        let bytes = dict.len();
        reply
            .send(done(practice, versions, dict))
            .map_err(|_| StoreError::Unavailable)?;
        Ok(bytes)
    });
}

/// Stores a practice's trained dictionary; from the next write on, its
/// bodies are compressed with it.
pub(crate) fn store(
    conn: &Connection,
    codec: &Codec,
    practice: i64,
    dict: &[u8],
    versions: i64,
) -> Result<(), StoreError> {
    let id = gp_store_sql::body::dict_id(dict)
        .ok_or_else(|| StoreError::Backend("not a zstd dictionary".into()))?;
    conn.execute(
        "INSERT INTO body_dict (practice, id, trained_at, created_at, bytes) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (practice, id) DO NOTHING",
        params![practice, id, versions, gp_fhir::Instant::now().millis(), dict],
    )
    .map_err(db_err)?;
    codec.add(practice, dict, versions, true);
    Ok(())
}

/// The practice's newest versions' bytes, on a read-only connection.
fn samples(path: &PathBuf, codec: &Codec, practice: i64) -> Result<Vec<Vec<u8>>, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(db_err)?;
    let mut s = conn
        .prepare(
            "SELECT body FROM resource_version WHERE practice = ?1 AND length(body) > 0
             ORDER BY rowid DESC LIMIT ?2",
        )
        .map_err(db_err)?;
    let rows = s
        .query_map(params![practice, SAMPLES as i64], |r| {
            decode((codec, &conn, practice), r.get(0)?).map(|b| b.to_vec())
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(db_err)?;
    Ok(rows)
}
