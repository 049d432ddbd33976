//! Loading a practice package into a store, accounting for every record.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Read};
use std::path::Path;

use anyhow::{Context, Result, bail};
use gp_fhir::search::index::IndexEntry;
use gp_fhir::{DateRange, Id, Instant, ResourceType};
use gp_store::{Ctx, NewVersion, Store, StoreError};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{
    ACCOUNTS_FILE, AUDIT_FILE, FORMAT, FORMAT_VERSION, Line, MANIFEST_FILE, Manifest, Progress,
    VERSIONS_FILE as VERSIONS, digest, hex,
};

/// Versions written per transaction. Each batch commits whole or not at
/// all, so an import stopped at any point resumes cleanly.
const BATCH: usize = 2_000;

/// What became of one source record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// Written as it was in the source.
    Imported,
    /// Written with changes the report lists (ids, references).
    Transformed,
    /// The target already held this exact version (a second run, or a
    /// resumed one): nothing written.
    AlreadyPresent,
    Rejected,
}

/// A record that was not imported, and why.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    /// Where in the source: `versions.ndjson:12`, `bundle.json#3`.
    pub origin: String,
    /// `Type/id/_history/version`, when the line said that much.
    pub record: Option<String>,
    pub reason: String,
}

/// Counts of one resource type.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TypeCounts {
    pub source: u64,
    pub imported: u64,
    pub transformed: u64,
    pub already_present: u64,
    pub rejected: u64,
}

impl TypeCounts {
    fn add(&mut self, o: &Outcome) {
        self.source += 1;
        match o {
            Outcome::Imported => self.imported += 1,
            Outcome::Transformed => self.transformed += 1,
            Outcome::AlreadyPresent => self.already_present += 1,
            Outcome::Rejected => self.rejected += 1,
        }
    }

    /// Every source record is imported, already present or rejected.
    pub fn balances(&self) -> bool {
        self.source == self.imported + self.transformed + self.already_present + self.rejected
    }
}

/// The reconciliation of one import: every source record accounted for.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub package: String,
    pub practice: String,
    pub started_at: String,
    pub finished_at: String,
    /// By resource type (`"(unreadable)"` for lines that named none).
    pub types: BTreeMap<String, TypeCounts>,
    pub totals: TypeCounts,
    pub rejections: Vec<Rejection>,
    pub transformations: Vec<Transformation>,
}

/// A record written with changes, and what they were.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Transformation {
    pub origin: String,
    pub record: String,
    pub changes: String,
}

impl Report {
    fn count(&mut self, ty: &str, o: &Outcome) {
        self.types.entry(ty.to_owned()).or_default().add(o);
        self.totals.add(o);
    }

    fn reject(&mut self, ty: &str, line: u64, record: Option<String>, reason: String) {
        self.count(ty, &Outcome::Rejected);
        self.rejections.push(Rejection {
            origin: format!("{VERSIONS}:{line}"),
            record,
            reason,
        });
    }

    /// An audit record rejected (its link, when the line said that much).
    pub(crate) fn reject_audit(&mut self, origin: &str, record: Option<String>, reason: String) {
        self.count(crate::trail::AUDIT, &Outcome::Rejected);
        self.rejections.push(Rejection {
            origin: origin.to_owned(),
            record,
            reason,
        });
    }

    /// A record the source could not even say the type of.
    pub(crate) fn reject_origin(&mut self, origin: &str, reason: String) {
        self.count("(unreadable)", &Outcome::Rejected);
        self.rejections.push(Rejection {
            origin: origin.to_owned(),
            record: None,
            reason,
        });
    }

    pub(crate) fn reject_record(&mut self, ty: &str, origin: &str, record: String, reason: String) {
        self.count(ty, &Outcome::Rejected);
        self.rejections.push(Rejection {
            origin: origin.to_owned(),
            record: Some(record),
            reason,
        });
    }

    pub(crate) fn count_outcome(&mut self, ty: &str, o: &Outcome) {
        self.count(ty, o);
    }

    pub(crate) fn transformed(&mut self, ty: &str, origin: &str, record: String, changes: String) {
        self.count(ty, &Outcome::Transformed);
        self.transformations.push(Transformation {
            origin: origin.to_owned(),
            record,
            changes,
        });
    }

