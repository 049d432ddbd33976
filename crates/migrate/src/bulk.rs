//! FHIR Bulk Data export (the Bulk Data Access IG's `$export`): jobs run in
//! the background, each writing one NDJSON file per resource type of the
//! practice's current resources, for the HTTP layer to report and serve.
//!
//! Jobs live in memory and their files under one folder; a restart ends
//! them (the folder is emptied at start) and clients kick off again, which
//! the IG allows (a poll of an unknown job answers 404).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use gp_fhir::search::index::IndexValue;
use gp_fhir::search::{self, Criterion, SearchQuery};
use gp_fhir::{Id, Instant, ResourceType};
use gp_store::{Ctx, Store};

/// What an export covers (export.html#endpoint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Level {
    /// `[base]/$export`: everything the practice holds.
    System,
    /// `[base]/Patient/$export`: every patient and their compartments.
    Patient,
    /// `[base]/Group/[id]/$export`: the group's patients and theirs.
    Group(String),
}

/// A kick-off request, checked.
#[derive(Clone, Debug)]
pub struct ExportRequest {
    pub level: Level,
    /// `_type`: only these types (all when empty).
    pub types: Vec<ResourceType>,
    /// `_since`: resources changed at or after this instant.
    pub since: Option<Instant>,
    /// `_typeFilter`: search parameters a type's resources must match
    /// (several for one type are ORed).
    pub type_filters: Vec<(ResourceType, Vec<(String, String)>)>,
    /// The kick-off URL, echoed in the manifest.
    pub url: String,
}

/// One file of a finished export.
#[derive(Clone, Debug)]
pub struct Output {
    pub ty: ResourceType,
    pub file: String,
    pub count: u64,
}

/// Where a job is.
#[derive(Clone, Debug)]
pub enum Status {
    Running {
        resources: u64,
        types_done: usize,
        types: usize,
    },
    Done {
        outputs: Vec<Output>,
    },
    Failed(String),
}

/// One export job.
pub struct Job {
    pub id: String,
    /// The practice and the user who asked: nobody else sees it.
    pub practice: i64,
    pub owner: String,
    pub request: ExportRequest,
    pub transaction_time: Instant,
    status: Mutex<Status>,
    cancelled: AtomicBool,
    resources: AtomicU64,
}

impl Job {
    pub fn status(&self) -> Status {
        match self.status.lock() {
            Ok(s) => match &*s {
                Status::Running {
                    types_done, types, ..
                } => Status::Running {
                    resources: self.resources.load(Ordering::Relaxed),
                    types_done: *types_done,
                    types: *types,
                },
                other => other.clone(),
            },
            Err(_) => Status::Failed("the job's state was lost".into()),
        }
    }

    fn set(&self, s: Status) {
        if let Ok(mut g) = self.status.lock() {
            *g = s;
        }
    }
}

/// The export jobs of a server.
pub struct Exports {
    dir: PathBuf,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
}

impl Exports {
    /// Jobs writing under `dir`, emptied now (jobs do not outlive a server).
    pub fn new(dir: &Path) -> Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Exports {
            dir: dir.to_owned(),
            jobs: Mutex::default(),
        })
    }

    /// Starts a job in the background and returns it.
    pub fn start(&self, store: Store, ctx: Ctx, request: ExportRequest) -> Arc<Job> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let job = Arc::new(Job {
            id: id.clone(),
            practice: ctx.practice.key,
            owner: ctx.actor.id().to_owned(),
            request,
            transaction_time: Instant::now(),
            status: Mutex::new(Status::Running {
                resources: 0,
                types_done: 0,
                types: 0,
            }),
            cancelled: AtomicBool::new(false),
            resources: AtomicU64::new(0),
        });
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.insert(id, job.clone());
        }
        let (dir, j) = (self.dir.join(&job.id), job.clone());
        tokio::spawn(async move {
            let out = run(&store, &ctx, &j, &dir).await;
            if j.cancelled.load(Ordering::Relaxed) {
                let _ = std::fs::remove_dir_all(&dir);
                return;
            }
            match out {
                Ok(outputs) => j.set(Status::Done { outputs }),
                Err(e) => {
                    tracing::warn!(job = %j.id, error = %format!("{e:#}"), "bulk export failed");
                    j.set(Status::Failed(format!("{e:#}")));
                }
            }
        });
        job
    }

    /// The job, if it exists and belongs to this practice and user.
    pub fn get(&self, id: &str, ctx: &Ctx) -> Option<Arc<Job>> {
        let jobs = self.jobs.lock().ok()?;
        jobs.get(id)
            .filter(|j| j.practice == ctx.practice.key && j.owner == ctx.actor.id())
            .cloned()
    }

    /// Cancels (or, once finished, deletes) a job and its files.
    pub fn cancel(&self, id: &str, ctx: &Ctx) -> bool {
        let Some(job) = self.get(id, ctx) else {
            return false;
        };
        job.cancelled.store(true, Ordering::Relaxed);
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.remove(id);
        }
        let _ = std::fs::remove_dir_all(self.dir.join(id));
        true
    }

    /// The path of a finished job's file, for its owner.
    pub fn file(&self, id: &str, name: &str, ctx: &Ctx) -> Option<PathBuf> {
        let job = self.get(id, ctx)?;
        let Status::Done { outputs } = job.status() else {
            return None;
        };
        outputs
            .iter()
            .find(|o| o.file == name)
            .map(|o| self.dir.join(id).join(&o.file))
    }
}

