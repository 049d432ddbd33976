//! Importing data from other systems: FHIR Bundles (transaction, batch,
//! collection, searchset) and NDJSON, as files or a folder of them.
//!
//! Every resource is kept whole, extensions and codes OpenGP does not know
//! included. Ids are kept when they are valid FHIR ids and free, and made
//! otherwise: from the source's id when it is not a valid one, and from the
//! type, id and content when the id is taken by a different resource (one
//! the target holds or held, or one of another source in the import), so
//! that the same resource always gets the same id and a second run lands
//! on the same resources. Nothing the target holds is overwritten.
//! References (`urn:uuid:` full URLs, `Type/id`) are rewritten to the ids
//! their resources got, a source's own resources first. Resources are
//! written through the same validated path as the API, as batch entries,
//! so one bad resource is rejected alone; a resource the practice already
//! holds with the same content is left alone.

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use gp_fhir::{Id, ResourceType};
use gp_store::{Ctx, Store};
use serde_json::{Value, json};

use crate::import::{Outcome, Report};
use crate::{Progress, digest};

/// Resources per batch Bundle.
const BATCH: usize = 1_000;

/// One resource as found in the source.
struct Found {
    /// Where: `file#entry` or `file:line`.
    origin: String,
    /// Which source it came from: each Bundle is one, the NDJSON files
    /// together another (0).
    scope: usize,
    full_url: Option<String>,
    resource: Value,
}

/// The files to read under `path` (itself, or the data files of a folder).
fn files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.to_string_lossy();
            [".json", ".json.gz", ".ndjson", ".ndjson.gz"]
                .iter()
                .any(|s| n.ends_with(s))
        })
        .collect();
    out.sort();
    Ok(out)
}

fn open(path: &Path) -> Result<Box<dyn Read>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(if path.to_string_lossy().ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        Box::new(f)
    })
}

/// Reads every resource of every file; what cannot be read is rejected.
fn read_all(path: &Path, report: &mut Report) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    for (n, file) in files(path)?.into_iter().enumerate() {
        let bundle_scope = n + 1;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ndjson = name.contains(".ndjson");
        let reader = open(&file)?;
        if ndjson {
            for (n, line) in std::io::BufReader::new(reader).lines().enumerate() {
                let origin = format!("{name}:{}", n + 1);
                let line = line.with_context(|| format!("reading {origin}"))?;
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(&line) {
                    Ok(resource) => found.push(Found {
                        origin,
                        scope: 0,
                        full_url: None,
                        resource,
                    }),
                    Err(e) => report.reject_origin(&origin, format!("not JSON: {e}")),
                }
            }
            continue;
        }
        let mut text = Vec::new();
        let mut reader = reader;
        reader
            .read_to_end(&mut text)
            .with_context(|| format!("reading {name}"))?;
        let v: Value = match serde_json::from_slice(&text) {
            Ok(v) => v,
            Err(e) => {
                report.reject_origin(&name, format!("not JSON: {e}"));
                continue;
            }
        };
        if v["resourceType"] == "Bundle" {
            for (n, e) in v["entry"].as_array().into_iter().flatten().enumerate() {
                let origin = format!("{name}#{}", n + 1);
                if e["resource"].is_object() {
                    found.push(Found {
                        origin,
                        scope: bundle_scope,
                        full_url: e["fullUrl"].as_str().map(str::to_owned),
                        resource: e["resource"].clone(),
                    });
                } else {
                    report.reject_origin(&origin, "a Bundle entry without a resource".into());
                }
            }
        } else {
            found.push(Found {
                origin: name,
                scope: bundle_scope,
                full_url: None,
                resource: v,
            });
        }
    }
    Ok(found)
}

/// The id a source resource gets here: its own when valid, else one made
/// from it (stable across runs).
fn target_id(ty: &str, source: Option<&str>, origin: &str) -> String {
    match source {
        Some(s) if Id::parse(s).is_ok() => s.to_owned(),
        Some(s) => format!("x-{}", &digest(format!("{ty}/{s}").as_bytes())[..40]),
        None => format!("x-{}", &digest(origin.as_bytes())[..40]),
    }
}

