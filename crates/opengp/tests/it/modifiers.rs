//! Token search modifiers that need the terminology (search.html#modifiers):
//! `:below`, `:above`, `:in` and `:not-in` on SNOMED CT codes, over the
//! shipped GP subset, through the API on both storage backends, in
//! searches and in the criteria of conditional operations.

use serde_json::{Value, json};

use crate::support::{App, assert_outcome, json};

crate::on_both_backends!(
    below_above_in_and_not_in_expand_against_snomed_ct,
    terminology_modifiers_refuse_what_they_cannot_expand,
    conditional_operations_expand_terminology_modifiers,
);

const SCT: &str = "http://snomed.info/sct";

fn condition(id: &str, system: &str, code: &str) -> Value {
    json!({
        "resourceType": "Condition",
        "id": id,
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": system, "code": code}]}
    })
}

async fn seed(app: &App) {
    let patient = json!({"resourceType": "Patient", "id": "p1"});
    let mut all = vec![patient];
    all.extend([
        condition("t2dm", SCT, "44054006"),
        condition("t1dm", SCT, "46635009"),
        condition("dm", SCT, "73211009"),
        condition("htn", SCT, "38341003"),
        // The same digits in another system are another code.
        condition("other", "http://example.org/codes", "44054006"),
    ]);
    for r in &all {
        let path = format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap_or_default(),
            r["id"].as_str().unwrap_or_default()
        );
        let res = app.put(&path, r).await;
        assert!(
            res.status().is_success(),
            "seeding {path}: {}",
            res.status()
        );
    }
}

