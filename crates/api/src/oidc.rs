//! Staff sign-in through an external OpenID Connect provider (OpenID
//! Connect Core 1.0, the authorization code flow, with PKCE, RFC 7636),
//! the way a national staff identity service such as NHS CIS2 is used.
//!
//! At start the provider's metadata is read from
//! `{issuer}/.well-known/openid-configuration` and its signing keys (JWKS)
//! fetched; a server that cannot reach its provider does not start. The
//! keys are fetched again when an id_token names a key not yet seen.
//!
//! A sign-in: [`Oidc::begin`] makes the `state`, `nonce` and PKCE verifier,
//! keeps them here (never in the browser) for ten minutes, and answers the
//! provider URL to send the browser to; [`Oidc::finish`] takes the
//! provider's answer, checks `state`, exchanges the code
//! (`client_secret_basic` or `client_secret_post` as the provider
//! supports, or none for a public client), and checks the id_token
//! ([`validate_id_token`]): signature with an algorithm the provider
//! declares, `iss`, `aud`, `azp`, `exp`, `iat`, `nonce`; claims the
//! id_token lacks are asked of the UserInfo endpoint. What it answers
//! is the account name the configured claim carries and, when configured,
//! the role profiles the provider grants; the store does the rest
//! ([`gp_store::Store::sign_in_external`]).
//!
//! The client secret is never logged (this module's `Debug` hides it).

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// How long a sign-in may take at the provider.
const PENDING_FOR: Duration = Duration::from_secs(600);
/// Sign-ins in progress at once, at most (each is a few hundred bytes).
const MAX_PENDING: usize = 20_000;
/// Clock difference allowed with the provider.
const LEEWAY_SECS: u64 = 60;
/// The JWKS is fetched again for an unknown key at most this often.
const JWKS_REFETCH: Duration = Duration::from_secs(10);

/// A deployment's provider, as configured.
#[derive(Clone)]
pub struct OidcConfig {
    /// The issuer URL, exactly as the provider names itself.
    pub issuer: String,
    pub client_id: String,
    /// None for a public client (PKCE only).
    pub client_secret: Option<String>,
    /// The scopes asked for; `openid` is always among them.
    pub scopes: Vec<String>,
    /// The claim naming the OpenGP account (`preferred_username` by
    /// default); `sub` when the token lacks it.
    pub username_claim: String,
    /// The claim carrying the role profiles the provider grants (CIS2's
    /// `nhsid_nrbac_roles`, or an array of R-codes such as `roles`); when
    /// set, a sign-in may use only those of the account's roles.
    pub roles_claim: Option<String>,
    /// What the sign-in page calls the provider.
    pub name: String,
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "(hidden)"),
            )
            .field("scopes", &self.scopes)
            .field("username_claim", &self.username_claim)
            .field("roles_claim", &self.roles_claim)
            .field("name", &self.name)
            .finish()
    }
}

/// The parts of the provider's metadata a sign-in uses.
#[derive(Clone, Debug, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    userinfo_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    id_token_signing_alg_values_supported: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientAuth {
    Basic,
    Post,
    None,
}

/// A sign-in in progress, by its `state`.
struct Pending {
    nonce: String,
    verifier: String,
    redirect_uri: String,
    practice: String,
    next: String,
    started: Instant,
}

/// The configured provider, discovered.
pub struct Oidc {
    config: OidcConfig,
    meta: Metadata,
    algorithms: Vec<Algorithm>,
    auth: ClientAuth,
    http: reqwest::Client,
    keys: RwLock<(JwkSet, Instant)>,
    pending: Mutex<HashMap<String, Pending>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("config", &self.config)
            .field("auth", &self.auth)
            .finish()
    }
}

/// A sign-in that could not complete, with what to tell the user.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider or the user refused, or the answer was not one this
    /// server asked for or can trust.
    #[error("{0}")]
    Refused(String),
    /// The provider could not be reached or answered nonsense.
    #[error("{0}")]
    Unavailable(String),
}

