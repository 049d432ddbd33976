//! FHIR Bulk Data export (the Bulk Data Access IG's `$export`): jobs run in
//! the background, each streaming one NDJSON file per resource type of the
//! practice's resources as they were at the job's `transactionTime` (each
//! resource's latest version written by then: one changed, deleted or
//! created after the kick-off is exported as it was, or not at all) to
//! disk, for the HTTP layer to report and serve.
//!
//! Each job is a folder under the server's `bulk-export` folder: its files
//! and `job.json`, the job's state (who asked, the request, running, done
//! with its outputs, or failed with the reason), written atomically at
//! kick-off and when the job ends. So a finished job outlives a restart and
//! its files are still served to whoever asked; a job the server stopped
//! (or crashed) in the middle of is found at the next start and run again
//! from its start, with the same id and `transactionTime` (so the same
//! snapshot), at once with the context of the session or app token that
//! started it, even one that has since ended, as long as its owner may
//! still export (else it fails, saying why). Finished jobs and
//! their files are deleted by `DELETE` or once the retention period has
//! passed.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::{Context, Result};
use gp_fhir::search::index::IndexValue;
use gp_fhir::search::{self, Criterion, SearchQuery, Total};
use gp_fhir::{Id, Instant, ResourceType};
use gp_store::{Ctx, Store};
use serde::{Deserialize, Serialize};

/// How long a finished job's files are kept unless configured otherwise.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// The name of a job's state file in its folder.
const JOB_FILE: &str = "job.json";

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
    /// Finished at `at`; its files are kept until `expires`.
    Done {
        outputs: Vec<Output>,
        expires: Instant,
    },
    Failed {
        why: String,
        expires: Instant,
    },
}

/// One export job.
pub struct Job {
    pub id: String,
    /// The practice and the user who asked: nobody else sees it.
    pub practice: i64,
    pub owner: String,
    /// The owner's session or SMART app access token at kick-off (the
    /// hash of its token, as the store keeps it), for running the job
    /// again at the next start with the owner's authority
    /// (`Store::resolve_owner`).
    session: Option<String>,
    pub request: ExportRequest,
    pub transaction_time: Instant,
    status: Mutex<Status>,
    /// `DELETE`d: stop, and remove the files.
    cancelled: AtomicBool,
    /// The server is stopping: stop, leaving `job.json` as it was (running),
    /// for the next start to take up again.
    interrupted: AtomicBool,
    /// Recorded as running but not running: the server stopped in the
    /// middle of it. The start ([`Exports::resume_in_background`]) or its
    /// owner's next poll starts it again; unless that comes first, it is
    /// deleted at this instant.
    stopped: Mutex<Option<Instant>>,
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
            Err(_) => Status::Failed {
                why: "the job's state was lost".into(),
                expires: Instant::now(),
            },
        }
    }

    fn set(&self, s: Status) {
        if let Ok(mut g) = self.status.lock() {
            *g = s;
        }
    }

    fn halted(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || self.interrupted.load(Ordering::Relaxed)
    }

    fn expires(&self) -> Option<Instant> {
        match self.status() {
            Status::Running { .. } => self.stopped.lock().ok().and_then(|s| *s),
            Status::Done { expires, .. } | Status::Failed { expires, .. } => Some(expires),
        }
    }
}

/// `job.json`: a job as stored beside its files.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobFile {
    id: String,
    practice: i64,
    owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<String>,
    /// `system`, `patient` or `group`.
    level: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    type_filters: Vec<(String, Vec<(String, String)>)>,
    url: String,
    transaction_time: String,
    /// `running`, `done` or `failed`.
    state: String,
    #[serde(default)]
    outputs: Vec<OutputFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct OutputFile {
    #[serde(rename = "type")]
    ty: String,
    file: String,
    count: u64,
}