/// The id a source resource gets when its own is taken (in the target, or
/// earlier in the import) by a different resource: made from its type, its
/// id and its content as the source has it, so that the same resource gets
/// the same id on every run and different ones never share one.
fn moved_id(ty: ResourceType, id: &str, original: &str) -> String {
    format!(
        "x-{}",
        &digest(format!("{ty}/{id}\n{original}").as_bytes())[..40]
    )
}

/// The references of one source: a reference resolves to a resource of the
/// same source first (a Bundle is one source; the NDJSON files together are
/// one), then to the first source in the import that holds it.
#[derive(Default)]
struct Names {
    /// `(source, reference as written)` -> index of the resource.
    local: HashMap<(usize, String), usize>,
    /// Reference as written -> index of the first resource it names.
    global: HashMap<String, usize>,
}

impl Names {
    fn add(&mut self, scope: usize, name: String, index: usize) {
        self.local.entry((scope, name.clone())).or_insert(index);
        self.global.entry(name).or_insert(index);
    }

    fn resolve(&self, scope: usize, name: &str) -> Option<usize> {
        self.local
            .get(&(scope, name.to_owned()))
            .or_else(|| self.global.get(name))
            .copied()
    }
}

/// Rewrites `reference`s the import resolves to the ids their resources
/// got, counting how many changed and the local or `urn:` references left
/// pointing outside the import.
fn rewrite(
    v: &mut Value,
    resolve: &dyn Fn(&str) -> Option<String>,
    changed: &mut usize,
    dangling: &mut usize,
) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get_mut("reference") {
                if let Some(to) = resolve(r.as_str()) {
                    if *r != to {
                        *r = to;
                        *changed += 1;
                    }
                } else if r.starts_with("urn:") {
                    *dangling += 1;
                }
            }
            for (k, child) in o.iter_mut() {
                if k != "reference" {
                    rewrite(child, resolve, changed, dangling);
                }
            }
        }
        Value::Array(a) => {
            for child in a {
                rewrite(child, resolve, changed, dangling);
            }
        }
        _ => {}
    }
}

/// A resource's content without the server's metadata, for comparison.
fn content(mut v: Value) -> Value {
    let empty = match v.get_mut("meta").and_then(Value::as_object_mut) {
        Some(meta) => {
            meta.remove("versionId");
            meta.remove("lastUpdated");
            meta.is_empty()
        }
        None => false,
    };
    if empty && let Some(o) = v.as_object_mut() {
        o.remove("meta");
    }
    v
}

/// What the target holds at an id: the digest of its content, or a
/// deletion (a resource that was, which the import must not take over).
/// Two digests: of the whole content, and of the content with every
/// reference blanked (what differs in references alone may agree once the
/// resources they point at have moved).
#[derive(Clone, PartialEq, Eq)]
enum Held {
    Content(String, String),
    Deleted,
}

