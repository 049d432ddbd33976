//! Account administration for a user administrator (the administer-users
//! activity): the practice's accounts, disabling and enabling one, changing
//! a user's role profiles (`/app/admin/users`), creating a staff account
//! (`/app/admin/users/new`, its generated password shown once), and creating a patient's
//! online account from their record (`/app/patients/{id}/online-account`).
//! Every change goes through gp-api's admin.rs (the store call, audited,
//! and this server's session cache dropped for the user).

use axum::Form;
use axum::extract::Path;
use axum::response::{IntoResponse, Redirect};
use gp_store::access::Activity;
use gp_store::accounts::UserRecord;
use maud::{Markup, html};
use serde::Deserialize;

use crate::session::Web;
use crate::ui::{Page, WebError, error_summary, ok, page, role_name};

fn store_err(web: &Web) -> impl Fn(gp_store::StoreError) -> WebError + '_ {
    |e| WebError::store(e, web.htmx)
}

/// Only a user administrator gets these pages.
fn require_admin(web: &Web) -> Result<(), WebError> {
    if web.ctx.allows(Activity::AdministerUsers) {
        Ok(())
    } else {
        Err(WebError::Forbidden(
            "managing accounts needs a role with the administer-users activity".into(),
        ))
    }
}

fn status(u: &UserRecord) -> &'static str {
    if u.disabled {
        "Disabled"
    } else if u.locked_until.is_some_and(|t| t > gp_fhir::Instant::now()) {
        "Locked for a while"
    } else {
        "Active"
    }
}