    /// The report for people.
    pub fn to_markdown(&self) -> String {
        let mut s = format!(
            "# Import reconciliation\n\nPackage: `{}`  \nPractice: {}  \nStarted: {}  \nFinished: {}\n\n",
            self.package, self.practice, self.started_at, self.finished_at
        );
        s.push_str("| type | in source | imported | transformed | already present | rejected |\n|---|---:|---:|---:|---:|---:|\n");
        for (ty, c) in &self.types {
            s.push_str(&format!(
                "| {ty} | {} | {} | {} | {} | {} |\n",
                c.source, c.imported, c.transformed, c.already_present, c.rejected
            ));
        }
        let t = &self.totals;
        s.push_str(&format!(
            "| **total** | **{}** | **{}** | **{}** | **{}** | **{}** |\n\n",
            t.source, t.imported, t.transformed, t.already_present, t.rejected
        ));
        s.push_str(if t.balances() {
            "Every source record is accounted for.\n"
        } else {
            "**The totals do not balance.**\n"
        });
        if !self.transformations.is_empty() {
            let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
            for t in &self.transformations {
                for c in t.changes.split("; ") {
                    let kind = c.trim_start_matches(|ch: char| ch.is_ascii_digit() || ch == ' ');
                    let kind = kind.split(':').next().unwrap_or(kind);
                    *kinds.entry(kind).or_insert(0) += 1;
                }
            }
            s.push_str("\n## Transformed\n\n| change | records |\n|---|---:|\n");
            for (kind, n) in kinds {
                s.push_str(&format!("| {} | {n} |\n", kind.replace('|', "\\|")));
            }
            s.push_str("\nEach record and its changes are listed in the JSON report.\n");
        }
        if !self.rejections.is_empty() {
            s.push_str("\n## Rejected\n\n| where | record | reason |\n|---|---|---|\n");
            for r in &self.rejections {
                s.push_str(&format!(
                    "| {} | {} | {} |\n",
                    r.origin,
                    r.record.as_deref().unwrap_or("-"),
                    r.reason.replace('|', "\\|")
                ));
            }
        }
        s
    }
}

/// Reads and checks the manifest, and that the versions file is the one it
/// sealed. Nothing is written before this passes.
pub(crate) fn open(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "{} has no manifest: it is not a practice package, or its export did not finish",
            dir.display()
        )
    })?;
    let m: Manifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a valid manifest", path.display()))?;
    if m.format != FORMAT || m.format_version != FORMAT_VERSION {
        bail!(
            "{} is a '{}' version {} package; this OpenGP reads '{FORMAT}' version {FORMAT_VERSION}",
            dir.display(),
            m.format,
            m.format_version
        );
    }
    for (name, sha256) in [
        (&m.versions_file, &m.versions_sha256),
        (&m.accounts_file, &m.accounts_sha256),
        (&m.audit_file, &m.audit_sha256),
    ] {
        if [VERSIONS, ACCOUNTS_FILE, AUDIT_FILE]
            .iter()
            .all(|known| known != name)
        {
            bail!("the manifest names an unknown file '{name}'");
        }
        let mut file =
            std::fs::File::open(dir.join(name)).with_context(|| format!("opening {name}"))?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
        }
        if hex(&hash.finalize()) != *sha256 {
            bail!(
                "{name} does not match the SHA-256 its manifest gives: the package is damaged or was changed"
            );
        }
    }
    Ok(m)
}

/// The package's `accounts.json`, after [`open`] has checked its seal.
pub(crate) fn accounts(dir: &Path, m: &Manifest) -> Result<crate::Accounts> {
    serde_json::from_slice(&std::fs::read(dir.join(&m.accounts_file))?)
        .with_context(|| format!("reading {}", m.accounts_file))
}

/// A line checked and ready to write.
struct Ready {
    line: u64,
    ty: ResourceType,
    id: String,
    version: u64,
    last_updated: Instant,
    deleted: bool,
    author: String,
    body: Vec<u8>,
    sha256: String,
    /// The body parsed (none for a deletion), for index extraction.
    json: Option<serde_json::Value>,
}

