//! Signing in (to a practice, as a user, in one of the user's roles) and out.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use gp_api::AppState;
use gp_store::Actor;
use maud::html;
use serde::Deserialize;

use crate::session::{COOKIE, Web, cookie, set_cookie};
use crate::ui::{self, Page, WebError, error_summary, ok, page, role_name};

#[derive(Deserialize, Default)]
pub struct Next {
    next: Option<String>,
}

/// Where to go after signing in: only our own pages.
pub(crate) fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/app") && !n.starts_with("//") && !n.contains("://") => n,
        _ => "/app",
    }
}

/// `GET /app/login`.
pub async fn form(State(st): State<AppState>, Query(q): Query<Next>) -> Page {
    login_page(&st, "", "", q.next.as_deref(), &[]).await
}

async fn login_page(
    st: &AppState,
    practice: &str,
    username: &str,
    next: Option<&str>,
    errors: &[(&str, String)],
) -> Page {
    let practices = st
        .store
        .practices(&Actor::system())
        .await
        .map_err(|e| WebError::store(e, false))?;
    let body = html! {
        div class="nhsuk-grid-row" {
            div class="nhsuk-grid-column-two-thirds" {
                (error_summary(errors))
                h1 { "Sign in to OpenGP" }
                form method="post" action="/app/login" novalidate {
                    input type="hidden" name="next" value=(safe_next(next));
                    @if practices.len() == 1 {
                        input type="hidden" name="practice" value=(practices[0].ods.as_str());
                        p class="nhsuk-body-l" { (practices[0].name) " (" (practices[0].ods.as_str()) ")" }
                    } @else {
                        div class="nhsuk-form-group" {
                            label class="nhsuk-label" for="practice" { "Practice" }
                            select class="nhsuk-select" id="practice" name="practice" {
                                @for p in &practices {
                                    option value=(p.ods.as_str()) selected[p.ods.as_str() == practice] {
                                        (p.name) " (" (p.ods.as_str()) ")"
                                    }
                                }
                            }
                        }
                    }
                    div class={ "nhsuk-form-group" @if ui::field_error(errors, "username").is_some() { " nhsuk-form-group--error" } } {
                        label class="nhsuk-label" for="username" { "User name" }
                        @if let Some(e) = ui::field_error(errors, "username") {
                            span class="nhsuk-error-message" id="username-error" { span class="nhsuk-u-visually-hidden" { "Error: " } (e) }
                        }
                        input class="nhsuk-input nhsuk-u-width-two-thirds" id="username" name="username" type="text"
                            value=(username) autocomplete="username" autofocus spellcheck="false";
                    }
                    div class="nhsuk-form-group" {
                        label class="nhsuk-label" for="password" { "Password" }
                        input class="nhsuk-input nhsuk-u-width-two-thirds" id="password" name="password"
                            type="password" autocomplete="current-password";
                    }
                    button class="nhsuk-button" type="submit" { "Sign in" }
                }
                @if let Some(provider) = &st.oidc {
                    form method="get" action="/app/login/oidc" {
                        input type="hidden" name="next" value=(safe_next(next));
                        @if practices.len() == 1 {
                            input type="hidden" name="practice" value=(practices[0].ods.as_str());
                        } @else {
                            div class="nhsuk-form-group" {
                                label class="nhsuk-label" for="oidc-practice" { "Practice" }
                                select class="nhsuk-select" id="oidc-practice" name="practice" {
                                    @for p in &practices {
                                        option value=(p.ods.as_str()) selected[p.ods.as_str() == practice] {
                                            (p.name) " (" (p.ods.as_str()) ")"
                                        }
                                    }
                                }
                            }
                        }
                        button class="nhsuk-button nhsuk-button--secondary" type="submit" {
                            "Sign in with " (provider.name())
                        }
                    }
                }
            }
        }
    };
    let mut res = ok(page("Sign in", None, &[], body))?;
    if let Some(provider) = &st.oidc {
        // The provider's form comes back here by a redirect, which
        // browsers check against `form-action` too.
        let csp = crate::csp(&provider.authorization_origin());
        if let Ok(v) = HeaderValue::from_str(&csp) {
            res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
        }
    }
    Ok(res)
}

