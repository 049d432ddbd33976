//! SMART on FHIR App Launch 2.x (hl7.org/fhir/smart-app-launch): the
//! discovery document, the authorization code flow with PKCE through the
//! web app's sign-in and approval page (the test is the user agent),
//! refresh, introspection (RFC 7662), revocation (RFC 7009), client
//! credentials with `private_key_jwt` (RFC 7523), scopes narrowed by the
//! user's role and confined to the patient in context, and the audit
//! trail naming the app. `fhirclient_standalone_launch` runs a real SMART
//! client from another project, the PyPI package `fhirclient`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::auth::{PASSWORD, add_user};
use crate::support::{App, assert_outcome, authorised_client, json, opengp_bin};

crate::on_both_backends!(
    authorization_code_with_pkce_refresh_introspect_revoke,
    client_credentials_with_private_key_jwt,
    patient_scopes_confine_every_interaction,
    codes_launches_and_assertion_ids_survive_a_restart,
    a_practice_manager_changes_and_disables_an_app,
    query_restricted_scopes_narrow_reads_and_searches,
    openid_fhir_user_and_refresh_scopes,
    an_app_is_launched_from_the_record,
    an_app_cannot_break_the_glass,
    an_ehr_launch_asks_for_the_launch_scope,
);

const REDIRECT: &str = "http://127.0.0.1:9/callback";

fn root(app: &App) -> String {
    format!("http://{}", app.server.addr)
}

fn smart_url(app: &App, path: &str) -> String {
    format!(
        "{}/practices/{}/smart/{path}",
        root(app),
        opengp::config::DEFAULT_PRACTICE
    )
}

/// A client that does not follow redirects (the test reads them).
fn agent() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("client: {e}"))
}

/// Registers an app through the API as the test's full-access account
/// (which holds administer-users).
async fn register(app: &App, body: Value) -> Value {
    let res = app
        .client
        .post(smart_url(app, "apps"))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("register: {e}"));
    assert_eq!(res.status(), 201, "registered");
    json(res).await
}

/// Signs `user` in to the web app: its session cookie.
async fn web_sign_in(app: &App, user: &str) -> String {
    let res = agent()
        .post(format!("{}/app/login", root(app)))
        .form(&[
            ("practice", opengp::config::DEFAULT_PRACTICE),
            ("username", user),
            ("password", PASSWORD),
            ("next", "/app"),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("sign in: {e}"));
    assert_eq!(res.status(), 303, "signed in");
    res.headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie"))
        .to_owned()
}

/// A PKCE pair (RFC 7636): verifier and S256 challenge.
pub(crate) fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 48]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn authorize_url(app: &App, client_id: &str, scope: &str, challenge: &str) -> String {
    let q = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", scope),
        ("state", "st-123"),
        ("aud", &app.server.base),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ])
    .unwrap_or_default();
    format!("{}/app/smart/authorize?{q}", root(app))
}

fn query_of(url: &str) -> HashMap<String, String> {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    serde_urlencoded::from_str(q).unwrap_or_default()
}

/// Acts as the user's browser on the authorization page: opens it with
/// the session, searches for the patient by name, approves with them
/// chosen; the URL the browser is sent back to.
pub(crate) async fn approve(
    root: &str,
    cookie: &str,
    url: &str,
    patient: Option<(&str, &str)>,
) -> String {
    let ua = agent();
    let page_url = match patient {
        Some((_, name)) => format!("{url}&patient_search={name}"),
        None => url.to_owned(),
    };
    let res = ua
        .get(&page_url)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap_or_else(|e| panic!("authorize page: {e}"));
    assert_eq!(res.status(), 200, "the approval page");
    let csp = res
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let html = res.text().await.unwrap_or_default();
    let csrf = html
        .split("name=\"_csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no CSRF token on the page"))
        .to_owned();
    let mut form: Vec<(String, String)> = query_of(url).into_iter().collect();
    form.push(("_csrf".into(), csrf));
    form.push(("decision".into(), "approve".into()));
    if let Some((id, _)) = patient {
        assert!(
            html.contains(&format!("value=\"{id}\"")),
            "the patient search offers the patient"
        );
        form.push(("patient".into(), id.into()));
    }
    let res = ua
        .post(format!("{root}/app/smart/authorize"))
        .header("cookie", cookie)
        .form(&form)
        .send()
        .await
        .unwrap_or_else(|e| panic!("approve: {e}"));
    assert_eq!(res.status(), 303, "approved");
    res.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn token(app: &App, form: &[(&str, &str)]) -> reqwest::Response {
    reqwest::Client::new()
        .post(smart_url(app, "token"))
        .form(form)
        .send()
        .await
        .unwrap_or_else(|e| panic!("token: {e}"))
}

async fn oauth_error(res: reqwest::Response, status: u16, error: &str) {
    assert_eq!(res.status().as_u16(), status);
    let v = json(res).await;
    assert_eq!(v["error"], error, "{v}");
}

/// A code for `client_id`, approved by the user of `cookie` with `patient`.
async fn code_for(
    app: &App,
    cookie: &str,
    client_id: &str,
    scope: &str,
    patient: Option<(&str, &str)>,
) -> (String, String) {
    let (verifier, challenge) = pkce();
    let url = authorize_url(app, client_id, scope, &challenge);
    let back = approve(&root(app), cookie, &url, patient).await;
    assert!(back.starts_with(REDIRECT), "{back}");
    let q = query_of(&back);
    assert_eq!(q["state"], "st-123");
    (q["code"].clone(), verifier)
}

async fn status_of(client: &reqwest::Client, url: &str) -> u16 {
    client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .status()
        .as_u16()
}

async fn introspect(app: &App, token: &str) -> Value {
    json(
        app.client
            .post(smart_url(app, "introspect"))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap_or_else(|e| panic!("introspect: {e}")),
    )
    .await
}

/// Two patients, each with an Observation; a Condition for the first.
async fn two_patients(app: &App) -> (String, String, String, String) {
    let a = app
        .create(
            &json!({"resourceType": "Patient", "name": [{"family": "Aardvark", "given": ["Ann"]}]}),
        )
        .await;
    let b = app
        .create(
            &json!({"resourceType": "Patient", "name": [{"family": "Badger", "given": ["Bob"]}]}),
        )
        .await;
    let obs = |p: &str| {
        json!({"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "http://snomed.info/sct", "code": "27113001"}]},
               "subject": {"reference": format!("Patient/{p}")},
               "valueQuantity": {"value": 70, "unit": "kg"}})
    };
    let oa = app.create(&obs(&a)).await;
    let ob = app.create(&obs(&b)).await;
    app.create(&json!({"resourceType": "Condition",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
        "subject": {"reference": format!("Patient/{a}")}}))
        .await;
    (a, b, oa, ob)
}

