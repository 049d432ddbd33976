//! Two practices in one deployment, on each backend: everything of the
//! first is invisible to the second through every path the API has (read,
//! vread, history, search with chains, `_has`, compartments and includes,
//! conditional operations, transaction references, paging links), answering exactly as if it had never existed; and the
//! same logical id in both practices is two resources.

use serde_json::{Value, json};

use crate::support::{App, json};

crate::on_both_backends!(another_practice_sees_nothing);

const OTHER: &str = "B82002";

/// `path` on the other practice's FHIR base.
fn other(app: &App, path: &str) -> String {
    let base = app.server.base.replace(
        &format!("/practices/{}/", opengp::config::DEFAULT_PRACTICE),
        &format!("/practices/{OTHER}/"),
    );
    if path.is_empty() || path.starts_with('?') {
        format!("{base}{path}")
    } else {
        format!("{base}/{path}")
    }
}

async fn send(app: &App, method: &str, url: &str, body: Option<&Value>) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let mut req = app.client_for(url).request(method, url);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/fhir+json")
            .body(b.to_string());
    }
    req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"))
}

async fn status(app: &App, method: &str, url: &str, body: Option<&Value>) -> u16 {
    send(app, method, url, body).await.status().as_u16()
}

async fn total(app: &App, url: &str) -> Value {
    let v = json(send(app, "GET", url, None).await).await;
    assert_eq!(v["resourceType"], "Bundle", "{url}: {v}");
    assert!(
        v["entry"].as_array().is_none_or(Vec::is_empty),
        "{url}: {v}"
    );
    v["total"].clone()
}

