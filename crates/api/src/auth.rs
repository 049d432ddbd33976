//! Signing in and out, and resolving a request's bearer token to its access
//! context.
//!
//! `POST /auth/login` takes `{"practice", "username", "password", "role"?}`
//! (JSON or a form) and answers an opaque bearer token for that practice's
//! FHIR base. The token endpoint is separate from the FHIR API so that the
//! SMART on FHIR authorization server (authorization code with PKCE) can
//! issue the same kind of session next to it. Resolved sessions are cached
//! in memory for [`CACHE_MILLIS`], so a read pays a hash-map lookup, not a
//! database query; signing out here drops them at once, and another server
//! of the deployment notices within the cache time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gp_fhir::Instant;
use gp_store::audit::{Event, Kind};
use gp_store::{Ctx, Practice, StoreError};
use http_body_util::BodyExt;
use serde_json::json;

use crate::AppState;
use crate::error::ApiError;

/// How long a resolved session is trusted without asking the store again.
pub const CACHE_MILLIS: i64 = 30_000;
/// Sessions cached at most; past it, stale ones are dropped.
const CACHE_MAX: usize = 50_000;
/// The largest sign-in body read.
const MAX_LOGIN_BODY: usize = 16 * 1024;

/// Resolved sessions by token.
#[derive(Clone, Default)]
pub struct SessionCache {
    entries: Arc<RwLock<HashMap<String, (Ctx, i64)>>>,
}

impl SessionCache {
    fn get(&self, token: &str, now: i64) -> Option<Ctx> {
        let map = self.entries.read().ok()?;
        let (ctx, at) = map.get(token)?;
        let fresh = now - at < CACHE_MILLIS && ctx.expires().is_some_and(|e| e.millis() > now);
        fresh.then(|| ctx.clone())
    }

    /// Keeps a resolved context, but never a proxy's (gp-store online.rs):
    /// its access is checked at every request, so that revoking it
    /// (deactivating the RelatedPerson) takes effect at once.
    fn put(&self, token: &str, ctx: &Ctx, now: i64) {
        if ctx.online.as_ref().is_some_and(|o| o.proxy.is_some()) {
            return;
        }
        if let Ok(mut map) = self.entries.write() {
            if map.len() >= CACHE_MAX {
                map.retain(|_, (_, at)| now - *at < CACHE_MILLIS);
            }
            map.insert(token.to_owned(), (ctx.clone(), now));
        }
    }

    /// Forgets every cached token of an app's grant.
    pub(crate) fn forget_grant(&self, grant_id: &str) {
        if let Ok(mut map) = self.entries.write() {
            map.retain(|_, (c, _)| c.grant.as_ref().is_none_or(|g| g.grant_id != grant_id));
        }
    }

    /// Forgets every cached context of an app's tokens (it was disabled).
    pub(crate) fn forget_client(&self, client_id: &str) {
        if let Ok(mut map) = self.entries.write() {
            map.retain(|_, (c, _)| c.grant.as_ref().is_none_or(|g| g.client_id != client_id));
        }
    }

    /// Forgets every cached session of a user (an account disabled or its
    /// roles changed: admin.rs).
    pub(crate) fn forget_user(&self, user_id: &str) {
        self.forget("", user_id, true);
    }

    /// Forgets the token, or every cached session of its user.
    fn forget(&self, token: &str, user_id: &str, everywhere: bool) {
        if let Ok(mut map) = self.entries.write() {
            if everywhere {
                map.retain(|_, (c, _)| c.access.user.as_ref().is_none_or(|u| u.user_id != user_id));
            } else {
                map.remove(token);
            }
        }
    }
}