/// The ids a search finds, sorted.
async fn ids(app: &App, ty: &str, query: &[(&str, &str)]) -> Vec<String> {
    let res = app.get_with_query(ty, query).await;
    assert_eq!(res.status(), 200, "{ty}?{query:?}");
    let bundle = json(res).await;
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] != "outcome")
        .filter_map(|e| e["resource"]["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

async fn below_above_in_and_not_in_expand_against_snomed_ct(app: App) {
    seed(&app).await;
    let diabetes = format!("{SCT}|73211009");
    let cases: &[(&str, &str, &str, &[&str])] = &[
        // :below: the code and its descendants (73211009 |Diabetes mellitus|).
        (
            "Condition",
            "code:below",
            &diabetes,
            &["dm", "t1dm", "t2dm"],
        ),
        // :above: the code and its ancestors.
        (
            "Condition",
            "code:above",
            "http://snomed.info/sct|44054006",
            &["dm", "t2dm"],
        ),
        (
            "Condition",
            "code:below",
            "http://snomed.info/sct|44054006,http://snomed.info/sct|38341003",
            &["htn", "t2dm"],
        ),
        // :in an implicit value set: is-a, and ECL.
        (
            "Condition",
            "code:in",
            "http://snomed.info/sct?fhir_vs=isa/73211009",
            &["dm", "t1dm", "t2dm"],
        ),
        (
            "Condition",
            "code:in",
            "http://snomed.info/sct?fhir_vs=ecl/<< 73211009 MINUS << 46635009",
            &["dm", "t2dm"],
        ),
        // :not-in: everything not coded in the value set, other systems included.
        (
            "Condition",
            "code:not-in",
            "http://snomed.info/sct?fhir_vs=isa/73211009",
            &["htn", "other"],
        ),
        // Through _has: patients with a diabetic condition.
        (
            "Patient",
            "_has:Condition:subject:code:below",
            &diabetes,
            &["p1"],
        ),
    ];
    for (ty, param, value, expected) in cases {
        assert_eq!(
            ids(&app, ty, &[(param, value)]).await,
            expected.to_vec(),
            "{ty}?{param}={value}"
        );
    }
    // The modifiers combine with other criteria.
    assert_eq!(
        ids(
            &app,
            "Condition",
            &[
                ("code:below", &diabetes),
                ("subject", "Patient/p1"),
                ("code:not-in", "http://snomed.info/sct?fhir_vs=isa/46635009")
            ]
        )
        .await,
        vec!["dm", "t2dm"]
    );
    // A batch's search entries expand the same way (http.html#transaction).
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Condition?code:below=http://snomed.info/sct%7C73211009"}}]});
    let res = app.post("", &batch).await;
    assert_eq!(res.status(), 200);
    let out = json(res).await;
    let found = out["entry"][0]["resource"]["entry"]
        .as_array()
        .map_or(0, |e| {
            e.iter().filter(|x| x["search"]["mode"] == "match").count()
        });
    assert_eq!(found, 3, "{out}");
    // The CapabilityStatement says which modifiers token parameters take.
    let cs = json(app.get("metadata").await).await;
    let doc = cs["rest"][0]["resource"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["type"] == "Condition")
        .flat_map(|r| r["searchParam"].as_array().cloned().unwrap_or_default())
        .find(|p| p["name"] == "code")
        .map(|p| p["documentation"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    for m in [":below", ":above", ":in", ":not-in"] {
        assert!(doc.contains(m), "{m} in {doc}");
    }
}

async fn terminology_modifiers_refuse_what_they_cannot_expand(app: App) {
    for (param, value) in [
        ("code:below", "http://snomed.info/sct|12345"),
        ("code:in", "http://snomed.info/sct?fhir_vs=ecl/<<"),
        ("code:in", "http://snomed.info/sct?fhir_vs=refsets"),
    ] {
        let res = app.get_with_query("Condition", &[(param, value)]).await;
        assert_outcome(res, 400, "invalid").await;
    }
    // Another code system's hierarchy is unknown here: refused under
    // strict handling, ignored and reported otherwise.
    let strict = app
        .client
        .get(app.url("Condition"))
        .query(&[("code:below", "http://loinc.org|1234-5")])
        .header("prefer", "handling=strict")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(strict, 400, "not-supported").await;
    let lenient = app
        .get_with_query("Condition", &[("code:in", "http://example.org/ValueSet/x")])
        .await;
    assert_eq!(lenient.status(), 200);
}

/// http.html#ccreate, #cond-update and #cdelete: a conditional
/// operation's criteria are search criteria, so the terminology modifiers
/// expand in them as in a search, directly and inside a transaction.
async fn conditional_operations_expand_terminology_modifiers(app: App) {
    seed(&app).await;
    let type1 = format!("code:below={SCT}%7C46635009&subject=Patient/p1");
    // Conditional create: the one type 1 diabetes matches; nothing new.
    let res = app
        .client
        .post(app.url("Condition"))
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", &type1)
        .body(condition("ignored", SCT, "46635009").to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 200, "matched, not created");
    assert_eq!(json(res).await["id"], "t1dm");
    // Conditional update of that one match.
    let mut body = condition("t1dm", SCT, "46635009");
    body["note"] = json!([{"text": "insulin pump"}]);
    let res = app.put(&format!("Condition?{type1}"), &body).await;
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["meta"]["versionId"], "2");
    // Criteria matching several (the diabetes hierarchy): 412.
    let res = app
        .put(&format!("Condition?code:below={SCT}%7C73211009"), &body)
        .await;
    assert_outcome(res, 412, "conflict").await;
    // Conditional delete of the one hypertension.
    let res = app
        .delete(&format!("Condition?code:below={SCT}%7C38341003"))
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(
        ids(
            &app,
            "Condition",
            &[("code:below", &format!("{SCT}|38341003"))]
        )
        .await,
        Vec::<String>::new()
    );
    // Inside a transaction: ifNoneExist with a modifier matches too.
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": condition("x", SCT, "44054006"),
        "request": {"method": "POST", "url": "Condition",
                    "ifNoneExist": format!("code:below={SCT}%7C44054006&subject=Patient/p1")}
    }]});
    let res = app.post("", &tx).await;
    assert_eq!(res.status(), 200);
    let out = json(res).await;
    assert_eq!(
        out["entry"][0]["response"]["status"]
            .as_str()
            .unwrap_or_default()
            .split(' ')
            .next(),
        Some("200"),
        "{out}"
    );
    assert_eq!(
        ids(&app, "Condition", &[("code", &format!("{SCT}|44054006"))]).await,
        vec!["t2dm"]
    );
}
