//! The FHIR interactions (http.html), written once over the backend traits.
//!
//! Each write interaction is a synchronous function over a [`WriteTx`], so
//! that a single request and a transaction Bundle run exactly the same code;
//! [`Store`] wraps them as writer jobs and awaits their durable commit.

use std::sync::Arc;

use bytes::Bytes;
use gp_fhir::bundle::Method;
use gp_fhir::search::{self, SearchQuery, Total};
use gp_fhir::{Id, IssueType, OdsCode, Resource, ResourceType};
use tokio::sync::oneshot;

use crate::access::{Sees, read_activity, restriction, write_activity};
use crate::audit::Event;
use crate::backend::{
    Backend, HistoryPage, HistoryQuery, HistoryScope, NewVersion, ReadTx, SearchPage,
    StoredVersion, WriteJob, WriteTx,
};
use crate::bundle::{self, EntryResult};
use crate::smart::{Op, Reach, confine};
use crate::trail::audit_deletion;
use crate::{Actor, Ctx, Practice, StoreError};

/// Conditions on a write (http.html#concurrency, http.html#ccreate).
#[derive(Clone, Debug, Default)]
pub struct Preconditions {
    /// `If-Match`: the version the client last saw.
    pub if_match: Option<u64>,
}

/// The result of a create or update.
#[derive(Clone, Debug)]
pub struct WriteOutcome {
    /// True when a new resource came into being (201), false when an
    /// existing one was updated or a conditional create matched (200).
    pub created: bool,
    /// False when a conditional create matched and nothing was written.
    pub written: bool,
    pub version: StoredVersion,
}

/// Who wrote one version of a resource, as the audit trail recorded it.
#[derive(Clone, Debug)]
pub struct Authorship {
    pub version: u64,
    /// The user's name (or the component that wrote it).
    pub who: String,
    /// Their role profile (R-code), for a signed-in user.
    pub role: Option<String>,
    /// When, as the trail recorded it.
    pub recorded: String,
}

/// A page of matches and the resources `_include`/`_revinclude` brought.
#[derive(Clone, Debug, Default)]
pub struct SearchResult {
    pub page: SearchPage,
    pub included: Vec<StoredVersion>,
}

/// The most resources `_include` and `_revinclude` add to one page.
const MAX_INCLUDED: usize = 1000;
/// How many times `:iterate` is applied.
const MAX_ITERATIONS: usize = 4;

/// Confines a chain or `_has` of a search to what the context may search
/// of the type it reaches: the role must allow reading that type and an
/// app's scopes searching it (403 otherwise, as a search of the type
/// itself); under `patient/` scopes the resources reached must be in the
/// patient's compartment, and under a v2 query-restricted scope
/// (`patient/Observation.rs?category=...|laboratory`) match its criteria.
/// SMART App Launch 2 ("Finer-grained resource constraints using search
/// parameters") grants such a scope "read and search access to laboratory
/// observations but not other observations": a chain or `_has` through
/// Observations is a search of Observations, so it sees only the
/// laboratory ones, exactly as `Observation?...` would.
fn nested_within(ctx: &Ctx, c: &mut search::Criterion) -> Result<(), StoreError> {
    use search::Criterion;
    let (types, inner) = match c {
        Criterion::Chain { targets, inner, .. } => (targets.clone(), inner),
        Criterion::Has { source, inner, .. } => (vec![*source], inner),
        Criterion::All(all) => {
            return all.iter_mut().try_for_each(|c| nested_within(ctx, c));
        }
        _ => return Ok(()),
    };
    nested_within(ctx, inner)?;
    let mut extra = Vec::new();
    for t in &types {
        ctx.require(read_activity(Some(*t)))?;
        let reach = ctx.reach(Some(*t), Op::Search)?;
        extra.extend(crate::smart::within(&reach, Some(*t))?);
        if let Some(q) = ctx.scope_query(Some(*t), Op::Search)? {
            let parsed = search::parse(Some(*t), &q, true).map_err(StoreError::BadRequest)?;
            extra.extend(parsed.criteria);
        }
    }
    if extra.is_empty() {
        return Ok(());
    }
    if types.len() != 1 {
        return Err(StoreError::Forbidden(
            "a chain to several resource types cannot be narrowed to the app's scopes; name the type ([reference]:[Type].[param])".into(),
        ));
    }
    let own = std::mem::replace(inner.as_mut(), Criterion::All(Vec::new()));
    extra.insert(0, own);
    **inner = Criterion::All(extra);
    Ok(())
}

/// A search with its includes (search.html#include), in one snapshot.
/// Refuses a resource outside an app's v2 query-restricted scope: the
/// scope's search, with the resource's `_id`, must find it.
fn within_scope_query(
    tx: &mut dyn ReadTx,
    ty: ResourceType,
    id: &str,
    q: &[(String, String)],
) -> Result<(), StoreError> {
    let mut pairs = q.to_vec();
    pairs.push(("_id".to_owned(), id.to_owned()));
    let query = search::parse(Some(ty), &pairs, true).map_err(StoreError::BadRequest)?;
    if search_in(tx, Some(ty), &query)?.page.entries.is_empty() {
        return Err(crate::smart::narrowed_out("this resource"));
    }
    Ok(())
}

