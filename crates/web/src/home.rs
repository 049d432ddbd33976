//! The home page: the user's appointments and work for today.

use maud::html;
use serde_json::Value;

use crate::fhir::{self, patient_name, show_age};
use crate::session::Web;
use crate::ui::{Page, ok};

/// `GET /app`.
pub async fn page_(web: &Web) -> Page {
    let today = fhir::today();
    let tomorrow = today.next_day().unwrap_or(today);
    // Today's list; on a day without one (a weekend), the next ones booked.
    let mut upcoming = false;
    let (appointments, patients) = match web.practitioner() {
        Some(p) => {
            let mut found = web
                .search(
                    "Appointment",
                    vec![
                        ("actor", format!("Practitioner/{p}")),
                        ("date", format!("ge{today}")),
                        ("date", format!("lt{tomorrow}")),
                        ("_sort", "date".into()),
                        ("_count", "100".into()),
                        ("_include", "Appointment:patient".into()),
                    ],
                )
                .await?;
            if found.0.is_empty() {
                upcoming = true;
                found = web
                    .search(
                        "Appointment",
                        vec![
                            ("actor", format!("Practitioner/{p}")),
                            ("date", format!("ge{tomorrow}")),
                            ("status", "booked".into()),
                            ("_sort", "date".into()),
                            ("_count", "10".into()),
                            ("_include", "Appointment:patient".into()),
                        ],
                    )
                    .await?;
            }
            found
        }
        None => (Vec::new(), Vec::new()),
    };
    // The consultations the user has recorded today, newest first.
    let (seen, seen_patients) = match web.practitioner() {
        Some(p) => {
            web.search(
                "Encounter",
                vec![
                    ("practitioner", format!("Practitioner/{p}")),
                    ("date", format!("ge{today}")),
                    ("date", format!("lt{tomorrow}")),
                    ("_sort", "-date".into()),
                    ("_count", "50".into()),
                    ("_include", "Encounter:patient".into()),
                ],
            )
            .await?
        }
        None => (Vec::new(), Vec::new()),
    };
    let patients: Vec<Value> = patients.into_iter().chain(seen_patients).collect();
    let name_of = |reference: Option<&str>| -> Option<(String, String, String)> {
        let id = reference?.strip_prefix("Patient/")?;
        let p = patients
            .iter()
            .find(|p| p.get("id").and_then(Value::as_str) == Some(id))?;
        let age = p
            .get("birthDate")
            .and_then(Value::as_str)
            .and_then(fhir::date)
            .map(|b| show_age(b, today))
            .unwrap_or_default();
        Some((id.to_owned(), patient_name(p), age))
    };
    let (who, _) = web.who();
    let body = html! {
        h1 { "Today" }
        p class="nhsuk-body-l" { (who) " · " (fhir::show_date(&today.to_string())) }
        @if web.ctx.allows(gp_store::access::Activity::AdministerUsers) {
            p { a href="/app/admin/users" { "User accounts" } }
        }
        div class="og-grid" {
            section aria-labelledby="appts" {
                h2 id="appts" { @if upcoming { "Your next appointments" } @else { "Your appointments today" } }
                @if web.practitioner().is_none() {
                    p class="og-muted" { "Your account is not linked to a clinician, so there is no appointment list." }
                } @else if appointments.is_empty() {
                    p class="og-muted" { "No appointments booked with you." }
                } @else {
                    @if upcoming { p class="og-muted" { "None booked with you today." } }
                    table class="nhsuk-table" {
                        caption class="nhsuk-table__caption nhsuk-u-visually-hidden" { "Appointments today" }
                        thead class="nhsuk-table__head" {
                            tr { th scope="col" { "Time" } th scope="col" { "Patient" } th scope="col" { "Status" } }
                        }
                        tbody class="nhsuk-table__body" {
                            @for a in &appointments {
                                @let start = fhir::str_at(a, &["start"]).unwrap_or_default();
                                @let patient = a.get("participant").and_then(Value::as_array).and_then(|ps| {
                                    ps.iter().filter_map(|p| p.get("actor")?.get("reference")?.as_str())
                                        .find(|r| r.starts_with("Patient/"))
                                });
                                tr class="nhsuk-table__row" {
                                    td class="nhsuk-table__cell" {
                                        @if upcoming { (fhir::show_date(start)) " " }
                                        (start.get(11..16).unwrap_or(start))
                                    }
                                    td class="nhsuk-table__cell" {
                                        @match name_of(patient) {
                                            Some((id, name, age)) => { a href={ "/app/patients/" (id) } { (name) } " (" (age) ")" }
                                            None => { span class="og-muted" { (fhir::str_at(a, &["description"]).unwrap_or("Unbooked")) } }
                                        }
                                    }
                                    td class="nhsuk-table__cell" { (fhir::str_at(a, &["status"]).unwrap_or_default()) }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="work" {
                h2 id="work" { "Work" }
                ul class="nhsuk-list" {
                    li { a href="/app/patients" { "Find a patient" } }
                    li { a href="/app/patients/new" data-key="register" { "Register a new patient" } }
                }
                @if web.practitioner().is_some() {
                    h3 class="nhsuk-heading-s" { "Your consultations today" }
                    @if seen.is_empty() {
                        p class="og-muted" { "None recorded yet." }
                    } @else {
                        ul class="og-list" {
                            @for e in &seen {
                                @let patient = fhir::str_at(e, &["subject", "reference"]).unwrap_or_default();
                                li {
                                    (fhir::str_at(e, &["period", "start"]).and_then(|s| s.get(11..16)).unwrap_or_default()) " "
                                    @match name_of(Some(patient)) {
                                        Some((id, name, _)) => { a href={ "/app/patients/" (id) "/journal" } { (name) } }
                                        None => { (patient) }
                                    }
                                    span class="og-muted" { " – " (fhir::concept(e.get("type"))) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    ok(crate::ui::page("Today", Some(web), &[], body))
}

/// `GET /app`: today's work, or for a patient (or proxy) signed in, their
/// record (me.rs).
pub async fn page(web: Web) -> Page {
    if web.ctx.online.is_some() {
        return crate::me::page(&web).await;
    }
    page_(&web).await
}
