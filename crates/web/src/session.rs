//! The signed-in user of a request: the session token in a cookie, resolved
//! through the API's session cache to the same [`Ctx`] a bearer token gives.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use gp_api::AppState;
use gp_fhir::ResourceType;
use gp_store::Ctx;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const COOKIE: &str = "opengp_session";

/// A request from a signed-in user.
pub struct Web {
    pub ctx: Ctx,
    pub token: String,
    /// The request came from htmx and wants a fragment, not a page.
    pub htmx: bool,
    pub state: AppState,
}

impl Web {
    /// The token forms carry to prove they came from our own pages: derived
    /// from the session's secret token, so another site cannot know it.
    pub fn csrf(&self) -> String {
        csrf_of(&self.token)
    }

    /// Refuses a form whose CSRF token is missing or wrong.
    pub fn check_csrf(&self, sent: &str) -> Result<(), crate::WebError> {
        if sent == self.csrf() {
            Ok(())
        } else {
            Err(crate::WebError::Forbidden(
                "this form has expired or did not come from OpenGP; reload the page and try again"
                    .into(),
            ))
        }
    }

    /// The signed-in user's name and role, for the header.
    pub fn who(&self) -> (String, String) {
        self.ctx
            .access
            .user
            .as_ref()
            .map(|u| (u.name.clone(), u.role.clone()))
            .unwrap_or_default()
    }

    /// The Practitioner the user is, if the account is linked to one.
    pub fn practitioner(&self) -> Option<String> {
        self.ctx.access.user.as_ref()?.practitioner.clone()
    }
}

impl Web {
    fn fail(&self, e: gp_store::StoreError) -> crate::WebError {
        crate::WebError::store(e, self.htmx)
    }

    fn ty(name: &str) -> Result<ResourceType, crate::WebError> {
        ResourceType::parse(name).ok_or_else(|| {
            crate::WebError::NotFound(format!("OpenGP has no records of type {name}"))
        })
    }

    /// A search, as the API would run it for this user: the resources found
    /// (in the order asked) and those `_include` brought.
    pub async fn search(
        &self,
        ty: &str,
        params: Vec<(&str, String)>,
    ) -> Result<(Vec<Value>, Vec<Value>), crate::WebError> {
        let ty = Self::ty(ty)?;
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let q = gp_fhir::search::parse(Some(ty), &params, true)
            .map_err(|o| crate::WebError::BadInput(crate::ui::outcome_text(&o)))?;
        let found = self
            .state
            .store
            .search(&self.ctx, Some(ty), q)
            .await
            .map_err(|e| self.fail(e))?;
        let main = found.page.entries.iter().map(crate::fhir::body).collect();
        let included = found.included.iter().map(crate::fhir::body).collect();
        Ok((main, included))
    }

    /// The current version of a resource.
    pub async fn read(&self, ty: &str, id: &str) -> Result<Value, crate::WebError> {
        let ty = Self::ty(ty)?;
        let id = gp_fhir::Id::parse(id)
            .map_err(|_| crate::WebError::NotFound(format!("there is no {ty} '{id}'")))?;
        let v = self
            .state
            .store
            .read(&self.ctx, ty, id)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(crate::fhir::body(&v))
    }

    /// Every version of a resource, newest first.
    pub async fn versions(
        &self,
        ty: &str,
        id: &str,
    ) -> Result<Vec<gp_store::StoredVersion>, crate::WebError> {
        let ty = Self::ty(ty)?;
        let id = gp_fhir::Id::parse(id)
            .map_err(|_| crate::WebError::NotFound(format!("there is no {ty} '{id}'")))?;
        let page = self
            .state
            .store
            .history(
                &self.ctx,
                gp_store::HistoryScope::Instance(ty, id.to_string()),
                gp_store::HistoryQuery {
                    since: None,
                    count: 100,
                    offset: 0,
                    until: None,
                },
            )
            .await
            .map_err(|e| self.fail(e))?;
        Ok(page.entries)
    }

