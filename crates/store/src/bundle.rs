//! Batch and transaction entries (http.html#transaction, http.html#trules).

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use gp_fhir::bundle::{Method, RequestEntry};
use gp_fhir::search;
use gp_fhir::{Id, Instant, IssueType, OperationOutcome, Resource, ResourceType};

use crate::StoreError;
use crate::backend::{HistoryQuery, HistoryScope, ReadTx, WriteTx};
use crate::engine::{self, DeleteOutcome, Preconditions, Prepared, WriteOutcome};
use crate::render;
use crate::smart::Reach;
use crate::target::Target;

/// The response to one entry, as `Bundle.entry.response` describes it.
#[derive(Clone, Debug)]
pub struct EntryResponse {
    pub status: u16,
    /// Relative: `Patient/1/_history/2`.
    pub location: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<Instant>,
    pub resource: Option<Bytes>,
    pub outcome: Option<OperationOutcome>,
}

/// An entry's response, or (in a batch) the error that stopped it.
pub type EntryResult = Result<EntryResponse, StoreError>;

fn written(w: WriteOutcome) -> EntryResponse {
    let v = w.version;
    EntryResponse {
        status: if w.created { 201 } else { 200 },
        location: Some(format!(
            "{}/{}/_history/{}",
            v.resource_type, v.id, v.version
        )),
        etag: Some(format!("W/\"{}\"", v.version)),
        last_modified: Some(v.last_updated),
        resource: Some(v.body),
        outcome: None,
    }
}

fn deleted(d: DeleteOutcome) -> EntryResponse {
    let etag = match d {
        DeleteOutcome::Deleted { version } => Some(format!("W/\"{version}\"")),
        DeleteOutcome::NothingToDelete => None,
    };
    EntryResponse {
        status: 204,
        location: None,
        etag,
        last_modified: None,
        resource: None,
        outcome: None,
    }
}

/// Refuses an entry the context's role or scopes do not allow: reads by the
/// type in the URL (a whole-practice URL needs the clinical record), writes
/// by the type in the URL or, failing that, of the resource; how far the
/// scopes reach, which [`confine_entry`] applies once the entry has run.
pub(crate) fn require_entry(
    ctx: &crate::Ctx,
    e: &RequestEntry,
) -> Result<crate::smart::Reach, StoreError> {
    let path = e.url.trim_start_matches('/');
    let first = path.split(['/', '?']).next().unwrap_or_default();
    let ty = ResourceType::parse(first).or_else(|| {
        e.resource
            .as_ref()
            .and_then(|r| r["resourceType"].as_str())
            .and_then(ResourceType::parse)
    });
    use crate::smart::Op;
    let op = match e.method {
        Method::Get | Method::Head if path.contains('/') && !path.contains('?') => Op::Read,
        Method::Get | Method::Head => Op::Search,
        Method::Post => Op::Create,
        Method::Delete => Op::Delete,
        _ => Op::Update,
    };
    if is_read(e) {
        ctx.require(crate::access::read_activity(ty))?;
    } else {
        match ty {
            Some(t) => crate::engine::require_write(ctx, t)?,
            None => ctx.require(crate::access::Activity::RecordClinical)?,
        }
    }
    if ctx.scope_query(ty, op)?.is_some() {
        return Err(crate::smart::narrowed_out("a Bundle entry of this type"));
    }
    ctx.reach(ty, op)
}

/// Under `patient/` scopes, inside the entry's transaction: refuses (and so
/// rolls back) an entry that served or wrote anything outside the patient's
/// compartment, or replaced or deleted something outside it.
pub(crate) fn confine_entry(
    tx: &mut dyn ReadTx,
    reach: &crate::smart::Reach,
    method: Method,
    url: &str,
    base: &str,
    r: &EntryResponse,
) -> Result<(), StoreError> {
    if *reach == crate::smart::Reach::Any {
        return Ok(());
    }
    let replaced = !matches!(method, Method::Get | Method::Head);
    for v in served(tx, method, url, base, r)? {
        crate::smart::confine_in(tx, reach, &v, replaced)?;
    }
    Ok(())
}