async fn authorization_code_with_pkce_refresh_introspect_revoke(app: App) {
    let (a, b, _oa, ob) = two_patients(&app).await;
    add_user(&app, "gp", &["R8000"]).await;
    add_user(&app, "reception", &["R8009"]).await;
    let registered =
        "launch/patient patient/Patient.rs patient/Observation.rs user/*.read offline_access";
    let scope = "launch/patient patient/Patient.rs patient/Observation.rs offline_access";
    let reg = register(
        &app,
        json!({"name": "Weight chart", "kind": "public", "scope": registered, "redirect_uris": [REDIRECT]}),
    )
    .await;
    let client_id = reg["client_id"].as_str().unwrap_or_default().to_owned();

    // Discovery.
    let conf = app
        .get_json(&app.url(".well-known/smart-configuration"))
        .await;
    assert_eq!(conf["token_endpoint"], smart_url(&app, "token"));
    assert_eq!(conf["code_challenge_methods_supported"], json!(["S256"]));
    for cap in [
        "launch-standalone",
        "permission-v2",
        "client-confidential-asymmetric",
    ] {
        assert!(
            conf["capabilities"]
                .as_array()
                .is_some_and(|c| c.contains(&json!(cap))),
            "{cap}"
        );
    }
    let meta = app.get_json(&app.url("metadata")).await;
    assert_eq!(
        meta["rest"][0]["security"]["service"][0]["coding"][0]["code"],
        "SMART-on-FHIR"
    );

    let cookie = web_sign_in(&app, "gp").await;
    let ua = agent();
    // A redirect URI the app did not register: told on the page, never redirected.
    let (_, challenge) = pkce();
    let bad =
        authorize_url(&app, &client_id, scope, &challenge).replace("127.0.0.1%3A9", "evil.example");
    let res = ua
        .get(&bad)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 400, "unregistered redirect_uri");
    // No PKCE: sent back to the app with an error.
    let no_pkce = authorize_url(&app, &client_id, scope, &challenge).replace(
        "&code_challenge_method=S256",
        "&code_challenge_method=plain",
    );
    let res = ua
        .get(&no_pkce)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 303);
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        location.starts_with(REDIRECT) && location.contains("error=invalid_request"),
        "{location}"
    );

    // PKCE failure: a wrong verifier is refused (and the code is spent).
    let (code, _) = code_for(&app, &cookie, &client_id, scope, Some((&a, "Aardvark"))).await;
    let (_, other_verifier) = pkce();
    let base = [
        ("grant_type", "authorization_code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", REDIRECT),
    ];
    let with = |extra: &[(&'static str, String)]| {
        let mut f: Vec<(&str, String)> = base.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        f.extend(extra.iter().cloned());
        f
    };
    let f = with(&[("code", code.clone()), ("code_verifier", other_verifier)]);
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    oauth_error(token(&app, &f).await, 400, "invalid_grant").await;

    // A wrong redirect_uri at the token endpoint.
    let (code, verifier) = code_for(&app, &cookie, &client_id, scope, Some((&a, "Aardvark"))).await;
    let f = [
        ("grant_type", "authorization_code"),
        ("client_id", &client_id),
        ("redirect_uri", "http://127.0.0.1:9/other"),
        ("code", &code),
        ("code_verifier", &verifier),
    ];
    oauth_error(token(&app, &f).await, 400, "invalid_grant").await;

    // The exchange, then the same code again.
    let (code, verifier) = code_for(&app, &cookie, &client_id, scope, Some((&a, "Aardvark"))).await;
    let f = [
        ("grant_type", "authorization_code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", REDIRECT),
        ("code", &code),
        ("code_verifier", &verifier),
    ];
    let res = token(&app, &f).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let t = json(res).await;
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["patient"], a.as_str());
    assert_eq!(t["scope"], scope);
    assert!(
        t["expires_in"].as_i64().is_some_and(|s| s > 0 && s <= 3600),
        "{t}"
    );
    let access = t["access_token"].as_str().unwrap_or_default().to_owned();
    let refresh = t["refresh_token"].as_str().unwrap_or_default().to_owned();
    assert!(!refresh.is_empty(), "offline_access gives a refresh token");
    oauth_error(token(&app, &f).await, 400, "invalid_grant").await;

    // Within scope, confined to the patient in context: searches count
    // only their entries (the compartment is part of the query).
    let as_app = authorised_client(&access);
    let found = app_json(&as_app, &app.url("Observation")).await;
    assert_eq!(found["total"], 1, "only patient A's observation: {found}");
    let found = app_json(
        &as_app,
        &app.url(&format!("Observation?subject=Patient/{b}")),
    )
    .await;
    assert_eq!(found["total"], 0);
    assert_eq!(
        status_of(&as_app, &app.url(&format!("Patient/{a}"))).await,
        200
    );
    // Outside it: another patient's records, a type not granted, writes.
    for path in [
        format!("Patient/{b}"),
        format!("Observation/{ob}"),
        format!("Condition?patient={a}"),
        "Patient".to_owned(),
    ] {
        let res = as_app
            .get(app.url(&path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if path == "Patient" {
            // A search of Patient finds the patient in context only.
            assert_eq!(json(res).await["total"], 1);
            continue;
        }
        assert_outcome(res, 403, "forbidden").await;
    }
    let res = as_app
        .post(app.url("Observation"))
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": format!("Patient/{a}")}}).to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 403, "forbidden").await;

    // Introspection.
    let i = introspect(&app, &access).await;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["client_id"], client_id.as_str());
    assert_eq!(i["patient"], a.as_str());
    assert_eq!(i["username"], "gp");
    assert_eq!(introspect(&app, "Y90001.nothing").await["active"], false);

    // Refresh: a new access token, the same grant.
    let res = token(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", &refresh),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    let t2 = json(res).await;
    let access2 = t2["access_token"].as_str().unwrap_or_default().to_owned();
    assert_ne!(access2, access);
    assert_eq!(t2["patient"], a.as_str());
    assert_eq!(
        status_of(
            &authorised_client(&access2),
            &app.url(&format!("Patient/{a}"))
        )
        .await,
        200
    );

    // The trail names the app with the user.
    let events = app
        .get_json(&app.url(&format!("AuditEvent?altid={client_id}&_count=100")))
        .await;
    assert!(events["total"].as_u64().is_some_and(|n| n >= 5), "{events}");
    let ev = &events["entry"][0]["resource"];
    let agents = ev["agent"].as_array().cloned().unwrap_or_default();
    assert!(agents.iter().any(|g| g["altId"] == "gp"), "{ev}");
    assert!(
        agents
            .iter()
            .any(|g| g["who"]["identifier"]["value"] == client_id.as_str()),
        "{ev}"
    );

    // Revocation by the client: every token of the grant stops at once.
    let res = reqwest::Client::new()
        .post(smart_url(&app, "revoke"))
        .form(&[
            ("client_id", client_id.as_str()),
            ("token", refresh.as_str()),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 200);
    for t in [&access, &access2] {
        let res = authorised_client(t)
            .get(app.url(&format!("Patient/{a}")))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_outcome(res, 401, "login").await;
        assert_eq!(introspect(&app, t).await["active"], false);
    }
    oauth_error(
        token(
            &app,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &client_id),
                ("refresh_token", &refresh),
            ],
        )
        .await,
        400,
        "invalid_grant",
    )
    .await;

    // Narrowed by the role: a receptionist's user/*.read reaches
    // demographics, never the clinical record.
    let reception = web_sign_in(&app, "reception").await;
    let (code, verifier) = code_for(&app, &reception, &client_id, "user/*.read", None).await;
    let t = json(
        token(
            &app,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &client_id),
                ("redirect_uri", REDIRECT),
                ("code", &code),
                ("code_verifier", &verifier),
            ],
        )
        .await,
    )
    .await;
    let as_reception = authorised_client(t["access_token"].as_str().unwrap_or_default());
    assert_eq!(
        status_of(&as_reception, &app.url(&format!("Patient/{b}"))).await,
        200
    );
    let res = as_reception
        .get(app.url("Observation"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 403, "forbidden").await;
    app.stop().await;
}

async fn app_json(client: &reqwest::Client, url: &str) -> Value {
    let res = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(res.status(), 200, "{url}");
    json(res).await
}

/// A client assertion (RFC 7523) signed with `pem`.
pub(crate) fn assertion(pem: &str, client_id: &str, aud: &str, exp_in: i64, jti: &str) -> String {
    let key =
        jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let claims =
        json!({"iss": client_id, "sub": client_id, "aud": aud, "exp": now + exp_in, "jti": jti});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384),
        &claims,
        &key,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn client_credentials(app: &App, jwt: &str, scope: &str) -> reqwest::Response {
    token(
        app,
        &[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", jwt),
        ],
    )
    .await
}

async fn client_credentials_with_private_key_jwt(app: App) {
    let (a, _, _, _) = two_patients(&app).await;
    let (pem, jwks) = gp_api::smart::generate_key().unwrap_or_else(|e| panic!("{e}"));
    let jwks: Value = serde_json::from_str(&jwks).unwrap_or_default();
    let reg = register(
        &app,
        json!({"name": "Recall service", "kind": "backend", "scope": "system/Patient.rs system/Observation.rs", "jwks": jwks}),
    )
    .await;
    let client_id = reg["client_id"].as_str().unwrap_or_default().to_owned();
    let aud = smart_url(&app, "token");

    let jwt = assertion(&pem, &client_id, &aud, 240, "jti-1");
    let res = client_credentials(&app, &jwt, "system/Observation.rs system/Condition.rs").await;
    assert_eq!(res.status(), 200);
    let t = json(res).await;
    assert_eq!(
        t["scope"], "system/Observation.rs",
        "only what was registered"
    );
    assert!(t.get("refresh_token").is_none());
    let as_service = authorised_client(t["access_token"].as_str().unwrap_or_default());
    let found = app_json(&as_service, &app.url("Observation")).await;
    assert_eq!(found["total"], 2, "system/ scopes reach every patient");
    let res = as_service
        .get(app.url(&format!("Patient/{a}")))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 403, "forbidden").await;
    let res = as_service
        .get(app.url("AuditEvent"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 403, "forbidden").await;

    // Refused: the same jti again, the wrong audience, an expiry too far
    // off, another key's signature, an unknown client.
    oauth_error(
        client_credentials(&app, &jwt, "system/Observation.rs").await,
        401,
        "invalid_client",
    )
    .await;
    let wrong_aud = assertion(&pem, &client_id, &app.server.base, 240, "jti-2");
    oauth_error(
        client_credentials(&app, &wrong_aud, "system/Observation.rs").await,
        401,
        "invalid_client",
    )
    .await;
    let too_long = assertion(&pem, &client_id, &aud, 3600, "jti-3");
    oauth_error(
        client_credentials(&app, &too_long, "system/Observation.rs").await,
        401,
        "invalid_client",
    )
    .await;
    let expired = assertion(&pem, &client_id, &aud, -600, "jti-4");
    oauth_error(
        client_credentials(&app, &expired, "system/Observation.rs").await,
        401,
        "invalid_client",
    )
    .await;
    let (other_pem, _) = gp_api::smart::generate_key().unwrap_or_else(|e| panic!("{e}"));
    let forged = assertion(&other_pem, &client_id, &aud, 240, "jti-5");
    oauth_error(
        client_credentials(&app, &forged, "system/Observation.rs").await,
        401,
        "invalid_client",
    )
    .await;
    let stranger = assertion(&pem, "no-such-client", &aud, 240, "jti-6");
    oauth_error(
        client_credentials(&app, &stranger, "system/Observation.rs").await,
        401,
        "invalid_client",
    )
    .await;

    // The service's reads are audited under the client.
    let events = app
        .get_json(&app.url(&format!("AuditEvent?altid={client_id}&subtype=search-type")))
        .await;
    assert!(events["total"].as_u64().is_some_and(|n| n >= 1), "{events}");
    app.stop().await;
}

/// An access token past its expiry is 401, like an expired session.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_access_token_is_401() {
    let app =
        crate::support::spawn_app_on(crate::support::Db::Sqlite, crate::support::TEST_MAX_BODY)
            .await;
    let (pem, jwks) = gp_api::smart::generate_key().unwrap_or_else(|e| panic!("{e}"));
    let jwks: Value = serde_json::from_str(&jwks).unwrap_or_default();
    let reg = register(
        &app,
        json!({"name": "S", "kind": "backend", "scope": "system/*.rs", "jwks": jwks}),
    )
    .await;
    let client_id = reg["client_id"].as_str().unwrap_or_default().to_owned();
    let jwt = assertion(&pem, &client_id, &smart_url(&app, "token"), 60, "j");
    let t = json(client_credentials(&app, &jwt, "system/*.rs").await).await;
    let access = t["access_token"].as_str().unwrap_or_default().to_owned();
    let db = rusqlite::Connection::open(app.data_dir().join("opengp.db"))
        .unwrap_or_else(|e| panic!("{e}"));
    db.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    db.execute("UPDATE smart_token SET expires_at = 0", [])
        .unwrap_or_else(|e| panic!("{e}"));
    let res = authorised_client(&access)
        .get(app.url("Patient"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 401, "login").await;
    assert_eq!(introspect(&app, &access).await["active"], false);
    app.stop().await;
}