    /// Who wrote each version of a resource, from the audit trail.
    pub async fn authors(
        &self,
        ty: &str,
        id: &str,
    ) -> Result<Vec<gp_store::Authorship>, crate::WebError> {
        let ty = Self::ty(ty)?;
        self.state
            .store
            .authors(&self.ctx, ty, id)
            .await
            .map_err(|e| self.fail(e))
    }

    /// Runs a transaction Bundle: all of it is written, or none.
    /// Answers the ids the entries were given, in order.
    pub async fn transaction(&self, bundle: &Value) -> Result<Vec<String>, crate::WebError> {
        let (_, results) = self
            .state
            .store
            .bundle(&self.ctx, bundle, "")
            .await
            .map_err(|e| self.fail(e))?;
        let mut ids = Vec::with_capacity(results.len());
        for r in results {
            let r = r.map_err(|e| self.fail(e))?;
            // `Type/id/_history/n`: the id is the second part.
            let id = r
                .location
                .as_deref()
                .and_then(|l| l.split('/').nth(1))
                .unwrap_or_default();
            ids.push(id.to_owned());
        }
        Ok(ids)
    }

    /// Writes a new version of a resource the user has just read.
    pub async fn update(&self, ty: &str, id: &str, resource: Value) -> Result<(), crate::WebError> {
        let ty = Self::ty(ty)?;
        let rid = gp_fhir::Id::parse(id)
            .map_err(|_| crate::WebError::NotFound(format!("there is no {ty} '{id}'")))?;
        let resource = gp_fhir::Resource::from_value(resource)
            .map_err(|e| crate::WebError::BadInput(e.to_string()))?;
        self.state
            .store
            .update(
                &self.ctx,
                ty,
                rid,
                resource,
                gp_store::Preconditions::default(),
            )
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }
}

pub fn csrf_of(token: &str) -> String {
    let d = Sha256::digest(format!("opengp-csrf:{token}").as_bytes());
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of cookie `name`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// Whether the server is reached over HTTPS, so cookies are `Secure`.
pub fn secure(st: &AppState) -> bool {
    st.config.https
        || st
            .config
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
}

/// The `Set-Cookie` value that keeps `token` for the app's pages, or with
/// `None` clears it. `Secure` when the server is reached over HTTPS.
pub fn set_cookie(st: &AppState, token: Option<&str>) -> HeaderValue {
    let secure = secure(st);
    let value = match token {
        Some(t) => format!("{COOKIE}={t}; Path=/app; HttpOnly; SameSite=Strict"),
        None => format!("{COOKIE}=; Path=/app; HttpOnly; SameSite=Strict; Max-Age=0"),
    };
    let value = if secure {
        format!("{value}; Secure")
    } else {
        value
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Sends the browser to the sign-in page (htmx follows `HX-Redirect`).
pub fn to_login(htmx: bool, next: Option<&str>) -> Response {
    let target = match next {
        Some(n) if n.starts_with("/app") && n != "/app/login" => {
            format!("/app/login?next={}", crate::ui::encode(n))
        }
        _ => "/app/login".to_owned(),
    };
    if htmx {
        (StatusCode::OK, [("HX-Redirect", target)]).into_response()
    } else {
        Redirect::to(&target).into_response()
    }
}

impl FromRequestParts<AppState> for Web {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        // htmx asks for a fragment, except when restoring history, where
        // it wants the whole page.
        let htmx = parts.headers.contains_key("hx-request")
            && !parts.headers.contains_key("hx-history-restore-request");
        let next = parts.uri.path_and_query().map(|p| p.as_str().to_owned());
        let Some(token) = cookie(&parts.headers, COOKIE).map(str::to_owned) else {
            return Err(to_login(htmx, next.as_deref()));
        };
        let address = gp_api::auth::client_address(&parts.extensions);
        match gp_api::auth::resolve_token(st, &token).await {
            Ok(ctx) => Ok(Web {
                // The audit trail records where each access came from.
                ctx: ctx.from_address(address),
                token,
                htmx,
                state: st.clone(),
            }),
            Err(_) => Err(to_login(htmx, next.as_deref())),
        }
    }
}
