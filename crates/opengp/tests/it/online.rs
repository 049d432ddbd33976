//! Patients as users (gp-store online.rs), on each backend: a patient
//! account reads its own record only, never what the practice hid from
//! online access nor restricted entries (search totals exact), sees who
//! accessed its record, writes nothing; a parent's proxy access holds while
//! the RelatedPerson is active and ends when it is deactivated.

use gp_store::access::{CONFIDENTIALITY, HIDDEN_ONLINE, ONLINE_ACCESS};
use gp_store::{Actor, Ctx};
use serde_json::{Value, json};

use crate::auth::{PASSWORD, add_user, login, practice, signed_in};
use crate::support::{App, assert_outcome, authorised_client, json};

crate::on_both_backends!(
    a_patient_reads_only_what_is_theirs_and_sees_who_accessed_it,
    a_proxy_reads_the_childs_record_while_the_relationship_is_active,
);

const NHS: &str = "https://fhir.nhs.uk/Id/nhs-number";

pub(crate) async fn patient(app: &App, family: &str, nhs: &str) -> String {
    app.create(&json!({
        "resourceType": "Patient",
        "identifier": [{ "system": NHS, "value": nhs }],
        "name": [{ "family": family, "given": ["Test"] }],
        "gender": "female",
        "birthDate": "1980-01-01"
    }))
    .await
}

async fn observation(app: &App, patient: &str, meta: Value) -> String {
    let mut o = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "271649006" }] },
        "subject": { "reference": format!("Patient/{patient}") },
        "valueQuantity": { "value": 120, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]" }
    });
    if !meta.is_null() {
        o["meta"] = meta;
    }
    app.create(&o).await
}

/// Creates the online account of the patient with NHS number `nhs` (as a
/// practice administrator would) and returns its account id.
pub(crate) async fn patient_account(app: &App, nhs: &str) -> String {
    let ctx = Ctx::new(practice(app).await, Actor::system());
    app.server
        .store
        .add_patient_account(&ctx, nhs, "Online patient", PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("patient account {nhs}: {e}"))
        .id
}

