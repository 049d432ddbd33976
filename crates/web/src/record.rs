//! The patient record: the banner on every patient page, the summary, the
//! journal, problem list changes, and the history of any entry.

use axum::Form;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Redirect};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use gp_store::access::Activity;

use crate::fhir::{self, SCT, concept, patient_name, show_age, show_date, when};
use crate::session::Web;
use crate::ui::{Page, WebError, ok, page};

/// Where a problem's significance is recorded: major problems are the ones
/// every clinician must see; minor ones may be left off summaries.
pub const PROBLEM_SIGNIFICANCE: &str =
    "https://opengp.dev/fhir/StructureDefinition/problem-significance";

/// What the banner shows: the patient, their allergies and their alerts.
pub struct Banner {
    pub patient: Value,
    pub allergies: Vec<Value>,
    pub alerts: Vec<Value>,
    /// Whether the user may see the clinical record (else the banner
    /// says nothing about allergies).
    pub clinical: bool,
}

/// Reads the banner's data for patient `id`.
pub async fn banner_data(web: &Web, id: &str) -> Result<Banner, WebError> {
    let subject = format!("Patient/{id}");
    if !web.ctx.allows(Activity::ViewRecord) {
        // Demographics only: allergies and alerts are part of the record.
        return Ok(Banner {
            patient: web.read("Patient", id).await?,
            allergies: Vec::new(),
            alerts: Vec::new(),
            clinical: false,
        });
    }
    let (patient, allergies, alerts) = tokio::try_join!(
        web.read("Patient", id),
        web.search(
            "AllergyIntolerance",
            vec![("patient", subject.clone()), ("_count", "100".into())]
        ),
        web.search(
            "Flag",
            vec![("patient", subject.clone()), ("_count", "50".into())]
        ),
    )?;
    Ok(Banner {
        patient,
        allergies: allergies.0,
        // R4 has no search by a Flag's status.
        alerts: alerts
            .0
            .into_iter()
            .filter(|f| f.get("status").and_then(Value::as_str) == Some("active"))
            .collect(),
        clinical: true,
    })
}

fn active_allergy(a: &Value) -> bool {
    fhir::code_in(
        a.get("clinicalStatus"),
        "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
    )
    .is_none_or(|s| s == "active")
}

/// The patient banner: who this is, at a glance, on every patient page.
pub fn banner(b: &Banner) -> Markup {
    let p = &b.patient;
    let born = p
        .get("birthDate")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let age = fhir::date(born).map(|d| show_age(d, fhir::today()));
    let allergies: Vec<String> = b
        .allergies
        .iter()
        .filter(|a| active_allergy(a))
        .map(|a| concept(a.get("code")))
        .collect();
    let deceased = p.get("deceasedDateTime").and_then(Value::as_str);
    html! {
        section class="og-banner" aria-label="Patient" {
            p class="og-banner__name" { (patient_name(p)) }
            dl class="og-banner__facts" {
                div { dt { "Born" } dd { (show_date(born)) @if let Some(a) = &age { " (" (a) ")" } } }
                div { dt { "Gender" } dd { (fhir::str_at(p, &["gender"]).unwrap_or("not recorded")) } }
                div { dt { "NHS number" } dd { (fhir::nhs_number(p).map_or_else(|| "not recorded".to_owned(), fhir::format_nhs_number)) } }
                @if let Some(d) = deceased { div { dt { "Died" } dd { (show_date(d)) } } }
            }
            p class="og-banner__alerts" {
                @if !b.clinical {
                    strong class="nhsuk-tag nhsuk-tag--grey" { "Clinical record not shown in your role" }
                } @else if allergies.is_empty() {
                    strong class="nhsuk-tag nhsuk-tag--grey" { "No allergies recorded" }
                } @else {
                    @for a in &allergies { strong class="nhsuk-tag nhsuk-tag--red" { "Allergy: " (a) } }
                }
                @for f in &b.alerts { strong class="nhsuk-tag nhsuk-tag--yellow" { "Alert: " (concept(f.get("code"))) } }
            }
        }
    }
}

