//! The audit chain (gp-store's `audit.rs`): one link per AuditEvent, in the
//! order they committed. Every statement binds the practice key as `?1`.

use gp_store::StoreError;
use gp_store::audit::{AuditLink, StoredLink};
use rusqlite::{OptionalExtension, params};

use crate::db_err;
use crate::scoped::{Scoped, ScopedWrite};

/// Schema migration 8. The chain is append-only, and so are the
/// AuditEvents it protects: triggers refuse to change or remove either, so
/// only someone who edits the file outside OpenGP (dropping the triggers)
/// can, and `opengp audit verify` then finds the broken link.
pub(crate) const MIGRATION: &str = "
    CREATE TABLE audit_chain (
        practice INTEGER NOT NULL REFERENCES practice(key),
        seq INTEGER NOT NULL,
        event TEXT NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY (practice, seq)
    ) WITHOUT ROWID;
    CREATE TRIGGER audit_chain_no_update BEFORE UPDATE ON audit_chain
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TRIGGER audit_chain_no_delete BEFORE DELETE ON audit_chain
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON resource_version
    WHEN old.type = 'AuditEvent'
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON resource_version
    WHEN old.type = 'AuditEvent'
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;";

impl Scoped<'_> {
    pub(crate) fn chain_links(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredLink>, StoreError> {
        let mut s = self
            .conn
            .prepare_cached(
                "SELECT a.seq, a.event, a.hash, v.body, v.last_updated, v.author FROM audit_chain a
                 LEFT JOIN resource_version v ON v.practice = ?1 AND v.type = 'AuditEvent'
                   AND v.id = a.event AND v.version = 1
                 WHERE a.practice = ?1 AND a.seq > ?2 ORDER BY a.seq LIMIT ?3",
            )
            .map_err(db_err)?;
        let rows = s
            .query_map(params![self.practice, after, limit as i64], |r| {
                Ok(StoredLink {
                    link: AuditLink {
                        seq: r.get(0)?,
                        event: r.get(1)?,
                        hash: r.get(2)?,
                    },
                    body: r
                        .get::<_, Option<Vec<u8>>>(3)?
                        .map(|b| crate::body::decode(self.bodies(), b))
                        .transpose()?,
                    last_updated: r
                        .get::<_, Option<i64>>(4)?
                        .map(gp_fhir::Instant::from_millis),
                    author: r.get(5)?,
                })
            })
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
    }
}

impl ScopedWrite<'_> {
    pub(crate) fn chain_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        self.read
            .conn
            .prepare_cached(
                "SELECT seq, hash FROM audit_chain WHERE practice = ?1 ORDER BY seq DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row(params![self.read.practice], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(db_err)
    }

    pub(crate) fn push_link(&self, link: &AuditLink) -> Result<(), StoreError> {
        self.read
            .conn
            .prepare_cached(
                "INSERT INTO audit_chain (practice, seq, event, hash) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| {
                s.execute(params![self.read.practice, link.seq, link.event, link.hash])
            })
            .map(|_| ())
            .map_err(db_err)
    }
}
