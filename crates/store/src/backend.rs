//! The traits a storage backend implements. They are synchronous: a backend
//! runs them on its own threads (SQLite's single writer, a pool of readers)
//! and [`crate::Store`] bridges to async.

use bytes::Bytes;
use gp_fhir::search::SearchQuery;
use gp_fhir::{Instant, OdsCode, ResourceType};

use crate::access::{Grant, Holder, Sees};
use crate::accounts::{SessionRecord, UserRecord};
use crate::audit::{AuditLink, StoredLink};
use crate::smart::{AppRecord, TokenRecord};
use crate::{Actor, Ctx, Practice, StoreError};

/// One stored version of a resource.
#[derive(Clone, Debug)]
pub struct StoredVersion {
    pub resource_type: ResourceType,
    pub id: String,
    pub version: u64,
    pub last_updated: Instant,
    /// A deletion marker: no body.
    pub deleted: bool,
    /// The resource JSON exactly as stored (with its `meta`), served as is.
    pub body: Bytes,
}

/// A version to write. The engine has already set `meta` in `body`.
#[derive(Clone, Debug)]
pub struct NewVersion {
    pub resource_type: ResourceType,
    pub id: String,
    pub version: u64,
    pub last_updated: Instant,
    pub deleted: bool,
    pub body: Vec<u8>,
    /// The search index entries of this version (empty for a deletion);
    /// they replace the resource's previous entries.
    pub index: Vec<gp_fhir::search::index::IndexEntry>,
    /// Who wrote it, when that is not the acting user: a version carried
    /// over by a migration keeps its original author.
    pub author: Option<String>,
    /// [`crate::access::restriction`] of the version (a deletion keeps its
    /// predecessor's): stored on the current row, for searches to filter.
    pub restricted: Option<String>,
}

/// A version as a migration reads it: with its author and its position in
/// the practice's write order.
#[derive(Clone, Debug)]
pub struct VersionRecord {
    /// Increases with every version the practice writes; pass the last one
    /// seen to [`ReadTx::versions`] for the next page.
    pub position: i64,
    pub author: String,
    pub version: StoredVersion,
}

/// Where a practice's search index stands (reindex.rs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexState {
    /// The extraction version (`gp_search::EXTRACTION_VERSION`) every
    /// current resource's index rows were written with; 0 when unknown
    /// (rows written before versions were recorded).
    pub version: u32,
    /// A reindex under way: the version it writes, and the last resource
    /// (`type`, `id`, in that order) whose rows it has replaced.
    pub resume: Option<(u32, String, String)>,
}

/// A current version's index entries computed again, for
/// [`WriteTx::reindex`].
#[derive(Clone, Debug)]
pub struct Reindexed {
    pub resource_type: ResourceType,
    pub id: String,
    /// The version they were computed from: a resource written since keeps
    /// the rows its write gave it.
    pub version: u64,
    pub index: Vec<gp_fhir::search::index::IndexEntry>,
}

/// What a store holds of one of the versions asked for by [`ReadTx::held`].
#[derive(Clone, Debug)]
pub struct Held {
    /// The version's place among the keys asked for.
    pub key: usize,
    /// That version's stored bytes (empty for a deletion), if the store
    /// holds it.
    pub body: Option<Bytes>,
    /// The resource's current version number.
    pub latest: u64,
    /// The current version's restriction (as [`NewVersion::restricted`]).
    pub restricted: Option<String>,
}

/// A page of search results.
#[derive(Clone, Debug, Default)]
pub struct SearchPage {
    /// The number of matches, when the query asked for it.
    pub total: Option<u64>,
    pub entries: Vec<StoredVersion>,
}

/// Which versions a history covers (http.html#history).
#[derive(Clone, Debug)]
pub enum HistoryScope {
    Practice,
    Type(ResourceType),
    Instance(ResourceType, String),
}

/// History parameters.
#[derive(Clone, Debug)]
pub struct HistoryQuery {
    /// `_since`: versions written at or after this instant.
    pub since: Option<Instant>,
    pub count: usize,
    pub offset: usize,
    /// Versions written after this point are left out, so that pages stay
    /// stable while writes go on. `None` on the first page.
    pub until: Option<i64>,
}

/// A page of history, newest first.
#[derive(Clone, Debug, Default)]
pub struct HistoryPage {
    pub total: u64,
    pub entries: Vec<StoredVersion>,
    /// The high-water mark to pass as [`HistoryQuery::until`] for later pages.
    pub until: i64,
}

