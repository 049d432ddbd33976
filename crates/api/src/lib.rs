//! The FHIR RESTful API (http.html) over HTTP, with axum.
//!
//! Each practice has its own FHIR base at `/practices/{ODS code}/fhir`.
//! Handlers are thin: they extract the request ([`call::Call`]), call the
//! store, and shape the response; the FHIR semantics live in `gp-store`.
//!
//! API Boundary: [`app`] builds the router from an [`AppState`].
//!
//! Architecture invariants: this crate contains no SQL; every error leaves
//! as an OperationOutcome with the status [`error`] assigns; a request body
//! is never trusted to be small, JSON or FHIR until checked.

pub mod admin;
pub mod auth;
pub mod bulk;
mod call;
mod capability;
pub mod dmd;
pub mod error;
mod glass;
pub mod limit;
mod negotiate;
pub mod oidc;
pub mod proxy;
mod rest;
pub mod smart;
pub mod terminology;
pub mod tls;
mod validate;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use gp_fhir::{IssueType, OdsCode};
use gp_store::{Actor, Practice, Store, StoreError};
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;

/// Settings of the HTTP API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// The largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// The URL clients reach the server at (`https://gp.example.org`), for
    /// `Location` headers and `fullUrl`s. Without it the request's `Host` is used.
    pub public_url: Option<String>,
    /// Rate limits per client address.
    pub limits: limit::LimitConfig,
    /// Whether this server itself speaks HTTPS ([`tls`]): URLs it makes
    /// up without `public_url` are `https://`, and cookies are `Secure`.
    pub https: bool,
    /// Reverse proxies whose `X-Forwarded-For` names the client ([`proxy`]).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: 32 * 1024 * 1024,
            public_url: None,
            limits: limit::LimitConfig::default(),
            https: false,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Shared state of every request.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<ApiConfig>,
    /// The SNOMED CT release the terminology operations answer from.
    pub terminology: terminology::Terminology,
    /// Bulk Data export jobs, when the server has a folder for their files.
    pub exports: Option<Arc<gp_migrate::bulk::Exports>>,
    /// Practices seen so far, by ODS code; a practice never goes away
    /// while the server runs, so entries never go stale.
    practices: Arc<RwLock<HashMap<OdsCode, Practice>>>,
    /// Sessions resolved recently, so that a request pays no query for its token.
    sessions: auth::SessionCache,
    /// Rate limits on sign-ins and refused requests.
    pub limits: limit::Limits,
    /// The external OpenID Connect provider staff may sign in with, if configured.
    pub oidc: Option<Arc<oidc::Oidc>>,
}

impl AppState {
    pub fn new(store: Store, config: ApiConfig) -> Self {
        AppState {
            store,
            limits: limit::Limits::new(config.limits),
            config: Arc::new(config),
            terminology: terminology::Terminology::default(),
            exports: None,
            practices: Arc::default(),
            sessions: auth::SessionCache::default(),
            oidc: None,
        }
    }

    /// Lets staff sign in through `provider` as well.
    pub fn with_oidc(mut self, provider: oidc::Oidc) -> Self {
        self.oidc = Some(Arc::new(provider));
        self
    }

    /// Runs Bulk Data exports, their jobs and files under `dir` (the jobs
    /// found there taken up again), each kept `retention` after it ends.
    /// Call within the server's runtime: expired jobs are deleted in the
    /// background.
    pub fn with_exports(
        mut self,
        dir: &std::path::Path,
        retention: std::time::Duration,
    ) -> anyhow::Result<Self> {
        let exports = Arc::new(gp_migrate::bulk::Exports::open(dir, retention)?);
        exports.expire_in_background();
        exports.resume_in_background(self.store.clone());
        self.exports = Some(exports);
        Ok(self)
    }

