//! SMART on FHIR App Launch 2.x: each practice's authorization server.
//!
//! - `GET [base]/.well-known/smart-configuration`: the endpoints and what
//!   they support (public, like the CapabilityStatement).
//! - The authorization endpoint is the web app's `/app/smart/authorize`
//!   (the user signs in there with the web app's session, picks a patient
//!   and approves); it checks the request with [`check_authorize`] and
//!   mints the code with [`issue_code`].
//! - `POST /practices/{ods}/smart/token`: the authorization code grant
//!   with PKCE (S256 only), refresh, and client credentials with a
//!   `private_key_jwt` assertion (RFC 7523; RS384 or ES384) for backend
//!   services. Confidential apps authenticate with HTTP Basic (or
//!   `client_secret_post`), public ones by `client_id` and PKCE alone.
//! - `POST /practices/{ods}/smart/introspect` (RFC 7662, for a holder of a
//!   valid bearer token of the practice), `/revoke` (RFC 7009, by the
//!   client the token was issued to), and `/launch`, where a signed-in
//!   user mints an EHR launch context for a patient. Token and revocation
//!   requests count against the sign-in rate limit ([`crate::limit`]).
//!
//! Codes (one minute, used once), launch contexts (five minutes) and the
//! `jti`s of client assertions seen (until they expire) are kept in the
//! store with the tokens ([`gp_store::smart`]), so that a restart neither
//! loses a code in flight nor lets an assertion be replayed.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gp_fhir::{Id, Instant, ResourceType};
use gp_store::Practice;
use gp_store::access::SignedIn;
use gp_store::smart::{AppKind, AppRecord, GrantRequest, Once, TokenKind, grantable, has_scope};
use http_body_util::BodyExt;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;

/// How long an authorization code may wait to be exchanged.
pub const CODE_MILLIS: i64 = 60_000;
/// How long an EHR launch context waits for the app.
pub const LAUNCH_MILLIS: i64 = 5 * 60_000;
/// The furthest in the future a client assertion may expire (SMART
/// Backend Services: no more than five minutes).
pub const MAX_ASSERTION_MILLIS: i64 = 5 * 60_000;
/// The clock skew allowed on a client assertion's times, in seconds.
const LEEWAY_SECS: u64 = 30;
/// The largest form body read.
const MAX_FORM: usize = 64 * 1024;
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An authorization code's grant, kept in the store until it is
/// exchanged or expires ([`gp_store::smart::Once::Code`]).
#[derive(serde::Serialize, serde::Deserialize)]
struct Code {
    /// The user's own resource (`Practitioner/..`, `Patient/..`), for
    /// the `fhirUser` claim.
    fhir_user: Option<String>,
    client_id: String,
    redirect_uri: String,
    challenge: String,
    user_id: String,
    role: String,
    scope: String,
    patient: Option<String>,
    /// The authorization request's `nonce`, echoed in the `id_token`.
    #[serde(default)]
    nonce: Option<String>,
}

fn random() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// The URLs of a practice's authorization server.
pub struct Endpoints {
    pub authorize: String,
    pub token: String,
    pub introspect: String,
    pub revoke: String,
    pub launch: String,
    /// The public keys of the `id_token` signature.
    pub jwks: String,
    /// The practice's FHIR base: the `aud` apps must name, and the issuer
    /// of `id_token`s.
    pub fhir: String,
}

impl Endpoints {
    pub fn new(root: &str, practice: &Practice) -> Endpoints {
        let smart = format!("{root}/practices/{}/smart", practice.ods);
        Endpoints {
            authorize: format!("{root}/app/smart/authorize"),
            token: format!("{smart}/token"),
            introspect: format!("{smart}/introspect"),
            revoke: format!("{smart}/revoke"),
            launch: format!("{smart}/launch"),
            jwks: format!("{smart}/jwks"),
            fhir: format!("{root}/practices/{}/fhir", practice.ods),
        }
    }
}

/// The CapabilityStatement's `rest.security` for SMART: the service
/// coding and the `oauth-uris` extension.
pub fn capability_security(e: &Endpoints) -> Value {
    json!({
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [
                {"url": "authorize", "valueUri": e.authorize},
                {"url": "token", "valueUri": e.token},
                {"url": "introspect", "valueUri": e.introspect},
                {"url": "revoke", "valueUri": e.revoke}
            ]
        }],
        "cors": false,
        "service": [{
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}],
            "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)"
        }],
        "description": format!(
            "Every request except this CapabilityStatement and .well-known/smart-configuration needs 'Authorization: Bearer TOKEN': a staff session from POST /auth/login (JSON: practice, username, password, and optionally role, an RBAC R-code; 12 hours, ended by POST /auth/logout or /auth/logout-everywhere), or a SMART on FHIR access token from {} (apps registered by the practice; scopes narrowed by the user's role). No or an expired token is 401, a role or scope that does not allow the interaction or another practice's token 403. Every read, search, write and sign-in is recorded as an AuditEvent.",
            e.token
        ),
    })
}

