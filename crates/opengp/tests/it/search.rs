//! Search (FHIR R4 search.html) through the API, table-driven: a small
//! practice is seeded once per test, then each row is a query and the
//! resources it must find, by label. Rows cite the section they check.
//!
//! These run on SQLite; the PostgreSQL store does not have the search
//! indexes yet (issue 4 notes it), so they are not on both backends.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::support::{App, assert_outcome, json, next_link};

/// Seeds labelled resources with client-chosen ids equal to the labels.
async fn seed(app: &App, resources: &[Value]) {
    for r in resources {
        let ty = r["resourceType"].as_str().unwrap_or_default();
        let id = r["id"].as_str().unwrap_or_default();
        let res = app.put(&format!("{ty}/{id}"), r).await;
        assert!(
            res.status().is_success(),
            "seeding {ty}/{id}: {}",
            res.status()
        );
    }
}

/// The ids a search finds (matches only), sorted.
async fn ids(app: &App, query: &str) -> Vec<String> {
    let res = app.get(query).await;
    let status = res.status();
    let b = json(res).await;
    assert_eq!(status, 200, "{query}: {b}");
    let mut found: Vec<String> = b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "match")
        .filter_map(|e| e["resource"]["id"].as_str().map(str::to_owned))
        .collect();
    found.sort();
    found
}

