//! Reads and writes scoped to one practice. Every statement here binds the
//! practice key as `?1`.

use gp_fhir::search::SearchQuery;
use gp_fhir::{Instant, ResourceType};
use gp_store::access::Sees;
use gp_store::audit::{AuditLink, StoredLink};
use gp_store::{
    Held, HistoryPage, HistoryQuery, HistoryScope, IndexState, NewVersion, ReadTx, Reindexed,
    SearchPage, StoreError, StoredVersion, VersionRecord, WriteTx,
};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use crate::body::decode;
use crate::db_err;
use gp_store_sql::body::Codec;

/// A connection seen through one practice.
pub(crate) struct Scoped<'c> {
    pub conn: &'c Connection,
    /// The practice every statement is filtered by.
    pub practice: i64,
    /// Which restricted entries the context sees.
    pub sees: Sees,
    /// How bodies are stored (`crate::body`).
    pub codec: &'c Codec,
}

/// The writer's view: a scoped connection inside the open transaction, plus
/// who is writing and the store's clock.
pub(crate) struct ScopedWrite<'c> {
    pub read: Scoped<'c>,
    pub author: &'c str,
    /// The last instant stamped, so that time never goes backwards.
    pub clock: &'c mut i64,
}

fn version_row(
    ty: ResourceType,
    id: &str,
    row: &rusqlite::Row<'_>,
    bodies: (&Codec, &Connection, i64),
) -> rusqlite::Result<StoredVersion> {
    let body = decode(bodies, row.get(3)?)?;
    Ok(StoredVersion {
        resource_type: ty,
        id: id.to_owned(),
        version: row.get::<_, i64>(0)? as u64,
        last_updated: Instant::from_millis(row.get(1)?),
        deleted: row.get::<_, i64>(2)? != 0,
        body,
    })
}

/// A row of `(type, id, version, last_updated, deleted, body)`.
pub(crate) fn full_row(
    row: &rusqlite::Row<'_>,
    bodies: (&Codec, &Connection, i64),
) -> rusqlite::Result<StoredVersion> {
    let ty: String = row.get(0)?;
    let id: String = row.get(1)?;
    let ty = ResourceType::parse(&ty)
        .ok_or_else(|| rusqlite::Error::InvalidColumnName(format!("stored type {ty}")))?;
    let body = decode(bodies, row.get(5)?)?;
    Ok(StoredVersion {
        resource_type: ty,
        id,
        version: row.get::<_, i64>(2)? as u64,
        last_updated: Instant::from_millis(row.get(3)?),
        deleted: row.get::<_, i64>(4)? != 0,
        body,
    })
}

impl<'c> Scoped<'c> {
    /// What a row mapper needs to read a stored body.
    pub(crate) fn bodies(&self) -> (&'c Codec, &'c Connection, i64) {
        (self.codec, self.conn, self.practice)
    }
}

