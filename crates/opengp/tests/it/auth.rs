//! Signing in and what a role may do, on each backend: no or a bad token
//! is 401 with an OperationOutcome and `WWW-Authenticate` (rfc6750 section
//! 3), another practice's session 403, a role that does not allow the
//! interaction 403 `forbidden`; lockout after repeated failures, sign-out
//! and sign-out everywhere.

use gp_store::accounts::NewUser;
use gp_store::{Actor, Ctx};
use serde_json::{Value, json};

use crate::support::{App, assert_outcome, authorised_client, json};

crate::on_both_backends!(
    no_valid_session_is_401_and_metadata_is_public,
    sign_in_lockout_and_sign_out,
    roles_allow_only_their_activities,
);

pub(crate) const PASSWORD: &str = "a long enough password";

/// Creates an account `user` in `roles` at the test practice.
pub(crate) async fn add_user(app: &App, user: &str, roles: &[&str]) {
    let ctx = Ctx::new(practice(app).await, Actor::system());
    app.server
        .store
        .add_user(
            &ctx,
            NewUser {
                username: user.into(),
                name: format!("{user} (test)"),
                password: PASSWORD.into(),
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                practitioner: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("adding {user}: {e}"));
}

pub(crate) async fn practice(app: &App) -> gp_store::Practice {
    let ods = gp_fhir::OdsCode::parse(opengp::config::DEFAULT_PRACTICE)
        .unwrap_or_else(|| panic!("ODS code"));
    app.server
        .store
        .practice(&ods, &Actor::system())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the test practice"))
}

fn root(app: &App) -> String {
    format!("http://{}", app.server.addr)
}

pub(crate) async fn login(
    app: &App,
    user: &str,
    password: &str,
    role: Option<&str>,
) -> reqwest::Response {
    let mut body = json!({
        "practice": opengp::config::DEFAULT_PRACTICE,
        "username": user,
        "password": password,
    });
    if let Some(r) = role {
        body["role"] = json!(r);
    }
    reqwest::Client::new()
        .post(format!("{}/auth/login", root(app)))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("login: {e}"))
}

/// Signs in and returns a client carrying the session.
pub(crate) async fn signed_in(app: &App, user: &str, role: Option<&str>) -> reqwest::Client {
    let res = login(app, user, PASSWORD, role).await;
    assert_eq!(res.status(), 200, "{user} signs in");
    let v = json(res).await;
    authorised_client(v["access_token"].as_str().unwrap_or_default())
}

async fn status(client: &reqwest::Client, method: &str, url: &str, body: Option<&Value>) -> u16 {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let mut req = client.request(method, url);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/fhir+json")
            .body(b.to_string());
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .status()
        .as_u16()
}