pub(crate) fn is_read(e: &RequestEntry) -> bool {
    matches!(e.method, Method::Get | Method::Head)
}

fn parse_version_tag(s: &str) -> Result<u64, StoreError> {
    s.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map_err(|_| {
            StoreError::bad_request(
                IssueType::Invalid,
                format!("'{s}' is not an ETag of the form W/\"version\""),
            )
        })
}

fn resource_of(e: &RequestEntry) -> Result<Resource, StoreError> {
    let body = e.resource.clone().ok_or_else(|| {
        StoreError::bad_request(
            IssueType::Required,
            format!("entry {} needs a resource for {:?}", e.index, e.method),
        )
    })?;
    let parsed = if e.method == Method::Post {
        Resource::from_value_for_create(body)
    } else {
        Resource::from_value(body)
    };
    parsed.map_err(|err| {
        StoreError::bad_request(IssueType::Invalid, format!("entry {}: {err}", e.index))
    })
}

fn preconditions(e: &RequestEntry) -> Result<Preconditions, StoreError> {
    Ok(Preconditions {
        if_match: e.if_match.as_deref().map(parse_version_tag).transpose()?,
    })
}

/// The entries' resources, parsed and with their index entries extracted,
/// by entry index. Entries that do not parse are left out; processing them
/// reports the error in its place.
/// `types` is the type of each entry's resource by its fullUrl, so that a
/// reference to another entry (`urn:uuid:...`) counts as one to its type.
pub(crate) fn prepare_entries(
    entries: &[RequestEntry],
    types: &HashMap<String, ResourceType>,
) -> HashMap<usize, Prepared> {
    let type_of = |url: &str| types.get(url).copied();
    entries
        .iter()
        .filter(|e| e.resource.is_some() && matches!(e.method, Method::Post | Method::Put))
        .filter_map(|e| Some((e.index, Prepared::new_in(resource_of(e).ok()?, &type_of))))
        .collect()
}

/// The type of each entry's resource, by its fullUrl.
pub(crate) fn entry_types(entries: &[RequestEntry]) -> HashMap<String, ResourceType> {
    entries
        .iter()
        .filter_map(|e| {
            let ty = e.resource.as_ref()?.get("resourceType")?.as_str()?;
            Some((e.full_url.clone()?, ResourceType::parse(ty)?))
        })
        .collect()
}

/// A write entry of a batch, alone in its own job.
pub(crate) fn entry_in(
    tx: &mut dyn WriteTx,
    e: RequestEntry,
    base: &str,
    prepared: Option<Prepared>,
    codes: Option<&gp_terminology::Index>,
    within: &Reach,
) -> EntryResult {
    write_entry(tx, &e, base, prepared.map(|p| (p, None)), codes, within)
}