/// `opengp app add` registers a backend service and writes its new private
/// key; the server then grants it a token for an assertion signed with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_creates_a_backend_client() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let key = dir.path().join("service-key.pem");
    let out = Command::new(opengp_bin())
        .args([
            "app",
            "add",
            "--practice",
            opengp::config::DEFAULT_PRACTICE,
            "--data",
        ])
        .arg(dir.path().join("data"))
        .args([
            "--name",
            "Nightly extract",
            "--scope",
            "system/*.rs",
            "--key-out",
        ])
        .arg(&key)
        .output()
        .unwrap_or_else(|e| panic!("opengp: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: HashMap<&str, &str> = stdout.lines().filter_map(|l| l.split_once('=')).collect();
    let client_id = lines
        .get("client_id")
        .copied()
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_owned();
    assert_eq!(lines.get("private_key").copied(), key.to_str());
    let pem = std::fs::read_to_string(&key).unwrap_or_else(|e| panic!("{e}"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key)
            .map(|m| m.permissions().mode())
            .unwrap_or_default();
        assert_eq!(mode & 0o777, 0o600, "the private key is the owner's only");
    }
    let server =
        opengp::server::spawn_for_test(&dir.path().join("data"), crate::support::TEST_MAX_BODY)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    let token_url = format!(
        "http://{}/practices/{}/smart/token",
        server.addr,
        opengp::config::DEFAULT_PRACTICE
    );
    let jwt = assertion(&pem, &client_id, &token_url, 120, "cli-1");
    let res = reqwest::Client::new()
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "system/*.rs"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", jwt.as_str()),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 200);
    let t = json(res).await;
    let res = authorised_client(t["access_token"].as_str().unwrap_or_default())
        .get(format!("{}/Patient", server.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 200);
    server.stop().await.unwrap_or_else(|e| panic!("{e:#}"));

    // `opengp app update --disable`: the next server refuses its token and
    // its assertions.
    let out = Command::new(opengp_bin())
        .args([
            "app",
            "update",
            "--practice",
            opengp::config::DEFAULT_PRACTICE,
            "--data",
        ])
        .arg(dir.path().join("data"))
        .args(["--client-id", &client_id, "--disable"])
        .output()
        .unwrap_or_else(|e| panic!("opengp: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("disabled=true"));
    let server =
        opengp::server::spawn_for_test(&dir.path().join("data"), crate::support::TEST_MAX_BODY)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    let res = authorised_client(t["access_token"].as_str().unwrap_or_default())
        .get(format!("{}/Patient", server.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 401, "login").await;
    server.stop().await.unwrap_or_else(|e| panic!("{e:#}"));
}

/// The Python that has the PyPI package `fhirclient`, which `cargo xtask
/// test` installs into a virtual environment under `target/`.
fn smart_python() -> String {
    std::env::var("OPENGP_SMART_PYTHON").unwrap_or_else(|_| {
        panic!("OPENGP_SMART_PYTHON is not set: run the suite with `cargo xtask test`, which installs fhirclient")
    })
}

/// A real SMART client from another project, the PyPI package
/// `fhirclient`, does a standalone launch with `launch/patient`: it reads
/// the CapabilityStatement's SMART URIs, builds the authorization URL
/// (PKCE S256), the test signs in, picks the patient and approves as the
/// user's browser would, fhirclient exchanges the code at the token
/// endpoint, reads the patient and their observations, and is refused
/// (403) a type it was not granted and another patient.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fhirclient_standalone_launch() {
    let python = smart_python();
    let app =
        crate::support::spawn_app_on(crate::support::Db::Sqlite, crate::support::TEST_MAX_BODY)
            .await;
    let (a, b, _, _) = two_patients(&app).await;
    add_user(&app, "gp", &["R8000"]).await;
    let scope = "launch/patient patient/Patient.read patient/Observation.rs";
    let reg = register(
        &app,
        json!({"name": "fhirclient", "kind": "public", "scope": scope, "redirect_uris": [REDIRECT]}),
    )
    .await;
    let client_id = reg["client_id"].as_str().unwrap_or_default().to_owned();
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/smart_client.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .args([
            client_id.as_str(),
            app.server.base.as_str(),
            REDIRECT,
            "patient/Patient.read patient/Observation.rs",
            b.as_str(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python}: {e}"));
    let mut stdin = child.stdin.take().unwrap_or_else(|| panic!("stdin"));
    let mut lines = BufReader::new(child.stdout.take().unwrap_or_else(|| panic!("stdout"))).lines();
    let mut next = move || -> Value {
        let line = lines.next().and_then(Result::ok).unwrap_or_default();
        serde_json::from_str(&line).unwrap_or(Value::Null)
    };
    let first = tokio::task::block_in_place(&mut next);
    let Some(url) = first["authorize_url"].as_str().map(str::to_owned) else {
        let _ = child.kill();
        let err = child
            .wait_with_output()
            .map(|o| String::from_utf8_lossy(&o.stderr).to_string())
            .unwrap_or_default();
        panic!("fhirclient gave no authorization URL: {first}\n{err}")
    };
    let q = query_of(&url);
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["scope"].contains("launch/patient"), "{url}");
    let cookie = web_sign_in(&app, "gp").await;
    let back = approve(&root(&app), &cookie, &url, Some((&a, "Aardvark"))).await;
    writeln!(stdin, "{}", json!({"callback": back})).unwrap_or_else(|e| panic!("{e}"));
    drop(stdin);
    let result = tokio::task::block_in_place(&mut next);
    let output =
        tokio::task::block_in_place(|| child.wait_with_output()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        output.status.success(),
        "fhirclient script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(result["patient_id"], a.as_str(), "{result}");
    assert_eq!(result["family"], "Aardvark", "{result}");
    assert_eq!(result["observations"], 1, "{result}");
    assert_eq!(result["condition_search"], 403, "{result}");
    assert_eq!(result["other_patient"], 403, "{result}");
    // Its reads are in the trail under the app.
    let events = app
        .get_json(&app.url(&format!("AuditEvent?altid={client_id}&outcome=0")))
        .await;
    assert!(events["total"].as_u64().is_some_and(|n| n >= 2), "{events}");
    app.stop().await;
}

/// The token endpoint counts against the sign-in rate limit: past it,
/// 429 with `Retry-After`, before any client is looked at.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_token_endpoint_is_rate_limited() {
    let app =
        crate::support::spawn_app_on(crate::support::Db::Sqlite, crate::support::TEST_MAX_BODY)
            .await;
    let mut limited = None;
    for _ in 0..60 {
        let res = token(
            &app,
            &[("grant_type", "client_credentials"), ("client_id", "guess")],
        )
        .await;
        if res.status() == 429 {
            limited = Some(res);
            break;
        }
        oauth_error(res, 401, "invalid_client").await;
    }
    let res = limited.unwrap_or_else(|| panic!("no 429 after 60 token requests"));
    assert!(res.headers().contains_key("retry-after"));
    app.stop().await;
}

/// EHR launch: a signed-in GP mints a launch context for a patient (as the
/// record page's "launch app" would); a confidential app (HTTP Basic with
/// its secret) is launched with it and gets that patient without a choice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ehr_launch_of_a_confidential_app() {
    let app =
        crate::support::spawn_app_on(crate::support::Db::Sqlite, crate::support::TEST_MAX_BODY)
            .await;
    let (a, b, _, _) = two_patients(&app).await;
    add_user(&app, "gp", &["R8000"]).await;
    let reg = register(
        &app,
        json!({"name": "Diabetes review", "kind": "confidential", "scope": "launch patient/*.rs", "redirect_uris": [REDIRECT]}),
    )
    .await;
    let client_id = reg["client_id"].as_str().unwrap_or_default().to_owned();
    let secret = reg["client_secret"].as_str().unwrap_or_default().to_owned();
    assert!(
        !secret.is_empty(),
        "a confidential app's secret is shown once"
    );

    let gp = crate::auth::signed_in(&app, "gp", None).await;
    let res = gp
        .post(smart_url(&app, "launch"))
        .form(&[("patient", a.as_str())])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 200);
    let launch = json(res).await;
    assert_eq!(launch["iss"], app.server.base.as_str());
    let launch_id = launch["launch"].as_str().unwrap_or_default().to_owned();

    let (verifier, challenge) = pkce();
    let url = format!(
        "{}&launch={launch_id}",
        authorize_url(&app, &client_id, "launch patient/*.rs", &challenge)
    );
    let cookie = web_sign_in(&app, "gp").await;
    let back = approve(&root(&app), &cookie, &url, None).await;
    let code = query_of(&back)["code"].clone();
    let exchange = [
        ("grant_type", "authorization_code"),
        ("redirect_uri", REDIRECT),
        ("code", code.as_str()),
        ("code_verifier", verifier.as_str()),
    ];
    // Without its secret the confidential app is not trusted.
    let mut without = exchange.to_vec();
    without.push(("client_id", client_id.as_str()));
    oauth_error(token(&app, &without).await, 401, "invalid_client").await;
    let res = reqwest::Client::new()
        .post(smart_url(&app, "token"))
        .basic_auth(&client_id, Some(&secret))
        .form(&exchange)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 200);
    let t = json(res).await;
    assert_eq!(t["patient"], a.as_str());
    let access = t["access_token"].as_str().unwrap_or_default().to_owned();
    let as_app = authorised_client(&access);
    assert_eq!(app_json(&as_app, &app.url("Observation")).await["total"], 1);

    // Introspection (RFC 7662) needs client authentication: none, a wrong
    // secret or an app's access token is 401; the app's secret will do.
    let introspect_url = smart_url(&app, "introspect");
    let form = [("token", access.as_str())];
    for req in [
        reqwest::Client::new().post(&introspect_url),
        reqwest::Client::new()
            .post(&introspect_url)
            .basic_auth(&client_id, Some("wrong")),
        as_app.post(&introspect_url),
    ] {
        let res = req
            .form(&form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(res.headers().contains_key("www-authenticate"));
        oauth_error(res, 401, "invalid_client").await;
    }
    let res = reqwest::Client::new()
        .post(&introspect_url)
        .basic_auth(&client_id, Some(&secret))
        .form(&form)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 200);
    let i = json(res).await;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["patient"], a.as_str(), "{i}");
    let res = as_app
        .get(app.url(&format!("Patient/{b}/$everything")))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 403, "forbidden").await;
    let everything = app_json(&as_app, &app.url(&format!("Patient/{a}/$everything"))).await;
    assert_eq!(
        everything["total"], 3,
        "the patient, their observation and condition"
    );
    // Signing out everywhere ends the apps' access the user approved too.
    let res = gp
        .post(format!("{}/auth/logout-everywhere", root(&app)))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 204);
    let res = as_app
        .get(app.url(&format!("Patient/{a}")))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 401, "login").await;
    app.stop().await;
}