/// Where to send the browser, and the `state` to keep in its cookie.
#[derive(Debug)]
pub struct Started {
    pub url: String,
    pub state: String,
}

/// Who the provider says signed in.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The OpenGP user name the configured claim names.
    pub username: String,
    /// The role profiles the provider grants, when a roles claim is configured.
    pub roles: Option<Vec<String>>,
    /// The practice and the page the sign-in was started for.
    pub practice: String,
    pub next: String,
}

/// The provider's answer at the redirect URI.
#[derive(Debug, Default, Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    /// The issuer of the answer (RFC 9207), when the provider says.
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// What an id_token must say to be accepted.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub algorithms: &'a [Algorithm],
}

fn random() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

fn algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

impl Oidc {
    /// Reads the provider's metadata and keys; fails with a message
    /// naming the provider when it cannot.
    pub async fn discover(config: OidcConfig) -> anyhow::Result<Oidc> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            config.issuer.trim_end_matches('/')
        );
        let what = || format!("reading the OpenID Connect provider's metadata at {url}");
        let res = http.get(&url).send().await.with_context(what)?;
        if !res.status().is_success() {
            bail!("{}: it answered {}", what(), res.status());
        }
        let meta: Metadata = res
            .json()
            .await
            .with_context(|| format!("{}: it is not OpenID Provider Metadata", what()))?;
        if meta.issuer != config.issuer {
            bail!(
                "the OpenID Connect provider at {url} calls itself '{}', not '{}': \
                 configure the issuer exactly as the provider names itself",
                meta.issuer,
                config.issuer
            );
        }
        let algorithms: Vec<Algorithm> = if meta.id_token_signing_alg_values_supported.is_empty() {
            vec![Algorithm::RS256]
        } else {
            meta.id_token_signing_alg_values_supported
                .iter()
                .filter_map(|a| algorithm(a))
                .collect()
        };
        if algorithms.is_empty() {
            bail!(
                "the OpenID Connect provider signs id_tokens only with {:?}, none of which OpenGP checks",
                meta.id_token_signing_alg_values_supported
            );
        }
        let methods = &meta.token_endpoint_auth_methods_supported;
        let offers = |m: &str| methods.iter().any(|x| x == m);
        let auth = match &config.client_secret {
            None => ClientAuth::None,
            // The default when the provider does not say (Discovery 1.0 §3).
            Some(_) if methods.is_empty() || offers("client_secret_basic") => ClientAuth::Basic,
            Some(_) if offers("client_secret_post") => ClientAuth::Post,
            Some(_) => bail!(
                "the OpenID Connect provider authenticates clients only by {methods:?}; \
                 OpenGP uses client_secret_basic or client_secret_post"
            ),
        };
        let keys = fetch_keys(&http, &meta.jwks_uri).await?;
        Ok(Oidc {
            config,
            meta,
            algorithms,
            auth,
            http,
            keys: RwLock::new((keys, Instant::now())),
            pending: Mutex::default(),
        })
    }

    /// What the sign-in page calls the provider.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The provider's issuer URL, which the audit trail names.
    pub fn issuer(&self) -> &str {
        &self.meta.issuer
    }

    /// The origin of the provider's authorization endpoint, which the
    /// sign-in page's form may be sent on to.
    pub fn authorization_origin(&self) -> String {
        let e = &self.meta.authorization_endpoint;
        let after_scheme = e.find("://").map_or(0, |i| i + 3);
        match e[after_scheme..].find('/') {
            Some(i) => e[..after_scheme + i].to_owned(),
            None => e.clone(),
        }
    }

    /// Starts a sign-in to `practice` that comes back to `redirect_uri`
    /// and then goes on to `next`.
    pub fn begin(
        &self,
        practice: &str,
        next: &str,
        redirect_uri: &str,
    ) -> Result<Started, OidcError> {
        let (state, nonce, verifier) = (random(), random(), random());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        {
            let mut pending = self
                .pending
                .lock()
                .map_err(|_| OidcError::Unavailable("sign-in state is unavailable".into()))?;
            pending.retain(|_, p| p.started.elapsed() < PENDING_FOR);
            if pending.len() >= MAX_PENDING {
                return Err(OidcError::Unavailable(
                    "too many sign-ins are in progress; try again in a few minutes".into(),
                ));
            }
            pending.insert(
                state.clone(),
                Pending {
                    nonce: nonce.clone(),
                    verifier,
                    redirect_uri: redirect_uri.to_owned(),
                    practice: practice.to_owned(),
                    next: next.to_owned(),
                    started: Instant::now(),
                },
            );
        }
        let mut scopes = vec!["openid".to_owned()];
        scopes.extend(
            self.config
                .scopes
                .iter()
                .filter(|s| *s != "openid")
                .cloned(),
        );
        let query = serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", self.config.client_id.as_str()),
            ("redirect_uri", redirect_uri),
            ("scope", scopes.join(" ").as_str()),
            ("state", state.as_str()),
            ("nonce", nonce.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .map_err(|e| OidcError::Unavailable(e.to_string()))?;
        let endpoint = &self.meta.authorization_endpoint;
        let sep = if endpoint.contains('?') { '&' } else { '?' };
        Ok(Started {
            url: format!("{endpoint}{sep}{query}"),
            state,
        })
    }

    /// Completes a sign-in: `cookie_state` is the `state` the browser's
    /// cookie kept, `answer` what the provider sent back.
    pub async fn finish(
        &self,
        cookie_state: Option<&str>,
        answer: &Callback,
    ) -> Result<Identity, OidcError> {
        let refused = |m: &str| OidcError::Refused(m.to_owned());
        let state = answer.state.as_deref().unwrap_or_default();
        // Taken out whatever happens next: a state works once.
        let pending = self
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.remove(state))
            .filter(|p| p.started.elapsed() < PENDING_FOR);
        let Some(pending) = pending.filter(|_| cookie_state == Some(state)) else {
            return Err(refused(
                "this sign-in was not started here, has expired or was already used; start again",
            ));
        };
        if answer.iss.as_ref().is_some_and(|i| *i != self.meta.issuer) {
            return Err(refused("the answer came from another identity provider"));
        }
        if let Some(error) = &answer.error {
            let more = answer
                .error_description
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            return Err(OidcError::Refused(match error.as_str() {
                "access_denied" => format!("{} did not allow the sign-in{more}", self.config.name),
                _ => format!("{} refused the sign-in: {error}{more}", self.config.name),
            }));
        }
        let code = answer
            .code
            .as_deref()
            .ok_or_else(|| refused("the provider sent no authorization code"))?;
        let (id_token, access_token) = self.exchange(code, &pending).await?;
        let mut claims = self.check(&id_token, &pending.nonce).await?;
        let wanted = [
            Some(&self.config.username_claim),
            self.config.roles_claim.as_ref(),
        ];
        if wanted.iter().flatten().any(|c| !claims.contains_key(*c))
            && let (Some(token), Some(_)) = (access_token, &self.meta.userinfo_endpoint)
        {
            // CIS2, for one, gives the roles at the UserInfo endpoint only.
            for (k, v) in self.userinfo(&token, &claims).await? {
                claims.entry(k).or_insert(v);
            }
        }
        let username = claims
            .get(&self.config.username_claim)
            .or_else(|| claims.get("sub"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| refused("the provider's token names no user"))?
            .to_owned();
        let roles = self
            .config
            .roles_claim
            .as_ref()
            .map(|c| role_codes(claims.get(c), &pending.practice));
        Ok(Identity {
            username,
            roles,
            practice: pending.practice,
            next: pending.next,
        })
    }

    /// The claims the UserInfo endpoint gives, when they are about the
    /// same user as the id_token (OpenID Connect Core §5.3.2).
    async fn userinfo(
        &self,
        access_token: &str,
        id_claims: &Map<String, Value>,
    ) -> Result<Map<String, Value>, OidcError> {
        let url = self.meta.userinfo_endpoint.as_deref().unwrap_or_default();
        let fail = |e: String| {
            OidcError::Unavailable(format!(
                "{} did not say who signed in: {e}",
                self.config.name
            ))
        };
        let res = self
            .http
            .get(url)
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !res.status().is_success() {
            return Err(fail(format!(
                "its UserInfo endpoint answered {}",
                res.status()
            )));
        }
        let info: Map<String, Value> = res.json().await.map_err(|e| fail(e.to_string()))?;
        if info.get("sub") != id_claims.get("sub") {
            return Err(OidcError::Refused(
                "the provider's UserInfo is about another user".into(),
            ));
        }
        Ok(info)
    }

    /// The token request (RFC 6749 §4.1.3): the id_token it answers, and
    /// the access token for the UserInfo endpoint.
    async fn exchange(
        &self,
        code: &str,
        pending: &Pending,
    ) -> Result<(String, Option<String>), OidcError> {
        let unavailable = |e: String| {
            OidcError::Unavailable(format!(
                "{} could not complete the sign-in: {e}",
                self.config.name
            ))
        };
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", pending.redirect_uri.as_str()),
            ("code_verifier", pending.verifier.as_str()),
        ];
        let secret = self.config.client_secret.as_deref().unwrap_or_default();
        let mut req = self.http.post(&self.meta.token_endpoint);
        match self.auth {
            ClientAuth::Basic => {
                // Each part form-encoded first (RFC 6749 §2.3.1).
                let enc = |s: &str| {
                    serde_urlencoded::to_string([("", s)])
                        .map(|e| e[1..].to_owned())
                        .unwrap_or_default()
                };
                let pair = format!("{}:{}", enc(&self.config.client_id), enc(secret));
                req = req.header(
                    reqwest::header::AUTHORIZATION,
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(pair)
                    ),
                );
            }
            ClientAuth::Post => {
                form.push(("client_id", &self.config.client_id));
                form.push(("client_secret", secret));
            }
            ClientAuth::None => form.push(("client_id", &self.config.client_id)),
        }
        let res = req
            .form(&form)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let status = res.status();
        let body: Value = res.json().await.map_err(|e| unavailable(e.to_string()))?;
        if !status.is_success() {
            let error = body.get("error").and_then(Value::as_str).unwrap_or("");
            return Err(OidcError::Refused(format!(
                "{} refused the sign-in ({status} {error})",
                self.config.name
            )));
        }
        let id_token = body
            .get("id_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| unavailable("its answer carried no id_token".into()))?;
        let access = body
            .get("access_token")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok((id_token, access))
    }

    /// Validates an id_token against the provider's keys, fetching them
    /// again once if it names a key not yet seen.
    async fn check(&self, id_token: &str, nonce: &str) -> Result<Map<String, Value>, OidcError> {
        let expected = Expected {
            issuer: &self.meta.issuer,
            client_id: &self.config.client_id,
            nonce,
            algorithms: &self.algorithms,
        };
        let known = |keys: &JwkSet| key_for(id_token, keys).is_some();
        let stale = self
            .keys
            .read()
            .map(|k| !known(&k.0) && k.1.elapsed() >= JWKS_REFETCH)
            .unwrap_or(false);
        if stale {
            match fetch_keys(&self.http, &self.meta.jwks_uri).await {
                Ok(keys) => {
                    if let Ok(mut k) = self.keys.write() {
                        *k = (keys, Instant::now());
                    }
                }
                Err(e) => tracing::warn!("fetching the OpenID Connect provider's keys: {e:#}"),
            }
        }
        let keys =
            self.keys.read().map(|k| k.0.clone()).map_err(|_| {
                OidcError::Unavailable("the provider's keys are unavailable".into())
            })?;
        validate_id_token(id_token, &keys, &expected).map_err(|e| {
            tracing::warn!("an id_token was refused: {e}");
            OidcError::Refused(format!("the provider's token could not be accepted: {e}"))
        })
    }
}