    /// The practice an ODS code in a URL names; 404 if this server does
    /// not serve it.
    pub async fn practice(&self, ods: &str) -> Result<Practice, ApiError> {
        let unknown = || ApiError::not_found(format!("this server has no practice '{ods}'"));
        let code = OdsCode::parse(ods).ok_or_else(unknown)?;
        if let Some(p) = self
            .practices
            .read()
            .ok()
            .and_then(|m| m.get(&code).cloned())
        {
            return Ok(p);
        }
        let p = self
            .store
            .practice(&code, &Actor::system())
            .await
            .map_err(ApiError::from)?
            .ok_or_else(unknown)?;
        if let Ok(mut m) = self.practices.write() {
            m.insert(code, p.clone());
        }
        Ok(p)
    }
}

/// The whole HTTP application: the FHIR API and `more` (the web app),
/// behind one set of layers.
pub fn app(state: AppState, more: Router<AppState>) -> Router {
    let fhir = terminology::routes()
        .merge(smart::fhir_routes())
        .merge(bulk::routes())
        .merge(rest::routes());
    Router::new()
        .route("/", get(rest::home))
        .route("/health", get(|| async { "ok" }))
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route(
            "/auth/act-for",
            post(auth::act_for).get(admin::act_for_targets),
        )
        .route("/auth/logout-everywhere", post(auth::logout_everywhere))
        .nest("/practices/{ods}/fhir", fhir)
        .nest("/practices/{ods}/smart", smart::routes())
        .nest("/practices/{ods}/admin", admin::routes())
        .merge(more)
        .fallback(|| async { ApiError::not_found("there is nothing at this URL; a practice's FHIR API is at /practices/{ODS code}/fhir") })
        // Bodies are limited by our own extractor so that the limit answers
        // with an OperationOutcome.
        .layer(DefaultBodyLimit::disable())
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
        // Outermost, so that every handler sees the client behind a proxy.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            proxy::client_behind_proxy,
        ))
        .with_state(state)
}

/// Serves `state` (and the routes in `more`) on `listener`, over TLS when
/// given its settings ([`tls::server_config`]), until `shutdown` completes;
/// then stops accepting connections and waits for requests in flight to
/// finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<tls::ServerTls>>,
    state: AppState,
    more: Router<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use axum::serve::ListenerExt;
    let exports = state.exports.clone();
    // The client's address goes into the audit trail (`auth::client_address`).
    let service = app(state, more).into_make_service_with_connect_info::<std::net::SocketAddr>();
    match tls {
        None => {
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await?
        }
        // (`tap_io` is what gives a listener of our own the peer address as
        // connect info.)
        Some(config) => {
            axum::serve(
                tls::TlsListener::new(listener, config)?.tap_io(|_| {}),
                service,
            )
            .with_graceful_shutdown(shutdown)
            .await?
        }
    }
    // Bulk exports still running are stopped, recorded as running, and
    // reported failed by the next start.
    if let Some(exports) = exports {
        exports.shutdown().await;
    }
    Ok(())
}

/// The URL clients reach the server at: the configured public URL, else
/// the request's host (HTTP/2 carries it in the URI as `:authority`,
/// HTTP/1.1 in `Host`) with `X-Forwarded-Proto` or this server's scheme.
pub fn root_url(
    config: &ApiConfig,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
) -> String {
    use axum::http::header;
    match &config.public_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            let host = uri
                .authority()
                .map(|a| a.as_str())
                .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()))
                .unwrap_or("localhost");
            let proto = headers
                .get("x-forwarded-proto")
                .and_then(|h| h.to_str().ok())
                .unwrap_or(if config.https { "https" } else { "http" });
            format!("{proto}://{host}")
        }
    }
}

/// A JSON answer that carries credentials or secrets (tokens, a client
/// secret): never cached (RFC 6749 section 5.1).
pub(crate) fn no_store_json(
    status: StatusCode,
    body: serde_json::Value,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        status,
        [
            (axum::http::header::CACHE_CONTROL, "no-store"),
            (axum::http::header::PRAGMA, "no-cache"),
        ],
        axum::Json(body),
    )
        .into_response()
}

pub(crate) fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        IssueType::NotSupported,
        "this HTTP method is not supported on this URL",
    )
}

pub(crate) fn store_err(e: StoreError) -> ApiError {
    ApiError::from(e)
}
