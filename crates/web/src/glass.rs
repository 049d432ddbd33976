//! Restricted entries in the record: how many are withheld from this user,
//! and breaking the glass (gp-store glass.rs) with a reason to see them.

use axum::Form;
use axum::extract::Path;
use axum::response::{IntoResponse, Redirect};
use maud::{Markup, html};
use serde::Deserialize;

use crate::record::{banner, banner_data, patient_nav};
use crate::session::Web;
use crate::ui::{Page, WebError, error_summary, field_error, ok, page};

/// What the user sees of the patient's restricted entries: how many are
/// withheld, or the break-glass grant that shows them.
pub struct Glass {
    pub withheld: u64,
    pub open: Option<gp_store::access::Grant>,
}

/// How many of the patient's entries are withheld from this user.
pub async fn withheld(web: &Web, id: &str) -> Result<u64, WebError> {
    let id = gp_fhir::Id::parse(id)
        .map_err(|_| WebError::NotFound(format!("Patient/{id} is not known")))?;
    web.state
        .store
        .withheld(&web.ctx, id)
        .await
        .map_err(|e| WebError::store(e, web.htmx))
}

/// The user's view of the patient's restricted entries, for the summary.
pub async fn status(web: &Web, id: &str) -> Result<Glass, WebError> {
    let (withheld, grants) = tokio::try_join!(withheld(web, id), async {
        web.state
            .store
            .grants(&web.ctx)
            .await
            .map_err(|e| WebError::store(e, web.htmx))
    })?;
    Ok(Glass {
        withheld,
        open: grants.into_iter().find(|g| g.patient == id),
    })
}

/// The notice on the summary: "N entries are restricted", with the way in;
/// or, once the glass is broken, that restricted entries are being shown,
/// until when and why (the user must not forget they are seeing them).
pub fn notice(id: &str, glass: &Glass) -> Markup {
    let n = glass.withheld;
    html! {
        @if let Some(g) = &glass.open {
            div class="nhsuk-warning-callout" {
                h2 class="nhsuk-warning-callout__label" {
                    span role="text" { span class="nhsuk-u-visually-hidden" { "Important: " } "Glass broken" }
                }
                p {
                    "You broke the glass for this record: restricted entries are shown to you until "
                    strong { (crate::fhir::uk_time(g.expires)) } ". Everything you see is recorded in the audit trail."
                }
                p class="og-muted" { "Your reason: " (g.reason) }
            }
        } @else if n > 0 {
            div class="nhsuk-warning-callout" {
                h2 class="nhsuk-warning-callout__label" {
                    span role="text" { span class="nhsuk-u-visually-hidden" { "Important: " } "Restricted entries" }
                }
                p {
                    @if n == 1 { "1 entry is restricted" } @else { (n) " entries are restricted" }
                    " and not shown to your role. "
                    a href={ "/app/patients/" (id) "/break-glass" } { "Break the glass to see them" }
                }
            }
        }
    }
}

fn form_page(web: &Web, id: &str, body: Markup) -> Markup {
    page(
        "Break the glass",
        Some(web),
        &[("Home", "/app"), ("Record", &format!("/app/patients/{id}"))],
        body,
    )
}

async fn render(web: &Web, id: &str, reason: &str, errors: &[(&str, String)]) -> Page {
    let (b, n) = tokio::try_join!(banner_data(web, id), withheld(web, id))?;
    let err = field_error(errors, "reason");
    let body = html! {
        (banner(&b))
        (patient_nav(id, "summary"))
        (error_summary(errors))
        h1 { "Break the glass" }
        p {
            @if n == 1 { "1 entry in this record is restricted." } @else { (n) " entries in this record are restricted." }
            " You can see them for 60 minutes if you record why. Your reason and everything you then see are recorded in the audit trail, which the patient and the practice's privacy officer can read."
        }
        form method="post" action={ "/app/patients/" (id) "/break-glass" } novalidate {
            input type="hidden" name="_csrf" value=(web.csrf());
            div class={ "nhsuk-form-group" @if err.is_some() { " nhsuk-form-group--error" } } {
                label class="nhsuk-label" for="reason" { "Why do you need to see the restricted entries?" }
                @if let Some(e) = err {
                    span class="nhsuk-error-message" id="reason-error" {
                        span class="nhsuk-u-visually-hidden" { "Error: " } (e)
                    }
                }
                textarea class={ "nhsuk-textarea" @if err.is_some() { " nhsuk-textarea--error" } }
                    id="reason" name="reason" rows="3"
                    aria-describedby=[err.map(|_| "reason-error")] { (reason) }
            }
            button class="nhsuk-button nhsuk-button--warning" type="submit" { "Break the glass" }
        }
    };
    ok(form_page(web, id, body))
}

/// `GET /app/patients/{id}/break-glass`.
pub async fn form(web: Web, Path(id): Path<String>) -> Page {
    render(&web, &id, "", &[]).await
}

#[derive(Deserialize)]
pub struct Reason {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /app/patients/{id}/break-glass`: a reason is required.
pub async fn submit(web: Web, Path(id): Path<String>, Form(f): Form<Reason>) -> Page {
    web.check_csrf(&f._csrf)?;
    if f.reason.trim().is_empty() {
        let errors = [(
            "reason",
            "Enter why you need to see the restricted entries".to_owned(),
        )];
        return render(&web, &id, &f.reason, &errors).await;
    }
    let pid = gp_fhir::Id::parse(&id)
        .map_err(|_| WebError::NotFound(format!("Patient/{id} is not known")))?;
    web.state
        .store
        .break_glass(&web.ctx, pid, &f.reason)
        .await
        .map_err(|e| WebError::store(e, web.htmx))?;
    Ok(Redirect::to(&format!("/app/patients/{id}")).into_response())
}
