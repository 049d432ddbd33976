//! Reads and writes scoped to one practice. Every statement here binds the
//! practice key as `$1` and filters every table it reads by it.

use bytes::Bytes;
use gp_fhir::search::SearchQuery;
use gp_fhir::{Instant, ResourceType};
use gp_store::access::Sees;
use gp_store::{
    Held, HistoryPage, HistoryQuery, HistoryScope, IndexState, ReadTx, SearchPage, StoreError,
    StoredVersion, VersionRecord,
};
use gp_store_sql::{Arg, Dialect};
use postgres::Row;
use postgres::types::ToSql;

use crate::body::Bodies;
use crate::conn::{Conn, db_err};
use std::sync::Arc;

/// A connection seen through one practice.
pub(crate) struct Scoped<'c> {
    pub conn: &'c mut Conn,
    /// The practice every statement is filtered by.
    pub practice: i64,
    /// In the writer: lock the current row read by `latest`, so that a
    /// version-aware update holds what it checked until it commits.
    pub for_update: bool,
    /// Which restricted entries the context sees.
    pub sees: Sees,
    /// How bodies are stored (`body.rs`).
    pub bodies: &'c Arc<Bodies>,
}

/// `(type, id, version, last_updated, deleted, body)` as a version.
fn full_row(row: &Row) -> Result<StoredVersion, StoreError> {
    let ty: &str = row.try_get(0).map_err(db_err)?;
    let ty = ResourceType::parse(ty)
        .ok_or_else(|| StoreError::Backend(format!("stored type '{ty}' is not known")))?;
    let body: Vec<u8> = row.try_get(5).map_err(db_err)?;
    Ok(StoredVersion {
        resource_type: ty,
        id: row.try_get(1).map_err(db_err)?,
        version: row.try_get::<_, i64>(2).map_err(db_err)? as u64,
        last_updated: Instant::from_millis(row.try_get(3).map_err(db_err)?),
        deleted: row.try_get(4).map_err(db_err)?,
        body: Bytes::from(body),
    })
}

impl Scoped<'_> {
    /// `(type, id, version, last_updated, deleted, body)` as a version, its
    /// body as the version's bytes.
    fn full(&mut self, row: &Row) -> Result<StoredVersion, StoreError> {
        let mut v = full_row(row)?;
        v.body = self.bodies.decode(self.conn, self.practice, v.body)?;
        Ok(v)
    }
}

type Args = Vec<Box<dyn ToSql + Sync>>;

/// The builder's values as PostgreSQL parameters.
fn values(args: &[Arg]) -> Args {
    args.iter()
        .map(|a| -> Box<dyn ToSql + Sync> {
            match a {
                Arg::Int(v) => Box::new(*v),
                Arg::Real(v) => Box::new(*v),
                Arg::Text(v) => Box::new(v.clone()),
            }
        })
        .collect()
}