impl Ready {
    fn record(&self) -> String {
        format!("{}/{}/_history/{}", self.ty, self.id, self.version)
    }
}

/// Checks one line: well-formed, a known type and a valid id, the body's
/// digest as recorded, and the body agreeing with the line about what it is.
fn check(text: &str, line: u64) -> Result<Ready, (String, Option<String>, String)> {
    let unreadable = "(unreadable)".to_owned();
    let l: Line<'_> = serde_json::from_str(text)
        .map_err(|e| (unreadable.clone(), None, format!("not a package line: {e}")))?;
    let record = Some(format!(
        "{}/{}/_history/{}",
        l.resource_type, l.id, l.version
    ));
    let fail = |why: String| (l.resource_type.to_owned(), record.clone(), why);
    let ty = ResourceType::parse(l.resource_type)
        .ok_or_else(|| fail(format!("'{}' is not an R4 resource type", l.resource_type)))?;
    Id::parse(l.id).map_err(|e| fail(e.to_string()))?;
    if l.version == 0 {
        return Err(fail("versions count from 1".into()));
    }
    let last_updated = DateRange::parse(l.last_updated)
        .map(|r| r.low)
        .map_err(|_| fail(format!("'{}' is not an instant", l.last_updated)))?;
    let body = match (l.deleted, l.resource) {
        (true, None) => Vec::new(),
        (false, Some(raw)) => raw.get().as_bytes().to_vec(),
        (true, Some(_)) => return Err(fail("a deletion carries no resource".into())),
        (false, None) => return Err(fail("the resource is missing".into())),
    };
    if digest(&body) != l.sha256 {
        return Err(fail(
            "the resource does not match its SHA-256: it was changed or damaged".into(),
        ));
    }
    let mut json = None;
    if !l.deleted {
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| fail(format!("the resource is not JSON: {e}")))?;
        let says = (
            v["resourceType"].as_str(),
            v["id"].as_str(),
            v["meta"]["versionId"].as_str(),
        );
        let version = l.version.to_string();
        if says != (Some(l.resource_type), Some(l.id), Some(version.as_str())) {
            return Err(fail(format!(
                "the resource says it is {}/{}/_history/{}",
                says.0.unwrap_or("?"),
                says.1.unwrap_or("?"),
                says.2.unwrap_or("?")
            )));
        }
        json = Some(v);
    }
    Ok(Ready {
        line,
        ty,
        id: l.id.to_owned(),
        version: l.version,
        last_updated,
        deleted: l.deleted,
        author: l.author.to_owned(),
        body,
        sha256: l.sha256.to_owned(),
        json,
    })
}

/// A line that failed its checks: type (or "(unreadable)"), line, record, why.
type Refused = (String, u64, Option<String>, String);

/// Checks a batch of lines and extracts the index entries of each
/// resource's last version in it (every insert replaces a resource's
/// entries), spread over the cores. Blocking.
type Prepared = (Vec<(Ready, Vec<IndexEntry>)>, Vec<Refused>);

