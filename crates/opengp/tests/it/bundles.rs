//! Batch and transaction Bundles (http.html#transaction), on each storage
//! backend.

use serde_json::{Value, json};

use crate::support::{App, assert_outcome, json};

crate::on_both_backends!(
    transaction_rewrites_references,
    transaction_is_all_or_nothing,
    transaction_processing_order,
    batch_entries_succeed_or_fail_alone,
);

fn entry(method: &str, url: &str, full_url: Option<&str>, resource: Option<Value>) -> Value {
    let mut e = json!({ "request": { "method": method, "url": url } });
    if let Some(f) = full_url {
        e["fullUrl"] = json!(f);
    }
    if let Some(r) = resource {
        e["resource"] = r;
    }
    e
}

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({ "resourceType": "Bundle", "type": kind, "entry": entries })
}

/// http.html#trules: `urn:uuid:` references are rewritten to the ids the
/// server assigns (and are searchable as such), and responses come back in
/// request order.
async fn transaction_rewrites_references(app: App) {
    let b = bundle(
        "transaction",
        vec![
            entry(
                "POST",
                "Observation",
                Some("urn:uuid:obs"),
                Some(
                    json!({ "resourceType": "Observation", "status": "final", "code": { "text": "BP" },
                             "subject": { "reference": "urn:uuid:pat" } }),
                ),
            ),
            entry(
                "POST",
                "Patient",
                Some("urn:uuid:pat"),
                Some(json!({ "resourceType": "Patient", "name": [{ "family": "Tx" }] })),
            ),
        ],
    );
    let res = app.post("", &b).await;
    assert_eq!(res.status(), 200);
    let out = json(res).await;
    assert_eq!(out["type"], "transaction-response");
    let obs_loc = out["entry"][0]["response"]["location"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let pat_loc = out["entry"][1]["response"]["location"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        obs_loc.starts_with("Observation/") && pat_loc.starts_with("Patient/"),
        "{obs_loc} {pat_loc}"
    );
    assert_eq!(out["entry"][0]["response"]["status"], "201 Created");
    let obs = json(
        app.get(obs_loc.split("/_history").next().unwrap_or_default())
            .await,
    )
    .await;
    let pat_ref = pat_loc.split("/_history").next().unwrap_or_default();
    assert_eq!(obs["subject"]["reference"], pat_ref);
    // The rewritten reference is searchable by every parameter over it,
    // `patient` (`subject.where(resolve() is Patient)`) included.
    let pat_id = pat_ref.trim_start_matches("Patient/");
    for (param, value) in [
        ("subject", pat_ref),
        ("patient", pat_ref),
        ("patient", pat_id),
    ] {
        let found = json(app.get_with_query("Observation", &[(param, value)]).await).await;
        assert_eq!(found["total"], 1, "Observation?{param}={value}: {found}");
    }
    app.stop().await;
}

/// http.html#transaction: all or nothing. A failing entry anywhere leaves
/// no trace of the others.
async fn transaction_is_all_or_nothing(app: App) {
    let existing = app
        .create(&json!({ "resourceType": "Patient", "name": [{ "family": "Keep" }] }))
        .await;
    let b = bundle(
        "transaction",
        vec![
            entry(
                "POST",
                "Patient",
                Some("urn:uuid:a"),
                Some(json!({ "resourceType": "Patient", "name": [{ "family": "New" }] })),
            ),
            entry("DELETE", &format!("Patient/{existing}"), None, None),
            // A stale version makes the whole transaction fail.
            json!({ "resource": { "resourceType": "Patient", "id": existing, "name": [{ "family": "Changed" }] },
                    "request": { "method": "PUT", "url": format!("Patient/{existing}"), "ifMatch": "W/\"9\"" } }),
        ],
    );
    // The DELETE and the PUT touch the same resource: refused as a conflict.
    assert_outcome(app.post("", &b).await, 409, "conflict").await;

    let b = bundle(
        "transaction",
        vec![
            entry(
                "POST",
                "Patient",
                Some("urn:uuid:a"),
                Some(json!({ "resourceType": "Patient", "name": [{ "family": "New" }] })),
            ),
            json!({ "resource": { "resourceType": "Patient", "id": existing, "name": [{ "family": "Changed" }] },
                    "request": { "method": "PUT", "url": format!("Patient/{existing}"), "ifMatch": "W/\"9\"" } }),
        ],
    );
    let v = assert_outcome(app.post("", &b).await, 412, "conflict").await;
    assert!(
        v["issue"][0]["diagnostics"]
            .as_str()
            .is_some_and(|d| d.contains("entry 1")),
        "{v}"
    );
    let b2 = bundle(
        "transaction",
        vec![
            entry(
                "POST",
                "Patient",
                None,
                Some(json!({ "resourceType": "Patient" })),
            ),
            entry(
                "POST",
                "Patient",
                None,
                Some(json!({ "resourceType": "Observation", "status": "final", "code": {} })),
            ),
        ],
    );
    assert_outcome(app.post("", &b2).await, 422, "invalid").await;
    let b3 = bundle(
        "transaction",
        vec![entry(
            "POST",
            "Patient",
            None,
            Some(json!({ "resourceType": "Patient", "meta": "not an object" })),
        )],
    );
    assert_outcome(app.post("", &b3).await, 400, "invalid").await;

    // Only the one patient created before exists, unchanged.
    let h = json(app.get("_history").await).await;
    assert_eq!(h["total"], 1, "{h}");
    assert_eq!(
        json(app.get(&format!("Patient/{existing}")).await).await["name"][0]["family"],
        "Keep"
    );
    app.stop().await;
}

/// http.html#trules: deletes, then creates, then updates, then reads,
/// whatever the order in the Bundle; conditional creates inside.
async fn transaction_processing_order(app: App) {
    let doomed = app
        .create(&json!({ "resourceType": "Patient", "name": [{ "family": "Doomed" }] }))
        .await;
    let keep = app
        .create(&json!({ "resourceType": "Patient", "name": [{ "family": "Kept" }] }))
        .await;
    let b = bundle(
        "transaction",
        vec![
            entry("GET", &format!("Patient/{doomed}"), None, None),
            json!({ "resource": { "resourceType": "Patient", "id": keep, "name": [{ "family": "Kept2" }] },
                    "request": { "method": "PUT", "url": format!("Patient/{keep}") } }),
            json!({ "fullUrl": "urn:uuid:cond", "resource": { "resourceType": "Patient" },
                    "request": { "method": "POST", "url": "Patient", "ifNoneExist": format!("_id={keep}") } }),
            entry("DELETE", &format!("Patient/{doomed}"), None, None),
        ],
    );
    let res = app.post("", &b).await;
    let v = json(res).await;
    // The read runs last, so it sees the deletion.
    assert_eq!(v["entry"][0]["response"]["status"], "410 Gone", "{v}");
    assert_eq!(v["entry"][1]["response"]["status"], "200 OK");
    assert_eq!(
        v["entry"][2]["response"]["status"], "200 OK",
        "the conditional create matched"
    );
    assert_eq!(v["entry"][3]["response"]["status"], "204 No Content");
    app.stop().await;
}

/// http.html#transaction: in a batch each entry stands alone.
async fn batch_entries_succeed_or_fail_alone(app: App) {
    let id = app.create(&json!({ "resourceType": "Patient" })).await;
    let b = bundle(
        "batch",
        vec![
            entry(
                "POST",
                "Patient",
                None,
                Some(json!({ "resourceType": "Patient", "name": [{ "family": "B1" }] })),
            ),
            entry("GET", "Patient/missing", None, None),
            entry(
                "POST",
                "Patient",
                None,
                Some(json!({ "resourceType": "Nope" })),
            ),
            entry("GET", &format!("Patient/{id}"), None, None),
            entry("GET", &format!("Patient?_id={id}"), None, None),
            entry("DELETE", &format!("Patient/{id}"), None, None),
            entry("FETCH", "Patient", None, None),
        ],
    );
    let res = app.post("", &b).await;
    // A method nobody knows makes the Bundle itself invalid.
    assert_outcome(res, 400, "invalid").await;

    let mut entries = b["entry"].as_array().cloned().unwrap_or_default();
    entries.pop();
    let res = app.post("", &bundle("batch", entries)).await;
    assert_eq!(res.status(), 200);
    let v = json(res).await;
    assert_eq!(v["type"], "batch-response");
    let statuses: Vec<&str> = v["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["response"]["status"].as_str())
        .collect();
    assert_eq!(
        statuses,
        [
            "201 Created",
            "404 Not Found",
            "400 Bad Request",
            "200 OK",
            "200 OK",
            "204 No Content"
        ]
    );
    assert_eq!(
        v["entry"][1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert_eq!(v["entry"][4]["resource"]["type"], "searchset");
    assert_eq!(v["entry"][4]["resource"]["total"], 1);
    app.stop().await;
}
