//! The SMART on FHIR authorization page (`/app/smart/authorize`): the
//! signed-in user (the web app's own session; signing in first if need be)
//! sees which app asks for what, picks the patient for a standalone
//! `launch/patient`, and approves or denies. The checks and the code are
//! gp-api's ([`gp_api::smart`]); this page is the user's part.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use gp_api::AppState;
use gp_api::smart::{AuthRequest, AuthorizeError, check_authorize, issue_code, redirect_with};
use maud::{Markup, html};

use crate::session::Web;
use crate::ui::{Page, WebError, error_summary, page};

/// The OAuth parameters the approval form carries back.
const PARAMS: [&str; 9] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "aud",
    "code_challenge",
    "code_challenge_method",
    "launch",
];

async fn checked(
    web: &Web,
    uri: &Uri,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<AuthRequest, Response> {
    let root = gp_api::root_url(&web.state.config, uri, headers);
    let req = match check_authorize(&web.state, &root, q).await {
        Ok(r) => r,
        Err(AuthorizeError::Redirect(url)) => return Err(Redirect::to(&url).into_response()),
        Err(AuthorizeError::Page(m)) => return Err(WebError::BadInput(m).into_response()),
    };
    if req.practice.key != web.ctx.practice.key {
        return Err(WebError::Forbidden(format!(
            "the app asks for the record of {} ({}), and you are signed in to another practice; sign out and sign in there",
            req.practice.name, req.practice.ods
        ))
        .into_response());
    }
    Ok(req)
}

/// What a scope lets the app do, in words.
fn describe(scope: &str) -> String {
    match scope {
        "launch/patient" => "know which patient you choose".into(),
        "launch" => "open with the patient of your record".into(),
        "offline_access" => "keep access after you sign out, until you revoke it".into(),
        "online_access" => "keep access while you are signed in".into(),
        s => {
            let (level, rest) = s.split_once('/').unwrap_or(("", s));
            let (ty, perm) = rest.split_once('.').unwrap_or((rest, ""));
            let what = if ty == "*" {
                "all records".to_owned()
            } else {
                format!("{ty} records")
            };
            let whose = match level {
                "patient" => "of the chosen patient",
                _ => "of any patient you may see",
            };
            let how = match perm {
                "read" | "rs" | "r" | "s" => "read",
                "write" | "cud" | "c" | "u" | "d" | "cu" | "ud" => "change",
                _ => "read and change",
            };
            format!("{how} {what} {whose}")
        }
    }
}

fn hidden(q: &HashMap<String, String>) -> Markup {
    html! {
        @for k in PARAMS {
            @if let Some(v) = q.get(k) {
                input type="hidden" name=(k) value=(v);
            }
        }
    }
}

async fn render(
    web: &Web,
    req: &AuthRequest,
    q: &HashMap<String, String>,
    errors: &[(&str, String)],
) -> Page {
    let found = match q
        .get("patient_search")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        Some(s) if req.wants_patient => {
            let digits: String = s.chars().filter(|c| !c.is_whitespace()).collect();
            let params = if digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()) {
                vec![(
                    "identifier",
                    format!("https://fhir.nhs.uk/Id/nhs-number|{digits}"),
                )]
            } else {
                vec![("name", s.to_owned())]
            };
            let mut params = params;
            params.push(("_count", "20".to_owned()));
            web.search("Patient", params).await?.0
        }
        _ => Vec::new(),
    };
    let launched = match &req.launch_patient {
        Some(id) => Some(web.read("Patient", id).await?),
        None => None,
    };
    let body = html! {
        div class="nhsuk-grid-row" {
            div class="nhsuk-grid-column-two-thirds" {
                (error_summary(errors))
                h1 { "Allow " (req.app.name) " to use the record?" }
                p { "The app " strong { (req.app.name) } " asks to:" }
                ul class="nhsuk-list nhsuk-list--bullet" {
                    @for s in req.scope.split_whitespace() {
                        li { (describe(s)) " (" code { (s) } ")" }
                    }
                }
                p { "It can never do more than your own role allows." }
                @if let Some(p) = &launched {
                    p { "Patient: " strong { (crate::fhir::patient_name(p)) } }
                }
                @if req.wants_patient {
                    form method="get" action="/app/smart/authorize" {
                        (hidden(q))
                        div class="nhsuk-form-group" {
                            label class="nhsuk-label" for="patient_search" { "Find the patient (name or NHS number)" }
                            input class="nhsuk-input nhsuk-u-width-two-thirds" id="patient_search" name="patient_search"
                                type="search" value=(q.get("patient_search").map(String::as_str).unwrap_or_default());
                        }
                        button class="nhsuk-button nhsuk-button--secondary" type="submit" { "Search" }
                    }
                }
                form method="post" action="/app/smart/authorize" {
                    (hidden(q))
                    input type="hidden" name="_csrf" value=(web.csrf());
                    @if req.wants_patient {
                        @if found.is_empty() {
                            p { "Search for the patient whose record the app may use." }
                        } @else {
                            fieldset class="nhsuk-fieldset" {
                                legend class="nhsuk-fieldset__legend" { "Patient" }
                                div class="nhsuk-radios" {
                                    @for p in &found {
                                        @let id = p["id"].as_str().unwrap_or_default();
                                        div class="nhsuk-radios__item" {
                                            input class="nhsuk-radios__input" id={"patient-" (id)} name="patient" type="radio" value=(id);
                                            label class="nhsuk-label nhsuk-radios__label" for={"patient-" (id)} {
                                                (crate::fhir::patient_name(p))
                                                @if let Some(n) = crate::fhir::nhs_number(p) {
                                                    " (NHS number " (crate::fhir::format_nhs_number(n)) ")"
                                                }
                                                @if let Some(b) = p["birthDate"].as_str() {
                                                    ", born " (crate::fhir::show_date(b))
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    button class="nhsuk-button" type="submit" name="decision" value="approve" { "Allow" }
                    " "
                    button class="nhsuk-button nhsuk-button--secondary" type="submit" name="decision" value="deny" { "Deny" }
                }
            }
        }
    };
    let mut res = axum::response::Html(
        page(&format!("Allow {}", req.app.name), Some(web), &[], body).into_string(),
    )
    .into_response();
    // The approval form's answer redirects to the app.
    if let Some(v) = crate::csp_to(&[&req.redirect_uri]) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    Ok(res)
}

/// Whether a request is a navigation from another site that came without
/// the session cookie (Fetch Metadata's `Sec-Fetch-Site: cross-site`): the
/// browser withholds the `SameSite=Strict` cookie from it, whether or not
/// the user is signed in.
fn cross_site_without_session(headers: &HeaderMap) -> bool {
    crate::session::cookie(headers, crate::session::COOKIE).is_none()
        && headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"cross-site")
}

/// The EHR launch comes back from the app's site: a page that sends the
/// browser on to the same authorization request at once (`http-equiv`
/// refresh, no script), a navigation this site starts, which carries the
/// `SameSite=Strict` session cookie. The session cookie stays `Strict`:
/// the approval page this opens is a GET that changes nothing, and the
/// decision is a POST with the session's CSRF token, as before; a second,
/// `Lax` cookie for this path would have been a second credential to keep
/// in step with every sign-in, role change and sign-out.
fn same_site_again(q: &HashMap<String, String>) -> Response {
    let mut params: Vec<(&String, &String)> = q.iter().collect();
    params.sort();
    let target = format!(
        "/app/smart/authorize?{}",
        serde_urlencoded::to_string(params).unwrap_or_default()
    );
    let body = html! {
        (maud::DOCTYPE)
        html lang="en-GB" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content={ "0;url=" (target) };
                title { "Continuing to OpenGP" }
            }
            body {
                main {
                    p { a href=(target) { "Continue to OpenGP" } }
                }
            }
        }
    };
    axum::response::Html(body.into_string()).into_response()
}

/// `GET /app/smart/authorize`: the authorization endpoint.
pub async fn form(
    web: Result<Web, Response>,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let web = match web {
        Ok(web) => web,
        Err(_) if cross_site_without_session(&headers) => return Ok(same_site_again(&q)),
        Err(to_sign_in) => return Ok(to_sign_in),
    };
    let req = match checked(&web, &uri, &headers, &q).await {
        Ok(r) => r,
        Err(res) => return Ok(res),
    };
    render(&web, &req, &q, &[]).await
}

/// `POST /app/smart/authorize`: the user's decision.
pub async fn decide(
    web: Web,
    State(_st): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Page {
    web.check_csrf(f.get("_csrf").map(String::as_str).unwrap_or_default())?;
    let req = match checked(&web, &uri, &headers, &f).await {
        Ok(r) => r,
        Err(res) => return Ok(res),
    };
    if f.get("decision").map(String::as_str) != Some("approve") {
        let url = redirect_with(
            &req.redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_description", "the user denied the app"),
                ("state", req.state.as_str()),
            ],
        );
        return Ok(Redirect::to(&url).into_response());
    }
    let patient = match (&req.launch_patient, req.wants_patient) {
        (Some(p), _) => Some(p.clone()),
        (None, true) => {
            let Some(id) = f.get("patient").filter(|p| !p.is_empty()) else {
                let errors = [("patient_search", "Choose the patient".to_owned())];
                return render(&web, &req, &f, &errors).await;
            };
            // The user must be able to see the patient (an audited read).
            web.read("Patient", id).await?;
            Some(id.clone())
        }
        (None, false) => None,
    };
    let user = web
        .ctx
        .access
        .user
        .as_ref()
        .ok_or(WebError::SignIn { htmx: false })?;
    let url = issue_code(&web.state, &req, user, patient)
        .await
        .map_err(|_| WebError::Internal("the approval could not be recorded".into()))?;
    Ok(Redirect::to(&url).into_response())
}
