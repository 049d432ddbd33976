//! Seeding the demo practice: `gp-demo` generates it, this writes it
//! through the same store interface everything else uses, as transaction
//! Bundles of about a thousand resources, several in flight at once (the
//! store validates and indexes them in parallel and commits them in
//! groups). Every resource carries its id and goes in with `PUT`, so the
//! Bundles need no `urn:uuid` links between them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use gp_demo::{Demo, Options};
use gp_fhir::ResourceType;
use gp_store::{Ctx, Store};
use serde_json::{Value, json};
use tokio::task::JoinSet;

/// Patients per transaction Bundle (about 1,500 resources).
const PATIENTS_PER_BUNDLE: u32 = 20;
/// Practice resources (slots, appointments ...) per Bundle.
const RESOURCES_PER_BUNDLE: usize = 1_500;
/// Bundles in flight: enough to keep validation on every core busy while
/// the writer commits.
const IN_FLIGHT: usize = 4;

/// What seeding did.
#[derive(Debug, Clone, Copy)]
pub struct Seeded {
    pub resources: usize,
    pub patients: u32,
    /// Time spent generating, summed over threads (seconds).
    pub generate_secs: f64,
    /// Wall-clock time from start to the last commit (seconds).
    pub total_secs: f64,
}

/// How far a data directory's demo practice got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seeding {
    /// Nothing written yet.
    Empty,
    /// Patients written but the run stopped before the end (the staff
    /// accounts, written last, are missing).
    Interrupted,
    /// Written to the end.
    Complete,
}

/// Whether the demo of `seed` was written here, completely or in part.
pub async fn seeding(store: &Store, ctx: &Ctx, seed: u64) -> Result<Seeding> {
    let usernames: std::collections::HashSet<String> = store
        .users(ctx)
        .await?
        .into_iter()
        .map(|u| u.username)
        .collect();
    if demo_accounts(seed)
        .iter()
        .all(|a| usernames.contains(&a.username))
    {
        return Ok(Seeding::Complete);
    }
    let found = store
        .search(
            ctx,
            ResourceType::parse("Patient"),
            gp_fhir::search::SearchQuery {
                count: 1,
                ..Default::default()
            },
        )
        .await?;
    let any = found.page.total.unwrap_or(0) > 0 || !found.page.entries.is_empty();
    Ok(if any {
        Seeding::Interrupted
    } else {
        Seeding::Empty
    })
}

/// Generates the practice `opts` describes and writes it, then its staff
/// accounts (last, so that their presence says the run finished); `progress`
/// is told the resources written so far. Resources are put at their ids, so
/// running it again over an interrupted run completes it.
pub async fn seed(
    store: &Store,
    ctx: &Ctx,
    opts: Options,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Seeded> {
    let started = Instant::now();
    let seed = opts.seed;
    let demo = Arc::new(Demo::new(opts));
    let patients = demo.options().patients;
    let generate_nanos = Arc::new(AtomicU64::new(0));
    // Work items: the practice's own resources, then patients in chunks.
    let mut chunks: Vec<Chunk> = vec![Chunk::Practice];
    let mut from = 0;
    while from < patients {
        let to = (from + PATIENTS_PER_BUNDLE).min(patients);
        chunks.push(Chunk::Patients(from, to));
        from = to;
    }
    let mut written = 0usize;
    let mut tasks: JoinSet<Result<usize>> = JoinSet::new();
    let mut pending = chunks.into_iter();
    loop {
        while tasks.len() < IN_FLIGHT {
            let Some(chunk) = pending.next() else { break };
            let (store, ctx, demo, nanos) = (
                store.clone(),
                ctx.clone(),
                demo.clone(),
                generate_nanos.clone(),
            );
            tasks.spawn(async move {
                let bundles = tokio::task::spawn_blocking(move || {
                    let t = Instant::now();
                    let resources = chunk.generate(&demo);
                    nanos.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    resources
                        .chunks(RESOURCES_PER_BUNDLE)
                        .map(transaction)
                        .collect::<Vec<_>>()
                })
                .await?;
                let mut n = 0;
                for (bundle, count) in bundles {
                    write(&store, &ctx, &bundle).await?;
                    n += count;
                }
                Ok(n)
            });
        }
        let Some(done) = tasks.join_next().await else {
            break;
        };
        written += done.context("a demo writer task failed")??;
        progress(written);
    }
    ensure_accounts(store, ctx, seed).await?;
    Ok(Seeded {
        resources: written,
        patients,
        generate_secs: generate_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        total_secs: started.elapsed().as_secs_f64(),
    })
}

enum Chunk {
    Practice,
    Patients(u32, u32),
}

impl Chunk {
    fn generate(&self, demo: &Demo) -> Vec<Value> {
        match self {
            Chunk::Practice => demo.practice(),
            Chunk::Patients(from, to) => (*from..*to).flat_map(|i| demo.patient(i)).collect(),
        }
    }
}

/// A transaction Bundle that puts each resource at its id.
fn transaction(resources: &[Value]) -> (Value, usize) {
    let entry: Vec<Value> = resources
        .iter()
        .map(|r| {
            let url = format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap_or_default(),
                r["id"].as_str().unwrap_or_default()
            );
            json!({ "resource": r, "request": { "method": "PUT", "url": url } })
        })
        .collect();
    (
        json!({ "resourceType": "Bundle", "type": "transaction", "entry": entry }),
        resources.len(),
    )
}