/// Exchanges a code approved by `cookie`'s user for `patient`: the tokens.
async fn patient_token(
    app: &App,
    cookie: &str,
    client_id: &str,
    scope: &str,
    patient: (&str, &str),
) -> Value {
    let (code, verifier) = code_for(app, cookie, client_id, scope, Some(patient)).await;
    let res = token(
        app,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("code", &code),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    json(res).await
}

/// Sends `body` (JSON) with `method` to `path` as `client`.
async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    content_type: &str,
    body: &Value,
    extra: Option<(&str, &str)>,
) -> reqwest::Response {
    let mut req = client
        .request(method, url)
        .header("content-type", content_type)
        .body(body.to_string());
    if let Some((k, v)) = extra {
        req = req.header(k, v);
    }
    req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// A request: method, path, content type, body, an extra header.
type Request<'a> = (
    reqwest::Method,
    String,
    &'a str,
    Value,
    Option<(&'a str, &'a str)>,
);

/// A `patient/`-scoped app with write scopes reaches only the patient in
/// context, whatever the interaction: patches, conditional create, update
/// and delete, transaction and batch entries and history are checked
/// against the compartment (inside the write's transaction, so a refused
/// write leaves nothing behind) and refused with 403 and an
/// OperationOutcome outside it or outside the scopes; inside, they work.
async fn patient_scopes_confine_every_interaction(app: App) {
    let (a, b, oa, ob) = two_patients(&app).await;
    add_user(&app, "gp", &["R8000"]).await;
    let scope = "launch/patient patient/Patient.rs patient/Observation.cruds";
    let reg = register(
        &app,
        json!({"name": "Obs writer", "kind": "public", "scope": scope, "redirect_uris": [REDIRECT]}),
    )
    .await;
    let client_id = reg["client_id"].as_str().unwrap_or_default().to_owned();
    let cookie = web_sign_in(&app, "gp").await;
    let t = patient_token(&app, &cookie, &client_id, scope, (&a, "Aardvark")).await;
    let c = authorised_client(t["access_token"].as_str().unwrap_or_default());
    let fhir = "application/fhir+json";
    let obs = |p: &str, text: &str| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": text},
               "subject": {"reference": format!("Patient/{p}")}})
    };
    let get = reqwest::Method::GET;
    let (post, put, patch, delete) = (
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::PATCH,
        reqwest::Method::DELETE,
    );
    let patch_doc = json!([{"op": "replace", "path": "/status", "value": "amended"}]);
    let patch_type = "application/json-patch+json";
    let b_obs_is_untouched = || async {
        let v = app.get_json(&app.url(&format!("Observation/{ob}"))).await;
        assert_eq!(v["status"], "final", "{v}");
        assert_eq!(v["meta"]["versionId"], "1", "{v}");
    };

    // Outside the compartment: refused, and nothing written.
    let refused: Vec<Request> = vec![
        (
            patch.clone(),
            format!("Observation/{ob}"),
            patch_type,
            patch_doc.clone(),
            None,
        ),
        // Moving the patient's own observation to another patient.
        (
            put.clone(),
            format!("Observation/{oa}"),
            fhir,
            json!({"resourceType": "Observation", "id": oa, "status": "final", "code": {"text": "moved"}, "subject": {"reference": format!("Patient/{b}")}}),
            None,
        ),
        (
            delete.clone(),
            format!("Observation/{ob}"),
            fhir,
            Value::Null,
            None,
        ),
        (
            post.clone(),
            String::new(),
            fhir,
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"fullUrl": "urn:uuid:0f1e2d3c-0000-4000-8000-000000000001", "resource": obs(&a, "fine"), "request": {"method": "POST", "url": "Observation"}},
                {"resource": {"resourceType": "Observation", "id": ob, "status": "amended", "code": {"text": "theirs"}, "subject": {"reference": format!("Patient/{a}")}}, "request": {"method": "PUT", "url": format!("Observation/{ob}")}}
            ]}),
            None,
        ),
        (
            post.clone(),
            String::new(),
            fhir,
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"request": {"method": "DELETE", "url": format!("Observation/{ob}")}}
            ]}),
            None,
        ),
        // A type the scopes do not cover.
        (
            post.clone(),
            String::new(),
            fhir,
            json!({"resourceType": "Bundle", "type": "batch", "entry": [
                {"request": {"method": "GET", "url": format!("Condition?patient={a}")}}
            ]}),
            None,
        ),
        (
            get.clone(),
            "Observation/_history".to_owned(),
            fhir,
            Value::Null,
            None,
        ),
        (get.clone(), "_history".to_owned(), fhir, Value::Null, None),
        (
            get.clone(),
            format!("Observation/{ob}/_history"),
            fhir,
            Value::Null,
            None,
        ),
        (
            get.clone(),
            format!("Observation/{ob}/_history/1"),
            fhir,
            Value::Null,
            None,
        ),
    ];
    for (method, path, ct, body, extra) in refused {
        let url = app.url(&path);
        let res = if body.is_null() {
            c.request(method.clone(), &url)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        } else {
            send(&c, method.clone(), &url, ct, &body, extra).await
        };
        if res.status() != 403 {
            let status = res.status();
            panic!(
                "{method} {path}: {status} {}",
                res.text().await.unwrap_or_default()
            );
        }
        assert_outcome(res, 403, "forbidden").await;
        b_obs_is_untouched().await;
    }
    // Conditional criteria that match only outside the compartment answer
    // exactly as criteria matching nothing at all (a patient that never
    // existed): the conditional update and create write the patient's own
    // new entry, the conditional delete deletes nothing, in a transaction
    // too; no 403 or 412 tells the app the other patient has a match.
    let mut answers = Vec::new();
    for who in [b.as_str(), "nobody"] {
        let criteria = format!("subject=Patient/{who}");
        let mut statuses = Vec::new();
        let res = send(
            &c,
            put.clone(),
            &app.url(&format!("Observation?{criteria}")),
            fhir,
            &obs(&a, "taken over"),
            None,
        )
        .await;
        statuses.push(res.status().as_u16());
        let res = send(
            &c,
            post.clone(),
            &app.url("Observation"),
            fhir,
            &obs(&a, "if none"),
            Some(("if-none-exist", criteria.as_str())),
        )
        .await;
        statuses.push(res.status().as_u16());
        let res = c
            .delete(app.url(&format!("Observation?{criteria}")))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        statuses.push(res.status().as_u16());
        let res = send(&c, post.clone(), &app.url(""), fhir, &json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": obs(&a, "bundled"), "request": {"method": "POST", "url": "Observation", "ifNoneExist": criteria}},
            {"resource": obs(&a, "bundled update"), "request": {"method": "PUT", "url": format!("Observation?{criteria}")}},
            {"request": {"method": "DELETE", "url": format!("Observation?{criteria}")}}
        ]}), None).await;
        statuses.push(res.status().as_u16());
        b_obs_is_untouched().await;
        answers.push(statuses);
    }
    assert_eq!(answers[0], answers[1], "as if nothing outside existed");
    assert_eq!(answers[0][..2], [201, 201], "{answers:?}");
    assert_eq!(answers[0][3], 200, "{answers:?}");
    // The refused transaction's first entry was rolled back with it.
    let fine = app.get_json(&app.url("Observation?code:text=fine")).await;
    assert_eq!(fine["total"], 0, "{fine}");
    // A batch runs each entry alone: the one outside is refused.
    let res = send(
        &c,
        post.clone(),
        &app.url(""),
        fhir,
        &json!({"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": format!("Observation/{oa}")}},
            {"request": {"method": "GET", "url": format!("Observation/{ob}")}},
            {"resource": obs(&b, "for b"), "request": {"method": "POST", "url": "Observation"}}
        ]}),
        None,
    )
    .await;
    assert_eq!(res.status(), 200);
    let v = json(res).await;
    let statuses: Vec<&str> = v["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["response"]["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(statuses.len(), 3, "{v}");
    assert!(statuses[0].starts_with("200"), "{v}");
    assert!(statuses[1].starts_with("403"), "{v}");
    assert!(statuses[2].starts_with("403"), "{v}");
    let for_b = app
        .get_json(&app.url(&format!("Observation?subject=Patient/{b}")))
        .await;
    assert_eq!(
        for_b["total"], 1,
        "nothing written for the other patient: {for_b}"
    );

    // Inside the compartment the same interactions work.
    let res = send(
        &c,
        patch.clone(),
        &app.url(&format!("Observation/{oa}")),
        patch_type,
        &patch_doc,
        None,
    )
    .await;
    assert_eq!(res.status(), 200, "patch of their own");
    let res = send(
        &c,
        put.clone(),
        &app.url(&format!("Observation?subject=Patient/{a}&status=amended")),
        fhir,
        &obs(&a, "updated"),
        None,
    )
    .await;
    assert_eq!(res.status(), 200, "conditional update of their own");
    let res = send(
        &c,
        post.clone(),
        &app.url("Observation"),
        fhir,
        &obs(&a, "new"),
        Some(("if-none-exist", "code:text=new")),
    )
    .await;
    assert_eq!(res.status(), 201, "conditional create");
    let res = send(&c, post.clone(), &app.url(""), fhir, &json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": obs(&a, "in a transaction"), "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "GET", "url": format!("Patient/{a}")}}
    ]}), None).await;
    assert_eq!(res.status(), 200, "a transaction within the compartment");
    let hist = app_json(&c, &app.url(&format!("Observation/{oa}/_history"))).await;
    assert_eq!(hist["total"], 3, "{hist}");
    let res = c
        .delete(app.url("Observation?code:text=new"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 204, "conditional delete of their own");
    let mine = app
        .get_json(&app.url(&format!("Observation?subject=Patient/{a}")))
        .await;
    // Theirs, and the four entries each round of criteria outside wrote.
    assert_eq!(mine["total"], 2 + 2 * 4, "{mine}");
    app.stop().await;
}