fn configuration(e: &Endpoints) -> Value {
    json!({
        "authorization_endpoint": e.authorize,
        "token_endpoint": e.token,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "scopes_supported": [
            "launch", "launch/patient", "offline_access", "online_access", "openid", "fhirUser",
            "patient/*.read", "patient/*.write", "patient/*.rs", "patient/*.cruds",
            "user/*.read", "user/*.write", "user/*.rs", "user/*.cruds",
            "system/*.read", "system/*.rs"
        ],
        "response_types_supported": ["code"],
        "capabilities": [
            "launch-standalone", "launch-ehr",
            "client-public", "client-confidential-symmetric", "client-confidential-asymmetric",
            "context-standalone-patient", "context-ehr-patient",
            "permission-patient", "permission-user", "permission-offline", "permission-online",
            "sso-openid-connect",
            "permission-v1", "permission-v2"
        ],
        "code_challenge_methods_supported": ["S256"],
        "introspection_endpoint": e.introspect,
        "revocation_endpoint": e.revoke,
        "issuer": e.fhir,
        "jwks_uri": e.jwks,
    })
}

/// OpenID Connect discovery for the `id_token`s of `openid fhirUser`.
fn openid_configuration(e: &Endpoints) -> Value {
    json!({
        "issuer": e.fhir,
        "authorization_endpoint": e.authorize,
        "token_endpoint": e.token,
        "jwks_uri": e.jwks,
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES384"],
        "scopes_supported": ["openid", "fhirUser"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser"],
    })
}

/// The practice's `id_token` signing key (ES384), made the first time it
/// is needed and kept in the store: the private key (PEM) and the JWK Set.
async fn signing_key(st: &AppState, practice: &Practice) -> Result<(String, Value), OAuthError> {
    let fail = |m: String| oauth("server_error", m);
    let stored = st
        .store
        .once(practice, Once::Key, "id_token", false)
        .await?;
    let body = match stored {
        Some(b) => b,
        None => {
            let (pem, jwks) = generate_key().map_err(fail)?;
            let body = json!({"pem": pem, "jwks": serde_json::from_str::<Value>(&jwks).unwrap_or_default()}).to_string();
            let forever = Instant::from_millis(i64::MAX / 2);
            // Another server of the deployment may have made one first.
            st.store
                .put_once(practice, Once::Key, "id_token", body, forever)
                .await?;
            st.store
                .once(practice, Once::Key, "id_token", false)
                .await?
                .ok_or_else(|| fail("the signing key could not be kept".into()))?
        }
    };
    let v: Value = serde_json::from_str(&body).map_err(|e| fail(e.to_string()))?;
    let pem = v["pem"].as_str().unwrap_or_default().to_owned();
    Ok((pem, v["jwks"].clone()))
}

/// An `id_token` (OpenID Connect Core 2): the user who approved, for the
/// app, with their `fhirUser`, signed with the practice's key; with the
/// authorization request's `nonce` when it had one (Core 3.1.2.1: "the
/// value is passed through unmodified from the Authentication Request to
/// the ID Token"). One issued on a refresh has none (Core 12.2: the same
/// `iss`, `sub` and `aud`, a new `iat`).
async fn id_token(
    st: &AppState,
    practice: &Practice,
    e: &Endpoints,
    client_id: &str,
    user_id: &str,
    fhir_user: Option<&str>,
    nonce: Option<&str>,
) -> Result<String, OAuthError> {
    let (pem, jwks) = signing_key(st, practice).await?;
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes())
        .map_err(|e| oauth("server_error", e.to_string()))?;
    let mut header = jsonwebtoken::Header::new(Algorithm::ES384);
    header.kid = jwks["keys"][0]["kid"].as_str().map(str::to_owned);
    let now = Instant::now().millis() / 1000;
    let mut claims = json!({
        "iss": e.fhir, "sub": user_id, "aud": client_id,
        "iat": now, "exp": now + gp_store::smart::ACCESS_MILLIS / 1000,
    });
    if let Some(u) = fhir_user {
        claims["fhirUser"] = json!(format!("{}/{u}", e.fhir));
    }
    if let Some(n) = nonce {
        claims["nonce"] = json!(n);
    }
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| oauth("server_error", e.to_string()))
}