pub(crate) fn search_in(
    tx: &mut dyn ReadTx,
    ty: Option<ResourceType>,
    q: &SearchQuery,
) -> Result<SearchResult, StoreError> {
    let page = tx.search(ty, q)?;
    let mut seen: std::collections::HashSet<(ResourceType, String)> = page
        .entries
        .iter()
        .map(|v| (v.resource_type, v.id.clone()))
        .collect();
    let mut included: Vec<StoredVersion> = Vec::new();
    let mut frontier: Vec<(ResourceType, String)> = seen.iter().cloned().collect();
    for round in 0..MAX_ITERATIONS {
        let mut found: Vec<(ResourceType, String)> = Vec::new();
        for inc in q.include.iter().filter(|i| round == 0 || i.iterate) {
            let ids: Vec<String> = frontier
                .iter()
                .filter(|(t, _)| *t == inc.source)
                .map(|(_, id)| id.clone())
                .collect();
            if ids.is_empty() {
                continue;
            }
            for (t, id) in tx.references(inc.source, &ids, inc.code)? {
                let Some(t) = ResourceType::parse(&t) else {
                    continue;
                };
                if inc.target.is_none_or(|want| want == t) {
                    found.push((t, id));
                }
            }
        }
        for inc in q.revinclude.iter().filter(|i| round == 0 || i.iterate) {
            let mut by_type: std::collections::BTreeMap<ResourceType, Vec<String>> =
                Default::default();
            for (t, id) in &frontier {
                by_type.entry(*t).or_default().push(id.clone());
            }
            for (t, ids) in by_type {
                for id in tx.referrers(inc.source, inc.code, t, &ids)? {
                    found.push((inc.source, id));
                }
            }
        }
        let mut next = Vec::new();
        for key in found {
            if included.len() >= MAX_INCLUDED || !seen.insert(key.clone()) {
                continue;
            }
            if let Some(v) = tx.latest(key.0, &key.1)?
                && !v.deleted
                && shown(tx, &v)?
            {
                included.push(v);
                next.push(key);
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    Ok(SearchResult { page, included })
}

/// The result of a delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// A deletion was recorded as this version.
    Deleted { version: u64 },
    /// There was nothing (or nothing current) to delete.
    NothingToDelete,
}

/// The storage façade the API calls.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    /// The SNOMED CT release searches expand `:below`, `:above`, `:in` and
    /// `:not-in` against (`codes.rs`); set once the index is built.
    snomed: Arc<std::sync::RwLock<Option<Arc<gp_terminology::Index>>>>,
    /// Audit events waiting for the writer (`trail.rs`).
    pub(crate) queued: Arc<crate::trail::Queued>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Store {
            backend,
            snomed: Arc::default(),
            queued: Arc::default(),
        }
    }

    /// The SNOMED CT index that search modifiers expand against.
    pub fn set_snomed_index(&self, index: Arc<gp_terminology::Index>) {
        if let Ok(mut g) = self.snomed.write() {
            *g = Some(index);
        }
    }

    fn search_index(&self) -> Option<Arc<gp_terminology::Index>> {
        self.snomed.read().ok().and_then(|g| g.clone())
    }

    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Finishes queued writes and closes the backend.
    pub fn close(&self) {
        self.backend.close();
    }

    pub async fn practice(
        &self,
        ods: &OdsCode,
        actor: &Actor,
    ) -> Result<Option<Practice>, StoreError> {
        let (backend, ods, actor) = (self.backend.clone(), ods.clone(), actor.clone());
        blocking(move || backend.practice(&ods, &actor)).await
    }

    pub async fn ensure_practice(
        &self,
        ods: &OdsCode,
        name: &str,
        actor: &Actor,
    ) -> Result<Practice, StoreError> {
        let (backend, ods, name, actor) = (
            self.backend.clone(),
            ods.clone(),
            name.to_owned(),
            actor.clone(),
        );
        blocking(move || backend.ensure_practice(&ods, &name, &actor)).await
    }

    /// The bytes the whole store takes on disk ([`Backend::disk_bytes`]).
    pub async fn disk_bytes(&self) -> Result<u64, StoreError> {
        let backend = self.backend.clone();
        blocking(move || backend.disk_bytes()).await
    }

    pub async fn practices(&self, actor: &Actor) -> Result<Vec<Practice>, StoreError> {
        let (backend, actor) = (self.backend.clone(), actor.clone());
        blocking(move || backend.practices(&actor)).await
    }

    /// Runs a read-only closure against a consistent snapshot: whole-practice
    /// work (migration) for an operator's context only, since it bypasses
    /// the per-interaction checks.
    pub async fn read_with<R, F>(&self, ctx: &Ctx, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn ReadTx) -> Result<R, StoreError> + Send + 'static,
    {
        operator_only(ctx)?;
        self.read_in(ctx, f).await
    }

    /// Runs a closure in the writer's transaction and waits for its durable
    /// commit; an operator's context only, as [`Store::read_with`].
    pub async fn write_with<R, F>(&self, ctx: &Ctx, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn WriteTx) -> Result<R, StoreError> + Send + 'static,
    {
        operator_only(ctx)?;
        self.write_in(ctx, f).await
    }

    /// [`Store::read_with`] after the caller has checked the access.
    pub(crate) async fn read_in<R, F>(&self, ctx: &Ctx, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn ReadTx) -> Result<R, StoreError> + Send + 'static,
    {
        let (backend, ctx) = (self.backend.clone(), ctx.clone());
        blocking(move || {
            let mut f = Some(f);
            let mut out = None;
            backend.read(&ctx, &mut |tx| {
                if let Some(f) = f.take() {
                    out = Some(f(tx));
                }
                Ok(())
            })?;
            out.unwrap_or(Err(StoreError::Unavailable))
        })
        .await
    }

    /// Runs a closure in the writer's transaction and waits for its durable
    /// commit. An error rolls back everything the closure did.
    pub(crate) async fn write_in<R, F>(&self, ctx: &Ctx, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn WriteTx) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit(ctx, f)
            .await
            .unwrap_or(Err(StoreError::Unavailable))
    }

    /// Queues a write without waiting, so that several can share a commit.
    /// A frozen practice refuses it, checked inside the write's own
    /// transaction so that no write slips past a freeze.
    fn submit<R, F>(&self, ctx: &Ctx, f: F) -> oneshot::Receiver<Result<R, StoreError>>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn WriteTx) -> Result<R, StoreError> + Send + 'static,
    {
        let ods = ctx.practice.ods.clone();
        self.submit_unchecked(ctx, move |tx| {
            if let Some(why) = tx.frozen()? {
                return Err(StoreError::Frozen(format!(
                    "practice {ods} is read-only ({why}); nothing was written"
                )));
            }
            f(tx)
        })
    }

    /// Freezes the practice read-only (a migration's cut-over: writes are
    /// refused with `reason`, reads go on), or thaws it with `None`.
    pub async fn set_frozen(&self, ctx: &Ctx, reason: Option<String>) -> Result<(), StoreError> {
        operator_only(ctx)?;
        self.submit_unchecked(ctx, move |tx| tx.set_frozen(reason.as_deref()))
            .await
            .unwrap_or(Err(StoreError::Unavailable))
    }

    /// An instant the practice's writer agrees on ([`WriteTx::mark`]):
    /// every version stamped at or before it is committed and visible to
    /// reads once this returns, and every later write is stamped after it.
    /// A frozen practice gives one too (its final export).
    pub async fn mark(&self, ctx: &Ctx) -> Result<gp_fhir::Instant, StoreError> {
        self.submit_unchecked(ctx, |tx| Ok(tx.mark()))
            .await
            .unwrap_or(Err(StoreError::Unavailable))
    }

    /// Whether the practice is frozen, and why.
    pub async fn frozen(&self, ctx: &Ctx) -> Result<Option<String>, StoreError> {
        self.read_with(ctx, |tx| tx.frozen()).await
    }

    pub(crate) fn submit_unchecked<R, F>(
        &self,
        ctx: &Ctx,
        f: F,
    ) -> oneshot::Receiver<Result<R, StoreError>>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn WriteTx) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        self.backend.submit(
            ctx,
            Box::new(Job {
                f: Some(f),
                result: None,
                reply,
            }),
        );
        rx
    }

    pub async fn read(
        &self,
        ctx: &Ctx,
        ty: ResourceType,
        id: Id,
    ) -> Result<StoredVersion, StoreError> {
        let event = Event::rest("read").target(ty, id.as_str());
        let reach = self.allow_op(ctx, Some(ty), Op::Read, &event)?;
        let narrowed = ctx
            .scope_query(Some(ty), Op::Read)
            .inspect_err(|e| self.audit(ctx, event.clone().failed(e)))?;
        self.audit_barrier_for(ctx, Some(ty)).await?;
        let out = self
            .read_in(ctx, move |tx| {
                let v = read_in(tx, ty, &id)?;
                if let Some(q) = &narrowed {
                    within_scope_query(tx, ty, &v.id, q)?;
                }
                Ok(v)
            })
            .await
            .and_then(|v| confine(&reach, ty, &v.id, &v.body).map(|()| v));
        let mut event = event.with_result(&out, Event::resource);
        event.mark_override(ctx, out.iter());
        self.audit(ctx, event);
        out
    }

    pub async fn vread(
        &self,
        ctx: &Ctx,
        ty: ResourceType,
        id: Id,
        version: u64,
    ) -> Result<StoredVersion, StoreError> {
        let event = Event::rest("vread").target(ty, id.as_str());
        let reach = self.allow_op(ctx, Some(ty), Op::Read, &event)?;
        self.unnarrowed(ctx, Some(ty), Op::Read, "reading a version", &event)?;
        self.audit_barrier_for(ctx, Some(ty)).await?;
        let out = self
            .read_in(ctx, move |tx| vread_in(tx, ty, &id, version))
            .await
            .and_then(|v| confine(&reach, ty, &v.id, &v.body).map(|()| v));
        let mut event = event.with_result(&out, Event::resource);
        event.mark_override(ctx, out.iter());
        self.audit(ctx, event);
        out
    }

    pub async fn search(
        &self,
        ctx: &Ctx,
        ty: Option<ResourceType>,
        mut query: SearchQuery,
    ) -> Result<SearchResult, StoreError> {
        let code = if ty.is_some() {
            "search-type"
        } else {
            "search-system"
        };
        let event = Event::rest(code).query(crate::render::query_string(&query.used));
        let reach = self.allow_op(ctx, ty, Op::Search, &event)?;
        // The patient's compartment as one more criterion, inside the
        // query, so that totals and pages count only what is theirs.
        if let Some(criterion) = crate::smart::within(&reach, ty)
            .inspect_err(|e| self.audit(ctx, event.clone().failed(e)))?
        {
            query.criteria.push(criterion);
        }
        // A v2 query-restricted scope's parameters, inside the query too.
        let narrowed = ctx
            .scope_query(ty, Op::Search)
            .and_then(|q| {
                q.map(|q| search::parse(ty, &q, true).map_err(StoreError::BadRequest))
                    .transpose()
            })
            .inspect_err(|e| self.audit(ctx, event.clone().failed(e)))?;
        if let Some(n) = narrowed {
            query.criteria.extend(n.criteria);
        }
        // Chains and `_has` search other types: each reaches only what a
        // search of that type itself would.
        for c in &mut query.criteria {
            nested_within(ctx, c).inspect_err(|e| self.audit(ctx, event.clone().failed(e)))?;
        }
        if let Some(code) = crate::audit::unindexed_param(ty, &query) {
            let e = StoreError::bad_request(
                gp_fhir::IssueType::NotSupported,
                format!(
                    "AuditEvent's search parameter '{code}' is not supported: AuditEvents are indexed by {} only",
                    crate::audit::INDEXED_PARAMS.join(", ")
                ),
            );
            self.audit(ctx, event.clone().failed(&e));
            return Err(e);
        }
        let index = self.search_index();
        crate::codes::expand(
            index.as_deref(),
            &mut query.criteria,
            crate::codes::MAX_CODES,
        )
        .inspect_err(|e| self.audit(ctx, event.clone().failed(e)))?;
        self.audit_barrier_for(ctx, ty).await?;
        let reader = ctx.clone();
        let out = self
            .read_in(ctx, move |tx| {
                let mut found = search_in(tx, ty, &query)?;
                // What `_include` brings is shown only where the context
                // may read it: the role, the patient in context, and an
                // app's query-restricted scope (the scope's search, with
                // the resource's `_id`, must find it).
                let mut shown = Vec::with_capacity(found.included.len());
                for v in std::mem::take(&mut found.included) {
                    let t = v.resource_type;
                    let readable = reader.allows(read_activity(Some(t)))
                        && reader
                            .reach(Some(t), Op::Read)
                            .is_ok_and(|r| confine(&r, t, &v.id, &v.body).is_ok());
                    let in_scope = match reader.scope_query(Some(t), Op::Read) {
                        Ok(None) => true,
                        Ok(Some(q)) => readable && within_scope_query(tx, t, &v.id, &q).is_ok(),
                        Err(_) => false,
                    };
                    if readable && in_scope {
                        shown.push(v);
                    }
                }
                found.included = shown;
                Ok(found)
            })
            .await;
        self.audit(
            ctx,
            event.with_result(&out, |ev, found| {
                let served = || found.page.entries.iter().chain(&found.included);
                served().for_each(|v| ev.resource(v));
                ev.mark_override(ctx, served());
            }),
        );
        out
    }

    /// Who wrote each version of a resource, newest first, from the audit
    /// trail's write events: for anyone who may read the resource itself
    /// (the rest of the trail stays behind the view-audit activity).
    pub async fn authors(
        &self,
        ctx: &Ctx,
        ty: ResourceType,
        id: &str,
    ) -> Result<Vec<Authorship>, StoreError> {
        ctx.require(read_activity(Some(ty)))?;
        if ctx.reach(Some(ty), Op::Read)? != Reach::Any
            || ctx.scope_query(Some(ty), Op::Read)?.is_some()
        {
            return Err(crate::smart::not_in_patient_context(
                "the authors of an entry",
            ));
        }
        let Some(audit_type) = ResourceType::parse("AuditEvent") else {
            return Ok(Vec::new());
        };
        let params = vec![
            ("entity".to_owned(), format!("{ty}/{id}")),
            // Writes and transactions only: an often-read entry has far more
            // read events, which would crowd the writes out of the page.
            ("action".to_owned(), "C,U,D,E".to_owned()),
            ("_count".to_owned(), "200".to_owned()),
        ];
        let query =
            search::parse(Some(audit_type), &params, true).map_err(StoreError::BadRequest)?;
        let system = Ctx::new(ctx.practice.clone(), Actor::system());
        let found = self.search(&system, Some(audit_type), query).await?;
        let prefix = format!("{ty}/{id}/_history/");
        let mut out = Vec::new();
        for v in &found.page.entries {
            let Ok(ev) = serde_json::from_slice::<serde_json::Value>(&v.body) else {
                continue;
            };
            if ev["outcome"].as_str() != Some("0") {
                continue;
            }
            // A write (create, update, delete), or a transaction whose
            // entries say how each touched its resource: created (1),
            // amended (3) or deleted (14).
            let action = ev["action"].as_str().unwrap_or_default();
            let wrote = |e: &serde_json::Value| match action {
                "C" | "U" | "D" => true,
                "E" => matches!(e["lifecycle"]["code"].as_str(), Some("1" | "3" | "14")),
                _ => false,
            };
            let agent = &ev["agent"][0];
            let who = agent["name"]
                .as_str()
                .or_else(|| agent["who"]["display"].as_str())
                .unwrap_or("the system")
                .to_owned();
            let role = agent["role"][0]["coding"][0]["code"]
                .as_str()
                .map(str::to_owned);
            let recorded = ev["recorded"].as_str().unwrap_or_default().to_owned();
            for e in ev["entity"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| wrote(e))
            {
                let Some(version) = e["what"]["reference"]
                    .as_str()
                    .and_then(|r| r.strip_prefix(&prefix))
                    .and_then(|n| n.parse().ok())
                else {
                    continue;
                };
                out.push(Authorship {
                    version,
                    who: who.clone(),
                    role: role.clone(),
                    recorded: recorded.clone(),
                });
            }
        }
        out.sort_by_key(|a| std::cmp::Reverse(a.version));
        Ok(out)
    }

    pub async fn history(
        &self,
        ctx: &Ctx,
        scope: HistoryScope,
        query: HistoryQuery,
    ) -> Result<HistoryPage, StoreError> {
        let (ty, event) = match &scope {
            HistoryScope::Practice => (None, Event::rest("history-system")),
            HistoryScope::Type(t) => (Some(*t), Event::rest("history-type")),
            HistoryScope::Instance(t, id) => {
                (Some(*t), Event::rest("history-instance").target(*t, id))
            }
        };
        let op = match scope {
            HistoryScope::Instance(..) => Op::Read,
            _ => Op::Search,
        };
        let reach = self.allow_op(ctx, ty, op, &event)?;
        self.unnarrowed(ctx, ty, op, "history", &event)?;
        if reach != Reach::Any && op == Op::Search {
            let e = crate::smart::not_in_patient_context("history across resources");
            self.audit(ctx, event.failed(&e));
            return Err(e);
        }
        self.audit_barrier_for(ctx, ty).await?;
        let out = self
            .read_in(ctx, move |tx| history_in(tx, &scope, &query))
            .await
            .and_then(|page| {
                // One resource's history: refused, like a read, when any of
                // its versions is outside the patient's compartment.
                for v in page.entries.iter().filter(|v| !v.body.is_empty()) {
                    confine(&reach, v.resource_type, &v.id, &v.body)?;
                }
                Ok(page)
            });
        self.audit(
            ctx,
            event.with_result(&out, |ev, page| {
                page.entries.iter().for_each(|v| ev.resource(v));
                ev.mark_override(ctx, page.entries.iter());
            }),
        );
        out
    }

    pub async fn create(
        &self,
        ctx: &Ctx,
        resource: Resource,
        if_none_exist: Option<String>,
    ) -> Result<WriteOutcome, StoreError> {
        let event = Event::rest("create");
        let ty = resource.resource_type();
        let reach = self.allow_op(ctx, Some(ty), Op::Create, &event)?;
        self.confine_write(ctx, &reach, ty, None, Some(&resource), &event)
            .await?;
        let resource = prepare(resource).await?;
        let codes = self.search_index();
        self.write_audited(ctx, event, move |tx, ev| {
            let w = create_in(
                tx,
                resource,
                if_none_exist.as_deref(),
                None,
                codes.as_deref(),
                &reach,
            )?;
            // A conditional create may answer with a match already stored.
            crate::smart::confine_in(tx, &reach, &w.version, false)?;
            ev.resource(&w.version);
            Ok(w)
        })
        .await
    }

    pub async fn update(
        &self,
        ctx: &Ctx,
        ty: ResourceType,
        id: Id,
        resource: Resource,
        pre: Preconditions,
    ) -> Result<WriteOutcome, StoreError> {
        let event = Event::rest("update").target(ty, id.as_str());
        let reach = self.allow_op(ctx, Some(ty), Op::Update, &event)?;
        self.confine_write(ctx, &reach, ty, Some(&id), Some(&resource), &event)
            .await?;
        let resource = prepare(resource).await?;
        self.write_audited(ctx, event, move |tx, ev| {
            let w = update_in(tx, ty, &id, resource, &pre)?;
            ev.resource(&w.version);
            Ok(w)
        })
        .await
    }

    pub async fn conditional_update(
        &self,
        ctx: &Ctx,
        ty: ResourceType,
        query: Vec<(String, String)>,
        resource: Resource,
        pre: Preconditions,
    ) -> Result<WriteOutcome, StoreError> {
        let event = Event::rest("update").query(crate::render::query_string(&query));
        let reach = self.allow_op(ctx, Some(ty), Op::Update, &event)?;
        self.allow(ctx, read_activity(Some(ty)), &event)?;
        let resource = prepare(resource).await?;
        let codes = self.search_index();
        self.write_audited(ctx, event, move |tx, ev| {
            let w = conditional_update_in(
                tx,
                ty,
                &query,
                resource,
                &pre,
                None,
                codes.as_deref(),
                &reach,
            )?;
            crate::smart::confine_in(tx, &reach, &w.version, true)?;
            ev.resource(&w.version);
            Ok(w)
        })
        .await
    }

    pub async fn patch(
        &self,
        ctx: &Ctx,
        ty: ResourceType,
        id: Id,
        patch: json_patch::Patch,
        pre: Preconditions,
    ) -> Result<WriteOutcome, StoreError> {
        let event = Event::rest("patch").target(ty, id.as_str());
        let reach = self.allow_op(ctx, Some(ty), Op::Update, &event)?;
        self.allow(ctx, read_activity(Some(ty)), &event)?;
        self.write_audited(ctx, event, move |tx, ev| {
            let w = patch_in(tx, ty, &id, &patch, &pre)?;
            crate::smart::confine_in(tx, &reach, &w.version, true)?;
            ev.resource(&w.version);
            Ok(w)
        })
        .await
    }

    pub async fn delete(
        &self,
        ctx: &Ctx,
        ty: ResourceType,
        id: Id,
    ) -> Result<DeleteOutcome, StoreError> {
        let event = Event::rest("delete").target(ty, id.as_str());
        let reach = self.allow_op(ctx, Some(ty), Op::Delete, &event)?;
        self.confine_write(ctx, &reach, ty, Some(&id), None, &event)
            .await?;
        self.write_audited(ctx, event, move |tx, ev| {
            let before = tx.latest(ty, id.as_str())?;
            let d = delete_in(tx, ty, &id)?;
            audit_deletion(ev, &d, before);
            Ok(d)
        })
        .await
    }

    pub async fn conditional_delete(
        &self,
        ctx: &Ctx,
        ty: ResourceType,
        query: Vec<(String, String)>,
    ) -> Result<DeleteOutcome, StoreError> {
        let event = Event::rest("delete").query(crate::render::query_string(&query));
        let reach = self.allow_op(ctx, Some(ty), Op::Delete, &event)?;
        self.allow(ctx, read_activity(Some(ty)), &event)?;
        let codes = self.search_index();
        self.write_audited(ctx, event, move |tx, ev| {
            let found = matches(tx, ty, &query, codes.as_deref(), &reach)?;
            let d = conditional_delete_in(tx, ty, &query, codes.as_deref(), &reach)?;
            audit_deletion(ev, &d, found.into_iter().next());
            Ok(d)
        })
        .await
    }

    /// Processes a batch or transaction Bundle (http.html#transaction).
    /// For a transaction the result is all or nothing; for a batch each
    /// entry succeeds or fails alone.
    pub async fn bundle(
        &self,
        ctx: &Ctx,
        bundle: &serde_json::Value,
        base: &str,
    ) -> Result<(gp_fhir::bundle::BundleKind, Vec<EntryResult>), StoreError> {
        let (kind, entries) =
            gp_fhir::bundle::parse_request(bundle).map_err(StoreError::BadRequest)?;
        let code = match kind {
            gp_fhir::bundle::BundleKind::Transaction => "transaction",
            gp_fhir::bundle::BundleKind::Batch => "batch",
        };
        // Every entry is checked before any runs: a Bundle with one entry
        // the role does not allow is refused whole.
        let mut reaches = std::collections::HashMap::with_capacity(entries.len());
        for e in &entries {
            let reach = bundle::require_entry(ctx, e)
                .inspect_err(|err| self.audit(ctx, Event::rest(code).failed(err)))?;
            reaches.insert(e.index, reach);
        }
        let base = base.to_owned();
        match kind {
            gp_fhir::bundle::BundleKind::Transaction => {
                // One event for the whole transaction (it is one atomic
                // interaction), listing every resource it touched with how.
                let keys: Vec<(Method, String, Reach)> = entries
                    .iter()
                    .map(|e| {
                        let reach = reaches.get(&e.index).cloned().unwrap_or(Reach::Any);
                        (e.method, e.url.clone(), reach)
                    })
                    .collect();
                let (entries, prepared) = prepare_all(entries).await?;
                let codes = self.search_index();
                let results = self
                    .write_audited(ctx, Event::rest("transaction"), move |tx, ev| {
                        let results = bundle::transaction_in(
                            tx,
                            entries,
                            prepared,
                            &base,
                            codes.as_deref(),
                            &reaches,
                        )?;
                        for ((method, url, reach), r) in keys.iter().zip(&results) {
                            if let Ok(resp) = r {
                                bundle::confine_entry(tx, reach, *method, url, &base, resp)?;
                                let lifecycle = bundle::lifecycle(*method, resp.status);
                                for v in bundle::served(tx, *method, url, &base, resp)? {
                                    ev.written(&v, lifecycle);
                                }
                            }
                        }
                        Ok(results)
                    })
                    .await?;
                Ok((kind, results))
            }
            gp_fhir::bundle::BundleKind::Batch => {
                // Each entry is its own interaction with its own event.
                // Consecutive writes are queued together so that they share
                // commits; a read waits for the writes before it, so entries
                // take effect in the order the Bundle gives them.
                let (entries, mut prepared) = prepare_all(entries).await?;
                let mut results: Vec<Option<EntryResult>> = vec![None; entries.len()];
                let mut pending: Vec<(usize, Event, oneshot::Receiver<EntryResult>)> = Vec::new();
                for entry in entries {
                    let i = entry.index;
                    let reach = reaches.remove(&i).unwrap_or(Reach::Any);
                    let event = Event::rest(bundle::interaction_of(&entry, &base));
                    let (method, url) = (entry.method, entry.url.clone());
                    if bundle::is_read(&entry) {
                        for (j, ev, rx) in pending.drain(..) {
                            results[j] = Some(self.batch_write_result(ctx, ev, rx).await);
                        }
                        let (b, codes) = (base.clone(), self.search_index());
                        let out = self
                            .read_in(ctx, move |tx| {
                                let r = bundle::read_entry_in(tx, &entry, &b, codes.as_deref())
                                    .and_then(|resp| {
                                        bundle::confine_entry(tx, &reach, method, &url, &b, &resp)
                                            .map(|()| resp)
                                    });
                                let served = match &r {
                                    Ok(resp) => bundle::served(tx, method, &url, &b, resp)?,
                                    Err(_) => Vec::new(),
                                };
                                Ok((r, served))
                            })
                            .await;
                        let r = match out {
                            Ok((r, served)) => {
                                let mut ev = event;
                                match &r {
                                    Ok(_) => served.iter().for_each(|v| ev.resource(v)),
                                    Err(e) => ev = ev.failed(e),
                                }
                                self.audit(ctx, ev);
                                r
                            }
                            Err(e) => {
                                self.audit(ctx, event.failed(&e));
                                Err(e)
                            }
                        };
                        results[i] = Some(r);
                    } else {
                        let (b, who) = (base.clone(), ctx.clone());
                        let p = prepared.remove(&i);
                        let code = event.kind;
                        let codes = self.search_index();
                        let rx = self.submit(ctx, move |tx| {
                            let resp =
                                bundle::entry_in(tx, entry, &b, p, codes.as_deref(), &reach)?;
                            bundle::confine_entry(tx, &reach, method, &url, &b, &resp)?;
                            let mut ev = Event::new(code);
                            for v in bundle::served(tx, method, &url, &b, &resp)? {
                                ev.resource(&v);
                            }
                            crate::trail::append_now(tx, &ev, &who)?;
                            Ok(resp)
                        });
                        pending.push((i, event, rx));
                    }
                }
                for (j, ev, rx) in pending {
                    results[j] = Some(self.batch_write_result(ctx, ev, rx).await);
                }
                let results = results
                    .into_iter()
                    .map(|r| r.unwrap_or(Err(StoreError::Unavailable)))
                    .collect();
                Ok((kind, results))
            }
        }
    }

    /// A batch write entry's result, recording its failure in the audit
    /// trail (its success was recorded with it).
    async fn batch_write_result(
        &self,
        ctx: &Ctx,
        event: Event,
        rx: oneshot::Receiver<EntryResult>,
    ) -> EntryResult {
        let r = rx.await.unwrap_or(Err(StoreError::Unavailable));
        if let Err(e) = &r {
            self.audit(ctx, event.failed(e));
        }
        r
    }
}

