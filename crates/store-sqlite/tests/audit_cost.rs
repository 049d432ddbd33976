//! What auditing reads costs the whole store (request side and writer),
//! for docs/benchmarks.md: `cargo test --release -p gp-store-sqlite
//! --test audit_cost -- --ignored --nocapture`.

use std::sync::Arc;

use gp_fhir::{Instant, OdsCode, ResourceType};
use gp_store::access::SignedIn;
use gp_store::audit::Event;
use gp_store::{Actor, Ctx, Store};

/// The process's CPU time (user and system) in milliseconds.
fn cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 (11 and 12 after the name).
    (fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0)) * 10
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn audit_cost() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let backend =
        gp_store_sqlite::SqliteBackend::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let store = Store::new(backend);
    let ods = OdsCode::parse("A81001").unwrap_or_else(|| panic!("ods"));
    let practice = store
        .ensure_practice(&ods, "Bench", &Actor::system())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut ctx = Ctx::new(practice, Actor::new("u1")).from_address(Some("127.0.0.1".into()));
    ctx.access.user = Some(Arc::new(SignedIn {
        user_id: "u1".into(),
        username: "drsmith".into(),
        name: "Dr Jane Smith".into(),
        role: "R8000".into(),
        practitioner: Some("pr1".into()),
        expires: Instant::now(),
        session: String::new(),
    }));
    let patient = ResourceType::parse("Patient").unwrap_or_else(|| panic!("type"));
    let n = 20_000u32;
    for round in 0..3 {
        let (cpu, start) = (cpu_ms(), std::time::Instant::now());
        for i in 0..n {
            store.audit(&ctx, Event::rest("read").target(patient, &format!("p{i}")));
        }
        let queued = start.elapsed();
        store
            .audit_barrier(&ctx)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (wall, cpu) = (start.elapsed(), cpu_ms() - cpu);
        eprintln!(
            "round {round}: {n} read events: queued in {:.2} us each, stored after {:.2} us each (wall), {:.2} us CPU each",
            queued.as_secs_f64() * 1e6 / f64::from(n),
            wall.as_secs_f64() * 1e6 / f64::from(n),
            cpu as f64 * 1e3 / f64::from(n),
        );
    }
}
