//! The demo practice written into a real server on SQLite: the store
//! accepts every generated resource (it validates every write), searches
//! count what was generated, and a diabetic's `Patient/$everything`
//! (patient-operation-everything.html) carries their HbA1c results.

use std::collections::BTreeMap;

use gp_demo::{Demo, Options};
use gp_store::{Actor, Ctx};
use opengp::demo::Seeding;
use time::macros::date;

use crate::support::{Db, TEST_MAX_BODY, json, spawn_app_on};

const PATIENTS: u32 = 200;

fn options() -> Options {
    let mut o = Options::new(4, date!(2025 - 06 - 02), "A81001", "Test Practice");
    o.patients = PATIENTS;
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_generated_practice_loads_and_searches() {
    let app = spawn_app_on(Db::Sqlite, TEST_MAX_BODY).await;
    let store = &app.server.store;
    let ods =
        gp_fhir::OdsCode::parse(opengp::config::DEFAULT_PRACTICE).unwrap_or_else(|| panic!("ods"));
    let practice = store
        .ensure_practice(&ods, "Test Practice", &Actor::system())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ctx = Ctx::new(practice, Actor::system());
    let state = || async {
        opengp::demo::seeding(store, &ctx, options().seed)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    };
    assert_eq!(state().await, Seeding::Empty);
    // A run stopped part way: some of the practice written, no accounts.
    let first = Demo::new(options()).patient(0);
    let bundle = serde_json::json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": first.iter().map(|r| serde_json::json!({
            "resource": r,
            "request": { "method": "PUT", "url": format!("{}/{}", r["resourceType"].as_str().unwrap_or_default(), r["id"].as_str().unwrap_or_default()) }
        })).collect::<Vec<_>>()
    });
    store
        .bundle(&ctx, &bundle, "")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state().await, Seeding::Interrupted);
    // Running it again completes it, over what is there.
    let seeded = opengp::demo::seed(store, &ctx, options(), &|_| {})
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(state().await, Seeding::Complete);

    // What the generator made, by type, and one diabetic.
    let demo = Demo::new(options());
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    let mut diabetic = None;
    let mut all = demo.practice();
    for i in 0..PATIENTS {
        let record = demo.patient(i);
        if diabetic.is_none()
            && record
                .iter()
                .any(|r| r["code"]["coding"][0]["code"] == "43396009")
        {
            diabetic = Some(Demo::patient_id(i));
        }
        all.extend(record);
    }
    for r in &all {
        *want
            .entry(r["resourceType"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    assert_eq!(seeded.resources, all.len());
    assert!(want["Patient"] == u64::from(PATIENTS));

    for (ty, n) in &want {
        let b = json(app.get(&format!("{ty}?_summary=count")).await).await;
        assert_eq!(b["total"].as_u64(), Some(*n), "{ty}: {b}");
    }
    let b = json(
        app.get("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|")
            .await,
    )
    .await;
    assert_eq!(b["total"].as_u64(), Some(u64::from(PATIENTS)), "{b}");

    let id = diabetic.unwrap_or_else(|| panic!("no diabetic with an HbA1c among {PATIENTS}"));
    let b = json(
        app.get(&format!("Patient/{id}/$everything?_count=1000"))
            .await,
    )
    .await;
    let entries = b["entry"].as_array().cloned().unwrap_or_default();
    let hba1c = entries
        .iter()
        .filter(|e| {
            e["resource"]["resourceType"] == "Observation"
                && e["resource"]["code"]["coding"][0]["code"] == "43396009"
        })
        .count();
    assert!(hba1c >= 1, "{b}");
    assert!(
        entries.iter().any(|e| {
            let code = &e["resource"]["code"]["coding"][0]["code"];
            e["resource"]["resourceType"] == "Condition"
                && (code == "44054006" || code == "46635009")
        }),
        "no diabetes on the problem list: {b}"
    );
    app.stop().await;
}