async fn fetch_keys(http: &reqwest::Client, uri: &str) -> anyhow::Result<JwkSet> {
    let what = || format!("fetching the OpenID Connect provider's keys at {uri}");
    let res = http.get(uri).send().await.with_context(what)?;
    if !res.status().is_success() {
        bail!("{}: it answered {}", what(), res.status());
    }
    res.json()
        .await
        .with_context(|| format!("{}: not a JWK Set", what()))
}

/// The key an id_token's header names (by `kid`, or the only signing key
/// when it names none).
fn key_for<'a>(token: &str, keys: &'a JwkSet) -> Option<&'a Jwk> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    let signing = keys.keys.iter().filter(|k| {
        !matches!(
            k.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
        )
    });
    match &header.kid {
        Some(kid) => keys.find(kid),
        None => {
            let all: Vec<&Jwk> = signing.collect();
            (all.len() == 1).then(|| all[0])
        }
    }
}

/// Checks an id_token (OpenID Connect Core §3.1.3.7): its signature by
/// one of `keys` with an algorithm the provider declares, its issuer,
/// audience and authorized party, expiry and issue time, and nonce.
/// Answers its claims, or why it is refused.
pub fn validate_id_token(
    token: &str,
    keys: &JwkSet,
    expected: &Expected<'_>,
) -> Result<Map<String, Value>, String> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| format!("it is not a JWT ({e})"))?;
    if !expected.algorithms.contains(&header.alg) {
        return Err(format!(
            "it is signed with {:?}, which the provider does not declare",
            header.alg
        ));
    }
    let jwk = key_for(token, keys).ok_or("it is signed by a key the provider does not publish")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("the provider's key: {e}"))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[expected.issuer]);
    validation.set_audience(&[expected.client_id]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    validation.leeway = LEEWAY_SECS;
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
        .map_err(|e| format!("{e}"))?;
    let claims = data.claims;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    if iat > now + LEEWAY_SECS {
        return Err("it was issued in the future".into());
    }
    if claims.get("nonce").and_then(Value::as_str) != Some(expected.nonce) {
        return Err("its nonce is not this sign-in's".into());
    }
    let audiences = match claims.get("aud") {
        Some(Value::Array(a)) => a.len(),
        _ => 1,
    };
    match claims.get("azp").and_then(Value::as_str) {
        Some(azp) if azp != expected.client_id => {
            return Err("it was issued to another client (azp)".into());
        }
        None if audiences > 1 => {
            return Err("it has several audiences and no authorized party (azp)".into());
        }
        _ => {}
    }
    Ok(claims)
}