/// The types an export writes.
fn types_for(request: &ExportRequest) -> Vec<ResourceType> {
    let patient_types: Option<HashSet<ResourceType>> = match request.level {
        Level::System => None,
        Level::Patient | Level::Group(_) => {
            compartment_members().map(|m| m.keys().copied().collect())
        }
    };
    let mut types: Vec<ResourceType> = if request.types.is_empty() {
        // The audit trail is not part of the record: it is exported only
        // when `_type` names it.
        ResourceType::all()
            .filter(|t| t.as_str() != "AuditEvent")
            .collect()
    } else {
        request.types.clone()
    };
    if let Some(allowed) = patient_types {
        types.retain(|t| allowed.contains(t));
    }
    types.sort_by_key(|t| t.as_str());
    types
}

/// The reference parameters putting each type in a patient's compartment.
fn compartment_members() -> Option<HashMap<ResourceType, Vec<&'static str>>> {
    let Some(Criterion::Compartment { members, .. }) =
        search::compartment(ResourceType::parse("Patient")?, &Id::parse("x").ok()?, None)
    else {
        return None;
    };
    Some(members.into_iter().collect())
}

/// The patients a resource belongs to (by its compartment references).
fn patients_of(ty: ResourceType, id: &str, body: &[u8], params: &[&str]) -> Vec<String> {
    if ty.as_str() == "Patient" {
        return vec![id.to_owned()];
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    gp_search::extract_json(ty, &v)
        .into_iter()
        .filter(|e| params.contains(&e.code.as_str()))
        .filter_map(|e| match e.value {
            IndexValue::Reference {
                target_type: Some(t),
                target_id: Some(i),
                ..
            } if t == "Patient" => Some(i),
            _ => None,
        })
        .collect()
}

async fn run(store: &Store, ctx: &Ctx, job: &Job, dir: &Path) -> Result<Vec<Output>> {
    std::fs::create_dir_all(dir)?;
    let req = &job.request;
    let types = types_for(req);
    let members = compartment_members().unwrap_or_default();
    // For a Group, its patients (group.html: member.entity).
    let group: Option<HashSet<String>> = match &req.level {
        Level::Group(id) => {
            let g = store
                .read(
                    ctx,
                    ResourceType::parse("Group").context("Group")?,
                    Id::parse(id)?,
                )
                .await?;
            let v: serde_json::Value = serde_json::from_slice(&g.body)?;
            Some(
                v["member"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m["entity"]["reference"].as_str())
                    .filter_map(|r| r.strip_prefix("Patient/"))
                    .map(str::to_owned)
                    .collect(),
            )
        }
        _ => None,
    };
    let mut outputs = Vec::new();
    for (n, ty) in types.iter().enumerate() {
        job.set(Status::Running {
            resources: 0,
            types_done: n,
            types: types.len(),
        });
        let filters: Vec<&Vec<(String, String)>> = req
            .type_filters
            .iter()
            .filter(|(t, _)| t == ty)
            .map(|(_, q)| q)
            .collect();
        let queries: Vec<Vec<(String, String)>> = if filters.is_empty() {
            vec![Vec::new()]
        } else {
            filters.into_iter().cloned().collect()
        };
        let file = format!("{ty}.ndjson");
        let mut out: Option<std::io::BufWriter<std::fs::File>> = None;
        let mut count = 0u64;
        let mut written: HashSet<String> = HashSet::new();
        let params = members.get(ty).cloned().unwrap_or_default();
        for filter in queries {
            let mut q_params = filter.clone();
            if let Some(since) = req.since {
                q_params.push(("_lastUpdated".into(), format!("ge{since}")));
            }
            q_params.push(("_count".into(), "1000".into()));
            let base: SearchQuery = search::parse(Some(*ty), &q_params, true)
                .map_err(|o| anyhow::anyhow!("_typeFilter for {ty}: {}", o.to_json()))?;
            let mut after: Option<(ResourceType, String)> = None;
            loop {
                if job.cancelled.load(Ordering::Relaxed) {
                    return Ok(Vec::new());
                }
                let mut q = base.clone();
                q.after = after.clone();
                let page = store.search(ctx, Some(*ty), q).await?.page.entries;
                let Some(last) = page.last() else { break };
                after = Some((last.resource_type, last.id.clone()));
                for v in &page {
                    if let Some(g) = &group {
                        if !patients_of(*ty, &v.id, &v.body, &params)
                            .iter()
                            .any(|p| g.contains(p))
                        {
                            continue;
                        }
                    } else if req.level == Level::Patient
                        && patients_of(*ty, &v.id, &v.body, &params).is_empty()
                    {
                        continue;
                    }
                    if !written.insert(v.id.clone()) {
                        continue;
                    }
                    let w = match &mut out {
                        Some(w) => w,
                        None => out.insert(std::io::BufWriter::new(std::fs::File::create(
                            dir.join(&file),
                        )?)),
                    };
                    w.write_all(&v.body)?;
                    w.write_all(b"\n")?;
                    count += 1;
                    job.resources.fetch_add(1, Ordering::Relaxed);
                }
                if page.len() < 1000 {
                    break;
                }
            }
        }
        if let Some(mut w) = out {
            w.flush()?;
            outputs.push(Output {
                ty: *ty,
                file,
                count,
            });
        }
    }
    Ok(outputs)
}
