//! Account administration over HTTP, for a user administrator (the
//! administer-users activity; gp-store accounts.rs and online.rs), under
//! `/practices/{ods}/admin`:
//!
//! - `GET users`: the practice's accounts (never a password hash);
//! - `POST users` `{"username", "name", "password", "roles", "practitioner"?}`;
//! - `POST users/{username}/disable` and `/enable`: a disabled account
//!   cannot sign in and its sessions end at once;
//! - `PUT users/{username}/roles` `{"roles": [...]}`: sessions using a role
//!   taken away end;
//! - `POST patient-accounts` `{"patient": id, "password"?}`: a patient's
//!   online account from their record (a password is generated and
//!   answered once when none is given).
//!
//! Every change, refused or done, is an AuditEvent (gp-store audit.rs,
//! `Admin`). Ending sessions also drops them from this server's cache.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use gp_store::Ctx;
use gp_store::accounts::{NewUser, UserRecord, generate_password};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;

const MAX_BODY: usize = 16 * 1024;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/users", get(list).post(add))
        .route("/users/{username}/disable", post(disable))
        .route("/users/{username}/enable", post(enable))
        .route("/users/{username}/roles", put(roles))
        .route("/patient-accounts", post(add_patient_account))
}

/// An account as the API shows it.
pub fn account_json(u: &UserRecord) -> Value {
    let patient = u
        .roles
        .iter()
        .find_map(|r| gp_store::online::role_patient(r));
    json!({
        "id": u.id,
        "username": u.username,
        "name": u.name,
        "roles": if patient.is_some() { json!([]) } else { json!(u.roles) },
        "patient": patient,
        "practitioner": u.practitioner,
        "disabled": u.disabled,
        "locked": u.locked_until.is_some_and(|t| t > gp_fhir::Instant::now()),
    })
}

/// The signed-in context of an administrative request.
async fn context(
    st: &AppState,
    ods: &str,
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
) -> Result<Ctx, ApiError> {
    let practice = st.practice(ods).await?;
    let address = crate::auth::client_address(extensions);
    crate::auth::authenticate(st, &practice, headers, address).await
}

async fn read_json<T: serde::de::DeserializeOwned>(body: Body, what: &str) -> Result<T, ApiError> {
    let bytes = http_body_util::Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|_| ApiError::bad_request("the body could not be read or is too long"))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("{what}: {e}")))
}

fn answer(out: Result<Response, ApiError>) -> Response {
    out.unwrap_or_else(IntoResponse::into_response)
}

async fn list(
    State(st): State<AppState>,
    Path(ods): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let (parts, _) = request.into_parts();
    answer(
        async {
            let ctx = context(&st, &ods, &parts.headers, &parts.extensions).await?;
            let users = st.store.users(&ctx).await?;
            Ok(axum::Json(users.iter().map(account_json).collect::<Vec<_>>()).into_response())
        }
        .await,
    )
}

#[derive(serde::Deserialize)]
struct AddUser {
    username: String,
    name: String,
    password: Option<String>,
    roles: Vec<String>,
    practitioner: Option<String>,
}

/// The account created, with the password when it was generated here.
fn created(u: &UserRecord, generated: Option<String>) -> Response {
    let mut body = account_json(u);
    if let Some(p) = generated {
        body["password"] = json!(p);
    }
    crate::no_store_json(StatusCode::CREATED, body)
}

async fn add(
    State(st): State<AppState>,
    Path(ods): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    answer(
        async {
            let ctx = context(&st, &ods, &parts.headers, &parts.extensions).await?;
            let a: AddUser = read_json(
                body,
                "an account is JSON with username, name, roles and optionally password and practitioner",
            )
            .await?;
            let generated = a.password.is_none().then(generate_password);
            let password = a.password.or(generated.clone()).unwrap_or_default();
            let user = st
                .store
                .add_user(
                    &ctx,
                    NewUser {
                        username: a.username,
                        name: a.name,
                        password,
                        roles: a.roles,
                        practitioner: a.practitioner,
                    },
                )
                .await?;
            Ok(created(&user, generated))
        }
        .await,
    )
}

