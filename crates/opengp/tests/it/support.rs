//! Shared test fixtures: a fresh server per test, and where test data lives.

use std::path::PathBuf;
use std::sync::Arc;

use opengp::server::{TestServer, spawn_for_test_with};
use serde_json::Value;

use crate::pg::TestDatabase;

/// The storage backends every conformance test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Turns `async fn name(app: App)` test cases into one test per backend:
/// `sqlite::name` and `postgres::name`. `name: limit` gives the server a
/// larger body limit than [`TEST_MAX_BODY`].
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident $(: $limit:expr)?),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let limit = $crate::support::body_limit(&[$($limit)?]);
                    let app = $crate::support::spawn_app_on($crate::support::Db::Sqlite, limit).await;
                    super::$name(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let limit = $crate::support::body_limit(&[$($limit)?]);
                    let app = $crate::support::spawn_app_on($crate::support::Db::Postgres, limit).await;
                    super::$name(app).await;
                }
            )*
        }
    };
}

/// The body limit a case asked for, or the default.
pub fn body_limit(asked: &[usize]) -> usize {
    asked.first().copied().unwrap_or(TEST_MAX_BODY)
}

/// The body limit of test servers: above the largest Synthea bundle
/// (6.9 MB), low enough to test 413 cheaply.
pub const TEST_MAX_BODY: usize = 8 * 1024 * 1024;

/// A server on a free loopback port over its own temporary data directory
/// or its own PostgreSQL database.
pub struct App {
    pub server: TestServer,
    pub client: reqwest::Client,
    /// Kept so that the directory lives as long as the server.
    _dir: tempfile::TempDir,
    /// The test's PostgreSQL database, checked and dropped at `stop`.
    pg: Option<TestDatabase>,
    /// Clients signed in to other practices (`add_practice`), by ODS code.
    others: std::sync::Mutex<Vec<(String, reqwest::Client)>>,
}

/// A server on `db` accepting bodies up to `max_body_bytes`.
pub async fn spawn_app_on(db: Db, max_body_bytes: usize) -> App {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let (backend, pg) = match db {
        Db::Sqlite => (None, None),
        Db::Postgres => {
            let pg = TestDatabase::create();
            let backend: Arc<dyn gp_store::Backend> = pg.backend();
            (Some(backend), Some(pg))
        }
    };
    let server = spawn_for_test_with(dir.path(), max_body_bytes, backend)
        .await
        .unwrap_or_else(|e| panic!("server: {e:#}"));
    let client = authorised_client(&server.token);
    App {
        server,
        client,
        _dir: dir,
        pg,
        others: std::sync::Mutex::default(),
    }
}

/// An HTTP client that sends `token` as its bearer token on every request.
pub fn authorised_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .unwrap_or_else(|e| panic!("token header: {e}"));
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap_or_else(|e| panic!("HTTP client: {e}"))
}

impl App {
    /// Creates another practice in the deployment and signs a full-access
    /// account in to it; [`App::client_for`] uses it for that practice's URLs.
    pub async fn add_practice(&self, ods: &str, name: &str) {
        let code = gp_fhir::OdsCode::parse(ods).unwrap_or_else(|| panic!("ODS code {ods}"));
        let practice = self
            .server
            .store
            .ensure_practice(&code, name, &gp_store::Actor::system())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let token = opengp::server::full_access_session(&self.server.store, &practice, "test")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if let Ok(mut others) = self.others.lock() {
            others.push((ods.to_owned(), authorised_client(&token)));
        }
    }

    /// The client signed in to the practice `url` is at.
    pub fn client_for(&self, url: &str) -> reqwest::Client {
        let others = self.others.lock().map(|o| o.clone()).unwrap_or_default();
        others
            .into_iter()
            .find(|(ods, _)| url.contains(&format!("/practices/{ods}/")))
            .map_or_else(|| self.client.clone(), |(_, c)| c)
    }