/// Authorization codes, launch contexts and the `jti`s of client
/// assertions are kept in the store: a code issued before a restart is
/// exchanged after it, a launch made before it still opens, an assertion's
/// `jti` used before it is still refused; an expired code is refused.
async fn codes_launches_and_assertion_ids_survive_a_restart(app: App) {
    let (a, _, _, _) = two_patients(&app).await;
    add_user(&app, "gp", &["R8000"]).await;
    let scope = "launch launch/patient patient/*.rs";
    let reg = register(
        &app,
        json!({"name": "Chart", "kind": "public", "scope": scope, "redirect_uris": [REDIRECT]}),
    )
    .await;
    let client_id = reg["client_id"].as_str().unwrap_or_default().to_owned();
    let (pem, jwks) = gp_api::smart::generate_key().unwrap_or_else(|e| panic!("{e}"));
    let jwks: Value = serde_json::from_str(&jwks).unwrap_or_default();
    let service = register(
        &app,
        json!({"name": "Service", "kind": "backend", "scope": "system/Patient.rs", "jwks": jwks}),
    )
    .await;
    let service_id = service["client_id"].as_str().unwrap_or_default().to_owned();
    let jwt = assertion(
        &pem,
        &service_id,
        &smart_url(&app, "token"),
        240,
        "once-only",
    );
    assert_eq!(
        client_credentials(&app, &jwt, "system/Patient.rs")
            .await
            .status(),
        200
    );
    let cookie = web_sign_in(&app, "gp").await;
    let (code, verifier) = code_for(&app, &cookie, &client_id, scope, Some((&a, "Aardvark"))).await;
    let gp = crate::auth::signed_in(&app, "gp", None).await;
    let res = gp
        .post(smart_url(&app, "launch"))
        .form(&[("patient", a.as_str())])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let launch = json(res).await["launch"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (stale, stale_verifier) =
        code_for(&app, &cookie, &client_id, scope, Some((&a, "Aardvark"))).await;

    let app = app.restart().await;
    let exchange = |code: &str, verifier: &str| {
        [
            ("grant_type", "authorization_code".to_owned()),
            ("client_id", client_id.clone()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("code", code.to_owned()),
            ("code_verifier", verifier.to_owned()),
        ]
    };
    let f = exchange(&code, &verifier);
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = token(&app, &f).await;
    assert_eq!(res.status(), 200, "the code issued before the restart");
    assert_eq!(json(res).await["patient"], a.as_str());
    oauth_error(token(&app, &f).await, 400, "invalid_grant").await;
    // The same jti in a new assertion (for the new port's token endpoint).
    let replay = assertion(
        &pem,
        &service_id,
        &smart_url(&app, "token"),
        240,
        "once-only",
    );
    oauth_error(
        client_credentials(&app, &replay, "system/Patient.rs").await,
        401,
        "invalid_client",
    )
    .await;
    let fresh = assertion(&pem, &service_id, &smart_url(&app, "token"), 240, "another");
    assert_eq!(
        client_credentials(&app, &fresh, "system/Patient.rs")
            .await
            .status(),
        200
    );
    // The launch made before the restart gives its patient without a choice.
    let (verifier, challenge) = pkce();
    let url = format!(
        "{}&launch={launch}",
        authorize_url(&app, &client_id, "launch patient/*.rs", &challenge)
    );
    let back = approve(&root(&app), &cookie, &url, None).await;
    let f = exchange(&query_of(&back)["code"], &verifier);
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = token(&app, &f).await;
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["patient"], a.as_str());
    // A code past its minute is refused (expired directly in the database).
    let sqlite = app.data_dir().join("opengp.db");
    if sqlite.exists() {
        let db = rusqlite::Connection::open(&sqlite).unwrap_or_else(|e| panic!("{e}"));
        db.busy_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"));
        let n = db
            .execute(
                "UPDATE smart_once SET expires_at = 1 WHERE kind = 'code'",
                [],
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n, 1, "the stale code is the only one left");
        let f = exchange(&stale, &stale_verifier);
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        oauth_error(token(&app, &f).await, 400, "invalid_grant").await;
    }
    app.stop().await;
}

/// A practice manager changes a registered app through the API (its
/// redirect URIs and scopes, checked as a registration is) and disables
/// it: its access and refresh tokens stop working at once, it can neither
/// authorize nor get tokens, introspection says inactive; staff without
/// the administer-users activity cannot change it.
async fn a_practice_manager_changes_and_disables_an_app(app: App) {
    let (a, _, _, _) = two_patients(&app).await;
    add_user(&app, "gp", &["R8000"]).await;
    let scope = "launch/patient patient/*.rs offline_access";
    let reg = register(
        &app,
        json!({"name": "Chart", "kind": "public", "scope": scope, "redirect_uris": [REDIRECT]}),
    )
    .await;
    let client_id = reg["client_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(reg["disabled"], false);
    let cookie = web_sign_in(&app, "gp").await;
    let t = patient_token(&app, &cookie, &client_id, scope, (&a, "Aardvark")).await;
    let access = t["access_token"].as_str().unwrap_or_default().to_owned();
    let refresh = t["refresh_token"].as_str().unwrap_or_default().to_owned();
    let as_app = authorised_client(&access);
    let patient_url = app.url(&format!("Patient/{a}"));
    assert_eq!(status_of(&as_app, &patient_url).await, 200);

    let app_url = smart_url(&app, &format!("apps/{client_id}"));
    let change = |client: &reqwest::Client, body: Value| {
        let req = client.patch(&app_url).json(&body);
        async move { req.send().await.unwrap_or_else(|e| panic!("{e}")) }
    };
    // Not by a GP, not with a bad scope, not for an unknown app.
    let gp = crate::auth::signed_in(&app, "gp", None).await;
    assert_outcome(
        change(&gp, json!({"disabled": true})).await,
        403,
        "forbidden",
    )
    .await;
    let res = change(&app.client, json!({"scope": "system/*.rs"})).await;
    assert_eq!(res.status(), 400);
    let res = app
        .client
        .patch(smart_url(&app, "apps/no-such-app"))
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 404);
    // New redirect URI and narrower scopes: the old URI is refused.
    let other = "http://127.0.0.1:9/other-callback";
    let res = change(
        &app.client,
        json!({"redirect_uris": [other], "scope": "launch/patient patient/Patient.rs"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let v = json(res).await;
    assert_eq!(v["redirect_uris"], json!([other]), "{v}");
    assert_eq!(v["scope"], "launch/patient patient/Patient.rs", "{v}");
    let (_, challenge) = pkce();
    let res = agent()
        .get(authorize_url(&app, &client_id, scope, &challenge))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 400, "the old redirect URI");
    let listed = app_json(&app.client, &smart_url(&app, "apps")).await;
    assert_eq!(listed[0]["redirect_uris"], json!([other]), "{listed}");

    // Disabled: everything it holds stops at once.
    let res = change(&app.client, json!({"disabled": true})).await;
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["disabled"], true);
    let res = as_app
        .get(&patient_url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 401, "login").await;
    assert_eq!(introspect(&app, &access).await["active"], false);
    oauth_error(
        token(
            &app,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &client_id),
                ("refresh_token", &refresh),
            ],
        )
        .await,
        401,
        "invalid_client",
    )
    .await;
    let q = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", other),
        ("scope", "launch/patient patient/Patient.rs"),
        ("state", "s"),
        ("aud", app.server.base.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ])
    .unwrap_or_default();
    let res = agent()
        .get(format!("{}/app/smart/authorize?{q}", root(&app)))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 400, "a disabled app cannot be authorized");

    // Enabled again, it must be authorized anew: the tokens it held stay
    // revoked.
    let res = change(&app.client, json!({"disabled": false})).await;
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["disabled"], false);
    let res = as_app
        .get(&patient_url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 401, "login").await;
    assert_eq!(introspect(&app, &access).await["active"], false);
    app.stop().await;
}