async fn another_practice_sees_nothing(app: App) {
    // A full-access account of the other practice looks.
    app.add_practice(OTHER, "The Other Surgery").await;

    // The first practice: a patient with two versions, an observation.
    let id = app
        .create(&json!({ "resourceType": "Patient", "name": [{ "family": "Mine" }] }))
        .await;
    let v2 = json!({ "resourceType": "Patient", "id": id, "name": [{ "family": "Mine, v2" }] });
    assert_eq!(app.put(&format!("Patient/{id}"), &v2).await.status(), 200);
    app.create(&json!({ "resourceType": "Observation", "status": "final",
                        "code": { "text": "BP" }, "subject": { "reference": format!("Patient/{id}") } }))
        .await;
    app.create(&json!({ "resourceType": "Patient", "name": [{ "family": "Second" }] }))
        .await;

    // read, vread, instance history: 404, as for an id never used.
    for path in [
        format!("Patient/{id}"),
        format!("Patient/{id}/_history/1"),
        format!("Patient/{id}/_history/2"),
        format!("Patient/{id}/_history"),
        "Patient/never-existed".to_owned(),
    ] {
        assert_eq!(
            status(&app, "GET", &other(&app, &path), None).await,
            404,
            "{path}"
        );
    }
    // Type and practice history, search: empty.
    for path in [
        "_history".to_owned(),
        "Patient/_history".to_owned(),
        format!("Patient?_id={id}"),
        "Patient?_total=accurate".to_owned(),
        "?_total=accurate".to_owned(),
        "Observation?_lastUpdated=gt2000-01-01&_total=accurate".to_owned(),
    ] {
        assert_eq!(total(&app, &other(&app, &path)).await, 0, "{path}");
    }

    // Every search path over the index tables: values, references, chains,
    // reverse chains, compartments, includes.
    for path in [
        "Patient?family=Mine&_total=accurate".to_owned(),
        format!("Observation?subject=Patient/{id}&_total=accurate"),
        format!("Observation?subject={id}&_total=accurate"),
        "Observation?subject:Patient.family=Mine&_total=accurate".to_owned(),
        "Patient?_has:Observation:subject:status=final&_total=accurate".to_owned(),
        format!("Patient/{id}/Observation?_total=accurate"),
        "Observation?_include=Observation:subject&_total=accurate".to_owned(),
        "Patient?_revinclude=Observation:subject&_total=accurate".to_owned(),
        "Observation?code:text=BP&_total=accurate".to_owned(),
    ] {
        assert_eq!(total(&app, &other(&app, &path)).await, 0, "{path}");
    }
    assert_eq!(
        status(
            &app,
            "GET",
            &other(&app, &format!("Patient/{id}/$everything")),
            None
        )
        .await,
        404
    );
    // The second practice's own observation pointing at the first's patient
    // id: joins through it find nothing of the first practice, either way.
    let dangling = json!({ "resourceType": "Observation", "status": "preliminary",
        "code": { "text": "theirs" }, "subject": { "reference": format!("Patient/{id}") } });
    assert_eq!(
        status(&app, "POST", &other(&app, "Observation"), Some(&dangling)).await,
        201
    );
    let b = json(
        send(
            &app,
            "GET",
            &other(&app, "Observation?_include=Observation:subject"),
            None,
        )
        .await,
    )
    .await;
    let types: Vec<&str> = b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["resource"]["resourceType"].as_str())
        .collect();
    assert_eq!(types, ["Observation"], "no included Patient: {b}");
    for path in [
        "Observation?subject:Patient.family=Mine&_total=accurate",
        "Observation?subject:Patient.name=Mine&_total=accurate",
    ] {
        assert_eq!(total(&app, &other(&app, path)).await, 0, "{path}");
    }
    for path in [
        "Patient?_has:Observation:subject:status=preliminary&_total=accurate".to_owned(),
        format!("Observation?subject=Patient/{id}&status=preliminary&_total=accurate"),
    ] {
        let v = json(app.get(&path).await).await;
        assert_eq!(v["total"], 0, "{path}: {v}");
    }
    let b = json(app.get("Patient?_revinclude=Observation:subject").await).await;
    let observations = b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["resource"]["resourceType"] == "Observation")
        .count();
    assert_eq!(observations, 1, "only the first practice's own: {b}");

    // Paging links of the first practice, followed on the second.
    let page = json(app.get("Patient?_count=1&_total=accurate").await).await;
    assert_eq!(page["total"], 2);
    let history = json(app.get("_history?_count=1").await).await;
    for bundle in [&page, &history] {
        let next =
            crate::support::next_link(bundle).unwrap_or_else(|| panic!("a next link: {bundle}"));
        let next = next.as_str();
        let moved = next.replace(
            &format!("/practices/{}/", opengp::config::DEFAULT_PRACTICE),
            &format!("/practices/{OTHER}/"),
        );
        assert_ne!(moved, next);
        let v = json(send(&app, "GET", &moved, None).await).await;
        assert!(
            v["entry"].as_array().is_none_or(Vec::is_empty),
            "{moved}: {v}"
        );
    }

    // Writes aimed at the first practice's resource from the second.
    let v3 = json!({ "resourceType": "Patient", "id": id, "name": [{ "family": "Theirs" }] });
    let put = other(&app, &format!("Patient/{id}"));
    let res = send(&app, "PUT", &put, Some(&v3)).await;
    assert_eq!(
        res.status(),
        201,
        "update-as-create: a new resource, not an update"
    );
    // The first practice's version means nothing here: the second
    // practice's own resource of that id is at version 1.
    let res = app
        .client_for(&put)
        .put(&put)
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"2\"")
        .body(v3.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 412);
    let patch = app
        .client_for(&other(&app, ""))
        .patch(other(&app, "Patient/never-existed"))
        .header("content-type", "application/json-patch+json")
        .body(r#"[{"op":"replace","path":"/gender","value":"male"}]"#)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(patch.status(), 404);
    // Conditional create and delete find nothing of the first practice.
    let res = app
        .client_for(&other(&app, ""))
        .post(other(&app, "Observation"))
        .header("content-type", "application/fhir+json")
        .header(
            "if-none-exist",
            format!("subject=Patient/{id}&status=final"),
        )
        .body(
            json!({ "resourceType": "Observation", "status": "final", "code": { "text": "x" } })
                .to_string(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 201, "no match in the second practice");
    assert_eq!(
        status(&app, "DELETE", &other(&app, "Patient?_id=nobody"), None).await,
        204
    );
    // A transaction of the second practice reading the first's resource.
    let tx = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "request": { "method": "GET", "url": format!("Observation?subject=Patient/{id}") } },
        { "request": { "method": "PUT", "url": format!("Patient/{id}"), "ifMatch": "W/\"2\"" },
          "resource": { "resourceType": "Patient", "id": id } }
    ]});
    let res = send(&app, "POST", &other(&app, ""), Some(&tx)).await;
    assert_eq!(
        res.status(),
        412,
        "the second practice's Patient is at version 1"
    );

    // The first practice's resource is untouched; the id is two resources.
    let mine = json(app.get(&format!("Patient/{id}")).await).await;
    assert_eq!(mine["meta"]["versionId"], "2");
    assert_eq!(mine["name"][0]["family"], "Mine, v2");
    let theirs = json(send(&app, "GET", &other(&app, &format!("Patient/{id}")), None).await).await;
    assert_eq!(theirs["meta"]["versionId"], "1");
    assert_eq!(theirs["name"][0]["family"], "Theirs");
    assert_eq!(json(app.get("_history").await).await["total"], 4);
    app.stop().await;
}
