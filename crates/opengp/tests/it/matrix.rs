//! The authorisation matrix (issue 5): every role of the baseline policy,
//! and a role with no activities, x every interaction (read, search,
//! create, update, patch, delete, history) x a resource type of every
//! access group (and the audit trail) x the user's own practice or
//! another x an entry marked restricted or not, performed through the HTTP
//! API of one real server (SQLite, loopback port) and compared with what
//! the rules below say: zero unexpected allows, zero unexpected denies.
//!
//! The rules are stated here, independently of gp-store's access.rs: the
//! test reads only the role-to-activity table of the shipped policy file.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::auth::{PASSWORD, practice, signed_in};
use crate::support::{App, json};
use gp_store::access::{HIDDEN_ONLINE, ONLINE_ACCESS};

crate::on_both_backends!(restricted_entries_and_breaking_the_glass);

/// One server, SQLite: the matrix is about the rules, which the backend
/// does not change; the restricted-entry paths run on both backends in
/// [`restricted_entries_and_breaking_the_glass`].
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn authorisation_matrix() {
    let app =
        crate::support::spawn_app_on(crate::support::Db::Sqlite, crate::support::TEST_MAX_BODY)
            .await;
    run_matrix(app).await;
}

const OTHER: &str = "B82002";
/// A role the policy does not name: it may do nothing.
const NO_ROLE: &str = "R7777";
const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";

/// Which activity reading and writing each type needs (`None`: nobody
/// writes it), as the national RBAC groups of DOMAIN.md put them.
const TYPES: &[(&str, &str, Option<&str>)] = &[
    ("Patient", "view-demographics", Some("amend-demographics")),
    (
        "RelatedPerson",
        "view-demographics",
        Some("amend-demographics"),
    ),
    (
        "Appointment",
        "view-demographics",
        Some("manage-appointments"),
    ),
    ("Schedule", "view-demographics", Some("manage-appointments")),
    ("Slot", "view-demographics", Some("manage-appointments")),
    (
        "Practitioner",
        "view-demographics",
        Some("administer-users"),
    ),
    (
        "Organization",
        "view-demographics",
        Some("administer-users"),
    ),
    ("Location", "view-demographics", Some("administer-users")),
    ("Observation", "view-record", Some("record-clinical")),
    ("Condition", "view-record", Some("record-clinical")),
    ("AllergyIntolerance", "view-record", Some("record-clinical")),
    ("Encounter", "view-record", Some("record-clinical")),
    ("MedicationRequest", "view-record", Some("prescribe")),
    ("AuditEvent", "view-audit", None),
];

const OPS: [Op; 7] = [
    Op::Read,
    Op::Search,
    Op::Create,
    Op::Update,
    Op::Patch,
    Op::Delete,
    Op::History,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Read,
    Search,
    Create,
    Update,
    Patch,
    Delete,
    History,
}

/// What a cell comes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Allowed,
    /// 403 with an OperationOutcome.
    Forbidden,
    /// As if the entry did not exist: 404, or absent from a search.
    Hidden,
}

/// The rules, for one cell.
fn expected(
    activities: &[String],
    op: Op,
    ty: &(&str, &str, Option<&str>),
    own: bool,
    restricted: bool,
) -> Outcome {
    let has = |a: &str| activities.iter().any(|x| x == a);
    // A session works at its own practice only.
    if !own {
        return Outcome::Forbidden;
    }
    let (_, read, write) = *ty;
    let can_write = write.is_some_and(has);
    let allowed = match op {
        Op::Read | Op::Search | Op::History => has(read),
        Op::Create | Op::Update | Op::Delete => can_write,
        // A patch reads the resource it changes.
        Op::Patch => can_write && has(read),
    };
    if !allowed {
        return Outcome::Forbidden;
    }
    // A restricted entry is, to a role without view-restricted, as if it
    // did not exist; writing a new one is no reading.
    if restricted && op != Op::Create && !has("view-restricted") {
        return Outcome::Hidden;
    }
    Outcome::Allowed
}