/// SMART v2 finer-grained scopes: `patient/Observation.rs?category=...`
/// reaches only the laboratory observations of the patient in context,
/// inside the search (totals exact) and on reads; what cannot be checked
/// against it (versions, history, Bundle entries) is refused.
async fn query_restricted_scopes_narrow_reads_and_searches(app: App) {
    let (a, _, vitals, _) = two_patients(&app).await;
    add_user(&app, "gp", &["R8000"]).await;
    let cat = "http://terminology.hl7.org/CodeSystem/observation-category";
    let lab_of = |p: &str| {
        json!({"resourceType": "Observation", "status": "final",
               "category": [{"coding": [{"system": cat, "code": "laboratory"}]}],
               "code": {"coding": [{"system": "http://snomed.info/sct", "code": "1022441000000107"}]},
               "subject": {"reference": format!("Patient/{p}")}})
    };
    let lab = app.create(&lab_of(&a)).await;
    let restricted = format!("patient/Observation.rs?category={cat}|laboratory");
    let report = |text: &str, result: &str| {
        json!({"resourceType": "DiagnosticReport", "status": "final", "code": {"text": text},
               "subject": {"reference": format!("Patient/{a}")},
               "result": [{"reference": format!("Observation/{result}")}]})
    };
    app.create(&report("of vitals", &vitals)).await;
    app.create(&report("of the lab", &lab)).await;
    let scope =
        format!("launch/patient patient/Patient.rs patient/DiagnosticReport.rs {restricted}");
    let reg = register(
        &app,
        json!({"name": "Results", "kind": "public", "scope": "launch/patient patient/*.rs", "redirect_uris": [REDIRECT]}),
    )
    .await;
    let client_id = reg["client_id"].as_str().unwrap_or_default().to_owned();
    let cookie = web_sign_in(&app, "gp").await;
    let t = patient_token(&app, &cookie, &client_id, &scope, (&a, "Aardvark")).await;
    assert_eq!(t["scope"], scope.as_str(), "granted as asked, restricted");
    let c = authorised_client(t["access_token"].as_str().unwrap_or_default());
    let all = app_json(&c, &app.url("Observation")).await;
    assert_eq!(all["total"], 1, "the laboratory result only: {all}");
    assert_eq!(all["entry"][0]["resource"]["id"], lab.as_str());
    let coded = app_json(
        &c,
        &app.url("Observation?code=http://snomed.info/sct|27113001"),
    )
    .await;
    assert_eq!(coded["total"], 0, "{coded}");
    assert_eq!(
        status_of(&c, &app.url(&format!("Observation/{lab}"))).await,
        200
    );
    for path in [
        format!("Observation/{vitals}"),
        format!("Observation/{lab}/_history"),
        format!("Observation/{lab}/_history/1"),
        "Observation/_history".to_owned(),
    ] {
        let res = c
            .get(app.url(&path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_outcome(res, 403, "forbidden").await;
    }
    let res = send(
        &c,
        reqwest::Method::POST,
        &app.url(""),
        "application/fhir+json",
        &json!({"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": "Observation"}}
        ]}),
        None,
    )
    .await;
    assert_outcome(res, 403, "forbidden").await;
    // The patient is not narrowed.
    assert_eq!(status_of(&c, &app.url(&format!("Patient/{a}"))).await, 200);

    // Chains, `_has` and includes through Observations see the laboratory
    // ones only, as a search of Observations does: the vital sign's code
    // finds nothing, the laboratory result's code finds it.
    let vitals_code = "http://snomed.info/sct|27113001";
    let lab_code = "http://snomed.info/sct|1022441000000107";
    let total = |path: String| {
        let c = c.clone();
        let url = app.url(&path);
        async move {
            let v = app_json(&c, &url).await;
            v["total"].as_u64().unwrap_or_else(|| panic!("{url}: {v}"))
        }
    };
    assert_eq!(
        total(format!(
            "Patient?_has:Observation:patient:code={vitals_code}"
        ))
        .await,
        0
    );
    assert_eq!(
        total(format!("Patient?_has:Observation:patient:code={lab_code}")).await,
        1
    );
    assert_eq!(
        total(format!("DiagnosticReport?result.code={vitals_code}")).await,
        0
    );
    assert_eq!(
        total(format!(
            "DiagnosticReport?result:Observation.code={lab_code}"
        ))
        .await,
        1
    );
    let included = |path: &str| {
        let c = c.clone();
        let url = app.url(path);
        async move {
            let v = app_json(&c, &url).await;
            let mut ids: Vec<String> = v["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["search"]["mode"] == "include")
                .map(|e| e["resource"]["id"].as_str().unwrap_or_default().to_owned())
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(
        included("DiagnosticReport?_include=DiagnosticReport:result").await,
        vec![lab.clone()]
    );
    assert_eq!(
        included(&format!("Patient?_id={a}&_revinclude=Observation:patient")).await,
        vec![lab.clone()]
    );
    // A type the scopes do not cover at all cannot be reached by `_has`.
    let res = c
        .get(app.url("Patient?_has:Condition:patient:code=http://snomed.info/sct|44054006"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 403, "forbidden").await;
    app.stop().await;
}

/// `openid fhirUser`: the token response carries an `id_token` signed with
/// a key of the practice's published JWK Set (found through OpenID
/// discovery), naming the user's Practitioner as `fhirUser`, the app as
/// `aud`, with the request's `nonce` when it had one, and again on a
/// refresh; `online_access` gives a refresh token lasting a working day,
/// `offline_access` a longer one, neither none.
async fn openid_fhir_user_and_refresh_scopes(app: App) {
    let (a, _, _, _) = two_patients(&app).await;
    let practitioner = app
        .create(&json!({"resourceType": "Practitioner", "name": [{"family": "Surgery"}]}))
        .await;
    let ctx = gp_store::Ctx::new(crate::auth::practice(&app).await, gp_store::Actor::system());
    app.server
        .store
        .add_user(
            &ctx,
            gp_store::accounts::NewUser {
                username: "gp".into(),
                name: "A GP".into(),
                password: PASSWORD.into(),
                roles: vec!["R8000".into()],
                practitioner: Some(practitioner.clone()),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let registered = "launch/patient patient/*.rs openid fhirUser online_access offline_access";
    let reg = register(
        &app,
        json!({"name": "Who", "kind": "public", "scope": registered, "redirect_uris": [REDIRECT]}),
    )
    .await;
    let client_id = reg["client_id"].as_str().unwrap_or_default().to_owned();
    let cookie = web_sign_in(&app, "gp").await;
    let scope = "launch/patient patient/*.rs openid fhirUser online_access";
    let t = patient_token(&app, &cookie, &client_id, scope, (&a, "Aardvark")).await;
    let id_token = t["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no id_token: {t}"));

    let oidc = app
        .get_json(&app.url(".well-known/openid-configuration"))
        .await;
    assert_eq!(oidc["issuer"], app.server.base.as_str());
    let smart = app
        .get_json(&app.url(".well-known/smart-configuration"))
        .await;
    assert_eq!(smart["jwks_uri"], oidc["jwks_uri"]);
    let jwks_url = oidc["jwks_uri"].as_str().unwrap_or_default().to_owned();
    let set: jsonwebtoken::jwk::JwkSet = reqwest::get(&jwks_url)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let header = jsonwebtoken::decode_header(id_token).unwrap_or_else(|e| panic!("{e}"));
    let jwk = set
        .keys
        .iter()
        .find(|k| k.common.key_id == header.kid)
        .unwrap_or_else(|| panic!("the id_token's kid is not in the JWK Set"));
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap_or_else(|e| panic!("{e}"));
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&[client_id.as_str()]);
    v.set_issuer(&[app.server.base.as_str()]);
    let claims = jsonwebtoken::decode::<Value>(id_token, &key, &v)
        .unwrap_or_else(|e| panic!("the id_token does not verify: {e}"))
        .claims;
    assert_eq!(
        claims["fhirUser"],
        format!("{}/Practitioner/{practitioner}", app.server.base),
        "{claims}"
    );
    assert!(claims.get("nonce").is_none(), "no nonce asked, none given");
    // Another token is signed with the same published key, and echoes the
    // authorization request's nonce (OpenID Connect Core 3.1.2.1, 2).
    let (verifier, challenge) = pkce();
    let url = format!(
        "{}&nonce=n-0S6_WzA2Mj",
        authorize_url(&app, &client_id, scope, &challenge)
    );
    let back = approve(&root(&app), &cookie, &url, Some((&a, "Aardvark"))).await;
    let code = query_of(&back)["code"].clone();
    let res = token(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &client_id),
            ("redirect_uri", REDIRECT),
            ("code", &code),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    let again = json(res).await;
    let again = again["id_token"].as_str().unwrap_or_default();
    let again = jsonwebtoken::decode::<Value>(again, &key, &v)
        .unwrap_or_else(|e| panic!("the second id_token does not verify: {e}"))
        .claims;
    assert_eq!(again["nonce"], "n-0S6_WzA2Mj", "{again}");

    // A refresh with openid still granted brings a fresh id_token for the
    // same user and app (Core 12.2: same iss, sub, aud; a new iat), without
    // a nonce; one narrowed to leave openid out brings none.
    let refresh = t["refresh_token"].as_str().unwrap_or_default();
    let res = token(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", refresh),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    let refreshed = json(res).await;
    let fresh = refreshed["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("a refresh with openid gives an id_token: {refreshed}"));
    let fresh = jsonwebtoken::decode::<Value>(fresh, &key, &v)
        .unwrap_or_else(|e| panic!("the refreshed id_token does not verify: {e}"))
        .claims;
    for claim in ["iss", "sub", "aud", "fhirUser"] {
        assert_eq!(fresh[claim], claims[claim], "{claim}: {fresh}");
    }
    assert!(fresh["iat"].as_i64() >= claims["iat"].as_i64(), "{fresh}");
    assert!(fresh.get("nonce").is_none(), "{fresh}");
    let res = token(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", refresh),
            ("scope", "patient/*.rs online_access"),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    let narrowed = json(res).await;
    assert!(narrowed.get("id_token").is_none(), "{narrowed}");

    // Refresh tokens: a working day online, longer offline, none without.
    let online = refresh_lasts(&app, &t).await;
    assert!(online > 0 && online <= 12 * 3600, "{online}");
    let offline = patient_token(
        &app,
        &cookie,
        &client_id,
        "launch/patient patient/*.rs offline_access",
        (&a, "Aardvark"),
    )
    .await;
    assert!(offline.get("id_token").is_none(), "no openid, no id_token");
    assert!(refresh_lasts(&app, &offline).await > 7 * 24 * 3600);
    let neither = patient_token(
        &app,
        &cookie,
        &client_id,
        "launch/patient patient/*.rs",
        (&a, "Aardvark"),
    )
    .await;
    assert!(neither.get("refresh_token").is_none(), "{neither}");
    app.stop().await;
}

/// How many seconds the refresh token of a token response lasts.
async fn refresh_lasts(app: &App, t: &Value) -> i64 {
    let refresh = t["refresh_token"].as_str().unwrap_or_default();
    let i = introspect(app, refresh).await;
    assert_eq!(i["active"], true, "{i}");
    i["exp"].as_i64().unwrap_or_default() - i["iat"].as_i64().unwrap_or_default()
}

/// `opengp` at the console while no server runs: its standard output, or
/// its standard error when it fails.
fn console(
    data: &std::path::Path,
    database: Option<&str>,
    args: &[&str],
) -> Result<String, String> {
    let mut cmd = Command::new(opengp_bin());
    cmd.args(args)
        .args(["--practice", opengp::config::DEFAULT_PRACTICE, "--data"])
        .arg(data);
    if let Some(url) = database {
        cmd.args(["--database", url]);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("opengp {args:?}: {e}"));
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// EHR launch from the record (SMART App Launch 2.x, "EHR launch"): a
/// launch URL is registered through the API or `opengp app add|update
/// --launch-url` (https, or http on this machine only: anything else is a
/// 400 OperationOutcome or a refused command) and kept by the store
/// across a restart; every page of a record (a GP's summary, journal and
/// entry history, a receptionist's details-only page) offers "Launch
/// <app>" for each enabled user-facing app with one, the `launch` scope
/// and a scope the user's role can use, and its form
/// (CSRF) sends the browser (303) to the launch URL with `iss` and
/// `launch`, which the app exchanges through authorize and token for a
/// token naming that patient and reaching no other.
async fn an_app_is_launched_from_the_record(app: App) {
    const LAUNCH: &str = "http://127.0.0.1:9/launch";
    let (a, _b, oa, ob) = two_patients(&app).await;
    add_user(&app, "gp", &["R8000"]).await;
    let chart = |name: &str, scope: &str, launch: Option<&str>| {
        json!({"name": name, "kind": "public", "scope": scope,
               "redirect_uris": [REDIRECT], "launch_url": launch})
    };
    let scope = "launch patient/Patient.rs patient/Observation.rs";
    for bad in [
        "http://chart.example.com/launch",
        "chart.example.com/launch",
        "https://chart.example.com/launch#top",
        "http://127.0.0.1.chart.example.com/launch",
    ] {
        let res = app
            .client
            .post(smart_url(&app, "apps"))
            .json(&chart("Chart", scope, Some(bad)))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_outcome(res, 400, "invalid").await;
    }
    let reg = register(&app, chart("Chart", scope, Some(LAUNCH))).await;
    assert_eq!(reg["launch_url"], LAUNCH, "{reg}");
    let client_id = reg["client_id"].as_str().unwrap_or_default().to_owned();
    let app_url = smart_url(&app, &format!("apps/{client_id}"));
    for bad in [
        "http://chart.example.com/launch",
        "/launch",
        "https://u:p@chart.example.com/",
    ] {
        let res = app
            .client
            .patch(&app_url)
            .json(&json!({ "launch_url": bad }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_outcome(res, 400, "invalid").await;
    }
    // Not offered: without a launch URL, without the launch scope, disabled.
    register(&app, chart("Unlaunched", scope, None)).await;
    register(&app, chart("Scopeless", "patient/*.rs", Some(LAUNCH))).await;
    let retired = register(&app, chart("Retired", scope, Some(LAUNCH))).await;
    let retired = retired["client_id"].as_str().unwrap_or_default().to_owned();
    let res = app
        .client
        .patch(smart_url(&app, &format!("apps/{retired}")))
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 200);

    // At the console, with no server running: a refused launch URL
    // changes nothing; one set and then removed.
    let app = app
        .restart_after(|data, database| {
            let run = |args: &[&str]| console(data, database, args);
            let added = run(&[
                "app",
                "add",
                "--kind",
                "public",
                "--name",
                "Console chart",
                "--scope",
                scope,
                "--redirect-uri",
                REDIRECT,
                "--launch-url",
                "https://chart.example.com/launch",
            ])
            .unwrap_or_else(|e| panic!("{e}"));
            assert!(
                added.contains("launch_url=https://chart.example.com/launch\n"),
                "{added}"
            );
            let id = added
                .lines()
                .find_map(|l| l.strip_prefix("client_id="))
                .unwrap_or_else(|| panic!("{added}"))
                .to_owned();
            let refused = run(&[
                "app",
                "update",
                "--client-id",
                &id,
                "--launch-url",
                "http://chart.example.com/",
            ])
            .err()
            .unwrap_or_else(|| panic!("an http launch URL elsewhere than this machine"));
            assert!(refused.contains("is not a launch URL"), "{refused}");
            let listed = run(&["app", "list"]).unwrap_or_else(|e| panic!("{e}"));
            assert!(listed.contains("Console chart"), "{listed}");
            let removed = run(&["app", "update", "--client-id", &id, "--launch-url", ""])
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(removed.contains("launch_url=\n"), "{removed}");
            let refused = run(&[
                "app",
                "add",
                "--kind",
                "public",
                "--name",
                "Bad",
                "--scope",
                scope,
                "--redirect-uri",
                REDIRECT,
                "--launch-url",
                "ftp://chart.example.com/",
            ])
            .err()
            .unwrap_or_else(|| panic!("not an http(s) URL"));
            assert!(refused.contains("is not a launch URL"), "{refused}");
        })
        .await;
    let listed = app_json(&app.client, &smart_url(&app, "apps")).await;
    let by_name = |n: &str| {
        listed
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("no app {n}: {listed}"))
    };
    assert_eq!(
        by_name("Chart")["launch_url"],
        LAUNCH,
        "kept across a restart"
    );
    assert_eq!(by_name("Console chart")["launch_url"], Value::Null);
    assert_eq!(by_name("Unlaunched")["launch_url"], Value::Null);

    // Every page of the record offers the one app a GP may launch (the
    // summary, the journal, an entry's history), and a receptionist's
    // details-only page offers it too (its scopes read the Patient, which
    // their role may): the same buttons, the page's CSP letting their
    // forms go on to the app's launch URL.
    let cookie = web_sign_in(&app, "gp").await;
    add_user(&app, "desk", &["R8009"]).await;
    let desk = web_sign_in(&app, "desk").await;
    let summary = format!("{}/app/patients/{a}", root(&app));
    let mut csrf = String::new();
    for (who, page) in [
        (&cookie, summary.clone()),
        (&cookie, format!("{summary}/journal")),
        (&cookie, format!("{summary}/history/Observation/{oa}")),
        (&desk, summary.clone()),
    ] {
        let res = agent()
            .get(&page)
            .header("cookie", who)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 200, "{page}");
        let csp = res
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            csp.contains("form-action 'self' http://127.0.0.1:9;"),
            "{page}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        let html = res.text().await.unwrap_or_default();
        let offered: Vec<&str> = html
            .split(">Launch ")
            .skip(1)
            .filter_map(|r| r.split('<').next())
            .collect();
        assert_eq!(offered, vec!["Chart"], "{page}: {html}");
        let token = html
            .split(&format!("action=\"/app/patients/{a}/launch\""))
            .nth(1)
            .and_then(|r| r.split("name=\"_csrf\" value=\"").nth(1))
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("no CSRF token in the launch form: {html}"))
            .to_owned();
        if who == &desk {
            assert!(html.contains("Patient details"), "details only: {html}");
            let res = agent()
                .post(format!("{summary}/launch"))
                .header("cookie", who)
                .form(&[("_csrf", token.as_str()), ("client_id", client_id.as_str())])
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(res.status(), 303, "launched from the details page");
        } else {
            csrf = token;
        }
    }
    let launch_url = format!("{summary}/launch");
    let post = |form: Vec<(&'static str, String)>| {
        let req = agent()
            .post(&launch_url)
            .header("cookie", &cookie)
            .form(&form);
        async move { req.send().await.unwrap_or_else(|e| panic!("{e}")) }
    };
    let res = post(vec![
        ("_csrf", "forged".into()),
        ("client_id", client_id.clone()),
    ])
    .await;
    assert_eq!(res.status(), 403, "without the page's CSRF token");
    let res = post(vec![
        ("_csrf", csrf.clone()),
        ("client_id", retired.clone()),
    ])
    .await;
    assert_eq!(res.status(), 404, "a disabled app is not launched");
    let res = post(vec![
        ("_csrf", csrf.clone()),
        ("client_id", client_id.clone()),
    ])
    .await;
    assert_eq!(res.status(), 303);
    let to = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(to.starts_with(&format!("{LAUNCH}?")), "{to}");
    let q = query_of(&to);
    assert_eq!(q["iss"], app.server.base, "{to}");
    let launch = q["launch"].clone();

    // The app: authorization code with PKCE and the launch.
    let (verifier, challenge) = pkce();
    let url = format!(
        "{}&launch={launch}",
        authorize_url(&app, &client_id, scope, &challenge)
    );
    let back = approve(&root(&app), &cookie, &url, None).await;
    let code = query_of(&back)["code"].clone();
    let res = token(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &client_id),
            ("redirect_uri", REDIRECT),
            ("code", &code),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    let t = json(res).await;
    assert_eq!(t["patient"], a.as_str(), "{t}");
    assert!(has(&t["scope"], "launch"), "{t}");
    let as_app = authorised_client(t["access_token"].as_str().unwrap_or_default());
    assert_eq!(
        status_of(&as_app, &app.url(&format!("Observation/{oa}"))).await,
        200
    );
    let res = as_app
        .get(app.url(&format!("Observation/{ob}")))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 403, "forbidden").await;
    app.stop().await;
}

fn has(scope: &Value, wanted: &str) -> bool {
    scope
        .as_str()
        .is_some_and(|s| s.split_whitespace().any(|x| x == wanted))
}

/// Breaking the glass is a user's own deliberate act in their session
/// (gp-store glass.rs), never an app's: an app's access token, even one
/// its user approved with scopes reaching the whole record, is refused
/// `$break-glass` (403, an OperationOutcome), the refusal is in the trail
/// naming the app, and the app still does not see the restricted entry;
/// nor does it once its user has broken the glass in their own session.
async fn an_app_cannot_break_the_glass(app: App) {
    let p = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Glass"}]}))
        .await;
    let hidden = app
        .create(&json!({"resourceType": "Observation", "status": "final",
            "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "1234567"}]},
            "subject": {"reference": format!("Patient/{p}")}}))
        .await;
    app.create(&json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "7654321"}]},
        "subject": {"reference": format!("Patient/{p}")}}))
        .await;
    // A nurse: the record, but not restricted entries without the glass.
    add_user(&app, "nurse", &["R8001"]).await;
    let scope = "launch/patient patient/*.rs";
    let reg = register(
        &app,
        json!({"name": "Chart", "kind": "public", "scope": scope, "redirect_uris": [REDIRECT]}),
    )
    .await;
    let client_id = reg["client_id"].as_str().unwrap_or_default().to_owned();
    let cookie = web_sign_in(&app, "nurse").await;
    let t = patient_token(&app, &cookie, &client_id, scope, (&p, "Glass")).await;
    let as_app = authorised_client(t["access_token"].as_str().unwrap_or_default());
    let glass = |c: &reqwest::Client| {
        let req = c
            .post(app.url(&format!("Patient/{p}/$break-glass")))
            .header("content-type", "application/fhir+json")
            .body(
                json!({"resourceType": "Parameters",
                    "parameter": [{"name": "reason", "valueString": "The app says it is urgent"}]})
                .to_string(),
            );
        async move { req.send().await.unwrap_or_else(|e| panic!("{e}")) }
    };
    let refused = assert_outcome(glass(&as_app).await, 403, "forbidden").await;
    assert!(
        refused
            .to_string()
            .contains("an app cannot break the glass"),
        "{refused}"
    );
    let observations = |c: &reqwest::Client| {
        let (c, url) = (
            c.clone(),
            app.url(&format!("Observation?subject=Patient/{p}&_total=accurate")),
        );
        async move { app_json(&c, &url).await["total"].clone() }
    };
    assert_eq!(
        observations(&as_app).await,
        1,
        "the restricted entry stays hidden"
    );
    assert_eq!(
        status_of(&as_app, &app.url(&format!("Observation/{hidden}"))).await,
        404
    );

    // The nurse breaks the glass in her own session: she sees the entry,
    // the app she approved still does not (the grant is her session's).
    let nurse = crate::auth::signed_in(&app, "nurse", None).await;
    assert_eq!(glass(&nurse).await.status(), 200);
    assert_eq!(observations(&nurse).await, 2);
    assert_eq!(observations(&as_app).await, 1);
    assert_eq!(
        status_of(&as_app, &app.url(&format!("Observation/{hidden}"))).await,
        404
    );

    // The refusal is in the trail, naming the app as an agent.
    let trail = app_json(&app.client, &app.url("AuditEvent?outcome=4&_count=100")).await;
    let refusal = trail["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .find(|e| {
            e["purposeOfEvent"][0]["coding"][0]["code"] == "BTG"
                && e["agent"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|a| a["altId"] == client_id.as_str())
        });
    assert!(refusal.is_some(), "the app's refused break-glass: {trail}");
    app.stop().await;
}