/// `GET [base]/.well-known/openid-configuration`.
async fn openid_well_known(
    State(st): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    match st.practice(ods_of(&params)).await {
        Ok(p) => {
            let e = Endpoints::new(&crate::root_url(&st.config, &uri, &headers), &p);
            Json(openid_configuration(&e)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /practices/{ods}/smart/jwks`: the public key of `id_token`s.
async fn jwks(State(st): State<AppState>, Path(params): Path<HashMap<String, String>>) -> Response {
    let out = async {
        let practice = st
            .practice(ods_of(&params))
            .await
            .map_err(|_| oauth("invalid_request", "this server has no such practice"))?;
        let (_, jwks) = signing_key(&st, &practice).await?;
        Ok::<_, OAuthError>(Json(jwks).into_response())
    }
    .await;
    out.unwrap_or_else(IntoResponse::into_response)
}

/// The routes under a practice's FHIR base.
pub(crate) fn fhir_routes() -> Router<AppState> {
    Router::new()
        .route("/.well-known/smart-configuration", get(well_known))
        .route("/.well-known/openid-configuration", get(openid_well_known))
}

/// The routes under `/practices/{ods}/smart`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/token", post(token))
        .route("/introspect", post(introspect))
        .route("/revoke", post(revoke))
        .route("/launch", post(launch))
        .route("/jwks", get(jwks))
        .route("/apps", post(register).get(list_apps))
        .route("/apps/{client_id}", axum::routing::patch(update_app))
}

fn ods_of(params: &HashMap<String, String>) -> &str {
    params.get("ods").map(String::as_str).unwrap_or_default()
}

async fn well_known(
    State(st): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    match st.practice(ods_of(&params)).await {
        Ok(p) => {
            let e = Endpoints::new(&crate::root_url(&st.config, &uri, &headers), &p);
            Json(configuration(&e)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// An OAuth 2.0 error (RFC 6749 section 5.2).
#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

fn oauth(error: &'static str, description: impl Into<String>) -> OAuthError {
    let status = match error {
        "invalid_client" => StatusCode::UNAUTHORIZED,
        "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
        "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    OAuthError {
        status,
        error,
        description: description.into(),
    }
}

impl From<gp_store::StoreError> for OAuthError {
    fn from(e: gp_store::StoreError) -> Self {
        let api = ApiError::from(e);
        let text = api
            .outcome
            .issues
            .first()
            .map(|i| i.diagnostics.clone())
            .unwrap_or_default();
        match api.status {
            StatusCode::SERVICE_UNAVAILABLE => oauth("temporarily_unavailable", text),
            s if s.is_server_error() => oauth("server_error", "the server could not do this"),
            _ => oauth("invalid_request", text),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut res = crate::no_store_json(
            self.status,
            json!({"error": self.error, "error_description": self.description}),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6749 section 5.2: a client may authenticate with HTTP Basic.
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"opengp\""),
            );
        }
        res
    }
}

type Form = HashMap<String, String>;

async fn read_form(headers: &HeaderMap, body: Body) -> Result<Form, OAuthError> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Err(oauth(
            "invalid_request",
            "send the parameters as application/x-www-form-urlencoded",
        ));
    }
    let bytes = http_body_util::Limited::new(body, MAX_FORM)
        .collect()
        .await
        .map_err(|_| {
            oauth(
                "invalid_request",
                "the body could not be read or is too long",
            )
        })?
        .to_bytes();
    serde_urlencoded::from_bytes(&bytes).map_err(|e| {
        oauth(
            "invalid_request",
            format!("the form could not be read: {e}"),
        )
    })
}

fn field<'a>(form: &'a Form, name: &str) -> Result<&'a str, OAuthError> {
    form.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| oauth("invalid_request", format!("'{name}' is missing")))
}

fn unknown_client() -> OAuthError {
    oauth(
        "invalid_client",
        "the client is unknown or did not authenticate as its registration says",
    )
}

/// The app a token, revocation or introspection request comes from,
/// authenticated as it is registered: HTTP Basic or `client_secret_post`
/// (confidential), a JWT assertion (backend services), or its `client_id`
/// alone (public apps, whose codes are bound by PKCE).
async fn client(
    st: &AppState,
    practice: &Practice,
    token_url: &str,
    headers: &HeaderMap,
    form: &Form,
) -> Result<AppRecord, OAuthError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    if let Some(pair) = basic {
        let (id, secret) = pair.split_once(':').ok_or_else(unknown_client)?;
        return confidential(st, practice, id, secret).await;
    }
    if form.get("client_assertion_type").map(String::as_str) == Some(JWT_BEARER) {
        return asserted(st, practice, token_url, field(form, "client_assertion")?).await;
    }
    let id = field(form, "client_id").map_err(|_| unknown_client())?;
    if let Some(secret) = form.get("client_secret") {
        return confidential(st, practice, id, secret).await;
    }
    match st.store.app(practice, id).await? {
        Some(app) if app.kind == AppKind::Public => Ok(app),
        _ => Err(unknown_client()),
    }
}

async fn confidential(
    st: &AppState,
    practice: &Practice,
    id: &str,
    secret: &str,
) -> Result<AppRecord, OAuthError> {
    match st.store.app(practice, id).await? {
        Some(app)
            if app.kind == AppKind::Confidential
                && gp_store::Store::check_app_secret(&app, secret).await =>
        {
            Ok(app)
        }
        _ => Err(unknown_client()),
    }
}

#[derive(serde::Deserialize)]
struct AssertionClaims {
    iss: String,
    exp: i64,
    jti: Option<String>,
}

/// Verifies a `private_key_jwt` client assertion (RFC 7523, SMART Backend
/// Services): signed with RS384 or ES384 by a key of the client's JWK Set,
/// `iss` and `sub` the client id, `aud` the token endpoint, expiring
/// within five minutes, its `jti` never seen before.
async fn asserted(
    st: &AppState,
    practice: &Practice,
    token_url: &str,
    assertion: &str,
) -> Result<AppRecord, OAuthError> {
    let bad = |m: &str| {
        oauth(
            "invalid_client",
            format!("the client assertion is refused: {m}"),
        )
    };
    // Whose it claims to be, to find the keys it must be signed with.
    let iss = assertion
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["iss"].as_str().map(str::to_owned))
        .ok_or_else(|| bad("it is not a JWT with an issuer"))?;
    let app = match st.store.app(practice, &iss).await? {
        Some(app) if app.kind == AppKind::Backend => app,
        _ => return Err(unknown_client()),
    };
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| bad("no JWT header"))?;
    if !matches!(header.alg, Algorithm::RS384 | Algorithm::ES384) {
        return Err(bad("it must be signed with RS384 or ES384"));
    }
    let keys: JwkSet = app
        .jwks
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .ok_or_else(|| bad("the client has no usable JWK Set"))?;
    let mut v = Validation::new(header.alg);
    v.set_audience(&[token_url]);
    v.set_issuer(&[app.client_id.as_str()]);
    v.sub = Some(app.client_id.clone());
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    v.leeway = LEEWAY_SECS;
    let claims = keys
        .keys
        .iter()
        .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
        .filter_map(|k| DecodingKey::from_jwk(k).ok())
        .find_map(|key| jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &v).ok())
        .ok_or_else(|| {
            bad("its signature, audience (the token endpoint), issuer, subject or expiry is not right")
        })?
        .claims;
    let now = Instant::now().millis();
    if claims.exp * 1000 > now + MAX_ASSERTION_MILLIS + (LEEWAY_SECS as i64) * 1000 {
        return Err(bad("it must expire within five minutes"));
    }
    let jti = claims.jti.ok_or_else(|| bad("it has no jti"))?;
    let until = claims.exp * 1000 + (LEEWAY_SECS as i64) * 1000;
    let fresh = st
        .store
        .put_once(
            practice,
            Once::Jti,
            &format!("{}/{jti}", claims.iss),
            String::new(),
            Instant::from_millis(until),
        )
        .await?;
    if !fresh {
        return Err(bad("its jti has been used before"));
    }
    Ok(app)
}

fn tokens_response(
    issued: gp_store::smart::Issued,
    refresh: Option<String>,
    id_token: Option<String>,
) -> Response {
    let mut body = json!({
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": issued.scope,
    });
    if let Some(p) = issued.patient {
        body["patient"] = json!(p);
    }
    if let Some(r) = issued.refresh_token.or(refresh) {
        body["refresh_token"] = json!(r);
    }
    if let Some(t) = id_token {
        body["id_token"] = json!(t);
    }
    crate::no_store_json(StatusCode::OK, body)
}

fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    // RFC 7636: 43 to 128 unreserved characters.
    let ok = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    ok && URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == challenge
}

/// `POST /practices/{ods}/smart/token`.
async fn token(
    State(st): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    // Token requests count as sign-in attempts (429 with Retry-After past
    // the limit), so that secrets and assertions cannot be guessed at speed.
    let address = crate::auth::client_address(&parts.extensions);
    if let Err(e) = st.limits.sign_in(address.as_deref()) {
        return e.into_response();
    }
    let out = async {
        let practice = st
            .practice(ods_of(&params))
            .await
            .map_err(|_| oauth("invalid_request", "this server has no such practice"))?;
        let e = Endpoints::new(&crate::root_url(&st.config, &parts.uri, &parts.headers), &practice);
        let form = read_form(&parts.headers, body).await?;
        let grant_type = field(&form, "grant_type")?.to_owned();
        let app = client(&st, &practice, &e.token, &parts.headers, &form).await?;
        match grant_type.as_str() {
            "authorization_code" => {
                let code = field(&form, "code")?.to_owned();
                let invalid = || oauth("invalid_grant", "the code is unknown, expired or used");
                let taken = st.store.once(&practice, Once::Code, &code, true).await?;
                let c: Code = taken
                    .and_then(|body| serde_json::from_str(&body).ok())
                    .ok_or_else(invalid)?;
                if c.client_id != app.client_id {
                    return Err(invalid());
                }
                if form.get("redirect_uri") != Some(&c.redirect_uri) {
                    return Err(oauth(
                        "invalid_grant",
                        "the redirect_uri is not the one the code was issued for",
                    ));
                }
                let verifier = field(&form, "code_verifier")?;
                if !verifier_matches(verifier, &c.challenge) {
                    return Err(oauth(
                        "invalid_grant",
                        "the code_verifier does not match the code_challenge (PKCE S256)",
                    ));
                }
                let id = match has_scope(&c.scope, "openid") {
                    true => Some(
                        id_token(
                            &st,
                            &practice,
                            &e,
                            &app.client_id,
                            &c.user_id,
                            c.fhir_user.as_deref(),
                            c.nonce.as_deref(),
                        )
                        .await?,
                    ),
                    false => None,
                };
                let issued = st
                    .store
                    .issue_tokens(
                        &practice,
                        GrantRequest {
                            client_id: app.client_id,
                            user: Some((c.user_id, c.role)),
                            scope: c.scope,
                            patient: c.patient,
                        },
                        None,
                    )
                    .await?;
                Ok(tokens_response(issued, None, id))
            }
            "refresh_token" => {
                let refresh = field(&form, "refresh_token")?.to_owned();
                let invalid =
                    || oauth("invalid_grant", "the refresh token is unknown, expired or revoked");
                let r = st
                    .store
                    .token(&practice, &refresh)
                    .await?
                    .filter(|r| {
                        r.kind == TokenKind::Refresh
                            && !r.revoked
                            && r.expires > Instant::now()
                            && r.client_id == app.client_id
                    })
                    .ok_or_else(invalid)?;
                let scope = match form.get("scope") {
                    Some(asked) => {
                        if let Some(s) = asked.split_whitespace().find(|s| !has_scope(&r.scope, s)) {
                            return Err(oauth(
                                "invalid_scope",
                                format!("'{s}' was not granted; a refresh may only narrow the scopes"),
                            ));
                        }
                        asked.clone()
                    }
                    None => r.scope.clone(),
                };
                let user = r.user_id.clone().zip(r.role.clone());
                // `openid` still granted: a new id_token for the same user.
                let id = match (&user, has_scope(&scope, "openid")) {
                    (Some((user_id, role)), true) => {
                        let found = st.store.introspect(&practice, &refresh).await?.ok_or_else(invalid)?;
                        let fhir_user = fhir_user_of(role, found.practitioner.as_deref());
                        Some(
                            id_token(&st, &practice, &e, &app.client_id, user_id, fhir_user.as_deref(), None)
                                .await?,
                        )
                    }
                    _ => None,
                };
                let issued = st
                    .store
                    .issue_tokens(
                        &practice,
                        GrantRequest {
                            client_id: app.client_id,
                            user,
                            scope,
                            patient: r.patient.clone(),
                        },
                        Some(r.grant_id),
                    )
                    .await?;
                Ok(tokens_response(issued, Some(refresh), id))
            }
            "client_credentials" => {
                if app.kind != AppKind::Backend {
                    return Err(oauth(
                        "unauthorized_client",
                        "client credentials are for backend services that authenticate with a private_key_jwt assertion",
                    ));
                }
                let asked = form.get("scope").map(String::as_str).unwrap_or_default();
                let scope = grantable(asked, &app.scope, AppKind::Backend);
                if scope.is_empty() {
                    return Err(oauth(
                        "invalid_scope",
                        format!("none of the scopes asked for is registered for this client (it may have: {})", app.scope),
                    ));
                }
                let issued = st
                    .store
                    .issue_tokens(
                        &practice,
                        GrantRequest {
                            client_id: app.client_id,
                            user: None,
                            scope,
                            patient: None,
                        },
                        None,
                    )
                    .await?;
                Ok(tokens_response(issued, None, None))
            }
            other => Err(oauth(
                "unsupported_grant_type",
                format!("'{other}' is not a grant type this server supports"),
            )),
        }
    }
    .await;
    out.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /practices/{ods}/smart/introspect` (RFC 7662): for a caller that
/// authenticates (section 2.1): a confidential app or backend service as
/// at the token endpoint (HTTP Basic, `client_secret_post` or a client
/// assertion), or signed-in staff with their session. No or a wrong
/// authentication, a public app or an app's access token is 401.
async fn introspect(
    State(st): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let out = async {
        let practice = st
            .practice(ods_of(&params))
            .await
            .map_err(|_| oauth("invalid_request", "this server has no such practice"))?;
        let e = Endpoints::new(
            &crate::root_url(&st.config, &parts.uri, &parts.headers),
            &practice,
        );
        let form = read_form(&parts.headers, body).await?;
        let not_a_client = || {
            oauth(
                "invalid_client",
                "introspection needs client authentication: a confidential app's or backend service's credentials, or a staff session",
            )
        };
        if crate::auth::bearer(&parts.headers).is_some() {
            let address = crate::auth::client_address(&parts.extensions);
            let ctx = crate::auth::authenticate(&st, &practice, &parts.headers, address)
                .await
                .map_err(|_| not_a_client())?;
            if ctx.grant.is_some() || ctx.access.user.is_none() {
                return Err(not_a_client());
            }
        } else {
            let has_credentials = parts.headers.contains_key(header::AUTHORIZATION)
                || form.contains_key("client_assertion")
                || form.contains_key("client_secret");
            if !has_credentials {
                return Err(not_a_client());
            }
            let app = client(&st, &practice, &e.token, &parts.headers, &form).await?;
            if app.kind == AppKind::Public {
                return Err(not_a_client());
            }
        }
        let token = form.get("token").cloned().unwrap_or_default();
        let found = st.store.introspect(&practice, &token).await?;
        let body = match found {
            None => json!({"active": false}),
            Some(i) => {
                let r = i.record;
                let mut v = json!({
                    "active": true,
                    "scope": r.scope,
                    "client_id": r.client_id,
                    "token_type": match r.kind { TokenKind::Access => "Bearer", TokenKind::Refresh => "refresh_token" },
                    "exp": r.expires.millis() / 1000,
                    "iat": r.created.millis() / 1000,
                    "sub": r.user_id.clone().unwrap_or_else(|| r.client_id.clone()),
                });
                if let Some(u) = i.username {
                    v["username"] = json!(u);
                }
                if let Some(p) = r.patient {
                    v["patient"] = json!(p);
                }
                v
            }
        };
        Ok::<_, OAuthError>(crate::no_store_json(StatusCode::OK, body))
    }
    .await;
    out.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /practices/{ods}/smart/revoke` (RFC 7009): the client the token
/// was issued to revokes it and every token of its grant. Answers 200
/// whether or not the token was known.
async fn revoke(
    State(st): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let address = crate::auth::client_address(&parts.extensions);
    if let Err(e) = st.limits.sign_in(address.as_deref()) {
        return e.into_response();
    }
    let out = async {
        let practice = st
            .practice(ods_of(&params))
            .await
            .map_err(|_| oauth("invalid_request", "this server has no such practice"))?;
        let e = Endpoints::new(
            &crate::root_url(&st.config, &parts.uri, &parts.headers),
            &practice,
        );
        let form = read_form(&parts.headers, body).await?;
        let app = client(&st, &practice, &e.token, &parts.headers, &form).await?;
        let token = field(&form, "token")?;
        if let Some(grant) = st
            .store
            .revoke_token(&practice, &app.client_id, token)
            .await?
        {
            st.sessions.forget_grant(&grant);
        }
        Ok::<_, OAuthError>(StatusCode::OK.into_response())
    }
    .await;
    out.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /practices/{ods}/smart/launch` (form or query `patient=ID`): a
/// signed-in user opens an app on a patient's record (EHR launch); the
/// answer's `launch` goes to the app's launch URL with `iss`.
async fn launch(
    State(st): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let out = async {
        let practice = st.practice(ods_of(&params)).await?;
        let address = crate::auth::client_address(&parts.extensions);
        let ctx = crate::auth::authenticate(&st, &practice, &parts.headers, address).await?;
        if ctx.access.user.is_none() || ctx.grant.is_some() {
            return Err(ApiError::from(gp_store::StoreError::Forbidden(
                "launch contexts are made by signed-in staff, not by apps".into(),
            )));
        }
        let form = read_form(&parts.headers, body)
            .await
            .map_err(|e| ApiError::bad_request(e.description))?;
        let patient = form.get("patient").cloned().unwrap_or_default();
        let code = mint_launch(&st, &ctx, &patient).await?;
        let e = Endpoints::new(
            &crate::root_url(&st.config, &parts.uri, &parts.headers),
            &practice,
        );
        Ok::<_, ApiError>(Json(json!({"launch": code, "iss": e.fhir})).into_response())
    }
    .await;
    out.unwrap_or_else(IntoResponse::into_response)
}

#[derive(serde::Deserialize)]
struct Registration {
    name: String,
    kind: String,
    scope: String,
    #[serde(default)]
    redirect_uris: Vec<String>,
    /// A backend service's public keys: a JWK Set.
    jwks: Option<Value>,
    /// Where a user-facing app is opened from a patient's record.
    launch_url: Option<String>,
}

fn app_json(a: &AppRecord) -> Value {
    json!({
        "client_id": a.client_id,
        "name": a.name,
        "kind": a.kind.code(),
        "scope": a.scope,
        "redirect_uris": a.redirect_uris,
        "launch_url": a.launch_url,
        "disabled": a.disabled,
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    name: Option<String>,
    scope: Option<String>,
    redirect_uris: Option<Vec<String>>,
    disabled: Option<bool>,
    /// A new launch URL; `""` removes it.
    launch_url: Option<String>,
}

async fn json_body<T: serde::de::DeserializeOwned>(body: Body, what: &str) -> Result<T, ApiError> {
    let bytes = http_body_util::Limited::new(body, MAX_FORM)
        .collect()
        .await
        .map_err(|_| ApiError::bad_request("the body could not be read or is too long"))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("{what}: {e}")))
}

/// `PATCH /practices/{ods}/smart/apps/{client_id}` (JSON with any of
/// `name`, `scope`, `redirect_uris`, `launch_url`, `disabled`): a practice
/// manager changes a registered app; disabling it ends its tokens' access
/// at once.
async fn update_app(
    State(st): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let out = async {
        let practice = st.practice(ods_of(&params)).await?;
        let address = crate::auth::client_address(&parts.extensions);
        let ctx = crate::auth::authenticate(&st, &practice, &parts.headers, address).await?;
        let c: Change = json_body(
            body,
            "a change is JSON with any of name, scope, redirect_uris, launch_url and disabled",
        )
        .await?;
        let client_id = params.get("client_id").cloned().unwrap_or_default();
        let app = st
            .store
            .update_app(
                &ctx,
                &client_id,
                gp_store::smart::AppChange {
                    name: c.name,
                    redirect_uris: c.redirect_uris,
                    scope: c.scope,
                    disabled: c.disabled,
                    launch_url: c.launch_url,
                },
            )
            .await?;
        if app.disabled {
            st.sessions.forget_client(&app.client_id);
        }
        Ok::<_, ApiError>(Json(app_json(&app)).into_response())
    }
    .await;
    out.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /practices/{ods}/smart/apps` (JSON: `name`, `kind` public,
/// confidential or backend, `scope`, `redirect_uris`, `jwks`, `launch_url`): a practice
/// manager (administer-users) registers an app; a confidential app's
/// `client_secret` is in the answer, once.
async fn register(
    State(st): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let out = async {
        let practice = st.practice(ods_of(&params)).await?;
        let address = crate::auth::client_address(&parts.extensions);
        let ctx = crate::auth::authenticate(&st, &practice, &parts.headers, address).await?;
        let r: Registration = json_body(
            body,
            "a registration is JSON with name, kind, scope and redirect_uris or jwks",
        )
        .await?;
        let kind = AppKind::parse(&r.kind)
            .ok_or_else(|| ApiError::bad_request("kind is public, confidential or backend"))?;
        let added = st
            .store
            .register_app(
                &ctx,
                gp_store::smart::NewApp {
                    name: r.name,
                    kind,
                    redirect_uris: r.redirect_uris,
                    jwks: r.jwks.map(|j| j.to_string()),
                    scope: r.scope,
                    launch_url: r.launch_url.filter(|u| !u.is_empty()),
                },
            )
            .await?;
        let mut body = app_json(&added.app);
        if let Some(secret) = added.secret {
            body["client_secret"] = json!(secret);
        }
        Ok::<_, ApiError>(crate::no_store_json(StatusCode::CREATED, body))
    }
    .await;
    out.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /practices/{ods}/smart/apps`: the registered apps.
async fn list_apps(
    State(st): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    request: axum::extract::Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let out = async {
        let practice = st.practice(ods_of(&params)).await?;
        let address = crate::auth::client_address(&parts.extensions);
        let ctx = crate::auth::authenticate(&st, &practice, &parts.headers, address).await?;
        let apps = st.store.apps(&ctx).await?;
        Ok::<_, ApiError>(Json(apps.iter().map(app_json).collect::<Vec<_>>()).into_response())
    }
    .await;
    out.unwrap_or_else(IntoResponse::into_response)
}

/// An EHR launch context for `patient`, whom the user must be able to
/// read (the read is audited).
pub async fn mint_launch(
    st: &AppState,
    ctx: &gp_store::Ctx,
    patient: &str,
) -> Result<String, gp_store::StoreError> {
    let bad = |m: &str| gp_store::StoreError::bad_request(gp_fhir::IssueType::Invalid, m);
    let id = Id::parse(patient).map_err(|_| bad("say which patient with patient=ID"))?;
    let ty = ResourceType::parse("Patient").ok_or_else(|| bad("Patient is not a resource type"))?;
    st.store.read(ctx, ty, id).await?;
    let code = random();
    let expires = Instant::from_millis(Instant::now().millis() + LAUNCH_MILLIS);
    st.store
        .put_once(
            &ctx.practice,
            Once::Launch,
            &code,
            patient.to_owned(),
            expires,
        )
        .await?;
    Ok(code)
}

/// An authorization request that passed the checks: what the approval
/// page shows and the code will carry.
#[derive(Clone, Debug)]
pub struct AuthRequest {
    pub practice: Practice,
    pub app: AppRecord,
    pub redirect_uri: String,
    pub state: String,
    /// The scopes asked for that the app's registration allows.
    pub scope: String,
    pub challenge: String,
    /// The OpenID Connect `nonce`, for the `id_token`.
    pub nonce: Option<String>,
    /// The patient of an EHR launch.
    pub launch_patient: Option<String>,
    /// A standalone launch asking for `launch/patient`: the user picks one.
    pub wants_patient: bool,
}

/// Why an authorization request cannot go on.
#[derive(Debug)]
pub enum AuthorizeError {
    /// Shown to the user: the client or redirect URI cannot be trusted,
    /// so nothing is sent back to it (RFC 6749 section 4.1.2.1).
    Page(String),
    /// Sent back to the app: the redirect URI with `error`.
    Redirect(String),
}

/// `redirect_uri` with the parameters added to its query.
pub fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let query = serde_urlencoded::to_string(params).unwrap_or_default();
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    format!("{redirect_uri}{sep}{query}")
}

/// Checks an authorization request (`GET /app/smart/authorize`): the
/// client, its redirect URI and the `aud` (the practice's FHIR base), then
/// `response_type=code`, `state`, PKCE with S256, the scopes and any
/// `launch`.
pub async fn check_authorize(
    st: &AppState,
    root: &str,
    q: &HashMap<String, String>,
) -> Result<AuthRequest, AuthorizeError> {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    let page = |m: &str| AuthorizeError::Page(m.to_owned());
    let aud = get("aud").trim_end_matches('/');
    let ods = aud
        .strip_prefix(&format!("{root}/practices/"))
        .and_then(|r| r.strip_suffix("/fhir"))
        .ok_or_else(|| {
            page("the app did not name this server's FHIR base as 'aud', so it cannot be sent here")
        })?;
    let practice = st
        .practice(ods)
        .await
        .map_err(|_| page("the 'aud' names a practice this server does not serve"))?;
    let app = match st.store.app(&practice, get("client_id")).await {
        Ok(Some(app)) if app.kind != AppKind::Backend => app,
        _ => {
            return Err(page(
                "the app (client_id) is not registered at this practice",
            ));
        }
    };
    let redirect_uri = get("redirect_uri").to_owned();
    if !app.redirect_uris.contains(&redirect_uri) {
        return Err(page(
            "the redirect_uri is not one the app registered, so the answer cannot be sent to it",
        ));
    }
    let state = get("state").to_owned();
    let fail = |error: &str, description: &str| {
        let mut params = vec![("error", error), ("error_description", description)];
        if !state.is_empty() {
            params.push(("state", state.as_str()));
        }
        AuthorizeError::Redirect(redirect_with(&redirect_uri, &params))
    };
    if get("response_type") != "code" {
        return Err(fail(
            "unsupported_response_type",
            "only response_type=code is supported",
        ));
    }
    if state.is_empty() {
        return Err(fail("invalid_request", "a state parameter is required"));
    }
    if get("code_challenge_method") != "S256" || get("code_challenge").len() < 43 {
        return Err(fail(
            "invalid_request",
            "PKCE is required, with code_challenge_method=S256",
        ));
    }
    let scope = grantable(get("scope"), &app.scope, app.kind);
    if !scope
        .split_whitespace()
        .any(|s| gp_store::smart::Rule::parse(s).is_some())
    {
        return Err(fail(
            "invalid_scope",
            "none of the clinical scopes asked for is registered for this app",
        ));
    }
    let launch = q.get("launch").filter(|l| !l.is_empty());
    // SMART App Launch 2.x, "Apps that launch from the EHR" (scopes and
    // launch context): an app given `launch=abc123` "requests the scope
    // `launch` and provides an additional URL parameter of `launch=abc123`";
    // the authorization request's `scope` must hold that `launch` value (or,
    // standalone, `launch/...` requirements). A `launch=` without the scope
    // is refused rather than ignored: ignoring it would drop the patient the
    // user launched from and leave the app without the context it was sent.
    if launch.is_some() && !has_scope(&scope, "launch") {
        return Err(fail(
            "invalid_scope",
            "an EHR launch (launch=) asks for the launch scope, and the app must be registered for it",
        ));
    }
    let launch_patient =
        match launch {
            Some(l) => {
                let found = st.store.once(&practice, Once::Launch, l, false).await;
                Some(found.ok().flatten().ok_or_else(|| {
                    fail("invalid_request", "the launch is unknown or has expired")
                })?)
            }
            None => None,
        };
    let wants_patient = launch_patient.is_none() && has_scope(&scope, "launch/patient");
    Ok(AuthRequest {
        practice,
        app,
        redirect_uri,
        state,
        scope,
        challenge: get("code_challenge").to_owned(),
        nonce: q.get("nonce").filter(|n| !n.is_empty()).cloned(),
        launch_patient,
        wants_patient,
    })
}

/// The user approved: a one-time code for `req`, bound to the user, their
/// role, the patient in context and the PKCE challenge; the URL to send
/// the browser back to the app with it.
pub async fn issue_code(
    st: &AppState,
    req: &AuthRequest,
    user: &SignedIn,
    patient: Option<String>,
) -> Result<String, ApiError> {
    let code = random();
    let c = Code {
        fhir_user: fhir_user_of(&user.role, user.practitioner.as_deref()),
        client_id: req.app.client_id.clone(),
        redirect_uri: req.redirect_uri.clone(),
        challenge: req.challenge.clone(),
        user_id: user.user_id.clone(),
        role: user.role.clone(),
        scope: req.scope.clone(),
        patient,
        nonce: req.nonce.clone(),
    };
    let body = serde_json::to_string(&c)
        .map_err(|e| ApiError::from(gp_store::StoreError::Backend(e.to_string())))?;
    let expires = Instant::from_millis(Instant::now().millis() + CODE_MILLIS);
    st.store
        .put_once(&req.practice, Once::Code, &code, body, expires)
        .await?;
    Ok(redirect_with(
        &req.redirect_uri,
        &[("code", code.as_str()), ("state", req.state.as_str())],
    ))
}

/// The user's own resource, for the `fhirUser` claim: the patient a
/// patient account's role names, else the account's Practitioner.
fn fhir_user_of(role: &str, practitioner: Option<&str>) -> Option<String> {
    match gp_store::online::role_patient(role) {
        Some(p) => Some(format!("Patient/{p}")),
        None => practitioner.map(|p| format!("Practitioner/{p}")),
    }
}

/// A new key pair for a backend service: an ES384 (P-384) private key as
/// PKCS#8 PEM, and the JWK Set of its public key (with `kid`).
pub fn generate_key() -> Result<(String, String), String> {
    use ring::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
        .map_err(|_| "generating a P-384 key failed".to_owned())?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| "reading the generated key failed".to_owned())?;
    // The public key is the uncompressed point: 0x04, then x and y.
    let point = pair.public_key().as_ref();
    if point.len() != 97 {
        return Err("unexpected public key length".into());
    }
    let (x, y) = (&point[1..49], &point[49..]);
    let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(point)[..16]);
    let jwks = json!({"keys": [{
        "kty": "EC", "crv": "P-384", "alg": "ES384", "use": "sig", "key_ops": ["verify"],
        "kid": kid, "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)
    }]});
    let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok((pem, jwks.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        assert!(verifier_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!verifier_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXx",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!verifier_matches(
            "short",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }

    #[test]
    fn a_generated_key_signs_what_its_jwks_verifies() {
        let (pem, jwks) = generate_key().unwrap_or_else(|e| panic!("{e}"));
        let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let set: JwkSet = serde_json::from_str(&jwks).unwrap_or_else(|e| panic!("{e}"));
        let claims = json!({"iss": "c", "sub": "c", "aud": "t", "exp": Instant::now().millis() / 1000 + 60, "jti": "1"});
        let jwt = jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::ES384), &claims, &key)
            .unwrap_or_else(|e| panic!("{e}"));
        let dk = DecodingKey::from_jwk(&set.keys[0]).unwrap_or_else(|e| panic!("{e}"));
        let mut v = Validation::new(Algorithm::ES384);
        v.set_audience(&["t"]);
        assert!(jsonwebtoken::decode::<Value>(&jwt, &dk, &v).is_ok());
    }
}