pub(crate) async fn check(app: &App, cases: &[(&str, &[&str])]) {
    let mut failures = Vec::new();
    for (query, want) in cases {
        let got = ids(app, query).await;
        let mut want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
        want.sort();
        if got != want {
            failures.push(format!("{query}: got {got:?}, want {want:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} searches wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn patients() -> Vec<Value> {
    vec![
        json!({ "resourceType": "Patient", "id": "ann", "name": [{ "family": "Smith", "given": ["Ann"] }], "gender": "female", "birthDate": "1970-03-14",
                "identifier": [{ "system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009",
                                 "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NH" }] } }],
                "address": [{ "postalCode": "LS1 4AP", "city": "Leeds" }], "generalPractitioner": [{ "reference": "Practitioner/drp" }] }),
        json!({ "resourceType": "Patient", "id": "zoe", "name": [{ "family": "Ó'Brien", "given": ["Zoë"] }], "gender": "female", "birthDate": "2001-12",
                "identifier": [{ "system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000017" }], "active": true }),
        json!({ "resourceType": "Patient", "id": "bob", "name": [{ "family": "Smithson", "given": ["Bob"] }], "gender": "male", "birthDate": "1955",
                "generalPractitioner": [{ "reference": "Practitioner/drq" }] }),
        json!({ "resourceType": "Patient", "id": "nobody", "name": [{ "text": "Unknown" }] }),
        json!({ "resourceType": "Practitioner", "id": "drp", "name": [{ "family": "Patel", "prefix": ["Dr"] }] }),
        json!({ "resourceType": "Practitioner", "id": "drq", "name": [{ "family": "Quinn" }] }),
    ]
}

fn observation(id: &str, patient: &str, code: &str, when: Value, value: Option<f64>) -> Value {
    let mut o = json!({ "resourceType": "Observation", "id": id, "status": "final",
        "code": { "coding": [{ "system": "http://snomed.info/sct", "code": code }], "text": format!("code {code}") },
        "subject": { "reference": format!("Patient/{patient}") } });
    match when {
        Value::String(s) => o["effectiveDateTime"] = json!(s),
        Value::Object(p) => o["effectivePeriod"] = Value::Object(p),
        _ => {}
    }
    if let Some(v) = value {
        o["valueQuantity"] = json!({ "value": v, "system": "http://unitsofmeasure.org", "code": "mmol/mol", "unit": "mmol/mol" });
    }
    o
}

fn observations() -> Vec<Value> {
    vec![
        // HbA1c readings of Ann and Bob, at several precisions.
        observation(
            "hb1",
            "ann",
            "1107481000000106",
            json!("2013-01-14T10:00:00Z"),
            Some(48.0),
        ),
        observation(
            "hb2",
            "ann",
            "1107481000000106",
            json!("2013-02-01"),
            Some(53.5),
        ),
        observation("hb3", "bob", "1107481000000106", json!("2013"), Some(72.0)),
        observation(
            "bp1",
            "bob",
            "75367002",
            json!({ "start": "2012-12-31T23:00:00Z", "end": "2013-01-02T00:00:00Z" }),
            None,
        ),
        observation("nod", "zoe", "75367002", Value::Null, None),
    ]
}

async fn seed_standard(app: &App) {
    let mut all = patients();
    all.extend(observations());
    seed(app, &all).await;
}

crate::on_both_backends!(
    parameter_types_and_modifiers,
    chains_includes_and_sorting,
    errors_and_paging,
    compartments_and_everything,
    lists,
    text_and_content,
    quantities_in_canonical_units,
    quantities_sort_in_canonical_units,
);

/// search.html#string, #token, #date, #reference, #quantity, #number and
/// #uri, with their modifiers and prefixes.
async fn parameter_types_and_modifiers(app: App) {
    seed_standard(&app).await;
    check(
        &app,
        &[
            // string: starts-with, case and accent insensitive; :exact; :contains
            ("Patient?family=smith", &["ann", "bob"]),
            ("Patient?family=SMITHSON", &["bob"]),
            ("Patient?family=o'brien", &["zoe"]),
            ("Patient?given=zoe", &["zoe"]),
            ("Patient?family:exact=Smith", &["ann"]),
            ("Patient?family:exact=smith", &[]),
            ("Patient?family:contains=ith", &["ann", "bob"]),
            ("Patient?name=unknown", &["nobody"]),
            ("Patient?address-postalcode=ls1", &["ann"]),
            ("Patient?address=leeds", &["ann"]),
            // token: code, system|code, |code, system|, :not, :text, :of-type
            ("Patient?gender=female", &["ann", "zoe"]),
            ("Patient?gender=female,male", &["ann", "bob", "zoe"]),
            ("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009", &["ann"]),
            ("Patient?identifier=9000000017", &["zoe"]),
            ("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|", &["ann", "zoe"]),
            ("Patient?identifier=|9000000009", &[]),
            ("Patient?identifier=http://other|9000000009", &[]),
            ("Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|NH|9000000009", &["ann"]),
            // search.html#modifiers: :not also finds resources with no value.
            ("Patient?gender:not=female", &["bob", "nobody"]),
            ("Patient?active=true", &["zoe"]),
            ("Observation?code=http://snomed.info/sct|75367002", &["bp1", "nod"]),
            ("Observation?code:text=code 7536", &["bp1", "nod"]),
            // :missing
            ("Patient?birthdate:missing=true", &["nobody"]),
            ("Patient?birthdate:missing=false", &["ann", "bob", "zoe"]),
            ("Observation?date:missing=true", &["nod"]),
            // date with prefixes and precision (search.html#date)
            ("Patient?birthdate=1970", &["ann"]),
            ("Patient?birthdate=1970-03-14", &["ann"]),
            ("Patient?birthdate=2001-12-05", &[]),
            ("Patient?birthdate=ge2001-12-05", &["zoe"]),
            ("Patient?birthdate=lt1971", &["ann", "bob"]),
            ("Patient?birthdate=gt1960&birthdate=lt2000", &["ann"]),
            ("Patient?birthdate=sa1990", &["zoe"]),
            ("Patient?birthdate=eb1960", &["bob"]),
            ("Patient?birthdate=ne1970", &["bob", "zoe"]),
            // `date=2013-01` against an instant, a day, a year and a period.
            ("Observation?date=2013-01", &["hb1"]),
            // eq: the search range must contain the whole target range, so
            // a period that starts in 2012 is not "in 2013".
            ("Observation?date=2013", &["hb1", "hb2", "hb3"]),
            ("Observation?date=lt2013", &["bp1"]),
            ("Observation?date=gt2013-01-01", &["bp1", "hb1", "hb2", "hb3"]),
            ("Observation?date=ap2013-01-01", &["bp1", "hb3"]),
            ("Observation?date=ge2013-01-15", &["hb2", "hb3"]),
            ("Observation?date=le2012-12-31", &[]),
            ("Observation?date=le2013-01-01", &["bp1"]),
            ("Observation?date=ne2013-01", &["bp1", "hb2", "hb3"]),
            // reference: Type/id, id, :Type, :identifier-less, chained
            ("Observation?subject=Patient/ann", &["hb1", "hb2"]),
            ("Observation?subject=bob", &["hb3", "bp1"]),
            ("Observation?subject:Patient=zoe", &["nod"]),
            ("Observation?patient=Patient/zoe", &["nod"]),
            ("Patient?general-practitioner=Practitioner/drp", &["ann"]),
            // quantity and its implicit range (search.html#quantity)
            ("Observation?value-quantity=48", &["hb1"]),
            ("Observation?value-quantity=gt50", &["hb2", "hb3"]),
            ("Observation?value-quantity=le53.5|http://unitsofmeasure.org|mmol/mol", &["hb1", "hb2"]),
            ("Observation?value-quantity=53||mmol/mol", &[]),
            ("Observation?value-quantity=53.5||mmol/mol", &["hb2"]),
            ("Observation?value-quantity=ap70", &["hb3"]),
            ("Observation?value-quantity=72|http://unitsofmeasure.org|mg", &[]),
            // composite (search.html#composite)
            ("Observation?code-value-quantity=http://snomed.info/sct|1107481000000106$gt60", &["hb3"]),
            ("Observation?code-value-quantity=http://snomed.info/sct|75367002$gt0", &[]),
        ],
    )
    .await;
    app.stop().await;
}

/// search.html#chaining, search.html#has, search.html#include and
/// search.html#sort.
async fn chains_includes_and_sorting(app: App) {
    seed_standard(&app).await;
    check(
        &app,
        &[
            (
                "Observation?subject:Patient.name=smith",
                &["hb1", "hb2", "hb3", "bp1"],
            ),
            (
                "Observation?subject:Patient.gender=female&code=75367002",
                &["nod"],
            ),
            (
                "Observation?subject.general-practitioner.name=patel",
                &["hb1", "hb2"],
            ),
            (
                "Patient?_has:Observation:patient:code=1107481000000106",
                &["ann", "bob"],
            ),
            (
                "Patient?_has:Observation:subject:value-quantity=gt70",
                &["bob"],
            ),
            (
                "Patient?_id=ann,bob&_has:Observation:patient:code=75367002",
                &["bob"],
            ),
        ],
    )
    .await;

    // Chained with _include: the observations and their patients.
    let b = json(app.get("Observation?subject:Patient.name=smith&code=1107481000000106&_include=Observation:subject").await).await;
    let mut modes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in b["entry"].as_array().into_iter().flatten() {
        let key = format!(
            "{}/{}",
            e["resource"]["resourceType"].as_str().unwrap_or(""),
            e["resource"]["id"].as_str().unwrap_or("")
        );
        modes
            .entry(e["search"]["mode"].as_str().unwrap_or("").to_owned())
            .or_default()
            .insert(key);
    }
    let set = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
    assert_eq!(
        modes.get("match"),
        Some(&set(&[
            "Observation/hb1",
            "Observation/hb2",
            "Observation/hb3"
        ]))
    );
    assert_eq!(
        modes.get("include"),
        Some(&set(&["Patient/ann", "Patient/bob"]))
    );
    assert_eq!(b["total"], 3, "includes are not counted");

    // _include:iterate follows the patients to their practitioners;
    // _revinclude brings what points at the matches.
    let b = json(app.get("Observation?_id=hb1&_include=Observation:subject&_include:iterate=Patient:general-practitioner").await).await;
    let included: BTreeSet<String> = b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "include")
        .filter_map(|e| e["resource"]["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(included, set(&["ann", "drp"]));
    let b = json(
        app.get("Patient?_id=bob&_revinclude=Observation:subject")
            .await,
    )
    .await;
    let included: BTreeSet<String> = b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "include")
        .filter_map(|e| e["resource"]["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(included, set(&["bp1", "hb3"]));

    // Sorting by a parameter, several keys, and missing values last.
    let order = |b: &Value| -> Vec<String> {
        b["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["resource"]["id"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        order(&json(app.get("Patient?_sort=birthdate").await).await),
        ["bob", "ann", "zoe", "nobody"]
    );
    assert_eq!(
        order(&json(app.get("Patient?_sort=-birthdate").await).await),
        ["zoe", "ann", "bob", "nobody"]
    );
    assert_eq!(
        order(&json(app.get("Patient?_sort=gender,-birthdate").await).await),
        ["zoe", "ann", "bob", "nobody"]
    );
    assert_eq!(
        order(
            &json(
                app.get("Observation?_sort=-value-quantity&code=1107481000000106")
                    .await
            )
            .await
        ),
        ["hb3", "hb2", "hb1"]
    );
    app.stop().await;
}

/// search.html#errors: bad values are 400; unknown parameters ignored but
/// reported, or refused under `handling=strict`; search.html#paging.
async fn errors_and_paging(app: App) {
    seed_standard(&app).await;
    for bad in [
        "Patient?birthdate=yesterday",
        "Observation?value-quantity=lots",
        "Patient?identifier=a|b|c",
        "Observation?subject=Nope/1",
        "Patient?gender:missing=maybe",
    ] {
        assert_outcome(app.get(bad).await, 400, "invalid").await;
    }
    let strict = app
        .client
        .get(app.url("Patient?gender:below=x"))
        .header("prefer", "handling=strict")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(strict, 400, "not-supported").await;

    // Paging stays stable while resources are created between pages: every
    // patient that existed when paging began is seen exactly once.
    let mut url = app.url("Patient?_count=2");
    let mut seen = Vec::new();
    let mut pages = 0;
    while !url.is_empty() {
        let page = app.get_json(&url).await;
        for e in page["entry"].as_array().into_iter().flatten() {
            seen.push(e["resource"]["id"].as_str().unwrap_or("").to_owned());
        }
        // New patients sort before and after the cursor alike.
        for id in [format!("aaa{pages}"), format!("zzz{pages}")] {
            seed(&app, &[json!({ "resourceType": "Patient", "id": id })]).await;
        }
        pages += 1;
        url = next_link(&page).unwrap_or_default();
    }
    for id in ["ann", "bob", "nobody", "zoe"] {
        assert_eq!(
            seen.iter().filter(|s| *s == id).count(),
            1,
            "{id} in {seen:?}"
        );
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no duplicates: {seen:?}");
    app.stop().await;
}

/// Compartment search (compartmentdefinition.html, http.html#search) and
/// `Patient/[id]/$everything`.
async fn compartments_and_everything(app: App) {
    seed_standard(&app).await;
    check(
        &app,
        &[
            ("Patient/ann/Observation", &["hb1", "hb2"]),
            ("Patient/ann/Observation?value-quantity=gt50", &["hb2"]),
            ("Patient/bob/Observation?_sort=date", &["bp1", "hb3"]),
            ("Patient/ann/Patient", &["ann"]),
            ("Patient/zoe/*", &["nod", "zoe"]),
            ("Patient/nobody/Observation", &[]),
        ],
    )
    .await;
    assert_outcome(app.get("Patient/ann/Practitioner").await, 404, "not-found").await;
    assert_outcome(app.get("Observation/hb1/Patient").await, 404, "not-found").await;

    let b = json(app.get("Patient/ann/$everything").await).await;
    let mut got: Vec<String> = b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["resource"]["id"].as_str().map(str::to_owned))
        .collect();
    got.sort();
    assert_eq!(got, ["ann", "hb1", "hb2"]);
    let b = json(
        app.get("Patient/ann/$everything?_type=Observation&_count=1")
            .await,
    )
    .await;
    assert_eq!(b["total"], 2);
    assert!(next_link(&b).is_some());
    assert_outcome(app.get("Patient/ghost/$everything").await, 404, "not-found").await;
    app.stop().await;
}

/// `_list` (search.html#list): the resources a List's entries refer to, of
/// the searched type, with other parameters, exact totals and paging; and
/// the functional lists (lifecycle.html#lists) from what the record holds.
async fn lists(app: App) {
    seed_standard(&app).await;
    let coded =
        |system: &str, code: &str| json!({ "coding": [{ "system": system, "code": code }] });
    let clinical = "http://terminology.hl7.org/CodeSystem/condition-clinical";
    let category = "http://terminology.hl7.org/CodeSystem/condition-category";
    let allergy = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
    let condition = |id: &str, patient: &str, status: &str, cat: &str| {
        json!({ "resourceType": "Condition", "id": id, "subject": { "reference": format!("Patient/{patient}") },
                "clinicalStatus": coded(clinical, status), "category": [coded(category, cat)] })
    };
    let medication = |id: &str, patient: &str, status: &str| {
        json!({ "resourceType": "MedicationRequest", "id": id, "status": status, "intent": "order",
                "medicationCodeableConcept": { "text": "metformin" }, "subject": { "reference": format!("Patient/{patient}") } })
    };
    let entries = |refs: &[&str]| -> Vec<Value> {
        refs.iter()
            .map(|r| json!({ "item": { "reference": r } }))
            .collect()
    };
    seed(
        &app,
        &[
            condition("diabetes", "ann", "active", "problem-list-item"),
            condition("asthma", "ann", "resolved", "problem-list-item"),
            condition("cough", "ann", "active", "encounter-diagnosis"),
            condition("gout", "bob", "active", "problem-list-item"),
            medication("metformin", "ann", "active"),
            medication("old", "ann", "stopped"),
            json!({ "resourceType": "AllergyIntolerance", "id": "penicillin", "patient": { "reference": "Patient/ann" },
                    "clinicalStatus": coded(allergy, "active") }),
            json!({ "resourceType": "AllergyIntolerance", "id": "latex", "patient": { "reference": "Patient/ann" },
                    "clinicalStatus": coded(allergy, "inactive") }),
            json!({ "resourceType": "Observation", "id": "gone", "status": "final", "code": { "text": "x" } }),
            // Mixed types, an entry whose resource is then deleted, and one
            // that was never there.
            json!({ "resourceType": "List", "id": "mixed", "status": "current", "mode": "working",
                    "entry": entries(&["Observation/hb1", "Observation/hb3", "Observation/bp1", "Patient/ann",
                                       "Patient/zoe", "Observation/gone", "Observation/never"]) }),
            json!({ "resourceType": "List", "id": "other", "status": "current", "mode": "working",
                    "entry": entries(&["Observation/nod", "Observation/hb1"]) }),
            json!({ "resourceType": "List", "id": "dropped", "status": "current", "mode": "working",
                    "entry": entries(&["Observation/hb2"]) }),
            // A list of changes: an entry marked deleted is no longer in it.
            json!({ "resourceType": "List", "id": "changes", "status": "current", "mode": "changes",
                    "entry": [{ "item": { "reference": "Observation/hb1" }, "deleted": true },
                              { "item": { "reference": "Observation/hb3" }, "deleted": false },
                              { "item": { "reference": "Observation/bp1" } }] }),
        ],
    )
    .await;
    assert_eq!(app.delete("Observation/gone").await.status(), 204);
    assert_eq!(app.delete("List/dropped").await.status(), 204);
    check(
        &app,
        &[
            // search.html#list: only entries of the searched type, and only
            // those that still exist.
            ("Observation?_list=mixed", &["bp1", "hb1", "hb3"]),
            ("Patient?_list=mixed", &["ann", "zoe"]),
            // Combined with other parameters (ANDed), and with another list.
            ("Observation?_list=mixed&patient=bob", &["bp1", "hb3"]),
            (
                "Observation?_list=mixed&code=1107481000000106",
                &["hb1", "hb3"],
            ),
            ("Observation?_list=mixed&_list=other", &["hb1"]),
            ("Observation?_list=changes", &["bp1", "hb3"]),
            // `item` is the specification's `List.entry.item`, deleted or not.
            ("List?item=Observation/hb1", &["changes", "mixed", "other"]),
            (
                "Observation?_list=mixed,other",
                &["bp1", "hb1", "hb3", "nod"],
            ),
            (
                "Patient?_has:Observation:subject:_list=other",
                &["ann", "zoe"],
            ),
            // A deleted list and an unknown one hold nothing.
            ("Observation?_list=dropped", &[]),
            ("Observation?_list=nosuch", &[]),
            // Across types (search.html#list on the whole system).
            ("?_list=mixed", &["ann", "bp1", "hb1", "hb3", "zoe"]),
            // lifecycle.html#lists: functional lists, defined by what the
            // record holds.
            (
                "Condition?patient=ann&_list=$current-problems",
                &["diabetes"],
            ),
            ("Condition?_list=$current-problems", &["diabetes", "gout"]),
            (
                "MedicationRequest?patient=ann&_list=$current-medications",
                &["metformin"],
            ),
            (
                "AllergyIntolerance?patient=ann&_list=$current-allergies",
                &["penicillin"],
            ),
            ("?_list=$current-allergies", &["penicillin"]),
        ],
    )
    .await;
    // Exact totals and paging inside the query.
    let first = app
        .get_json(&app.url("Observation?_list=mixed&_count=2&_total=accurate"))
        .await;
    assert_eq!(first["total"], 3, "{first}");
    let mut seen = Vec::new();
    let mut url = app.url("Observation?_list=mixed,other&_count=2");
    while !url.is_empty() {
        let page = app.get_json(&url).await;
        for e in page["entry"].as_array().into_iter().flatten() {
            seen.push(e["resource"]["id"].as_str().unwrap_or("").to_owned());
        }
        url = next_link(&page).unwrap_or_default();
    }
    assert_eq!(seen, ["bp1", "hb1", "hb3", "nod"]);
    // A functional list holds one type; asked of another it is an error,
    // and an unknown one is not supported.
    assert_outcome(
        app.get("Observation?_list=$current-problems").await,
        400,
        "invalid",
    )
    .await;
    let strict = app
        .client
        .get(app.url("Condition?_list=$current-worries"))
        .header("prefer", "handling=strict")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(strict, 400, "not-supported").await;
    app.stop().await;
}

/// `_text` and `_content` (search.html#text): every word of a value must
/// appear, as a word or a word's start, whatever the case and accents;
/// comma-separated values are ORed, repeats ANDed; `_text` reads the
/// narrative only, `_content` the whole resource.
async fn text_and_content(app: App) {
    seed_standard(&app).await;
    let narrative = |div: &str| json!({ "status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{div}</div>") });
    seed(
        &app,
        &[
            json!({ "resourceType": "Condition", "id": "chest", "subject": { "reference": "Patient/ann" },
                    "text": narrative("<p>Chest <b>pain</b> on exertion, r&#233;f&amp;erred to cardiology</p>"),
                    "code": { "text": "Angina pectoris" }, "note": [{ "text": "Seen by Dr Zoë Müller" }] }),
            json!({ "resourceType": "Condition", "id": "knee", "subject": { "reference": "Patient/bob" },
                    "text": narrative("Knee PAIN after a fall"),
                    "code": { "text": "Osteoarthritis of knee" } }),
            json!({ "resourceType": "Condition", "id": "plain", "subject": { "reference": "Patient/ann" },
                    "code": { "text": "Chest infection" }, "note": [{ "text": "Café visit; pain free" }] }),
            json!({ "resourceType": "Condition", "id": "changed", "subject": { "reference": "Patient/ann" },
                    "text": narrative("Chest pain") }),
        ],
    )
    .await;
    // A new version replaces the words of the old one.
    seed(
        &app,
        &[json!({ "resourceType": "Condition", "id": "changed", "subject": { "reference": "Patient/ann" },
                  "text": narrative("Resolved migraine") })],
    )
    .await;
    check(
        &app,
        &[
            // The narrative only, every word, any case.
            ("Condition?_text=pain", &["chest", "knee"]),
            ("Condition?_text=CHEST%20pain", &["chest"]),
            ("Condition?_text=pain%20cardiology", &["chest"]),
            ("Condition?_text=angina", &[]),
            // Word prefixes, never inside a word.
            ("Condition?_text=cardio", &["chest"]),
            ("Condition?_text=ardiology", &[]),
            // OR by comma, AND by repetition.
            ("Condition?_text=knee,exertion", &["chest", "knee"]),
            ("Condition?_text=pain&_text=fall", &["knee"]),
            // Markup is not text; a new version's words replace the old.
            ("Condition?_text=div", &[]),
            ("Condition?_text=migraine", &["changed"]),
            // _content: every string of the resource, narrative included.
            ("Condition?_content=angina", &["chest"]),
            ("Condition?_content=chest", &["chest", "plain"]),
            ("Condition?_content=pain", &["chest", "knee", "plain"]),
            // Accents either way.
            ("Condition?_content=muller%20zoe", &["chest"]),
            ("Condition?_content=M%C3%9CLLER", &["chest"]),
            ("Condition?_content=cafe", &["plain"]),
            ("Condition?_content=caf%C3%A9", &["plain"]),
            // Combined with other parameters, chains and _has.
            ("Condition?_content=pain&patient=ann", &["chest", "plain"]),
            (
                "Condition?_content=pain&subject:Patient.name=smithson",
                &["knee"],
            ),
            ("Patient?_has:Condition:subject:_text=knee", &["bob"]),
            // :missing on another parameter is unaffected by the text.
            (
                "Condition?_content=pain&onset-date:missing=true",
                &["chest", "knee", "plain"],
            ),
            // Other types: the standard seeds have no narrative.
            ("Observation?_text=code", &[]),
            (
                "Observation?_content=1107481000000106",
                &["hb1", "hb2", "hb3"],
            ),
            ("Patient?_content=leeds", &["ann"]),
        ],
    )
    .await;
    let total = app
        .get_json(&app.url("Condition?_content=pain&_count=1&_total=accurate"))
        .await;
    assert_eq!(total["total"], 3, "{total}");
    // A value without a word is malformed; a modifier is not supported.
    assert_outcome(app.get("Condition?_text=%20--%20").await, 400, "invalid").await;
    let strict = app
        .client
        .get(app.url("Condition?_text:exact=pain"))
        .header("prefer", "handling=strict")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(strict, 400, "not-supported").await;
    app.stop().await;
}

/// An Observation of `value` in unit `code` of `system` (with no system,
/// the unit alone: a code needs its system, qty-3).
fn measured(id: &str, value: f64, system: Option<&str>, code: &str) -> Value {
    let mut q = json!({ "value": value, "unit": code });
    if let Some(s) = system {
        q["system"] = json!(s);
        q["code"] = json!(code);
    }
    json!({ "resourceType": "Observation", "id": id, "status": "final",
            "code": { "text": "a measurement" }, "valueQuantity": q })
}

/// search.html#quantity: "the server may also apply canonical units": a
/// UCUM value is compared with every UCUM quantity in commensurable units
/// (OpenGP's UCUM subset, gp-fhir `ucum.rs`), with the implicit range and
/// the prefixes converted alike (offset units too); what UCUM makes
/// incommensurable (an arbitrary unit with anything but itself) never
/// matches; a value in another system, or with no system, or in a code
/// OpenGP does not reduce, is compared as written only.
async fn quantities_in_canonical_units(app: App) {
    const UCUM: &str = "http://unitsofmeasure.org";
    let obs = measured;
    seed(
        &app,
        &[
            obs("ug", 5400.0, Some(UCUM), "ug"),
            obs("mg", 5.4, Some(UCUM), "mg"),
            obs("g", 0.0054, Some(UCUM), "g"),
            obs("nosystem", 5.4, None, "mg"),
            obs("othersystem", 5.4, Some("http://example.org/units"), "mg"),
            obs("glucose", 5.5, Some(UCUM), "mmol/L"),
            obs("metre", 1.8, Some(UCUM), "m"),
            obs("cm", 180.0, Some(UCUM), "cm"),
            obs("inch", 70.866, Some(UCUM), "[in_i]"),
            obs("pulse", 72.0, Some(UCUM), "{beats}/min"),
            obs("hertz", 1.2, Some(UCUM), "/s"),
            // Temperatures: kelvin, and the special units degrees Celsius
            // and Fahrenheit (UCUM §21: an offset, not a scale).
            obs("celsius", 37.0, Some(UCUM), "Cel"),
            obs("fahrenheit", 98.6, Some(UCUM), "[degF]"),
            obs("kelvin", 310.15, Some(UCUM), "K"),
            obs("fever", 39.5, Some(UCUM), "Cel"),
            obs("cold", 95.0, Some(UCUM), "[degF]"),
            // Pressure: mm[Hg] is 133.322 Pa in UCUM.
            obs("mmhg", 120.0, Some(UCUM), "mm[Hg]"),
            obs("kpa", 16.0, Some(UCUM), "kPa"),
            // The international unit, arbitrary (UCUM §24), and the enzyme
            // unit U (umol/min), a proper unit: never comparable.
            obs("iu", 5.0, Some(UCUM), "[iU]/L"),
            obs("milli-iu", 5.0, Some(UCUM), "m[iU]/mL"),
            obs("big-iu", 5.0, Some(UCUM), "[IU]/L"),
            obs("enzyme", 5.0, Some(UCUM), "U/L"),
            obs("arbitrary", 5.0, Some(UCUM), "[arb'U]/L"),
            // Equivalents are moles (UCUM: eq = 1 mol); `mEq` is no UCUM code.
            obs("sodium", 140.0, Some(UCUM), "mmol/L"),
            obs("sodium-meq", 140.0, Some(UCUM), "meq/L"),
            obs("sodium-mEq", 140.0, Some(UCUM), "mEq/L"),
        ],
    )
    .await;
    check(
        &app,
        &[
            // Mass: mg, ug and g are one dimension.
            (
                "Observation?value-quantity=5.4|http://unitsofmeasure.org|mg",
                &["g", "mg", "ug"],
            ),
            (
                "Observation?value-quantity=5400|http://unitsofmeasure.org|ug",
                &["g", "mg", "ug"],
            ),
            (
                "Observation?value-quantity=0.0054|http://unitsofmeasure.org|g",
                &["g", "mg", "ug"],
            ),
            // Prefixes (search.html#prefix) on the canonical value.
            (
                "Observation?value-quantity=gt5|http://unitsofmeasure.org|mg",
                &["g", "mg", "ug"],
            ),
            (
                "Observation?value-quantity=lt6000|http://unitsofmeasure.org|ug",
                &["g", "mg", "ug"],
            ),
            (
                "Observation?value-quantity=gt6|http://unitsofmeasure.org|mg",
                &[],
            ),
            (
                "Observation?value-quantity=ne5.4|http://unitsofmeasure.org|mg",
                &[],
            ),
            (
                "Observation?value-quantity=ap5.2|http://unitsofmeasure.org|mg",
                &["g", "mg", "ug"],
            ),
            // Another dimension is never a match: mass concentration is
            // not amount of substance.
            (
                "Observation?value-quantity=5.5|http://unitsofmeasure.org|mmol/L",
                &["glucose"],
            ),
            (
                "Observation?value-quantity=99|http://unitsofmeasure.org|mg/dL",
                &[],
            ),
            (
                "Observation?value-quantity=5.4|http://unitsofmeasure.org|mL",
                &[],
            ),
            // Length, customary units included; rates, annotations ignored.
            (
                "Observation?value-quantity=180|http://unitsofmeasure.org|cm",
                &["cm", "inch", "metre"],
            ),
            (
                "Observation?value-quantity=72|http://unitsofmeasure.org|/min",
                &["hertz", "pulse"],
            ),
            // Not UCUM: the code as written, in that system or any.
            (
                "Observation?value-quantity=5.4||mg",
                &["mg", "nosystem", "othersystem"],
            ),
            (
                "Observation?value-quantity=5.4|http://example.org/units|mg",
                &["othersystem"],
            ),
            // A UCUM code OpenGP does not reduce is compared as written.
            (
                "Observation?value-quantity=5.4|http://unitsofmeasure.org|[drp]",
                &[],
            ),
            // Temperatures in kelvin, the implicit range converted bound by
            // bound: 37 Cel is [309.65, 310.65) K, 98.6 [degF] [310.12, 310.18).
            (
                "Observation?value-quantity=37|http://unitsofmeasure.org|Cel",
                &["celsius", "fahrenheit", "kelvin"],
            ),
            (
                "Observation?value-quantity=98.6|http://unitsofmeasure.org|[degF]",
                &["celsius", "fahrenheit", "kelvin"],
            ),
            (
                "Observation?value-quantity=310.15|http://unitsofmeasure.org|K",
                &["celsius", "fahrenheit", "kelvin"],
            ),
            (
                "Observation?value-quantity=37|http://unitsofmeasure.org|K",
                &[],
            ),
            (
                "Observation?value-quantity=gt38|http://unitsofmeasure.org|Cel",
                &["fever"],
            ),
            (
                "Observation?value-quantity=lt96|http://unitsofmeasure.org|[degF]",
                &["cold"],
            ),
            (
                "Observation?value-quantity=ne37|http://unitsofmeasure.org|Cel",
                &["cold", "fever"],
            ),
            // `ap` is 10% of the value as written (18 to 22 Cel), not of
            // its kelvin (which would reach 49 Cel).
            (
                "Observation?value-quantity=ap20|http://unitsofmeasure.org|Cel",
                &[],
            ),
            (
                "Observation?value-quantity=ap100|http://unitsofmeasure.org|[degF]",
                &["celsius", "cold", "fahrenheit", "fever", "kelvin"],
            ),
            // Pressure: 120 mm[Hg] is 15.999 kPa.
            (
                "Observation?value-quantity=120|http://unitsofmeasure.org|mm[Hg]",
                &["kpa", "mmhg"],
            ),
            (
                "Observation?value-quantity=16|http://unitsofmeasure.org|kPa",
                &["kpa", "mmhg"],
            ),
            // International units with their prefixed forms ([IU] = 1 [iU]),
            // nothing else; another arbitrary unit only as written.
            (
                "Observation?value-quantity=5|http://unitsofmeasure.org|[iU]/L",
                &["big-iu", "iu", "milli-iu"],
            ),
            (
                "Observation?value-quantity=5|http://unitsofmeasure.org|m[iU]/mL",
                &["big-iu", "iu", "milli-iu"],
            ),
            (
                "Observation?value-quantity=5|http://unitsofmeasure.org|U/L",
                &["enzyme"],
            ),
            (
                "Observation?value-quantity=5|http://unitsofmeasure.org|[arb'U]/L",
                &["arbitrary"],
            ),
            // Equivalents.
            (
                "Observation?value-quantity=140|http://unitsofmeasure.org|meq/L",
                &["sodium", "sodium-meq"],
            ),
            (
                "Observation?value-quantity=140|http://unitsofmeasure.org|mmol/L",
                &["sodium", "sodium-meq"],
            ),
            (
                "Observation?value-quantity=140|http://unitsofmeasure.org|mEq/L",
                &["sodium-mEq"],
            ),
        ],
    )
    .await;
    app.stop().await;
}

/// search.html#sort on a quantity parameter: values in UCUM units sort by
/// their canonical value (OpenGP's UCUM subset, gp-fhir `ucum.rs`), those of
/// one canonical unit together (kelvin before grams, in code order, either
/// direction), values in no unit OpenGP reduces after them as written, and
/// resources with no value last.
async fn quantities_sort_in_canonical_units(app: App) {
    const UCUM: &str = "http://unitsofmeasure.org";
    let mut all = vec![
        measured("kg", 70.0, Some(UCUM), "kg"),
        measured("lb", 150.0, Some(UCUM), "[lb_av]"),
        measured("g", 69_500.0, Some(UCUM), "g"),
        measured("celsius", 37.5, Some(UCUM), "Cel"),
        measured("fahrenheit", 98.0, Some(UCUM), "[degF]"),
        measured("kelvin", 311.0, Some(UCUM), "K"),
        measured("stone", 50.0, None, "stone"),
    ];
    all.push(
        json!({ "resourceType": "Observation", "id": "none", "status": "final",
                     "code": { "text": "a measurement" } }),
    );
    seed(&app, &all).await;
    let order = |b: &Value| -> Vec<String> {
        b["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["resource"]["id"].as_str().map(str::to_owned))
            .collect()
    };
    for (query, want) in [
        // 98.0 [degF] is 309.8 K, 37.5 Cel 310.65 K; 150 [lb_av] is 68 kg.
        (
            "Observation?_sort=value-quantity",
            [
                "fahrenheit",
                "celsius",
                "kelvin",
                "lb",
                "g",
                "kg",
                "stone",
                "none",
            ],
        ),
        (
            "Observation?_sort=-value-quantity",
            [
                "kelvin",
                "celsius",
                "fahrenheit",
                "kg",
                "g",
                "lb",
                "stone",
                "none",
            ],
        ),
    ] {
        assert_eq!(order(&json(app.get(query).await).await), want, "{query}");
    }
    app.stop().await;
}