/// Refuses whole-practice work to anyone but an operator.
pub(crate) fn operator_only(ctx: &Ctx) -> Result<(), StoreError> {
    if ctx.access.user.is_some()
        || ctx.grant.is_some()
        || ctx.access.activities != crate::access::Activities::all()
    {
        return Err(StoreError::Forbidden(
            "whole-practice work is for the practice's operators".into(),
        ));
    }
    Ok(())
}

/// Refuses a write of `ty` the role does not allow (and every write of the
/// audit trail, which is append-only).
pub(crate) fn require_write(ctx: &Ctx, ty: ResourceType) -> Result<(), StoreError> {
    match write_activity(ty) {
        Some(a) => ctx.require(a),
        None => Err(StoreError::Forbidden(format!(
            "{ty} resources cannot be written through the API"
        ))),
    }
}

impl Store {
    /// Checks the activity `op` on `ty` needs and the app's scopes,
    /// recording a refusal; how far the scopes reach.
    pub(crate) fn allow_op(
        &self,
        ctx: &Ctx,
        ty: Option<ResourceType>,
        op: Op,
        event: &Event,
    ) -> Result<Reach, StoreError> {
        let check = || {
            match (op, ty) {
                (Op::Read | Op::Search, _) => ctx.require(read_activity(ty))?,
                (_, Some(t)) => require_write(ctx, t)?,
                (_, None) => ctx.require(crate::access::Activity::RecordClinical)?,
            }
            ctx.reach(ty, op)
        };
        check().inspect_err(|e| self.audit(ctx, event.clone().failed(e)))
    }