impl ReadTx for Scoped<'_> {
    fn sees(&self) -> &Sees {
        &self.sees
    }

    fn restricted_count(&mut self, patient: &str) -> Result<u64, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT count(*) FROM resource_current INDEXED BY resource_current_restricted
                 WHERE practice = ?1 AND restricted = ?2 AND NOT deleted",
            )
            .and_then(|mut s| s.query_row(params![self.practice, patient], |r| r.get::<_, i64>(0)))
            .map(|n| n as u64)
            .map_err(db_err)
    }

    fn latest(&mut self, ty: ResourceType, id: &str) -> Result<Option<StoredVersion>, StoreError> {
        let mut s = self
            .conn
            .prepare_cached(
                "SELECT c.version, c.last_updated, c.deleted, v.body
                 FROM resource_current c JOIN resource_version v ON v.rowid = c.vrow AND v.practice = ?1
                 WHERE c.practice = ?1 AND c.type = ?2 AND c.id = ?3",
            )
            .map_err(db_err)?;
        s.query_row(params![self.practice, ty.as_str(), id], |r| {
            version_row(ty, id, r, self.bodies())
        })
        .optional()
        .map_err(db_err)
    }

    fn version(
        &mut self,
        ty: ResourceType,
        id: &str,
        version: u64,
    ) -> Result<Option<StoredVersion>, StoreError> {
        let mut s = self
            .conn
            .prepare_cached(
                "SELECT version, last_updated, deleted, body FROM resource_version
                 WHERE practice = ?1 AND type = ?2 AND id = ?3 AND version = ?4",
            )
            .map_err(db_err)?;
        s.query_row(
            params![self.practice, ty.as_str(), id, version as i64],
            |r| version_row(ty, id, r, self.bodies()),
        )
        .optional()
        .map_err(db_err)
    }

    fn held(&mut self, keys: &[(ResourceType, &str, u64)]) -> Result<Vec<Held>, StoreError> {
        // The keys go in as one JSON array of `[type, id, version]`;
        // `json_each` numbers them. CROSS JOIN keeps the keys the outer
        // loop: each is one primary-key lookup, never a scan of the
        // practice's resources per key.
        let json = serde_json::Value::Array(
            keys.iter()
                .map(|(ty, id, v)| serde_json::json!([ty.as_str(), id, v]))
                .collect(),
        )
        .to_string();
        let mut s = self
            .conn
            .prepare_cached(
                "SELECT k.key, c.version, c.restricted, v.body
                 FROM json_each(?2) k
                 CROSS JOIN resource_current c
                   ON c.practice = ?1 AND c.type = k.value ->> 0 AND c.id = k.value ->> 1
                 LEFT JOIN resource_version v
                   ON v.practice = ?1 AND v.type = c.type AND v.id = c.id AND v.version = k.value ->> 2",
            )
            .map_err(db_err)?;
        let rows = s
            .query_map(params![self.practice, json], |r| {
                Ok(Held {
                    key: r.get::<_, i64>(0)? as usize,
                    latest: r.get::<_, i64>(1)? as u64,
                    restricted: r.get(2)?,
                    body: r
                        .get::<_, Option<Vec<u8>>>(3)?
                        .map(|b| decode(self.bodies(), b))
                        .transpose()?,
                })
            })
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
    }

    fn search(
        &mut self,
        ty: Option<ResourceType>,
        q: &SearchQuery,
    ) -> Result<SearchPage, StoreError> {
        crate::search::search(self.bodies(), self.practice, &self.sees, ty, q)
    }

    fn references(
        &mut self,
        ty: ResourceType,
        ids: &[String],
        code: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = Vec::new();
        let mut s = self
            .conn
            .prepare_cached(
                "SELECT i.target_type, i.target_id FROM resource_current c
                 CROSS JOIN idx_reference i NOT INDEXED
                 WHERE c.practice = ?1 AND c.type = ?2 AND c.id = ?3
                   AND i.rid = c.rid AND +i.practice = ?1 AND i.param = ?4 AND i.target_id IS NOT NULL",
            )
            .map_err(db_err)?;
        for id in ids {
            let rows = s
                .query_map(params![self.practice, ty.as_str(), id, code], |r| {
                    Ok((r.get::<_, Option<String>>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(db_err)?;
            for row in rows {
                let (t, i) = row.map_err(db_err)?;
                if let Some(t) = t {
                    out.push((t, i));
                }
            }
        }
        Ok(out)
    }

    fn referrers(
        &mut self,
        source: ResourceType,
        code: &str,
        target_type: ResourceType,
        target_ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let mut s = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT c.id FROM idx_reference i INDEXED BY idx_reference_value
                 JOIN resource_current c ON c.practice = ?1 AND c.rid = i.rid
                 WHERE i.practice = ?1 AND i.type = ?4 AND i.param = ?5 AND i.target_id = ?3 AND i.target_type = ?2",
            )
            .map_err(db_err)?;
        for target in target_ids {
            let rows = s
                .query_map(
                    params![
                        self.practice,
                        target_type.as_str(),
                        target,
                        source.as_str(),
                        code
                    ],
                    |r| r.get::<_, String>(0),
                )
                .map_err(db_err)?;
            for row in rows {
                out.push(row.map_err(db_err)?);
            }
        }
        Ok(out)
    }

    fn versions(
        &mut self,
        after: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<VersionRecord>, StoreError> {
        let mut s = self
            .conn
            .prepare_cached(
                "SELECT type, id, version, last_updated, deleted, body, rowid, author
                 FROM resource_version
                 WHERE practice = ?1 AND rowid > ?2 AND rowid <= ?3 AND type <> 'AuditEvent'
                 ORDER BY rowid LIMIT ?4",
            )
            .map_err(db_err)?;
        let rows = s
            .query_map(params![self.practice, after, until, limit as i64], |r| {
                Ok(VersionRecord {
                    version: full_row(r, self.bodies())?,
                    position: r.get(6)?,
                    author: r.get(7)?,
                })
            })
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
    }

    fn frozen(&mut self) -> Result<Option<String>, StoreError> {
        self.conn
            .prepare_cached("SELECT frozen FROM practice WHERE key = ?1")
            .and_then(|mut s| s.query_row(params![self.practice], |r| r.get(0)))
            .map_err(db_err)
    }

    fn current_after(
        &mut self,
        after: (&str, &str),
        limit: usize,
    ) -> Result<Vec<StoredVersion>, StoreError> {
        let mut s = self
            .conn
            .prepare_cached(
                "SELECT c.type, c.id, c.version, c.last_updated, c.deleted, v.body
                 FROM resource_current c JOIN resource_version v ON v.rowid = c.vrow AND v.practice = ?1
                 WHERE c.practice = ?1 AND (c.type, c.id) > (?2, ?3) AND NOT c.deleted
                 ORDER BY c.type, c.id LIMIT ?4",
            )
            .map_err(db_err)?;
        let rows = s
            .query_map(
                params![self.practice, after.0, after.1, limit as i64],
                |r| full_row(r, self.bodies()),
            )
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
    }

    fn index_state(&mut self) -> Result<IndexState, StoreError> {
        crate::index::state(self.conn, self.practice)
    }

    fn last_position(&mut self) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT coalesce(max(rowid), 0) FROM resource_version WHERE practice = ?1",
                params![self.practice],
                |r| r.get(0),
            )
            .map_err(db_err)
    }

    fn audit_links(&mut self, after: i64, limit: usize) -> Result<Vec<StoredLink>, StoreError> {
        self.chain_links(after, limit)
    }

    fn history(
        &mut self,
        scope: &HistoryScope,
        q: &HistoryQuery,
    ) -> Result<HistoryPage, StoreError> {
        let until: i64 = match q.until {
            Some(u) => u,
            None => self
                .conn
                .prepare_cached(
                    "SELECT coalesce(max(rowid), 0) FROM resource_version WHERE practice = ?1",
                )
                .and_then(|mut s| s.query_row(params![self.practice], |r| r.get(0)))
                .map_err(db_err)?,
        };
        let mut args: Vec<SqlValue> =
            vec![SqlValue::Integer(self.practice), SqlValue::Integer(until)];
        let mut wh = vec!["practice = ?1".to_owned(), "rowid <= ?2".to_owned()];
        match scope {
            // The audit trail is reached through AuditEvent's own URLs only.
            HistoryScope::Practice => wh.push("type <> 'AuditEvent'".to_owned()),
            HistoryScope::Type(t) => {
                args.push(SqlValue::Text(t.as_str().to_owned()));
                wh.push(format!("type = ?{}", args.len()));
            }
            HistoryScope::Instance(t, id) => {
                args.push(SqlValue::Text(t.as_str().to_owned()));
                wh.push(format!("type = ?{}", args.len()));
                args.push(SqlValue::Text(id.clone()));
                wh.push(format!("id = ?{}", args.len()));
            }
        }
        if let Some(since) = q.since {
            args.push(SqlValue::Integer(since.millis()));
            wh.push(format!("last_updated >= ?{}", args.len()));
        }
        if let Some((sql, more)) =
            gp_store_sql::visible_history(gp_store_sql::Dialect::Sqlite, &self.sees, args.len() + 1)
        {
            args.extend(more.iter().map(crate::search::value));
            wh.push(sql);
        }
        let where_sql = wh.join(" AND ");
        let total: i64 = self
            .conn
            .prepare_cached(&format!(
                "SELECT count(*) FROM resource_version WHERE {where_sql}"
            ))
            .and_then(|mut s| s.query_row(params_from_iter(args.iter()), |r| r.get(0)))
            .map_err(db_err)?;
        args.push(SqlValue::Integer(q.count as i64));
        let limit = args.len();
        args.push(SqlValue::Integer(q.offset as i64));
        let offset = args.len();
        let sql = format!(
            "SELECT type, id, version, last_updated, deleted, body FROM resource_version
             WHERE {where_sql} ORDER BY rowid DESC LIMIT ?{limit} OFFSET ?{offset}"
        );
        let mut s = self.conn.prepare_cached(&sql).map_err(db_err)?;
        let rows = s
            .query_map(params_from_iter(args.iter()), |r| {
                full_row(r, self.bodies())
            })
            .map_err(db_err)?;
        let entries = rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?;
        Ok(HistoryPage {
            total: total as u64,
            entries,
            until,
        })
    }
}

impl ReadTx for ScopedWrite<'_> {
    fn sees(&self) -> &Sees {
        self.read.sees()
    }
    fn restricted_count(&mut self, patient: &str) -> Result<u64, StoreError> {
        self.read.restricted_count(patient)
    }
    fn latest(&mut self, ty: ResourceType, id: &str) -> Result<Option<StoredVersion>, StoreError> {
        self.read.latest(ty, id)
    }
    fn version(
        &mut self,
        ty: ResourceType,
        id: &str,
        version: u64,
    ) -> Result<Option<StoredVersion>, StoreError> {
        self.read.version(ty, id, version)
    }
    fn held(&mut self, keys: &[(ResourceType, &str, u64)]) -> Result<Vec<Held>, StoreError> {
        self.read.held(keys)
    }
    fn search(
        &mut self,
        ty: Option<ResourceType>,
        q: &SearchQuery,
    ) -> Result<SearchPage, StoreError> {
        self.read.search(ty, q)
    }
    fn references(
        &mut self,
        ty: ResourceType,
        ids: &[String],
        code: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.read.references(ty, ids, code)
    }
    fn referrers(
        &mut self,
        source: ResourceType,
        code: &str,
        target_type: ResourceType,
        target_ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        self.read.referrers(source, code, target_type, target_ids)
    }
    fn history(
        &mut self,
        scope: &HistoryScope,
        q: &HistoryQuery,
    ) -> Result<HistoryPage, StoreError> {
        self.read.history(scope, q)
    }
    fn versions(
        &mut self,
        after: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<VersionRecord>, StoreError> {
        self.read.versions(after, until, limit)
    }
    fn last_position(&mut self) -> Result<i64, StoreError> {
        self.read.last_position()
    }
    fn frozen(&mut self) -> Result<Option<String>, StoreError> {
        self.read.frozen()
    }
    fn current_after(
        &mut self,
        after: (&str, &str),
        limit: usize,
    ) -> Result<Vec<StoredVersion>, StoreError> {
        self.read.current_after(after, limit)
    }
    fn index_state(&mut self) -> Result<IndexState, StoreError> {
        self.read.index_state()
    }
    fn audit_links(&mut self, after: i64, limit: usize) -> Result<Vec<StoredLink>, StoreError> {
        self.read.audit_links(after, limit)
    }
}

impl WriteTx for ScopedWrite<'_> {
    fn audit_head(&mut self) -> Result<Option<(i64, String)>, StoreError> {
        self.chain_head()
    }

    fn put_audit_link(&mut self, link: &AuditLink) -> Result<(), StoreError> {
        self.push_link(link)
    }

    fn reindex(&mut self, rows: &[Reindexed]) -> Result<usize, StoreError> {
        crate::index::reindex(self.read.conn, self.read.practice, rows)
    }

    fn set_index_state(&mut self, state: &IndexState) -> Result<(), StoreError> {
        crate::index::set_state(self.read.conn, self.read.practice, state)
    }

    fn set_frozen(&mut self, reason: Option<&str>) -> Result<(), StoreError> {
        self.read
            .conn
            .prepare_cached("UPDATE practice SET frozen = ?2 WHERE key = ?1")
            .and_then(|mut s| s.execute(params![self.read.practice, reason]))
            .map(|_| ())
            .map_err(db_err)
    }

    fn now(&mut self) -> Instant {
        let now = Instant::now().millis().max(*self.clock);
        *self.clock = now;
        Instant::from_millis(now)
    }

    fn mark(&mut self) -> Instant {
        let at = self.now();
        *self.clock = at.millis() + 1;
        at
    }

    fn insert(&mut self, v: &NewVersion) -> Result<(), StoreError> {
        let conn = self.read.conn;
        let practice = self.read.practice;
        conn.prepare_cached(
            "INSERT INTO resource_version (practice, type, id, version, last_updated, deleted, author, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .and_then(|mut s| {
            let body = self.read.codec.encode(practice, &v.body);
            s.execute(params![practice, v.resource_type.as_str(), v.id, v.version as i64, v.last_updated.millis(), v.deleted as i64, v.author.as_deref().unwrap_or(self.author), body])
        })
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                StoreError::Conflict(format!("{}/{} version {} was written concurrently", v.resource_type, v.id, v.version))
            }
            other => db_err(other),
        })?;
        let vrow = conn.last_insert_rowid();
        // The current row of a resource already stored: the full-text row
        // of the version this one replaces (keyed by its rowid) and the
        // resource's `rid`.
        let current: Option<(i64, i64)> = if v.version == 1 {
            None
        } else {
            conn.prepare_cached(
                "SELECT vrow, rid FROM resource_current WHERE practice = ?1 AND type = ?2 AND id = ?3",
            )
            .and_then(|mut s| {
                s.query_row(params![practice, v.resource_type.as_str(), v.id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
            })
            .map_err(db_err)?
        };
        // A new resource's `rid` is its first version's rowid, kept after.
        // Two plain statements rather than an upsert `RETURNING rid`: that
        // one needs a statement journal, and releasing it walks the whole
        // in-memory sub-journal of the group's transaction, once per write
        // (half the writer's time at 400 resources a group;
        // docs/benchmarks.md).
        let rid = match current {
            Some((_, rid)) => {
                conn.prepare_cached(
                    "UPDATE resource_current SET version = ?4, last_updated = ?5, deleted = ?6, vrow = ?7, restricted = ?8
                     WHERE practice = ?1 AND type = ?2 AND id = ?3",
                )
                .and_then(|mut s| s.execute(params![practice, v.resource_type.as_str(), v.id, v.version as i64, v.last_updated.millis(), v.deleted as i64, vrow, v.restricted]))
                .map_err(db_err)?;
                rid
            }
            None => {
                conn.prepare_cached(
                    "INSERT INTO resource_current (practice, type, id, version, last_updated, deleted, vrow, restricted, rid)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?7)",
                )
                .and_then(|mut s| s.execute(params![practice, v.resource_type.as_str(), v.id, v.version as i64, v.last_updated.millis(), v.deleted as i64, vrow, v.restricted]))
                .map_err(db_err)?;
                vrow
            }
        };
        let replaced = current.map(|(vrow, _)| vrow);
        crate::index::replace(
            conn,
            practice,
            v.resource_type.as_str(),
            rid,
            &v.index,
            crate::index::Rows {
                vrow,
                replaced: (v.version > 1).then_some(replaced),
            },
        )
    }
}
