//! The clinician web app: pages rendered on the server (maud), partial
//! updates with htmx, and the NHS design system's styles.
//!
//! Every page acts through [`gp_store::Store`] with the signed-in user's
//! [`Ctx`], exactly as the FHIR API does: the same access rules, the same
//! versions, the same audit. The app keeps nothing of its own but the
//! session cookie.
//!
//! API Boundary: [`routes`] adds the app under `/app` to the API's router.
//!
//! Architecture invariants: no SQL; no inline script or style (the
//! Content-Security-Policy forbids both); every form that changes data
//! carries the session's CSRF token; bad input answers a page that says
//! what is wrong, never a 500.

mod admin;
mod assets;
mod authorize;
mod consult;
mod fhir;
mod glass;
mod home;
mod launch;
mod login;
mod me;
mod oidc;
mod patients;
mod record;
mod session;
mod ui;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::{get, post};
use gp_api::AppState;

pub use session::Web;
pub use ui::WebError;

/// The web app's routes, under `/app`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app", get(home::page))
        .route("/app/login", get(login::form).post(login::submit))
        .route("/app/login/oidc", get(oidc::start))
        .route("/app/login/oidc/callback", get(oidc::callback))
        .route("/app/role", get(login::roles).post(login::choose))
        .route("/app/logout", post(login::logout))
        .route("/app/assets/{file}", get(assets::serve))
        .route("/app/assets/images/{file}", get(assets::image))
        .route("/app/patients", get(patients::search))
        .route(
            "/app/patients/new",
            get(patients::new_form).post(patients::register),
        )
        .route("/app/patients/{id}", get(record::summary))
        .route("/app/patients/{id}/journal", get(record::journal))
        .route(
            "/app/patients/{id}/consultation",
            get(consult::form).post(consult::save),
        )
        .route(
            "/app/patients/{id}/problems/{cid}",
            post(record::update_problem),
        )
        .route(
            "/app/patients/{id}/allergies/{aid}",
            post(record::update_allergy),
        )
        .route(
            "/app/patients/{id}/break-glass",
            get(glass::form).post(glass::submit),
        )
        .route(
            "/app/patients/{id}/history/{ty}/{eid}",
            get(record::history),
        )
        .route("/app/patients/{id}/launch", post(launch::submit))
        .route(
            "/app/patients/{id}/online-account",
            post(admin::create_online_account),
        )
        .route("/app/admin/users", get(admin::list))
        .route(
            "/app/admin/users/new",
            get(admin::new_form).post(admin::create),
        )
        .route(
            "/app/admin/users/{username}",
            get(admin::roles_form).post(admin::save_roles),
        )
        .route(
            "/app/admin/users/{username}/status",
            post(admin::set_status),
        )
        .route("/app/snomed", get(consult::suggest))
        .route(
            "/app/smart/authorize",
            get(authorize::form).post(authorize::decide),
        )
        .layer(axum::middleware::map_response(security_headers))
}

/// The Content-Security-Policy: only our own scripts and styles, and forms
/// sent only to ourselves (and `form_action`, when not empty).
fn csp(form_action: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         object-src 'none'; base-uri 'none'; form-action 'self' {form_action}; \
         frame-ancestors 'none'"
    )
    .replace("'self' ;", "'self';")
}

/// The origin (`scheme://host[:port]`) of an absolute http(s) URL, when it
/// is one a Content-Security-Policy can name.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    let ok = matches!(scheme, "http" | "https")
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    ok.then(|| format!("{scheme}://{host}"))
}

/// A page's own Content-Security-Policy: the web app's, with the origins
/// of `urls` allowed as form actions too (a form answered by a redirect
/// there, which browsers check against `form-action`).
pub(crate) fn csp_to(urls: &[&str]) -> Option<HeaderValue> {
    let mut origins: Vec<String> = urls.iter().filter_map(|u| origin(u)).collect();
    origins.sort();
    origins.dedup();
    HeaderValue::from_str(&csp(&origins.join(" "))).ok()
}

/// Headers on every page: the Content-Security-Policy (unless the page set
/// its own), and no framing, sniffing or referrers.
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    // A page may set its own (stricter or as strict) policy: the SMART
    // authorization page adds the app's origin as a form action, the
    // sign-in page the OpenID Connect provider's.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY)
        && let Ok(v) = HeaderValue::from_str(&csp(""))
    {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        // Pages hold patient data: never kept by a shared cache or the
        // browser's back-forward store after sign-out.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}