/// The content digests of `v`, as [`Held::Content`] holds them.
fn fingerprints(v: &Value) -> (String, String) {
    fn blank(v: &mut Value) {
        match v {
            Value::Object(o) => {
                for (k, child) in o.iter_mut() {
                    if k == "reference" {
                        *child = Value::Null;
                    } else {
                        blank(child);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(blank),
            _ => {}
        }
    }
    let mut b = v.clone();
    blank(&mut b);
    (fingerprint(v), fingerprint(&b))
}

/// The digest of a resource's content, as [`Held::Content`] compares it:
/// its members in name order (the server may store them in another).
fn fingerprint(v: &Value) -> String {
    fn sorted(v: Value) -> Value {
        match v {
            Value::Object(o) => {
                let mut members: Vec<(String, Value)> = o.into_iter().collect();
                members.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Object(members.into_iter().map(|(k, v)| (k, sorted(v))).collect())
            }
            Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
            other => other,
        }
    }
    digest(
        serde_json::to_string(&sorted(content(v.clone())))
            .unwrap_or_default()
            .as_bytes(),
    )
}

/// What the target holds at each of `keys` (absent: nothing).
async fn held(
    store: &Store,
    ctx: &Ctx,
    keys: Vec<(ResourceType, String)>,
) -> Result<HashMap<(ResourceType, String), Held>> {
    let mut out = HashMap::new();
    for chunk in keys.chunks(BATCH) {
        let chunk = chunk.to_vec();
        let found: Vec<((ResourceType, String), Held)> = store
            .read_with(ctx, move |tx| {
                let mut found = Vec::new();
                for (ty, id) in chunk {
                    if let Some(v) = tx.latest(ty, &id)? {
                        let h = if v.deleted {
                            Held::Deleted
                        } else {
                            serde_json::from_slice::<Value>(&v.body).map_or(Held::Deleted, |j| {
                                let (full, blind) = fingerprints(&j);
                                Held::Content(full, blind)
                            })
                        };
                        found.push(((ty, id), h));
                    }
                }
                Ok::<_, gp_store::StoreError>(found)
            })
            .await?;
        out.extend(found);
    }
    Ok(out)
}

/// A resource ready to send, with what was changed on the way.
struct Ready {
    origin: String,
    ty: ResourceType,
    id: String,
    resource: Value,
    changes: Vec<String>,
}

/// One source resource on its way.
struct Candidate {
    origin: String,
    scope: usize,
    ty: ResourceType,
    /// Its id in the source, if it had one, and its Bundle entry's full URL.
    source_id: Option<String>,
    full_url: Option<String>,
    /// The id it gets here.
    id: String,
    /// Why it does not keep its own id, when it does not.
    moved: Option<String>,
    /// The resource as the source has it, and serialised.
    resource: Value,
    original: String,
}

/// Imports the FHIR data at `path` (a file or a folder) into the practice.
///
/// Ids are kept unless taken: by a different resource the target already
/// holds (or held: a deleted one), or by a different resource of another
/// source earlier in the import. A resource whose id is taken gets one
/// made from its type, id and content (the same on every run), references
/// to it from its own source follow it, and the report lists it as
/// transformed; nothing the target holds is ever overwritten. Two
/// different resources with one id in a single source cannot be told apart:
/// the second is rejected.
pub async fn import_foreign(
    store: &Store,
    ctx: &Ctx,
    path: &Path,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Report> {
    let mut report = Report {
        package: path.display().to_string(),
        practice: format!("{} ({})", ctx.practice.name, ctx.practice.ods),
        started_at: gp_fhir::Instant::now().to_string(),
        ..Report::default()
    };
    let found = read_all(path, &mut report)?;
    // Every resource's id, and the names references use for it.
    let mut names = Names::default();
    let mut cands: Vec<Candidate> = Vec::with_capacity(found.len());
    // (type, id) -> the first candidate that claimed it in this import.
    let mut claimed: HashMap<(ResourceType, String), usize> = HashMap::new();
    for f in found {
        let Some(ty) = f.resource["resourceType"]
            .as_str()
            .and_then(ResourceType::parse)
        else {
            let what = f.resource["resourceType"]
                .as_str()
                .unwrap_or("(none)")
                .to_owned();
            report.reject_origin(&f.origin, format!("'{what}' is not an R4 resource type"));
            continue;
        };
        let source_id = f.resource["id"].as_str().map(str::to_owned);
        let id = target_id(ty.as_str(), source_id.as_deref(), &f.origin);
        let original = serde_json::to_string(&f.resource).unwrap_or_default();
        let mut c = Candidate {
            origin: f.origin,
            scope: f.scope,
            ty,
            source_id,
            full_url: f.full_url,
            id,
            moved: None,
            resource: f.resource,
            original,
        };
        if let Some(&first) = claimed.get(&(ty, c.id.clone())) {
            let other = &cands[first];
            if other.original == c.original {
                // The same resource twice: it is written once.
                report.count_outcome(ty.as_str(), &Outcome::AlreadyPresent);
                if other.scope != c.scope {
                    for name in c.names() {
                        names.add(c.scope, name, first);
                    }
                }
                continue;
            }
            if other.scope == c.scope {
                report.reject_record(
                    ty.as_str(),
                    &c.origin,
                    format!("{ty}/{}", c.id),
                    "a different resource with the same type and id appears earlier in the same source"
                        .into(),
                );
                continue;
            }
            let to = moved_id(ty, &c.id, &c.original);
            c.moved = Some(format!(
                "id '{}' is used by a different resource of another source in the import ({}): now '{to}'",
                c.id, other.origin
            ));
            c.id = to;
        }
        let index = cands.len();
        claimed.entry((ty, c.id.clone())).or_insert(index);
        for name in c.names() {
            names.add(c.scope, name, index);
        }
        cands.push(c);
    }
    // Ids the target already holds with other content move, until none
    // does: moving one changes the references, and so the content, of
    // those that point at it.
    let mut target = held(
        store,
        ctx,
        cands.iter().map(|c| (c.ty, c.id.clone())).collect(),
    )
    .await?;
    let mut rejected = vec![false; cands.len()];
    let rewritten = loop {
        let out: Vec<(Value, usize, usize)> = cands
            .iter()
            .map(|c| {
                let resolve = |r: &str| {
                    names
                        .resolve(c.scope, r)
                        .map(|i| format!("{}/{}", cands[i].ty, cands[i].id))
                };
                let mut v = c.resource.clone();
                v["id"] = Value::String(c.id.clone());
                let (mut changed, mut dangling) = (0, 0);
                rewrite(&mut v, &resolve, &mut changed, &mut dangling);
                if let Some(meta) = v.get_mut("meta").and_then(Value::as_object_mut) {
                    meta.remove("versionId");
                    meta.remove("lastUpdated");
                }
                (v, changed, dangling)
            })
            .collect();
        // Those that differ in more than references move first; those that
        // differ in references alone only once nothing else moves (they
        // may agree when what they point at has moved).
        let (mut own, mut refs) = (Vec::new(), Vec::new());
        for (i, (c, (v, _, _))) in cands.iter().zip(&out).enumerate() {
            if rejected[i] {
                continue;
            }
            match target.get(&(c.ty, c.id.clone())) {
                None => {}
                Some(Held::Content(full, blind)) => {
                    let (f, b) = fingerprints(v);
                    if *blind != b {
                        own.push((i, Held::Content(full.clone(), blind.clone())));
                    } else if *full != f {
                        refs.push((i, Held::Content(full.clone(), blind.clone())));
                    }
                }
                Some(Held::Deleted) => own.push((i, Held::Deleted)),
            }
        }
        let moved = if own.is_empty() { refs } else { own };
        if moved.is_empty() {
            break out;
        }
        let mut fetch = Vec::new();
        for (i, h) in moved {
            let c = &mut cands[i];
            if c.moved.is_some() {
                // Already moved, and taken there too: nowhere left to go.
                report.reject_record(
                    c.ty.as_str(),
                    &c.origin,
                    format!("{}/{}", c.ty, c.id),
                    "the target holds different resources both at its own id and at the one made for it"
                        .into(),
                );
                rejected[i] = true;
                continue;
            }
            let to = moved_id(c.ty, &c.id, &c.original);
            let what = if h == Held::Deleted {
                "a deleted resource"
            } else {
                "a different resource"
            };
            c.moved = Some(format!(
                "id '{}' is taken in the target by {what}, left as it is: now '{to}'",
                c.id
            ));
            c.id = to;
            fetch.push((c.ty, c.id.clone()));
        }
        target.extend(held(store, ctx, fetch).await?);
    };
    let mut ready = Vec::with_capacity(cands.len());
    for (i, (c, (resource, changed, dangling))) in cands.into_iter().zip(rewritten).enumerate() {
        if rejected[i] {
            continue;
        }
        if target.contains_key(&(c.ty, c.id.clone())) {
            // Held with this very content: a second run, or a resumed one.
            report.count_outcome(c.ty.as_str(), &Outcome::AlreadyPresent);
            continue;
        }
        let mut changes = Vec::new();
        match (&c.moved, &c.source_id) {
            (Some(why), _) => changes.push(why.clone()),
            (None, Some(s)) if *s != c.id => {
                changes.push(format!("id '{s}' is not a valid FHIR id: now '{}'", c.id));
            }
            (None, None) => changes.push(format!("no id: now '{}'", c.id)),
            (None, Some(_)) => {}
        }
        if changed > 0 {
            changes.push(format!("{changed} references rewritten to local ids"));
        }
        if dangling > 0 {
            changes.push(format!(
                "{dangling} references to resources outside the import kept as they were"
            ));
        }
        let meta = &c.resource["meta"];
        if !meta["versionId"].is_null() || !meta["lastUpdated"].is_null() {
            changes
                .push("the source's meta.versionId/lastUpdated replaced by this server's".into());
        }
        ready.push(Ready {
            origin: c.origin,
            ty: c.ty,
            id: c.id,
            resource,
            changes,
        });
    }
    let total = ready.len() as u64;
    let mut done = 0u64;
    for chunk in ready.chunks(BATCH) {
        write_chunk(store, ctx, chunk, &mut report).await?;
        done += chunk.len() as u64;
        progress(Progress { done, total });
    }
    report.finished_at = gp_fhir::Instant::now().to_string();
    Ok(report)
}

impl Candidate {
    /// The names references in the source use for it: `Type/id` and its
    /// Bundle entry's full URL.
    fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(s) = &self.source_id {
            out.push(format!("{}/{s}", self.ty));
        }
        if let Some(u) = &self.full_url {
            out.push(u.clone());
        }
        out
    }
}

/// Writes one chunk as a batch Bundle of `PUT`s (each resource one the
/// target does not hold).
async fn write_chunk(store: &Store, ctx: &Ctx, send: &[Ready], report: &mut Report) -> Result<()> {
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": send.iter().map(|r| json!({
            "resource": r.resource,
            "request": { "method": "PUT", "url": format!("{}/{}", r.ty, r.id) }
        })).collect::<Vec<_>>()
    });
    let (_, results) = store.bundle(ctx, &bundle, "").await?;
    for (r, result) in send.iter().zip(results) {
        let record = format!("{}/{}", r.ty, r.id);
        match result {
            Ok(resp) if resp.status < 300 => {
                if r.changes.is_empty() {
                    report.count_outcome(r.ty.as_str(), &Outcome::Imported);
                } else {
                    report.transformed(r.ty.as_str(), &r.origin, record, r.changes.join("; "));
                }
            }
            Ok(resp) => {
                let why = resp
                    .outcome
                    .map(|o| describe(&o))
                    .unwrap_or_else(|| format!("refused with status {}", resp.status));
                report.reject_record(r.ty.as_str(), &r.origin, record, why);
            }
            Err(e) => report.reject_record(r.ty.as_str(), &r.origin, record, e.to_string()),
        }
    }
    Ok(())
}

/// An OperationOutcome's errors in one line: diagnostics, at where.
fn describe(o: &gp_fhir::OperationOutcome) -> String {
    o.issues
        .iter()
        .filter(|i| {
            matches!(
                i.severity,
                gp_fhir::Severity::Error | gp_fhir::Severity::Fatal
            )
        })
        .map(|i| {
            if i.expression.is_empty() {
                i.diagnostics.clone()
            } else {
                format!("{} (at {})", i.diagnostics, i.expression.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}