fn write_entry(
    tx: &mut dyn WriteTx,
    e: &RequestEntry,
    base: &str,
    resolved: Option<(Prepared, Option<Id>)>,
    codes: Option<&gp_terminology::Index>,
    within: &Reach,
) -> EntryResult {
    let target = Target::parse(&e.url, base)?;
    let resource = |r: &Option<(Prepared, Option<Id>)>| match r {
        Some((res, _)) => Ok(res.clone()),
        None => resource_of(e).map(Prepared::new),
    };
    let assigned = resolved.as_ref().and_then(|(_, id)| id.clone());
    match (e.method, target) {
        (Method::Post, Target::Type { ty, .. }) => {
            let r = resource(&resolved)?;
            if r.resource_type() != ty {
                return Err(StoreError::unprocessable(
                    IssueType::Invalid,
                    format!(
                        "entry {} is a {} posted to {ty}",
                        e.index,
                        r.resource_type()
                    ),
                ));
            }
            engine::create_in(tx, r, e.if_none_exist.as_deref(), assigned, codes, within)
                .map(written)
        }
        (Method::Put, Target::Instance { ty, id }) => {
            engine::update_in(tx, ty, &id, resource(&resolved)?, &preconditions(e)?).map(written)
        }
        (Method::Put, Target::Type { ty, query }) if !query.is_empty() => {
            engine::conditional_update_in(
                tx,
                ty,
                &query,
                resource(&resolved)?,
                &preconditions(e)?,
                assigned,
                codes,
                within,
            )
            .map(written)
        }
        (Method::Patch, Target::Instance { ty, id }) => {
            let patch = patch_of(e)?;
            engine::patch_in(tx, ty, &id, &patch, &preconditions(e)?).map(written)
        }
        (Method::Delete, Target::Instance { ty, id }) => {
            engine::delete_in(tx, ty, &id).map(deleted)
        }
        (Method::Delete, Target::Type { ty, query }) if !query.is_empty() => {
            engine::conditional_delete_in(tx, ty, &query, codes, within).map(deleted)
        }
        // Batch reads go to `read_entry_in` directly (`is_read`).
        (Method::Get | Method::Head, _) => read_entry_in(tx, e, base, None),
        (m, _) => Err(StoreError::bad_request(
            IssueType::NotSupported,
            format!(
                "entry {}: {m:?} {} is not an interaction this server supports",
                e.index, e.url
            ),
        )),
    }
}

