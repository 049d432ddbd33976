//! The writer's view of one practice inside its transaction: versions are
//! buffered and sent as multi-row inserts (one statement per table for a
//! whole transaction Bundle), stamped with the practice's own sequence and
//! clock.

use std::collections::HashSet;

use gp_fhir::search::SearchQuery;
use gp_fhir::search::index::IndexEntry;
use gp_fhir::{Instant, ResourceType};
use gp_store::{
    Held, HistoryPage, HistoryQuery, HistoryScope, IndexState, NewVersion, ReadTx, Reindexed,
    SearchPage, StoreError, StoredVersion, VersionRecord, WriteTx,
};

use crate::conn::{db_err, is_unique_violation};
use crate::index;
use crate::scoped::Scoped;

/// A practice's counter row as the writer holds it (locked) during a group.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Counter {
    /// The last sequence number given out: the practice's write order.
    pub seq: i64,
    /// The last instant stamped, so that the practice's time never runs back.
    pub stamped: i64,
    /// The head of the practice's audit chain (number and SHA-256), once
    /// read in this group: `None` until then.
    pub audit: Option<Option<(i64, [u8; 32])>>,
}

/// Buffered versions are sent once this many are waiting, to bound memory.
const FLUSH_AT: usize = 2000;

struct Pending {
    ty: &'static str,
    id: String,
    version: i64,
    seq: i64,
    last_updated: i64,
    deleted: bool,
    body: Vec<u8>,
    index: Vec<IndexEntry>,
    author: Option<String>,
    restricted: Option<String>,
}

pub(crate) struct ScopedWrite<'c> {
    pub read: Scoped<'c>,
    pub author: &'c str,
    pub counter: &'c mut Counter,
    /// Versions inserted but not sent yet. Every read flushes first, so the
    /// job always reads its own writes.
    pending: Vec<Pending>,
    /// Audit chain links not sent yet, flushed with the versions.
    links: Vec<gp_store::audit::AuditLink>,
}

const INSERT_VERSIONS: &str = "INSERT INTO resource_version
       (practice, type, id, version, seq, last_updated, deleted, author, body)
     SELECT $1, t.type, t.id, t.version, t.seq, t.last_updated, t.deleted, coalesce(t.author, $2), t.body
     FROM unnest($3::text[], $4::text[], $5::int8[], $6::int8[], $7::int8[], $8::bool[], $9::bytea[], $10::text[])
       AS t(type, id, version, seq, last_updated, deleted, body, author)";

const UPSERT_CURRENT: &str = "INSERT INTO resource_current
       (practice, type, id, version, seq, last_updated, deleted, restricted)
     SELECT $1, t.type, t.id, t.version, t.seq, t.last_updated, t.deleted, t.restricted
     FROM unnest($2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[], $7::bool[], $8::text[])
       AS t(type, id, version, seq, last_updated, deleted, restricted)
     ON CONFLICT (practice, type, id) DO UPDATE SET
       version = excluded.version, seq = excluded.seq,
       last_updated = excluded.last_updated, deleted = excluded.deleted,
       restricted = excluded.restricted
     RETURNING type, id, rid";

impl<'c> ScopedWrite<'c> {
    pub fn new(read: Scoped<'c>, author: &'c str, counter: &'c mut Counter) -> Self {
        ScopedWrite {
            read,
            author,
            counter,
            pending: Vec::new(),
            links: Vec::new(),
        }
    }

