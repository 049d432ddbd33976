//! The single writer and its group commit.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use gp_fhir::{Instant, OdsCode};
use gp_store::{Actor, Ctx, Practice, StoreError, WriteJob};
use rusqlite::{Connection, OptionalExtension, params};

use crate::db_err;
use crate::scoped::{Scoped, ScopedWrite};
use crate::terminology::{LoadMsg, SqliteLoad};
use gp_store::access::Sees;
use gp_store_sql::body::Codec;

/// The most jobs one commit carries; bounds the latency a job can add to
/// the others in its group.
const MAX_GROUP: usize = 512;

enum Msg {
    Job {
        practice: i64,
        author: String,
        sees: Sees,
        job: Box<dyn WriteJob>,
    },
    EnsurePractice {
        ods: OdsCode,
        name: String,
        actor: String,
        reply: Sender<Result<Practice, StoreError>>,
    },
    Close {
        reply: Sender<()>,
    },
    /// A dm+d release to store, whole, in one transaction.
    Dmd {
        name: String,
        actor: String,
        release: Box<gp_terminology::dmd::DmdRelease>,
        reply: Sender<Result<gp_store::DmdInfo, StoreError>>,
    },
    /// A dictionary trained off the writer thread (`body.rs`) on a
    /// practice's versions when it held `versions`.
    Dict {
        practice: i64,
        versions: i64,
        dict: Vec<u8>,
    },
    /// A terminology load: the writer runs it to the end before anything else.
    Snomed {
        name: String,
        actor: String,
        rx: Receiver<LoadMsg>,
    },
}

/// How well group commit is working: jobs per commit.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriterStats {
    pub commits: u64,
    pub jobs: u64,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    jobs: AtomicU64,
}

pub(crate) struct Writer {
    tx: Mutex<Option<Sender<Msg>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
}

