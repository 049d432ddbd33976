//! Resource bodies compressed with a dictionary the store trains on its own
//! versions (`gp_store_sql::body`), on a real SQLite file: the dictionary
//! arrives without anyone asking once the store has grown, later versions
//! are stored as zstd frames naming it, and everything reads back byte for
//! byte, the audit chain over those bytes included, also after a restart.

use std::path::Path;
use std::time::Duration;

use gp_fhir::{Id, OdsCode, Resource, ResourceType};
use gp_store::audit::Event;
use gp_store::{Actor, Ctx, Store, WriteOutcome};
use gp_store_sql::body::FIRST_TRAINING;
use rusqlite::Connection;

const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

fn patient(i: usize) -> Resource {
    Resource::from_value(serde_json::json!({
        "resourceType": "Patient",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": format!("{}", 9_000_000_000u64 + i as u64)}],
        "name": [{"use": "official", "family": format!("Family{i}"), "given": ["Alex"]}],
        "gender": "female",
        "birthDate": "1980-01-01"
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Each body's first four bytes and its dictionary count, read from the file.
fn stored(path: &Path) -> (Vec<(String, Vec<u8>)>, i64) {
    let c = Connection::open(path).unwrap_or_else(|e| panic!("{e}"));
    let mut s = c
        .prepare("SELECT type, substr(body, 1, 4) FROM resource_version ORDER BY rowid")
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = s
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .unwrap_or_else(|e| panic!("{e}"));
    let dicts = c
        .query_row("SELECT count(*) FROM body_dict", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    (rows, dicts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_compressed_once_the_store_has_trained_a_dictionary() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("opengp.db");
    let ods = OdsCode::parse("A81001").unwrap_or_else(|| panic!("ods"));
    let store = Store::new(
        gp_store_sqlite::SqliteBackend::open(dir.path()).unwrap_or_else(|e| panic!("{e}")),
    );
    let practice = store
        .ensure_practice(&ods, "Bodies", &Actor::system())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ctx = Ctx::new(practice, Actor::new("operator"));
    let ty = ResourceType::parse("Patient").unwrap_or_else(|| panic!("type"));

    // Versions before the store has a dictionary are stored as JSON.
    let first = store
        .create(&ctx, patient(0), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..FIRST_TRAINING as usize {
        store.audit(&ctx, Event::rest("read").target(ty, &format!("p{i}")));
    }
    store
        .audit_barrier(&ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // The writer trains a dictionary off its thread once the store has grown.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        // Each commit is a chance for the writer to see the store has grown.
        store.audit(&ctx, Event::rest("read").target(ty, "nudge"));
        store
            .audit_barrier(&ctx)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if stored(&file).1 > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no dictionary was trained"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = stored(&file).0.len();
    let mut later = Vec::new();
    for i in 1..=20 {
        later.push(
            store
                .create(&ctx, patient(i), None)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    let (rows, _) = stored(&file);
    assert_eq!(rows.first().map(|r| r.1.first().copied()), Some(Some(b'{')));
    let new: Vec<_> = rows[before..].iter().collect();
    assert!(new.len() >= 40, "20 creates and their AuditEvents");
    assert!(
        new.iter().all(|(_, head)| head == &MAGIC),
        "versions written after the dictionary are zstd frames: {new:?}"
    );

    // Everything reads back as it was written, before and after a restart.
    let written: Vec<_> = std::iter::once(first).chain(later).collect();
    check(&store, &ctx, &written).await;
    store.close();
    let reopened = Store::new(
        gp_store_sqlite::SqliteBackend::open(dir.path()).unwrap_or_else(|e| panic!("{e}")),
    );
    check(&reopened, &ctx, &written).await;
    reopened.close();
}

async fn check(store: &Store, ctx: &Ctx, written: &[WriteOutcome]) {
    for w in written {
        let id = Id::parse(&w.version.id).unwrap_or_else(|e| panic!("{e}"));
        let got = store
            .read(ctx, w.version.resource_type, id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.body, w.version.body);
    }
    let report = store
        .verify_audit(ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.broken.is_none(), "{report:?}");
    assert!(report.records > FIRST_TRAINING as u64);
}