    /// Refuses what an app's v2 query-restricted scope cannot be checked
    /// against (versions, history, Bundle entries): only reads and searches
    /// are narrowed by it.
    fn unnarrowed(
        &self,
        ctx: &Ctx,
        ty: Option<ResourceType>,
        op: Op,
        what: &str,
        event: &Event,
    ) -> Result<(), StoreError> {
        match ctx.scope_query(ty, op) {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(crate::smart::narrowed_out(what)),
            Err(e) => Err(e),
        }
        .inspect_err(|e| self.audit(ctx, event.clone().failed(e)))
    }

    /// Under `patient/` scopes, refuses a write unless the resource stays
    /// in the patient's compartment: what is there now (`id`) and what is
    /// written (`new`).
    async fn confine_write(
        &self,
        ctx: &Ctx,
        reach: &Reach,
        ty: ResourceType,
        id: Option<&Id>,
        new: Option<&Resource>,
        event: &Event,
    ) -> Result<(), StoreError> {
        if *reach == Reach::Any {
            return Ok(());
        }
        let check = async {
            if let Some(r) = new {
                let rid = id.map(Id::as_str).or(r.id()).unwrap_or_default();
                confine(reach, ty, rid, &r.to_bytes())?;
            }
            if let Some(id) = id {
                let key = id.to_string();
                let now = self.read_in(ctx, move |tx| tx.latest(ty, &key)).await?;
                if let Some(v) = now.filter(|v| !v.body.is_empty()) {
                    confine(reach, ty, &v.id, &v.body)?;
                }
            }
            Ok(())
        };
        check
            .await
            .inspect_err(|e: &StoreError| self.audit(ctx, event.clone().failed(e)))
    }
}