/// Reads within one practice, inside one consistent snapshot.
pub trait ReadTx: AccountsRead {
    /// Which restricted entries the transaction's context sees
    /// ([`Ctx::sees`], taken when the transaction began): `search` and
    /// `history` leave the others out inside their queries; the engine
    /// checks what `latest` and `version` return against it.
    fn sees(&self) -> &Sees;
    /// How many current entries are restricted in `patient`'s record
    /// (whatever the context sees): for telling a user that entries are
    /// withheld, never what they are.
    fn restricted_count(&mut self, patient: &str) -> Result<u64, StoreError>;
    /// The latest version (possibly a deletion) of a resource.
    fn latest(&mut self, ty: ResourceType, id: &str) -> Result<Option<StoredVersion>, StoreError>;
    /// A specific version.
    fn version(
        &mut self,
        ty: ResourceType,
        id: &str,
        version: u64,
    ) -> Result<Option<StoredVersion>, StoreError>;
    /// For a migration writing a batch of versions: what the store holds of
    /// each `(type, id, version)`, in one statement (one round trip
    /// however large the batch). Only keys whose resource the store holds
    /// at all are answered. Whole-practice work: nothing is filtered by
    /// [`ReadTx::sees`].
    fn held(&mut self, keys: &[(ResourceType, &str, u64)]) -> Result<Vec<Held>, StoreError>;
    /// Current, non-deleted resources matching a query (all types if `ty` is `None`).
    fn search(
        &mut self,
        ty: Option<ResourceType>,
        query: &SearchQuery,
    ) -> Result<SearchPage, StoreError>;
    fn history(
        &mut self,
        scope: &HistoryScope,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, StoreError>;
    /// The local targets (`(type, id)`) that reference parameter `code` of
    /// the given resources points at, for `_include`.
    fn references(
        &mut self,
        ty: ResourceType,
        ids: &[String],
        code: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let _ = (ty, ids, code);
        Err(StoreError::NotSupported(
            "_include is not supported by this store".into(),
        ))
    }
    /// Every version of every resource of the practice, deletions included,
    /// in the order they were written: those after `after` (0 for the
    /// first page) up to and including `until`, at most `limit`.
    fn versions(
        &mut self,
        after: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<VersionRecord>, StoreError> {
        let _ = (after, until, limit);
        Err(StoreError::NotSupported(
            "this store cannot list its versions".into(),
        ))
    }
    /// Why the practice is frozen read-only, if it is (a migration's
    /// cut-over); the engine refuses writes to a frozen practice.
    fn frozen(&mut self) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
    /// The practice's current versions (deletions left out) after `after`
    /// (`type`, `id`; empty strings for the first page) in that order, at
    /// most `limit`, whatever the context sees: for reindexing.
    fn current_after(
        &mut self,
        after: (&str, &str),
        limit: usize,
    ) -> Result<Vec<StoredVersion>, StoreError> {
        let _ = (after, limit);
        Err(StoreError::NotSupported("this store cannot reindex".into()))
    }
    /// Where the practice's search index stands.
    fn index_state(&mut self) -> Result<IndexState, StoreError> {
        Err(StoreError::NotSupported("this store cannot reindex".into()))
    }
    /// The position of the last version written, for [`ReadTx::versions`].
    fn last_position(&mut self) -> Result<i64, StoreError> {
        Err(StoreError::NotSupported(
            "this store cannot list its versions".into(),
        ))
    }
    /// The links of the practice's audit chain after `after` (0 for the
    /// first page), in order, at most `limit`, each with the stored bytes
    /// of its AuditEvent (version 1), for verification.
    fn audit_links(&mut self, after: i64, limit: usize) -> Result<Vec<StoredLink>, StoreError>;
    /// The ids of `source` resources whose parameter `code` references one
    /// of the targets, for `_revinclude`.
    fn referrers(
        &mut self,
        source: ResourceType,
        code: &str,
        target_type: ResourceType,
        target_ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let _ = (source, code, target_type, target_ids);
        Err(StoreError::NotSupported(
            "_revinclude is not supported by this store".into(),
        ))
    }
}

/// Staff accounts, sessions and the access policy of the practice
/// (accounts.rs), read inside the same snapshot as the record.
pub trait AccountsRead {
    fn user_named(&mut self, username: &str) -> Result<Option<UserRecord>, StoreError>;
    fn user_by_id(&mut self, id: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Every account, by user name.
    fn users(&mut self) -> Result<Vec<UserRecord>, StoreError>;
    fn session(&mut self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// The practice's own policy file, if it has stored one.
    fn policy(&mut self) -> Result<Option<String>, StoreError>;
    /// The break-glass grants of the holder's session unexpired at `now`.
    fn grants(&mut self, holder: &Holder, now: Instant) -> Result<Vec<Grant>, StoreError>;
    /// A registered SMART app by client id.
    fn app(&mut self, client_id: &str) -> Result<Option<AppRecord>, StoreError>;
    /// Every registered app, by name.
    fn apps(&mut self) -> Result<Vec<AppRecord>, StoreError>;
    /// A token issued to an app, by the hash of the token.
    fn token(&mut self, token_hash: &str) -> Result<Option<TokenRecord>, StoreError>;
}

/// Writes of accounts, sessions and policy, in the writer's transaction.
pub trait AccountsWrite {
    /// Creates or replaces the account with this id.
    fn put_user(&mut self, user: &UserRecord) -> Result<(), StoreError>;
    fn put_session(&mut self, session: &SessionRecord) -> Result<(), StoreError>;
    /// Revokes one session of the user (by token hash), or all of them.
    fn revoke_sessions(&mut self, user_id: &str, only: Option<&str>) -> Result<(), StoreError>;
    fn put_policy(&mut self, policy: &str) -> Result<(), StoreError>;
    /// Records a break-glass grant.
    fn put_grant(&mut self, grant: &Grant) -> Result<(), StoreError>;
    /// Creates or replaces the app with this client id.
    fn put_app(&mut self, app: &AppRecord) -> Result<(), StoreError>;
    fn put_token(&mut self, token: &TokenRecord) -> Result<(), StoreError>;
    /// Revokes every token of a grant.
    fn revoke_tokens(&mut self, grant_id: &str) -> Result<(), StoreError>;
    /// Revokes every app token the user approved (sign-out everywhere).
    fn revoke_user_tokens(&mut self, user_id: &str) -> Result<(), StoreError>;
    /// Revokes every token issued to the app (when it is disabled).
    fn revoke_app_tokens(&mut self, client_id: &str) -> Result<(), StoreError>;
}

/// The SMART authorization server's one-time values (authorization codes,
/// EHR launch contexts, the `jti`s of client assertions), kept until they
/// expire so that a restart neither loses nor forgets one. Keys are opaque
/// (hashes); `kind` is `code`, `launch` or `jti`.
pub trait OnceWrite {
    /// Stores `body` under the key until `expires`, unless a live value is
    /// there already: whether it was stored. Expired values of the practice
    /// are dropped first.
    fn put_once(
        &mut self,
        kind: &str,
        key: &str,
        body: &str,
        expires: Instant,
        now: Instant,
    ) -> Result<bool, StoreError>;
    /// The live value under the key; removed when `take`.
    fn once(
        &mut self,
        kind: &str,
        key: &str,
        now: Instant,
        take: bool,
    ) -> Result<Option<String>, StoreError>;
}

/// Writes within one practice, inside the writer's transaction.
pub trait WriteTx: ReadTx + AccountsWrite + OnceWrite {
    /// The instant to stamp on versions written now; never earlier than any
    /// instant this store has stamped before.
    fn now(&mut self) -> Instant;
    /// An instant the writer agrees on, for reading the practice as of it
    /// (a Bulk Data export's `transactionTime`): every version stamped at
    /// or before it was written before this call (so it is committed once
    /// this job is), and every version written after is stamped later.
    fn mark(&mut self) -> Instant;
    /// Appends a version and makes it the current one.
    fn insert(&mut self, version: &NewVersion) -> Result<(), StoreError>;
    /// The last link of the practice's audit chain: its number and hash.
    fn audit_head(&mut self) -> Result<Option<(i64, String)>, StoreError>;
    /// Appends a link to the practice's audit chain (append-only: there is
    /// no method that changes or removes one).
    fn put_audit_link(&mut self, link: &AuditLink) -> Result<(), StoreError>;
    /// Replaces the index rows (full-text words included) of each resource
    /// whose current version is still the one its entries were computed
    /// from; how many were replaced.
    fn reindex(&mut self, rows: &[Reindexed]) -> Result<usize, StoreError> {
        let _ = rows;
        Err(StoreError::NotSupported("this store cannot reindex".into()))
    }
    /// Records where the practice's search index stands.
    fn set_index_state(&mut self, state: &IndexState) -> Result<(), StoreError> {
        let _ = state;
        Err(StoreError::NotSupported("this store cannot reindex".into()))
    }
    /// Freezes the practice read-only with a reason, or thaws it (`None`).
    fn set_frozen(&mut self, reason: Option<&str>) -> Result<(), StoreError> {
        let _ = reason;
        Err(StoreError::NotSupported(
            "this store cannot freeze a practice".into(),
        ))
    }
}

/// Work for the writer: `run` inside the transaction, returning whether to
/// keep its changes (`false` rolls back just this job, which keeps its own
/// error to report); then `finish`, once the transaction has committed
/// durably, or with the error that stopped the commit.
pub trait WriteJob: Send {
    fn run(&mut self, tx: &mut dyn WriteTx) -> bool;
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
    /// Whether nobody waits for this job's commit (the audit events of
    /// reads): a group made only of such jobs may wait [`DEFER`] for
    /// company ([`gather`]).
    fn deferrable(&self) -> bool {
        false
    }
}

/// The longest a group of deferrable jobs waits for others to join it.
pub const DEFER: std::time::Duration = std::time::Duration::from_millis(20);

/// A writer's next group: `first`, then whatever is queued behind it, up to
/// `max` messages. When everything gathered is deferrable, the writer
/// waits up to [`DEFER`] for more, so that a trickle of reads (each queuing
/// its audit event) commits in one transaction, not one each: a commit
/// costs an fsync and a WAL frame for every page it touched. The first job
/// that someone waits for ends the wait at once.
pub fn gather<M>(
    first: M,
    rx: &std::sync::mpsc::Receiver<M>,
    max: usize,
    deferrable: impl Fn(&M) -> bool,
) -> Vec<M> {
    let mut patient = deferrable(&first);
    let mut group = vec![first];
    let deadline = std::time::Instant::now() + DEFER;
    while group.len() < max {
        let next = match rx.try_recv() {
            Ok(m) => Some(m),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => None,
            Err(std::sync::mpsc::TryRecvError::Empty) if patient => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                rx.recv_timeout(left).ok()
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => None,
        };
        let Some(m) = next else { break };
        patient &= deferrable(&m);
        group.push(m);
    }
    group
}

/// A storage backend.
pub trait Backend: crate::TerminologyStore + Send + Sync + 'static {
    /// The practice with this ODS code, if the deployment serves it.
    fn practice(&self, ods: &OdsCode, actor: &Actor) -> Result<Option<Practice>, StoreError>;
    /// Creates the practice if it does not exist yet.
    fn ensure_practice(
        &self,
        ods: &OdsCode,
        name: &str,
        actor: &Actor,
    ) -> Result<Practice, StoreError>;
    /// Every practice the deployment serves.
    fn practices(&self, actor: &Actor) -> Result<Vec<Practice>, StoreError>;
    /// The bytes the whole store takes on disk (every practice, indexes,
    /// the audit trail), for benchmarks and operators.
    fn disk_bytes(&self) -> Result<u64, StoreError>;
    /// Runs `job` against a consistent snapshot of the practice's data.
    /// Blocks: call it off the async executor.
    fn read(
        &self,
        ctx: &Ctx,
        job: &mut dyn FnMut(&mut dyn ReadTx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// Queues `job` for the writer. Never blocks; the job's `finish` reports.
    fn submit(&self, ctx: &Ctx, job: Box<dyn WriteJob>);
    /// Finishes queued writes and closes cleanly (checkpointing, for SQLite).
    fn close(&self);
}

#[cfg(test)]
mod tests {
    use super::{DEFER, gather};

    /// `true` stands for a deferrable job, `false` for one someone waits for.
    #[test]
    fn a_group_of_deferrable_jobs_waits_for_company_and_others_do_not() {
        let (tx, rx) = std::sync::mpsc::channel();
        // Alone and deferrable: the writer waits the whole time for more.
        let started = std::time::Instant::now();
        assert_eq!(gather(true, &rx, 10, |m| *m), vec![true]);
        assert!(started.elapsed() >= DEFER);
        // Everything queued is gathered, up to the limit, in order.
        for m in [true, false, true, true] {
            tx.send(m).unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(gather(true, &rx, 4, |m| *m), vec![true, true, false, true]);
        assert_eq!(gather(false, &rx, 4, |m| *m), vec![false, true]);
        // Not deferrable and nothing queued: it goes alone.
        drop(tx);
        assert_eq!(gather(false, &rx, 4, |m| *m), vec![false]);
    }
}
