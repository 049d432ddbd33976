//! Staff sign-in through an external OpenID Connect provider, against a
//! real, independent one: the npm package `oidc-provider`, run by node on
//! a loopback port (`tests/oidc/provider.mjs`; `cargo xtask test` installs
//! the package and names its folder in `OPENGP_OIDC_PROVIDER`). The test
//! is the browser: reqwest with a cookie store, following redirects itself
//! and filling in the provider's sign-in and consent forms.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use gp_store::{Actor, Ctx};
use opengp::config::ServerConfig;
use opengp::server::Server;
use reqwest::StatusCode;
use serde_json::{Value, json};

const SECRET: &str = "a client secret of the test";

/// The provider's node process, killed when dropped.
struct Provider {
    child: Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_provider(redirect_uri: &str) -> Provider {
    let modules = std::env::var("OPENGP_OIDC_PROVIDER").unwrap_or_else(|_| {
        panic!(
            "OPENGP_OIDC_PROVIDER is not set: run the suite with `cargo xtask test`, \
             which installs the npm package oidc-provider"
        )
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/provider.mjs");
    let accounts = json!({
        "jsmith": {"name": "Jane Smith at the provider", "roles": ["R8000"]},
        "stranger": {"roles": ["R8000"]},
        "clerk": {"roles": ["R8001"]}
    });
    let mut child = Command::new("node")
        .arg(script)
        .arg(modules)
        .arg(redirect_uri)
        .arg(SECRET)
        .arg(accounts.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting node: {e}"));
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let mut out = BufReader::new(out);
        let _ = out.read_line(&mut line);
        // The rest (the provider's own log lines) is read and dropped, so
        // that its writes never meet a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    }
    let port: u16 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("the provider printed no port: {line:?}"));
    Provider {
        child,
        issuer: format!("http://127.0.0.1:{port}"),
    }
}

fn config(dir: &Path, port: u16, oidc: Option<gp_api::oidc::OidcConfig>) -> ServerConfig {
    ServerConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        practice_name: "OIDC Practice".into(),
        oidc,
        ..crate::support::server_config(dir)
    }
}

fn oidc_config(issuer: &str) -> gp_api::oidc::OidcConfig {
    gp_api::oidc::OidcConfig {
        issuer: issuer.to_owned(),
        client_id: "opengp".into(),
        client_secret: Some(SECRET.into()),
        scopes: vec!["openid".into(), "profile".into(), "roles".into()],
        username_claim: "preferred_username".into(),
        roles_claim: Some("roles".into()),
        name: "Test Identity".into(),
    }
}

/// A free loopback port: the provider must know OpenGP's redirect URI
/// before OpenGP, which discovers the provider at start, is running.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no Location in a {} answer", res.status()))
        .to_owned()
}

/// `value` of the attribute `name` in the first tag of `html` that has it.
fn attribute(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("{name}=\""))? + name.len() + 2;
    let end = html[at..].find('"')?;
    Some(html[at..at + end].replace("&amp;", "&"))
}

