//! The audit trail (issue 5), through the real API on each backend: every
//! access to patient data (read, vread, search, history, create, update,
//! patch, delete, a transaction's entries), every sign-in, failed or not,
//! and every refused request is a FHIR R4 AuditEvent (auditevent.html)
//! coded as IHE BALP codes RESTful events (type `rest`, subtype the
//! `restful-interaction` code, action C/R/U/D/E, outcome 0/4/8), searchable
//! by a role with the view-audit activity and by nobody writable; and
//! `opengp audit verify` finds a record altered in the database file.

use std::collections::BTreeSet;
use std::process::Command;

use gp_store::accounts::NewUser;
use gp_store::{Actor, Ctx};
use serde_json::{Value, json};

use crate::auth::{PASSWORD, login, practice, signed_in};
use crate::support::{App, assert_outcome, authorised_client, json, next_link, opengp_bin};

crate::on_both_backends!(
    every_access_to_patient_data_is_audited,
    the_audit_trail_cannot_be_changed_through_the_api,
);

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";

async fn add_account(app: &App, user: &str, role: &str, practitioner: Option<String>) {
    let ctx = Ctx::new(practice(app).await, Actor::system());
    app.server
        .store
        .add_user(
            &ctx,
            NewUser {
                username: user.into(),
                name: format!("{user} (test)"),
                password: PASSWORD.into(),
                roles: vec![role.into()],
                practitioner,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("adding {user}: {e}"));
}

async fn send(client: &reqwest::Client, method: &str, url: &str, body: Option<Value>) -> Value {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let mut req = client.request(m, url);
    if let Some(b) = body {
        let ct = if method == "PATCH" {
            "application/json-patch+json"
        } else {
            "application/fhir+json"
        };
        req = req.header("content-type", ct).body(b.to_string());
    }
    let res = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = res.status().as_u16();
    assert!(status < 300, "{method} {url}: {status}");
    if status == 204 {
        return Value::Null;
    }
    json(res).await
}

/// Every AuditEvent a search of the trail finds, following the paging links.
async fn trail(client: &reqwest::Client, url: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut next = Some(url.to_owned());
    while let Some(u) = next {
        let res = client
            .get(&u)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{u}: {e}"));
        assert_eq!(res.status(), 200, "{u}");
        let page = json(res).await;
        assert_eq!(page["type"], "searchset");
        events.extend(
            page["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e["resource"].clone()),
        );
        next = next_link(&page);
    }
    events
}

/// An event in one line: what a person scanning the trail would read.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    subtype: String,
    action: String,
    outcome: String,
    user: String,
    patients: BTreeSet<String>,
    entities: BTreeSet<String>,
}

fn seen(e: &Value) -> Seen {
    let entities = e["entity"].as_array().cloned().unwrap_or_default();
    let refs = |role: &str| -> BTreeSet<String> {
        entities
            .iter()
            .filter(|x| x["role"]["code"] == role)
            .filter_map(|x| x["what"]["reference"].as_str())
            .map(str::to_owned)
            .collect()
    };
    Seen {
        subtype: e["subtype"][0]["code"]
            .as_str()
            .or(e["type"]["code"].as_str())
            .unwrap_or_default()
            .into(),
        action: e["action"].as_str().unwrap_or_default().into(),
        outcome: e["outcome"].as_str().unwrap_or_default().into(),
        user: e["agent"][0]["altId"].as_str().unwrap_or_default().into(),
        patients: refs("1"),
        entities: refs("4"),
    }
}

/// The mixed workload of a morning's surgery, then the privacy officer's
/// check that each access left its AuditEvent, with the right patient,
/// action, outcome and user.
async fn every_access_to_patient_data_is_audited(app: App) {
    let dr = app
        .create(&json!({"resourceType": "Practitioner", "name": [{"family": "Patel"}]}))
        .await;
    add_account(&app, "gp", "R8000", Some(dr.clone())).await;
    add_account(&app, "reception", "R8009", None).await;
    add_account(&app, "privacy", "R0001", None).await;
    let gp = signed_in(&app, "gp", None).await;
    let reception = signed_in(&app, "reception", None).await;
    let url = |p: &str| app.url(p);

    // The GP's work on one patient.
    let patient = send(
        &gp,
        "POST",
        &url("Patient"),
        Some(json!({"resourceType": "Patient", "name": [{"family": "Audited"}]})),
    )
    .await;
    let p = patient["id"].as_str().unwrap_or_default().to_owned();
    let obs = send(
        &gp,
        "POST",
        &url("Observation"),
        Some(json!({
            "resourceType": "Observation", "status": "final",
            "code": {"text": "weight"}, "subject": {"reference": format!("Patient/{p}")}
        })),
    )
    .await;
    let o = obs["id"].as_str().unwrap_or_default().to_owned();
    send(&gp, "GET", &url(&format!("Observation/{o}")), None).await;
    send(
        &gp,
        "GET",
        &url(&format!("Observation/{o}/_history/1")),
        None,
    )
    .await;
    let found = send(
        &gp,
        "GET",
        &url(&format!("Observation?subject=Patient/{p}")),
        None,
    )
    .await;
    assert_eq!(found["entry"].as_array().map(Vec::len), Some(1));
    let mut changed = obs.clone();
    changed["status"] = json!("amended");
    send(&gp, "PUT", &url(&format!("Observation/{o}")), Some(changed)).await;
    send(
        &gp,
        "PATCH",
        &url(&format!("Observation/{o}")),
        Some(json!([{"op": "replace", "path": "/status", "value": "corrected"}])),
    )
    .await;
    send(&gp, "GET", &url(&format!("Observation/{o}/_history")), None).await;
    let tx = send(&gp, "POST", &url(""), Some(json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [{
            "resource": {"resourceType": "Condition", "subject": {"reference": format!("Patient/{p}")}, "code": {"text": "asthma"}},
            "request": {"method": "POST", "url": "Condition"}
        }, {
            "request": {"method": "GET", "url": format!("Patient/{p}")}
        }]
    }))).await;
    let condition = tx["entry"][0]["response"]["location"]
        .as_str()
        .and_then(|l| l.split("/_history").next())
        .unwrap_or_default()
        .to_owned();
    send(&gp, "DELETE", &url(&format!("Observation/{o}")), None).await;

    // What must not happen, and is recorded all the same.
    let res = reception
        .get(url(&format!("Observation/{o}")))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 403, "forbidden").await;
    let res = gp
        .get(url("AuditEvent"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 403, "forbidden").await;
    assert_eq!(
        login(&app, "gp", "not the password", None).await.status(),
        401
    );
    assert_eq!(login(&app, "nobody", PASSWORD, None).await.status(), 401);
    let res = reqwest::Client::new()
        .get(url("Patient"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 401);
    let res = authorised_client("not-a-token")
        .get(url("Patient"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 401);

    // The privacy officer reads the trail; their own searches are audited
    // too, without looping.
    let privacy = signed_in(&app, "privacy", None).await;
    let of_patient = trail(
        &privacy,
        &url(&format!("AuditEvent?patient=Patient/{p}&_count=3")),
    )
    .await;
    let got: BTreeSet<Seen> = of_patient.iter().map(seen).collect();
    let pats: BTreeSet<String> = [format!("Patient/{p}")].into();
    let e = |subtype: &str, action: &str, outcome: &str, user: &str, entity: Option<String>| Seen {
        subtype: subtype.into(),
        action: action.into(),
        outcome: outcome.into(),
        user: user.into(),
        patients: pats.clone(),
        entities: entity.into_iter().collect(),
    };
    let ov = |v: u32| Some(format!("Observation/{o}/_history/{v}"));
    let expected = [
        e(
            "create",
            "C",
            "0",
            "gp",
            Some(format!("Patient/{p}/_history/1")),
        ),
        e("create", "C", "0", "gp", ov(1)),
        e("read", "R", "0", "gp", ov(1)),
        e("vread", "R", "0", "gp", ov(1)),
        e("search-type", "E", "0", "gp", ov(1)),
        e("update", "U", "0", "gp", ov(2)),
        e("patch", "U", "0", "gp", ov(3)),
        e("delete", "D", "0", "gp", ov(4)),
    ];
    for want in &expected {
        assert!(got.contains(want), "no event {want:?} in {got:#?}");
    }
    // The history lists every version it served.
    let history = got
        .iter()
        .find(|s| s.subtype == "history-instance")
        .unwrap_or_else(|| panic!("no history event in {got:#?}"));
    assert_eq!(
        history.entities,
        [ov(3), ov(2), ov(1)].into_iter().flatten().collect()
    );
    // The transaction is one event, each entry an entity with what it did.
    let transaction = of_patient
        .iter()
        .find(|ev| ev["subtype"][0]["code"] == "transaction")
        .unwrap_or_else(|| panic!("no transaction event"));
    assert_eq!(transaction["action"], "E");
    let lifecycle = |reference: &str| {
        transaction["entity"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| {
                x["what"]["reference"]
                    .as_str()
                    .is_some_and(|r| r.starts_with(reference))
            })
            .map(|x| x["lifecycle"]["code"].clone())
    };
    assert_eq!(
        lifecycle(&format!("{condition}/_history/1")),
        Some(json!("1")),
        "{transaction}"
    );
    assert_eq!(
        lifecycle(&format!("Patient/{p}/_history/1")),
        Some(json!("6")),
        "{transaction}"
    );
    // Who: the user, their role profile and Practitioner, from where.
    let any = &of_patient[0]["agent"][0];
    assert_eq!(any["who"]["reference"], format!("Practitioner/{dr}"));
    assert_eq!(any["role"][0]["coding"][0]["code"], "R8000");
    assert_eq!(any["network"]["address"], "127.0.0.1");
    assert_eq!(
        of_patient[0]["source"]["site"],
        opengp::config::DEFAULT_PRACTICE
    );

    // Refusals: the receptionist's read, the GP's look at the trail.
    let refusals: Vec<Seen> = trail(&privacy, &url("AuditEvent?outcome=4"))
        .await
        .iter()
        .map(seen)
        .collect();
    let refused: BTreeSet<Seen> = refusals.iter().cloned().collect();
    let refusal = |subtype: &str, user: &str, entity: Option<String>| Seen {
        subtype: subtype.into(),
        action: if subtype == "read" { "R" } else { "E" }.into(),
        outcome: "4".into(),
        user: user.into(),
        patients: BTreeSet::new(),
        entities: entity.into_iter().collect(),
    };
    for want in [
        refusal("read", "reception", Some(format!("Observation/{o}"))),
        refusal("search-type", "gp", None),
        refusal("110122", "gp", None),
        refusal("110122", "nobody", None),
        refusal("110114", "anonymous", None),
    ] {
        assert!(
            refused.contains(&want),
            "no refusal {want:?} in {refused:#?}"
        );
    }
    assert_eq!(
        refusals.iter().filter(|s| s.subtype == "110114").count(),
        2,
        "both unauthenticated requests: {refused:#?}"
    );
    // The sign-ins that worked.
    let logins = trail(
        &privacy,
        &url(&format!("AuditEvent?subtype={DCM}|110122&outcome=0")),
    )
    .await;
    let users: BTreeSet<String> = logins.iter().map(|e| seen(e).user).collect();
    assert!(
        ["gp", "reception", "privacy"]
            .iter()
            .all(|u| users.contains(*u)),
        "{users:?}"
    );

    // The search parameters a privacy officer uses.
    let count = |q: String| {
        let privacy = privacy.clone();
        let u = url(&q);
        async move { trail(&privacy, &u).await.len() }
    };
    assert_eq!(
        count(format!(
            "AuditEvent?agent=Practitioner/{dr}&patient=Patient/{p}&subtype=delete"
        ))
        .await,
        1
    );
    assert_eq!(
        count(format!("AuditEvent?entity=Observation/{o}&action=C")).await,
        1
    );
    assert_eq!(count("AuditEvent?type=http://terminology.hl7.org/CodeSystem/audit-event-type|rest&altid=gp&outcome=0".into()).await,
        expected.len() + 2, "the GP's successful RESTful accesses: those above, the history and the transaction");
    assert_eq!(
        count("AuditEvent?date=ge2000-01-01&altid=reception&outcome=4".into()).await,
        1
    );
    assert_eq!(count("AuditEvent?date=lt2000-01-01".into()).await, 0);
    // Reading the trail is audited: one search event per page read so far.
    let audit_reads = count("AuditEvent?altid=privacy&subtype=search-type".into()).await;
    assert!(audit_reads >= 5, "{audit_reads}");
    app.stop().await;
}

/// No client edits, deletes or adds an AuditEvent, whatever its role; the
/// trail is not part of whole-record searches or history either.
async fn the_audit_trail_cannot_be_changed_through_the_api(app: App) {
    app.create(&json!({"resourceType": "Patient", "name": [{"family": "Kept"}]}))
        .await;
    let page = json(app.get("AuditEvent?_count=1").await).await;
    let event = page["entry"][0]["resource"].clone();
    let id = event["id"].as_str().unwrap_or_default().to_owned();
    assert!(!id.is_empty(), "{page}");
    let mut edited = event.clone();
    edited["outcome"] = json!("8");
    let path = format!("AuditEvent/{id}");
    let patch = json!([{"op": "replace", "path": "/outcome", "value": "8"}]);
    let c = &app.client;
    let attempts = [
        c.put(app.url(&path))
            .header("content-type", "application/fhir+json")
            .body(edited.to_string()),
        c.patch(app.url(&path))
            .header("content-type", "application/json-patch+json")
            .body(patch.to_string()),
        c.delete(app.url(&path)),
        c.post(app.url("AuditEvent"))
            .header("content-type", "application/fhir+json")
            .body(edited.to_string()),
        c.delete(app.url("AuditEvent?outcome=0")),
        c.put(app.url("AuditEvent?outcome=0"))
            .header("content-type", "application/fhir+json")
            .body(edited.to_string()),
        c.post(app.url(""))
            .header("content-type", "application/fhir+json")
            .body(
                json!({
                    "resourceType": "Bundle", "type": "transaction",
                    "entry": [{"resource": edited, "request": {"method": "PUT", "url": path}}]
                })
                .to_string(),
            ),
    ];
    for attempt in attempts {
        let res = attempt.send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_outcome(res, 403, "forbidden").await;
    }
    let after = json(app.get(&path).await).await;
    assert_eq!(after, event, "the event is unchanged");
    assert_eq!(
        json(app.get(&format!("{path}/_history")).await).await["total"],
        1
    );
    // Each attempt was itself recorded, as a refused write.
    let refused = json(app.get("AuditEvent?outcome=4&_summary=count").await).await;
    assert_eq!(refused["total"], 7, "{refused}");
    // Whole-record history and searches across types leave the trail out.
    let all = json(app.get("_history").await).await;
    assert_eq!(all["total"], 1, "{all}");
    let everything = json(app.get("?_type=AuditEvent,Patient&_total=accurate").await).await;
    assert_eq!(everything["total"], 1, "{everything}");
    // Parameters AuditEvents are not indexed by are refused, not answered
    // with an empty page.
    for q in [
        "AuditEvent?site=A81001",
        "AuditEvent?outcome=0&_sort=address",
        "Patient?_has:AuditEvent:patient:agent-name=smith",
        "AuditEvent?_include=AuditEvent:source",
    ] {
        assert_outcome(app.get(q).await, 400, "not-supported").await;
    }
    app.stop().await;
}

fn opengp(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(opengp_bin())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running opengp: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `opengp audit verify` passes on the store as the server left it, and
/// finds the first record changed behind its back in the SQLite file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_verify_detects_a_record_altered_in_the_database() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = opengp::server::spawn_for_test(dir.path(), 1 << 20)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let client = authorised_client(&server.token);
    let base = server.base.clone();
    let res = client
        .post(format!("{base}/Patient"))
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Patient", "name": [{"family": "Chained"}]}).to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = json(res).await["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for _ in 0..5 {
        let res = client
            .get(format!("{base}/Patient/{id}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 200);
    }
    server.stop().await.unwrap_or_else(|e| panic!("{e:#}"));

    let data = dir.path().to_string_lossy().into_owned();
    let practice = opengp::config::DEFAULT_PRACTICE;
    let verify = || opengp(&["audit", "verify", "--data", &data, "--practice", practice]);
    let (ok, out, err) = verify();
    assert!(ok, "{out}{err}");
    assert!(out.contains("is intact"), "{out}");

    let db =
        rusqlite::Connection::open(dir.path().join("opengp.db")).unwrap_or_else(|e| panic!("{e}"));
    // The fourth event of the chain: one of the reads.
    let (rowid, event): (i64, String) = db
        .query_row(
            "SELECT v.rowid, c.event FROM audit_chain c JOIN resource_version v
               ON v.type = 'AuditEvent' AND v.id = c.event AND v.practice = c.practice
             ORDER BY c.seq LIMIT 1 OFFSET 3",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let tamper = format!(
        "UPDATE resource_version SET body = CAST(replace(CAST(body AS TEXT), '\"outcome\":\"0\"', '\"outcome\":\"4\"') AS BLOB) WHERE rowid = {rowid}"
    );
    // The store itself refuses the change...
    let refused = db.execute_batch(&tamper);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("append-only")),
        "{refused:?}"
    );
    // ...so someone who edits the file drops its guard first.
    db.execute_batch(&format!("DROP TRIGGER audit_event_no_update; {tamper};"))
        .unwrap_or_else(|e| panic!("{e}"));
    drop(db);

    let (ok, out, err) = verify();
    assert!(!ok, "verify must fail: {out}{err}");
    assert!(
        err.contains(&format!("broken at record 4 (AuditEvent/{event})"))
            && err.contains("does not match its hash")
            && err.contains("the 3 records before it are intact"),
        "{err}"
    );
}