/// Disables or enables an account (gp-store `set_enabled`).
pub async fn set_enabled(
    st: &AppState,
    ctx: &Ctx,
    username: &str,
    enabled: bool,
) -> Result<UserRecord, gp_store::StoreError> {
    let user = st.store.set_enabled(ctx, username, enabled).await?;
    st.sessions.forget_user(&user.id);
    Ok(user)
}

/// Gives a staff account exactly `roles` (gp-store `set_roles`).
pub async fn set_roles(
    st: &AppState,
    ctx: &Ctx,
    username: &str,
    roles: Vec<String>,
) -> Result<UserRecord, gp_store::StoreError> {
    let user = st.store.set_roles(ctx, username, roles).await?;
    st.sessions.forget_user(&user.id);
    Ok(user)
}

async fn enabled_to(
    st: AppState,
    ods: String,
    username: String,
    request: axum::extract::Request,
    enabled: bool,
) -> Response {
    let (parts, _) = request.into_parts();
    answer(
        async {
            let ctx = context(&st, &ods, &parts.headers, &parts.extensions).await?;
            let user = set_enabled(&st, &ctx, &username, enabled).await?;
            Ok(axum::Json(account_json(&user)).into_response())
        }
        .await,
    )
}

async fn disable(
    State(st): State<AppState>,
    Path((ods, username)): Path<(String, String)>,
    request: axum::extract::Request,
) -> Response {
    enabled_to(st, ods, username, request, false).await
}

async fn enable(
    State(st): State<AppState>,
    Path((ods, username)): Path<(String, String)>,
    request: axum::extract::Request,
) -> Response {
    enabled_to(st, ods, username, request, true).await
}

#[derive(serde::Deserialize)]
struct Roles {
    roles: Vec<String>,
}

async fn roles(
    State(st): State<AppState>,
    Path((ods, username)): Path<(String, String)>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    answer(
        async {
            let ctx = context(&st, &ods, &parts.headers, &parts.extensions).await?;
            let r: Roles = read_json(body, "expected {\"roles\": [\"R8000\", ...]}").await?;
            let user = set_roles(&st, &ctx, &username, r.roles).await?;
            Ok(axum::Json(account_json(&user)).into_response())
        }
        .await,
    )
}

#[derive(serde::Deserialize)]
struct AddPatientAccount {
    patient: String,
    password: Option<String>,
}

async fn add_patient_account(
    State(st): State<AppState>,
    Path(ods): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    answer(
        async {
            let ctx = context(&st, &ods, &parts.headers, &parts.extensions).await?;
            let a: AddPatientAccount = read_json(
                body,
                "expected {\"patient\": id} and optionally \"password\"",
            )
            .await?;
            let generated = a.password.is_none().then(generate_password);
            let password = a.password.or(generated.clone()).unwrap_or_default();
            let user = st
                .store
                .add_patient_account_for(&ctx, &a.patient, &password)
                .await?;
            Ok(created(&user, generated))
        }
        .await,
    )
}

/// `GET /auth/act-for`: whom the signed-in patient account may act for
/// (its own patient, and those it is a proxy for), for a "switch profile"
/// choice.
pub(crate) async fn act_for_targets(State(st): State<AppState>, headers: HeaderMap) -> Response {
    answer(
        async {
            let token = crate::auth::bearer(&headers).ok_or_else(|| {
                ApiError::from(gp_store::StoreError::Unauthorized("sign in first".into()))
            })?;
            let ctx = crate::auth::resolve_token(&st, token).await?;
            let targets = st.store.act_for_targets(&ctx).await?;
            let acting = ctx.online.as_ref().map(|o| o.patient.clone());
            let list: Vec<Value> = targets
                .iter()
                .map(|t| {
                    json!({
                        "patient": t.patient,
                        "name": t.name,
                        "relationship": t.relationship,
                        "current": acting.as_deref() == Some(t.patient.as_str()),
                    })
                })
                .collect();
            Ok(axum::Json(json!({ "actFor": list })).into_response())
        }
        .await,
    )
}