/// A resource ready to write: validated and its search index entries
/// extracted before the write reaches the single writer, so that this CPU
/// work runs on as many cores as there are requests, not on the writer's one.
#[derive(Clone, Debug)]
pub struct Prepared {
    resource: Resource,
    pub(crate) index: Vec<gp_fhir::search::index::IndexEntry>,
    /// The validation errors (validation.html) that forbid writing it;
    /// `write_version` answers them as 422 instead of writing.
    rejected: Option<gp_fhir::OperationOutcome>,
}

impl Prepared {
    /// A resource the server built itself (an AuditEvent): indexed, not
    /// validated (the unit tests validate every kind it builds).
    /// A resource the server built itself with the index entries it
    /// computed for it (an AuditEvent, `audit::index_entries`).
    pub(crate) fn with_index(
        resource: Resource,
        index: Vec<gp_fhir::search::index::IndexEntry>,
    ) -> Self {
        Prepared {
            resource,
            index,
            rejected: None,
        }
    }

    pub fn new(resource: Resource) -> Self {
        Self::new_in(resource, &|_| None)
    }

    /// As [`Prepared::new`], for a Bundle entry: `type_of` gives the type
    /// of the other entries' `urn:uuid:` fullUrls it may refer to.
    pub fn new_in(resource: Resource, type_of: &gp_search::TypeOf<'_>) -> Self {
        let rejected = gp_validate::rejection(gp_validate::validate(resource.as_json()));
        let index = if rejected.is_none() {
            gp_search::extract_in(&resource, type_of)
        } else {
            Vec::new()
        };
        Prepared {
            resource,
            index,
            rejected,
        }
    }