/// A minimal valid resource of `ty` in `patient`'s record.
fn body(ty: &str, patient: &str, restricted: bool) -> Value {
    let subject = json!({ "reference": format!("Patient/{patient}") });
    let mut v = match ty {
        "Patient" => json!({ "name": [{ "family": "Matrix-secret" }] }),
        "RelatedPerson" => json!({ "patient": subject }),
        "Appointment" => json!({ "status": "proposed",
            "participant": [{ "actor": subject, "status": "needs-action" }] }),
        "Schedule" => json!({ "actor": [subject] }),
        "Slot" => json!({ "schedule": { "reference": "Schedule/s1" }, "status": "free",
            "start": "2026-01-05T09:00:00Z", "end": "2026-01-05T09:10:00Z" }),
        "Practitioner" => json!({ "name": [{ "family": "Doctor" }] }),
        "Organization" => json!({ "name": "Somewhere" }),
        "Location" => json!({ "name": "Room 1" }),
        "Observation" => json!({ "status": "final", "code": { "text": "BP" }, "subject": subject }),
        "Condition" => json!({ "code": { "text": "Asthma" }, "subject": subject }),
        "AllergyIntolerance" => json!({ "code": { "text": "Penicillin" }, "patient": subject,
            "clinicalStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active" }] } }),
        "Encounter" => json!({ "status": "finished",
            "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB" },
            "subject": subject }),
        "MedicationRequest" => json!({ "status": "active", "intent": "order",
            "medicationCodeableConcept": { "text": "Amoxicillin" }, "subject": subject }),
        other => panic!("no body for {other}"),
    };
    v["resourceType"] = json!(ty);
    if restricted {
        v["meta"] = json!({ "security": [{ "system": CONFIDENTIALITY, "code": "R" }] });
    }
    v
}

/// `path` on practice `ods`'s FHIR base.
fn at(app: &App, ods: &str, path: &str) -> String {
    app.server.base.replace(
        &format!("/practices/{}/", opengp::config::DEFAULT_PRACTICE),
        &format!("/practices/{ods}/"),
    ) + "/"
        + path
}

/// Creates the resources of `wanted` (type, restricted) in one transaction
/// as the full-access test account, returning their ids in order.
async fn create_all(
    app: &App,
    base_of: &str,
    wanted: &[(String, bool)],
    patient: &str,
) -> Vec<String> {
    let bodies = wanted.iter().map(|(ty, r)| body(ty, patient, *r)).collect();
    create_bodies(app, base_of, bodies).await
}

/// Creates `bodies` in one transaction as the full-access test account,
/// returning their ids in order.
async fn create_bodies(app: &App, base_of: &str, bodies: Vec<Value>) -> Vec<String> {
    let entries: Vec<Value> = bodies
        .into_iter()
        .map(|b| {
            let url = b["resourceType"].clone();
            json!({ "resource": b, "request": { "method": "POST", "url": url } })
        })
        .collect();
    let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries });
    let url = base_of.trim_end_matches('/').to_owned();
    let res = app
        .client_for(&url)
        .post(&url)
        .header("content-type", "application/fhir+json")
        .body(bundle.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = res.status();
    let v = json(res).await;
    assert_eq!(status, 200, "setup transaction: {v}");
    v["entry"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|e| {
            let loc = e["response"]["location"].as_str().unwrap_or_default();
            loc.split('/').nth(1).unwrap_or_default().to_owned()
        })
        .collect()
}

