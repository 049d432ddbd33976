//! Importing data from other systems: FHIR Bundles (transaction, batch,
//! collection, searchset) and NDJSON, as files or a folder of them.
//!
//! Every resource is kept whole, extensions and codes OpenGP does not know
//! included. Ids are kept when they are valid FHIR ids and made from the
//! source's otherwise (the same source id always gives the same id, so a
//! second run lands on the same resources); references to resources in the
//! import (`urn:uuid:` full URLs, `Type/id`) are rewritten to the ids they
//! got. Resources are written through the same validated path as the API,
//! as batch entries, so one bad resource is rejected alone; a resource the
//! practice already holds with the same content is left alone.

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
    for file in files(path)? {
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

/// Rewrites `reference`s found in `map`, returning how many changed and the
/// local or `urn:` references left pointing outside the import.
fn rewrite(
    v: &mut Value,
    map: &HashMap<String, String>,
    changed: &mut usize,
    dangling: &mut usize,
) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get_mut("reference") {
                if let Some(to) = map.get(r.as_str()) {
                    if r != to {
                        *r = to.clone();
                        *changed += 1;
                    }
                } else if r.starts_with("urn:") {
                    *dangling += 1;
                }
            }
            for (k, child) in o.iter_mut() {
                if k != "reference" {
                    rewrite(child, map, changed, dangling);
                }
            }
        }
        Value::Array(a) => {
            for child in a {
                rewrite(child, map, changed, dangling);
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

/// A resource ready to send, with what was changed on the way.
struct Ready {
    origin: String,
    ty: ResourceType,
    id: String,
    resource: Value,
    changes: Vec<String>,
}

/// Imports the FHIR data at `path` (a file or a folder) into the practice.
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
    // Ids first, so that references can point forwards.
    let mut map: HashMap<String, String> = HashMap::new();
    let mut targets: Vec<Option<(ResourceType, String)>> = Vec::with_capacity(found.len());
    for f in &found {
        let ty = f.resource["resourceType"]
            .as_str()
            .and_then(ResourceType::parse);
        let Some(ty) = ty else {
            targets.push(None);
            continue;
        };
        let source = f.resource["id"].as_str();
        let id = target_id(ty.as_str(), source, &f.origin);
        let local = format!("{ty}/{id}");
        if let Some(s) = source {
            map.insert(format!("{ty}/{s}"), local.clone());
        }
        if let Some(u) = &f.full_url {
            map.insert(u.clone(), local.clone());
        }
        targets.push(Some((ty, id)));
    }
    let mut ready = Vec::with_capacity(found.len());
    let mut seen: HashMap<(ResourceType, String), String> = HashMap::new();
    for (f, target) in found.into_iter().zip(targets) {
        let Some((ty, id)) = target else {
            let what = f.resource["resourceType"]
                .as_str()
                .unwrap_or("(none)")
                .to_owned();
            report.reject_origin(&f.origin, format!("'{what}' is not an R4 resource type"));
            continue;
        };
        let mut resource = f.resource;
        let mut changes = Vec::new();
        let source = resource["id"].as_str().map(str::to_owned);
        if source.as_deref() != Some(id.as_str()) {
            changes.push(match &source {
                Some(s) => format!("id '{s}' is not a valid FHIR id: now '{id}'"),
                None => format!("no id: now '{id}'"),
            });
            resource["id"] = Value::String(id.clone());
        }
        let (mut changed, mut dangling) = (0, 0);
        rewrite(&mut resource, &map, &mut changed, &mut dangling);
        if changed > 0 {
            changes.push(format!("{changed} references rewritten to local ids"));
        }
        if dangling > 0 {
            changes.push(format!(
                "{dangling} references to resources outside the import kept as they were"
            ));
        }
        if let Some(meta) = resource.get_mut("meta").and_then(Value::as_object_mut) {
            let had = meta.remove("versionId").is_some() | meta.remove("lastUpdated").is_some();
            if had {
                changes.push(
                    "the source's meta.versionId/lastUpdated replaced by this server's".into(),
                );
            }
        }
        let key = (ty, id.clone());
        let this = serde_json::to_string(&resource).unwrap_or_default();
        match seen.get(&key) {
            Some(prev) if *prev == this => {
                report.count_outcome(ty.as_str(), &Outcome::AlreadyPresent);
                continue;
            }
            Some(_) => {
                report.reject_record(
                    ty.as_str(),
                    &f.origin,
                    format!("{ty}/{id}"),
                    "a different resource with the same type and id appears earlier in the source"
                        .into(),
                );
                continue;
            }
            None => {
                seen.insert(key, this);
            }
        }
        ready.push(Ready {
            origin: f.origin,
            ty,
            id,
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

/// Writes one chunk as a batch Bundle of `PUT`s, leaving alone what the
/// practice already holds unchanged.
async fn write_chunk(store: &Store, ctx: &Ctx, chunk: &[Ready], report: &mut Report) -> Result<()> {
    let keys: Vec<(ResourceType, String)> = chunk.iter().map(|r| (r.ty, r.id.clone())).collect();
    let current: Vec<Option<Value>> = store
        .read_with(ctx, move |tx| {
            keys.iter()
                .map(|(ty, id)| {
                    Ok(tx
                        .latest(*ty, id)?
                        .filter(|v| !v.deleted)
                        .and_then(|v| serde_json::from_slice(&v.body).ok()))
                })
                .collect()
        })
        .await?;
    let mut send = Vec::new();
    for (r, have) in chunk.iter().zip(current) {
        if have.is_some_and(|h| content(h) == content(r.resource.clone())) {
            report.count_outcome(r.ty.as_str(), &Outcome::AlreadyPresent);
        } else {
            send.push(r);
        }
    }
    if send.is_empty() {
        return Ok(());
    }
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
