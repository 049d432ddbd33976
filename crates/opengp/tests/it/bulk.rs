//! FHIR Bulk Data export (Bulk Data Access IG, export.html) through the
//! API on both backends: kick-off, polling, the manifest, the NDJSON files,
//! the three levels, `_type`, `_since`, `_typeFilter`, cancelling, and
//! errors.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{App, assert_outcome};

crate::on_both_backends!(bulk_export);

/// Kicks off an export; returns the status URL.
async fn kick_off(app: &App, path: &str) -> String {
    let res = app
        .client
        .get(app.url(path))
        .header("prefer", "respond-async")
        .header("accept", "application/fhir+json")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 202, "{path}");
    res.headers()
        .get("content-location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no Content-Location for {path}"))
        .to_owned()
}

/// Polls until the export completes; returns the manifest.
async fn finished(app: &App, status: &str) -> Value {
    for _ in 0..200 {
        let res = app
            .client
            .get(status)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        match res.status().as_u16() {
            202 => tokio::time::sleep(Duration::from_millis(50)).await,
            200 => return res.json().await.unwrap_or_else(|e| panic!("{e}")),
            other => panic!("poll {status}: {other} {:?}", res.text().await),
        }
    }
    panic!("the export did not finish")
}

/// `type -> ids` of every file in a manifest, downloaded.
async fn contents(app: &App, manifest: &Value) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for o in manifest["output"].as_array().into_iter().flatten() {
        let url = o["url"].as_str().unwrap_or_default();
        let res = app
            .client
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 200, "{url}");
        assert_eq!(
            res.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/fhir+ndjson")
        );
        let text = res.text().await.unwrap_or_default();
        let mut ids: Vec<String> = text
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
                assert_eq!(v["resourceType"], o["type"]);
                v["id"].as_str().unwrap_or_default().to_owned()
            })
            .collect();
        assert_eq!(ids.len() as u64, o["count"].as_u64().unwrap_or_default());
        ids.sort();
        out.push((o["type"].as_str().unwrap_or_default().to_owned(), ids));
    }
    out.sort();
    out
}

fn v(list: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    list.iter()
        .map(|(t, ids)| (t.to_string(), ids.iter().map(|s| s.to_string()).collect()))
        .collect()
}

async fn bulk_export(app: App) {
    for (path, body) in [
        (
            "Patient/p1",
            json!({ "resourceType": "Patient", "id": "p1", "name": [{ "family": "One" }] }),
        ),
        (
            "Patient/p2",
            json!({ "resourceType": "Patient", "id": "p2", "name": [{ "family": "Two" }] }),
        ),
        (
            "Practitioner/dr",
            json!({ "resourceType": "Practitioner", "id": "dr" }),
        ),
        (
            "Observation/o1",
            json!({ "resourceType": "Observation", "id": "o1", "status": "final",
            "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "75367002" }] },
            "subject": { "reference": "Patient/p1" }, "performer": [{ "reference": "Practitioner/dr" }] }),
        ),
        (
            "Observation/o2",
            json!({ "resourceType": "Observation", "id": "o2", "status": "final",
            "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "27113001" }] },
            "subject": { "reference": "Patient/p2" } }),
        ),
        (
            "Group/g1",
            json!({ "resourceType": "Group", "id": "g1", "type": "person", "actual": true,
            "member": [{ "entity": { "reference": "Patient/p1" } }] }),
        ),
    ] {
        let res = app.put(path, &body).await;
        assert!(res.status().is_success(), "{path}: {}", res.status());
    }

    // The whole practice, some types.
    let status = kick_off(&app, "$export?_type=Patient,Observation,Practitioner").await;
    let m = finished(&app, &status).await;
    assert!(
        m["transactionTime"].is_string()
            && m["request"].as_str().is_some_and(|r| r.contains("$export")),
        "{m}"
    );
    assert_eq!(m["requiresAccessToken"], true);
    assert_eq!(
        contents(&app, &m).await,
        v(&[
            ("Observation", &["o1", "o2"]),
            ("Patient", &["p1", "p2"]),
            ("Practitioner", &["dr"])
        ])
    );
    // Every patient's compartment (compartmentdefinition-patient.html): no
    // Practitioner; the Group is in it through `member`.
    let m = finished(&app, &kick_off(&app, "Patient/$export").await).await;
    assert_eq!(
        contents(&app, &m).await,
        v(&[
            ("Group", &["g1"]),
            ("Observation", &["o1", "o2"]),
            ("Patient", &["p1", "p2"])
        ])
    );
    // One group's patients.
    let m = finished(&app, &kick_off(&app, "Group/g1/$export").await).await;
    assert_eq!(
        contents(&app, &m).await,
        v(&[
            ("Group", &["g1"]),
            ("Observation", &["o1"]),
            ("Patient", &["p1"])
        ])
    );
    // _typeFilter and _since.
    let m = finished(
        &app,
        &kick_off(
            &app,
            "$export?_type=Observation&_typeFilter=Observation%3Fcode%3D27113001",
        )
        .await,
    )
    .await;
    assert_eq!(contents(&app, &m).await, v(&[("Observation", &["o2"])]));
    let m = finished(
        &app,
        &kick_off(&app, "$export?_since=2999-01-01T00:00:00Z").await,
    )
    .await;
    assert_eq!(m["output"], json!([]), "{m}");

    // Cancelled (here: after finishing), the job and its files are gone.
    let status = kick_off(&app, "$export?_type=Patient").await;
    let m = finished(&app, &status).await;
    let file = m["output"][0]["url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let res = app
        .client
        .delete(&status)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 202);
    let res = app
        .client
        .get(&status)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 404, "not-found").await;
    let res = app
        .client
        .get(&file)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 404, "not-found").await;

    // Mistakes are 400s; an unknown group 404.
    let res = app
        .client
        .get(app.url("$export"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 400, "invalid").await;
    for bad in [
        "$export?_type=Unicorn",
        "$export?_since=yesterday",
        "$export?_typeFilter=Observation%3Fnonsense%3D1",
        "$export?_outputFormat=text/csv",
    ] {
        let res = app
            .client
            .get(app.url(bad))
            .header("prefer", "respond-async")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 400, "{bad}");
    }
    let res = app
        .client
        .get(app.url("Group/nobody/$export"))
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 404, "not-found").await;
    app.stop().await;
}