    /// Sends the buffered versions: one statement for the versions, one for
    /// the current rows.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if !self.links.is_empty() {
            let links = std::mem::take(&mut self.links);
            crate::audit::insert(self.read.conn, self.read.practice, &links)?;
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let col = |f: fn(&Pending) -> i64| pending.iter().map(f).collect::<Vec<i64>>();
        let types: Vec<&str> = pending.iter().map(|p| p.ty).collect();
        let ids: Vec<&str> = pending.iter().map(|p| p.id.as_str()).collect();
        let versions = col(|p| p.version);
        let seqs = col(|p| p.seq);
        let stamps = col(|p| p.last_updated);
        let deleted: Vec<bool> = pending.iter().map(|p| p.deleted).collect();
        let bodies: Vec<&[u8]> = pending.iter().map(|p| p.body.as_slice()).collect();
        let authors: Vec<Option<&str>> = pending.iter().map(|p| p.author.as_deref()).collect();
        let practice = self.read.practice;
        self.read
            .conn
            .execute(
                INSERT_VERSIONS,
                &[
                    &practice,
                    &self.author,
                    &types,
                    &ids,
                    &versions,
                    &seqs,
                    &stamps,
                    &deleted,
                    &bodies,
                    &authors,
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(
                        "a version of this resource was written concurrently".into(),
                    )
                } else {
                    db_err(e)
                }
            })?;
        // One upsert may not touch a row twice: keep each resource's last
        // version only.
        let mut seen = HashSet::new();
        let last: Vec<usize> = (0..pending.len())
            .rev()
            .filter(|&i| seen.insert((pending[i].ty, pending[i].id.as_str())))
            .collect();
        let pick = |v: &[i64]| last.iter().map(|&i| v[i]).collect::<Vec<i64>>();
        let c_types: Vec<&str> = last.iter().map(|&i| types[i]).collect();
        let c_ids: Vec<&str> = last.iter().map(|&i| ids[i]).collect();
        let c_deleted: Vec<bool> = last.iter().map(|&i| deleted[i]).collect();
        let c_restricted: Vec<Option<&str>> = last
            .iter()
            .map(|&i| pending[i].restricted.as_deref())
            .collect();
        // Each resource's `rid`: given from the sequence when it is first
        // stored, kept after.
        let rids: std::collections::HashMap<(String, String), i64> = self
            .read
            .conn
            .query(
                UPSERT_CURRENT,
                &[
                    &practice,
                    &c_types,
                    &c_ids,
                    &pick(&versions),
                    &pick(&seqs),
                    &pick(&stamps),
                    &c_deleted,
                    &c_restricted,
                ],
            )
            .map_err(db_err)?
            .iter()
            .map(|r| Ok(((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?)))
            .collect::<Result<_, postgres::Error>>()
            .map_err(db_err)?;
        let current: Vec<index::Current<'_>> = last
            .iter()
            .map(|&i| {
                let p = &pending[i];
                let rid = rids.get(&(p.ty.to_owned(), p.id.clone())).copied();
                Ok(index::Current {
                    ty: p.ty,
                    id: &p.id,
                    rid: rid.ok_or_else(|| {
                        StoreError::Backend(format!("{}/{} was stored without a rid", p.ty, p.id))
                    })?,
                    replaces: p.version > 1,
                    entries: &p.index,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        index::replace(self.read.conn, practice, &current)
    }
}

impl ReadTx for ScopedWrite<'_> {
    fn sees(&self) -> &gp_store::access::Sees {
        self.read.sees()
    }
    fn restricted_count(&mut self, patient: &str) -> Result<u64, StoreError> {
        self.flush()?;
        self.read.restricted_count(patient)
    }
    fn latest(&mut self, ty: ResourceType, id: &str) -> Result<Option<StoredVersion>, StoreError> {
        self.flush()?;
        self.read.latest(ty, id)
    }
    fn version(
        &mut self,
        ty: ResourceType,
        id: &str,
        version: u64,
    ) -> Result<Option<StoredVersion>, StoreError> {
        self.flush()?;
        self.read.version(ty, id, version)
    }
    fn held(&mut self, keys: &[(ResourceType, &str, u64)]) -> Result<Vec<Held>, StoreError> {
        self.flush()?;
        self.read.held(keys)
    }
    fn search(
        &mut self,
        ty: Option<ResourceType>,
        q: &SearchQuery,
    ) -> Result<SearchPage, StoreError> {
        self.flush()?;
        self.read.search(ty, q)
    }
    fn history(
        &mut self,
        scope: &HistoryScope,
        q: &HistoryQuery,
    ) -> Result<HistoryPage, StoreError> {
        self.flush()?;
        self.read.history(scope, q)
    }
    fn versions(
        &mut self,
        after: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<VersionRecord>, StoreError> {
        self.flush()?;
        self.read.versions(after, until, limit)
    }
    fn last_position(&mut self) -> Result<i64, StoreError> {
        self.flush()?;
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
        self.flush()?;
        self.read.current_after(after, limit)
    }
    fn index_state(&mut self) -> Result<IndexState, StoreError> {
        self.read.index_state()
    }
    fn audit_links(
        &mut self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<gp_store::audit::StoredLink>, StoreError> {
        self.flush()?;
        self.read.audit_links(after, limit)
    }
    fn references(
        &mut self,
        ty: ResourceType,
        ids: &[String],
        code: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.flush()?;
        self.read.references(ty, ids, code)
    }
    fn referrers(
        &mut self,
        source: ResourceType,
        code: &str,
        target_type: ResourceType,
        target_ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        self.flush()?;
        self.read.referrers(source, code, target_type, target_ids)
    }
}

impl WriteTx for ScopedWrite<'_> {
    fn audit_head(&mut self) -> Result<Option<(i64, String)>, StoreError> {
        let head = match self.counter.audit {
            Some(h) => h,
            None => {
                let stored = crate::audit::head(self.read.conn, self.read.practice)?;
                let h = match stored {
                    Some((seq, hex)) => Some((
                        seq,
                        unhex32(&hex).ok_or_else(|| {
                            StoreError::Backend(format!("audit link {seq} has a malformed hash"))
                        })?,
                    )),
                    None => None,
                };
                self.counter.audit = Some(h);
                h
            }
        };
        Ok(head.map(|(seq, hash)| (seq, hash.iter().map(|b| format!("{b:02x}")).collect())))
    }

    fn put_audit_link(&mut self, link: &gp_store::audit::AuditLink) -> Result<(), StoreError> {
        let hash = unhex32(&link.hash)
            .ok_or_else(|| StoreError::Backend("an audit link's hash is malformed".into()))?;
        self.counter.audit = Some(Some((link.seq, hash)));
        self.links.push(link.clone());
        Ok(())
    }

    fn reindex(&mut self, rows: &[Reindexed]) -> Result<usize, StoreError> {
        self.flush()?;
        let types: Vec<&str> = rows.iter().map(|r| r.resource_type.as_str()).collect();
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let versions: Vec<i64> = rows.iter().map(|r| r.version as i64).collect();
        // Those still current at the version their entries came from.
        let still: std::collections::HashMap<(String, String), i64> = self
            .read
            .conn
            .query(
                "SELECT c.type, c.id, c.rid FROM resource_current c
                 JOIN unnest($2::text[], $3::text[], $4::int8[]) AS r(type, id, version)
                   ON c.type = r.type AND c.id = r.id AND c.version = r.version
                 WHERE c.practice = $1 AND NOT c.deleted",
                &[&self.read.practice, &types, &ids, &versions],
            )
            .map_err(db_err)?
            .iter()
            .map(|r| Ok(((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?)))
            .collect::<Result<_, postgres::Error>>()
            .map_err(db_err)?;
        let current: Vec<index::Current<'_>> = rows
            .iter()
            .filter_map(|r| {
                let rid = still.get(&(r.resource_type.as_str().to_owned(), r.id.clone()))?;
                Some((r, *rid))
            })
            .map(|(r, rid)| index::Current {
                ty: r.resource_type.as_str(),
                id: &r.id,
                rid,
                replaces: true,
                entries: &r.index,
            })
            .collect();
        index::replace(self.read.conn, self.read.practice, &current)?;
        Ok(current.len())
    }

    fn set_index_state(&mut self, state: &IndexState) -> Result<(), StoreError> {
        let (rv, ty, id) = match &state.resume {
            Some((v, ty, id)) => (Some(*v as i32), Some(ty.as_str()), Some(id.as_str())),
            None => (None, None, None),
        };
        self.read
            .conn
            .execute(
                "INSERT INTO index_state (practice, version, resume_version, after_type, after_id)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (practice) DO UPDATE SET version = excluded.version,
                   resume_version = excluded.resume_version, after_type = excluded.after_type,
                   after_id = excluded.after_id",
                &[&self.read.practice, &(state.version as i32), &rv, &ty, &id],
            )
            .map(|_| ())
            .map_err(db_err)
    }

    fn set_frozen(&mut self, reason: Option<&str>) -> Result<(), StoreError> {
        // The writer holds the practice's counter row locked, so no write of
        // this practice runs beside the freeze.
        self.read
            .conn
            .execute(
                "UPDATE practice SET frozen = $2 WHERE key = $1",
                &[&self.read.practice, &reason],
            )
            .map(|_| ())
            .map_err(db_err)
    }

    fn now(&mut self) -> Instant {
        let now = Instant::now().millis().max(self.counter.stamped);
        self.counter.stamped = now;
        Instant::from_millis(now)
    }

    fn mark(&mut self) -> Instant {
        let at = self.now();
        self.counter.stamped = at.millis() + 1;
        at
    }

    fn insert(&mut self, v: &NewVersion) -> Result<(), StoreError> {
        let practice = self.read.practice;
        let body = self.read.bodies.encode(self.read.conn, practice, &v.body)?;
        self.counter.seq += 1;
        self.pending.push(Pending {
            ty: v.resource_type.as_str(),
            id: v.id.clone(),
            version: v.version as i64,
            seq: self.counter.seq,
            last_updated: v.last_updated.millis(),
            deleted: v.deleted,
            body,
            index: v.index.clone(),
            author: v.author.clone(),
            restricted: v.restricted.clone(),
        });
        if self.pending.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }
}

/// A hex SHA-256 as bytes.
fn unhex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