    /// Rewrites references (transaction `urn:uuid:`s) in the resource and
    /// in the reference entries extracted from it.
    pub fn rewrite_references(&mut self, map: &dyn Fn(&str) -> Option<String>) {
        self.resource.rewrite_references(map);
        for e in &mut self.index {
            if let gp_fhir::search::index::IndexValue::Reference {
                target_type,
                target_id,
                url,
            } = &mut e.value
            {
                let Some(local) = url.as_deref().and_then(map) else {
                    continue;
                };
                if let Some((t, i)) = local.split_once('/') {
                    *target_type = Some(t.to_owned());
                    *target_id = Some(i.to_owned());
                    *url = None;
                }
            }
        }
    }
}

impl std::ops::Deref for Prepared {
    type Target = Resource;
    fn deref(&self) -> &Resource {
        &self.resource
    }
}

impl std::ops::DerefMut for Prepared {
    fn deref_mut(&mut self) -> &mut Resource {
        &mut self.resource
    }
}

/// Prepares every entry's resource, splitting the work across the cores.
async fn prepare_all(
    entries: Vec<gp_fhir::bundle::RequestEntry>,
) -> Result<
    (
        Vec<gp_fhir::bundle::RequestEntry>,
        std::collections::HashMap<usize, Prepared>,
    ),
    StoreError,
> {
    let types = std::sync::Arc::new(bundle::entry_types(&entries));
    let entries = std::sync::Arc::new(entries);
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(1);
    let chunk = entries.len().div_ceil(workers).max(1);
    let mut tasks = Vec::new();
    for start in (0..entries.len()).step_by(chunk) {
        let (entries, types) = (entries.clone(), types.clone());
        tasks.push(tokio::task::spawn_blocking(move || {
            let end = (start + chunk).min(entries.len());
            bundle::prepare_entries(&entries[start..end], &types)
        }));
    }
    let mut prepared = std::collections::HashMap::new();
    for t in tasks {
        prepared.extend(t.await.map_err(|_| StoreError::Unavailable)?);
    }
    let entries = std::sync::Arc::try_unwrap(entries).unwrap_or_else(|shared| (*shared).clone());
    Ok((entries, prepared))
}

/// Extracts a resource's index entries off the async executor.
async fn prepare(resource: Resource) -> Result<Prepared, StoreError> {
    blocking(move || Ok(Prepared::new(resource))).await
}

/// Runs blocking storage work off the async executor.
pub(crate) async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, StoreError> + Send + 'static,
) -> Result<R, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or(Err(StoreError::Unavailable))
}

/// A closure as a writer job, replying on a channel after the commit.
struct Job<F, R> {
    f: Option<F>,
    result: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<F, R> WriteJob for Job<F, R>
where
    R: Send,
    F: FnOnce(&mut dyn WriteTx) -> Result<R, StoreError> + Send,
{
    fn run(&mut self, tx: &mut dyn WriteTx) -> bool {
        let Some(f) = self.f.take() else { return false };
        let result = f(tx);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let out = match (self.result, committed) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(_)), Err(e)) => Err(e),
            (Some(Ok(r)), Ok(())) => Ok(r),
            (None, Err(e)) => Err(e),
            (None, Ok(())) => Err(StoreError::Unavailable),
        };
        // The client may have gone away; the write stands regardless.
        let _ = self.reply.send(out);
    }
}

// ---- The interactions, over a transaction ----

