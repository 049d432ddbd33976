//! Assembling and running a server: the store, the API, the listener, and
//! a graceful shutdown that lets requests in flight finish and closes the
//! store cleanly.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use gp_api::{ApiConfig, AppState};
use gp_fhir::OdsCode;
use gp_store::{Actor, Backend, Practice, Store};
use gp_store_postgres::{PgBackend, PgOptions};
use gp_store_sqlite::SqliteBackend;
use tokio::net::TcpListener;

use crate::config::ServerConfig;

/// A bound, ready server.
pub struct Server {
    pub addr: SocketAddr,
    pub store: Store,
    pub practice: Practice,
    listener: TcpListener,
    tls: Option<Arc<gp_api::tls::ServerTls>>,
    state: AppState,
}

impl Server {
    /// Opens the store (creating the data directory and the practice on
    /// first start) and binds the listener.
    pub async fn bind(cfg: &ServerConfig) -> Result<Server> {
        // A bad certificate is found before anything is opened or created.
        if let Some(files) = &cfg.tls {
            gp_api::tls::server_config(files)?;
        }
        let backend = open_backend(cfg).await?;
        Server::bind_with(cfg, backend).await
    }

    /// As [`Server::bind`], over a backend the caller opened.
    pub async fn bind_with(cfg: &ServerConfig, backend: Arc<dyn Backend>) -> Result<Server> {
        let tls = cfg
            .tls
            .as_ref()
            .map(gp_api::tls::server_config)
            .transpose()?;
        let store = Store::new(backend);
        let ods = OdsCode::parse(&cfg.practice).with_context(|| {
            format!(
                "'{}' is not an ODS code (3 to 10 letters and digits)",
                cfg.practice
            )
        })?;
        let practice = store
            .ensure_practice(&ods, &cfg.practice_name, &Actor::system())
            .await?;
        // Index rows written by another OpenGP's extraction (or a reindex
        // stopped half-way) are computed again before anything is served.
        store
            .reindex(&Actor::system(), None, false, &|_| {})
            .await
            .context("reindexing the search index")?;
        let listener = TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("listening on {}", cfg.listen))?;
        let addr = listener.local_addr()?;
        let api = ApiConfig {
            max_body_bytes: cfg.max_body_bytes,
            public_url: cfg.public_url.clone(),
            limits: cfg.limits,
            https: tls.is_some(),
            trusted_proxies: cfg.trusted_proxies.clone(),
        };
        let mut state = AppState::new(store.clone(), api)
            .with_exports(&cfg.data.join("bulk-export"), cfg.export_retention)?;
        if let Some(oidc) = &cfg.oidc {
            let provider = gp_api::oidc::Oidc::discover(oidc.clone())
                .await
                .context("the OpenID Connect provider for staff sign-in is not usable")?;
            tracing::info!(issuer = %oidc.issuer, "staff may sign in with the OpenID Connect provider");
            state = state.with_oidc(provider);
        }
        let (release, index) = crate::terminology::ready(&store).await?;
        let index = Arc::new(index);
        store.set_snomed_index(index.clone());
        state.terminology.set(release, index);
        let (release, index) = crate::terminology::ready_dmd(&store).await?;
        state.terminology.set_dmd(release, index);
        Ok(Server {
            addr,
            store,
            practice,
            listener,
            tls,
            state,
        })
    }

    /// The FHIR base URL of the practice.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!(
            "{scheme}://{}/practices/{}/fhir",
            self.addr, self.practice.ods
        )
    }

    /// Serves until `shutdown` completes, then finishes requests in flight
    /// and closes the store.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let store = self.store.clone();
        gp_api::serve(
            self.listener,
            self.tls,
            self.state,
            gp_web::routes(),
            shutdown,
        )
        .await?;
        tracing::info!("requests finished; closing the store");
        tokio::task::spawn_blocking(move || store.close()).await?;
        Ok(())
    }
}