/// A JSON Patch carried as a Binary resource (http.html#patch in bundles).
fn patch_of(e: &RequestEntry) -> Result<json_patch::Patch, StoreError> {
    let bad =
        |m: String| StoreError::bad_request(IssueType::Invalid, format!("entry {}: {m}", e.index));
    let r = e
        .resource
        .as_ref()
        .ok_or_else(|| bad("a PATCH entry needs a Binary holding a JSON Patch".into()))?;
    if r["resourceType"] != "Binary" {
        return Err(bad(
            "only JSON Patch in a Binary is supported for PATCH entries".into(),
        ));
    }
    let data = r["data"]
        .as_str()
        .ok_or_else(|| bad("the Binary has no data".into()))?;
    let bytes = base64_decode(data).ok_or_else(|| bad("the Binary data is not base64".into()))?;
    gp_fhir::patch::parse(&bytes).map_err(|err| bad(err.to_string()))
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// A GET entry: read, vread, search or history.
/// A read entry; `codes` is the SNOMED CT index that search modifiers
/// expand against (`codes.rs`).
pub(crate) fn read_entry_in(
    tx: &mut dyn ReadTx,
    e: &RequestEntry,
    base: &str,
    codes: Option<&gp_terminology::Index>,
) -> EntryResult {
    let ok = |body: Vec<u8>| EntryResponse {
        status: 200,
        location: None,
        etag: None,
        last_modified: None,
        resource: Some(Bytes::from(body)),
        outcome: None,
    };
    match Target::parse(&e.url, base)? {
        Target::Instance { ty, id } => {
            let v = engine::read_in(tx, ty, &id)?;
            let not_modified = e
                .if_none_match
                .as_deref()
                .is_some_and(|t| parse_version_tag(t).ok() == Some(v.version));
            Ok(EntryResponse {
                status: if not_modified { 304 } else { 200 },
                location: None,
                etag: Some(format!("W/\"{}\"", v.version)),
                last_modified: Some(v.last_updated),
                resource: if not_modified { None } else { Some(v.body) },
                outcome: None,
            })
        }
        Target::Version { ty, id, version } => {
            let v = engine::vread_in(tx, ty, &id, version)?;
            Ok(EntryResponse {
                etag: Some(format!("W/\"{}\"", v.version)),
                last_modified: Some(v.last_updated),
                ..ok(v.body.to_vec())
            })
        }
        Target::Type { ty, query } => {
            let mut q = search::parse(Some(ty), &query, false).map_err(StoreError::BadRequest)?;
            crate::codes::expand(codes, &mut q.criteria, crate::codes::MAX_CODES)?;
            let page = engine::search_in(tx, Some(ty), &q)?;
            Ok(ok(render::searchset(
                base,
                &render::search_path(base, Some(ty)),
                &q,
                &page,
            )))
        }
        Target::System { query } => {
            let mut q = search::parse(None, &query, false).map_err(StoreError::BadRequest)?;
            crate::codes::expand(codes, &mut q.criteria, crate::codes::MAX_CODES)?;
            let page = engine::search_in(tx, None, &q)?;
            Ok(ok(render::searchset(base, base, &q, &page)))
        }
        Target::History { ty, id, query } => {
            let (scope, path) = match (ty, id) {
                (Some(t), Some(i)) => (
                    HistoryScope::Instance(t, i.to_string()),
                    format!("{base}/{t}/{i}/_history"),
                ),
                (Some(t), None) => (HistoryScope::Type(t), format!("{base}/{t}/_history")),
                _ => (HistoryScope::Practice, format!("{base}/_history")),
            };
            let hq = history_query(&query)?;
            let page = tx.history(&scope, &hq)?;
            Ok(ok(render::history(base, &path, &hq, &page)))
        }
    }
}

/// Reads `_since`, `_count`, `_offset` and the paging mark `_until`.
pub fn history_query(query: &[(String, String)]) -> Result<HistoryQuery, StoreError> {
    let mut q = HistoryQuery {
        since: None,
        count: search::DEFAULT_COUNT,
        offset: 0,
        until: None,
    };
    let bad = |m: String| StoreError::bad_request(IssueType::Invalid, m);
    for (k, v) in query {
        match k.as_str() {
            "_since" => {
                q.since = Some(
                    gp_fhir::DateRange::parse(v)
                        .map_err(|e| bad(format!("_since: {e}")))?
                        .low,
                )
            }
            "_count" => {
                q.count = v
                    .parse::<usize>()
                    .map_err(|_| bad(format!("_count must be a whole number, not '{v}'")))?
                    .min(search::MAX_COUNT)
            }
            "_offset" => {
                q.offset = v
                    .parse()
                    .map_err(|_| bad(format!("_offset must be a whole number, not '{v}'")))?
            }
            "_until" => {
                q.until = Some(
                    v.parse()
                        .map_err(|_| bad(format!("_until must be a whole number, not '{v}'")))?,
                )
            }
            _ => {}
        }
    }
    Ok(q)
}

/// A whole transaction in one job: all entries or none (http.html#trules).
/// Reads inside a transaction answer with their own status (a 404 or 410
/// read does not undo the writes); any failing write fails the whole.
pub(crate) fn transaction_in(
    tx: &mut dyn WriteTx,
    entries: Vec<RequestEntry>,
    mut prepared: HashMap<usize, Prepared>,
    base: &str,
    codes: Option<&gp_terminology::Index>,
    reaches: &HashMap<usize, Reach>,
) -> Result<Vec<EntryResult>, StoreError> {
    let within = |e: &RequestEntry| reaches.get(&e.index).unwrap_or(&Reach::Any);
    let fail = |e: &RequestEntry, err: StoreError| -> StoreError {
        // Say which entry failed; keep the error's kind (and so its status).
        let prefix = format!(
            "transaction failed at entry {} ({:?} {}): ",
            e.index, e.method, e.url
        );
        match err {
            StoreError::BadRequest(mut o) => {
                prefix_issue(&mut o, &prefix);
                StoreError::BadRequest(o)
            }
            StoreError::Unprocessable(mut o) => {
                prefix_issue(&mut o, &prefix);
                StoreError::Unprocessable(o)
            }
            StoreError::NotFound(m) => StoreError::NotFound(prefix + &m),
            StoreError::PreconditionFailed(m) => StoreError::PreconditionFailed(prefix + &m),
            StoreError::Conflict(m) => StoreError::Conflict(prefix + &m),
            StoreError::NotSupported(m) => StoreError::NotSupported(prefix + &m),
            other => other,
        }
    };

    // 1. Resolve identities: every POST and conditional PUT gets its id now,
    //    so that references between entries can be rewritten before writing.
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut resolved: HashMap<usize, (Prepared, Option<Id>)> = HashMap::new();
    let mut touched: HashSet<String> = HashSet::new();
    for e in &entries {
        if is_read(e) {
            continue;
        }
        let target = Target::parse(&e.url, base).map_err(|err| fail(e, err))?;
        // A conditional create that matches writes nothing, so its identity
        // cannot collide with another entry's.
        let mut writes = true;
        let identity: Option<(ResourceType, Id)> = match (e.method, &target) {
            (Method::Post, Target::Type { ty, .. }) => {
                let existing = match &e.if_none_exist {
                    Some(cond) => {
                        single_match(tx, *ty, cond, codes, within(e)).map_err(|err| fail(e, err))?
                    }
                    None => None,
                };
                writes = existing.is_none();
                Some((*ty, existing.unwrap_or_else(engine::new_id)))
            }
            (Method::Put, Target::Type { ty, query }) if !query.is_empty() => {
                let found = engine::matches(tx, *ty, query, codes, within(e))
                    .map_err(|err| fail(e, err))?;
                match found.as_slice() {
                    [] => None,
                    [one] => Some((
                        *ty,
                        Id::parse(&one.id).map_err(|err| StoreError::Backend(err.to_string()))?,
                    )),
                    _ => {
                        return Err(fail(
                            e,
                            StoreError::PreconditionFailed(
                                "the criteria match more than one resource".into(),
                            ),
                        ));
                    }
                }
                .or_else(|| Some((*ty, engine::new_id())))
            }
            (_, Target::Instance { ty, id }) => Some((*ty, id.clone())),
            _ => None,
        };
        if let Some((ty, id)) = &identity {
            if writes && !touched.insert(format!("{ty}/{id}")) {
                return Err(fail(
                    e,
                    StoreError::Conflict(format!("{ty}/{id} is the target of more than one entry")),
                ));
            }
            if let Some(full) = &e.full_url {
                ids.insert(full.clone(), format!("{ty}/{id}"));
            }
        }
        if e.resource.is_some() && matches!(e.method, Method::Post | Method::Put) {
            let r = match prepared.remove(&e.index) {
                Some(p) => p,
                None => Prepared::new(resource_of(e).map_err(|err| fail(e, err))?),
            };
            resolved.insert(e.index, (r, identity.map(|(_, id)| id)));
        }
    }

    // 2. Rewrite references to other entries' fullUrls.
    for (r, _) in resolved.values_mut() {
        r.rewrite_references(&|s| ids.get(s).cloned());
    }

    // 3. Process in the specification's order; answer in request order.
    let mut order: Vec<&RequestEntry> = entries.iter().collect();
    order.sort_by_key(|e| (e.method.transaction_order(), e.index));
    let mut responses: Vec<Option<EntryResult>> = vec![None; entries.len()];
    for e in order {
        let res = if is_read(e) {
            read_entry_in(tx, e, base, codes)
        } else {
            Ok(
                write_entry(tx, e, base, resolved.remove(&e.index), codes, within(e))
                    .map_err(|err| fail(e, err))?,
            )
        };
        responses[e.index] = Some(res);
    }
    Ok(responses.into_iter().flatten().collect())
}

fn prefix_issue(o: &mut OperationOutcome, prefix: &str) {
    if let Some(i) = o.issues.first_mut() {
        i.diagnostics = format!("{prefix}{}", i.diagnostics);
    }
}

/// For `ifNoneExist`: the id of the one existing match, if any.
fn single_match(
    tx: &mut dyn ReadTx,
    ty: ResourceType,
    cond: &str,
    codes: Option<&gp_terminology::Index>,
    within: &Reach,
) -> Result<Option<Id>, StoreError> {
    let query = gp_fhir::search::parse_query_string(cond.trim_start_matches('?'));
    let found = engine::matches(tx, ty, &query, codes, within)?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(
            Id::parse(&one.id).map_err(|e| StoreError::Backend(e.to_string()))?,
        )),
        _ => Err(StoreError::PreconditionFailed(format!(
            "ifNoneExist '{cond}' matches more than one {ty}"
        ))),
    }
}