fn prepare(lines: Vec<(u64, String)>) -> Result<Prepared> {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(1);
    let chunk = lines.len().div_ceil(workers).max(1);
    let checked: Result<Vec<Result<Ready, Refused>>, _> = std::thread::scope(|s| {
        let handles: Vec<_> = lines
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|(n, text)| {
                            check(text, *n).map_err(|(ty, record, why)| (ty, *n, record, why))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join())
            .collect::<Result<Vec<_>, _>>()
            .map(|parts| parts.into_iter().flatten().collect())
    });
    let checked = checked.map_err(|_| anyhow::anyhow!("a worker checking the package failed"))?;
    let mut ready = Vec::with_capacity(checked.len());
    let mut refused = Vec::new();
    for c in checked {
        match c {
            Ok(r) => ready.push(r),
            Err(e) => refused.push(e),
        }
    }
    let mut last: HashMap<(ResourceType, String), usize> = HashMap::new();
    for (i, r) in ready.iter().enumerate() {
        last.insert((r.ty, r.id.clone()), i);
    }
    let wanted: Vec<bool> = (0..ready.len())
        .map(|i| last.get(&(ready[i].ty, ready[i].id.clone())) == Some(&i))
        .collect();
    let chunk = ready.len().div_ceil(workers).max(1);
    let indexes: Result<Vec<Vec<IndexEntry>>, _> = std::thread::scope(|s| {
        let handles: Vec<_> = ready
            .chunks(chunk)
            .zip(wanted.chunks(chunk))
            .map(|(part, want)| {
                s.spawn(move || {
                    part.iter()
                        .zip(want)
                        .map(|(r, w)| match (&r.json, w) {
                            (Some(v), true) => gp_search::extract_json(r.ty, v),
                            _ => Vec::new(),
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join())
            .collect::<Result<Vec<_>, _>>()
            .map(|parts| parts.into_iter().flatten().collect())
    });
    let indexes = indexes.map_err(|_| anyhow::anyhow!("a worker indexing the package failed"))?;
    let ready = ready
        .into_iter()
        .zip(indexes)
        .map(|(mut r, index)| {
            r.json = None;
            (r, index)
        })
        .collect();
    Ok((ready, refused))
}

/// A practice package whose manifest, format and seals [`check_package`] found
/// sound: what [`import`] loads, so that nothing is read from one that is not.
pub struct Checked {
    dir: std::path::PathBuf,
    pub manifest: Manifest,
}

/// Checks the package in `dir` (its manifest, format and the SHA-256 seal
/// of each file) without writing anything.
pub fn check_package(dir: &Path) -> Result<Checked> {
    Ok(Checked {
        dir: dir.to_path_buf(),
        manifest: open(dir)?,
    })
}

/// Loads the checked package into the practice of `ctx`, keeping ids,
/// version numbers, instants and authors. A version the target already
/// holds identically is skipped, so a second run changes nothing and a run
/// after an interrupted one finishes the job.
pub async fn import(
    store: &Store,
    ctx: &Ctx,
    package: &Checked,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Report> {
    let (dir, manifest) = (package.dir.as_path(), &package.manifest);
    let mut report = Report {
        package: dir.display().to_string(),
        practice: format!("{} ({})", ctx.practice.name, ctx.practice.ods),
        started_at: Instant::now().to_string(),
        ..Report::default()
    };
    let file = std::fs::File::open(dir.join(&manifest.versions_file))?;
    let mut lines = std::io::BufReader::with_capacity(1 << 20, file).lines();
    let total = manifest.totals.versions;
    let mut n = 0u64;
    let mut done = false;
    // A pipeline: while the writer commits one batch, the next is read,
    // checked and indexed on the other cores.
    let mut writing: Option<tokio::task::JoinHandle<Result<Vec<Written>>>> = None;
    while !done {
        let mut batch = Vec::with_capacity(BATCH);
        while batch.len() < BATCH {
            let Some(text) = lines.next() else {
                done = true;
                break;
            };
            n += 1;
            let text = text.with_context(|| format!("reading line {n}"))?;
            if !text.trim().is_empty() {
                batch.push((n, text));
            }
        }
        let (ready, refused) = tokio::task::spawn_blocking(move || prepare(batch)).await??;
        for (ty, line, record, reason) in refused {
            report.reject(&ty, line, record, reason);
        }
        if let Some(w) = writing.take() {
            record(&mut report, w.await??);
        }
        if !ready.is_empty() {
            let (store, ctx) = (store.clone(), ctx.clone());
            writing = Some(tokio::spawn(async move {
                write_batch(&store, &ctx, ready).await
            }));
        }
        progress(Progress { done: n, total });
    }
    if let Some(w) = writing.take() {
        record(&mut report, w.await??);
    }
    // The accounts, policy and apps, then the audit trail.
    // Read record by record: what cannot be read is rejected alone.
    let bytes = std::fs::read(dir.join(&manifest.accounts_file))
        .with_context(|| format!("reading {}", manifest.accounts_file))?;
    let accounts = crate::accounts::parse(&bytes, &manifest.accounts, &mut report);
    crate::accounts::import(store, ctx, accounts, &mut report).await?;
    crate::trail::import(store, ctx, dir, &mut report).await?;
    report.finished_at = Instant::now().to_string();
    Ok(report)
}

type Written = (ResourceType, u64, String, Result<Outcome, String>);

fn record(report: &mut Report, written: Vec<Written>) {
    for (ty, line, record, outcome) in written {
        match outcome {
            Ok(o) => report.count(ty.as_str(), &o),
            Err(reason) => report.reject(ty.as_str(), line, Some(record), reason),
        }
    }
}

/// What becomes of one version of a batch.
enum Plan {
    /// Nothing to write: already there, or refused.
    Known(Result<Outcome, String>),
    /// Written, with this restriction on its current row.
    Write { restricted: Option<String> },
}

/// Writes a prepared batch in one transaction.
async fn write_batch(
    store: &Store,
    ctx: &Ctx,
    batch: Vec<(Ready, Vec<IndexEntry>)>,
) -> Result<Vec<Written>> {
    let written = store
        .write_with(ctx, move |tx| {
            // What the target holds of the whole batch, in one lookup; then
            // all the inserts (a store that buffers writes, PostgreSQL,
            // sends them as a few multi-row statements). Versions planned
            // in this batch count as held for the ones after them.
            let keys: Vec<(ResourceType, &str, u64)> = batch
                .iter()
                .map(|(r, _)| (r.ty, r.id.as_str(), r.version))
                .collect();
            let mut held: Vec<Option<gp_store::Held>> = vec![None; batch.len()];
            for h in tx.held(&keys)? {
                if let Some(slot) = held.get_mut(h.key) {
                    *slot = Some(h);
                }
            }
            let mut planned: HashMap<(ResourceType, &str, u64), &str> = HashMap::new();
            // Per resource planned here: its highest version and that
            // version's restriction (a deletion keeps its predecessor's).
            let mut top: HashMap<(ResourceType, &str), (u64, Option<String>)> = HashMap::new();
            let mut plan = Vec::with_capacity(batch.len());
            for ((r, _), have) in batch.iter().zip(&held) {
                let record = r.record();
                let different = || format!("the target already holds a different {record}");
                let later = |v: u64| {
                    format!(
                        "the target already holds a later version ({v}) of {}/{}",
                        r.ty, r.id
                    )
                };
                let mine = top.get(&(r.ty, r.id.as_str()));
                let highest = mine
                    .map(|t| t.0)
                    .max(have.as_ref().map(|h| h.latest))
                    .unwrap_or(0);
                let p = if let Some(&sha) = planned.get(&(r.ty, r.id.as_str(), r.version)) {
                    Plan::Known(if sha == r.sha256 {
                        Ok(Outcome::AlreadyPresent)
                    } else {
                        Err(different())
                    })
                } else if let Some(body) = have.as_ref().and_then(|h| h.body.as_ref()) {
                    Plan::Known(if digest(body) == r.sha256 {
                        Ok(Outcome::AlreadyPresent)
                    } else {
                        Err(different())
                    })
                } else if highest > r.version {
                    Plan::Known(Err(later(highest)))
                } else {
                    let restricted = if r.deleted {
                        match mine {
                            Some(t) => t.1.clone(),
                            None => have.as_ref().and_then(|h| h.restricted.clone()),
                        }
                    } else {
                        gp_store::access::restriction(r.ty, &r.id, &r.body)
                    };
                    planned.insert((r.ty, r.id.as_str(), r.version), r.sha256.as_str());
                    top.insert((r.ty, r.id.as_str()), (r.version, restricted.clone()));
                    Plan::Write { restricted }
                };
                plan.push(p);
            }
            let mut out = Vec::with_capacity(batch.len());
            for ((r, index), p) in batch.into_iter().zip(plan) {
                let record = r.record();
                let outcome = match p {
                    Plan::Known(known) => known,
                    Plan::Write { restricted } => {
                        tx.insert(&NewVersion {
                            resource_type: r.ty,
                            id: r.id.clone(),
                            version: r.version,
                            last_updated: r.last_updated,
                            deleted: r.deleted,
                            body: r.body,
                            index,
                            author: Some(r.author),
                            restricted,
                        })?;
                        Ok(Outcome::Imported)
                    }
                };
                out.push((r.ty, r.line, record, outcome));
            }
            Ok::<_, StoreError>(out)
        })
        .await?;
    Ok(written)
}
