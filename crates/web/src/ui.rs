//! The page shell, errors as pages, and small pieces of the NHS design
//! system shared by every page.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use gp_store::StoreError;
use maud::{DOCTYPE, Markup, html};

use crate::assets;
use crate::session::{Web, to_login};

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Why a page could not be shown, as the user should read it.
#[derive(Debug)]
pub enum WebError {
    /// Not signed in, or the session ended.
    SignIn {
        htmx: bool,
    },
    Forbidden(String),
    NotFound(String),
    /// The input was wrong; the message says how.
    BadInput(String),
    /// The practice's record is read-only (a migration is under way).
    Frozen(String),
    /// Our fault: logged, and the user told that nothing was saved.
    Internal(String),
}

impl WebError {
    pub fn store(e: StoreError, htmx: bool) -> WebError {
        match e {
            StoreError::Unauthorized(_) => WebError::SignIn { htmx },
            StoreError::Forbidden(m) => WebError::Forbidden(m),
            StoreError::NotFound(m) => WebError::NotFound(m),
            e @ StoreError::Restricted(_) => WebError::NotFound(e.to_string()),
            StoreError::Gone { .. } => WebError::NotFound("this record has been deleted".into()),
            StoreError::BadRequest(o) | StoreError::Unprocessable(o) => {
                WebError::BadInput(outcome_text(&o))
            }
            StoreError::PreconditionFailed(m) | StoreError::Conflict(m) => WebError::BadInput(m),
            StoreError::Frozen(m) => WebError::Frozen(m),
            StoreError::NotSupported(m) => WebError::BadInput(m),
            StoreError::Unavailable => {
                WebError::Internal("the server is busy; try again in a moment".into())
            }
            StoreError::Backend(e) => {
                tracing::error!(error = %e, "web page failed in the store");
                WebError::Internal("the record could not be reached".into())
            }
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            WebError::SignIn { htmx } => return to_login(htmx, None),
            WebError::Forbidden(m) => (
                StatusCode::FORBIDDEN,
                "You do not have permission to do this",
                m,
            ),
            WebError::NotFound(m) => (StatusCode::NOT_FOUND, "Page not found", m),
            WebError::BadInput(m) => (StatusCode::BAD_REQUEST, "There is a problem", m),
            WebError::Frozen(m) => (
                StatusCode::CONFLICT,
                "The record is read-only at the moment",
                format!("{m}. Nothing was saved."),
            ),
            WebError::Internal(m) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sorry, there is a problem with the service",
                format!("{m}. Nothing was saved; try again."),
            ),
        };
        let body = html! {
            h1 { (title) }
            p { (message) }
            p { a href="/app" { "Go to the home page" } }
        };
        (status, Html(page(title, None, &[], body).into_string())).into_response()
    }
}

pub type Page = Result<Response, WebError>;

/// An HTML response.
pub fn ok(m: Markup) -> Page {
    Ok(Html(m.into_string()).into_response())
}

/// A breadcrumb-like trail for the header: (text, href).
pub type Crumbs<'a> = &'a [(&'a str, &'a str)];

/// A whole page: header, skip link, main content.
pub fn page(title: &str, web: Option<&Web>, nav: Crumbs<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en-GB" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"historyCacheSize":0}"#;
                title { (title) " – OpenGP" }
                link rel="icon" href="/app/assets/images/favicon.svg" type="image/svg+xml";
                link rel="stylesheet" href=(assets::url("opengp.css"));
                script src=(assets::url("htmx.js")) defer {}
                script src=(assets::url("app.js")) defer {}
            }
            body {
                a class="nhsuk-skip-link" href="#main" { "Skip to main content" }
                (header(web))
                div class="nhsuk-width-container" {
                    @if !nav.is_empty() {
                        nav class="nhsuk-breadcrumb" aria-label="Breadcrumb" {
                            ol class="nhsuk-breadcrumb__list" {
                                @for (text, href) in nav {
                                    li class="nhsuk-breadcrumb__list-item" {
                                        a class="nhsuk-breadcrumb__link" href=(href) { (text) }
                                    }
                                }
                            }
                        }
                    }
                    main class="nhsuk-main-wrapper nhsuk-main-wrapper--s" id="main" tabindex="-1" {
                        (body)
                    }
                }
                footer class="nhsuk-width-container og-keys" {
                    p id="shortcuts" tabindex="-1" {
                        "Keys: " kbd { "/" } " find a patient · " kbd { "r" } " register · "
                        kbd { "n" } " new consultation · " kbd { "s" } " summary · "
                        kbd { "j" } " journal · " kbd { "Alt" } "+" kbd { "S" } " save"
                    }
                }
            }
        }
    }
}