/// Starts a sign-in at OpenGP and goes through the provider's pages as
/// `login`: answers the URL the provider sends the browser back to.
async fn through_provider(
    client: &reqwest::Client,
    base: &str,
    issuer: &str,
    login: &str,
) -> String {
    let res = client
        .get(format!("{base}/app/login/oidc?practice=A81001&next=/app"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(res.status().is_redirection(), "{}", res.status());
    let mut url = location(&res);
    assert!(url.starts_with(issuer), "{url}");
    for _ in 0..12 {
        if url.starts_with(base) {
            return url;
        }
        let res = client
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e:?}"));
        let res = if res.status().is_redirection() {
            res
        } else {
            // A sign-in or consent form: fill it in and send it.
            assert_eq!(res.status(), StatusCode::OK, "{url}");
            let page = res.text().await.unwrap_or_default();
            let action = attribute(&page, "action").unwrap_or_else(|| panic!("no form: {page}"));
            let prompt = page
                .find("name=\"prompt\"")
                .and_then(|i| attribute(&page[i..], "value"))
                .unwrap_or_default();
            client
                .post(absolute(issuer, &action))
                .form(&[
                    ("prompt", prompt.as_str()),
                    ("login", login),
                    ("password", "anything"),
                ])
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert!(res.status().is_redirection(), "{}", res.status());
        url = absolute(issuer, &location(&res));
    }
    panic!("the provider never sent the browser back")
}

/// A URL the provider gave, made absolute.
fn absolute(issuer: &str, url: &str) -> String {
    if url.starts_with('/') {
        format!("{issuer}{url}")
    } else {
        url.to_owned()
    }
}

/// The sign-in events of `username` in the audit trail.
async fn logins(base: &str, token: &str, username: &str) -> Vec<Value> {
    let bundle: Value = reqwest::Client::new()
        .get(format!(
            "{base}/practices/A81001/fhir/AuditEvent?altid={username}&type=110114"
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    bundle["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_sign_in_through_a_real_openid_connect_provider() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let provider = start_provider(&format!("{base}/app/login/oidc/callback"));
    let issuer = provider.issuer.clone();

    let server = Server::bind(&config(dir.path(), port, Some(oidc_config(&issuer))))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let store = server.store.clone();
    let practice = server.practice.clone();
    let ctx = Ctx::new(practice.clone(), Actor::system());
    for (username, name, roles) in [
        ("jsmith", "Dr Jane Smith", vec!["R8000", "R8003"]),
        ("clerk", "Colin Clerk", vec!["R8000"]),
    ] {
        store
            .add_user(
                &ctx,
                gp_store::accounts::NewUser {
                    username: username.into(),
                    name: name.into(),
                    password: gp_store::accounts::generate_password(),
                    roles: roles.into_iter().map(str::to_owned).collect(),
                    practitioner: None,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let auditor = opengp::server::full_access_session(&store, &practice, "auditor")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    // The sign-in page offers the provider.
    let browser1 = browser();
    let page = browser1
        .get(format!("{base}/app/login"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp.contains(&format!("form-action 'self' {issuer}")),
        "{csp}"
    );
    let text = page.text().await.unwrap_or_default();
    assert!(text.contains("Sign in with Test Identity"), "{text}");

    // A sign-in all the way: provider forms, callback, a session.
    let back = through_provider(&browser1, &base, &issuer, "jsmith").await;
    let res = browser1
        .get(&back)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        res.text().await.unwrap_or_default()
    );
    // The provider grants R8000 only, so there is no role to choose.
    assert_eq!(location(&res), "/app");
    let home = browser1
        .get(format!("{base}/app"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(home.status(), StatusCode::OK);
    let home = home.text().await.unwrap_or_default();
    assert!(home.contains("Dr Jane Smith"), "{home}");
    // The role page offers only what the provider granted, and the session
    // cannot widen itself to the account's other role (R8003) by posting it.
    let roles = browser1
        .get(format!("{base}/app/role"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    assert!(roles.contains("value=\"R8000\""), "{roles}");
    assert!(!roles.contains("value=\"R8003\""), "{roles}");
    let csrf = roles
        .split("name=\"_csrf\"")
        .nth(1)
        .and_then(|t| attribute(t, "value"))
        .unwrap_or_default();
    let widen = browser1
        .post(format!("{base}/app/role"))
        .form(&[
            ("_csrf", csrf.as_str()),
            ("role", "R8003"),
            ("next", "/app"),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(widen.status(), StatusCode::FORBIDDEN);
    let still = browser1
        .get(format!("{base}/app/role"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    assert!(
        still.contains("checked"),
        "still signed in as R8000: {still}"
    );
    let events = logins(&base, &auditor, "jsmith").await;
    let signed_in = events
        .iter()
        .find(|e| e["outcome"] == "0")
        .unwrap_or_else(|| panic!("no sign-in event: {events:?}"));
    assert_eq!(signed_in["agent"][0]["policy"], json!([issuer]));
    assert_eq!(
        signed_in["agent"][0]["role"][0]["coding"][0]["code"],
        "R8000"
    );

    // The answer taken back to another browser (no state cookie): refused,
    // and the state is spent.
    let back = through_provider(&browser(), &base, &issuer, "jsmith").await;
    let res = browser()
        .get(&back)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(
        res.text()
            .await
            .unwrap_or_default()
            .contains("was not started here")
    );

    // A wrong state, in the browser that started a sign-in.
    let browser2 = browser();
    let _ = through_provider(&browser2, &base, &issuer, "jsmith").await;
    let res = browser2
        .get(format!(
            "{base}/app/login/oidc/callback?code=abc&state=wrong"
        ))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // The provider (or the user there) refuses: a page, not a 500.
    let browser3 = browser();
    let res = browser3
        .get(format!("{base}/app/login/oidc?practice=A81001"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let to = url_query(&location(&res));
    let state = to
        .iter()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.clone());
    let res = browser3
        .get(format!(
            "{base}/app/login/oidc/callback?error=access_denied&state={}",
            state.unwrap_or_default()
        ))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let text = res.text().await.unwrap_or_default();
    assert!(
        text.contains("Test Identity did not allow the sign-in"),
        "{text}"
    );
    assert!(text.contains("nhsuk-"), "an NHS-style page");

    // Someone the provider knows but the practice has no account for.
    let browser4 = browser();
    let back = through_provider(&browser4, &base, &issuer, "stranger").await;
    let res = browser4
        .get(&back)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(
        res.text()
            .await
            .unwrap_or_default()
            .contains("no account 'stranger'")
    );
    let events = logins(&base, &auditor, "stranger").await;
    assert!(
        events
            .iter()
            .any(|e| e["outcome"] != "0" && e["agent"][0]["policy"] == json!([issuer])),
        "{events:?}"
    );

    // An account whose roles the provider does not grant.
    let browser5 = browser();
    let back = through_provider(&browser5, &base, &issuer, "clerk").await;
    let res = browser5
        .get(&back)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(
        logins(&base, &auditor, "clerk")
            .await
            .iter()
            .any(|e| e["outcome"] != "0")
    );

    let _ = stop.send(());
    running
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e:#}"));
    drop(provider);

    // A provider that cannot be reached stops the server starting.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let gone = format!("http://127.0.0.1:{}", free_port());
    let err = Server::bind(&config(dir.path(), 0, Some(oidc_config(&gone))))
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(err.contains("OpenID Connect provider"), "{err}");
}

fn url_query(url: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(url)
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}