impl JobFile {
    fn of(job: &Job) -> JobFile {
        let r = &job.request;
        let (level, group) = match &r.level {
            Level::System => ("system", None),
            Level::Patient => ("patient", None),
            Level::Group(id) => ("group", Some(id.clone())),
        };
        let (state, outputs, error, expires) = match job.status() {
            Status::Running { .. } => ("running", Vec::new(), None, None),
            Status::Done { outputs, expires } => ("done", outputs, None, Some(expires)),
            Status::Failed { why, expires } => ("failed", Vec::new(), Some(why), Some(expires)),
        };
        JobFile {
            id: job.id.clone(),
            practice: job.practice,
            owner: job.owner.clone(),
            session: job.session.clone(),
            level: level.into(),
            group,
            types: r.types.iter().map(|t| t.as_str().to_owned()).collect(),
            since: r.since.map(Instant::to_fhir),
            type_filters: r
                .type_filters
                .iter()
                .map(|(t, q)| (t.as_str().to_owned(), q.clone()))
                .collect(),
            url: r.url.clone(),
            transaction_time: job.transaction_time.to_fhir(),
            state: state.into(),
            outputs: outputs
                .into_iter()
                .map(|o| OutputFile {
                    ty: o.ty.as_str().to_owned(),
                    file: o.file,
                    count: o.count,
                })
                .collect(),
            error,
            expires: expires.map(Instant::to_fhir),
        }
    }

    /// The job this file describes; a job that was running when the server
    /// stopped is running again, waiting to be started again (for at most
    /// `retention`).
    fn job(self, retention: Duration) -> Result<Job> {
        let ty = |t: &str| ResourceType::parse(t).with_context(|| format!("type '{t}'"));
        let instant = |s: &str| {
            gp_fhir::DateRange::parse(s)
                .map(|r| r.low)
                .with_context(|| format!("instant '{s}'"))
        };
        let level = match (self.level.as_str(), self.group) {
            ("system", _) => Level::System,
            ("patient", _) => Level::Patient,
            ("group", Some(id)) => Level::Group(id),
            (other, _) => anyhow::bail!("level '{other}'"),
        };
        let request = ExportRequest {
            level,
            types: self.types.iter().map(|t| ty(t)).collect::<Result<_>>()?,
            since: self.since.as_deref().map(instant).transpose()?,
            type_filters: self
                .type_filters
                .into_iter()
                .map(|(t, q)| Ok((ty(&t)?, q)))
                .collect::<Result<_>>()?,
            url: self.url,
        };
        let transaction_time = instant(&self.transaction_time)?;
        let expires = match self.expires.as_deref() {
            Some(e) => instant(e)?,
            None => later(Instant::now(), retention),
        };
        let status = match self.state.as_str() {
            "done" => Status::Done {
                outputs: self
                    .outputs
                    .into_iter()
                    .map(|o| {
                        Ok(Output {
                            ty: ty(&o.ty)?,
                            file: o.file,
                            count: o.count,
                        })
                    })
                    .collect::<Result<_>>()?,
                expires,
            },
            "failed" => Status::Failed {
                why: self.error.unwrap_or_default(),
                expires,
            },
            "running" => Status::Running {
                resources: 0,
                types_done: 0,
                types: 0,
            },
            other => anyhow::bail!("state '{other}'"),
        };
        let stopped = (self.state == "running").then_some(expires);
        Ok(Job {
            id: self.id,
            practice: self.practice,
            owner: self.owner,
            session: self.session,
            request,
            transaction_time,
            status: Mutex::new(status),
            cancelled: AtomicBool::new(false),
            interrupted: AtomicBool::new(false),
            stopped: Mutex::new(stopped),
            resources: AtomicU64::new(0),
        })
    }
}

/// `at` plus `d`.
fn later(at: Instant, d: Duration) -> Instant {
    Instant::from_millis(
        at.millis()
            .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
    )
}