fn roles_text(u: &UserRecord) -> String {
    match u
        .roles
        .iter()
        .find_map(|r| gp_store::online::role_patient(r))
    {
        Some(_) => "Patient (online account)".into(),
        None => u
            .roles
            .iter()
            .map(|r| role_name(r))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// `GET /app/admin/users`.
pub async fn list(web: Web) -> Page {
    require_admin(&web)?;
    let users = web
        .state
        .store
        .users(&web.ctx)
        .await
        .map_err(store_err(&web))?;
    let me = web.ctx.access.user.as_ref().map(|u| u.user_id.clone());
    let body = html! {
        h1 { "User accounts" }
        p { "Disabling an account ends its sessions at once; it cannot sign in until it is enabled again. Every change is recorded in the audit trail." }
        a class="nhsuk-button nhsuk-button--secondary" href="/app/admin/users/new" { "Add a staff account" }
        table class="nhsuk-table" {
            caption class="nhsuk-table__caption nhsuk-u-visually-hidden" { "The practice's accounts" }
            thead class="nhsuk-table__head" {
                tr class="nhsuk-table__row" {
                    th class="nhsuk-table__header" scope="col" { "Name" }
                    th class="nhsuk-table__header" scope="col" { "User name" }
                    th class="nhsuk-table__header" scope="col" { "Role profiles" }
                    th class="nhsuk-table__header" scope="col" { "Status" }
                    th class="nhsuk-table__header" scope="col" { "Actions" }
                }
            }
            tbody class="nhsuk-table__body" {
                @for u in &users {
                    tr class="nhsuk-table__row" {
                        td class="nhsuk-table__cell" { (u.name) }
                        td class="nhsuk-table__cell" { (u.username) }
                        td class="nhsuk-table__cell" data-roles=(u.username) { (roles_text(u)) }
                        td class="nhsuk-table__cell" data-status=(u.username) { (status(u)) }
                        td class="nhsuk-table__cell" {
                            @let patient = u.roles.iter().any(|r| gp_store::online::role_patient(r).is_some());
                            @if !patient {
                                a href={ "/app/admin/users/" (crate::ui::encode(&u.username)) } {
                                    "Change role profiles" span class="nhsuk-u-visually-hidden" { " of " (u.name) }
                                }
                            }
                            @if me.as_deref() != Some(u.id.as_str()) {
                                form method="post" action={ "/app/admin/users/" (crate::ui::encode(&u.username)) "/status" } {
                                    input type="hidden" name="_csrf" value=(web.csrf());
                                    input type="hidden" name="enabled" value=(if u.disabled { "true" } else { "false" });
                                    button class={ "nhsuk-button nhsuk-button--small nhsuk-u-margin-bottom-0 " (if u.disabled { "nhsuk-button--secondary" } else { "nhsuk-button--warning" }) } type="submit" {
                                        (if u.disabled { "Enable" } else { "Disable" })
                                        span class="nhsuk-u-visually-hidden" { " " (u.name) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    ok(page("User accounts", Some(&web), &[("Home", "/app")], body))
}

#[derive(Deserialize)]
pub struct StatusForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    enabled: String,
}

/// `POST /app/admin/users/{username}/status`: disables or enables.
pub async fn set_status(web: Web, Path(username): Path<String>, Form(f): Form<StatusForm>) -> Page {
    web.check_csrf(&f._csrf)?;
    require_admin(&web)?;
    gp_api::admin::set_enabled(&web.state, &web.ctx, &username, f.enabled == "true")
        .await
        .map_err(store_err(&web))?;
    Ok(Redirect::to("/app/admin/users").into_response())
}

async fn account(web: &Web, username: &str) -> Result<UserRecord, WebError> {
    let users = web
        .state
        .store
        .users(&web.ctx)
        .await
        .map_err(store_err(web))?;
    users
        .into_iter()
        .find(|u| u.username == username)
        .ok_or_else(|| WebError::NotFound(format!("the practice has no account '{username}'")))
}

/// The role profiles of the practice's policy (and any others `held`),
/// as checkboxes named `role`, those `chosen` ticked.
async fn roles_fieldset(
    web: &Web,
    held: &[String],
    chosen: &[String],
    errors: &[(&str, String)],
) -> Result<Markup, WebError> {
    let policy = web
        .state
        .store
        .policy(&web.ctx)
        .await
        .map_err(store_err(web))?;
    let mut offered: Vec<String> = policy.roles().map(|(r, _)| r.to_owned()).collect();
    for r in held {
        if !offered.contains(r) {
            offered.push(r.clone());
        }
    }
    let err = crate::ui::field_error(errors, "roles");
    Ok(html! {
        div class={ "nhsuk-form-group" @if err.is_some() { " nhsuk-form-group--error" } } {
            fieldset class="nhsuk-fieldset" aria-describedby=[err.map(|_| "roles-error")] {
                legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--m" { "Role profiles held at this practice" }
                @if let Some(e) = err {
                    span class="nhsuk-error-message" id="roles-error" {
                        span class="nhsuk-u-visually-hidden" { "Error: " } (e)
                    }
                }
                div class="nhsuk-checkboxes" {
                    @for (i, r) in offered.iter().enumerate() {
                        div class="nhsuk-checkboxes__item" {
                            @let id = if i == 0 { "roles".to_owned() } else { format!("role-{r}") };
                            input class="nhsuk-checkboxes__input" id=(id) name="role" type="checkbox" value=(r) checked[chosen.contains(r)];
                            label class="nhsuk-label nhsuk-checkboxes__label" for=(id) { (role_name(r)) }
                        }
                    }
                }
            }
        }
    })
}

async fn roles_page(
    web: &Web,
    user: &UserRecord,
    chosen: &[String],
    errors: &[(&str, String)],
) -> Page {
    let roles = roles_fieldset(web, &user.roles, chosen, errors).await?;
    let body = html! {
        (error_summary(errors))
        h1 { "Role profiles of " (user.name) }
        p { "Taking a role profile away ends the sessions signed in with it." }
        form method="post" action={ "/app/admin/users/" (crate::ui::encode(&user.username)) } novalidate {
            input type="hidden" name="_csrf" value=(web.csrf());
            (roles)
            button class="nhsuk-button" type="submit" { "Save role profiles" }
        }
    };
    ok(page(
        "Role profiles",
        Some(web),
        &[("Home", "/app"), ("User accounts", "/app/admin/users")],
        body,
    ))
}

/// `GET /app/admin/users/{username}`: the user's role profiles.
pub async fn roles_form(web: Web, Path(username): Path<String>) -> Page {
    require_admin(&web)?;
    let user = account(&web, &username).await?;
    let chosen = user.roles.clone();
    roles_page(&web, &user, &chosen, &[]).await
}

/// `POST /app/admin/users/{username}`: saves the ticked role profiles
/// (`role`, repeated).
pub async fn save_roles(
    web: Web,
    Path(username): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Page {
    let values = |k: &str| -> Vec<String> {
        fields
            .iter()
            .filter(|(f, _)| f == k)
            .map(|(_, v)| v.clone())
            .collect()
    };
    web.check_csrf(&values("_csrf").concat())?;
    require_admin(&web)?;
    let roles = values("role");
    if roles.is_empty() {
        let user = account(&web, &username).await?;
        let errors = [("roles", "Select at least one role profile".to_owned())];
        return roles_page(&web, &user, &[], &errors).await;
    }
    gp_api::admin::set_roles(&web.state, &web.ctx, &username, roles)
        .await
        .map_err(store_err(&web))?;
    Ok(Redirect::to("/app/admin/users").into_response())
}

/// A new staff account's fields, as typed.
#[derive(Default)]
struct NewAccount {
    username: String,
    name: String,
    roles: Vec<String>,
}

async fn new_page(web: &Web, f: &NewAccount, errors: &[(&str, String)]) -> Page {
    let roles = roles_fieldset(web, &[], &f.roles, errors).await?;
    let body = html! {
        (error_summary(errors))
        h1 { "Add a staff account" }
        p { "A password is made for the account and shown once, to give to its holder. Creating the account is recorded in the audit trail." }
        form method="post" action="/app/admin/users/new" novalidate {
            input type="hidden" name="_csrf" value=(web.csrf());
            (crate::ui::text_input("username", "User name", &f.username, errors, "nhsuk-input--width-20", "off"))
            (crate::ui::text_input("name", "Full name", &f.name, errors, "nhsuk-input--width-30", "off"))
            (roles)
            button class="nhsuk-button" type="submit" { "Create the account" }
        }
    };
    ok(page(
        "Add a staff account",
        Some(web),
        &[("Home", "/app"), ("User accounts", "/app/admin/users")],
        body,
    ))
}

/// `GET /app/admin/users/new`.
pub async fn new_form(web: Web) -> Page {
    require_admin(&web)?;
    new_page(&web, &NewAccount::default(), &[]).await
}

/// `POST /app/admin/users/new` (`username`, `name`, `role` repeated):
/// creates the account with a generated password (the store audits it, as
/// the API's user add) and shows the password once.
pub async fn create(web: Web, Form(fields): Form<Vec<(String, String)>>) -> Page {
    let values = |k: &str| -> Vec<String> {
        fields
            .iter()
            .filter(|(f, _)| f == k)
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    };
    web.check_csrf(&values("_csrf").concat())?;
    require_admin(&web)?;
    let f = NewAccount {
        username: values("username").concat(),
        name: values("name").concat(),
        roles: values("role"),
    };
    let mut errors = Vec::new();
    if f.username.is_empty() {
        errors.push(("username", "Enter a user name".to_owned()));
    }
    if f.name.is_empty() {
        errors.push(("name", "Enter the holder's full name".to_owned()));
    }
    if f.roles.is_empty() {
        errors.push(("roles", "Select at least one role profile".to_owned()));
    }
    if !errors.is_empty() {
        return new_page(&web, &f, &errors).await;
    }
    let password = gp_store::accounts::generate_password();
    let added = web
        .state
        .store
        .add_user(
            &web.ctx,
            gp_store::accounts::NewUser {
                username: f.username.clone(),
                name: f.name.clone(),
                password: password.clone(),
                roles: f.roles.clone(),
                practitioner: None,
            },
        )
        .await;
    let user = match added {
        Ok(u) => u,
        // A user name taken or not allowed: the form again, saying why.
        Err(gp_store::StoreError::Conflict(m)) => {
            return new_page(&web, &f, &[("username", m)]).await;
        }
        Err(gp_store::StoreError::BadRequest(o)) => {
            return new_page(&web, &f, &[("username", crate::ui::outcome_text(&o))]).await;
        }
        Err(e) => return Err(store_err(&web)(e)),
    };
    let body = html! {
        div class="nhsuk-panel" {
            h1 class="nhsuk-panel__title" { "Staff account created" }
            div class="nhsuk-panel__body" { "for " (user.name) }
        }
        dl class="nhsuk-summary-list" {
            div class="nhsuk-summary-list__row" { dt class="nhsuk-summary-list__key" { "User name" } dd class="nhsuk-summary-list__value" id="account-username" { (user.username) } }
            div class="nhsuk-summary-list__row" { dt class="nhsuk-summary-list__key" { "Role profiles" } dd class="nhsuk-summary-list__value" { (roles_text(&user)) } }
            div class="nhsuk-summary-list__row" { dt class="nhsuk-summary-list__key" { "Password" } dd class="nhsuk-summary-list__value" id="account-password" { code { (password) } } }
        }
        p { "Give the password to its holder now: it is not shown again." }
        p { a href="/app/admin/users" { "Back to the user accounts" } }
    };
    ok(page(
        "Staff account created",
        Some(&web),
        &[("Home", "/app"), ("User accounts", "/app/admin/users")],
        body,
    ))
}

/// The form on a patient's details creating their online account, for a
/// user administrator.
pub fn online_account_form(web: &Web, id: &str) -> Markup {
    html! {
        @if web.ctx.allows(Activity::AdministerUsers) {
            h2 class="nhsuk-heading-m" { "Online access" }
            form method="post" action={ "/app/patients/" (id) "/online-account" } {
                input type="hidden" name="_csrf" value=(web.csrf());
                button class="nhsuk-button nhsuk-button--secondary" type="submit" { "Create online account" }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    _csrf: String,
}

/// `POST /app/patients/{id}/online-account`: creates the patient's online
/// account (user name their NHS number) and shows its password once.
pub async fn create_online_account(
    web: Web,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Page {
    web.check_csrf(&f._csrf)?;
    require_admin(&web)?;
    let password = gp_store::accounts::generate_password();
    let user = web
        .state
        .store
        .add_patient_account_for(&web.ctx, &id, &password)
        .await
        .map_err(store_err(&web))?;
    let body = html! {
        div class="nhsuk-panel" {
            h1 class="nhsuk-panel__title" { "Online account created" }
            div class="nhsuk-panel__body" { "for " (user.name) }
        }
        dl class="nhsuk-summary-list" {
            div class="nhsuk-summary-list__row" { dt class="nhsuk-summary-list__key" { "User name" } dd class="nhsuk-summary-list__value" id="account-username" { (user.username) } }
            div class="nhsuk-summary-list__row" { dt class="nhsuk-summary-list__key" { "Password" } dd class="nhsuk-summary-list__value" id="account-password" { code { (password) } } }
        }
        p { "Give the password to the patient now: it is not shown again. A proxy (a parent or carer) is linked by recording a RelatedPerson in the patient's record naming the proxy's account id: " code { (user.id) } "." }
        p { a href={ "/app/patients/" (id) } { "Back to the patient's details" } }
    };
    ok(page(
        "Online account created",
        Some(&web),
        &[
            ("Home", "/app"),
            ("Patient", &format!("/app/patients/{id}")),
        ],
        body,
    ))
}