async fn write(store: &Store, ctx: &Ctx, bundle: &Value) -> Result<()> {
    let (_, results) = store.bundle(ctx, bundle, "").await?;
    for r in results {
        r.map_err(|e| anyhow!("the store refused a demo resource: {e}"))?;
    }
    Ok(())
}

/// A demo staff account, with its password, for the guide to print.
#[derive(Debug, Clone)]
pub struct DemoAccount {
    pub username: String,
    pub password: String,
    pub name: String,
    pub roles: Vec<String>,
    pub practitioner: String,
}

/// The demo's staff accounts: one per member of staff, linked to their
/// Practitioner, in their national role. The practice manager also holds
/// systems support (R8015: staff accounts) and privacy officer (R0001: the
/// audit trail). Passwords derive from the seed, so a later run can print
/// them again; they protect synthetic data only.
pub fn demo_accounts(seed: u64) -> Vec<DemoAccount> {
    gp_demo::STAFF
        .iter()
        .map(|s| {
            let mut roles = vec![s.role.0.to_owned()];
            if s.id == "pm-clarke" {
                roles.extend(["R8015".to_owned(), "R0001".to_owned()]);
            }
            let digest = gp_store::accounts::token_hash(&format!("opengp-demo:{seed}:{}", s.id));
            DemoAccount {
                username: s.id.to_owned(),
                password: format!("demo-{}", &digest[..16]),
                name: format!("{} {} {}", s.prefix, s.given, s.family)
                    .trim()
                    .to_owned(),
                roles,
                practitioner: s.id.to_owned(),
            }
        })
        .collect()
}

/// Creates the demo's staff accounts that do not exist yet.
pub async fn ensure_accounts(store: &Store, ctx: &Ctx, seed: u64) -> Result<Vec<DemoAccount>> {
    let accounts = demo_accounts(seed);
    let existing: std::collections::HashSet<String> = store
        .users(ctx)
        .await?
        .into_iter()
        .map(|u| u.username)
        .collect();
    for a in accounts.iter().filter(|a| !existing.contains(&a.username)) {
        store
            .add_user(
                ctx,
                gp_store::accounts::NewUser {
                    username: a.username.clone(),
                    name: a.name.clone(),
                    password: a.password.clone(),
                    roles: a.roles.clone(),
                    practitioner: Some(a.practitioner.clone()),
                },
            )
            .await
            .with_context(|| format!("creating the demo account {}", a.username))?;
    }
    Ok(accounts)
}