async fn no_valid_session_is_401_and_metadata_is_public(app: App) {
    let anonymous = reqwest::Client::new();
    let id = app
        .create(&json!({ "resourceType": "Patient", "name": [{ "family": "Hidden" }] }))
        .await;
    for path in [
        format!("Patient/{id}"),
        "Patient".into(),
        "_history".into(),
        "CodeSystem/$lookup?system=http://snomed.info/sct&code=44054006".into(),
    ] {
        let res = anonymous
            .get(app.url(&path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let challenge = res
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(challenge.starts_with("Bearer"), "{path}: {challenge}");
        let v = assert_outcome(res, 401, "login").await;
        assert!(!v.to_string().contains("Hidden"), "reveals nothing: {v}");
    }
    // Writes too, and a token that is not one.
    let res = anonymous
        .post(app.url("Patient"))
        .header("content-type", "application/fhir+json")
        .body(json!({ "resourceType": "Patient" }).to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 401, "login").await;
    let forged = format!("{}.{}", opengp::config::DEFAULT_PRACTICE, "0".repeat(64));
    for token in ["nonsense", forged.as_str()] {
        let res = authorised_client(token)
            .get(app.url("Patient"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_outcome(res, 401, "login").await;
    }
    // A session of another practice is refused there.
    let ods = gp_fhir::OdsCode::parse("B82002").unwrap_or_else(|| panic!("ODS"));
    let other = app
        .server
        .store
        .ensure_practice(&ods, "The Other Surgery", &Actor::system())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let other_token = opengp::server::full_access_session(&app.server.store, &other, "other")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let res = authorised_client(&other_token)
        .get(app.url(&format!("Patient/{id}")))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let v = assert_outcome(res, 403, "forbidden").await;
    assert!(!v.to_string().contains("Hidden"), "{v}");

    // The CapabilityStatement is public and says how to authenticate.
    let res = anonymous
        .get(app.url("metadata"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 200);
    let cs = json(res).await;
    let security = cs["rest"][0]["security"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(security.contains("/auth/login"), "{cs}");
    app.stop().await;
}

async fn sign_in_lockout_and_sign_out(app: App) {
    add_user(&app, "nurse", &["R8001", "R8003"]).await;
    // Wrong password, unknown user: the same 401.
    let wrong = assert_outcome(
        login(&app, "nurse", "not it at all", None).await,
        401,
        "login",
    )
    .await;
    let unknown = assert_outcome(login(&app, "nobody", PASSWORD, None).await, 401, "login").await;
    assert_eq!(wrong["issue"], unknown["issue"]);
    // A role the user does not hold.
    assert_outcome(
        login(&app, "nurse", PASSWORD, Some("R8000")).await,
        403,
        "forbidden",
    )
    .await;
    // The first role unless another is asked for.
    let v = json(login(&app, "nurse", PASSWORD, None).await).await;
    assert_eq!(v["role"], "R8001", "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert!(v["expires_in"].as_i64().unwrap_or(0) > 11 * 3600, "{v}");
    let v = json(login(&app, "nurse", PASSWORD, Some("R8003")).await).await;
    assert_eq!(v["role"], "R8003", "{v}");

    // Sign-out ends this session only; sign-out everywhere ends them all.
    let first = signed_in(&app, "nurse", None).await;
    let second = signed_in(&app, "nurse", None).await;
    let third = signed_in(&app, "nurse", None).await;
    assert_eq!(status(&first, "GET", &app.url("Patient"), None).await, 200);
    let out = format!("{}/auth/logout", root(&app));
    assert_eq!(status(&first, "POST", &out, None).await, 204);
    assert_eq!(status(&first, "GET", &app.url("Patient"), None).await, 401);
    assert_eq!(status(&second, "GET", &app.url("Patient"), None).await, 200);
    let everywhere = format!("{}/auth/logout-everywhere", root(&app));
    assert_eq!(status(&second, "POST", &everywhere, None).await, 204);
    assert_eq!(status(&second, "GET", &app.url("Patient"), None).await, 401);
    assert_eq!(status(&third, "GET", &app.url("Patient"), None).await, 401);

    // Five failures in a row lock the account: then even the right
    // password is refused, with the same answer.
    for _ in 0..gp_store::accounts::MAX_FAILURES {
        assert_eq!(
            login(&app, "nurse", "guess guess guess", None)
                .await
                .status(),
            401
        );
    }
    let locked = assert_outcome(login(&app, "nurse", PASSWORD, None).await, 401, "login").await;
    assert_eq!(locked["issue"], wrong["issue"]);
    app.stop().await;
}

/// What is tried, by whom, how, where, with what body, and the status due.
type Case<'a> = (
    &'a str,
    &'a reqwest::Client,
    &'a str,
    String,
    Option<&'a Value>,
    u16,
);

async fn roles_allow_only_their_activities(app: App) {
    add_user(&app, "gp", &["R8000"]).await;
    add_user(&app, "nurse", &["R8001"]).await;
    add_user(&app, "reception", &["R8009"]).await;
    let gp = signed_in(&app, "gp", None).await;
    let nurse = signed_in(&app, "nurse", None).await;
    let reception = signed_in(&app, "reception", None).await;

    let patient = json!({ "resourceType": "Patient", "name": [{ "family": "Booked" }] });
    assert_eq!(
        status(&reception, "POST", &app.url("Patient"), Some(&patient)).await,
        201
    );
    let pid = app.create(&patient).await;
    let obs = json!({ "resourceType": "Observation", "status": "final", "code": { "text": "BP" },
                      "subject": { "reference": format!("Patient/{pid}") } });
    let rx = json!({ "resourceType": "MedicationRequest", "status": "active", "intent": "order",
                     "medicationCodeableConcept": { "text": "Amoxicillin" },
                     "subject": { "reference": format!("Patient/{pid}") } });
    let audit = json!({ "resourceType": "AuditEvent", "type": { "code": "rest" },
                        "recorded": "2025-01-01T00:00:00Z", "agent": [{ "requestor": true }],
                        "source": { "observer": { "display": "x" } } });
    let practitioner = json!({ "resourceType": "Practitioner" });
    let oid = app.create(&obs).await;
    let table: Vec<Case<'_>> = vec![
        (
            "reception reads the register",
            &reception,
            "GET",
            app.url(&format!("Patient/{pid}")),
            None,
            200,
        ),
        (
            "reception cannot read the record",
            &reception,
            "GET",
            app.url(&format!("Observation/{oid}")),
            None,
            403,
        ),
        (
            "reception cannot search the record",
            &reception,
            "GET",
            app.url("Observation"),
            None,
            403,
        ),
        (
            "reception cannot search the record through _has",
            &reception,
            "GET",
            app.url("Patient?_has:Observation:subject:code:text=BP"),
            None,
            403,
        ),
        (
            "nor the trail through _has",
            &reception,
            "GET",
            app.url("Patient?_has:AuditEvent:patient:action=R"),
            None,
            403,
        ),
        (
            "reception searches the register through a chain",
            &reception,
            "GET",
            app.url("Patient?general-practitioner:Practitioner.name=x"),
            None,
            200,
        ),
        (
            "reception cannot see everything",
            &reception,
            "GET",
            app.url(&format!("Patient/{pid}/$everything")),
            None,
            403,
        ),
        (
            "reception cannot record",
            &reception,
            "POST",
            app.url("Observation"),
            Some(&obs),
            403,
        ),
        (
            "reception cannot prescribe",
            &reception,
            "POST",
            app.url("MedicationRequest"),
            Some(&rx),
            403,
        ),
        (
            "the nurse records",
            &nurse,
            "POST",
            app.url("Observation"),
            Some(&obs),
            201,
        ),
        (
            "the nurse cannot prescribe",
            &nurse,
            "POST",
            app.url("MedicationRequest"),
            Some(&rx),
            403,
        ),
        (
            "the nurse cannot delete a prescription",
            &nurse,
            "DELETE",
            app.url("MedicationRequest/x"),
            None,
            403,
        ),
        (
            "the GP prescribes",
            &gp,
            "POST",
            app.url("MedicationRequest"),
            Some(&rx),
            201,
        ),
        (
            "the GP reads the record",
            &gp,
            "GET",
            app.url(&format!("Observation/{oid}")),
            None,
            200,
        ),
        (
            "nobody writes the audit trail",
            &gp,
            "POST",
            app.url("AuditEvent"),
            Some(&audit),
            403,
        ),
        (
            "the GP cannot read the audit trail",
            &gp,
            "GET",
            app.url("AuditEvent"),
            None,
            403,
        ),
        (
            "the GP cannot administer staff records",
            &gp,
            "POST",
            app.url("Practitioner"),
            Some(&practitioner),
            403,
        ),
    ];
    for (what, client, method, url, body, want) in &table {
        assert_eq!(status(client, method, url, *body).await, *want, "{what}");
    }
    // A refusal is a FHIR OperationOutcome.
    let res = reception
        .get(app.url("Observation"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 403, "forbidden").await;
    // A Bundle with one entry the role may not run is refused whole.
    let batch = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "resource": patient, "request": { "method": "POST", "url": "Patient" } },
        { "resource": obs, "request": { "method": "POST", "url": "Observation" } },
    ]});
    let res = reception
        .post(app.url(""))
        .header("content-type", "application/fhir+json")
        .body(batch.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 403, "forbidden").await;
    // What _include would bring is left out where the role may not read it.
    let b = json(
        reception
            .get(app.url(&format!(
                "Patient?_id={pid}&_revinclude=Observation:subject"
            )))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .await;
    let types: Vec<&str> = b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["resource"]["resourceType"].as_str())
        .collect();
    assert_eq!(types, ["Patient"], "{b}");
    app.stop().await;
}

/// Rate limits (issue 5, web security): sign-in attempts from one address
/// past the limit (30 a minute by default) answer 429 with `Retry-After`
/// and an OperationOutcome `throttled`, on the API and the web app's form
/// alike, before the password is checked; another account from the same
/// address is held back too (password spraying). Requests without a valid
/// session past their limit (120) are throttled before they reach the
/// store, so a flood does not grow the audit trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sign_ins_and_refusals_are_rate_limited_per_address() {
    let app = crate::support::spawn_app_on(crate::support::Db::Sqlite, 1 << 20).await;
    add_user(&app, "spray-target", &["R8000"]).await;
    let limit = gp_api::limit::LimitConfig::default();
    // Wrong passwords until the limit answers. Each attempt hashes a
    // password, and on a loaded machine the attempts take long enough for
    // the bucket to refill a little (one attempt every two seconds), so
    // the refusal may come some attempts after the limit, never before.
    let mut codes = Vec::new();
    for i in 0..limit.sign_ins_per_minute * 3 {
        let user = if i % 2 == 0 { "spray-target" } else { "nobody" };
        let code = login(&app, user, "guess", None).await.status().as_u16();
        codes.push(code);
        if code != 401 {
            break;
        }
    }
    let (last, allowed) = codes.split_last().unwrap_or_else(|| panic!("no attempts"));
    assert_eq!(*last, 429, "{codes:?}");
    assert!(allowed.iter().all(|c| *c == 401), "{codes:?}");
    assert!(
        allowed.len() >= limit.sign_ins_per_minute as usize,
        "{codes:?}"
    );
    // Past the limit, even the right password waits.
    let res = login(&app, "spray-target", PASSWORD, None).await;
    let wait: u64 = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    assert!((1..=61).contains(&wait), "Retry-After {wait}");
    let o = assert_outcome(res, 429, "throttled").await;
    assert!(o.to_string().contains("too many"), "{o}");
    let form = reqwest::Client::new()
        .post(format!("{}/app/login", root(&app)))
        .form(&[
            ("practice", opengp::config::DEFAULT_PRACTICE),
            ("username", "spray-target"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("web sign-in: {e}"));
    assert_eq!(form.status(), 429);
    let page = form.text().await.unwrap_or_default();
    assert!(page.contains("too many attempts to sign in"), "{page}");

    // Refusals: a session already known to the server goes on working
    // meanwhile (one it has not seen in the last 30 s would wait too).
    let anon = reqwest::Client::new();
    let url = format!("{}/Patient", app.server.base);
    let res = app
        .client
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 200);
    let mut refused = [0usize; 2];
    for _ in 0..limit.refusals_per_minute + 30 {
        match anon.get(&url).send().await.map(|r| r.status().as_u16()) {
            Ok(401) => refused[0] += 1,
            Ok(429) => refused[1] += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(refused, [limit.refusals_per_minute as usize + 1, 29]);
    let res = app
        .client
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 200);
    // Audited: each failed sign-in and each refusal up to the limit; the
    // throttled ones are not, one by one.
    let trail = json(
        app.client
            .get(format!(
                "{}/AuditEvent?type=http://dicom.nema.org/resources/ontology/DCM|110114&outcome=4&_summary=count",
                app.server.base
            ))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .await;
    assert_eq!(
        trail["total"],
        json!(limit.sign_ins_per_minute + limit.refusals_per_minute + 1),
        "{trail}"
    );
    app.stop().await;
}

/// Behind a reverse proxy the server names (`--trusted-proxy`), the
/// client is the last address `X-Forwarded-For` gives that is not a
/// trusted proxy: the audit trail records it and the sign-in limit counts
/// per client, not per proxy. Without a trusted proxy the header is
/// ignored (anyone could send one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_names_the_client_in_the_trail_and_the_limits() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let trusted =
        vec![gp_api::proxy::parse_trusted("127.0.0.0/8").unwrap_or_else(|e| panic!("{e}"))];
    let limits = gp_api::limit::LimitConfig {
        sign_ins_per_minute: 2,
        ..Default::default()
    };
    for (name, trusted) in [("behind", trusted), ("direct", Vec::new())] {
        let cfg = opengp::config::ServerConfig {
            limits,
            trusted_proxies: trusted.clone(),
            ..crate::support::server_config(&dir.path().join(name))
        };
        let server = opengp::server::Server::bind(&cfg)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let (root, base) = (format!("http://{}", server.addr), server.base_url());
        let auditor =
            opengp::server::full_access_session(&server.store, &server.practice, "auditor")
                .await
                .unwrap_or_else(|e| panic!("{e:#}"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let attempt = |forwarded: &'static str| {
            let root = root.clone();
            async move {
                reqwest::Client::new()
                    .post(format!("{root}/auth/login"))
                    .header("x-forwarded-for", forwarded)
                    .json(&json!({
                        "practice": opengp::config::DEFAULT_PRACTICE,
                        "username": "nobody",
                        "password": "guess",
                    }))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{e}"))
                    .status()
                    .as_u16()
            }
        };
        // The client forges an entry on the left; the proxy appends the
        // address it saw.
        let first = [
            attempt("198.51.100.9, 203.0.113.7").await,
            attempt("198.51.100.9, 203.0.113.7").await,
            attempt("198.51.100.9, 203.0.113.7").await,
            attempt("203.0.113.8").await,
        ];
        let addresses: std::collections::BTreeSet<String> = reqwest::Client::new()
            .get(format!("{base}/AuditEvent?_count=100"))
            .bearer_auth(&auditor)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .json::<serde_json::Value>()
            .await
            .unwrap_or_else(|e| panic!("{e}"))["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["resource"]["agent"][0]["network"]["address"].as_str())
            .map(str::to_owned)
            .collect();
        if name == "behind" {
            assert_eq!(first, [401, 401, 429, 401], "per client, not per proxy");
            assert!(
                addresses.contains("203.0.113.7") && addresses.contains("203.0.113.8"),
                "{addresses:?}"
            );
            assert!(!addresses.contains("198.51.100.9"), "{addresses:?}");
        } else {
            assert_eq!(first, [401, 401, 429, 429], "one peer, one bucket");
            assert!(
                addresses.iter().all(|a| a == "127.0.0.1"),
                "the header is ignored: {addresses:?}"
            );
        }
        let _ = stop.send(());
        running
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
}
