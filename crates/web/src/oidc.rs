//! Signing in through the deployment's OpenID Connect provider
//! ([`gp_api::oidc`]): `GET /app/login/oidc` sends the browser to the
//! provider, `GET /app/login/oidc/callback` takes it back and opens the
//! same kind of session as a password sign-in.
//!
//! The `state` rides in a short-lived cookie as well as in the URL, so
//! that an answer is taken only in the browser that started the sign-in.
//! The cookie is `SameSite=Lax`: the provider's redirect back is a
//! cross-site top-level navigation, which a `Strict` cookie would miss.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use gp_api::AppState;
use gp_api::oidc::{Callback, OidcError};
use maud::html;
use serde::Deserialize;

use crate::login::{after_sign_in, safe_next};
use crate::session::{cookie, secure};
use crate::ui::{Page, page};

const STATE_COOKIE: &str = "opengp_oidc";
const CALLBACK: &str = "/app/login/oidc/callback";

/// A page saying why the sign-in did not happen.
fn refused(status: StatusCode, message: &str) -> Response {
    let title = "You could not be signed in";
    let body = html! {
        h1 { (title) }
        p { (message) }
        p { a href="/app/login" { "Back to sign in" } }
    };
    (status, Html(page(title, None, &[], body).into_string())).into_response()
}

fn state_cookie(st: &AppState, value: Option<&str>) -> HeaderValue {
    let v = match value {
        Some(s) => {
            format!("{STATE_COOKIE}={s}; Path=/app/login/oidc; HttpOnly; SameSite=Lax; Max-Age=600")
        }
        None => format!("{STATE_COOKIE}=; Path=/app/login/oidc; HttpOnly; SameSite=Lax; Max-Age=0"),
    };
    let v = if secure(st) {
        format!("{v}; Secure")
    } else {
        v
    };
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[derive(Deserialize, Default)]
pub struct Start {
    #[serde(default)]
    practice: String,
    next: Option<String>,
}

/// `GET /app/login/oidc?practice=A81001&next=/app/...`.
pub async fn start(
    State(st): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    Query(q): Query<Start>,
) -> Response {
    let Some(oidc) = st.oidc.clone() else {
        return refused(
            StatusCode::NOT_FOUND,
            "This server is not set up to sign in through an identity provider.",
        );
    };
    let address = gp_api::auth::client_address(&extensions);
    if let Err(e) = st.limits.sign_in(address.as_deref()) {
        let wait = e.retry_after.unwrap_or(60);
        let mut res = refused(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "There have been too many attempts to sign in from this network. \
                 Try again in {wait} seconds."
            ),
        );
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return res;
    }
    let Ok(practice) = st.practice(&q.practice).await else {
        return refused(
            StatusCode::NOT_FOUND,
            "This server has no such practice; choose one on the sign-in page.",
        );
    };
    let redirect_uri = format!("{}{CALLBACK}", gp_api::root_url(&st.config, &uri, &headers));
    match oidc.begin(
        practice.ods.as_str(),
        safe_next(q.next.as_deref()),
        &redirect_uri,
    ) {
        Ok(s) => (
            [(header::SET_COOKIE, state_cookie(&st, Some(&s.state)))],
            Redirect::to(&s.url),
        )
            .into_response(),
        Err(e) => refused(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// `GET /app/login/oidc/callback?code=…&state=…` (or `?error=…`).
pub async fn callback(
    State(st): State<AppState>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    Query(answer): Query<Callback>,
) -> Page {
    let Some(oidc) = st.oidc.clone() else {
        return Ok(refused(
            StatusCode::NOT_FOUND,
            "This server is not set up to sign in through an identity provider.",
        ));
    };
    let clear = [(header::SET_COOKIE, state_cookie(&st, None))];
    let identity = match oidc.finish(cookie(&headers, STATE_COOKIE), &answer).await {
        Ok(i) => i,
        Err(OidcError::Refused(m)) => {
            return Ok((clear, refused(StatusCode::FORBIDDEN, &m)).into_response());
        }
        Err(OidcError::Unavailable(m)) => {
            return Ok((clear, refused(StatusCode::BAD_GATEWAY, &m)).into_response());
        }
    };
    let address = gp_api::auth::client_address(&extensions);
    let practice = st
        .practice(&identity.practice)
        .await
        .map_err(|_| crate::WebError::NotFound("the practice is not served here".into()))?;
    let session = match st
        .store
        .sign_in_external(
            &practice,
            &identity.username,
            oidc.issuer(),
            identity.roles.as_deref(),
            address,
        )
        .await
    {
        Ok(s) => s,
        Err(gp_store::StoreError::Unauthorized(m) | gp_store::StoreError::Forbidden(m)) => {
            let m = format!(
                "{} signed you in as '{}', but OpenGP cannot: {m}.",
                oidc.name(),
                identity.username
            );
            return Ok((clear, refused(StatusCode::FORBIDDEN, &m)).into_response());
        }
        Err(e) => return Err(crate::WebError::store(e, false)),
    };
    let mut res = after_sign_in(&st, &session, &identity.next);
    res.headers_mut()
        .append(header::SET_COOKIE, state_cookie(&st, None));
    Ok(res)
}
