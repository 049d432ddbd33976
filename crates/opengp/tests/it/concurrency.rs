//! Concurrency through the store itself, on each backend: writers racing on
//! one resource (http.html#concurrency), racing conditional creates
//! (http.html#ccreate), and transactions failing half-way while others
//! commit beside them (http.html#transaction).

use gp_fhir::{Id, OdsCode, Resource, ResourceType};
use gp_store::{Actor, Ctx, Preconditions, Store, StoreError};
use serde_json::json;

use crate::support::{App, json};

crate::on_both_backends!(
    racing_if_match_updates_have_one_winner,
    racing_conditional_creates_make_one_resource,
    failed_transactions_leave_nothing,
);

/// Racers per round.
const RACERS: usize = 8;

async fn ctx(store: &Store) -> Ctx {
    let ods = OdsCode::parse(opengp::config::DEFAULT_PRACTICE)
        .unwrap_or_else(|| panic!("the default ODS code is valid"));
    let practice = store
        .practice(&ods, &Actor::system())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("the test practice exists"));
    Ctx::new(practice, Actor::new("racer"))
}

fn patient_type() -> ResourceType {
    ResourceType::parse("Patient").unwrap_or_else(|| panic!("Patient is a type"))
}

fn resource(v: serde_json::Value) -> Resource {
    Resource::from_value(v).unwrap_or_else(|e| panic!("{e}"))
}

/// Every racer sends `If-Match` with the version all of them read: exactly
/// one update wins each round, the others get 412, and no version is lost.
async fn racing_if_match_updates_have_one_winner(app: App) {
    let store = app.server.store.clone();
    let ctx = ctx(&store).await;
    let created = store
        .create(
            &ctx,
            resource(json!({ "resourceType": "Patient", "gender": "other" })),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = Id::parse(&created.version.id).unwrap_or_else(|e| panic!("{e}"));
    for round in 1..=10u64 {
        let mut racers = Vec::new();
        for racer in 0..RACERS {
            let (store, ctx, id) = (store.clone(), ctx.clone(), id.clone());
            racers.push(tokio::spawn(async move {
                let body = json!({ "resourceType": "Patient", "id": id.as_str(),
                                   "name": [{ "family": format!("round {round} racer {racer}") }] });
                let pre = Preconditions {
                    if_match: Some(round),
                };
                store
                    .update(&ctx, patient_type(), id, resource(body), pre)
                    .await
            }));
        }
        let (mut won, mut refused) = (0, 0);
        for r in racers {
            match r.await.unwrap_or_else(|e| panic!("{e}")) {
                Ok(w) => {
                    assert_eq!(w.version.version, round + 1);
                    won += 1;
                }
                Err(StoreError::PreconditionFailed(_)) => refused += 1,
                Err(e) => panic!("round {round}: unexpected {e:?}"),
            }
        }
        assert_eq!((won, refused), (1, RACERS - 1), "round {round}");
    }
    let history = json(app.get(&format!("Patient/{id}/_history")).await).await;
    assert_eq!(
        history["total"], 11,
        "one version per round, and the create"
    );
    app.stop().await;
}

/// Racing creates with the same `If-None-Exist` make one resource: one
/// racer creates (201), the others find it (200) rather than adding a
/// duplicate or tripping over one (412).
async fn racing_conditional_creates_make_one_resource(app: App) {
    let store = app.server.store.clone();
    let ctx = ctx(&store).await;
    // Any resource of the type matches, so a second one would be a duplicate.
    // Types with no required element, so that a bare body is valid.
    for ty in ["Device", "Person", "Practitioner", "Location", "Medication"] {
        let mut racers = Vec::new();
        for racer in 0..RACERS {
            let (store, ctx) = (store.clone(), ctx.clone());
            racers.push(tokio::spawn(async move {
                let body = json!({ "resourceType": ty, "id": format!("racer-{racer}") });
                store
                    .create(
                        &ctx,
                        Resource::from_value_for_create(body).unwrap_or_else(|e| panic!("{e}")),
                        Some("_lastUpdated=gt2000-01-01".to_owned()),
                    )
                    .await
            }));
        }
        let mut ids = Vec::new();
        let mut created = 0;
        for r in racers {
            let w = r
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|e| panic!("{ty}: {e:?}"));
            created += usize::from(w.created);
            ids.push(w.version.id);
        }
        ids.dedup();
        assert_eq!(created, 1, "{ty}: exactly one racer created");
        assert_eq!(ids.len(), 1, "{ty}: every racer saw the same resource");
        let found = json(app.get(&format!("{ty}?_total=accurate")).await).await;
        assert_eq!(found["total"], 1, "{ty}: one resource");
    }
    app.stop().await;
}

/// A transaction whose last entry fails leaves none of its entries behind,
/// even while good transactions commit in the same groups.
async fn failed_transactions_leave_nothing(app: App) {
    let store = app.server.store.clone();
    let ctx = ctx(&store).await;
    let before = json(app.get("_history").await).await["total"].clone();
    let mut jobs = Vec::new();
    for i in 0..20 {
        let (store, ctx) = (store.clone(), ctx.clone());
        let fail = i % 2 == 0;
        jobs.push(tokio::spawn(async move {
            let mut entries: Vec<_> = (0..10)
                .map(|n| {
                    json!({ "fullUrl": format!("urn:uuid:00000000-0000-0000-0000-{i:06}{n:06}"),
                            "resource": { "resourceType": "Observation", "status": "final",
                                          "code": { "text": format!("tx {i} entry {n} fail {fail}") } },
                            "request": { "method": "POST", "url": "Observation" } })
                })
                .collect();
            if fail {
                // Half-way is the end here: every create before it is undone.
                entries.push(json!({
                    "resource": { "resourceType": "Patient", "id": "never" },
                    "request": { "method": "PUT", "url": "Patient/never", "ifMatch": "W/\"7\"" }
                }));
            }
            let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries });
            (fail, store.bundle(&ctx, &bundle, "http://x/fhir").await)
        }));
    }
    for j in jobs {
        let (fail, out) = j.await.unwrap_or_else(|e| panic!("{e}"));
        match out {
            Ok(_) if !fail => {}
            Err(StoreError::PreconditionFailed(_)) if fail => {}
            other => panic!("fail={fail}: {other:?}"),
        }
    }
    let obs = json(app.get("Observation?_total=accurate&_count=500").await).await;
    assert_eq!(obs["total"], 100, "the ten good transactions, all of them");
    let texts: Vec<&str> = obs["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["resource"]["code"]["text"].as_str())
        .collect();
    assert!(texts.iter().all(|t| t.ends_with("fail false")), "{texts:?}");
    assert_eq!(app.get("Patient/never").await.status(), 404);
    let after = json(app.get("_history").await).await["total"].clone();
    assert_eq!(
        after.as_u64().unwrap_or_default(),
        before.as_u64().unwrap_or_default() + 100
    );
    app.stop().await;
}