/// The page the signed-in user of `cookie` is shown at `url`.
async fn page_at(cookie: &str, url: &str) -> String {
    let res = agent()
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(res.status(), 200, "{url}");
    res.text().await.unwrap_or_default()
}

/// SMART App Launch 2.x, "Scopes and launch context", "Apps that launch
/// from the EHR": an app given `launch=abc123` "requests the scope `launch`
/// and provides an additional URL parameter of `launch=abc123`" (and
/// app-launch.html, the authorization request's `scope`: "a `launch` value
/// ... or a set of launch context requirements in the form
/// `launch/patient`"). A `launch=` without the `launch` scope, or from an
/// app not registered for it, is sent back to the redirect URI as
/// `invalid_scope` with the state, and leaves the launch usable; with the
/// scope, the page names the launched patient and offers no choice, and
/// the token names them. The reverse ("Standalone apps": `launch/patient`
/// without `launch=`): the page offers a patient search and the token
/// names the patient chosen. Coming back from an app on another site
/// (`Sec-Fetch-Site: cross-site`, no session cookie, as the browser
/// withholds a `SameSite=Strict` one), the request is repeated from this
/// site by a refresh page (browser.rs shows it in Chromium).
async fn an_ehr_launch_asks_for_the_launch_scope(app: App) {
    let (a, b, _, _) = two_patients(&app).await;
    add_user(&app, "gp", &["R8000"]).await;
    let launching = register(
        &app,
        json!({"name": "Chart", "kind": "public", "scope": "launch launch/patient patient/*.rs", "redirect_uris": [REDIRECT]}),
    )
    .await;
    let launching = launching["client_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let standalone = register(
        &app,
        json!({"name": "Standalone", "kind": "public", "scope": "launch/patient patient/*.rs", "redirect_uris": [REDIRECT]}),
    )
    .await;
    let standalone = standalone["client_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let gp = crate::auth::signed_in(&app, "gp", None).await;
    let res = gp
        .post(smart_url(&app, "launch"))
        .form(&[("patient", a.as_str())])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 200);
    let launch = json(res).await["launch"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let cookie = web_sign_in(&app, "gp").await;
    let (verifier, challenge) = pkce();
    // Back from an app on another site, the browser withholds the
    // SameSite=Strict session cookie: a page sends it on within this site
    // (a refresh, no script), to the same request; a request without the
    // cookie from this site, or with a stale one, goes to the sign-in page.
    let url = format!(
        "{}&launch={launch}",
        authorize_url(&app, &launching, "launch patient/*.rs", &challenge)
    );
    let res = agent()
        .get(&url)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 200);
    let csp = res
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let html = res.text().await.unwrap_or_default();
    let refresh = html
        .split("http-equiv=\"refresh\" content=\"0;url=")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no refresh: {html}"))
        .replace("&amp;", "&");
    assert!(refresh.starts_with("/app/smart/authorize?"), "{refresh}");
    assert_eq!(query_of(&refresh), query_of(&url), "the same request");
    assert!(!html.contains("<script"), "{html}");
    for (site, cookie) in [
        ("same-origin", None),
        ("cross-site", Some("opengp_session=stale")),
    ] {
        let mut req = agent().get(&url).header("sec-fetch-site", site);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 303, "{site}");
        let to = res
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(to.starts_with("/app/login?next="), "{site}: {to}");
    }
    let with_launch = |client_id: &str, scope: &str| {
        format!(
            "{}&launch={launch}",
            authorize_url(&app, client_id, scope, &challenge)
        )
    };

    for (client_id, scope) in [
        (&launching, "patient/*.rs"),
        (&launching, "launch/patient patient/*.rs"),
        (&standalone, "launch patient/*.rs"),
    ] {
        let res = agent()
            .get(with_launch(client_id, scope))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 303, "{scope}");
        let to = res
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(to.starts_with(REDIRECT), "{to}");
        let q = query_of(&to);
        assert_eq!(q["error"], "invalid_scope", "{scope}: {to}");
        assert_eq!(q["state"], "st-123", "{to}");
        assert!(!q.contains_key("code"), "{to}");
    }

    // With the launch scope: the launched patient, no choice offered.
    let url = with_launch(&launching, "launch launch/patient patient/*.rs");
    let html = page_at(&cookie, &url).await;
    assert!(html.contains("AARDVARK"), "the launched patient: {html}");
    assert!(
        !html.contains("patient_search"),
        "no patient search: {html}"
    );
    let back = approve(&root(&app), &cookie, &url, None).await;
    let code = query_of(&back)["code"].clone();
    let t = json(
        token(
            &app,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &launching),
                ("redirect_uri", REDIRECT),
                ("code", &code),
                ("code_verifier", &verifier),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(t["patient"], a.as_str(), "{t}");
    assert!(has(&t["scope"], "launch"), "{t}");

    // Standalone, launch/patient: a patient search, and the one chosen.
    let (_, challenge) = pkce();
    let url = authorize_url(&app, &standalone, "launch/patient patient/*.rs", &challenge);
    let html = page_at(&cookie, &url).await;
    assert!(
        html.contains("name=\"patient_search\""),
        "a patient search: {html}"
    );
    let t = patient_token(
        &app,
        &cookie,
        &standalone,
        "launch/patient patient/*.rs",
        (&b, "Badger"),
    )
    .await;
    assert_eq!(t["patient"], b.as_str(), "{t}");
    app.stop().await;
}