/// The tabs of a patient's pages.
pub fn patient_nav(id: &str, current: &str) -> Markup {
    let tabs = [
        ("summary", "Summary", format!("/app/patients/{id}")),
        ("journal", "Journal", format!("/app/patients/{id}/journal")),
        (
            "consultation",
            "New consultation",
            format!("/app/patients/{id}/consultation"),
        ),
    ];
    html! {
        nav aria-label="Patient record" {
            ul class="og-nav" {
                @for (key, label, href) in &tabs {
                    li {
                        @if *key == current {
                            a href=(href) data-key=(key) aria-current="page" { strong { (label) } }
                        } @else {
                            a href=(href) data-key=(key) { (label) }
                        }
                    }
                }
            }
        }
    }
}

fn id_of(r: &Value) -> &str {
    r.get("id").and_then(Value::as_str).unwrap_or_default()
}

fn is_problem(c: &Value) -> bool {
    c.get("category")
        .and_then(Value::as_array)
        .is_some_and(|cats| {
            cats.iter().any(|cat| {
                fhir::code_in(
                    Some(cat),
                    "http://terminology.hl7.org/CodeSystem/condition-category",
                ) == Some("problem-list-item")
            })
        })
}

fn clinical_status(c: &Value) -> &str {
    fhir::code_in(
        c.get("clinicalStatus"),
        "http://terminology.hl7.org/CodeSystem/condition-clinical",
    )
    .unwrap_or("active")
}

fn is_active(c: &Value) -> bool {
    matches!(clinical_status(c), "active" | "recurrence" | "relapse")
}

/// Major unless recorded as minor.
fn significance(c: &Value) -> &str {
    c.get("extension")
        .and_then(Value::as_array)
        .and_then(|exts| {
            exts.iter()
                .find(|e| e.get("url").and_then(Value::as_str) == Some(PROBLEM_SIGNIFICANCE))
        })
        .and_then(|e| e.get("valueCode").and_then(Value::as_str))
        .unwrap_or("major")
}

/// A repeat's review date, from the note the demo and migrations write
/// ("... review due 2026-05-01").
fn review_date(m: &Value) -> Option<String> {
    m.get("note")?.as_array()?.iter().find_map(|n| {
        let t = n.get("text")?.as_str()?;
        let i = t.find("review due ")?;
        Some(t.get(i + 11..i + 21)?.to_owned())
    })
}

fn is_repeat(m: &Value) -> bool {
    fhir::code_in(
        m.get("courseOfTherapyType"),
        "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy",
    )
    .is_some_and(|c| c == "continuous")
}

/// A small trend chart: values over time as a line (two lines for blood
/// pressure), with the latest value in words for screen readers.
fn chart(title: &str, unit: &str, series: &[(&str, Vec<(String, f64)>)]) -> Markup {
    let (w, h, pad) = (320.0_f64, 110.0_f64, 24.0_f64);
    let all: Vec<f64> = series
        .iter()
        .flat_map(|(_, s)| s.iter().map(|(_, v)| *v))
        .collect();
    let Some(first) = series.first().filter(|(_, s)| !s.is_empty()) else {
        return html! {
            figure class="og-entry" {
                figcaption { strong { (title) } }
                p class="og-muted" { "No readings recorded." }
            }
        };
    };
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = if hi - lo < 1e-9 { 1.0 } else { hi - lo };
    let n = first.1.len().max(2) - 1;
    let x = |i: usize| pad + (w - 2.0 * pad) * (i as f64) / (n as f64);
    let y = |v: f64| h - pad - (h - 2.0 * pad) * (v - lo) / span;
    let latest: Vec<String> = series
        .iter()
        .filter_map(|(_, s)| s.last().map(|(_, v)| format!("{v}")))
        .collect();
    let latest_text = format!(
        "{} {} on {}",
        latest.join("/"),
        unit,
        show_date(&first.1.last().map(|(d, _)| d.clone()).unwrap_or_default())
    );
    let first_date = show_date(&first.1.first().map(|(d, _)| d.clone()).unwrap_or_default());
    let count = first.1.len();
    let label = format!(
        "{title}: {count} reading{} from {first_date}, latest {latest_text}",
        if count == 1 { "" } else { "s" }
    );
    html! {
        figure class="og-entry" {
            figcaption { strong { (title) } " – latest " (latest_text) }
            svg class="og-chart" viewBox={ "0 0 " (w) " " (h) } width=(w) height=(h) role="img" aria-label=(label) {
                title { (label) }
                line x1=(pad) y1=(h - pad) x2=(w - pad) y2=(h - pad) stroke="#aeb7bd" {}
                text x="0" y=(y(hi) + 4.0) { (hi) }
                text x="0" y=(y(lo) + 4.0) { (lo) }
                text x=(pad) y=(h - 6.0) { (first_date) }
                @for (k, (_, s)) in series.iter().enumerate() {
                    @let pts: Vec<String> = s.iter().enumerate().map(|(i, (_, v))| format!("{:.1},{:.1}", x(i), y(*v))).collect();
                    polyline class=[(k == 1).then_some("og-chart__second")] points=(pts.join(" ")) {}
                }
            }
        }
    }
}

