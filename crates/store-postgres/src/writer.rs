//! The writer threads, one per shard of practices, each with group commit.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use gp_store::access::Sees;
use gp_store::{Ctx, StoreError, WriteJob};

use crate::body::Bodies;
use crate::conn::{Conn, Connector, db_err};
use crate::scoped::Scoped;
use crate::write::{Counter, ScopedWrite};

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
    Close {
        reply: Sender<()>,
    },
}

/// How well group commit is working: jobs per commit, over all shards.
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

struct Shard {
    tx: Mutex<Option<Sender<Msg>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

pub(crate) struct Writer {
    /// A practice's writes always go to the same shard, so the writer
    /// threads of one server never wait on each other's locks.
    shards: Vec<Shard>,
    counters: Arc<Counters>,
}

type Queued = (i64, String, Sees, Box<dyn WriteJob>);

impl Writer {
    pub fn start(
        connector: &Connector,
        n: usize,
        bodies: &Arc<Bodies>,
    ) -> Result<Self, StoreError> {
        let counters = Arc::new(Counters::default());
        let mut shards = Vec::with_capacity(n.max(1));
        for i in 0..n.max(1) {
            let conn = connector.connect()?;
            let (tx, rx) = channel();
            let (c, again, b) = (counters.clone(), connector.clone(), bodies.clone());
            let thread = std::thread::Builder::new()
                .name(format!("pg-writer-{i}"))
                .spawn(move || run(conn, &again, rx, &c, &b))
                .map_err(|e| StoreError::Backend(format!("starting a writer: {e}")))?;
            shards.push(Shard {
                tx: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
            });
        }
        Ok(Writer { shards, counters })
    }

    fn shard(&self, practice: i64) -> Option<&Shard> {
        let n = self.shards.len() as i64;
        self.shards.get(practice.rem_euclid(n.max(1)) as usize)
    }

    pub fn submit(&self, ctx: &Ctx, job: Box<dyn WriteJob>) {
        let practice = ctx.practice.key;
        let msg = Msg::Job {
            practice,
            author: ctx.actor.id().to_owned(),
            sees: ctx.sees(),
            job,
        };
        let sent = match self.shard(practice).map(|s| s.tx.lock()) {
            Some(Ok(guard)) => match guard.as_ref() {
                Some(tx) => tx.send(msg).map_err(|e| e.0),
                None => Err(msg),
            },
            _ => Err(msg),
        };
        if let Err(Msg::Job { job, .. }) = sent {
            job.finish(Err(StoreError::Unavailable));
        }
    }

    pub fn stats(&self) -> WriterStats {
        WriterStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            jobs: self.counters.jobs.load(Ordering::Relaxed),
        }
    }