/// The backend the configuration names: PostgreSQL when a database URL is
/// given, otherwise the embedded SQLite file in the data directory.
pub async fn open_backend(cfg: &ServerConfig) -> Result<Arc<dyn Backend>> {
    match &cfg.database {
        Some(url) => {
            let url = url.clone();
            // The PostgreSQL client blocks; keep it off the async executor.
            let backend =
                tokio::task::spawn_blocking(move || PgBackend::connect(&url, PgOptions::default()))
                    .await?
                    .context("opening the PostgreSQL database")?;
            Ok(backend)
        }
        None => {
            let backend = SqliteBackend::open(&cfg.data)
                .with_context(|| format!("opening the data directory {}", cfg.data.display()))?;
            Ok(backend)
        }
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested");
}

/// For tests: a server on a free loopback port over a fresh data directory,
/// running until the returned handle is dropped.
pub async fn spawn_for_test(data: &std::path::Path, max_body_bytes: usize) -> Result<TestServer> {
    spawn_for_test_with(data, max_body_bytes, None).await
}

/// As [`spawn_for_test`], over `backend` when given (a PostgreSQL test
/// database, say) instead of SQLite in `data`.
pub async fn spawn_for_test_with(
    data: &std::path::Path,
    max_body_bytes: usize,
    backend: Option<Arc<dyn Backend>>,
) -> Result<TestServer> {
    let cfg = ServerConfig {
        data: data.to_path_buf(),
        database: None,
        listen: "127.0.0.1:0".parse()?,
        public_url: None,
        max_body_bytes,
        practice: crate::config::DEFAULT_PRACTICE.into(),
        practice_name: "Test Practice".into(),
        tls: None,
        limits: gp_api::limit::LimitConfig::default(),
        oidc: None,
        trusted_proxies: Vec::new(),
        export_retention: gp_migrate::bulk::DEFAULT_RETENTION,
    };
    let server = match backend {
        Some(b) => Server::bind_with(&cfg, b).await?,
        None => Server::bind(&cfg).await?,
    };
    let base = server.base_url();
    let addr = server.addr;
    let store = server.store.clone();
    let token = full_access_session(&store, &server.practice, "test").await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Ok(TestServer {
        base,
        addr,
        store,
        token,
        stop: Some(stop),
        handle: Some(handle),
    })
}

/// The role of the tests' and the benchmarks' own accounts: every activity,
/// through the practice's adjustable policy (not a code the national RBAC
/// uses).
pub const FULL_ACCESS_ROLE: &str = "R9999";

/// Creates an account `username` in [`FULL_ACCESS_ROLE`] (for tests and
/// benchmarks on a fresh store) and signs it in: the bearer token for the
/// practice's FHIR API.
pub async fn full_access_session(
    store: &Store,
    practice: &Practice,
    username: &str,
) -> Result<String> {
    let ctx = gp_store::Ctx::new(practice.clone(), Actor::system());
    let mut policy = store.policy(&ctx).await?;
    policy.set(FULL_ACCESS_ROLE, gp_store::access::Activities::all())?;
    store.set_policy(&ctx, &policy).await?;
    let password = gp_store::accounts::generate_password();
    // A store that already holds the account (a practice moved in from
    // another store, its password unknown here) gets a new one beside it.
    let users = store.users(&ctx).await?;
    let mut name = username.to_owned();
    for n in 2.. {
        if users.iter().all(|u| u.username != name) {
            break;
        }
        name = format!("{username}-{n}");
    }
    store
        .add_user(
            &ctx,
            gp_store::accounts::NewUser {
                username: name.clone(),
                name: format!("Full access ({name})"),
                password: password.clone(),
                roles: vec![FULL_ACCESS_ROLE.into()],
                practitioner: None,
            },
        )
        .await?;
    let session = store.sign_in(practice, &name, &password, None).await?;
    Ok(session.token)
}

/// A running test server.
pub struct TestServer {
    pub base: String,
    pub addr: SocketAddr,
    pub store: Store,
    /// A session of the tests' account with every activity: send it as
    /// `Authorization: Bearer`.
    pub token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<Result<()>>>,
}

impl TestServer {
    /// Stops gracefully and waits for the store to close.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await??;
        }
        Ok(())
    }
}