    /// The server's data directory (its SQLite file is `opengp.db` there).
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub fn url(&self, path: &str) -> String {
        if path.is_empty() || path.starts_with('?') {
            format!("{}{path}", self.server.base)
        } else {
            format!("{}/{}", self.server.base, path.trim_start_matches('/'))
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    pub async fn put(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .put(self.url(path))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {path}: {e}"))
    }

    /// GETs an absolute URL (a paging link) and reads the body as JSON.
    pub async fn get_json(&self, url: &str) -> Value {
        json(
            self.client
                .get(url)
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {url}: {e}")),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// GETs `path` with query parameters, encoded (values holding `?`,
    /// `&` or `|`, such as value set URLs).
    pub async fn get_with_query(&self, path: &str, query: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .query(query)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("DELETE {path}: {e}"))
    }

    /// Creates a resource and returns its id.
    pub async fn create(&self, body: &Value) -> String {
        let ty = body["resourceType"].as_str().unwrap_or_default().to_owned();
        let res = self.post(&ty, body).await;
        assert_eq!(res.status(), 201, "create {ty}");
        let v = json(res).await;
        v["id"].as_str().unwrap_or_default().to_owned()
    }

    /// Stops the server gracefully and starts another on the same data
    /// directory (and PostgreSQL database). `client` keeps its session (a
    /// stored one); the new server's `token` is that of another account.
    pub async fn restart(self) -> App {
        self.restart_after(|_, _| {}).await
    }

    /// As [`App::restart`], running `between` while no server is running,
    /// with the data directory and the PostgreSQL database's URL (for an
    /// `opengp` command's `--data` or `--database`).
    pub async fn restart_after(self, between: impl FnOnce(&std::path::Path, Option<&str>)) -> App {
        let App {
            server,
            client,
            _dir,
            pg,
            others,
        } = self;
        server
            .stop()
            .await
            .unwrap_or_else(|e| panic!("stop: {e:#}"));
        between(_dir.path(), pg.as_ref().map(|pg| pg.url.as_str()));
        let backend = pg.as_ref().map(|pg| {
            let b: Arc<dyn gp_store::Backend> = pg.backend();
            b
        });
        let server = spawn_for_test_with(_dir.path(), TEST_MAX_BODY, backend)
            .await
            .unwrap_or_else(|e| panic!("restarting the server: {e:#}"));
        App {
            server,
            client,
            _dir,
            pg,
            others,
        }
    }

    pub async fn stop(self) {
        self.server
            .stop()
            .await
            .unwrap_or_else(|e| panic!("stop: {e:#}"));
        if let Some(pg) = self.pg {
            pg.finish();
        }
    }
}

/// The `next` link of a Bundle, if it has one (search.html#paging).
pub fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["relation"] == "next")
        .and_then(|l| l["url"].as_str())
        .map(str::to_owned)
}

/// The body of a response as JSON.
pub async fn json(res: reqwest::Response) -> Value {
    let bytes = res.bytes().await.unwrap_or_default();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

/// Asserts an OperationOutcome with at least one error issue of `code`.
pub async fn assert_outcome(res: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(ct.starts_with("application/fhir+json"), "content type {ct}");
    let v = json(res).await;
    assert_eq!(v["resourceType"], "OperationOutcome", "{v}");
    let codes: Vec<&str> = v["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["code"].as_str())
        .collect();
    assert!(
        codes.contains(&code),
        "issue codes {codes:?}, expected {code}: {v}"
    );
    v
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `../shared/data` beside the repository (or `OPENGP_SHARED_DATA`).
pub fn shared_data() -> PathBuf {
    std::env::var_os("OPENGP_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/data"))
}

/// The unpacked `hl7.fhir.r4.examples` package, fetched by
/// `cargo xtask fhir-package` (the README's test command does it).
pub fn r4_examples() -> PathBuf {
    let dir = std::env::var_os("OPENGP_R4_EXAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            workspace_root().join("target/fhir-packages/hl7.fhir.r4.examples-4.0.1/package")
        });
    assert!(
        dir.join("package.json").exists(),
        "the FHIR R4 examples package is not at {}; run `cargo xtask fhir-package` (or the README's test command)",
        dir.display()
    );
    dir
}

/// The path of the built `opengp` binary.
/// A server's settings for a test that binds its own [`opengp::server::Server`]:
/// SQLite in `dir/data`, a free loopback port, default limits, nothing else.
pub fn server_config(dir: &std::path::Path) -> opengp::config::ServerConfig {
    opengp::config::ServerConfig {
        data: dir.join("data"),
        database: None,
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        public_url: None,
        max_body_bytes: 1 << 20,
        practice: opengp::config::DEFAULT_PRACTICE.into(),
        practice_name: "Test Practice".into(),
        tls: None,
        limits: gp_api::limit::LimitConfig::default(),
        oidc: None,
        trusted_proxies: Vec::new(),
        export_retention: gp_migrate::bulk::DEFAULT_RETENTION,
    }
}

pub fn opengp_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_opengp"))
}
