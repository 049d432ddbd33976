//! Versions' bodies on disk (`gp_store_sql::body`), as SQLite's: the
//! store's zstd dictionaries in `body_dict`, and the training of a new one
//! on a thread and connection of its own once the store has grown. Several
//! servers may share the database: each trains when it sees the store
//! grown, a dictionary another one stored is fetched when a frame names it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gp_store::StoreError;
use gp_store_sql::body::{Codec, SAMPLES, due, train};

use crate::conn::{Conn, Connector, db_err};

/// How often (in versions written) the writers look at whether to train.
const CHECK_EVERY: i64 = 256;

pub(crate) struct Bodies {
    codec: Codec,
    connector: Connector,
    /// Versions in the store: an estimate at start, then every one written.
    versions: AtomicI64,
    /// The store's size when the last dictionary was trained, and whether
    /// a training is under way.
    training: Mutex<(Option<i64>, bool)>,
}

impl Bodies {
    /// Every dictionary of the store, writing with the newest.
    pub fn load(conn: &mut Conn, connector: Connector) -> Result<Arc<Bodies>, StoreError> {
        let codec = Codec::default();
        let rows = conn
            .query(
                "SELECT bytes, trained_at FROM body_dict ORDER BY trained_at, id",
                &[],
            )
            .map_err(db_err)?;
        let mut last = None;
        for (i, r) in rows.iter().enumerate() {
            let bytes: Vec<u8> = r.try_get(0).map_err(db_err)?;
            codec.add(&bytes, i + 1 == rows.len());
            last = Some(r.try_get::<_, i64>(1).map_err(db_err)?);
        }
        // The planner's row estimate, from the catalogue: no table scan.
        let versions: i64 = conn
            .query_one(
                "SELECT coalesce(max(greatest(reltuples, 0)), 0)::int8 FROM pg_class WHERE oid = to_regclass($1)",
                &[&"resource_version"],
            )
            .and_then(|r| r.try_get(0))
            .map_err(db_err)?;
        Ok(Arc::new(Bodies {
            codec,
            connector,
            versions: AtomicI64::new(versions),
            training: Mutex::new((last, false)),
        }))
    }

    /// What to store for a new version's bytes.
    pub fn encode(self: &Arc<Self>, json: &[u8]) -> Vec<u8> {
        let n = self.versions.fetch_add(1, Ordering::Relaxed) + 1;
        if n % CHECK_EVERY == 0 {
            self.maybe_train(n);
        }
        self.codec.encode(json)
    }

    /// A stored body's bytes, fetching a dictionary another server trained.
    pub fn decode(&self, conn: &mut Conn, stored: Bytes) -> Result<Bytes, StoreError> {
        self.codec
            .decode(Vec::from(stored), |id| {
                conn.query_opt(
                    "SELECT bytes FROM body_dict WHERE id = $1",
                    &[&i64::from(id)],
                )
                .map_err(db_err)?
                .map(|r| r.try_get(0).map_err(db_err))
                .transpose()
            })
            .map(Bytes::from)
    }

    fn maybe_train(self: &Arc<Self>, versions: i64) {
        {
            let Ok(mut t) = self.training.lock() else {
                return;
            };
            if t.1 || !due(versions, t.0) {
                return;
            }
            *t = (Some(versions), true);
        }
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("pg-dict".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                let outcome = me.train_and_store(versions);
                match &outcome {
                    Ok(bytes) => tracing::info!(
                        bytes,
                        ms = started.elapsed().as_millis() as u64,
                        "trained a dictionary for resource bodies"
                    ),
                    Err(e) => tracing::warn!(error = %e, "training a dictionary"),
                }
                if let Ok(mut t) = me.training.lock() {
                    t.1 = false;
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "starting the dictionary training");
        }
    }

    /// Samples the store's versions, trains, stores the dictionary and
    /// only then writes with it, so that no frame is ever committed without
    /// its dictionary. The dictionary's size.
    fn train_and_store(&self, versions: i64) -> Result<usize, StoreError> {
        let mut conn = self.connector.connect()?;
        let practices: Vec<i64> = conn
            .query("SELECT key FROM practice", &[])
            .map_err(db_err)?
            .iter()
            .map(|r| r.try_get(0).map_err(db_err))
            .collect::<Result<_, _>>()?;
        // A sample of the table's pages, about twice the samples wanted.
        let percent = (200.0 * SAMPLES as f64 / versions.max(1) as f64).min(100.0);
        let rows = conn
            .query(
                "SELECT body FROM resource_version TABLESAMPLE SYSTEM ($2::float4)
                 WHERE practice = ANY($1) AND length(body) > 0 LIMIT $3",
                &[&practices, &(percent as f32), &(SAMPLES as i64)],
            )
            .map_err(db_err)?;
        let mut samples = Vec::with_capacity(rows.len());
        for r in &rows {
            let stored: Vec<u8> = r.try_get(0).map_err(db_err)?;
            samples.push(self.decode(&mut conn, Bytes::from(stored))?.to_vec());
        }
        let dict = train(&samples)
            .ok_or_else(|| StoreError::Backend("too few samples to train on".into()))?;
        let id = gp_store_sql::body::dict_id(&dict)
            .ok_or_else(|| StoreError::Backend("zstd trained no dictionary".into()))?;
        conn.execute(
            "INSERT INTO body_dict (id, trained_at, created_at, bytes) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO NOTHING",
            &[
                &i64::from(id),
                &versions,
                &gp_fhir::Instant::now().millis(),
                &dict,
            ],
        )
        .map_err(db_err)?;
        self.codec.add(&dict, true);
        Ok(dict.len())
    }
}