// ---- The audit trail of Bundle entries (audit.rs) ----

/// The `restful-interaction` code of an entry, for its audit event.
pub(crate) fn interaction_of(e: &RequestEntry, base: &str) -> &'static str {
    match e.method {
        Method::Post => "create",
        Method::Put => "update",
        Method::Patch => "patch",
        Method::Delete => "delete",
        _ => match Target::parse(&e.url, base) {
            Ok(Target::Version { .. }) => "vread",
            Ok(Target::Type { .. }) => "search-type",
            Ok(Target::System { .. }) => "search-system",
            Ok(Target::History { ty, id, .. }) => match (ty, id) {
                (Some(_), Some(_)) => "history-instance",
                (Some(_), None) => "history-type",
                _ => "history-system",
            },
            _ => "read",
        },
    }
}

/// How a transaction entry touched its resource (dicom-audit-lifecycle):
/// created, amended, deleted, or read.
pub(crate) fn lifecycle(method: Method, status: u16) -> &'static str {
    match (method, status) {
        (Method::Post | Method::Put, 201) => "1",
        (Method::Put | Method::Patch, _) => "3",
        (Method::Delete, _) => "14",
        _ => "6",
    }
}

/// The versions an entry's response served or wrote, for its audit event:
/// the resource written or read, a deleted resource's deletion (with the
/// body of the version before it, for its patients), or a search's or
/// history's entries.
pub(crate) fn served(
    tx: &mut dyn ReadTx,
    method: Method,
    url: &str,
    base: &str,
    r: &EntryResponse,
) -> Result<Vec<crate::StoredVersion>, StoreError> {
    let version_of =
        |etag: &Option<String>| etag.as_deref().and_then(|t| parse_version_tag(t).ok());
    let make = |ty, id: &str, version, body: Bytes| crate::StoredVersion {
        resource_type: ty,
        id: id.to_owned(),
        version,
        last_updated: Instant::now(),
        deleted: false,
        body,
    };
    if let Some(loc) = &r.location {
        // Written: `Type/id/_history/version`.
        let mut parts = loc.split('/');
        if let (Some(ty), Some(id), Some(_), Some(v)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
            && let (Some(ty), Ok(v)) = (ResourceType::parse(ty), v.parse())
        {
            let body = r.resource.clone().unwrap_or_default();
            return Ok(vec![make(ty, id, v, body)]);
        }
        return Ok(Vec::new());
    }
    let target = Target::parse(url, base)?;
    match (method, target) {
        (Method::Delete, Target::Instance { ty, id }) => {
            let Some(v) = version_of(&r.etag) else {
                return Ok(Vec::new());
            };
            let before = match v.checked_sub(1) {
                Some(p) if p > 0 => tx.version(ty, id.as_str(), p)?.map(|b| b.body),
                _ => None,
            };
            Ok(vec![make(ty, id.as_str(), v, before.unwrap_or_default())])
        }
        (
            Method::Get | Method::Head,
            Target::Instance { ty, id } | Target::Version { ty, id, .. },
        ) => match (version_of(&r.etag), &r.resource) {
            (Some(v), Some(body)) => Ok(vec![make(ty, id.as_str(), v, body.clone())]),
            (Some(v), None) => Ok(vec![make(ty, id.as_str(), v, Bytes::new())]),
            _ => Ok(Vec::new()),
        },
        (Method::Get | Method::Head, _) => {
            // A searchset or history Bundle: its entries' resources.
            let Some(body) = &r.resource else {
                return Ok(Vec::new());
            };
            let bundle: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            Ok(bundle["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| {
                    let res = &e["resource"];
                    let ty = ResourceType::parse(res["resourceType"].as_str()?)?;
                    let id = res["id"].as_str()?;
                    let v = res["meta"]["versionId"].as_str()?.parse().ok()?;
                    let body = Bytes::from(serde_json::to_vec(res).ok()?);
                    Some(make(ty, id, v, body))
                })
                .collect())
        }
        _ => Ok(Vec::new()),
    }
}