/// Writes `bytes` to `path` durably: a temporary file, synced, renamed.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The export jobs of a server.
pub struct Exports {
    dir: PathBuf,
    retention: Duration,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    /// The tasks of running jobs, waited for at shutdown.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Exports {
    /// Jobs under `dir`, each kept `retention` after it finished. The jobs
    /// found there are taken up again: finished ones served as they were,
    /// one that was running run again by [`Exports::resume_in_background`]
    /// or at its owner's next poll ([`Exports::poll`]); expired ones and
    /// anything unreadable are deleted.
    pub fn open(dir: &Path, retention: Duration) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut jobs = HashMap::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            match load(&path, retention) {
                Ok(job) => {
                    jobs.insert(job.id.clone(), Arc::new(job));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "deleting an unreadable bulk export job");
                    remove(&path);
                }
            }
        }
        let exports = Exports {
            dir: dir.to_owned(),
            retention,
            jobs: Mutex::new(jobs),
            tasks: Mutex::default(),
        };
        exports.sweep();
        Ok(exports)
    }

    /// Deletes finished jobs whose retention has passed, now and then
    /// every so often while the server runs (on the current runtime).
    pub fn expire_in_background(self: &Arc<Self>) {
        let every = (self.retention / 2).clamp(Duration::from_millis(100), Duration::from_secs(60));
        let exports: Weak<Exports> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(e) = exports.upgrade() else { return };
                e.sweep();
            }
        });
    }

    /// Deletes the jobs (and files) whose retention has passed.
    pub fn sweep(&self) {
        let now = Instant::now();
        let expired: Vec<String> = match self.jobs.lock() {
            Ok(mut jobs) => {
                let ids: Vec<String> = jobs
                    .values()
                    .filter(|j| j.expires().is_some_and(|e| e <= now))
                    .map(|j| j.id.clone())
                    .collect();
                for id in &ids {
                    jobs.remove(id);
                }
                ids
            }
            Err(_) => Vec::new(),
        };
        for id in expired {
            tracing::info!(job = %id, "bulk export expired; its files are deleted");
            remove(&self.dir.join(&id));
        }
    }

    /// Records a job (its folder and `job.json`, before the kick-off is
    /// answered) and starts it in the background. Its `transactionTime` is
    /// an instant the store's writer agrees on ([`Store::mark`]), so that
    /// the files hold every version stamped by then and none stamped after.
    pub async fn start(&self, store: Store, ctx: Ctx, request: ExportRequest) -> Result<Arc<Job>> {
        self.sweep();
        let transaction_time = store.mark(&ctx).await?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let job = Arc::new(Job {
            id: id.clone(),
            practice: ctx.practice.key,
            owner: ctx.actor.id().to_owned(),
            // An app's context (its scopes narrowing the user's role) comes
            // from its access token, a user's from their session.
            session: match &ctx.grant {
                Some(g) => Some(g.token_hash.clone()),
                None => ctx.access.user.as_ref().map(|u| u.session.clone()),
            }
            .filter(|s| !s.is_empty() && !s.starts_with("app:")),
            request,
            transaction_time,
            status: Mutex::new(Status::Running {
                resources: 0,
                types_done: 0,
                types: 0,
            }),
            cancelled: AtomicBool::new(false),
            interrupted: AtomicBool::new(false),
            stopped: Mutex::new(None),
            resources: AtomicU64::new(0),
        });
        let dir = self.dir.join(&job.id);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        if let Err(e) = save(&dir, &job) {
            remove(&dir);
            return Err(e);
        }
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.insert(id, job.clone());
        }
        self.launch(job.clone(), store, ctx, dir);
        Ok(job)
    }

    /// The job, as [`Exports::get`]; one the server stopped in the middle of
    /// (and has not started again) is started again first, with the
    /// context of this poll: its owner's.
    pub fn poll(&self, id: &str, store: &Store, ctx: &Ctx) -> Option<Arc<Job>> {
        let job = self.get(id, ctx)?;
        self.resume(&job, store, ctx);
        Some(job)
    }

    /// Starts the jobs the server stopped in the middle of again, in the
    /// background, each with the context of whoever started it, by the
    /// session or app token it was started with (`Store::resolve_owner`:
    /// one since ended or expired still stands for its owner); one whose
    /// owner may no longer act (the account disabled or its role taken
    /// away, the app disabled or its token revoked) fails with the reason
    /// instead. A job that names neither (recorded by an older server)
    /// waits for its owner's next poll, which brings a context.
    pub fn resume_in_background(self: &Arc<Self>, store: Store) {
        let stopped: Vec<Arc<Job>> = self
            .jobs
            .lock()
            .map(|jobs| {
                jobs.values()
                    .filter(|j| j.stopped.lock().is_ok_and(|s| s.is_some()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if stopped.is_empty() {
            return;
        }
        let exports = self.clone();
        tokio::spawn(async move {
            let practices = store
                .practices(&gp_store::Actor::system())
                .await
                .unwrap_or_default();
            for job in stopped {
                let practice = practices.iter().find(|p| p.key == job.practice);
                let owner = match (&job.session, practice) {
                    (Some(session), Some(practice)) => {
                        Some(store.resolve_owner(practice, session).await)
                    }
                    _ => None,
                };
                match owner {
                    Some(Ok(ctx)) if ctx.actor.id() == job.owner => {
                        exports.resume(&job, &store, &ctx);
                    }
                    Some(Ok(_)) => exports.refuse(&job, "its session now stands for another user"),
                    Some(Err(
                        e @ (gp_store::StoreError::Unauthorized(_)
                        | gp_store::StoreError::Forbidden(_)),
                    )) => exports.refuse(&job, &e.to_string()),
                    Some(Err(e)) => {
                        tracing::warn!(job = %job.id, error = %e, "a bulk export the server stopped in the middle of runs again when its owner next polls it: its owner could not be checked")
                    }
                    None => {
                        tracing::info!(job = %job.id, "a bulk export the server stopped in the middle of runs again when its owner next polls it: the session or token that started it is not recorded")
                    }
                }
            }
        });
    }

    /// Ends a job the server stopped in the middle of, without running it
    /// again: its owner may no longer export (`why`). Its partial files are
    /// deleted; the failure is kept (and answered to a poll) as any other.
    fn refuse(&self, job: &Arc<Job>, why: &str) {
        if job.stopped.lock().ok().and_then(|mut s| s.take()).is_none() {
            return;
        }
        tracing::warn!(job = %job.id, why, "a bulk export the server stopped in the middle of is not run again: its owner may no longer export");
        let dir = self.dir.join(&job.id);
        let _ = clear(&dir);
        job.set(Status::Failed {
            why: format!(
                "not run again after the server restarted: its owner may no longer export ({why})"
            ),
            expires: later(Instant::now(), self.retention),
        });
        if let Err(e) = save(&dir, job) {
            tracing::warn!(job = %job.id, error = %format!("{e:#}"), "recording the end of a bulk export");
        }
    }

    /// Starts a job the server stopped in the middle of again, from its
    /// start (its partial files deleted), with `ctx`; nothing if it is not
    /// such a job (any more).
    fn resume(&self, job: &Arc<Job>, store: &Store, ctx: &Ctx) {
        if job.stopped.lock().ok().and_then(|mut s| s.take()).is_none() {
            return;
        }
        let dir = self.dir.join(&job.id);
        tracing::info!(job = %job.id, "running again a bulk export the server stopped in the middle of");
        if let Err(e) = clear(&dir) {
            job.set(Status::Failed {
                why: format!("clearing the files of the interrupted run: {e:#}"),
                expires: later(Instant::now(), self.retention),
            });
            let _ = save(&dir, job);
        } else {
            self.launch(job.clone(), store.clone(), ctx.clone(), dir);
        }
    }

    /// Runs a job in the background, recording its end in `job.json`.
    fn launch(&self, job: Arc<Job>, store: Store, ctx: Ctx, dir: PathBuf) {
        let (j, retention) = (job, self.retention);
        let task = tokio::spawn(async move {
            j.resources.store(0, Ordering::Relaxed);
            let out = run(&store, &ctx, &j, &dir).await;
            if j.cancelled.load(Ordering::Relaxed) {
                remove(&dir);
                return;
            }
            if j.interrupted.load(Ordering::Relaxed) {
                // job.json still says running: the next start takes it up.
                return;
            }
            let expires = later(Instant::now(), retention);
            match out {
                Ok(outputs) => j.set(Status::Done { outputs, expires }),
                Err(e) => {
                    tracing::warn!(job = %j.id, error = %format!("{e:#}"), "bulk export failed");
                    j.set(Status::Failed {
                        why: format!("{e:#}"),
                        expires,
                    });
                }
            }
            if let Err(e) = save(&dir, &j) {
                tracing::warn!(job = %j.id, error = %format!("{e:#}"), "recording the end of a bulk export");
                j.set(Status::Failed {
                    why: format!("recording the end of the export: {e:#}"),
                    expires,
                });
            }
        });
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.retain(|t| !t.is_finished());
            tasks.push(task);
        }
    }

    /// Stops the running jobs (leaving them recorded as running, for the
    /// next start to take up again) and waits for them.
    pub async fn shutdown(&self) {
        if let Ok(jobs) = self.jobs.lock() {
            for j in jobs.values() {
                j.interrupted.store(true, Ordering::Relaxed);
            }
        }
        let tasks = self
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for t in tasks {
            let _ = t.await;
        }
    }

    /// The job, if it exists and belongs to this practice and user.
    pub fn get(&self, id: &str, ctx: &Ctx) -> Option<Arc<Job>> {
        self.sweep();
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
        remove(&self.dir.join(id));
        true
    }

    /// The path of a finished job's file, for its owner.
    pub fn file(&self, id: &str, name: &str, ctx: &Ctx) -> Option<PathBuf> {
        let job = self.get(id, ctx)?;
        let Status::Done { outputs, .. } = job.status() else {
            return None;
        };
        outputs
            .iter()
            .find(|o| o.file == name)
            .map(|o| self.dir.join(id).join(&o.file))
    }
}

/// Reads a job's folder.
fn load(dir: &Path, retention: Duration) -> Result<Job> {
    let bytes = std::fs::read(dir.join(JOB_FILE))
        .with_context(|| format!("reading {}", dir.join(JOB_FILE).display()))?;
    let file: JobFile = serde_json::from_slice(&bytes)?;
    let job = file.job(retention)?;
    if Some(job.id.as_str()) != dir.file_name().and_then(|n| n.to_str()) {
        anyhow::bail!("the job's id is not its folder's name");
    }
    if let Status::Done { outputs, .. } = job.status()
        && let Some(o) = outputs.iter().find(|o| !dir.join(&o.file).is_file())
    {
        anyhow::bail!("its file {} is missing", o.file);
    }
    if job.stopped.lock().is_ok_and(|s| s.is_some()) {
        tracing::warn!(job = %job.id, "a bulk export was interrupted by the server stopping; it runs again from its start");
    }
    Ok(job)
}

/// Deletes a job's files, keeping `job.json`.
fn clear(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.file_name().and_then(|n| n.to_str()) != Some(JOB_FILE) {
            std::fs::remove_file(&path).with_context(|| format!("deleting {}", path.display()))?;
        }
    }
    Ok(())
}

fn save(dir: &Path, job: &Job) -> Result<()> {
    write_atomic(
        &dir.join(JOB_FILE),
        &serde_json::to_vec_pretty(&JobFile::of(job))?,
    )
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_dir_all(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "deleting a bulk export");
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
    let req = &job.request;
    let types = types_for(req);
    let members = compartment_members().unwrap_or_default();
    // For a Group, its patients (group.html: member.entity).
    let group: Option<HashSet<String>> = match &req.level {
        Level::Group(id) => {
            let group = ResourceType::parse("Group").context("Group")?;
            let mut q = search::parse(Some(group), &[("_id".into(), id.clone())], true)
                .map_err(|o| anyhow::anyhow!("Group/{id}: {}", o.to_json()))?;
            q.as_of = Some(job.transaction_time);
            q.total = Total::None;
            let found = store.search(ctx, Some(group), q).await?.page.entries;
            let g = found.first().with_context(|| {
                format!(
                    "Group/{id} did not exist at the export's transactionTime {}",
                    job.transaction_time
                )
            })?;
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
        // The index holds the current versions: a filter is decided by it
        // for the resources unchanged since the transactionTime (current
        // `_lastUpdated` by then), and for those changed since (usually
        // few), on the exported version's own index entries (filter.rs).
        let at = job.transaction_time;
        let (queries, changed): (Vec<Vec<(String, String)>>, Vec<SearchQuery>) =
            if filters.is_empty() {
                (vec![Vec::new()], Vec::new())
            } else {
                let mut queries: Vec<Vec<(String, String)>> = filters
                    .iter()
                    .map(|f| {
                        let mut q = (*f).clone();
                        q.push(("_lastUpdated".into(), format!("le{at}")));
                        q
                    })
                    .collect();
                let decided = filters
                    .iter()
                    .map(|f| search::parse(Some(*ty), f, true))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|o| anyhow::anyhow!("_typeFilter for {ty}: {}", o.to_json()))?;
                queries.push(vec![("_lastUpdated".into(), format!("gt{at}"))]);
                (queries, decided)
            };
        let last = queries.len() - 1;
        let file = format!("{ty}.ndjson");
        let mut out: Option<std::io::BufWriter<std::fs::File>> = None;
        let mut count = 0u64;
        // Several filters may match one resource: written once (the ids
        // are kept only then).
        let several = queries.len() > 1;
        let mut written: HashSet<String> = HashSet::new();
        let params = members.get(ty).cloned().unwrap_or_default();
        for (n, filter) in queries.into_iter().enumerate() {
            let decide = !changed.is_empty() && n == last;
            let mut q_params = filter;
            if let Some(since) = req.since {
                q_params.push(("_lastUpdated".into(), format!("ge{since}")));
            }
            q_params.push(("_count".into(), "1000".into()));
            let mut base: SearchQuery = search::parse(Some(*ty), &q_params, true)
                .map_err(|o| anyhow::anyhow!("_typeFilter for {ty}: {}", o.to_json()))?;
            // The files hold the resources as they were at the
            // transactionTime (export.html#response---complete-status), the
            // same on every run of the job; no page needs a total.
            base.as_of = Some(job.transaction_time);
            base.total = Total::None;
            let mut after: Option<(ResourceType, String)> = None;
            loop {
                if job.halted() {
                    return Ok(Vec::new());
                }
                let mut q = base.clone();
                q.after = after.clone();
                let page = store.search(ctx, Some(*ty), q).await?.page.entries;
                let Some(last) = page.last() else { break };
                after = Some((last.resource_type, last.id.clone()));
                for v in &page {
                    // `_lastUpdated` found the resources changed since
                    // `_since` as they are now; the version of the
                    // transactionTime may be older.
                    if req.since.is_some_and(|since| v.last_updated < since) {
                        continue;
                    }
                    if decide {
                        let entries = serde_json::from_slice::<serde_json::Value>(&v.body)
                            .map(|json| gp_search::extract_json(*ty, &json))
                            .unwrap_or_default();
                        if !changed.iter().any(|f| {
                            crate::filter::matches(&f.criteria, &v.id, v.last_updated, &entries)
                        }) {
                            continue;
                        }
                    }
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
                    if several && !written.insert(v.id.clone()) {
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
        if let Some(w) = out {
            // On disk before the job is recorded as done.
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            outputs.push(Output {
                ty: *ty,
                file,
                count,
            });
        }
    }
    Ok(outputs)
}