    /// Finishes every queued job and stops the threads.
    pub fn close(&self) {
        for shard in &self.shards {
            let (reply, rx) = channel();
            let sent = shard
                .tx
                .lock()
                .ok()
                .and_then(|g| g.as_ref().map(|tx| tx.send(Msg::Close { reply }).is_ok()));
            if sent == Some(true) {
                let _ = rx.recv();
            }
            if let Ok(mut tx) = shard.tx.lock() {
                tx.take();
            }
            if let Some(t) = shard.thread.lock().ok().and_then(|mut t| t.take()) {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

fn run(
    mut conn: Conn,
    connector: &Connector,
    rx: Receiver<Msg>,
    counters: &Counters,
    bodies: &Arc<Bodies>,
) {
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
                Msg::Close { reply } => closing = Some(reply),
            }
        }
        if let Some(reply) = closing {
            // Finish what was queued behind the close request, then stop.
            jobs.extend(rx.try_iter().filter_map(|m| match m {
                Msg::Job {
                    practice,
                    author,
                    sees,
                    job,
                } => Some((practice, author, sees, job)),
                Msg::Close { .. } => None,
            }));
            run_group(&mut conn, connector, jobs, counters, bodies);
            let _ = reply.send(());
            return;
        }
        run_group(&mut conn, connector, jobs, counters, bodies);
    }
}

/// Commits a group, first reconnecting if the server dropped the connection.
fn run_group(
    conn: &mut Conn,
    connector: &Connector,
    jobs: Vec<Queued>,
    counters: &Counters,
    bodies: &Arc<Bodies>,
) {
    if jobs.is_empty() {
        return;
    }
    if conn.is_closed() {
        match connector.connect() {
            Ok(c) => *conn = c,
            Err(e) => {
                tracing::error!(error = %e, "the writer lost its PostgreSQL connection");
                for (_, _, _, job) in jobs {
                    job.finish(Err(StoreError::Unavailable));
                }
                return;
            }
        }
    }
    commit_group(conn, jobs, counters, bodies);
}

const LOCK_COUNTERS: &str = "SELECT practice, seq, stamped FROM practice_counter
     WHERE practice = ANY($1) ORDER BY practice FOR UPDATE";

const SAVE_COUNTERS: &str = "UPDATE practice_counter p SET seq = t.seq, stamped = t.stamped
     FROM unnest($1::int8[], $2::int8[], $3::int8[]) AS t(practice, seq, stamped)
     WHERE p.practice = ANY($1) AND p.practice = t.practice";

/// Runs a group of jobs in one transaction, each in its own savepoint, and
/// tells each job the outcome only after the commit is durable.
///
/// The transaction first locks the counter rows of every practice in the
/// group, in key order (so that two servers sharing a database cannot
/// deadlock): from then on this transaction is the only writer of those
/// practices, which makes `If-Match` checks, conditional creates and the
/// practice's sequence safe, while other practices go on in parallel.
fn commit_group(conn: &mut Conn, jobs: Vec<Queued>, counters: &Counters, bodies: &Arc<Bodies>) {
    let mut practices: Vec<i64> = jobs.iter().map(|j| j.0).collect();
    practices.sort_unstable();
    practices.dedup();
    let locked = conn
        .batch("BEGIN ISOLATION LEVEL READ COMMITTED")
        .and_then(|()| conn.query(LOCK_COUNTERS, &[&practices]));
    let mut state: HashMap<i64, Counter> = match locked {
        Ok(rows) => rows
            .iter()
            .filter_map(|r| {
                let counter = Counter {
                    seq: r.try_get(1).ok()?,
                    stamped: r.try_get(2).ok()?,
                    audit: None,
                };
                Some((r.try_get(0).ok()?, counter))
            })
            .collect(),
        Err(e) => {
            let _ = conn.batch("ROLLBACK");
            tracing::error!(error = %e, "a write transaction could not start");
            let e = db_err(e);
            for (_, _, _, job) in jobs {
                job.finish(Err(e.clone()));
            }
            return;
        }
    };
    let mut done: Vec<(Box<dyn WriteJob>, Option<StoreError>)> = Vec::with_capacity(jobs.len());
    let mut broken: Option<String> = None;
    for (practice, author, sees, mut job) in jobs {
        if broken.is_some() {
            done.push((job, None));
            continue;
        }
        let Some(counter) = state.get_mut(&practice) else {
            let e = StoreError::Backend(format!("practice {practice} has no counter row"));
            done.push((job, Some(e)));
            continue;
        };
        if let Err(e) = conn.batch("SAVEPOINT job") {
            broken = Some(e.to_string());
            done.push((job, None));
            continue;
        }
        let saved = *counter;
        let (keep, own_error) = {
            let read = Scoped {
                conn: &mut *conn,
                practice,
                for_update: true,
                sees,
                bodies,
            };
            let mut tx = ScopedWrite::new(read, &author, counter);
            // A panic in a job must not take the writer down with it.
            let ran = catch_unwind(AssertUnwindSafe(|| job.run(&mut tx))).unwrap_or(false);
            if ran {
                match catch_unwind(AssertUnwindSafe(|| tx.flush())) {
                    Ok(Ok(())) => (true, None),
                    Ok(Err(e)) => (false, Some(e)),
                    Err(_) => (false, Some(StoreError::Backend("a flush panicked".into()))),
                }
            } else {
                (false, None)
            }
        };
        let end = if keep {
            "RELEASE SAVEPOINT job"
        } else {
            // Nothing of the job stays, so its sequence numbers are free again.
            *counter = saved;
            "ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job"
        };
        match conn.batch(end) {
            Ok(()) => done.push((job, own_error)),
            Err(e) if keep => {
                // The job's last statement left the transaction failed:
                // undo the job alone and report the failure to it.
                *counter = saved;
                match conn.batch("ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job") {
                    Ok(()) => done.push((job, Some(db_err(e)))),
                    Err(e) => {
                        broken = Some(e.to_string());
                        done.push((job, None));
                    }
                }
            }
            Err(e) => {
                broken = Some(e.to_string());
                done.push((job, None));
            }
        }
    }
    let committed = match broken {
        None => save_counters(conn, &state)
            .and_then(|()| conn.batch("COMMIT"))
            .map_err(|e| e.to_string()),
        Some(e) => Err(e),
    };
    counters.commits.fetch_add(1, Ordering::Relaxed);
    counters
        .jobs
        .fetch_add(done.len() as u64, Ordering::Relaxed);
    match &committed {
        Ok(()) => bodies.committed(state.iter().map(|(p, c)| (*p, c.seq))),
        Err(e) => {
            let _ = conn.batch("ROLLBACK");
            tracing::error!(error = %e, "a write transaction failed and was rolled back");
        }
    }
    for (job, own_error) in done {
        let outcome = match (&committed, own_error) {
            (_, Some(e)) => Err(e),
            (Ok(()), None) => Ok(()),
            (Err(e), None) => Err(StoreError::Backend(e.clone())),
        };
        job.finish(outcome);
    }
}

fn save_counters(conn: &mut Conn, state: &HashMap<i64, Counter>) -> Result<(), postgres::Error> {
    let keys: Vec<i64> = state.keys().copied().collect();
    let seqs: Vec<i64> = state.values().map(|c| c.seq).collect();
    let stamps: Vec<i64> = state.values().map(|c| c.stamped).collect();
    conn.execute(SAVE_COUNTERS, &[&keys, &seqs, &stamps])
        .map(|_| ())
}
