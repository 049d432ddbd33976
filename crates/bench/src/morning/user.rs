//! One simulated member of staff: signs in, then picks actions from their
//! role's weighted mix until the morning ends, thinking between actions.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use super::{Account, Card, Kind, Recorder, Role, Shared};

/// The SNOMED CT code of a blood pressure observation.
const BLOOD_PRESSURE: &str = "75367002";

/// What a receptionist does, and how often (weights).
const RECEPTION: &[(Action, u32)] = &[
    (Action::FindByName, 30),
    (Action::FindByNhs, 20),
    (Action::FindByBirthDate, 15),
    (Action::Book, 25),
    (Action::Cancel, 10),
];

/// What a GP does.
const GP: &[(Action, u32)] = &[
    (Action::DayList, 10),
    (Action::Summary, 25),
    (Action::Journal, 15),
    (Action::FhirRecord, 20),
    (Action::Consult, 20),
    (Action::AppSearch, 10),
];

/// What a nurse does: more consultations (blood pressure checks), fewer
/// journal reads.
const NURSE: &[(Action, u32)] = &[
    (Action::DayList, 10),
    (Action::Summary, 25),
    (Action::Journal, 10),
    (Action::FhirRecord, 15),
    (Action::Consult, 30),
    (Action::AppSearch, 10),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    FindByName,
    FindByNhs,
    FindByBirthDate,
    Book,
    Cancel,
    DayList,
    Summary,
    Journal,
    /// The FHIR reads a GP's system makes on opening a record.
    FhirRecord,
    /// Form, a typeahead, save, and the summary it returns to.
    Consult,
    AppSearch,
}

/// A small deterministic generator (xorshift64*), one per user.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// An appointment this receptionist booked, which they may later cancel.
struct Booking {
    appointment: Value,
    appointment_version: String,
    slot: Value,
    slot_version: String,
}

/// What a request answered.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

struct User {
    shared: Arc<Shared>,
    account: Account,
    client: reqwest::Client,
    rng: Rng,
    rec: Recorder,
    /// The API session (`Authorization: Bearer`).
    token: String,
    /// The app session (`Cookie`), clinicians only.
    cookie: String,
    bookings: Vec<Booking>,
}

/// Runs one user until the morning ends; answers what they saw.
pub(super) async fn run(shared: Arc<Shared>, account: Account, n: u64) -> Recorder {
    let seed = shared.plan.seed ^ n.wrapping_mul(0x1000_0000_01B3);
    let mut rec = Recorder::new();
    // Redirects are checked, not followed: a form that answers anything but
    // its 303 has failed.
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            rec.error(Kind::ApiSignIn, format!("no HTTP client: {e}"));
            return rec;
        }
    };
    let mut u = User {
        shared,
        account,
        client,
        rng: Rng::new(seed),
        rec,
        token: String::new(),
        cookie: String::new(),
        bookings: Vec::new(),
    };
    let mix = match u.account.role {
        Role::Reception => RECEPTION,
        Role::Gp => GP,
        Role::Nurse => NURSE,
    };
    let total: u32 = mix.iter().map(|(_, w)| w).sum();
    while u.shared.running() {
        if u.token.is_empty() {
            u.sign_in_api().await;
        } else if u.account.role != Role::Reception && u.cookie.is_empty() {
            u.sign_in_app().await;
        } else {
            let mut pick = u.rng.below(total as usize) as u32;
            let mut action = mix[0].0;
            for (a, w) in mix {
                if pick < *w {
                    action = *a;
                    break;
                }
                pick -= w;
            }
            u.act(action).await;
        }
        u.think().await;
    }
    u.rec
}

impl User {
    async fn think(&mut self) {
        let mean = self.shared.plan.think.as_millis() as u64;
        let ms = self.rng.between(mean / 2, mean + mean / 2);
        let left = self
            .shared
            .deadline
            .saturating_duration_since(Instant::now());
        tokio::time::sleep(Duration::from_millis(ms).min(left)).await;
    }