fn refs(args: &Args) -> Vec<&(dyn ToSql + Sync)> {
    args.iter()
        .map(|a| a.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

fn arg(args: &mut Args, v: impl ToSql + Sync + 'static) -> String {
    args.push(Box::new(v));
    format!("${}", args.len())
}

const LATEST: &str = "SELECT c.type, c.id, c.version, c.last_updated, c.deleted, v.body
     FROM resource_current c JOIN resource_version v
       ON v.practice = $1 AND v.type = c.type AND v.id = c.id AND v.version = c.version
     WHERE c.practice = $1 AND c.type = $2 AND c.id = $3";

/// The writer's form: the current row stays locked until the commit, so no
/// other writer (in this process or another) can slip a version in between
/// an `If-Match` check and the update it guards.
const LATEST_FOR_UPDATE: &str = "SELECT c.type, c.id, c.version, c.last_updated, c.deleted, v.body
     FROM resource_current c JOIN resource_version v
       ON v.practice = $1 AND v.type = c.type AND v.id = c.id AND v.version = c.version
     WHERE c.practice = $1 AND c.type = $2 AND c.id = $3
     FOR UPDATE OF c";

impl ReadTx for Scoped<'_> {
    fn sees(&self) -> &Sees {
        &self.sees
    }

    fn restricted_count(&mut self, patient: &str) -> Result<u64, StoreError> {
        self.conn
            .query_one(
                "SELECT count(*) FROM resource_current
                 WHERE practice = $1 AND restricted = $2 AND NOT deleted",
                &[&self.practice, &patient],
            )
            .and_then(|r| r.try_get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(db_err)
    }

    fn latest(&mut self, ty: ResourceType, id: &str) -> Result<Option<StoredVersion>, StoreError> {
        let sql = if self.for_update {
            LATEST_FOR_UPDATE
        } else {
            LATEST
        };
        let row = self
            .conn
            .query_opt(sql, &[&self.practice, &ty.as_str(), &id])
            .map_err(db_err)?;
        row.as_ref().map(|r| self.full(r)).transpose()
    }

    fn version(
        &mut self,
        ty: ResourceType,
        id: &str,
        version: u64,
    ) -> Result<Option<StoredVersion>, StoreError> {
        let row = self
            .conn
            .query_opt(
                "SELECT type, id, version, last_updated, deleted, body FROM resource_version
                 WHERE practice = $1 AND type = $2 AND id = $3 AND version = $4",
                &[&self.practice, &ty.as_str(), &id, &(version as i64)],
            )
            .map_err(db_err)?;
        row.as_ref().map(|r| self.full(r)).transpose()
    }

    fn held(&mut self, keys: &[(ResourceType, &str, u64)]) -> Result<Vec<Held>, StoreError> {
        let types: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
        let ids: Vec<&str> = keys.iter().map(|k| k.1).collect();
        let versions: Vec<i64> = keys.iter().map(|k| k.2 as i64).collect();
        let rows = self
            .conn
            .query(
                "SELECT k.n, c.version, c.restricted, v.body
                 FROM unnest($2::text[], $3::text[], $4::int8[]) WITH ORDINALITY AS k(type, id, version, n)
                 JOIN resource_current c ON c.practice = $1 AND c.type = k.type AND c.id = k.id
                 LEFT JOIN resource_version v
                   ON v.practice = $1 AND v.type = k.type AND v.id = k.id AND v.version = k.version",
                &[&self.practice, &types, &ids, &versions],
            )
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(Held {
                    key: (r.try_get::<_, i64>(0).map_err(db_err)? - 1) as usize,
                    latest: r.try_get::<_, i64>(1).map_err(db_err)? as u64,
                    restricted: r.try_get(2).map_err(db_err)?,
                    body: r
                        .try_get::<_, Option<Vec<u8>>>(3)
                        .map_err(db_err)?
                        .map(|b| self.bodies.decode(self.conn, self.practice, Bytes::from(b)))
                        .transpose()?,
                })
            })
            .collect()
    }

    fn search(
        &mut self,
        ty: Option<ResourceType>,
        q: &SearchQuery,
    ) -> Result<SearchPage, StoreError> {
        let built = gp_store_sql::search(Dialect::Postgres, self.practice, &self.sees, ty, q)?;
        let entries = match &built.page {
            None => Vec::new(),
            Some(st) => {
                let args = values(&st.args);
                let rows = self.conn.query(&st.sql, &refs(&args)).map_err(db_err)?;
                rows.iter()
                    .map(|r| self.full(r))
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        let total = match &built.total {
            Some(st) if built.needs_count(entries.len()) => {
                let args = values(&st.args);
                let count: i64 = self
                    .conn
                    .query_one(&st.sql, &refs(&args))
                    .and_then(|r| r.try_get(0))
                    .map_err(db_err)?;
                Some(count as u64)
            }
            Some(_) => Some(entries.len() as u64),
            None => None,
        };
        Ok(SearchPage { total, entries })
    }

    fn references(
        &mut self,
        ty: ResourceType,
        ids: &[String],
        code: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self
            .conn
            .query(
                "SELECT i.target_type, i.target_id FROM resource_current c
                 JOIN idx_reference i ON i.rid = c.rid AND i.practice = $1 AND i.param = $4
                 WHERE c.practice = $1 AND c.type = $2 AND c.id = ANY($3)
                   AND i.target_type IS NOT NULL AND i.target_id IS NOT NULL",
                &[&self.practice, &ty.as_str(), &ids, &code],
            )
            .map_err(db_err)?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<Vec<_>, postgres::Error>>()
            .map_err(db_err)
    }

    fn referrers(
        &mut self,
        source: ResourceType,
        code: &str,
        target_type: ResourceType,
        target_ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let rows = self
            .conn
            .query(
                "SELECT DISTINCT c.id FROM idx_reference i
                 JOIN resource_current c ON c.practice = $1 AND c.rid = i.rid
                 WHERE i.practice = $1 AND i.target_type = $2 AND i.target_id = ANY($3)
                   AND i.type = $4 AND i.param = $5",
                &[
                    &self.practice,
                    &target_type.as_str(),
                    &target_ids,
                    &source.as_str(),
                    &code,
                ],
            )
            .map_err(db_err)?;
        rows.iter()
            .map(|r| r.try_get(0))
            .collect::<Result<Vec<_>, postgres::Error>>()
            .map_err(db_err)
    }

    fn versions(
        &mut self,
        after: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<VersionRecord>, StoreError> {
        let rows = self
            .conn
            .query(
                "SELECT type, id, version, last_updated, deleted, body, seq, author
                 FROM resource_version
                 WHERE practice = $1 AND seq > $2 AND seq <= $3 AND type <> 'AuditEvent'
                 ORDER BY seq LIMIT $4",
                &[&self.practice, &after, &until, &(limit as i64)],
            )
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(VersionRecord {
                    version: self.full(r)?,
                    position: r.try_get(6).map_err(db_err)?,
                    author: r.try_get(7).map_err(db_err)?,
                })
            })
            .collect()
    }

    fn audit_links(
        &mut self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<gp_store::audit::StoredLink>, StoreError> {
        crate::audit::links(self.conn, self.bodies, self.practice, after, limit)
    }

    fn frozen(&mut self) -> Result<Option<String>, StoreError> {
        self.conn
            .query_opt(
                "SELECT frozen FROM practice WHERE key = $1",
                &[&self.practice],
            )
            .map_err(db_err)?
            .map_or(Ok(None), |r| r.try_get(0).map_err(db_err))
    }

    fn current_after(
        &mut self,
        after: (&str, &str),
        limit: usize,
    ) -> Result<Vec<StoredVersion>, StoreError> {
        let rows = self
            .conn
            .query(
                "SELECT c.type, c.id, c.version, c.last_updated, c.deleted, v.body
                 FROM resource_current c JOIN resource_version v
                   ON v.practice = $1 AND v.type = c.type AND v.id = c.id AND v.version = c.version
                 WHERE c.practice = $1 AND (c.type, c.id) > ($2, $3) AND NOT c.deleted
                 ORDER BY c.type, c.id LIMIT $4",
                &[&self.practice, &after.0, &after.1, &(limit as i64)],
            )
            .map_err(db_err)?;
        rows.iter().map(|r| self.full(r)).collect()
    }

    fn index_state(&mut self) -> Result<IndexState, StoreError> {
        let Some(r) = self
            .conn
            .query_opt(
                "SELECT version, resume_version, after_type, after_id FROM index_state WHERE practice = $1",
                &[&self.practice],
            )
            .map_err(db_err)?
        else {
            return Ok(IndexState::default());
        };
        let resume: (Option<i32>, Option<String>, Option<String>) = (
            r.try_get(1).map_err(db_err)?,
            r.try_get(2).map_err(db_err)?,
            r.try_get(3).map_err(db_err)?,
        );
        Ok(IndexState {
            version: r.try_get::<_, i32>(0).map_err(db_err)? as u32,
            resume: match resume {
                (Some(v), Some(ty), Some(id)) => Some((v as u32, ty, id)),
                _ => None,
            },
        })
    }

    fn last_position(&mut self) -> Result<i64, StoreError> {
        self.conn
            .query_one(
                "SELECT coalesce(max(seq), 0) FROM resource_version WHERE practice = $1",
                &[&self.practice],
            )
            .and_then(|r| r.try_get(0))
            .map_err(db_err)
    }

    fn history(
        &mut self,
        scope: &HistoryScope,
        q: &HistoryQuery,
    ) -> Result<HistoryPage, StoreError> {
        // The practice's sequence commits in order (see the counter row), so
        // everything at or below the mark seen now is already visible and
        // later pages, bounded by the same mark, stay stable.
        let until: i64 = match q.until {
            Some(u) => u,
            None => self
                .conn
                .query_one(
                    "SELECT coalesce(max(seq), 0) FROM resource_version WHERE practice = $1",
                    &[&self.practice],
                )
                .and_then(|r| r.try_get(0))
                .map_err(db_err)?,
        };
        let mut args: Args = vec![Box::new(self.practice), Box::new(until)];
        let mut wh = vec!["practice = $1".to_owned(), "seq <= $2".to_owned()];
        match scope {
            // The audit trail is reached through AuditEvent's own URLs only.
            HistoryScope::Practice => wh.push("type <> 'AuditEvent'".to_owned()),
            HistoryScope::Type(t) => {
                wh.push(format!("type = {}", arg(&mut args, t.as_str())));
            }
            HistoryScope::Instance(t, id) => {
                wh.push(format!("type = {}", arg(&mut args, t.as_str())));
                wh.push(format!("id = {}", arg(&mut args, id.clone())));
            }
        }
        if let Some(since) = q.since {
            wh.push(format!(
                "last_updated >= {}",
                arg(&mut args, since.millis())
            ));
        }
        if let Some((sql, more)) =
            gp_store_sql::visible_history(Dialect::Postgres, &self.sees, args.len() + 1)
        {
            args.extend(values(&more));
            wh.push(sql);
        }
        let where_sql = wh.join(" AND ");
        let total: i64 = self
            .conn
            .query_one(
                &format!("SELECT count(*) FROM resource_version WHERE {where_sql}"),
                &refs(&args),
            )
            .and_then(|r| r.try_get(0))
            .map_err(db_err)?;
        let limit = arg(&mut args, q.count as i64);
        let offset = arg(&mut args, q.offset as i64);
        let sql = format!(
            "SELECT type, id, version, last_updated, deleted, body FROM resource_version
             WHERE {where_sql} ORDER BY seq DESC LIMIT {limit} OFFSET {offset}"
        );
        let rows = self.conn.query(&sql, &refs(&args)).map_err(db_err)?;
        let entries = rows
            .iter()
            .map(|r| self.full(r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HistoryPage {
            total: total as u64,
            entries,
            until,
        })
    }
}