/// The bearer token of a request, if it carries one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The network address a request came from, for the audit trail: the
/// peer of the connection (a deployment behind a proxy sees the proxy's).
pub fn client_address(extensions: &axum::http::Extensions) -> Option<String> {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

/// The access context of a request to `practice` from `address`: 401
/// without a valid session, 403 with another practice's. Every refusal is
/// recorded in the audit trail.
pub(crate) async fn authenticate(
    st: &AppState,
    practice: &Practice,
    headers: &HeaderMap,
    address: Option<String>,
) -> Result<Ctx, ApiError> {
    let now = Instant::now().millis();
    if let Some(token) = bearer(headers)
        && let Some(ctx) = st.sessions.get(token, now)
        && ctx.practice.key == practice.key
    {
        return Ok(ctx.from_address(address));
    }
    // Not a session known here: a flood of these is throttled before it
    // reaches the store or the audit trail.
    st.limits.admit(address.as_deref())?;
    let Some(token) = bearer(headers) else {
        let e = StoreError::Unauthorized(
            "sign in first: this API needs 'Authorization: Bearer TOKEN' (POST /auth/login)".into(),
        );
        st.limits.refused(address.as_deref());
        let nobody = Ctx::anonymous(practice.clone()).from_address(address);
        st.store
            .audit(&nobody, Event::new(Kind::Session).failed(&e));
        return Err(ApiError::from(e));
    };
    match st
        .store
        .resolve_from(practice, token, address.clone())
        .await
    {
        Ok(ctx) => {
            st.sessions.put(token, &ctx, now);
            Ok(ctx)
        }
        Err(e) => {
            if matches!(e, StoreError::Unauthorized(_)) {
                st.limits.refused(address.as_deref());
            }
            Err(e.into())
        }
    }
}

/// The access context a session token stands for, whichever practice it
/// was issued at (the token names it): for clients that keep the token
/// elsewhere than in a bearer header, such as the web app's cookie.
pub async fn resolve_token(st: &AppState, token: &str) -> Result<Ctx, ApiError> {
    let expired = || ApiError::from(StoreError::Unauthorized("sign in again".into()));
    let ods = gp_store::accounts::token_practice(token).ok_or_else(expired)?;
    let practice = st.practice(ods).await.map_err(|_| expired())?;
    let now = Instant::now().millis();
    if let Some(ctx) = st.sessions.get(token, now)
        && ctx.practice.key == practice.key
    {
        return Ok(ctx);
    }
    let ctx = st.store.resolve(&practice, token).await?;
    st.sessions.put(token, &ctx, now);
    Ok(ctx)
}

/// Ends a session (or every session of its user) and forgets it here.
pub async fn end_session(
    st: &AppState,
    ctx: &Ctx,
    token: &str,
    everywhere: bool,
) -> Result<(), ApiError> {
    st.store.sign_out(ctx, token, everywhere).await?;
    if let Some(u) = &ctx.access.user {
        st.sessions.forget(token, &u.user_id, everywhere);
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct Login {
    practice: String,
    username: String,
    password: String,
    role: Option<String>,
}

async fn read_login(headers: &HeaderMap, body: Body) -> Result<Login, ApiError> {
    let bytes = http_body_util::Limited::new(body, MAX_LOGIN_BODY)
        .collect()
        .await
        .map_err(|_| ApiError::bad_request("the sign-in body could not be read or is too long"))?
        .to_bytes();
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let parsed = if form {
        serde_urlencoded::from_bytes(&bytes).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| {
        ApiError::bad_request(format!(
            "a sign-in needs practice, username and password (and optionally role): {e}"
        ))
    })
}

/// `POST /auth/login`.
pub(crate) async fn login(State(st): State<AppState>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let (headers, address) = (parts.headers, client_address(&parts.extensions));
    let out = async {
        st.limits.sign_in(address.as_deref())?;
        let login = read_login(&headers, body).await?;
        let practice = st.practice(&login.practice).await.map_err(|_| {
            ApiError::from(StoreError::Unauthorized("the sign-in is refused".into()))
        })?;
        let session = st
            .store
            .sign_in_from(
                &practice,
                &login.username,
                &login.password,
                login.role.as_deref(),
                address,
            )
            .await?;
        let expires_in = (session.user.expires.millis() - Instant::now().millis()) / 1000;
        let body = json!({
            "access_token": session.token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "practice": practice.ods.as_str(),
            "username": session.user.username,
            "role": session.user.role,
            "practitioner": session.user.practitioner,
        });
        Ok::<_, ApiError>(crate::no_store_json(StatusCode::OK, body))
    }
    .await;
    out.unwrap_or_else(IntoResponse::into_response)
}

async fn logout_with(st: AppState, headers: HeaderMap, everywhere: bool) -> Response {
    let out = async {
        let token = bearer(&headers).ok_or_else(|| {
            ApiError::from(StoreError::Unauthorized(
                "there is no session to end".into(),
            ))
        })?;
        let ods = gp_store::accounts::token_practice(token).unwrap_or_default();
        let practice = st.practice(ods).await.map_err(|_| {
            ApiError::from(StoreError::Unauthorized("the session is not valid".into()))
        })?;
        let ctx = st.store.resolve(&practice, token).await?;
        end_session(&st, &ctx, token, everywhere).await?;
        Ok::<_, ApiError>(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    out.unwrap_or_else(IntoResponse::into_response)
}

#[derive(serde::Deserialize)]
struct ActFor {
    patient: String,
}

/// `POST /auth/act-for` `{"patient": id}`: a patient account's session
/// switches to acting for its own patient or one it is a proxy for
/// (gp-store online.rs), answered as a sign-in with the new token; the old
/// one stops working.
pub(crate) async fn act_for(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let out = async {
        let token = bearer(&headers)
            .ok_or_else(|| ApiError::from(StoreError::Unauthorized("sign in first".into())))?;
        let ctx = resolve_token(&st, token).await?;
        let bytes = http_body_util::Limited::new(body, MAX_LOGIN_BODY)
            .collect()
            .await
            .map_err(|_| ApiError::bad_request("the body could not be read or is too long"))?
            .to_bytes();
        let ask: ActFor = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("expected {{\"patient\": id}}: {e}")))?;
        if ctx.online.is_none() {
            return Err(ApiError::from(StoreError::Forbidden(
                "only a patient account acts for a patient".into(),
            )));
        }
        let role = format!("{}{}", gp_store::online::ROLE_PREFIX, ask.patient);
        let session = st.store.change_role(&ctx, token, &role).await?;
        if let Some(u) = &ctx.access.user {
            st.sessions.forget(token, &u.user_id, false);
        }
        let expires_in = (session.user.expires.millis() - Instant::now().millis()) / 1000;
        let body = json!({
            "access_token": session.token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "practice": ctx.practice.ods.as_str(),
            "username": session.user.username,
            "role": session.user.role,
            "patient": ask.patient,
        });
        Ok::<_, ApiError>(crate::no_store_json(StatusCode::OK, body))
    }
    .await;
    out.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /auth/logout`: ends this session.
pub(crate) async fn logout(State(st): State<AppState>, headers: HeaderMap) -> Response {
    logout_with(st, headers, false).await
}

/// `POST /auth/logout-everywhere`: ends every session of the user.
pub(crate) async fn logout_everywhere(State(st): State<AppState>, headers: HeaderMap) -> Response {
    logout_with(st, headers, true).await
}