/// Where a browser goes with its new session: the role choice when the
/// user may sign in in several roles, else `next`.
pub(crate) fn after_sign_in(
    st: &AppState,
    session: &gp_store::accounts::Session,
    next: &str,
) -> axum::response::Response {
    let to = if session.roles.len() > 1 {
        format!("/app/role?next={}", ui::encode(next))
    } else {
        next.to_owned()
    };
    (
        [(header::SET_COOKIE, set_cookie(st, Some(&session.token)))],
        Redirect::to(&to),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    practice: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

/// `POST /app/login`.
pub async fn submit(
    State(st): State<AppState>,
    extensions: axum::http::Extensions,
    Form(f): Form<LoginForm>,
) -> Page {
    let mut errors = Vec::new();
    if f.username.trim().is_empty() {
        errors.push(("username", "Enter your user name".to_owned()));
    }
    if f.password.is_empty() {
        errors.push(("password", "Enter your password".to_owned()));
    }
    if !errors.is_empty() {
        return login_page(&st, &f.practice, &f.username, f.next.as_deref(), &errors).await;
    }
    let address = gp_api::auth::client_address(&extensions);
    if let Err(e) = st.limits.sign_in(address.as_deref()) {
        let wait = e.retry_after.unwrap_or(60);
        let errors = [(
            "username",
            format!(
                "There have been too many attempts to sign in from this network. \
                 Try again in {wait} seconds"
            ),
        )];
        let mut res = login_page(&st, &f.practice, &f.username, f.next.as_deref(), &errors).await?;
        *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return Ok(res);
    }
    let refused = || {
        vec![(
            "username",
            "The user name or password is not right, or the account is locked for a while \
             after repeated failures"
                .to_owned(),
        )]
    };
    let Ok(practice) = st.practice(&f.practice).await else {
        return login_page(&st, &f.practice, &f.username, f.next.as_deref(), &refused()).await;
    };
    let session = match st
        .store
        .sign_in_from(&practice, f.username.trim(), &f.password, None, address)
        .await
    {
        Ok(s) => s,
        Err(gp_store::StoreError::Unauthorized(_) | gp_store::StoreError::Forbidden(_)) => {
            return login_page(&st, &f.practice, &f.username, f.next.as_deref(), &refused()).await;
        }
        Err(e) => return Err(WebError::store(e, false)),
    };
    Ok(after_sign_in(&st, &session, safe_next(f.next.as_deref())))
}

/// `GET /app/role`: the roles the user holds, to choose one.
pub async fn roles(web: Web, Query(q): Query<Next>) -> Page {
    let held = web
        .state
        .store
        .held_roles(&web.ctx, &web.token)
        .await
        .map_err(|e| WebError::store(e, web.htmx))?;
    let current = web
        .ctx
        .access
        .user
        .as_ref()
        .map(|m| m.role.clone())
        .unwrap_or_default();
    let body = html! {
        div class="nhsuk-grid-row" {
            div class="nhsuk-grid-column-two-thirds" {
                form method="post" action="/app/role" {
                    input type="hidden" name="_csrf" value=(web.csrf());
                    input type="hidden" name="next" value=(safe_next(q.next.as_deref()));
                    fieldset class="nhsuk-fieldset" {
                        legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--l" {
                            h1 class="nhsuk-fieldset__heading" { "Choose your role" }
                        }
                        div class="nhsuk-radios" {
                            @for (i, r) in held.iter().enumerate() {
                                div class="nhsuk-radios__item" {
                                    input class="nhsuk-radios__input" id={ "role-" (i) } name="role"
                                        type="radio" value=(r) checked[*r == current];
                                    label class="nhsuk-label nhsuk-radios__label" for={ "role-" (i) } { (role_name(r)) }
                                }
                            }
                        }
                    }
                    button class="nhsuk-button" type="submit" { "Continue" }
                }
            }
        }
    };
    ok(page("Choose your role", Some(&web), &[], body))
}

#[derive(Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    role: String,
    next: Option<String>,
}

/// `POST /app/role`.
pub async fn choose(web: Web, Form(f): Form<RoleForm>) -> Page {
    web.check_csrf(&f._csrf)?;
    let current = web.ctx.access.user.as_ref().map(|u| u.role.clone());
    let next = safe_next(f.next.as_deref()).to_owned();
    if current.as_deref() == Some(f.role.as_str()) {
        return Ok(Redirect::to(&next).into_response());
    }
    let session = web
        .state
        .store
        .change_role(&web.ctx, &web.token, &f.role)
        .await
        .map_err(|e| WebError::store(e, web.htmx))?;
    Ok((
        [(
            header::SET_COOKIE,
            set_cookie(&web.state, Some(&session.token)),
        )],
        Redirect::to(&next),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    _csrf: String,
}

/// `POST /app/logout`: ends the session and clears the cookie.
pub async fn logout(
    State(st): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<LogoutForm>,
) -> Page {
    if let Some(token) = cookie(&headers, COOKIE)
        && f._csrf == crate::session::csrf_of(token)
        && let Ok(ctx) = gp_api::auth::resolve_token(&st, token).await
    {
        gp_api::auth::end_session(&st, &ctx, token, false)
            .await
            .map_err(|_| WebError::Internal("signing out failed".into()))?;
    }
    Ok((
        [(header::SET_COOKIE, set_cookie(&st, None))],
        Redirect::to("/app/login"),
    )
        .into_response())
}