impl Writer {
    pub fn start(conn: Connection, path: PathBuf, codec: Arc<Codec>) -> Result<Self, StoreError> {
        let (tx, rx) = channel();
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let bodies = Bodies {
            path,
            codec,
            tx: tx.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, rx, &c, bodies))
            .map_err(|e| StoreError::Backend(format!("starting the writer: {e}")))?;
        Ok(Writer {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            counters,
        })
    }

    fn send(&self, msg: Msg) -> Result<(), Msg> {
        let guard = self.tx.lock().map_err(|_| ()).ok();
        match guard.as_ref().and_then(|g| g.as_ref()) {
            Some(tx) => tx.send(msg).map_err(|e| e.0),
            None => Err(msg),
        }
    }

    pub fn submit(&self, ctx: &Ctx, job: Box<dyn WriteJob>) {
        let msg = Msg::Job {
            practice: ctx.practice.key,
            author: ctx.actor.id().to_owned(),
            sees: ctx.sees(),
            job,
        };
        if let Err(Msg::Job { job, .. }) = self.send(msg) {
            job.finish(Err(StoreError::Unavailable));
        }
    }

    pub fn ensure_practice(
        &self,
        ods: &OdsCode,
        name: &str,
        actor: &Actor,
    ) -> Result<Practice, StoreError> {
        let (reply, rx) = channel();
        let msg = Msg::EnsurePractice {
            ods: ods.clone(),
            name: name.to_owned(),
            actor: actor.id().to_owned(),
            reply,
        };
        self.send(msg).map_err(|_| StoreError::Unavailable)?;
        rx.recv().unwrap_or(Err(StoreError::Unavailable))
    }

    /// Starts a terminology load on the writer thread.
    pub fn begin_snomed(&self, name: &str, actor: &Actor) -> Result<SqliteLoad, StoreError> {
        let (tx, rx) = crate::terminology::channel();
        let msg = Msg::Snomed {
            name: name.to_owned(),
            actor: actor.id().to_owned(),
            rx,
        };
        self.send(msg).map_err(|_| StoreError::Unavailable)?;
        Ok(SqliteLoad { tx })
    }

    /// Stores a dm+d release on the writer thread and waits for the commit.
    pub fn store_dmd(
        &self,
        name: &str,
        actor: &Actor,
        release: gp_terminology::dmd::DmdRelease,
    ) -> Result<gp_store::DmdInfo, StoreError> {
        let (reply, rx) = channel();
        let msg = Msg::Dmd {
            name: name.to_owned(),
            actor: actor.id().to_owned(),
            release: Box::new(release),
            reply,
        };
        self.send(msg).map_err(|_| StoreError::Unavailable)?;
        rx.recv().unwrap_or(Err(StoreError::Unavailable))
    }

    pub fn stats(&self) -> WriterStats {
        WriterStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            jobs: self.counters.jobs.load(Ordering::Relaxed),
        }
    }

    /// Finishes every queued job, checkpoints the WAL and stops the thread.
    pub fn close(&self) {
        let (reply, rx) = channel();
        if self.send(Msg::Close { reply }).is_ok() {
            let _ = rx.recv();
        }
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

/// The writer's side of body compression: the codec it writes with, and
/// where trained dictionaries come back.
struct Bodies {
    path: PathBuf,
    codec: Arc<Codec>,
    tx: Sender<Msg>,
}

impl Bodies {
    /// Starts training dictionaries for the practices that have grown.
    fn maybe_train(&self, conn: &Connection) {
        crate::body::maybe_train(
            conn,
            &self.path,
            &self.codec,
            &self.tx,
            |practice, versions, dict| Msg::Dict {
                practice,
                versions,
                dict,
            },
        );
    }

    /// Stores a trained dictionary, before the jobs of the group it came
    /// in commit, so that no frame is ever stored without its dictionary.
    fn trained(&self, conn: &Connection, practice: i64, versions: i64, dict: &[u8]) {
        if let Err(e) = crate::body::store(conn, &self.codec, practice, dict, versions) {
            tracing::warn!(error = %e, "storing a trained dictionary");
        }
    }
}

fn run(conn: Connection, rx: Receiver<Msg>, counters: &Counters, bodies: Bodies) {
    // The last instant stamped; seeded from the store so that time never
    // runs backwards across restarts either.
    let mut clock: i64 = conn
        .query_row(
            "SELECT coalesce(max(last_updated), 0) FROM resource_version",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0);
    while let Ok(first) = rx.recv() {
        let group = gp_store::gather(
            first,
            &rx,
            MAX_GROUP,
            |m| matches!(m, Msg::Job { job, .. } if job.deferrable()),
        );
        let mut jobs = Vec::with_capacity(group.len());
        let mut closing = None;
        for msg in group {
            match msg {
                Msg::Job {
                    practice,
                    author,
                    sees,
                    job,
                } => jobs.push((practice, author, sees, job)),
                Msg::EnsurePractice {
                    ods,
                    name,
                    actor,
                    reply,
                } => {
                    let _ = reply.send(ensure_practice(&conn, &ods, &name, &actor));
                }
                Msg::Close { reply } => closing = Some(reply),
                Msg::Dict {
                    practice,
                    versions,
                    dict,
                } => bodies.trained(&conn, practice, versions, &dict),
                Msg::Snomed { name, actor, rx } => {
                    // Jobs queued before the load commit first.
                    if !jobs.is_empty() {
                        commit_group(
                            &conn,
                            std::mem::take(&mut jobs),
                            &mut clock,
                            counters,
                            &bodies.codec,
                        );
                    }
                    crate::terminology::run_load(&conn, &rx, &name, &actor);
                }
                Msg::Dmd {
                    name,
                    actor,
                    release,
                    reply,
                } => {
                    if !jobs.is_empty() {
                        commit_group(
                            &conn,
                            std::mem::take(&mut jobs),
                            &mut clock,
                            counters,
                            &bodies.codec,
                        );
                    }
                    let _ = reply.send(crate::dmd::store(&conn, &name, &actor, &release));
                }
            }
        }
        if !jobs.is_empty() {
            commit_group(&conn, jobs, &mut clock, counters, &bodies.codec);
            bodies.maybe_train(&conn);
        }
        if let Some(reply) = closing {
            // Drain what was queued behind the close request, then stop.
            let rest: Vec<_> = rx
                .try_iter()
                .filter_map(|m| match m {
                    Msg::Job {
                        practice,
                        author,
                        sees,
                        job,
                    } => Some((practice, author, sees, job)),
                    _ => None,
                })
                .collect();
            if !rest.is_empty() {
                commit_group(&conn, rest, &mut clock, counters, &bodies.codec);
            }
            if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
                tracing::warn!(error = %e, "checkpoint on close failed; the WAL will be replayed on next open");
            }
            let _ = reply.send(());
            return;
        }
    }
}