pub(crate) fn read_in(
    tx: &mut dyn ReadTx,
    ty: ResourceType,
    id: &Id,
) -> Result<StoredVersion, StoreError> {
    match tx.latest(ty, id.as_str())? {
        None => Err(StoreError::NotFound(format!("{ty}/{id} is not known"))),
        Some(v) if !shown(tx, &v)? => Err(StoreError::Restricted(format!("{ty}/{id}"))),
        Some(v) if v.deleted => Err(StoreError::Gone {
            what: format!("{ty}/{id}"),
            version: v.version,
            last_updated: v.last_updated,
        }),
        Some(v) => Ok(v),
    }
}

pub(crate) fn vread_in(
    tx: &mut dyn ReadTx,
    ty: ResourceType,
    id: &Id,
    version: u64,
) -> Result<StoredVersion, StoreError> {
    // A restricted entry hides all its versions, as its history does.
    if let Some(current) = tx.latest(ty, id.as_str())?
        && !shown(tx, &current)?
    {
        return Err(StoreError::Restricted(format!("{ty}/{id}")));
    }
    match tx.version(ty, id.as_str(), version)? {
        None => Err(StoreError::NotFound(format!(
            "{ty}/{id} has no version {version}"
        ))),
        Some(v) if !shown(tx, &v)? => Err(StoreError::Restricted(format!("{ty}/{id}"))),
        Some(v) if v.deleted => Err(StoreError::Gone {
            what: format!("{ty}/{id} version {version}"),
            version,
            last_updated: v.last_updated,
        }),
        Some(v) => Ok(v),
    }
}

fn history_in(
    tx: &mut dyn ReadTx,
    scope: &HistoryScope,
    query: &HistoryQuery,
) -> Result<HistoryPage, StoreError> {
    if let HistoryScope::Instance(ty, id) = scope {
        match tx.latest(*ty, id)? {
            None => return Err(StoreError::NotFound(format!("{ty}/{id} is not known"))),
            Some(v) if !shown(tx, &v)? => {
                return Err(StoreError::Restricted(format!("{ty}/{id}")));
            }
            Some(_) => {}
        }
    }
    // The statement leaves out resources whose current version the context
    // may not see; a version restricted once but not now is left out here.
    let mut page = tx.history(scope, query)?;
    let mut kept = Vec::with_capacity(page.entries.len());
    for v in std::mem::take(&mut page.entries) {
        if shown(tx, &v)? {
            kept.push(v);
        }
    }
    page.entries = kept;
    Ok(page)
}

/// Whether the transaction's context may see `v` ([`ReadTx::sees`]): an
/// unrestricted version always; a restricted one with the view-restricted
/// activity or an unexpired break-glass grant for its patient. A deletion
/// is judged by the version it deleted.
pub(crate) fn shown(tx: &mut dyn ReadTx, v: &StoredVersion) -> Result<bool, StoreError> {
    let user = match tx.sees() {
        Sees::All => return Ok(true),
        Sees::Online => None,
        Sees::Unrestricted { holder, now } => holder.clone().map(|h| (h, *now)),
    };
    let previous;
    let judged = if v.deleted && v.version > 1 {
        previous = tx.version(v.resource_type, &v.id, v.version - 1)?;
        match &previous {
            Some(p) => p,
            None => return Ok(true),
        }
    } else {
        v
    };
    if *tx.sees() == Sees::Online && crate::access::hidden_online(&judged.body) {
        return Ok(false);
    }
    let restricted = restriction(judged.resource_type, &judged.id, &judged.body);
    let Some(patient) = restricted else {
        return Ok(true);
    };
    match user {
        None => Ok(false),
        Some((holder, now)) => Ok(tx
            .grants(&holder, now)?
            .iter()
            .any(|g| g.patient == patient)),
    }
}

/// Finds the resources a conditional operation's criteria match (at most
/// two: enough to tell none, one and many apart).
///
/// `codes` is the SNOMED CT index that `:below`, `:above`, `:in` and
/// `:not-in` expand against, as in a search (`codes.rs`).
/// The resources a conditional interaction's criteria find (at most two),
/// among those `within` reaches: under `patient/` scopes only the patient's
/// compartment is searched, so that what lies outside it answers exactly as
/// if it did not exist (no 403 or 412 revealing a match there).
pub(crate) fn matches(
    tx: &mut dyn ReadTx,
    ty: ResourceType,
    query: &[(String, String)],
    codes: Option<&gp_terminology::Index>,
    within: &Reach,
) -> Result<Vec<StoredVersion>, StoreError> {
    // Conditional criteria must be understood in full: ignoring one would
    // match resources the client did not mean (http.html#cond-update).
    let mut q = search::parse(Some(ty), query, true).map_err(StoreError::BadRequest)?;
    if q.criteria.is_empty() {
        return Err(StoreError::bad_request(
            IssueType::Invalid,
            "a conditional request needs search criteria",
        ));
    }
    crate::codes::expand(codes, &mut q.criteria, crate::codes::MAX_CODES)?;
    q.criteria.extend(crate::smart::within(within, Some(ty))?);
    q.count = 2;
    q.offset = 0;
    q.total = Total::None;
    Ok(tx.search(Some(ty), &q)?.entries)
}

/// Stamps and stores a version of `resource` as `ty/id`.
pub(crate) fn write_version(
    tx: &mut dyn WriteTx,
    id: &Id,
    version: u64,
    mut resource: Prepared,
) -> Result<StoredVersion, StoreError> {
    if let Some(outcome) = resource.rejected.take() {
        return Err(StoreError::Unprocessable(outcome));
    }
    let ty = resource.resource_type();
    let now = tx.now();
    resource.set_id(id);
    resource.set_meta(version, now);
    let body = resource.to_bytes();
    tx.insert(&NewVersion {
        resource_type: ty,
        id: id.to_string(),
        version,
        last_updated: now,
        deleted: false,
        restricted: restriction(ty, id.as_str(), &body),
        body: body.clone(),
        index: std::mem::take(&mut resource.index),
        author: None,
    })?;
    Ok(StoredVersion {
        resource_type: ty,
        id: id.to_string(),
        version,
        last_updated: now,
        deleted: false,
        body: Bytes::from(body),
    })
}

pub(crate) fn new_id() -> Id {
    Id::generate(uuid::Uuid::new_v4())
}

/// `POST [type]`, optionally with `If-None-Exist` (http.html#ccreate).
/// `assigned` is an id a transaction already reserved for this entry.
pub(crate) fn create_in(
    tx: &mut dyn WriteTx,
    mut resource: Prepared,
    if_none_exist: Option<&str>,
    assigned: Option<Id>,
    codes: Option<&gp_terminology::Index>,
    within: &Reach,
) -> Result<WriteOutcome, StoreError> {
    let ty = resource.resource_type();
    if let Some(cond) = if_none_exist {
        let found = matches(
            tx,
            ty,
            &gp_fhir::search::parse_query_string(cond.trim_start_matches('?')),
            codes,
            within,
        )?;
        match found.len() {
            0 => {}
            1 => {
                return Ok(WriteOutcome {
                    created: false,
                    written: false,
                    version: found.into_iter().next().ok_or(StoreError::Unavailable)?,
                });
            }
            _ => {
                return Err(StoreError::PreconditionFailed(format!(
                    "If-None-Exist '{cond}' matches more than one {ty}"
                )));
            }
        }
    }
    // A create ignores any id the client sent (http.html#create).
    resource.clear_id();
    let id = assigned.unwrap_or_else(new_id);
    let version = write_version(tx, &id, 1, resource)?;
    Ok(WriteOutcome {
        created: true,
        written: true,
        version,
    })
}

