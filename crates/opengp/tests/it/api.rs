//! The RESTful API (FHIR R4 http.html) through a real server on port 0.
//! Each test names the section of http.html it checks, and runs once on
//! each storage backend (`api::sqlite::*`, `api::postgres::*`).

use serde_json::{Value, json};

use crate::support::{App, TEST_MAX_BODY, assert_outcome, json, next_link};

crate::on_both_backends!(
    capabilities_tell_what_is_supported,
    create_then_read,
    read_errors,
    update_versions_and_if_match,
    update_body_must_match_url,
    delete_is_a_version,
    conditional_interactions,
    json_patch,
    history_levels_and_paging,
    search_by_id_and_last_updated,
    conditional_read_and_prefer,
    formats_and_views,
    bad_input_statuses,
    body_over_the_limit_is_413,
);

fn patient(family: &str) -> Value {
    json!({ "resourceType": "Patient", "name": [{ "family": family, "given": ["Ann"] }], "gender": "female" })
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// http.html#capabilities: `GET [base]/metadata`.
async fn capabilities_tell_what_is_supported(app: App) {
    let res = app.get("metadata").await;
    assert_eq!(res.status(), 200);
    let cs = json(res).await;
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    assert_eq!(cs["kind"], "instance");
    let resources = cs["rest"][0]["resource"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(resources.len(), 146, "every concrete R4 resource type");
    let patient = resources
        .iter()
        .find(|r| r["type"] == "Patient")
        .cloned()
        .unwrap_or_default();
    let interactions: Vec<&str> = patient["interaction"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["code"].as_str())
        .collect();
    for i in [
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    ] {
        assert!(interactions.contains(&i), "{i}");
    }
    let params: Vec<&str> = patient["searchParam"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    // search.html#conformance: exactly what search supports.
    for p in [
        "_id",
        "_lastUpdated",
        "_tag",
        "name",
        "family",
        "birthdate",
        "identifier",
        "general-practitioner",
        "_list",
        "_text",
        "_content",
    ] {
        assert!(params.contains(&p), "{p} in {params:?}");
    }
    for p in ["_query", "_filter"] {
        assert!(!params.contains(&p), "{p} is not supported but listed");
    }
    // The audit trail: read and searched by what it indexes, never written.
    let audit = resources
        .iter()
        .find(|r| r["type"] == "AuditEvent")
        .cloned()
        .unwrap_or_default();
    let codes = |key: &str, field: &str| -> Vec<String> {
        audit[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p[field].as_str().map(str::to_owned))
            .collect()
    };
    let audit_params = codes("searchParam", "name");
    for p in ["patient", "agent", "entity", "date", "action", "outcome"] {
        assert!(
            audit_params.iter().any(|a| a == p),
            "{p} in {audit_params:?}"
        );
    }
    for p in ["address", "site", "policy", "agent-role"] {
        assert!(
            !audit_params.iter().any(|a| a == p),
            "{p} is refused but listed"
        );
    }
    let audit_interactions = codes("interaction", "code");
    assert!(audit_interactions.iter().any(|i| i == "search-type"));
    for i in ["create", "update", "patch", "delete"] {
        assert!(
            !audit_interactions.iter().any(|a| a == i),
            "{i} on AuditEvent"
        );
    }
    let includes = patient["searchInclude"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(includes.contains(&json!("Patient:general-practitioner")));
    let revincludes = patient["searchRevInclude"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(revincludes.contains(&json!("Observation:subject")));
    let system: Vec<&str> = cs["rest"][0]["interaction"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["code"].as_str())
        .collect();
    assert_eq!(
        system,
        ["transaction", "batch", "search-system", "history-system"]
    );
    app.stop().await;
}

/// http.html#create and http.html#read: server-assigned id, version 1,
/// `Location`, `ETag`, `Last-Modified`; the read answers the stored bytes.
async fn create_then_read(app: App) {
    let mut body = patient("Smith");
    body["id"] = json!("client-chosen");
    let res = app.post("Patient", &body).await;
    assert_eq!(res.status(), 201);
    let location = header(&res, "location");
    assert_eq!(header(&res, "etag"), "W/\"1\"");
    assert!(header(&res, "last-modified").ends_with("GMT"));
    let created = json(res).await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    assert_ne!(
        id, "client-chosen",
        "create ignores a client id (http.html#create)"
    );
    assert_eq!(location, app.url(&format!("Patient/{id}/_history/1")));
    assert_eq!(created["meta"]["versionId"], "1");
    assert_eq!(created["name"][0]["family"], "Smith");

    let res = app.get(&format!("Patient/{id}")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "etag"), "W/\"1\"");
    assert!(header(&res, "content-type").starts_with("application/fhir+json"));
    assert_eq!(json(res).await, created);
    app.stop().await;
}

/// http.html#read: unknown type and id are 404; a malformed id is 400.
async fn read_errors(app: App) {
    assert_outcome(app.get("Patient/nope").await, 404, "not-found").await;
    assert_outcome(app.get("Patient/nope/_history/1").await, 404, "not-found").await;
    assert_outcome(app.get("Pateint/1").await, 404, "not-found").await;
    assert_outcome(app.get("Patient/a_b").await, 400, "invalid").await;
    let id = app.create(&patient("A")).await;
    assert_outcome(
        app.get(&format!("Patient/{id}/_history/2")).await,
        404,
        "not-found",
    )
    .await;
    assert_outcome(
        app.get(&format!("Patient/{id}/_history/x")).await,
        404,
        "not-found",
    )
    .await;
    // Another practice's URL space, which this server does not serve.
    let other = app.url("").replace("/A81001/", "/B99999/");
    let res = app
        .client
        .get(format!("{other}/Patient/{id}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 404, "not-found").await;
    app.stop().await;
}

/// http.html#update, http.html#vread, http.html#concurrency.
async fn update_versions_and_if_match(app: App) {
    let id = app.create(&patient("Before")).await;
    let mut body = patient("After");
    body["id"] = json!(id);

    let res = app.put(&format!("Patient/{id}"), &body).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "etag"), "W/\"2\"");
    let v2 = json(res).await;
    assert_eq!(v2["meta"]["versionId"], "2");

    // vread keeps every version.
    let v1 = json(app.get(&format!("Patient/{id}/_history/1")).await).await;
    assert_eq!(v1["name"][0]["family"], "Before");
    assert_eq!(
        json(app.get(&format!("Patient/{id}/_history/2")).await).await,
        v2
    );

    // Version-aware update: the right version wins, a stale one is 412.
    let put_if = |version: &str| {
        app.client
            .put(app.url(&format!("Patient/{id}")))
            .header("content-type", "application/fhir+json")
            .header("if-match", version.to_owned())
            .body(body.to_string())
            .send()
    };
    assert_eq!(
        put_if("W/\"2\"")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .status(),
        200
    );
    let stale = put_if("W/\"2\"").await.unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(stale, 412, "conflict").await;
    assert_outcome(
        put_if("nonsense").await.unwrap_or_else(|e| panic!("{e}")),
        400,
        "invalid",
    )
    .await;

    // Update as create with a client-chosen id.
    let mut fresh = patient("New");
    fresh["id"] = json!("chosen-1");
    let res = app.put("Patient/chosen-1", &fresh).await;
    assert_eq!(res.status(), 201);
    assert_eq!(
        json(app.get("Patient/chosen-1").await).await["meta"]["versionId"],
        "1"
    );
    app.stop().await;
}

/// http.html#update: the body must agree with the URL.
async fn update_body_must_match_url(app: App) {
    let id = app.create(&patient("X")).await;
    let mut wrong_id = patient("X");
    wrong_id["id"] = json!("other");
    assert_outcome(
        app.put(&format!("Patient/{id}"), &wrong_id).await,
        422,
        "invalid",
    )
    .await;
    let mut wrong_type =
        json!({ "resourceType": "Observation", "status": "final", "code": {"text": "x"} });
    wrong_type["id"] = json!(id);
    assert_outcome(
        app.put(&format!("Patient/{id}"), &wrong_type).await,
        422,
        "invalid",
    )
    .await;
    assert_outcome(
        app.put(&format!("Patient/{id}"), &patient("no id")).await,
        400,
        "required",
    )
    .await;
    assert_outcome(app.post("Observation", &patient("P")).await, 422, "invalid").await;
    // Nothing of the refused writes is visible.
    let v = json(app.get(&format!("Patient/{id}")).await).await;
    assert_eq!(v["meta"]["versionId"], "1");
    app.stop().await;
}

/// http.html#delete: deletes are versions; a read of a deleted resource is
/// 410; earlier versions stay readable; re-creating continues the versions.
async fn delete_is_a_version(app: App) {
    let id = app.create(&patient("Gone")).await;
    let res = app.delete(&format!("Patient/{id}")).await;
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "etag"), "W/\"2\"");
    let res = app.get(&format!("Patient/{id}")).await;
    assert_eq!(header(&res, "etag"), "W/\"2\"");
    assert_outcome(res, 410, "deleted").await;
    assert_outcome(
        app.get(&format!("Patient/{id}/_history/2")).await,
        410,
        "deleted",
    )
    .await;
    assert_eq!(
        app.get(&format!("Patient/{id}/_history/1")).await.status(),
        200
    );
    // Deleting again, or something unknown, changes nothing.
    assert_eq!(app.delete(&format!("Patient/{id}")).await.status(), 204);
    assert_eq!(app.delete("Patient/never-was").await.status(), 204);
    // Deleted resources are not found by search.
    let b = json(app.get(&format!("Patient?_id={id}")).await).await;
    assert_eq!(b["total"], 0);
    // The history shows the deletion.
    let h = json(app.get(&format!("Patient/{id}/_history")).await).await;
    assert_eq!(h["total"], 2);
    assert_eq!(h["entry"][0]["request"]["method"], "DELETE");
    assert!(h["entry"][0].get("resource").is_none());
    // Bringing it back is version 3.
    let mut again = patient("Back");
    again["id"] = json!(id);
    let res = app.put(&format!("Patient/{id}"), &again).await;
    assert_eq!(res.status(), 201);
    assert_eq!(json(res).await["meta"]["versionId"], "3");
    app.stop().await;
}

/// http.html#ccreate, http.html#cond-update, http.html#cdelete.
async fn conditional_interactions(app: App) {
    let id = app.create(&patient("Cond")).await;
    let cond_create = |criteria: String| {
        app.client
            .post(app.url("Patient"))
            .header("content-type", "application/fhir+json")
            .header("if-none-exist", criteria)
            .body(patient("Dup").to_string())
            .send()
    };
    // A match: nothing created, 200 with the existing resource.
    let res = cond_create(format!("_id={id}"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["id"], id.as_str());
    // No match: created.
    assert_eq!(
        cond_create("_id=nobody".into())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .status(),
        201
    );
    // Several matches: 412.
    let second = app.create(&patient("Other")).await;
    assert_outcome(
        cond_create(format!("_id={id},{second}"))
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        412,
        "conflict",
    )
    .await;
    // Unknown criteria are refused rather than ignored.
    assert_outcome(
        cond_create("nonsense=x".into())
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        400,
        "not-supported",
    )
    .await;

    // Conditional update: one match updates it.
    let mut body = patient("Updated");
    body["id"] = json!(id);
    let res = app.put(&format!("Patient?_id={id}"), &body).await;
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["meta"]["versionId"], "2");
    // No match and no id: created.
    let res = app.put("Patient?_id=missing", &patient("Made")).await;
    assert_eq!(res.status(), 201);
    // Several: 412.
    assert_outcome(
        app.put(&format!("Patient?_id={id},{second}"), &patient("Many"))
            .await,
        412,
        "conflict",
    )
    .await;

    // Conditional delete: one match at most.
    assert_outcome(
        app.delete(&format!("Patient?_id={id},{second}")).await,
        412,
        "conflict",
    )
    .await;
    assert_eq!(
        app.delete(&format!("Patient?_id={second}")).await.status(),
        204
    );
    assert_eq!(app.get(&format!("Patient/{second}")).await.status(), 410);
    assert_eq!(app.delete("Patient?_id=missing-too").await.status(), 204);
    assert_outcome(app.delete("Patient").await, 400, "invalid").await;
    app.stop().await;
}

/// http.html#patch with JSON Patch.
async fn json_patch(app: App) {
    let id = app.create(&patient("Patchy")).await;
    let send = |body: &str, ct: &str| {
        app.client
            .patch(app.url(&format!("Patient/{id}")))
            .header("content-type", ct.to_owned())
            .body(body.to_owned())
            .send()
    };
    let ok = send(r#"[{"op":"replace","path":"/gender","value":"male"},{"op":"add","path":"/active","value":true}]"#, "application/json-patch+json")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok.status(), 200);
    let v = json(ok).await;
    assert_eq!(
        (
            v["gender"].as_str(),
            v["active"].as_bool(),
            v["meta"]["versionId"].as_str()
        ),
        (Some("male"), Some(true), Some("2"))
    );
    // A failing test op applies nothing.
    let failed = send(r#"[{"op":"replace","path":"/gender","value":"other"},{"op":"test","path":"/gender","value":"female"}]"#, "application/json-patch+json")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(failed, 422, "processing").await;
    assert_eq!(
        json(app.get(&format!("Patient/{id}")).await).await["gender"],
        "male"
    );
    // Changing the id or type is refused.
    let id_change = send(
        r#"[{"op":"replace","path":"/id","value":"x"}]"#,
        "application/json-patch+json",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(id_change, 422, "invalid").await;
    let not_patch = send(r#"{"op":"add"}"#, "application/json-patch+json")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(not_patch, 400, "invalid").await;
    let wrong_type = send("[]", "application/fhir+json")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(wrong_type, 415, "not-supported").await;
    app.stop().await;
}

/// http.html#history: instance, type and whole-practice history with
/// `_since`, `_count` and paging links that stay stable while writes go on.
async fn history_levels_and_paging(app: App) {
    let id = app.create(&patient("H0")).await;
    for n in 1..5 {
        let mut b = patient(&format!("H{n}"));
        b["id"] = json!(id);
        assert_eq!(app.put(&format!("Patient/{id}"), &b).await.status(), 200);
    }
    let obs =
        json!({ "resourceType": "Observation", "status": "final", "code": { "text": "weight" } });
    app.create(&obs).await;

    let h = json(app.get(&format!("Patient/{id}/_history")).await).await;
    assert_eq!(h["type"], "history");
    assert_eq!(h["total"], 5);
    let versions: Vec<&str> = h["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["resource"]["meta"]["versionId"].as_str())
        .collect();
    assert_eq!(versions, ["5", "4", "3", "2", "1"], "newest first");
    assert_eq!(h["entry"][4]["request"]["method"], "POST");
    assert_eq!(h["entry"][0]["request"]["method"], "PUT");

    assert_eq!(json(app.get("Patient/_history").await).await["total"], 5);
    assert_eq!(json(app.get("_history").await).await["total"], 6);
    assert_outcome(app.get("Patient/unknown/_history").await, 404, "not-found").await;

    // Paging: follow `next` links two at a time, with a write in between
    // that must not shift the pages.
    let mut url = app.url("_history?_count=2");
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = app.get_json(&url).await;
        pages += 1;
        for e in page["entry"].as_array().into_iter().flatten() {
            seen.push(
                e["fullUrl"].as_str().unwrap_or_default().to_owned()
                    + &e["response"]["etag"].to_string(),
            );
        }
        if pages == 1 {
            app.create(&patient("Written while paging")).await;
        }
        match next_link(&page) {
            Some(next) => url = next,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen.len(),
        6,
        "the six versions that existed when paging began, each once"
    );
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 6);

    // `_since` keeps versions at or after the instant.
    let last = json(app.get(&format!("Patient/{id}")).await).await;
    let since = last["meta"]["lastUpdated"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let h = json(
        app.get(&format!("Patient/{id}/_history?_since={since}"))
            .await,
    )
    .await;
    assert!(
        h["total"].as_u64().is_some_and(|t| (1..5).contains(&t)),
        "{}",
        h["total"]
    );
    assert_outcome(app.get("_history?_since=yesterday").await, 400, "invalid").await;
    app.stop().await;
}

/// search.html (the subset of this issue): `_id`, `_lastUpdated`, paging,
/// `_summary`, `_elements`, and unknown parameters ignored or refused.
async fn search_by_id_and_last_updated(app: App) {
    let mut ids = Vec::new();
    for n in 0..7 {
        ids.push(app.create(&patient(&format!("S{n}"))).await);
    }
    let b = json(app.get(&format!("Patient?_id={},{}", ids[0], ids[1])).await).await;
    assert_eq!(b["type"], "searchset");
    assert_eq!(b["total"], 2);
    assert_eq!(b["entry"][0]["search"]["mode"], "match");
    assert!(
        b["entry"][0]["fullUrl"]
            .as_str()
            .is_some_and(|u| u.starts_with(&app.url("Patient/")))
    );

    let now = json(app.get(&format!("Patient/{}", ids[6])).await).await["meta"]["lastUpdated"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let year = &now[..4];
    assert_eq!(
        json(app.get(&format!("Patient?_lastUpdated={year}")).await).await["total"],
        7
    );
    assert_eq!(
        json(app.get(&format!("Patient?_lastUpdated=lt{year}")).await).await["total"],
        0
    );
    assert_eq!(
        json(
            app.get("Patient?_lastUpdated=gt2000-01-01&_lastUpdated=lt2999")
                .await
        )
        .await["total"],
        7
    );

    // Paging with _count follows next links to the end.
    let mut url = app.url("Patient?_count=3");
    let mut found = Vec::new();
    while !url.is_empty() {
        let page = app.get_json(&url).await;
        assert_eq!(page["total"], 7);
        for e in page["entry"].as_array().into_iter().flatten() {
            found.push(e["resource"]["id"].as_str().unwrap_or_default().to_owned());
        }
        url = next_link(&page).unwrap_or_default();
    }
    found.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(found, want);

    // Sorted by _lastUpdated descending: the newest first.
    let b = json(app.get("Patient?_sort=-_lastUpdated&_count=1").await).await;
    assert_eq!(b["entry"][0]["resource"]["id"], ids[6].as_str());

    // _summary=count, _elements, _summary=true.
    let b = json(app.get("Patient?_summary=count").await).await;
    assert_eq!(
        (b["total"].as_u64(), b.get("entry").is_none()),
        (Some(7), true)
    );
    let b = json(
        app.get(&format!("Patient?_id={}&_elements=gender", ids[0]))
            .await,
    )
    .await;
    let r = &b["entry"][0]["resource"];
    assert!(r.get("name").is_none() && r["gender"] == "female");
    assert!(
        r["meta"]["tag"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["code"] == "SUBSETTED"))
    );

    // Unknown parameters: ignored and reported; refused under handling=strict.
    let res = app.get("Patient?nonsense=S1").await;
    let b = json(res).await;
    assert_eq!(b["total"], 7);
    let last = b["entry"]
        .as_array()
        .and_then(|e| e.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["search"]["mode"], "outcome");
    let self_link = b["link"][0]["url"].as_str().unwrap_or_default();
    assert!(
        !self_link.contains("nonsense"),
        "the self link shows only what was used: {self_link}"
    );
    let strict = app
        .client
        .get(app.url("Patient?nonsense=S1"))
        .header("prefer", "handling=strict")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(strict, 400, "not-supported").await;
    assert_outcome(
        app.get("Patient?_lastUpdated=2020-13-01").await,
        400,
        "invalid",
    )
    .await;
    assert_outcome(app.get("Patient?_count=many").await, 400, "invalid").await;

    // POST _search with a form body; whole-practice search.
    let res = app
        .client
        .post(app.url("Patient/_search"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("_id={}", ids[3]))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(json(res).await["total"], 1);
    assert_eq!(json(app.get("?_count=0").await).await["total"], 7);
    app.stop().await;
}

/// http.html#cread (conditional read) and http.html#ops (`Prefer`).
async fn conditional_read_and_prefer(app: App) {
    let id = app.create(&patient("Cached")).await;
    let get = |h: &'static str, v: String| {
        app.client
            .get(app.url(&format!("Patient/{id}")))
            .header(h, v)
            .send()
    };
    assert_eq!(
        get("if-none-match", "W/\"1\"".into())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .status(),
        304
    );
    assert_eq!(
        get("if-none-match", "W/\"7\"".into())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .status(),
        200
    );
    let later = "Fri, 01 Jan 2100 00:00:00 GMT".to_owned();
    assert_eq!(
        get("if-modified-since", later)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .status(),
        304
    );
    let earlier = "Thu, 01 Jan 1970 00:00:00 GMT".to_owned();
    assert_eq!(
        get("if-modified-since", earlier)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .status(),
        200
    );

    let post_with = |prefer: &'static str| {
        app.client
            .post(app.url("Patient"))
            .header("content-type", "application/fhir+json")
            .header("prefer", prefer)
            .body(patient("Pref").to_string())
            .send()
    };
    let minimal = post_with("return=minimal")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(minimal.status(), 201);
    assert!(!header(&minimal, "location").is_empty());
    assert!(minimal.bytes().await.unwrap_or_default().is_empty());
    let oo = post_with("return=OperationOutcome")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(oo.status(), 201);
    let v = json(oo).await;
    assert_eq!(
        (
            v["resourceType"].as_str(),
            v["issue"][0]["severity"].as_str()
        ),
        (Some("OperationOutcome"), Some("information"))
    );
    app.stop().await;
}

/// http.html#mime-type and http.html#parameters: `_format`, `Accept`,
/// `_pretty`, `_summary` and `_elements` on reads.
async fn formats_and_views(app: App) {
    let mut body = patient("Fmt");
    body["text"] = json!({ "status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Ann Fmt</div>" });
    let id = app.create(&body).await;
    let path = format!("Patient/{id}");
    let with_accept = |accept: &'static str| {
        app.client
            .get(app.url(&path))
            .header("accept", accept)
            .send()
    };

    let plain = with_accept("application/json")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(header(&plain, "content-type").starts_with("application/json"));
    let fhir = with_accept("application/fhir+json;q=0.9, */*;q=0.1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(header(&fhir, "content-type").starts_with("application/fhir+json"));
    assert_outcome(
        with_accept("application/fhir+xml")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        406,
        "not-supported",
    )
    .await;
    assert_outcome(
        app.get(&format!("{path}?_format=xml")).await,
        406,
        "not-supported",
    )
    .await;
    let res = app.get(&format!("{path}?_format=json")).await;
    assert_eq!(res.status(), 200);

    let pretty = app
        .get(&format!("{path}?_pretty=true"))
        .await
        .text()
        .await
        .unwrap_or_default();
    assert!(pretty.contains("\n  \"resourceType\""), "{pretty}");

    let summary = json(app.get(&format!("{path}?_summary=true")).await).await;
    assert!(summary.get("text").is_none() && summary.get("name").is_some());
    let text = json(app.get(&format!("{path}?_summary=text")).await).await;
    assert!(text.get("text").is_some() && text.get("name").is_none());
    let data = json(app.get(&format!("{path}?_summary=data")).await).await;
    assert!(data.get("text").is_none() && data.get("gender").is_some());
    let elements = json(app.get(&format!("{path}?_elements=name")).await).await;
    assert!(elements.get("name").is_some() && elements.get("gender").is_none());
    assert_outcome(
        app.get(&format!("{path}?_summary=maybe")).await,
        400,
        "invalid",
    )
    .await;
    app.stop().await;
}

/// http.html#status: bad input gets the status the specification gives and
/// an OperationOutcome, never a 500, and changes nothing.
async fn bad_input_statuses(app: App) {
    let raw = |method: reqwest::Method, path: &str, ct: Option<&str>, body: &str| {
        let mut r = app
            .client
            .request(method, app.url(path))
            .body(body.to_owned());
        if let Some(ct) = ct {
            r = r.header("content-type", ct.to_owned());
        }
        r.send()
    };
    use reqwest::Method as M;
    let fhir = Some("application/fhir+json");
    // (method, path, content type, body, status, issue code)
    type Case<'a> = (M, &'a str, Option<&'a str>, &'a str, u16, &'a str);
    let cases: Vec<Case> = vec![
        (M::POST, "Patient", fhir, "{not json", 400, "structure"),
        (M::POST, "Patient", fhir, "[1,2]", 400, "invalid"),
        (M::POST, "Patient", fhir, r#"{"name":[]}"#, 400, "invalid"),
        (
            M::POST,
            "Patient",
            fhir,
            r#"{"resourceType":"Nonsense"}"#,
            400,
            "invalid",
        ),
        (
            M::PUT,
            "Patient/x",
            fhir,
            r#"{"resourceType":"Patient","id":"bad id"}"#,
            400,
            "invalid",
        ),
        (
            M::POST,
            "Patient",
            fhir,
            r#"{"resourceType":"Patient","meta":"x"}"#,
            400,
            "invalid",
        ),
        (M::POST, "Patient", fhir, "", 400, "structure"),
        (
            M::POST,
            "Patient",
            Some("application/fhir+xml"),
            "<Patient/>",
            415,
            "not-supported",
        ),
        (M::POST, "Patient", None, "{}", 415, "not-supported"),
        (
            M::POST,
            "Observation",
            fhir,
            r#"{"resourceType":"Patient"}"#,
            422,
            "invalid",
        ),
        (
            M::POST,
            "Nonsense",
            fhir,
            r#"{"resourceType":"Patient"}"#,
            404,
            "not-found",
        ),
        (M::PATCH, "Patient", fhir, "[]", 405, "not-supported"),
        (M::DELETE, "metadata", None, "", 405, "not-supported"),
        (M::PUT, "_history", fhir, "{}", 405, "not-supported"),
        (
            M::POST,
            "Patient/1/_history/1",
            fhir,
            "{}",
            405,
            "not-supported",
        ),
        (
            M::POST,
            "",
            fhir,
            r#"{"resourceType":"Bundle","type":"collection"}"#,
            400,
            "invalid",
        ),
        (
            M::POST,
            "",
            fhir,
            r#"{"resourceType":"Patient"}"#,
            400,
            "invalid",
        ),
        (
            M::GET,
            "Patient/1/_history/1/extra",
            None,
            "",
            404,
            "not-found",
        ),
    ];
    for (method, path, ct, body, status, code) in cases {
        let label = format!("{method} {path} {body}");
        let res = raw(method, path, ct, body)
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(res.status().as_u16(), status, "{label}");
        assert_outcome(res, status, code).await;
    }
    // Nothing was written by any of them.
    assert_eq!(json(app.get("_history").await).await["total"], 0);
    app.stop().await;
}

/// http.html#status: a body over the configured limit is refused with 413.
async fn body_over_the_limit_is_413(app: App) {
    let filler = "x".repeat(TEST_MAX_BODY + 1);
    let body = format!(r#"{{"resourceType":"Patient","name":[{{"text":"{filler}"}}]}}"#);
    let res = app
        .client
        .post(app.url("Patient"))
        .header("content-type", "application/fhir+json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 413, "too-long").await;
    app.stop().await;
}