/// Runs a group of jobs in one transaction, each in its own savepoint, and
/// tells each job the outcome only after the commit is durable.
fn commit_group(
    conn: &Connection,
    jobs: Vec<(i64, String, Sees, Box<dyn WriteJob>)>,
    clock: &mut i64,
    counters: &Counters,
    codec: &Codec,
) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let msg = e.to_string();
        for (_, _, _, job) in jobs {
            job.finish(Err(StoreError::Backend(msg.clone())));
        }
        return;
    }
    let mut done = Vec::with_capacity(jobs.len());
    let mut broken: Option<String> = None;
    for (practice, author, sees, mut job) in jobs {
        if broken.is_some() {
            done.push(job);
            continue;
        }
        if let Err(e) = conn.execute_batch("SAVEPOINT job") {
            broken = Some(e.to_string());
            done.push(job);
            continue;
        }
        let saved_clock = *clock;
        let keep = {
            let mut tx = ScopedWrite {
                read: Scoped {
                    conn,
                    practice,
                    sees,
                    codec,
                },
                author: &author,
                clock,
            };
            // A panic in a job must not take the writer down with it.
            catch_unwind(AssertUnwindSafe(|| job.run(&mut tx))).unwrap_or(false)
        };
        let end = if keep {
            "RELEASE job"
        } else {
            "ROLLBACK TO job; RELEASE job"
        };
        if !keep {
            *clock = saved_clock;
        }
        if let Err(e) = conn.execute_batch(end) {
            broken = Some(e.to_string());
        }
        done.push(job);
    }
    let committed = match broken {
        None => conn.execute_batch("COMMIT").map_err(|e| e.to_string()),
        Some(e) => Err(e),
    };
    counters.commits.fetch_add(1, Ordering::Relaxed);
    counters
        .jobs
        .fetch_add(done.len() as u64, Ordering::Relaxed);
    match committed {
        Ok(()) => done.into_iter().for_each(|j| j.finish(Ok(()))),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            tracing::error!(error = %e, "a write transaction failed and was rolled back");
            done.into_iter()
                .for_each(|j| j.finish(Err(StoreError::Backend(e.clone()))));
        }
    }
}

fn ensure_practice(
    conn: &Connection,
    ods: &OdsCode,
    name: &str,
    actor: &str,
) -> Result<Practice, StoreError> {
    conn.execute(
        "INSERT INTO practice (ods, name, created_at, created_by) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (ods) DO NOTHING",
        params![ods.as_str(), name, Instant::now().millis(), actor],
    )
    .map_err(db_err)?;
    // A new practice's (no) rows are of this OpenGP's extraction version.
    conn.execute(
        "INSERT INTO index_state (practice, version)
         SELECT key, ?2 FROM practice WHERE ods = ?1 ON CONFLICT (practice) DO NOTHING",
        params![ods.as_str(), gp_store::INDEX_VERSION],
    )
    .map_err(db_err)?;
    let row: Option<(i64, String)> = conn
        .query_row(
            "SELECT key, name FROM practice WHERE ods = ?1",
            params![ods.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db_err)?;
    let (key, name) =
        row.ok_or_else(|| StoreError::Backend("the practice vanished after insert".into()))?;
    Ok(Practice {
        key,
        ods: ods.clone(),
        name,
    })
}