/// Readings of `code` (or one of its components), oldest first.
fn readings(obs: &[Value], code: &str, component: Option<&str>) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = obs
        .iter()
        .filter(|o| fhir::code_in(o.get("code"), SCT) == Some(code))
        .filter_map(|o| Some((when(o), fhir::number(o, component)?)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let keep = out.len().saturating_sub(12);
    out.split_off(keep)
}

/// The patient page of a user who may not see the clinical record (a
/// receptionist): demographics and contact details.
async fn demographics(web: &Web, id: &str) -> Page {
    let (b, apps) = tokio::try_join!(banner_data(web, id), crate::launch::launchers(web))?;
    let p = &b.patient;
    let address = p
        .get("address")
        .and_then(|a| a.get(0))
        .map(|a| {
            let mut parts: Vec<String> = a
                .get("line")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            for k in ["city", "postalCode"] {
                if let Some(v) = a.get(k).and_then(Value::as_str) {
                    parts.push(v.to_owned());
                }
            }
            parts.join(", ")
        })
        .unwrap_or_default();
    let phone = fhir::str_at(p, &["telecom", "value"]).unwrap_or_default();
    let body = html! {
        (banner(&b))
        h1 class="nhsuk-heading-l" { "Patient details" }
        (apps.buttons(web, id))
        dl class="nhsuk-summary-list" {
            div class="nhsuk-summary-list__row" { dt class="nhsuk-summary-list__key" { "Address" } dd class="nhsuk-summary-list__value" { (address) } }
            div class="nhsuk-summary-list__row" { dt class="nhsuk-summary-list__key" { "Phone" } dd class="nhsuk-summary-list__value" { (phone) } }
        }
        p class="og-muted" { "Your role does not include the clinical record." }
        (crate::admin::online_account_form(web, id))
    };
    apps.allow(ok(page(
        &patient_name(p),
        Some(web),
        &[("Home", "/app")],
        body,
    )))
}

/// `GET /app/patients/{id}`: the record summary (or, for a role without
/// the clinical record, the patient's details).
pub async fn summary(web: Web, Path(id): Path<String>) -> Page {
    if !web.ctx.allows(Activity::ViewRecord) {
        return demographics(&web, &id).await;
    }
    let subject = format!("Patient/{id}");
    let p = |k: &'static str, v: String| (k, v);
    let (b, glass, apps, problems, meds, encounters, observations, letters) = tokio::try_join!(
        banner_data(&web, &id),
        crate::glass::status(&web, &id),
        crate::launch::launchers(&web),
        web.search(
            "Condition",
            vec![p("patient", subject.clone()), p("_count", "500".into())]
        ),
        web.search(
            "MedicationRequest",
            vec![
                p("patient", subject.clone()),
                p("status", "active".into()),
                p("_count", "200".into())
            ]
        ),
        web.search(
            "Encounter",
            vec![
                p("patient", subject.clone()),
                p("_sort", "-date".into()),
                p("_count", "5".into())
            ]
        ),
        // One query for the charts and the latest list: filtering by
        // `system|code` here cost more than reading the patient's last
        // few hundred observations.
        web.search(
            "Observation",
            vec![
                p("patient", subject.clone()),
                p("_sort", "-date".into()),
                p("_count", "300".into())
            ]
        ),
        web.search(
            "DocumentReference",
            vec![
                p("patient", subject.clone()),
                p("_sort", "-date".into()),
                p("_count", "5".into())
            ]
        ),
    )?;
    let problems: Vec<&Value> = problems.0.iter().filter(|c| is_problem(c)).collect();
    let (active, past): (Vec<&Value>, Vec<&Value>) = problems.iter().partition(|c| is_active(c));
    let (mut major, minor): (Vec<&Value>, Vec<&Value>) =
        active.iter().partition(|c| significance(c) == "major");
    major.sort_by_key(|c| std::cmp::Reverse(when(c)));
    let (repeats, acutes): (Vec<&Value>, Vec<&Value>) = meds.0.iter().partition(|m| is_repeat(m));
    let trend = observations.0;
    let latest: Vec<&Value> = trend.iter().take(8).collect();
    let problem_row = |c: &Value| {
        let cid = id_of(c).to_owned();
        let status = clinical_status(c).to_owned();
        let sig = significance(c).to_owned();
        html! {
            li {
                a href={ "/app/patients/" (id) "/history/Condition/" (cid) } { (concept(c.get("code"))) }
                span class="og-muted" { " since " (show_date(&when(c))) }
                form class="nhsuk-u-margin-bottom-0" method="post" action={ "/app/patients/" (id) "/problems/" (cid) } {
                    input type="hidden" name="_csrf" value=(web.csrf());
                    @if matches!(status.as_str(), "active" | "recurrence" | "relapse") {
                        button class="nhsuk-button nhsuk-button--secondary nhsuk-button--small nhsuk-u-margin-bottom-0" name="change" value="past" { "Make past" }
                        " "
                        @if sig == "major" {
                            button class="nhsuk-button nhsuk-button--secondary nhsuk-button--small nhsuk-u-margin-bottom-0" name="change" value="minor" { "Make minor" }
                        } @else {
                            button class="nhsuk-button nhsuk-button--secondary nhsuk-button--small nhsuk-u-margin-bottom-0" name="change" value="major" { "Make significant" }
                        }
                    } @else {
                        button class="nhsuk-button nhsuk-button--secondary nhsuk-button--small nhsuk-u-margin-bottom-0" name="change" value="active" { "Make active" }
                    }
                }
            }
        }
    };
    let med_row = |m: &Value| {
        html! {
            li {
                a href={ "/app/patients/" (id) "/history/MedicationRequest/" (id_of(m)) } { (concept(m.get("medicationCodeableConcept"))) }
                @if let Some(d) = fhir::str_at(m, &["dosageInstruction", "text"]) { " – " (d) }
                span class="og-muted" {
                    " issued " (show_date(&when(m)))
                    @if let Some(r) = review_date(m) { " · review due " (show_date(&r)) }
                }
            }
        }
    };
    let body = html! {
        (banner(&b))
        (patient_nav(&id, "summary"))
        h1 class="nhsuk-u-visually-hidden" { "Summary" }
        (crate::glass::notice(&id, &glass))
        (apps.buttons(&web, &id))
        div class="og-grid" {
            section aria-labelledby="problems" {
                h2 id="problems" { "Problems" }
                h3 class="nhsuk-heading-s" { "Active and significant" }
                @if major.is_empty() { p class="og-muted" { "None recorded." } }
                ul class="og-list" { @for c in &major { (problem_row(c)) } }
                @if !minor.is_empty() {
                    h3 class="nhsuk-heading-s" { "Active, minor" }
                    ul class="og-list" { @for c in &minor { (problem_row(c)) } }
                }
                @if !past.is_empty() {
                    details class="nhsuk-details" {
                        summary class="nhsuk-details__summary" { span class="nhsuk-details__summary-text" { "Past problems (" (past.len()) ")" } }
                        div class="nhsuk-details__text" { ul class="og-list" { @for c in &past { (problem_row(c)) } } }
                    }
                }
            }
            section aria-labelledby="medication" {
                h2 id="medication" { "Current medication" }
                h3 class="nhsuk-heading-s" { "Repeat" }
                @if repeats.is_empty() { p class="og-muted" { "None." } }
                ul class="og-list" { @for m in &repeats { (med_row(m)) } }
                h3 class="nhsuk-heading-s" { "Acute" }
                @if acutes.is_empty() { p class="og-muted" { "None." } }
                ul class="og-list" { @for m in &acutes { (med_row(m)) } }
            }
            section aria-labelledby="allergies" {
                h2 id="allergies" { "Allergies and intolerances" }
                @if b.allergies.is_empty() { p class="og-muted" { "None recorded." } }
                ul class="og-list" {
                    @for a in &b.allergies {
                        li {
                            a href={ "/app/patients/" (id) "/history/AllergyIntolerance/" (id_of(a)) } { (concept(a.get("code"))) }
                            @if let Some(r) = a.get("reaction").and_then(|r| r.get(0)).and_then(|r| r.get("manifestation")) { " – " (concept(Some(r))) }
                            @if !active_allergy(a) { span class="og-muted" { " (resolved)" } }
                            form class="nhsuk-u-margin-bottom-0" method="post" action={ "/app/patients/" (id) "/allergies/" (id_of(a)) } {
                                input type="hidden" name="_csrf" value=(web.csrf());
                                @if active_allergy(a) {
                                    button class="nhsuk-button nhsuk-button--secondary nhsuk-button--small nhsuk-u-margin-bottom-0" name="change" value="resolved" { "Mark resolved" }
                                } @else {
                                    button class="nhsuk-button nhsuk-button--secondary nhsuk-button--small nhsuk-u-margin-bottom-0" name="change" value="active" { "Make active" }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="consultations" {
                h2 id="consultations" { "Recent consultations" }
                @if encounters.0.is_empty() { p class="og-muted" { "None recorded." } }
                ul class="og-list" {
                    @for e in &encounters.0 {
                        li {
                            (show_date(&when(e))) " – " (concept(e.get("type")))
                            @if let Some(r) = e.get("reasonCode") { span class="og-muted" { " (" (concept(Some(r))) ")" } }
                        }
                    }
                }
                p { a href={ "/app/patients/" (id) "/journal" } { "All consultations in the journal" } }
            }
        }
        section aria-labelledby="observations" {
            h2 id="observations" { "Observations" }
            div class="og-grid" {
                (chart("Blood pressure", "mmHg", &[
                    ("systolic", readings(&trend, fhir::BLOOD_PRESSURE, Some(fhir::SYSTOLIC))),
                    ("diastolic", readings(&trend, fhir::BLOOD_PRESSURE, Some(fhir::DIASTOLIC))),
                ]))
                (chart("HbA1c", "mmol/mol", &[("HbA1c", readings(&trend, fhir::HBA1C, None))]))
                (chart("Weight", "kg", &[("weight", readings(&trend, fhir::WEIGHT, None))]))
                (chart("BMI", "kg/m2", &[("BMI", readings(&trend, fhir::BMI, None))]))
            }
            h3 class="nhsuk-heading-s" { "Latest" }
            table class="nhsuk-table" {
                caption class="nhsuk-u-visually-hidden" { "Latest observations" }
                thead class="nhsuk-table__head" { tr { th scope="col" { "Date" } th scope="col" { "Observation" } th scope="col" { "Value" } } }
                tbody class="nhsuk-table__body" {
                    @for o in &latest {
                        tr class="nhsuk-table__row" {
                            td class="nhsuk-table__cell" { (show_date(&when(o))) }
                            td class="nhsuk-table__cell" { a href={ "/app/patients/" (id) "/history/Observation/" (id_of(o)) } { (concept(o.get("code"))) } }
                            td class="nhsuk-table__cell" { (fhir::observation_value(o)) }
                        }
                    }
                }
            }
        }
        @if !letters.0.is_empty() {
            section aria-labelledby="letters" {
                h2 id="letters" { "Letters and results" }
                ul class="og-list" {
                    @for d in &letters.0 {
                        li { (show_date(&when(d))) " – " (fhir::str_at(d, &["description"]).map_or_else(|| concept(d.get("type")), str::to_owned))
                             @if let Some(a) = fhir::str_at(d, &["author", "display"]) { span class="og-muted" { " from " (a) } } }
                    }
                }
            }
        }
    };
    let title = format!("{} – summary", patient_name(&b.patient));
    apps.allow(ok(page(&title, Some(&web), &[("Home", "/app")], body)))
}

#[derive(Deserialize, Default)]
pub struct JournalFilter {
    #[serde(default)]
    show: String,
}

/// `GET /app/patients/{id}/journal?show=`: consultations and entries,
/// newest first.
pub async fn journal(web: Web, Path(id): Path<String>, Query(f): Query<JournalFilter>) -> Page {
    let subject = format!("Patient/{id}");
    let show = match f.show.as_str() {
        "consultations" | "medication" | "letters" => f.show.as_str(),
        _ => "all",
    };
    let want = |k: &str| show == "all" || show == k;
    let empty = || async { Ok::<_, WebError>((Vec::new(), Vec::new())) };
    let (b, apps, encounters, meds, letters) = tokio::try_join!(
        banner_data(&web, &id),
        crate::launch::launchers(&web),
        async {
            if want("consultations") {
                web.search(
                    "Encounter",
                    vec![
                        ("patient", subject.clone()),
                        ("_sort", "-date".into()),
                        ("_count", "50".into()),
                        ("_revinclude", "Observation:encounter".into()),
                        ("_revinclude", "Condition:encounter".into()),
                        ("_revinclude", "Procedure:encounter".into()),
                        ("_revinclude", "Composition:encounter".into()),
                        ("_include", "Encounter:practitioner".into()),
                    ],
                )
                .await
            } else {
                empty().await
            }
        },
        async {
            if want("medication") {
                web.search(
                    "MedicationRequest",
                    vec![
                        ("patient", subject.clone()),
                        ("_sort", "-authoredon".into()),
                        ("_count", "100".into()),
                    ],
                )
                .await
            } else {
                empty().await
            }
        },
        async {
            if want("letters") {
                web.search(
                    "DocumentReference",
                    vec![
                        ("patient", subject.clone()),
                        ("_sort", "-date".into()),
                        ("_count", "50".into()),
                    ],
                )
                .await
            } else {
                empty().await
            }
        },
    )?;
    // One list in time order: consultations with their entries, and the
    // entries that belong to no consultation.
    let mut items: Vec<(String, Markup)> = Vec::new();
    let (encounters, entries) = encounters;
    for e in &encounters {
        let eid = id_of(e);
        let of_this: Vec<&Value> = entries
            .iter()
            .filter(|x| fhir::ref_id(x.get("encounter"), "Encounter") == Some(eid))
            .collect();
        let note = of_this
            .iter()
            .find(|x| x.get("resourceType").and_then(Value::as_str) == Some("Composition"));
        let coded: Vec<&&Value> = of_this
            .iter()
            .filter(|x| x.get("resourceType").and_then(Value::as_str) != Some("Composition"))
            .collect();
        let individual = e
            .get("participant")
            .and_then(|p| p.get(0))
            .and_then(|p| p.get("individual"));
        let who = individual
            .and_then(|i| i.get("display"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| {
                let pid = fhir::ref_id(individual, "Practitioner")?;
                let p = entries.iter().find(|x| {
                    x.get("resourceType").and_then(Value::as_str) == Some("Practitioner")
                        && id_of(x) == pid
                })?;
                Some(patient_name(p))
            })
            .unwrap_or_default();
        let m = html! {
            article class="og-journal-entry" {
                h3 class="nhsuk-heading-s nhsuk-u-margin-bottom-2" {
                    (show_date(&when(e))) " – " (concept(e.get("type")))
                    @if !who.is_empty() { span class="og-muted" { " · " (who) } }
                }
                @if let Some(n) = note {
                    @for s in n.get("section").and_then(Value::as_array).into_iter().flatten().filter(|s| s.get("entry").is_none()) {
                        p class="nhsuk-u-margin-bottom-1" {
                            strong { (fhir::str_at(s, &["title"]).unwrap_or_default()) ": " }
                            (section_text(s))
                        }
                    }
                }
                ul class="og-list" {
                    @for x in &coded {
                        @let ty = x.get("resourceType").and_then(Value::as_str).unwrap_or_default();
                        li {
                            span class="og-muted" { (entry_kind(ty)) ": " }
                            a href={ "/app/patients/" (id) "/history/" (ty) "/" (id_of(x)) } { (concept(x.get("code"))) }
                            @let v = fhir::observation_value(x);
                            @if !v.is_empty() { " " strong { (v) } }
                        }
                    }
                }
            }
        };
        items.push((when(e), m));
    }
    for m in &meds.0 {
        items.push((
            when(m),
            html! {
                article class="og-journal-entry" {
                    h3 class="nhsuk-heading-s nhsuk-u-margin-bottom-2" {
                        (show_date(&when(m))) " – " @if is_repeat(m) { "Repeat medication" } @else { "Acute medication" }
                    }
                    p { a href={ "/app/patients/" (id) "/history/MedicationRequest/" (id_of(m)) } { (concept(m.get("medicationCodeableConcept"))) }
                        span class="og-muted" { " (" (fhir::str_at(m, &["status"]).unwrap_or_default()) ")" } }
                }
            },
        ));
    }
    for d in &letters.0 {
        items.push((
            when(d),
            html! {
                article class="og-journal-entry" {
                    h3 class="nhsuk-heading-s nhsuk-u-margin-bottom-2" { (show_date(&when(d))) " – Letter" }
                    p { (fhir::str_at(d, &["description"]).unwrap_or_default())
                        @if let Some(a) = fhir::str_at(d, &["author", "display"]) { span class="og-muted" { " from " (a) } } }
                }
            },
        ));
    }
    items.sort_by(|a, b| b.0.cmp(&a.0));
    let filters = [
        ("all", "Everything"),
        ("consultations", "Consultations"),
        ("medication", "Medication"),
        ("letters", "Letters"),
    ];
    let body = html! {
        (banner(&b))
        (patient_nav(&id, "journal"))
        h1 class="nhsuk-heading-l" { "Journal" }
        (apps.buttons(&web, &id))
        form method="get" action={ "/app/patients/" (id) "/journal" } class="nhsuk-u-margin-bottom-4"
            hx-get={ "/app/patients/" (id) "/journal" } hx-trigger="change" hx-target="main" hx-select="main" hx-swap="outerHTML" hx-push-url="true" {
            div class="nhsuk-form-group" {
                label class="nhsuk-label" for="show" { "Show" }
                select class="nhsuk-select" id="show" name="show" {
                    @for (v, label) in filters { option value=(v) selected[v == show] { (label) } }
                }
                " "
                button class="nhsuk-button nhsuk-button--secondary nhsuk-u-margin-bottom-0" type="submit" { "Filter" }
            }
        }
        @if items.is_empty() { p { "Nothing recorded." } }
        @for (_, m) in &items { (m) }
    };
    let title = format!("{} – journal", patient_name(&b.patient));
    apps.allow(ok(page(&title, Some(&web), &[("Home", "/app")], body)))
}

fn entry_kind(ty: &str) -> &str {
    match ty {
        "Condition" => "Problem",
        "Observation" => "Observation",
        "Procedure" => "Procedure",
        other => other,
    }
}

/// A Composition section's text, from its narrative, as plain text.
fn section_text(s: &Value) -> String {
    let div = fhir::str_at(s, &["text", "div"]).unwrap_or_default();
    let mut out = String::with_capacity(div.len());
    let mut in_tag = false;
    for c in div.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[derive(Deserialize)]
pub struct ProblemChange {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    change: String,
}

/// `POST /app/patients/{id}/problems/{cid}`: past or active, major or minor.
pub async fn update_problem(
    web: Web,
    Path((id, cid)): Path<(String, String)>,
    Form(f): Form<ProblemChange>,
) -> Page {
    web.check_csrf(&f._csrf)?;
    let mut c = web.read("Condition", &cid).await?;
    if fhir::ref_id(c.get("subject"), "Patient") != Some(id.as_str()) {
        return Err(WebError::NotFound(
            "this problem is not in this patient's record".into(),
        ));
    }
    match f.change.as_str() {
        "past" | "active" => {
            let status = if f.change == "past" {
                "resolved"
            } else {
                "active"
            };
            c["clinicalStatus"] = json!({ "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": status
            }]});
            if status == "resolved" {
                c["abatementDateTime"] = json!(fhir::today().to_string());
            } else if let Some(o) = c.as_object_mut() {
                o.remove("abatementDateTime");
            }
        }
        "major" | "minor" => {
            let mut exts: Vec<Value> = c
                .get("extension")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            exts.retain(|e| e.get("url").and_then(Value::as_str) != Some(PROBLEM_SIGNIFICANCE));
            exts.push(json!({ "url": PROBLEM_SIGNIFICANCE, "valueCode": f.change }));
            c["extension"] = json!(exts);
        }
        _ => {
            return Err(WebError::BadInput(
                "that change is not one OpenGP knows".into(),
            ));
        }
    }
    web.update("Condition", &cid, c).await?;
    Ok(Redirect::to(&format!("/app/patients/{id}#problems")).into_response())
}

/// `POST /app/patients/{id}/allergies/{aid}`: resolved or active again.
pub async fn update_allergy(
    web: Web,
    Path((id, aid)): Path<(String, String)>,
    Form(f): Form<ProblemChange>,
) -> Page {
    web.check_csrf(&f._csrf)?;
    let mut a = web.read("AllergyIntolerance", &aid).await?;
    if fhir::ref_id(a.get("patient"), "Patient") != Some(id.as_str()) {
        return Err(WebError::NotFound(
            "this allergy is not in this patient's record".into(),
        ));
    }
    let status = match f.change.as_str() {
        "resolved" | "active" => f.change.as_str(),
        _ => {
            return Err(WebError::BadInput(
                "that change is not one OpenGP knows".into(),
            ));
        }
    };
    a["clinicalStatus"] = json!({ "coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
        "code": status
    }]});
    web.update("AllergyIntolerance", &aid, a).await?;
    Ok(Redirect::to(&format!("/app/patients/{id}#allergies")).into_response())
}

/// What an entry says in one line.
fn entry_line(r: &Value) -> String {
    let what = concept(
        r.get("code")
            .or_else(|| r.get("medicationCodeableConcept"))
            .or_else(|| r.get("vaccineCode")),
    );
    let value = fhir::observation_value(r);
    let status = r
        .get("clinicalStatus")
        .map(|s| concept(Some(s)))
        .or_else(|| r.get("status").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    [what, value, status]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The elements that differ between two versions (top level, ignoring meta).
fn changed(old: &Value, new: &Value) -> Vec<String> {
    let (Some(o), Some(n)) = (old.as_object(), new.as_object()) else {
        return Vec::new();
    };
    let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| *k != "meta" && *k != "text" && o.get(*k) != n.get(*k))
        .cloned()
        .collect()
}

/// Who recorded an entry, as the entry itself says.
fn recorded_by(r: &Value) -> Option<String> {
    let refs = [
        r.get("recorder"),
        r.get("asserter"),
        r.get("requester"),
        r.get("performer").and_then(|p| p.get(0)),
        r.get("performer")
            .and_then(|p| p.get(0))
            .and_then(|p| p.get("actor")),
        r.get("author").and_then(|p| p.get(0)),
    ];
    refs.into_iter().flatten().find_map(|x| {
        x.get("display")
            .or_else(|| x.get("reference"))
            .and_then(Value::as_str)
            .map(|s| s.trim_start_matches("Practitioner/").to_owned())
    })
}

/// `GET /app/patients/{id}/history/{type}/{eid}`: every version of an entry.
pub async fn history(web: Web, Path((id, ty, eid)): Path<(String, String, String)>) -> Page {
    let (b, apps, versions, authors) = tokio::try_join!(
        banner_data(&web, &id),
        crate::launch::launchers(&web),
        web.versions(&ty, &eid),
        web.authors(&ty, &eid)
    )?;
    let bodies: Vec<(u64, String, bool, Value)> = versions
        .iter()
        .map(|v| {
            (
                v.version,
                v.last_updated.to_string(),
                v.deleted,
                fhir::body(v),
            )
        })
        .collect();
    let belongs = bodies.iter().any(|(_, _, _, r)| {
        ["subject", "patient"]
            .iter()
            .any(|k| fhir::ref_id(r.get(*k), "Patient") == Some(id.as_str()))
    });
    if !belongs {
        return Err(WebError::NotFound(
            "this entry is not in this patient's record".into(),
        ));
    }
    let body = html! {
        (banner(&b))
        (patient_nav(&id, ""))
        h1 class="nhsuk-heading-l" { "History of this entry" }
        p class="og-muted" { (entry_kind(&ty)) " " (eid) }
        (apps.buttons(&web, &id))
        ol class="og-list" reversed {
            @for (i, (version, at, deleted, r)) in bodies.iter().enumerate() {
                li {
                    strong { "Version " (version) } " · " (at.get(..16).unwrap_or(at).replace('T', " ")) " UTC"
                    @if *deleted {
                        p { "Deleted"
                            @if let Some(a) = authors.iter().find(|a| a.version == *version) { " by " (a.who) }
                            "." }
                    } @else {
                        p class="nhsuk-u-margin-bottom-1" { (entry_line(r)) }
                        @if let Some(a) = authors.iter().find(|a| a.version == *version) {
                            p class="nhsuk-u-margin-bottom-1" {
                                "By " strong { (a.who) }
                                @if let Some(r) = &a.role { " (" (crate::ui::role_name(r)) ")" }
                            }
                        } @else if let Some(by) = recorded_by(r) {
                            p class="og-muted nhsuk-u-margin-bottom-1" { "Recorded by " (by) }
                        }
                        @if let Some((_, _, _, older)) = bodies.get(i + 1) {
                            @let diff = changed(older, r);
                            @if !diff.is_empty() { p class="og-muted" { "Changed: " (diff.join(", ")) } }
                        } @else {
                            p class="og-muted" { "First recorded." }
                        }
                    }
                }
            }
        }
    };
    apps.allow(ok(page(
        "Entry history",
        Some(&web),
        &[("Home", "/app")],
        body,
    )))
}
