//! Versions' bodies on disk (`gp_store_sql::body`), as SQLite's: each
//! practice's zstd dictionaries in `body_dict`, and the training of a new
//! one on a thread and connection of its own once the practice has grown.
//! A practice's dictionaries are loaded when it first writes or reads a
//! frame in this process, so a server of many practices holds only those
//! it serves. Several servers may share the database: a dictionary another
//! one stored is fetched when a frame names it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gp_store::StoreError;
use gp_store_sql::body::{Codec, SAMPLES, train};

use crate::conn::{Conn, Connector, db_err};

pub(crate) struct Bodies {
    codec: Arc<Codec>,
    connector: Connector,
    /// The practices whose newest dictionary this process has looked up.
    loaded: Mutex<HashSet<i64>>,
}

impl Bodies {
    pub fn new(connector: Connector) -> Arc<Bodies> {
        Arc::new(Bodies {
            codec: Arc::new(Codec::default()),
            connector,
            loaded: Mutex::new(HashSet::new()),
        })
    }

    /// What to store for a new version of `practice`, on the writer's
    /// connection.
    pub fn encode(
        &self,
        conn: &mut Conn,
        practice: i64,
        json: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let first = self
            .loaded
            .lock()
            .map(|mut l| l.insert(practice))
            .unwrap_or(false);
        if first {
            let newest = conn
                .query_opt(
                    "SELECT bytes, trained_at FROM body_dict WHERE practice = $1
                     ORDER BY trained_at DESC, id LIMIT 1",
                    &[&practice],
                )
                .map_err(db_err)?;
            if let Some(r) = newest {
                let bytes: Vec<u8> = r.try_get(0).map_err(db_err)?;
                let trained_at: i64 = r.try_get(1).map_err(db_err)?;
                self.codec.add(practice, &bytes, trained_at, true);
            }
        }
        Ok(self.codec.encode(practice, json))
    }

    /// A stored body's bytes, fetching a dictionary this process has not
    /// seen (another server's, or one trained before it started).
    pub fn decode(
        &self,
        conn: &mut Conn,
        practice: i64,
        stored: Bytes,
    ) -> Result<Bytes, StoreError> {
        self.codec
            .decode(practice, Vec::from(stored), |id| {
                conn.query_opt(
                    "SELECT bytes FROM body_dict WHERE practice = $1 AND id = $2",
                    &[&practice, &i64::from(id)],
                )
                .map_err(db_err)?
                .map(|r| r.try_get(0).map_err(db_err))
                .transpose()
            })
            .map(Bytes::from)
    }

    /// After a commit: the practices of the group hold `versions` each (their
    /// sequence); those grown enough start training.
    pub fn committed(self: &Arc<Self>, versions: impl Iterator<Item = (i64, i64)>) {
        for (practice, n) in versions {
            self.codec.counted(practice, n);
        }
        let me = self.clone();
        self.codec
            .spawn_training("pg-dict", move |practice, versions| {
                me.train_and_store(practice, versions)
            });
    }

    /// Samples the practice's newest versions, trains, stores the
    /// dictionary and only then writes with it, so that no frame is ever
    /// committed without its dictionary. The dictionary's size.
    fn train_and_store(&self, practice: i64, versions: i64) -> Result<usize, StoreError> {
        let mut conn = self.connector.connect()?;
        let rows = conn
            .query(
                "SELECT body FROM resource_version WHERE practice = $1 AND length(body) > 0
                 ORDER BY seq DESC LIMIT $2",
                &[&practice, &(SAMPLES as i64)],
            )
            .map_err(db_err)?;
        let mut samples = Vec::with_capacity(rows.len());
        for r in &rows {
            let stored: Vec<u8> = r.try_get(0).map_err(db_err)?;
            samples.push(
                self.decode(&mut conn, practice, Bytes::from(stored))?
                    .to_vec(),
            );
        }
        let dict = train(&samples)?;
        let id = gp_store_sql::body::dict_id(&dict)
            .ok_or_else(|| StoreError::Backend("zstd trained no dictionary".into()))?;
        conn.execute(
            "INSERT INTO body_dict (practice, id, trained_at, created_at, bytes)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (practice, id) DO NOTHING",
            &[
                &practice,
                &i64::from(id),
                &versions,
                &gp_fhir::Instant::now().millis(),
                &dict,
            ],
        )
        .map_err(db_err)?;
        self.codec.add(practice, &dict, versions, true);
        Ok(dict.len())
    }
}
