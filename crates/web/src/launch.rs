//! Opening a registered SMART app from a patient's record (SMART App
//! Launch 2.x, EHR launch): the "Launch <app>" buttons of every record page
//! (summary, journal, entry history, or the details a role without the
//! clinical record sees), one for each app the user may open
//! ([`gp_store::Store::launchable_apps`]), and
//! the form they send, which mints a launch context for the patient
//! ([`gp_api::smart::mint_launch`], an audited read of the patient) and
//! sends the browser to the app's launch URL with `iss` and `launch`. The
//! app then asks for authorization with that `launch`, and is given the
//! patient in its token response.

use axum::Form;
use axum::extract::Path;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Redirect};
use gp_store::smart::AppRecord;
use maud::{Markup, html};
use serde::Deserialize;

use crate::session::Web;
use crate::ui::{Page, WebError};

/// The apps the user may open from a record.
async fn apps(web: &Web) -> Result<Vec<AppRecord>, WebError> {
    web.state
        .store
        .launchable_apps(&web.ctx)
        .await
        .map_err(|e| WebError::store(e, web.htmx))
}

/// The "Apps" of every page of a patient's record: the apps the user may
/// open from it, read once per page.
pub struct Launchers(Vec<AppRecord>);

/// The apps the user may open from a record page.
pub async fn launchers(web: &Web) -> Result<Launchers, WebError> {
    apps(web).await.map(Launchers)
}

impl Launchers {
    /// A button for each app, each a form of its own.
    pub fn buttons(&self, web: &Web, patient: &str) -> Markup {
        html! {
            @if !self.0.is_empty() {
                section aria-labelledby="apps" {
                    h2 id="apps" class="nhsuk-heading-s" { "Apps" }
                    ul class="og-list" {
                        @for a in &self.0 {
                            li {
                                form class="nhsuk-u-margin-bottom-0" method="post" action={ "/app/patients/" (patient) "/launch" } {
                                    input type="hidden" name="_csrf" value=(web.csrf());
                                    input type="hidden" name="client_id" value=(a.client_id);
                                    button class="nhsuk-button nhsuk-button--secondary nhsuk-button--small nhsuk-u-margin-bottom-0" type="submit" {
                                        "Launch " (a.name)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The page with a Content-Security-Policy that lets the buttons'
    /// forms go on to the apps' launch URLs (the launch answers with a
    /// redirect there, which browsers check against `form-action`).
    pub fn allow(&self, page: Page) -> Page {
        let mut res = page?;
        let urls: Vec<&str> = self
            .0
            .iter()
            .filter_map(|a| a.launch_url.as_deref())
            .collect();
        if !urls.is_empty()
            && let Some(v) = crate::csp_to(&urls)
        {
            res.headers_mut()
                .insert(axum::http::header::CONTENT_SECURITY_POLICY, v);
        }
        Ok(res)
    }
}

#[derive(Deserialize)]
pub struct Launch {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    client_id: String,
}

/// `POST /app/patients/{id}/launch` (`client_id`): a launch context for
/// the patient, and the browser sent on to the app (303).
pub async fn submit(
    web: Web,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<Launch>,
) -> Page {
    web.check_csrf(&f._csrf)?;
    let app = apps(&web)
        .await?
        .into_iter()
        .find(|a| a.client_id == f.client_id)
        .ok_or_else(|| {
            WebError::NotFound("that app is not one you can open from a record".into())
        })?;
    let url = app.launch_url.unwrap_or_default();
    let code = gp_api::smart::mint_launch(&web.state, &web.ctx, &id)
        .await
        .map_err(|e| WebError::store(e, web.htmx))?;
    let root = gp_api::root_url(&web.state.config, &uri, &headers);
    let iss = gp_api::smart::Endpoints::new(&root, &web.ctx.practice).fhir;
    let to = gp_api::smart::redirect_with(&url, &[("iss", &iss), ("launch", &code)]);
    Ok(Redirect::to(&to).into_response())
}