fn check_body(resource: &Resource, ty: ResourceType, id: Option<&Id>) -> Result<(), StoreError> {
    if resource.resource_type() != ty {
        return Err(StoreError::unprocessable(
            IssueType::Invalid,
            format!(
                "the body is a {} but the URL is for {ty}",
                resource.resource_type()
            ),
        ));
    }
    if let Some(id) = id {
        match resource.id() {
            None => {
                return Err(StoreError::bad_request(
                    IssueType::Required,
                    format!("the body has no id; an update must carry id '{id}'"),
                ));
            }
            Some(body_id) if body_id != id.as_str() => {
                return Err(StoreError::unprocessable(
                    IssueType::Invalid,
                    format!("the body's id '{body_id}' does not match the URL's id '{id}'"),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// `PUT [type]/[id]`, including update-as-create (http.html#update).
pub(crate) fn update_in(
    tx: &mut dyn WriteTx,
    ty: ResourceType,
    id: &Id,
    resource: Prepared,
    pre: &Preconditions,
) -> Result<WriteOutcome, StoreError> {
    check_body(&resource, ty, Some(id))?;
    let current = tx.latest(ty, id.as_str())?;
    if let Some(c) = &current
        && !shown(tx, c)?
    {
        return Err(StoreError::Restricted(format!("{ty}/{id}")));
    }
    if let Some(expected) = pre.if_match {
        match &current {
            Some(c) if !c.deleted && c.version == expected => {}
            Some(c) if !c.deleted => {
                return Err(StoreError::PreconditionFailed(format!(
                    "{ty}/{id} is at version {}, not {expected}: it has changed since you read it",
                    c.version
                )));
            }
            _ => {
                return Err(StoreError::PreconditionFailed(format!(
                    "{ty}/{id} does not exist, so it cannot be at version {expected}"
                )));
            }
        }
    }
    let (next, created) = match &current {
        None => (1, true),
        Some(c) => (c.version + 1, c.deleted),
    };
    let version = write_version(tx, id, next, resource)?;
    Ok(WriteOutcome {
        created,
        written: true,
        version,
    })
}

/// `PUT [type]?criteria` (http.html#cond-update).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conditional_update_in(
    tx: &mut dyn WriteTx,
    ty: ResourceType,
    query: &[(String, String)],
    resource: Prepared,
    pre: &Preconditions,
    assigned: Option<Id>,
    codes: Option<&gp_terminology::Index>,
    within: &Reach,
) -> Result<WriteOutcome, StoreError> {
    check_body(&resource, ty, None)?;
    let found = matches(tx, ty, query, codes, within)?;
    match found.as_slice() {
        [] => {
            let id = match resource.id() {
                Some(id) => Id::parse(id)
                    .map_err(|e| StoreError::bad_request(IssueType::Invalid, e.to_string()))?,
                None => assigned.unwrap_or_else(new_id),
            };
            update_in(tx, ty, &id, with_id(resource, &id), pre)
        }
        [one] => {
            let id = Id::parse(&one.id).map_err(|e| StoreError::Backend(e.to_string()))?;
            if resource.id().is_some_and(|b| b != one.id) {
                return Err(StoreError::bad_request(
                    IssueType::Invalid,
                    format!(
                        "the body's id does not match the resource the criteria found ({ty}/{id})"
                    ),
                ));
            }
            update_in(tx, ty, &id, with_id(resource, &id), pre)
        }
        _ => Err(StoreError::PreconditionFailed(format!(
            "the criteria match more than one {ty}"
        ))),
    }
}

fn with_id(mut r: Prepared, id: &Id) -> Prepared {
    r.set_id(id);
    r
}

/// `PATCH [type]/[id]` with a JSON Patch (http.html#patch).
pub(crate) fn patch_in(
    tx: &mut dyn WriteTx,
    ty: ResourceType,
    id: &Id,
    patch: &json_patch::Patch,
    pre: &Preconditions,
) -> Result<WriteOutcome, StoreError> {
    let current = read_in(tx, ty, id)?;
    let value: serde_json::Value =
        serde_json::from_slice(&current.body).map_err(|e| StoreError::Backend(e.to_string()))?;
    let patched = gp_fhir::patch::apply(&value, patch)
        .map_err(|e| StoreError::unprocessable(IssueType::Processing, e.to_string()))?;
    let resource = Resource::from_value(patched).map_err(|e| {
        StoreError::unprocessable(
            IssueType::Invalid,
            format!("the patched resource is not valid: {e}"),
        )
    })?;
    check_body(&resource, ty, Some(id))?;
    update_in(
        tx,
        ty,
        id,
        Prepared::new(resource),
        &Preconditions {
            if_match: pre.if_match.or(Some(current.version)),
        },
    )
}

/// `DELETE [type]/[id]` (http.html#delete): recorded as a version.
pub(crate) fn delete_in(
    tx: &mut dyn WriteTx,
    ty: ResourceType,
    id: &Id,
) -> Result<DeleteOutcome, StoreError> {
    match tx.latest(ty, id.as_str())? {
        None => Ok(DeleteOutcome::NothingToDelete),
        Some(c) if !shown(tx, &c)? => Err(StoreError::Restricted(format!("{ty}/{id}"))),
        Some(c) if c.deleted => Ok(DeleteOutcome::NothingToDelete),
        Some(c) => {
            let version = c.version + 1;
            let now = tx.now();
            tx.insert(&NewVersion {
                resource_type: ty,
                id: id.to_string(),
                version,
                last_updated: now,
                deleted: true,
                body: Vec::new(),
                index: Vec::new(),
                author: None,
                // The deletion of a restricted entry stays restricted, so
                // that its history stays hidden too.
                restricted: restriction(ty, id.as_str(), &c.body),
            })?;
            Ok(DeleteOutcome::Deleted { version })
        }
    }
}

/// `DELETE [type]?criteria` (http.html#cdelete): one match at most.
pub(crate) fn conditional_delete_in(
    tx: &mut dyn WriteTx,
    ty: ResourceType,
    query: &[(String, String)],
    codes: Option<&gp_terminology::Index>,
    within: &Reach,
) -> Result<DeleteOutcome, StoreError> {
    let found = matches(tx, ty, query, codes, within)?;
    match found.as_slice() {
        [] => Ok(DeleteOutcome::NothingToDelete),
        [one] => {
            let id = Id::parse(&one.id).map_err(|e| StoreError::Backend(e.to_string()))?;
            delete_in(tx, ty, &id)
        }
        _ => Err(StoreError::PreconditionFailed(format!(
            "the criteria match more than one {ty}; delete them one at a time"
        ))),
    }
}