pub(crate) async fn signed_in_patient(app: &App, nhs: &str) -> (reqwest::Client, String) {
    let res = login(app, nhs, PASSWORD, None).await;
    assert_eq!(res.status(), 200, "the patient {nhs} signs in");
    let token = json(res).await["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (authorised_client(&token), token)
}

async fn get(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

async fn total(client: &reqwest::Client, url: &str) -> u64 {
    let res = get(client, url).await;
    assert_eq!(res.status(), 200, "{url}");
    let v = json(res).await;
    let entries = v["entry"].as_array().map_or(0, Vec::len) as u64;
    let total = v["total"]
        .as_u64()
        .unwrap_or_else(|| panic!("{url}: no total"));
    assert_eq!(total, entries, "{url}: the page holds the total");
    total
}

async fn a_patient_reads_only_what_is_theirs_and_sees_who_accessed_it(app: App) {
    let me = patient(&app, "Online", "9434765919").await;
    let other = patient(&app, "Other", "9434765870").await;
    let shown = observation(&app, &me, Value::Null).await;
    let hidden = observation(
        &app,
        &me,
        json!({ "tag": [{ "system": ONLINE_ACCESS, "code": HIDDEN_ONLINE }] }),
    )
    .await;
    let restricted = observation(
        &app,
        &me,
        json!({ "security": [{ "system": CONFIDENTIALITY, "code": "R" }] }),
    )
    .await;
    let theirs = observation(&app, &other, Value::Null).await;
    patient_account(&app, "9434765919").await;
    let (pt, _) = signed_in_patient(&app, "9434765919").await;

    // Their own record, less what is hidden from online access or restricted.
    assert_eq!(
        get(&pt, &app.url(&format!("Patient/{me}"))).await.status(),
        200
    );
    assert_eq!(
        get(&pt, &app.url(&format!("Observation/{shown}")))
            .await
            .status(),
        200
    );
    for id in [&hidden, &restricted] {
        assert_outcome(
            get(&pt, &app.url(&format!("Observation/{id}"))).await,
            404,
            "not-found",
        )
        .await;
    }
    assert_eq!(total(&pt, &app.url("Observation?_total=accurate")).await, 1);
    assert_eq!(
        total(
            &pt,
            &app.url(&format!(
                "Observation?patient={me}&_total=accurate&_count=1"
            ))
        )
        .await,
        1
    );
    // Staff are unaffected by the online-access tag (the full-access
    // session sees restricted entries too).
    let staff = json(
        app.get(&format!("Observation?patient={me}&_total=accurate"))
            .await,
    )
    .await;
    assert_eq!(staff["total"], 3);

    // Nobody else's record.
    for path in [format!("Patient/{other}"), format!("Observation/{theirs}")] {
        let res = get(&pt, &app.url(&path)).await;
        assert!(
            matches!(res.status().as_u16(), 403 | 404),
            "{path}: {}",
            res.status()
        );
        let v = json(res).await;
        assert_eq!(v["resourceType"], "OperationOutcome", "{path}");
    }
    assert_eq!(
        total(
            &pt,
            &app.url(&format!("Observation?patient={other}&_total=accurate"))
        )
        .await,
        0
    );
    assert_eq!(total(&pt, &app.url("Patient?_total=accurate")).await, 1);

    // Nothing written: not a clinical entry, not their own demographics.
    let obs = json!({
        "resourceType": "Observation", "status": "final",
        "code": { "text": "self-reported" },
        "subject": { "reference": format!("Patient/{me}") }
    });
    let res = pt
        .post(app.url("Observation"))
        .header("content-type", "application/fhir+json")
        .body(obs.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 403, "forbidden").await;
    assert_eq!(
        total(
            &app.client,
            &app.url(&format!("Observation?patient={me}&_total=accurate"))
        )
        .await,
        3
    );

    // Who accessed my record: a clinician's read shows up, by name.
    add_user(&app, "dr.who", &["R8000"]).await;
    let gp = signed_in(&app, "dr.who", None).await;
    assert_eq!(
        get(&gp, &app.url(&format!("Patient/{me}"))).await.status(),
        200
    );
    let res = get(
        &pt,
        &app.url(&format!("AuditEvent?patient={me}&_count=200")),
    )
    .await;
    assert_eq!(res.status(), 200);
    let trail = json(res).await;
    let readers: Vec<&str> = trail["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["resource"]["agent"].as_array().into_iter().flatten())
        .filter_map(|a| a["altId"].as_str())
        .collect();
    assert!(readers.contains(&"dr.who"), "{readers:?}");
    // Only events about them: of another patient's trail, which staff
    // just added to, they see only their own refused attempt.
    assert_eq!(app.get(&format!("Patient/{other}")).await.status(), 200);
    let others = json(
        get(
            &pt,
            &app.url(&format!("AuditEvent?patient={other}&_count=200")),
        )
        .await,
    )
    .await;
    let agents: Vec<&str> = others["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["resource"]["agent"][0]["altId"].as_str())
        .collect();
    assert!(
        !agents.is_empty() && agents.iter().all(|a| *a == "9434765919"),
        "{others}"
    );
}

async fn a_proxy_reads_the_childs_record_while_the_relationship_is_active(app: App) {
    let mother = patient(&app, "Parent", "9449306753").await;
    let child = patient(&app, "Child", "9000000009").await;
    let seen = observation(&app, &child, Value::Null).await;
    let account = patient_account(&app, "9449306753").await;
    let mut related = json!({
        "resourceType": "RelatedPerson",
        "active": true,
        "patient": { "reference": format!("Patient/{child}") },
        "identifier": [{ "system": gp_store::online::PROXY_ACCOUNT, "value": account }],
        "relationship": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH", "display": "mother" }] }],
        "name": [{ "family": "Parent", "given": ["Test"] }]
    });
    let rp = app.create(&related).await;
    let (mum, token) = signed_in_patient(&app, "9449306753").await;
    // Signed in, she acts for herself: not yet for the child.
    let res = get(&mum, &app.url(&format!("Observation/{seen}"))).await;
    assert!(
        matches!(res.status().as_u16(), 403 | 404),
        "{}",
        res.status()
    );

    // Switch profile to the child.
    let res = mum
        .post(format!("http://{}/auth/act-for", app.server.addr))
        .json(&json!({ "patient": child }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 200);
    let switched = json(res).await;
    let proxy = authorised_client(switched["access_token"].as_str().unwrap_or_default());
    assert_eq!(
        get(&mum, &app.url(&format!("Patient/{child}")))
            .await
            .status(),
        401,
        "the old token {token} ends"
    );
    assert_eq!(
        get(&proxy, &app.url(&format!("Patient/{child}")))
            .await
            .status(),
        200
    );
    assert_eq!(
        total(&proxy, &app.url("Observation?_total=accurate")).await,
        1
    );
    // Whom she may act for: herself, and the child as mother.
    let whom = act_for_list(&app, &proxy).await;
    assert_eq!(whom.len(), 2, "{whom:?}");
    assert_eq!(whom[0]["patient"], json!(mother));
    assert_eq!(whom[0]["current"], false);
    assert_eq!(whom[1]["patient"], json!(child));
    assert_eq!(whom[1]["current"], true);
    assert_eq!(whom[1]["relationship"]["coding"][0]["code"], "MTH");
    assert_eq!(whom[1]["name"]["family"], "Child");

    // Her access names both her (as the RelatedPerson) and the child.
    let trail = json(
        get(
            &proxy,
            &app.url(&format!("AuditEvent?patient={child}&_count=200")),
        )
        .await,
    )
    .await;
    let by_proxy = trail["entry"].as_array().into_iter().flatten().any(|e| {
        e["resource"]["agent"][0]["who"]["reference"] == json!(format!("RelatedPerson/{rp}"))
    });
    assert!(by_proxy, "{trail}");

    // A stranger's account is no proxy: it cannot switch to the child.
    patient(&app, "Stranger", "9000000017").await;
    patient_account(&app, "9000000017").await;
    let (stranger, _) = signed_in_patient(&app, "9000000017").await;
    let res = stranger
        .post(format!("http://{}/auth/act-for", app.server.addr))
        .json(&json!({ "patient": child }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 403, "forbidden").await;

    // The practice revokes the access: refused at once.
    related["id"] = json!(rp);
    related["active"] = json!(false);
    assert_eq!(
        app.put(&format!("RelatedPerson/{rp}"), &related)
            .await
            .status(),
        200
    );
    let res = get(&proxy, &app.url(&format!("Patient/{child}"))).await;
    assert_outcome(res, 403, "forbidden").await;
    let (mum, _) = signed_in_patient(&app, "9449306753").await;
    let whom = act_for_list(&app, &mum).await;
    assert_eq!(whom.len(), 1, "only herself now: {whom:?}");
    assert_eq!(whom[0]["patient"], json!(mother));
}

/// `GET /auth/act-for`: whom the session's account may act for.
async fn act_for_list(app: &App, client: &reqwest::Client) -> Vec<Value> {
    let res = get(client, &format!("http://{}/auth/act-for", app.server.addr)).await;
    assert_eq!(res.status(), 200);
    let v = json(res).await;
    v["actFor"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{v}"))
}