    /// Sends `req`, timing it to the last byte of the body; a status other
    /// than `expect` (or one of `tolerated`, which the caller handles) is an
    /// error. `None` when the morning is over or the request failed.
    async fn call(
        &mut self,
        kind: Kind,
        req: reqwest::RequestBuilder,
        expect: u16,
        tolerated: &[u16],
    ) -> Option<Answer> {
        if !self.shared.take() {
            return None;
        }
        let started = Instant::now();
        let res = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                self.rec.error(kind, format!("{e}"));
                return None;
            }
        };
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = match res.bytes().await {
            Ok(b) => b.to_vec(),
            Err(e) => {
                self.rec.error(kind, format!("reading the body: {e}"));
                return None;
            }
        };
        let took = started.elapsed();
        if status != expect && !tolerated.contains(&status) {
            let text = String::from_utf8_lossy(&body);
            let text: String = text.chars().take(300).collect();
            self.rec.error(kind, format!("{status}: {text}"));
            return None;
        }
        self.rec.time(kind, took);
        Some(Answer {
            status,
            headers,
            body,
        })
    }

    fn base(&self) -> &str {
        &self.shared.base
    }

    /// A FHIR read or search, answering the parsed body.
    async fn fhir_get(&mut self, kind: Kind, path: &str, query: &[(&str, &str)]) -> Option<Value> {
        let req = self
            .client
            .get(format!("{}/{path}", self.base()))
            .query(query)
            .bearer_auth(&self.token)
            .header("accept", "application/fhir+json");
        let a = self.call(kind, req, 200, &[]).await?;
        match serde_json::from_slice(&a.body) {
            Ok(v) => Some(v),
            Err(e) => {
                self.rec.error(kind, format!("the answer is not JSON: {e}"));
                None
            }
        }
    }

    /// A transaction Bundle through the API.
    async fn transaction(
        &mut self,
        kind: Kind,
        bundle: &Value,
        tolerated: &[u16],
    ) -> Option<Answer> {
        let req = self
            .client
            .post(self.base().to_owned())
            .bearer_auth(&self.token)
            .header("content-type", "application/fhir+json")
            .header("prefer", "return=minimal")
            .body(bundle.to_string());
        self.call(kind, req, 200, tolerated).await
    }

    /// A page of the clinician app as a browser fetches it (gzip, the
    /// session cookie; `hx-request` for htmx fragments), answering its HTML.
    async fn page(&mut self, kind: Kind, path: &str, htmx: bool) -> Option<String> {
        let mut req = self
            .client
            .get(format!("{}{path}", self.shared.plan.site))
            .header("cookie", &self.cookie)
            .header("accept-encoding", "gzip");
        if htmx {
            req = req.header("hx-request", "true");
        }
        let a = self.call(kind, req, 200, &[]).await?;
        let gzip = a
            .headers
            .get("content-encoding")
            .is_some_and(|v| v.as_bytes() == b"gzip");
        if !gzip {
            return Some(String::from_utf8_lossy(&a.body).into_owned());
        }
        let mut html = String::new();
        match flate2::read::GzDecoder::new(a.body.as_slice()).read_to_string(&mut html) {
            Ok(_) => Some(html),
            Err(e) => {
                self.rec
                    .error(kind, format!("the page does not decompress: {e}"));
                None
            }
        }
    }

    async fn sign_in_api(&mut self) {
        let plan = &self.shared.plan;
        let req = self
            .client
            .post(format!("{}/auth/login", plan.site))
            .json(&json!({
                "practice": plan.practice,
                "username": self.account.username,
                "password": self.account.password,
            }));
        let Some(a) = self.call(Kind::ApiSignIn, req, 200, &[]).await else {
            return;
        };
        let token = serde_json::from_slice::<Value>(&a.body)
            .ok()
            .and_then(|v| v["access_token"].as_str().map(str::to_owned));
        match token {
            Some(t) => self.token = t,
            None => self
                .rec
                .error(Kind::ApiSignIn, "no access_token in the answer".into()),
        }
    }

    async fn sign_in_app(&mut self) {
        let plan = &self.shared.plan;
        let req = self.client.post(format!("{}/app/login", plan.site)).form(&[
            ("practice", plan.practice.as_str()),
            ("username", self.account.username.as_str()),
            ("password", self.account.password.as_str()),
            ("next", "/app"),
        ]);
        let Some(a) = self.call(Kind::AppSignIn, req, 303, &[]).await else {
            return;
        };
        let cookie = a
            .headers
            .get(SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned);
        match cookie {
            Some(c) => self.cookie = c,
            None => self
                .rec
                .error(Kind::AppSignIn, "no session cookie in the answer".into()),
        }
    }

    fn patient(&mut self) -> Card {
        let i = self.rng.below(self.shared.patients.len());
        self.shared.patients[i].clone()
    }

    async fn act(&mut self, action: Action) {
        match action {
            Action::FindByName => {
                let p = self.patient();
                let given: String = p.given.chars().take(3).collect();
                self.fhir_get(
                    Kind::FindByName,
                    "Patient",
                    &[("family", &p.family), ("given", &given), ("_count", "20")],
                )
                .await;
            }
            Action::FindByNhs => {
                self.find_by_nhs().await;
            }
            Action::FindByBirthDate => {
                let p = self.patient();
                self.fhir_get(
                    Kind::FindByBirthDate,
                    "Patient",
                    &[("birthdate", &p.birth_date), ("_count", "20")],
                )
                .await;
            }
            Action::Book => self.book().await,
            Action::Cancel => self.cancel().await,
            Action::DayList => {
                let Some(p) = self.account.practitioner.clone() else {
                    return;
                };
                let today = self.shared.today.clone();
                self.fhir_get(
                    Kind::DayList,
                    "Appointment",
                    &[
                        ("actor", &format!("Practitioner/{p}")),
                        ("date", &today),
                        ("_include", "Appointment:patient"),
                        ("_count", "100"),
                    ],
                )
                .await;
            }
            Action::Summary => {
                let p = self.patient();
                self.page(Kind::Summary, &format!("/app/patients/{}", p.id), false)
                    .await;
            }
            Action::Journal => {
                let p = self.patient();
                self.page(
                    Kind::Journal,
                    &format!("/app/patients/{}/journal", p.id),
                    false,
                )
                .await;
            }
            Action::FhirRecord => self.fhir_record().await,
            Action::Consult => self.consult().await,
            Action::AppSearch => {
                let p = self.patient();
                let q: String = p.family.chars().take(3).collect();
                let q = q.replace(' ', "+");
                self.page(Kind::AppSearch, &format!("/app/patients?q={q}"), true)
                    .await;
            }
        }
    }

    /// Finds a patient by NHS number, as a receptionist does with a caller.
    async fn find_by_nhs(&mut self) -> Option<String> {
        let p = self.patient();
        let identifier = format!("https://fhir.nhs.uk/Id/nhs-number|{}", p.nhs);
        let found = self
            .fhir_get(Kind::FindByNhs, "Patient", &[("identifier", &identifier)])
            .await?;
        let id = found["entry"][0]["resource"]["id"]
            .as_str()
            .map(str::to_owned);
        if id.as_deref() != Some(p.id.as_str()) {
            self.rec.error(
                Kind::FindByNhs,
                format!("NHS number {} did not find Patient/{}", p.nhs, p.id),
            );
            return None;
        }
        id
    }

    /// The patient on the phone found by NHS number, a free slot found with
    /// one clinician or another, then the Appointment created and the Slot
    /// marked busy in one transaction, guarded by the Slot's version. A
    /// slot another receptionist took in between answers 412; then the
    /// next free slot is tried.
    async fn book(&mut self) {
        let Some(patient) = self.find_by_nhs().await else {
            return;
        };
        let now = gp_fhir::Instant::now().to_string();
        let books = self.shared.books.len();
        let first = self.rng.below(books);
        let mut attempts = 0;
        for k in 0..books {
            let book = self.shared.books[(first + k) % books].clone();
            let Some(found) = self
                .fhir_get(
                    Kind::FreeSlots,
                    "Slot",
                    &[
                        ("schedule", &book.schedule),
                        ("status", "free"),
                        ("start", &format!("ge{now}")),
                        ("_sort", "start"),
                        ("_count", "10"),
                    ],
                )
                .await
            else {
                return;
            };
            let slots: Vec<Value> = found["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e["resource"].clone())
                .collect();
            if slots.is_empty() {
                continue;
            }
            // People take one of the first few offered, not always the first.
            let mut slot = slots[self.rng.below(slots.len())].clone();
            let (Some(slot_id), Some(version)) = (
                slot["id"].as_str().map(str::to_owned),
                slot["meta"]["versionId"].as_str().map(str::to_owned),
            ) else {
                self.rec
                    .error(Kind::FreeSlots, "a slot without id or version".into());
                return;
            };
            if let Some(m) = slot.as_object_mut() {
                m.remove("meta");
            }
            slot["status"] = json!("busy");
            let appointment = json!({
                "resourceType": "Appointment",
                "status": "booked",
                "appointmentType": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0276", "code": "ROUTINE", "display": "Routine appointment - default if not valued" }] },
                "start": slot["start"],
                "end": slot["end"],
                "slot": [{ "reference": format!("Slot/{slot_id}") }],
                "created": self.shared.today,
                "participant": [
                    { "actor": { "reference": format!("Patient/{patient}") }, "required": "required", "status": "accepted" },
                    { "actor": { "reference": book.practitioner }, "required": "required", "status": "accepted" }
                ]
            });
            let bundle = json!({
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    { "fullUrl": "urn:uuid:7d1c5e0a-0000-4000-8000-000000000001", "resource": appointment,
                      "request": { "method": "POST", "url": "Appointment" } },
                    { "resource": slot,
                      "request": { "method": "PUT", "url": format!("Slot/{slot_id}"), "ifMatch": format!("W/\"{version}\"") } }
                ]
            });
            let Some(a) = self.transaction(Kind::Book, &bundle, &[409, 412]).await else {
                return;
            };
            if a.status != 200 {
                self.rec.lost_races += 1;
                attempts += 1;
                if attempts >= 3 {
                    return;
                }
                continue;
            }
            let Some(done) = booked(&a.body, appointment, slot) else {
                self.rec.error(
                    Kind::Book,
                    "the transaction-response lacks locations".into(),
                );
                return;
            };
            self.bookings.push(done);
            return;
        }
        self.rec.no_free_slot += 1;
    }

    /// One of this receptionist's bookings cancelled and its slot freed, in
    /// one transaction (a patient ringing to cancel). With none to cancel,
    /// a patient is looked up instead.
    async fn cancel(&mut self) {
        if self.bookings.is_empty() {
            self.find_by_nhs().await;
            return;
        }
        let i = self.rng.below(self.bookings.len());
        let b = self.bookings.swap_remove(i);
        let (mut appt, mut slot) = (b.appointment, b.slot);
        appt["status"] = json!("cancelled");
        slot["status"] = json!("free");
        let url = |v: &Value| {
            format!(
                "{}/{}",
                v["resourceType"].as_str().unwrap_or_default(),
                v["id"].as_str().unwrap_or_default()
            )
        };
        let bundle = json!({
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                { "resource": appt, "request": { "method": "PUT", "url": url(&appt), "ifMatch": format!("W/\"{}\"", b.appointment_version) } },
                { "resource": slot, "request": { "method": "PUT", "url": url(&slot), "ifMatch": format!("W/\"{}\"", b.slot_version) } }
            ]
        });
        self.transaction(Kind::Cancel, &bundle, &[]).await;
    }

    /// What a GP's system reads on opening a record over FHIR.
    async fn fhir_record(&mut self) {
        let p = self.patient();
        let id = p.id.as_str();
        if self
            .fhir_get(Kind::ReadPatient, &format!("Patient/{id}"), &[])
            .await
            .is_none()
        {
            return;
        }
        self.fhir_get(
            Kind::ActiveProblems,
            "Condition",
            &[("patient", id), ("clinical-status", "active")],
        )
        .await;
        let bp = format!("http://snomed.info/sct|{BLOOD_PRESSURE}");
        self.fhir_get(
            Kind::BloodPressures,
            "Observation",
            &[
                ("patient", id),
                ("code", &bp),
                ("_sort", "-date"),
                ("_count", "5"),
            ],
        )
        .await;
        self.fhir_get(
            Kind::Medication,
            "MedicationRequest",
            &[("patient", id), ("status", "active")],
        )
        .await;
    }

    /// A consultation through the app: the form (its CSRF token read from
    /// the page), a SNOMED CT typeahead, the form saved with a history and
    /// a blood pressure, and the summary the app returns to.
    async fn consult(&mut self) {
        let p = self.patient();
        let form = format!("/app/patients/{}/consultation", p.id);
        let Some(html) = self.page(Kind::ConsultForm, &form, false).await else {
            return;
        };
        let Some(csrf) = csrf(&html) else {
            self.rec
                .error(Kind::ConsultForm, "no _csrf field in the form".into());
            return;
        };
        let terms = ["hyperten", "diab", "asth", "back pa", "cough"];
        let term = terms[self.rng.below(terms.len())].replace(' ', "+");
        self.page(
            Kind::Typeahead,
            &format!("/app/snomed?slot=problem&problem_text={term}"),
            true,
        )
        .await;
        let systolic = self.rng.between(105, 165);
        let diastolic = self.rng.between(60, 95).min(systolic - 20);
        let history = "Reviewed at the morning clinic. Feeling well, no new symptoms; \
                       blood pressure checked, medication reviewed, plan discussed.";
        let req = self
            .client
            .post(format!("{}{form}", self.shared.plan.site))
            .header("cookie", &self.cookie)
            .form(&[
                ("_csrf", csrf.as_str()),
                ("kind", "185347001"),
                ("history", history),
                ("systolic", &systolic.to_string()),
                ("diastolic", &diastolic.to_string()),
            ]);
        let Some(a) = self.call(Kind::ConsultSave, req, 303, &[]).await else {
            return;
        };
        let back = a
            .headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match back {
            Some(to) if to.starts_with("/app/patients/") => {
                self.page(Kind::Summary, &to, false).await;
            }
            other => self.rec.error(
                Kind::ConsultSave,
                format!("saved, but redirected to {other:?}"),
            ),
        }
    }
}

/// The `_csrf` hidden field's value in a page.
fn csrf(html: &str) -> Option<String> {
    let marker = "name=\"_csrf\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

/// The booking a transaction-response describes: the Appointment's id and
/// the new versions of both resources, read from the entries' locations
/// (`Type/id/_history/n`).
fn booked(body: &[u8], mut appointment: Value, slot: Value) -> Option<Booking> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let entries = v["entry"].as_array()?;
    let location = |i: usize| -> Option<(String, String)> {
        let l = entries.get(i)?["response"]["location"].as_str()?;
        let (path, version) = l.split_once("/_history/")?;
        let id = path.rsplit('/').next()?;
        Some((id.to_owned(), version.to_owned()))
    };
    let (appt_id, appointment_version) = location(0)?;
    let (_, slot_version) = location(1)?;
    appointment["id"] = json!(appt_id);
    Some(Booking {
        appointment,
        appointment_version,
        slot,
        slot_version,
    })
}
