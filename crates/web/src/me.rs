//! What a patient (or a proxy acting for one) sees after signing in: the
//! record of the patient the session acts for, as gp-store online.rs lets
//! them read it (their compartment only, without restricted entries or
//! those the practice hid from online view: the store leaves them out),
//! and whom else they may act for, to switch to.

use maud::{Markup, html};
use serde_json::Value;

use crate::fhir::{self, concept, patient_name};
use crate::session::Web;
use crate::ui::{Page, ok};

/// A section of the record: a heading and a list of entries, each a
/// description and a date.
fn section(id: &str, title: &str, empty: &str, rows: &[(String, String)]) -> Markup {
    html! {
        section aria-labelledby=(id) {
            h2 class="nhsuk-heading-m" id=(id) { (title) }
            @if rows.is_empty() {
                p class="og-muted" { (empty) }
            } @else {
                ul class="nhsuk-list nhsuk-list--border" {
                    @for (what, when) in rows {
                        li {
                            (what)
                            @if !when.is_empty() { " " span class="og-muted" { "(" (fhir::show_date(when)) ")" } }
                        }
                    }
                }
            }
        }
    }
}

fn rows(found: &[Value], describe: impl Fn(&Value) -> String) -> Vec<(String, String)> {
    found.iter().map(|r| (describe(r), fhir::when(r))).collect()
}

/// `GET /app` for a patient account.
pub async fn page(web: &Web) -> Page {
    let Some(online) = web.ctx.online.clone() else {
        return Err(crate::WebError::Forbidden(
            "this page is for patients and their proxies".into(),
        ));
    };
    let subject = format!("Patient/{}", online.patient);
    let p = |k: &'static str, v: String| (k, v);
    let (me, problems, meds, allergies, results, whom) = tokio::try_join!(
        web.read("Patient", &online.patient),
        web.search(
            "Condition",
            vec![p("patient", subject.clone()), p("_count", "200".into())]
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
            "AllergyIntolerance",
            vec![p("patient", subject.clone()), p("_count", "100".into())]
        ),
        web.search(
            "Observation",
            vec![
                p("patient", subject.clone()),
                p("_sort", "-date".into()),
                p("_count", "20".into())
            ]
        ),
        async {
            web.state
                .store
                .act_for_targets(&web.ctx)
                .await
                .map_err(|e| crate::WebError::store(e, web.htmx))
        },
    )?;
    let name = patient_name(&me);
    let proxy = online.proxy.is_some();
    let others: Vec<_> = whom
        .iter()
        .filter(|t| t.patient != online.patient)
        .collect();
    let body = html! {
        h1 { @if proxy { "The GP record of " (name) } @else { "Your GP record" } }
        @if proxy {
            p class="nhsuk-body-l" { "You are looking at this record as " (concept(online.proxy.as_ref().map(|(_, r)| r))) " (proxy access)." }
        }
        @if let Some(n) = fhir::nhs_number(&me) {
            p { "NHS number: " (fhir::format_nhs_number(n)) }
        }
        (section("problems", "Health problems", "No health problems are shown.",
            &rows(&problems.0, |c| concept(c.get("code")))))
        (section("medicines", "Medicines", "No current medicines are shown.",
            &rows(&meds.0, |m| concept(m.get("medicationCodeableConcept")))))
        (section("allergies", "Allergies", "No allergies are shown.",
            &rows(&allergies.0, |a| concept(a.get("code")))))
        (section("results", "Test results and measurements", "No results are shown.",
            &rows(&results.0, |o| {
                let value = fhir::observation_value(o);
                if value.is_empty() { concept(o.get("code")) } else { format!("{}: {value}", concept(o.get("code"))) }
            })))
        p class="og-muted" { "Some entries may not be shown online; ask the practice if something seems missing." }
        @if !others.is_empty() || proxy {
            h2 class="nhsuk-heading-m" { "Switch record" }
            ul class="nhsuk-list" {
                @for t in whom.iter().filter(|t| t.patient != online.patient) {
                    li {
                        form method="post" action="/app/role" {
                            input type="hidden" name="_csrf" value=(web.csrf());
                            input type="hidden" name="role" value={ (gp_store::online::ROLE_PREFIX) (t.patient) };
                            input type="hidden" name="next" value="/app";
                            button class="nhsuk-button nhsuk-button--secondary nhsuk-u-margin-bottom-2" type="submit" {
                                "View the record of " (patient_name(&serde_json::json!({ "name": [t.name.clone()] })))
                            }
                        }
                    }
                }
            }
        }
    };
    ok(crate::ui::page(
        if proxy { "GP record" } else { "Your GP record" },
        Some(web),
        &[],
        body,
    ))
}