/// The role profiles (R-codes) a roles claim grants at `practice`: an
/// array of codes (`["R8000"]`), a space-separated string, or CIS2's
/// `nhsid_nrbac_roles` (objects whose `role_code` is `S…:G…:R…`, kept
/// only for the practice's `org_code` when they name one).
pub fn role_codes(claim: Option<&Value>, practice: &str) -> Vec<String> {
    fn codes_in(s: &str, out: &mut Vec<String>) {
        for part in s.split([':', ' ', ',']) {
            let part = part.trim();
            if part.len() > 1
                && part.starts_with('R')
                && part[1..].bytes().all(|b| b.is_ascii_digit())
                && !out.iter().any(|c| c == part)
            {
                out.push(part.to_owned());
            }
        }
    }
    let mut out = Vec::new();
    match claim {
        Some(Value::String(s)) => codes_in(s, &mut out),
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::String(s) => codes_in(s, &mut out),
                    Value::Object(o) => {
                        let here = o
                            .get("org_code")
                            .and_then(Value::as_str)
                            .is_none_or(|org| org.eq_ignore_ascii_case(practice));
                        if here && let Some(code) = o.get("role_code").and_then(Value::as_str) {
                            codes_in(code, &mut out);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use serde_json::json;

    /// A P-256 key made now: the encoding key and its JWK Set.
    fn key(kid: &str) -> (EncodingKey, JwkSet) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap_or_else(|e| panic!("{e}"));
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap_or_else(|e| panic!("{e}"));
        let public = pair.public_key().as_ref();
        let (x, y) = (&public[1..33], &public[33..65]);
        let jwks: JwkSet = serde_json::from_value(json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "kid": kid, "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)
        }]}))
        .unwrap_or_else(|e| panic!("{e}"));
        (EncodingKey::from_ec_der(pkcs8.as_ref()), jwks)
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    fn sign(key: &EncodingKey, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, key).unwrap_or_else(|e| panic!("{e}"))
    }

    fn good_claims() -> Value {
        json!({
            "iss": "https://idp.example", "aud": "opengp", "sub": "u1",
            "preferred_username": "jsmith", "nonce": "n-1",
            "iat": now(), "exp": now() + 300
        })
    }

    const ALGS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

    fn expected() -> Expected<'static> {
        Expected {
            issuer: "https://idp.example",
            client_id: "opengp",
            nonce: "n-1",
            algorithms: &ALGS,
        }
    }

    #[test]
    fn a_good_id_token_is_accepted_and_every_tampering_refused() {
        let (k, keys) = key("k1");
        let ok = validate_id_token(&sign(&k, "k1", &good_claims()), &keys, &expected())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok["preferred_username"], "jsmith");

        let refused = |claims: Value, why: &str| {
            let t = sign(&k, "k1", &claims);
            let e = validate_id_token(&t, &keys, &expected()).err();
            assert!(e.is_some(), "accepted: {why}");
        };
        let with = |k: &str, v: Value| {
            let mut c = good_claims();
            c[k] = v;
            c
        };
        refused(with("aud", json!("someone-else")), "wrong audience");
        refused(with("iss", json!("https://evil.example")), "wrong issuer");
        refused(with("nonce", json!("n-2")), "wrong nonce");
        refused(with("exp", json!(now() - 3600)), "expired");
        refused(with("iat", json!(now() + 3600)), "issued in the future");
        refused(with("azp", json!("someone-else")), "another party");
        refused(
            with("aud", json!(["opengp", "other"])),
            "several audiences, no azp",
        );
        let mut no_nonce = good_claims();
        no_nonce.as_object_mut().map(|o| o.remove("nonce"));
        refused(no_nonce, "no nonce");

        // A changed payload breaks the signature.
        let t = sign(&k, "k1", &good_claims());
        let parts: Vec<&str> = t.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&with("preferred_username", json!("admin")))
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert!(validate_id_token(&tampered, &keys, &expected()).is_err());

        // Signed by a key the provider does not publish (same kid).
        let (other, _) = key("k1");
        assert!(
            validate_id_token(&sign(&other, "k1", &good_claims()), &keys, &expected()).is_err()
        );
        // An algorithm the provider does not declare.
        let rs_only = Expected {
            algorithms: &[Algorithm::RS256],
            ..expected()
        };
        assert!(validate_id_token(&sign(&k, "k1", &good_claims()), &keys, &rs_only).is_err());
        // Unsigned.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1"}"#),
            parts[1]
        );
        assert!(validate_id_token(&none, &keys, &expected()).is_err());
    }

    #[test]
    fn role_claims_in_either_shape_give_r_codes() {
        assert_eq!(
            role_codes(Some(&json!(["R8000", "R8003"])), "A81001"),
            ["R8000", "R8003"]
        );
        assert_eq!(
            role_codes(Some(&json!("R8000 R0260")), "A81001"),
            ["R8000", "R0260"]
        );
        let cis2 = json!([
            {"person_roleid": "1", "org_code": "A81001", "role_code": "S8000:G8000:R8000"},
            {"person_roleid": "2", "org_code": "B82002", "role_code": "S8000:G8000:R8003"}
        ]);
        assert_eq!(role_codes(Some(&cis2), "A81001"), ["R8000"]);
        assert!(role_codes(None, "A81001").is_empty());
        assert!(role_codes(Some(&json!(42)), "A81001").is_empty());
    }
}