/// One request of the matrix.
struct Cell {
    role: String,
    op: Op,
    ty: &'static str,
    /// Whose entry, for the report.
    target: String,
    expected: Outcome,
    method: reqwest::Method,
    url: String,
    body: Option<(String, &'static str)>,
    /// For a search: the id whose presence means allowed.
    find: Option<String>,
}

async fn perform(client: &reqwest::Client, cell: &Cell) -> Result<Outcome, String> {
    let mut req = client.request(cell.method.clone(), &cell.url);
    if let Some((b, ct)) = &cell.body {
        req = req.header("content-type", *ct).body(b.clone());
    }
    let res = req.send().await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let v: Value = res.json().await.unwrap_or(Value::Null);
    match status {
        200 | 201 | 204 => match &cell.find {
            Some(id) => {
                let found = v["entry"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|e| e["resource"]["id"] == id.as_str());
                if found {
                    Ok(Outcome::Allowed)
                } else if v["resourceType"] == "Bundle" && v["total"] == 0 {
                    Ok(Outcome::Hidden)
                } else {
                    Err(format!("search without the entry but total {}", v["total"]))
                }
            }
            None => Ok(Outcome::Allowed),
        },
        403 | 404 if v["resourceType"] == "OperationOutcome" => {
            if v.to_string().contains("Matrix-secret") {
                return Err("the refusal reveals the entry".into());
            }
            Ok(if status == 403 {
                Outcome::Forbidden
            } else {
                Outcome::Hidden
            })
        }
        other => Err(format!("{other}: {v}")),
    }
}

/// The HTTP request of `op` on `name`'s `target` at `base`; `resource` is
/// what a create or update sends. For a search, the id whose presence
/// means allowed.
fn request(
    op: Op,
    base: &str,
    name: &str,
    target: &str,
    mut resource: Value,
) -> (
    reqwest::Method,
    String,
    Option<(String, &'static str)>,
    Option<String>,
) {
    let fhir = "application/fhir+json";
    match op {
        Op::Read => (
            reqwest::Method::GET,
            format!("{base}/{name}/{target}"),
            None,
            None,
        ),
        Op::History => (
            reqwest::Method::GET,
            format!("{base}/{name}/{target}/_history"),
            None,
            None,
        ),
        Op::Search => (
            reqwest::Method::GET,
            format!("{base}/{name}?_id={target}&_total=accurate"),
            None,
            Some(target.to_owned()),
        ),
        Op::Create => (
            reqwest::Method::POST,
            format!("{base}/{name}"),
            Some((resource.to_string(), fhir)),
            None,
        ),
        Op::Update => {
            resource["id"] = json!(target);
            (
                reqwest::Method::PUT,
                format!("{base}/{name}/{target}"),
                Some((resource.to_string(), fhir)),
                None,
            )
        }
        Op::Patch => (
            reqwest::Method::PATCH,
            format!("{base}/{name}/{target}"),
            Some((
                json!([{ "op": "add", "path": "/language", "value": "en" }]).to_string(),
                "application/json-patch+json",
            )),
            None,
        ),
        Op::Delete => (
            reqwest::Method::DELETE,
            format!("{base}/{name}/{target}"),
            None,
            None,
        ),
    }
}

async fn add_user(app: &App, user: &str, roles: &[&str]) {
    let ctx = gp_store::Ctx::new(practice(app).await, gp_store::Actor::system());
    app.server
        .store
        .add_user(
            &ctx,
            gp_store::accounts::NewUser {
                username: user.into(),
                name: format!("{user} (matrix)"),
                password: PASSWORD.into(),
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                practitioner: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("adding {user}: {e}"));
}

/// The roles and their activities, from the shipped policy file.
fn baseline_roles() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../store/data/policy.json"),
    )
    .unwrap_or_else(|e| panic!("policy file: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let mut roles: BTreeMap<String, Vec<String>> = v["roles"]
        .as_object()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|(r, acts)| {
            let acts = acts
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect();
            (r.clone(), acts)
        })
        .collect();
    roles.insert(NO_ROLE.into(), Vec::new());
    roles
}

async fn run_matrix(app: App) {
    let started = std::time::Instant::now();
    app.add_practice(OTHER, "The Other Surgery").await;
    let roles = baseline_roles();
    let own_base = app.server.base.clone();
    let other_base = at(&app, OTHER, "").trim_end_matches('/').to_owned();

    // The patient whose record the entries are in, at each practice.
    let own_patient = app
        .create(&json!({ "resourceType": "Patient", "name": [{ "family": "Owner" }] }))
        .await;
    let other_patient = json(
        app.client_for(&other_base)
            .post(at(&app, OTHER, "Patient"))
            .header("content-type", "application/fhir+json")
            .body(json!({ "resourceType": "Patient" }).to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .await["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // Targets: one per (type, restricted) for reads at each practice; one
    // per (role, write op, type, restricted) at the own practice, since a
    // successful delete or update changes its target.
    let writable: Vec<&str> = TYPES
        .iter()
        .filter(|t| t.2.is_some())
        .map(|t| t.0)
        .collect();
    let mut wanted: Vec<(String, bool)> = Vec::new();
    for ty in &writable {
        for r in [false, true] {
            wanted.push(((*ty).to_owned(), r));
        }
    }
    let read_count = wanted.len();
    for _role in roles.keys() {
        for _op in [Op::Update, Op::Patch, Op::Delete] {
            for ty in &writable {
                for r in [false, true] {
                    wanted.push(((*ty).to_owned(), r));
                }
            }
        }
    }
    let own_ids = create_all(&app, &own_base, &wanted, &own_patient).await;
    let other_ids = create_all(&app, &other_base, &wanted[..read_count], &other_patient).await;
    let mut own_targets = own_ids.into_iter();
    let mut read_target: BTreeMap<(&str, bool, bool), String> = BTreeMap::new();
    for (i, (ty, r)) in wanted[..read_count].iter().enumerate() {
        let ty = writable
            .iter()
            .find(|t| **t == ty)
            .copied()
            .unwrap_or_default();
        read_target.insert((ty, true, *r), own_targets.next().unwrap_or_default());
        read_target.insert((ty, false, *r), other_ids[i].clone());
    }
    // An AuditEvent of each practice (the trail is unrestricted).
    for (own, base) in [(true, &own_base), (false, &other_base)] {
        let url = format!("{base}/AuditEvent?_count=1");
        let v = json(
            app.client_for(&url)
                .get(&url)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .await;
        let id = v["entry"][0]["resource"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{v}"));
        read_target.insert(("AuditEvent", own, false), id.to_owned());
    }

    // Signed-in users, one per role.
    let mut clients = BTreeMap::new();
    for role in roles.keys() {
        let user = format!("user-{}", role.to_lowercase());
        add_user(&app, &user, &[role.as_str()]).await;
        clients.insert(role.clone(), signed_in(&app, &user, Some(role)).await);
    }

    let mut cells = Vec::new();
    for (role, activities) in &roles {
        for op in OPS {
            for ty in TYPES {
                for own in [true, false] {
                    // The audit trail carries no confidentiality labels.
                    let restricted_too: &[bool] = if ty.2.is_some() {
                        &[false, true]
                    } else {
                        &[false]
                    };
                    for &restricted in restricted_too {
                        let name = ty.0;
                        let base = if own { &own_base } else { &other_base };
                        let patient = if own { &own_patient } else { &other_patient };
                        let target = match op {
                            Op::Update | Op::Patch | Op::Delete if own && ty.2.is_some() => {
                                own_targets.next().unwrap_or_default()
                            }
                            _ => read_target
                                .get(&(name, own, restricted))
                                .cloned()
                                .unwrap_or_default(),
                        };
                        let resource = if ty.2.is_some() {
                            body(name, patient, restricted)
                        } else {
                            json!({ "resourceType": "AuditEvent" })
                        };
                        let (method, url, body, find) = request(op, base, name, &target, resource);
                        cells.push(Cell {
                            role: role.clone(),
                            op,
                            ty: name,
                            target: format!(
                                "{} {}",
                                if own { "own" } else { "other" },
                                if restricted {
                                    "restricted"
                                } else {
                                    "unrestricted"
                                }
                            ),
                            expected: expected(activities, op, ty, own, restricted),
                            method,
                            url,
                            body,
                            find,
                        });
                    }
                }
            }
        }
    }

    let staff_cells = cells.len();
    let online = online_cells(&app, &mut clients, &other_base, &read_target).await;
    let online_cells = online.len();
    cells.extend(online);

    // Performed eight at a time.
    let clients = Arc::new(clients);
    let cells = Arc::new(cells);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (clients, cells, next) = (clients.clone(), cells.clone(), next.clone());
        workers.spawn(async move {
            let mut got = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(cell) = cells.get(i) else { break };
                let client = &clients[&cell.role];
                got.push((i, perform(client, cell).await));
            }
            got
        });
    }
    let mut results = Vec::new();
    while let Some(r) = workers.join_next().await {
        results.extend(r.unwrap_or_else(|e| panic!("{e}")));
    }
    let (mut allows, mut denies, mut wrong) = (Vec::new(), Vec::new(), Vec::new());
    for (i, got) in results {
        let cell = &cells[i];
        let what = format!(
            "{} {:?} {} {}: expected {:?}, got {:?}",
            cell.role, cell.op, cell.ty, cell.target, cell.expected, got
        );
        match got {
            Ok(g) if g == cell.expected => {}
            Ok(Outcome::Allowed) => allows.push(what),
            Ok(_) if cell.expected == Outcome::Allowed => denies.push(what),
            _ => wrong.push(what),
        }
    }
    let n_types = TYPES.len();
    eprintln!(
        "authorisation matrix: staff: {} roles x {} operations x {n_types} types x 2 practices x 2 (restricted or not; the audit trail never is) = {staff_cells} cells; \
         patients: 2 contexts (the patient, a proxy) x {} operations x {n_types} types x whose entry (own shown, own restricted, own hidden from online access, another patient's, another practice's; in no record for types outside the Patient compartment) = {online_cells} cells; \
         {} cells in all, {} unexpected allows, {} unexpected denies, {} other mismatches, in {:.1} s",
        roles.len(),
        OPS.len(),
        OPS.len(),
        cells.len(),
        allows.len(),
        denies.len(),
        wrong.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(staff_cells, roles.len() * OPS.len() * 2 * (2 * n_types - 1));
    // Per context and operation: 3 + 1 + 1 targets for each type with
    // entries in a patient's record, 2 for Patient and AuditEvent (no
    // marks), and 2 for each type outside the compartment.
    let marked = IN_RECORD.len() - 2;
    let outside = n_types - IN_RECORD.len();
    assert_eq!(
        online_cells,
        2 * OPS.len() * (5 * marked + 3 * 2 + 2 * outside)
    );
    assert!(
        allows.is_empty() && denies.is_empty() && wrong.is_empty(),
        "unexpected allows:\n{}\nunexpected denies:\n{}\nother mismatches:\n{}",
        allows.join("\n"),
        denies.join("\n"),
        wrong.join("\n")
    );
    app.stop().await;
}

/// Types with a Patient compartment (compartmentdefinition-patient.html):
/// a patient's search of any other type is refused.
const IN_RECORD: &[&str] = &[
    "Patient",
    "RelatedPerson",
    "Appointment",
    "Schedule",
    "Observation",
    "Condition",
    "AllergyIntolerance",
    "Encounter",
    "MedicationRequest",
    "AuditEvent",
];

/// How an entry of the record a patient context acts for is marked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Mark {
    Shown,
    /// `meta.security` R.
    Restricted,
    /// `meta.tag` online-access|hidden: the practice hid it from online view.
    HiddenOnline,
}

/// Whose entry a patient context's request is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Whose {
    /// In the record of the patient the session acts for.
    Mine(Mark),
    /// In another patient's record at the practice.
    Another,
    /// In no patient's record (the practice directory, slots).
    Nobody,
    /// At another practice.
    OtherPractice,
}

/// The rules for a patient (or a proxy acting for one), for one cell:
/// they read their record, less what is restricted or hidden from online
/// view, and nothing else; they write nothing.
fn expected_online(op: Op, ty: &str, whose: Whose) -> Outcome {
    if whose == Whose::OtherPractice {
        return Outcome::Forbidden;
    }
    match (op, whose) {
        (Op::Create | Op::Update | Op::Patch | Op::Delete, _) => Outcome::Forbidden,
        (Op::Search, _) if !IN_RECORD.contains(&ty) => Outcome::Forbidden,
        (_, Whose::Mine(Mark::Shown)) => Outcome::Allowed,
        // As if it did not exist.
        (_, Whose::Mine(_)) => Outcome::Hidden,
        // Outside their record: a search finds nothing, a read is refused.
        (Op::Search, _) => Outcome::Hidden,
        _ => Outcome::Forbidden,
    }
}

/// The patient contexts, added to `clients` as "patient" (an online
/// account acting for its own patient) and "proxy" (a mother's account
/// acting for her child through an active RelatedPerson), and the cells of
/// their requests.
async fn online_cells(
    app: &App,
    clients: &mut BTreeMap<String, reqwest::Client>,
    other_base: &str,
    other_practice: &BTreeMap<(&str, bool, bool), String>,
) -> Vec<Cell> {
    use crate::online::{patient, patient_account, signed_in_patient};
    let me = patient(app, "Online", "9434765919").await;
    let _mother = patient(app, "Parent", "9449306753").await;
    let child = patient(app, "Child", "9000000009").await;
    let another = patient(app, "Another", "9434765870").await;
    patient_account(app, "9434765919").await;
    let mother = patient_account(app, "9449306753").await;
    app.create(&json!({
        "resourceType": "RelatedPerson", "active": true,
        "patient": { "reference": format!("Patient/{child}") },
        "identifier": [{ "system": gp_store::online::PROXY_ACCOUNT, "value": mother }],
        "relationship": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH" }] }]
    }))
    .await;

    // Each patient's entries, one transaction per patient so that no
    // AuditEvent names two of them.
    let marked: Vec<&str> = IN_RECORD
        .iter()
        .copied()
        .filter(|t| !matches!(*t, "Patient" | "AuditEvent"))
        .collect();
    let mut target: BTreeMap<(String, &str, Mark), String> = BTreeMap::new();
    for (p, marks) in [
        (
            &me,
            &[Mark::Shown, Mark::Restricted, Mark::HiddenOnline][..],
        ),
        (
            &child,
            &[Mark::Shown, Mark::Restricted, Mark::HiddenOnline][..],
        ),
        (&another, &[Mark::Shown][..]),
    ] {
        let mut wanted = Vec::new();
        let mut bodies = Vec::new();
        for ty in &marked {
            for mark in marks {
                let mut b = body(ty, p, *mark == Mark::Restricted);
                if *mark == Mark::HiddenOnline {
                    b["meta"] =
                        json!({ "tag": [{ "system": ONLINE_ACCESS, "code": HIDDEN_ONLINE }] });
                }
                bodies.push(b);
                wanted.push((*ty, *mark));
            }
        }
        let ids = create_bodies(app, &app.server.base, bodies).await;
        for ((ty, mark), id) in wanted.into_iter().zip(ids) {
            target.insert((p.clone(), ty, mark), id);
        }
        target.insert((p.clone(), "Patient", Mark::Shown), p.clone());
    }
    // An AuditEvent about each (the trail of their entries' creation).
    for p in [&me, &child, &another] {
        let url = app.url(&format!("AuditEvent?patient=Patient/{p}&_count=100"));
        let v = app.get_json(&url).await;
        let about_them_only = v["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| &e["resource"])
            .find(|e| {
                let text = e.to_string();
                [&me, &child, &another]
                    .iter()
                    .all(|q| q == &p || !text.contains(q.as_str()))
            })
            .and_then(|e| e["id"].as_str())
            .unwrap_or_else(|| panic!("an AuditEvent about {p} alone: {v}"));
        target.insert(
            (p.clone(), "AuditEvent", Mark::Shown),
            about_them_only.to_owned(),
        );
    }

    let (pt, _) = signed_in_patient(app, "9434765919").await;
    let (mum, _) = signed_in_patient(app, "9449306753").await;
    let res = mum
        .post(format!("http://{}/auth/act-for", app.server.addr))
        .json(&json!({ "patient": child }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 200, "the mother acts for her child");
    let proxy = crate::support::authorised_client(
        json(res).await["access_token"].as_str().unwrap_or_default(),
    );
    clients.insert("patient".into(), pt);
    clients.insert("proxy".into(), proxy);

    let mut cells = Vec::new();
    for (context, subject) in [("patient", &me), ("proxy", &child)] {
        for op in OPS {
            for ty in TYPES {
                let name = ty.0;
                let mut whose: Vec<(Whose, String, &str)> = Vec::new();
                let own_base = app.server.base.as_str();
                if IN_RECORD.contains(&name) {
                    let marks: &[Mark] = if marked.contains(&name) {
                        &[Mark::Shown, Mark::Restricted, Mark::HiddenOnline]
                    } else {
                        &[Mark::Shown]
                    };
                    for mark in marks {
                        let id = target[&(subject.clone(), name, *mark)].clone();
                        whose.push((Whose::Mine(*mark), id, own_base));
                    }
                    let id = target[&(another.clone(), name, Mark::Shown)].clone();
                    whose.push((Whose::Another, id, own_base));
                } else {
                    let id = other_practice[&(name, true, false)].clone();
                    whose.push((Whose::Nobody, id, own_base));
                }
                let id = other_practice[&(name, false, false)].clone();
                whose.push((Whose::OtherPractice, id, other_base));
                for (w, id, base) in whose {
                    let resource = if ty.2.is_some() {
                        body(name, subject, false)
                    } else {
                        json!({ "resourceType": "AuditEvent" })
                    };
                    let (method, url, body, find) = request(op, base, name, &id, resource);
                    cells.push(Cell {
                        role: context.into(),
                        op,
                        ty: name,
                        target: format!("{w:?}"),
                        expected: expected_online(op, name, w),
                        method,
                        url,
                        body,
                        find,
                    });
                }
            }
        }
    }
    cells
}

/// What a role without view-restricted sees of a patient with a restricted
/// entry, through every path that could count or reveal it; breaking the
/// glass (reason required, audited with it) opens that patient's restricted
/// entries and no one else's; a role with view-restricted needs no glass.
async fn restricted_entries_and_breaking_the_glass(app: App) {
    let restricted = json!({ "security": [{ "system": CONFIDENTIALITY, "code": "R" }] });
    let p = app
        .create(&json!({ "resourceType": "Patient", "name": [{ "family": "Glass" }] }))
        .await;
    let q = app
        .create(&json!({ "resourceType": "Patient", "name": [{ "family": "Other" }] }))
        .await;
    let obs = |patient: &str, code: &str, secret: bool| {
        let mut v = json!({ "resourceType": "Observation", "status": "final",
            "code": { "coding": [{ "system": "http://snomed.info/sct", "code": code }] },
            "subject": { "reference": format!("Patient/{patient}") } });
        if secret {
            v["meta"] = restricted.clone();
        }
        v
    };
    let hidden = app.create(&obs(&p, "1234567", true)).await;
    let open = app.create(&obs(&p, "7654321", false)).await;
    let others = app.create(&obs(&q, "1234567", true)).await;
    // A List holding a hidden entry among others (search.html#list).
    let entries: Vec<Value> = [&hidden, &open, &others]
        .iter()
        .map(|id| json!({ "item": { "reference": format!("Observation/{id}") } }))
        .collect();
    let list = app
        .create(&json!({ "resourceType": "List", "status": "current", "mode": "working", "entry": entries }))
        .await;
    for (user, role) in [
        ("nurse", "R8001"),
        ("gp", "R8000"),
        ("reception", "R8009"),
        ("privacy", "R0001"),
    ] {
        add_user(&app, user, &[role]).await;
    }
    let nurse = signed_in(&app, "nurse", Some("R8001")).await;
    let get = |c: &reqwest::Client, path: &str| {
        let (c, url) = (c.clone(), app.url(path));
        async move {
            c.get(&url)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"))
        }
    };
    let ids = |v: &Value| -> Vec<String> {
        v["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["resource"]["id"].as_str().map(str::to_owned))
            .collect()
    };

    // Without the glass: exact totals, nothing through includes, chains,
    // `_has`, history, the compartment or $everything; a read is a 404.
    let nothing_hidden = |v: &Value, path: &str| {
        assert!(!ids(v).contains(&hidden), "{path}: {v}");
        assert!(!ids(v).contains(&others), "{path}: {v}");
    };
    let searches = [
        (
            format!("Observation?subject=Patient/{p}&_total=accurate"),
            Some(1),
        ),
        (
            "Observation?code=http://snomed.info/sct|1234567&_total=accurate".to_owned(),
            Some(0),
        ),
        (
            format!("Patient?_id={p}&_revinclude=Observation:subject"),
            None,
        ),
        (
            "Patient?_has:Observation:subject:code=1234567&_total=accurate".to_owned(),
            Some(0),
        ),
        ("Observation/_history".to_owned(), None),
        ("_history".to_owned(), None),
        (format!("Patient/{p}/Observation?_total=accurate"), Some(1)),
        (format!("Patient/{p}/$everything"), None),
        ("Observation?_total=accurate&_count=1".to_owned(), Some(1)),
        (format!("Observation?_list={list}&_total=accurate"), Some(1)),
    ];
    for (path, total) in &searches {
        let res = get(&nurse, path).await;
        assert_eq!(res.status(), 200, "{path}");
        let v = json(res).await;
        nothing_hidden(&v, path);
        if let Some(t) = total {
            assert_eq!(v["total"], *t, "{path}: {v}");
        }
    }
    for path in [
        format!("Observation/{hidden}"),
        format!("Observation/{hidden}/_history"),
        format!("Observation/{hidden}/_history/1"),
    ] {
        let res = get(&nurse, &path).await;
        let never = get(&nurse, "Observation/never-was").await;
        assert_eq!(res.status(), 404, "{path}");
        assert_eq!(never.status(), 404);
        let (v, n) = (json(res).await, json(never).await);
        assert_eq!(
            v["issue"][0]["code"], n["issue"][0]["code"],
            "answered as an unknown id: {v} {n}"
        );
    }
    assert!(
        ids(&json(get(&nurse, &format!("Observation?subject=Patient/{p}")).await).await)
            .contains(&open)
    );

    // The glass: a reception role cannot break it, a reason is required.
    let glass = |c: &reqwest::Client, patient: &str, reason: &str| {
        let (c, url) = (
            c.clone(),
            app.url(&format!("Patient/{patient}/$break-glass")),
        );
        let body = json!({ "resourceType": "Parameters",
            "parameter": [{ "name": "reason", "valueString": reason }] });
        async move {
            c.post(&url)
                .header("content-type", "application/fhir+json")
                .body(body.to_string())
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    let reception = signed_in(&app, "reception", Some("R8009")).await;
    crate::support::assert_outcome(glass(&reception, &p, "curious").await, 403, "forbidden").await;
    crate::support::assert_outcome(glass(&nurse, &p, "  ").await, 400, "required").await;
    let res = glass(&nurse, &p, "Emergency: patient unconscious in clinic").await;
    assert_eq!(res.status(), 200);
    let granted = json(res).await;
    assert_eq!(granted["parameter"][1]["name"], "expires", "{granted}");

    // Now the nurse sees p's restricted entry, and still not q's.
    let res = get(&nurse, &format!("Observation/{hidden}")).await;
    assert_eq!(res.status(), 200);
    let v = json(
        get(
            &nurse,
            &format!("Observation?subject=Patient/{p}&_total=accurate"),
        )
        .await,
    )
    .await;
    assert_eq!(v["total"], 2, "{v}");
    let v = json(
        get(
            &nurse,
            "Observation?code=http://snomed.info/sct|1234567&_total=accurate",
        )
        .await,
    )
    .await;
    assert_eq!(ids(&v), vec![hidden.clone()], "{v}");
    assert_eq!(
        get(&nurse, &format!("Observation/{others}")).await.status(),
        404
    );

    // The grant belongs to the session that broke the glass: another
    // session of the same nurse does not have it; signing out ends it, so
    // signing in again brings it not back; nor after signing out
    // everywhere; and the grant the other session then makes is its own.
    let root = format!("http://{}", app.server.addr);
    let post = |c: &reqwest::Client, path: &str| {
        let (c, url) = (c.clone(), format!("{root}{path}"));
        async move {
            c.post(&url)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .status()
                .as_u16()
        }
    };
    let sees_hidden = |c: &reqwest::Client| {
        let (c, path) = (c.clone(), format!("Observation/{hidden}"));
        async move { get(&c, &path).await.status().as_u16() == 200 }
    };
    let other = signed_in(&app, "nurse", Some("R8001")).await;
    assert!(!sees_hidden(&other).await, "another session has no grant");
    assert!(sees_hidden(&nurse).await);
    assert_eq!(post(&nurse, "/auth/logout").await, 204);
    let again = signed_in(&app, "nurse", Some("R8001")).await;
    assert!(!sees_hidden(&again).await, "signed out: the grant ended");
    assert!(!sees_hidden(&other).await);
    let res = glass(&other, &p, "Emergency: second look").await;
    assert_eq!(res.status(), 200);
    assert!(sees_hidden(&other).await);
    assert!(
        !sees_hidden(&again).await,
        "the other session's grant is its own"
    );
    assert_eq!(post(&other, "/auth/logout-everywhere").await, 204);
    let after = signed_in(&app, "nurse", Some("R8001")).await;
    assert!(!sees_hidden(&after).await, "signed out everywhere: ended");

    // A GP sees both without any glass.
    let gp = signed_in(&app, "gp", Some("R8000")).await;
    let v = json(
        get(
            &gp,
            "Observation?code=http://snomed.info/sct|1234567&_total=accurate",
        )
        .await,
    )
    .await;
    assert_eq!(v["total"], 2, "{v}");
    crate::support::assert_outcome(glass(&gp, &p, "no need").await, 400, "business-rule").await;

    // The trail: the grant with its reason, the access under it, the refusal.
    let privacy = signed_in(&app, "privacy", Some("R0001")).await;
    let v = json(
        get(
            &privacy,
            &format!("AuditEvent?patient=Patient/{p}&_count=100"),
        )
        .await,
    )
    .await;
    let events: Vec<&Value> = v["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .collect();
    let btg = |e: &&&Value| e["purposeOfEvent"][0]["coding"][0]["code"] == "BTG";
    assert!(
        events
            .iter()
            .filter(btg)
            .any(
                |e| e["purposeOfEvent"][0]["text"] == "Emergency: patient unconscious in clinic"
                    && e["outcome"] == "0"
            ),
        "the grant with its reason: {v}"
    );
    let read_under_glass = events.iter().filter(btg).any(|e| {
        e["subtype"][0]["code"] == "read"
            && e["entity"]
                .to_string()
                .contains(&format!("Observation/{hidden}"))
    });
    assert!(read_under_glass, "the read under the glass: {v}");
    let v = json(get(&privacy, "AuditEvent?outcome=4&_count=100").await).await;
    assert!(
        v.to_string().contains(&format!(
            "refused: Observation/{hidden} is a restricted entry"
        )),
        "the refused read: {v}"
    );
    app.stop().await;
}