fn header(web: Option<&Web>) -> Markup {
    html! {
        header class="nhsuk-header" role="banner" {
            div class="nhsuk-header__container nhsuk-width-container" {
                div class="nhsuk-header__service" {
                    a class="nhsuk-header__service-name" href="/app" { "OpenGP" }
                }
                @if let Some(w) = web {
                    (search_box(""))
                    nav class="nhsuk-header__account" aria-label="Account" {
                        ul class="nhsuk-header__account-list" {
                            li class="nhsuk-header__account-item" {
                                @let (name, role) = w.who();
                                (name) " (" (role_name(&role)) ")"
                            }
                            li class="nhsuk-header__account-item" {
                                form method="post" action="/app/logout" {
                                    input type="hidden" name="_csrf" value=(w.csrf());
                                    button class="nhsuk-header__account-button" type="submit" { "Sign out" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The patient search box of the header.
pub fn search_box(value: &str) -> Markup {
    html! {
        search class="nhsuk-header__search" {
            form class="nhsuk-header__search-form" action="/app/patients" method="get" role="search" {
                label class="nhsuk-u-visually-hidden" for="patient-search" {
                    "Find a patient by name, NHS number, date of birth or postcode"
                }
                input class="nhsuk-header__search-input nhsuk-input" id="patient-search" name="q"
                    type="search" autocomplete="off" value=(value)
                    placeholder="Find a patient ( / )";
                button class="nhsuk-header__search-submit" type="submit" { "Search" }
            }
        }
    }
}

/// The national RBAC role names of the roles a GP practice uses.
pub fn role_name(code: &str) -> String {
    let name = match code {
        "R8000" => "Clinical Practitioner",
        "R8003" => "Health Professional",
        "R8001" => "Nurse",
        "R8004" => "Healthcare Student",
        "R8008" => "Admin/Clinical Support",
        "R8010" => "Clerical",
        "R8015" => "Systems Support",
        "R0001" => "Privacy Officer",
        "R8006" => "Medical Secretary",
        "R8009" => "Receptionist",
        _ if gp_store::online::role_patient(code).is_some() => return "online access".into(),
        _ => return code.to_owned(),
    };
    format!("{name}, {code}")
}

/// A form error summary (the NHS design system's), if there are errors.
pub fn error_summary(errors: &[(&str, String)]) -> Markup {
    html! {
        @if !errors.is_empty() {
            div class="nhsuk-error-summary" aria-labelledby="error-summary-title" role="alert" {
                h2 class="nhsuk-error-summary__title" id="error-summary-title" { "There is a problem" }
                div class="nhsuk-error-summary__body" {
                    ul class="nhsuk-list nhsuk-error-summary__list" {
                        @for (field, msg) in errors {
                            li { a href={ "#" (field) } { (msg) } }
                        }
                    }
                }
            }
        }
    }
}

/// The error of `field`, if any.
pub fn field_error<'a>(errors: &'a [(&str, String)], field: &str) -> Option<&'a str> {
    errors
        .iter()
        .find(|(f, _)| *f == field)
        .map(|(_, m)| m.as_str())
}

/// A labelled text input with its error.
pub fn text_input(
    id: &str,
    label: &str,
    value: &str,
    errors: &[(&str, String)],
    extra_class: &str,
    autocomplete: &str,
) -> Markup {
    let err = field_error(errors, id);
    html! {
        div class={ "nhsuk-form-group" @if err.is_some() { " nhsuk-form-group--error" } } {
            label class="nhsuk-label" for=(id) { (label) }
            @if let Some(e) = err {
                span class="nhsuk-error-message" id={ (id) "-error" } {
                    span class="nhsuk-u-visually-hidden" { "Error: " } (e)
                }
            }
            input class={ "nhsuk-input " (extra_class) @if err.is_some() { " nhsuk-input--error" } }
                id=(id) name=(id) type="text" value=(value) autocomplete=(autocomplete)
                aria-describedby=[err.map(|_| format!("{id}-error"))];
        }
    }
}

/// The diagnostics of an OperationOutcome, as one sentence.
pub fn outcome_text(o: &gp_fhir::OperationOutcome) -> String {
    o.issues
        .iter()
        .map(|i| i.diagnostics.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}
