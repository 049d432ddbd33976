//! SMART on FHIR (App Launch 2.x) in the store: the apps a practice has
//! registered, the tokens issued to them, and what their scopes allow.
//!
//! An app's access token resolves, like a staff session, to a [`Ctx`]:
//! for a user-facing app, the signed-in user's role with its activities
//! narrowed to those the granted scopes could use, and the [`AppGrant`]
//! itself, which the engine asks per resource type and interaction
//! ([`AppGrant::reach`]). `patient/` scopes reach only the patient in
//! context: searches get the Patient compartment as a criterion (so totals
//! and paging stay exact), reads and writes are checked against the
//! resource's compartment references. A backend service (client
//! credentials) acts as itself, with the scopes its registration allows.
//! Tokens are `{ODS}.{256 random bits}` like sessions, stored by SHA-256.

use std::sync::Arc;

use gp_fhir::{Instant, IssueType, ResourceType};

use crate::access::{
    Access, Activities, Activity, Policy, SignedIn, read_activity, write_activity,
};
use crate::accounts::{hash_password, new_token, token_hash, verify_password};
use crate::engine::blocking;
use crate::{Actor, Ctx, Practice, Store, StoreError};

/// How long an access token lasts.
pub const ACCESS_MILLIS: i64 = 60 * 60 * 1000;
/// How long a refresh token lasts with `online_access`: a working day, as
/// a staff session.
pub const ONLINE_MILLIS: i64 = crate::accounts::SESSION_MILLIS;
/// How long a refresh token lasts with `offline_access`.
pub const OFFLINE_MILLIS: i64 = 30 * 24 * 60 * 60 * 1000;

/// How an app authenticates at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppKind {
    /// A user-facing app that cannot keep a secret (PKCE only).
    Public,
    /// A user-facing app with a client secret (HTTP Basic).
    Confidential,
    /// A backend service: client credentials with a `private_key_jwt`
    /// assertion signed by a key of its registered JWKS.
    Backend,
}

impl AppKind {
    pub fn code(self) -> &'static str {
        match self {
            AppKind::Public => "public",
            AppKind::Confidential => "confidential",
            AppKind::Backend => "backend",
        }
    }

    pub fn parse(s: &str) -> Option<AppKind> {
        [AppKind::Public, AppKind::Confidential, AppKind::Backend]
            .into_iter()
            .find(|k| k.code() == s)
    }
}

/// A registered app, as stored.
#[derive(Clone, Debug)]
pub struct AppRecord {
    pub client_id: String,
    pub name: String,
    pub kind: AppKind,
    /// Argon2id hash of a confidential app's secret.
    pub secret_hash: Option<String>,
    pub redirect_uris: Vec<String>,
    /// A backend service's public keys (a JWK Set, JSON).
    pub jwks: Option<String>,
    /// The scopes the app may be granted, space-separated.
    pub scope: String,
    pub created: Instant,
    /// Disabled by the practice: it is refused everywhere and the tokens
    /// issued to it stop working.
    pub disabled: bool,
    /// Where a user-facing app is opened from a patient's record (SMART
    /// EHR launch, with `iss` and `launch` added to its query).
    pub launch_url: Option<String>,
}

/// Changes a practice manager makes to a registered app; `None` keeps.
#[derive(Clone, Debug, Default)]
pub struct AppChange {
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub scope: Option<String>,
    pub disabled: Option<bool>,
    /// A new launch URL; an empty one removes it.
    pub launch_url: Option<String>,
}

/// The kinds of one-time values the authorization server keeps
/// ([`crate::backend::OnceWrite`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Once {
    /// An authorization code waiting to be exchanged.
    Code,
    /// An EHR launch context waiting for the app.
    Launch,
    /// A client assertion's `jti`, seen until the assertion expires.
    Jti,
    /// The practice's key signing `id_token`s (made once, never expires).
    Key,
}

impl Once {
    fn code(self) -> &'static str {
        match self {
            Once::Code => "code",
            Once::Launch => "launch",
            Once::Jti => "jti",
            Once::Key => "key",
        }
    }
}

/// An app to register.
#[derive(Clone, Debug)]
pub struct NewApp {
    pub name: String,
    pub kind: AppKind,
    pub redirect_uris: Vec<String>,
    pub jwks: Option<String>,
    pub scope: String,
    pub launch_url: Option<String>,
}

/// An app just registered: a confidential app's secret is shown once.
#[derive(Clone, Debug)]
pub struct RegisteredApp {
    pub app: AppRecord,
    pub secret: Option<String>,
}

/// Access or refresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    pub fn code(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
        }
    }

    pub fn parse(s: &str) -> Option<TokenKind> {
        match s {
            "access" => Some(TokenKind::Access),
            "refresh" => Some(TokenKind::Refresh),
            _ => None,
        }
    }
}

/// A token issued to an app, as stored: the hash of the token, never the
/// token. Tokens issued together (and those refreshed from them) share a
/// `grant_id`; revoking one revokes them all.
#[derive(Clone, Debug)]
pub struct TokenRecord {
    pub token_hash: String,
    pub kind: TokenKind,
    pub grant_id: String,
    pub client_id: String,
    /// The user who approved the app; `None` for a backend service.
    pub user_id: Option<String>,
    pub role: Option<String>,
    pub scope: String,
    /// The patient in context (`launch/patient` or an EHR launch).
    pub patient: Option<String>,
    pub created: Instant,
    pub expires: Instant,
    pub revoked: bool,
}

/// An interaction, as SMART v2 scopes name them (`c r u d s`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Op {
    fn bit(self) -> u8 {
        match self {
            Op::Create => 1,
            Op::Read => 2,
            Op::Update => 4,
            Op::Delete => 8,
            Op::Search => 16,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Read => "read",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Search => "search",
        }
    }
}

const READS: u8 = 2 | 16;
const WRITES: u8 = 1 | 4 | 8;

/// Whose data a clinical scope reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Patient,
    User,
    System,
}

/// One clinical scope: `patient/Observation.rs`, `user/*.read`,
/// `patient/Observation.rs?category=...|laboratory`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub level: Level,
    /// `None` for `*`.
    pub ty: Option<ResourceType>,
    ops: u8,
    /// A v2 finer-grained constraint: search parameters that whatever the
    /// scope reaches must match (reads and searches of one type only).
    pub query: Option<Vec<(String, String)>>,
}

impl Rule {
    /// Reads a clinical scope in v1 (`read`, `write`, `*`) or v2
    /// (`cruds` letters in that order) syntax, with a v2 query restriction
    /// (`?category=...`) on reads and searches of one type whose search
    /// parameters OpenGP knows.
    pub fn parse(s: &str) -> Option<Rule> {
        let (s, query) = match s.split_once('?') {
            Some((s, q)) => (s, Some(q)),
            None => (s, None),
        };
        let (level, rest) = s.split_once('/')?;
        let level = match level {
            "patient" => Level::Patient,
            "user" => Level::User,
            "system" => Level::System,
            _ => return None,
        };
        let (ty, perm) = rest.split_once('.')?;
        let ty = match ty {
            "*" => None,
            t => Some(ResourceType::parse(t)?),
        };
        let ops = match perm {
            "read" => READS,
            "write" => WRITES,
            "*" => READS | WRITES,
            v2 => {
                let mut ops = 0u8;
                let mut last = None;
                for c in v2.chars() {
                    let at = "cruds".find(c)?;
                    if last.is_some_and(|l| at <= l) {
                        return None;
                    }
                    last = Some(at);
                    ops |= 1 << at;
                }
                if ops == 0 {
                    return None;
                }
                ops
            }
        };
        let query = match query {
            None => None,
            Some(q) => {
                let pairs = gp_fhir::search::parse_query_string(q);
                let understood = gp_fhir::search::parse(ty, &pairs, true).ok()?;
                if pairs.is_empty() || ty.is_none() || ops & WRITES != 0 {
                    return None;
                }
                if understood.criteria.is_empty() {
                    return None;
                }
                Some(pairs)
            }
        };
        Some(Rule {
            level,
            ty,
            ops,
            query,
        })
    }

    fn covers(&self, other: &Rule) -> bool {
        self.level == other.level
            && (self.ty.is_none() || self.ty == other.ty)
            && other.ops & !self.ops == 0
            && (self.query.is_none() || self.query == other.query)
    }

    fn allows(&self, ty: Option<ResourceType>, op: Op) -> bool {
        self.ops & op.bit() != 0 && (self.ty.is_none() || (ty.is_some() && self.ty == ty))
    }
}

/// The scopes that are not clinical that OpenGP understands.
pub const CONTEXT_SCOPES: [&str; 6] = [
    "launch",
    "launch/patient",
    "offline_access",
    "online_access",
    "openid",
    "fhirUser",
];

/// The scopes of `asked` that an app of `kind` registered with `registered`
/// may be granted, space-separated: clinical scopes a registered one
/// covers (`system/` ones for backend services only, `patient/` and
/// `user/` ones for user-facing apps only) and the launch, refresh and
/// identity scopes registered for user-facing apps. Anything else is left
/// out, as the specification allows.
pub fn grantable(asked: &str, registered: &str, kind: AppKind) -> String {
    let allowed: Vec<Rule> = registered
        .split_whitespace()
        .filter_map(Rule::parse)
        .collect();
    let mut out: Vec<&str> = Vec::new();
    for s in asked.split_whitespace() {
        let ok = match Rule::parse(s) {
            Some(r) => {
                (r.level == Level::System) == (kind == AppKind::Backend)
                    && allowed.iter().any(|a| a.covers(&r))
            }
            None => {
                kind != AppKind::Backend && CONTEXT_SCOPES.contains(&s) && has_scope(registered, s)
            }
        };
        if ok && !out.contains(&s) {
            out.push(s);
        }
    }
    out.join(" ")
}

/// Whether a scope string holds `scope`.
pub fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split_whitespace().any(|s| s == wanted)
}

/// How far a request reaches under an app's scopes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Wherever the role reaches.
    Any,
    /// Only the Patient compartment of this patient.
    Patient(String),
}

/// What an app was granted: carried by the [`Ctx`] of its access token.
#[derive(Clone, Debug)]
pub struct AppGrant {
    pub client_id: String,
    pub grant_id: String,
    pub scope: String,
    pub patient: Option<String>,
    pub expires: Instant,
    /// The hash of the access token the context came from (as the store
    /// keeps it), for work it started that outlives a restart; empty when
    /// the grant is not a token's.
    pub token_hash: String,
    rules: Vec<Rule>,
}

impl AppGrant {
    pub fn new(
        client_id: &str,
        grant_id: &str,
        scope: &str,
        patient: Option<String>,
        expires: Instant,
    ) -> AppGrant {
        AppGrant {
            client_id: client_id.to_owned(),
            grant_id: grant_id.to_owned(),
            scope: scope.to_owned(),
            patient,
            expires,
            token_hash: String::new(),
            rules: scope.split_whitespace().filter_map(Rule::parse).collect(),
        }
    }

    /// How far `op` on `ty` (`None`: across types) reaches: anywhere for a
    /// `user/` or `system/` scope, the patient in context for a `patient/`
    /// one; 403 when no scope allows it.
    pub fn reach(&self, ty: Option<ResourceType>, op: Op) -> Result<Reach, StoreError> {
        let matching = self.rules.iter().filter(|r| r.allows(ty, op));
        let mut patient = false;
        for r in matching {
            match r.level {
                Level::User | Level::System => return Ok(Reach::Any),
                Level::Patient => patient = true,
            }
        }
        match (&self.patient, patient) {
            (Some(p), true) => Ok(Reach::Patient(p.clone())),
            _ => Err(StoreError::Forbidden(format!(
                "the app's scopes ({}) do not allow {} of {}",
                self.scope,
                op.name(),
                ty.map_or_else(|| "every type".to_owned(), |t| t.to_string())
            ))),
        }
    }

    /// The search parameters a v2 query-restricted scope confines `op` on
    /// `ty` to (`None`: unrestricted). The scopes of the level
    /// [`AppGrant::reach`] chose are united: any unrestricted one lifts the
    /// restriction, several restrictions of one parameter are its values
    /// in one (`category=a,b`), other mixes are refused.
    pub fn scope_query(
        &self,
        ty: Option<ResourceType>,
        op: Op,
    ) -> Result<Option<Vec<(String, String)>>, StoreError> {
        let matching: Vec<&Rule> = self.rules.iter().filter(|r| r.allows(ty, op)).collect();
        let wide = matching.iter().any(|r| r.level != Level::Patient);
        let chosen = matching
            .into_iter()
            .filter(|r| !wide || r.level != Level::Patient);
        let mut out: Option<Vec<(String, String)>> = None;
        for r in chosen {
            let Some(q) = &r.query else {
                return Ok(None);
            };
            out = match out {
                None => Some(q.clone()),
                Some(mut o) if o.len() == 1 && q.len() == 1 && o[0].0 == q[0].0 => {
                    o[0].1 = format!("{},{}", o[0].1, q[0].1);
                    Some(o)
                }
                Some(_) => {
                    return Err(StoreError::Forbidden(
                        "the app's query-restricted scopes for this type cannot be combined".into(),
                    ));
                }
            };
        }
        Ok(out)
    }

    /// The activities the scopes could use; a grant's context is given
    /// those its role also allows, so an app never exceeds its user.
    pub fn activities(&self) -> Activities {
        let mut out = Vec::new();
        for r in &self.rules {
            match r.ty {
                Some(t) => {
                    if r.ops & READS != 0 {
                        out.push(read_activity(Some(t)));
                    }
                    if r.ops & WRITES != 0
                        && let Some(a) = write_activity(t)
                    {
                        out.push(a);
                    }
                }
                None => {
                    if r.ops & READS != 0 {
                        out.extend([
                            Activity::ViewDemographics,
                            Activity::ViewRecord,
                            Activity::ViewAudit,
                        ]);
                    }
                    if r.ops & WRITES != 0 {
                        out.extend([
                            Activity::AmendDemographics,
                            Activity::RecordClinical,
                            Activity::Prescribe,
                            Activity::ManageAppointments,
                            Activity::AdministerUsers,
                        ]);
                    }
                }
            }
        }
        out.into_iter().collect()
    }
}

/// Whether a stored resource is in the patient's compartment.
pub(crate) fn in_compartment(ty: ResourceType, id: &str, body: &[u8], patient: &str) -> bool {
    crate::audit::patients_of(ty, id, body)
        .iter()
        .any(|p| p == patient)
}

/// Refuses a resource outside the patient in context.
pub(crate) fn confine(
    reach: &Reach,
    ty: ResourceType,
    id: &str,
    body: &[u8],
) -> Result<(), StoreError> {
    match reach {
        Reach::Any => Ok(()),
        Reach::Patient(p) if in_compartment(ty, id, body, p) => Ok(()),
        Reach::Patient(_) => Err(outside()),
    }
}

/// The criterion confining a search of `ty` to what `reach` reaches: the
/// patient's compartment under `patient/` scopes (403 for a type that has
/// no place in it), nothing otherwise.
pub(crate) fn within(
    reach: &Reach,
    ty: Option<ResourceType>,
) -> Result<Option<gp_fhir::search::Criterion>, StoreError> {
    let Reach::Patient(p) = reach else {
        return Ok(None);
    };
    ResourceType::parse("Patient")
        .zip(gp_fhir::Id::parse(p).ok())
        .and_then(|(pt, id)| gp_fhir::search::compartment(pt, &id, ty))
        .map(Some)
        .ok_or_else(outside)
}

pub(crate) fn outside() -> StoreError {
    StoreError::Forbidden(
        "the app's patient/ scopes reach only the patient in context, and this is not in their record"
            .into(),
    )
}

/// Refused to a `patient/`-scoped app: interactions that reach across
/// resources without a compartment criterion (history of a type or of the
/// practice, the authors of an entry).
pub(crate) fn not_in_patient_context(what: &str) -> StoreError {
    StoreError::Forbidden(format!(
        "{what} is not available to an app with patient/ scopes; read the history of one of the patient's resources instead"
    ))
}

/// Refused by an app's v2 query-restricted scope.
pub(crate) fn narrowed_out(what: &str) -> StoreError {
    StoreError::Forbidden(format!(
        "{what} is outside what the app's query-restricted scope allows"
    ))
}

/// Under `patient/` scopes, inside the write's transaction (so that a
/// refusal rolls it back): refuses a version served or written outside the
/// patient's compartment and, for a write (`replaced`), one whose previous
/// version was outside it. This is how patches, conditional writes and
/// Bundle entries, whose targets are known only once they run, are confined.
pub(crate) fn confine_in(
    tx: &mut dyn crate::backend::ReadTx,
    reach: &Reach,
    v: &crate::StoredVersion,
    replaced: bool,
) -> Result<(), StoreError> {
    if *reach == Reach::Any {
        return Ok(());
    }
    if !v.body.is_empty() {
        confine(reach, v.resource_type, &v.id, &v.body)?;
    }
    let before = v.version.checked_sub(1).filter(|p| replaced && *p > 0);
    if let Some(p) = before
        && let Some(b) = tx.version(v.resource_type, &v.id, p)?
        && !b.body.is_empty()
    {
        confine(reach, b.resource_type, &b.id, &b.body)?;
    }
    Ok(())
}

fn bad(m: impl Into<String>) -> StoreError {
    StoreError::bad_request(IssueType::Invalid, m.into())
}

fn app_admin(ctx: &Ctx) -> Result<(), StoreError> {
    ctx.require(Activity::AdministerUsers)?;
    if ctx.grant.is_some() {
        return Err(StoreError::Forbidden(
            "the practice's apps are managed by its staff, not by apps".into(),
        ));
    }
    Ok(())
}

fn check_new_app(a: &NewApp) -> Result<(), StoreError> {
    if a.name.trim().is_empty() || a.name.len() > 200 {
        return Err(bad("an app needs a name (up to 200 characters)"));
    }
    let rules: Vec<&str> = a.scope.split_whitespace().collect();
    if rules.is_empty() {
        return Err(bad("an app needs at least one scope"));
    }
    for s in &rules {
        match Rule::parse(s) {
            Some(r) if (r.level == Level::System) != (a.kind == AppKind::Backend) => {
                return Err(bad(format!(
                    "'{s}': system/ scopes are for backend services, patient/ and user/ ones for user-facing apps"
                )));
            }
            Some(_) => {}
            None if CONTEXT_SCOPES.contains(s) && a.kind != AppKind::Backend => {}
            None => return Err(bad(format!("'{s}' is not a scope OpenGP grants"))),
        }
    }
    match a.kind {
        AppKind::Backend => {
            let jwks = a
                .jwks
                .as_deref()
                .ok_or_else(|| bad("a backend service needs a JWK Set of its public keys"))?;
            let v: serde_json::Value = serde_json::from_str(jwks)
                .map_err(|e| bad(format!("the JWK Set is not JSON: {e}")))?;
            if v["keys"].as_array().is_none_or(Vec::is_empty) {
                return Err(bad("the JWK Set has no keys"));
            }
            if a.launch_url.is_some() {
                return Err(bad(
                    "a backend service has no user to open it from a record: no launch URL",
                ));
            }
        }
        AppKind::Public | AppKind::Confidential => {
            if a.redirect_uris.is_empty() {
                return Err(bad("a user-facing app needs at least one redirect URI"));
            }
            if let Some(u) = a.redirect_uris.iter().find(|u| {
                !(u.starts_with("https://") || u.starts_with("http://")) || u.contains('#')
            }) {
                return Err(bad(format!(
                    "'{u}' is not a redirect URI (an absolute http(s) URL without a fragment)"
                )));
            }
            if let Some(u) = &a.launch_url {
                check_launch_url(u)?;
            }
        }
    }
    Ok(())
}

/// A launch URL is where the user's browser is sent with the launch
/// context (SMART App Launch, EHR launch): an absolute `https` URL without
/// user information or fragment, or `http` on this machine only
/// (`localhost`, `127.x.x.x`, `[::1]`), where nothing crosses a network.
fn check_launch_url(u: &str) -> Result<(), StoreError> {
    let refuse = || {
        bad(format!(
            "'{u}' is not a launch URL: an absolute https URL (http only for localhost), without a fragment"
        ))
    };
    let (secure, rest) = match (u.strip_prefix("https://"), u.strip_prefix("http://")) {
        (Some(r), _) => (true, r),
        (_, Some(r)) => (false, r),
        _ => return Err(refuse()),
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map(|(h, _)| h),
        None => Some(authority.rsplit_once(':').map_or(authority, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty() {
                h
            } else {
                ""
            }
        })),
    };
    let host = host.unwrap_or_default().to_ascii_lowercase();
    let loopback = host == "localhost"
        || host == "::1"
        || host.strip_prefix("127.").is_some_and(|r| {
            r.split('.').count() == 3 && r.split('.').all(|n| n.parse::<u8>().is_ok())
        });
    let fine = u.len() <= 2000
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b))
        && (authority.starts_with('[') || !host.contains(':'))
        && !u.contains(['#', ' ', '\t', '\n', '\r', '"', '<', '>'])
        && !authority.contains('@')
        && (secure || loopback);
    if fine { Ok(()) } else { Err(refuse()) }
}

/// Tokens just issued: shown to the client once.
#[derive(Clone, Debug)]
pub struct Issued {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: i64,
    pub scope: String,
    pub patient: Option<String>,
}

/// What an app is granted at the token endpoint.
#[derive(Clone, Debug)]
pub struct GrantRequest {
    pub client_id: String,
    /// The approving user and the role they were signed in to; `None` for
    /// a backend service.
    pub user: Option<(String, String)>,
    pub scope: String,
    pub patient: Option<String>,
}

/// What introspection tells about a token (RFC 7662).
#[derive(Clone, Debug)]
pub struct Introspection {
    pub record: TokenRecord,
    pub username: Option<String>,
    /// The user's Practitioner, if the account is linked to one.
    pub practitioner: Option<String>,
}

impl Store {
    /// Registers an app at the context's practice (a practice manager:
    /// the administer-users activity; never an app itself).
    pub async fn register_app(&self, ctx: &Ctx, new: NewApp) -> Result<RegisteredApp, StoreError> {
        app_admin(ctx)?;
        check_new_app(&new)?;
        let secret = (new.kind == AppKind::Confidential).then(crate::accounts::generate_secret);
        let secret_hash = match &secret {
            Some(s) => {
                let s = s.clone();
                Some(blocking(move || hash_password(&s)).await?)
            }
            None => None,
        };
        let app = AppRecord {
            client_id: uuid::Uuid::new_v4().to_string(),
            name: new.name,
            kind: new.kind,
            secret_hash,
            redirect_uris: new.redirect_uris,
            jwks: new.jwks,
            scope: new.scope,
            created: Instant::now(),
            disabled: false,
            launch_url: new.launch_url,
        };
        let record = app.clone();
        self.write_in(ctx, move |tx| tx.put_app(&record)).await?;
        Ok(RegisteredApp { app, secret })
    }

    /// The practice's registered apps.
    pub async fn apps(&self, ctx: &Ctx) -> Result<Vec<AppRecord>, StoreError> {
        app_admin(ctx)?;
        self.read_in(ctx, |tx| tx.apps()).await
    }

    /// The apps the signed-in staff user may open from a patient's record
    /// (EHR launch): enabled, user-facing, with a launch URL and the
    /// `launch` scope registered, and with a clinical scope the user's
    /// role would let them use (an app's token never exceeds its user).
    /// None for an app's token or a patient account: launching is the
    /// clinician's own act.
    pub async fn launchable_apps(&self, ctx: &Ctx) -> Result<Vec<AppRecord>, StoreError> {
        if ctx.access.user.is_none() || ctx.grant.is_some() || ctx.online.is_some() {
            return Ok(Vec::new());
        }
        let mine = ctx.access.activities;
        let apps = self.read_in(ctx, |tx| tx.apps()).await?;
        Ok(apps
            .into_iter()
            .filter(|a| {
                !a.disabled
                    && a.kind != AppKind::Backend
                    && a.launch_url.is_some()
                    && has_scope(&a.scope, "launch")
                    && AppGrant::new(&a.client_id, "", &a.scope, None, a.created)
                        .activities()
                        .iter()
                        .any(|x| mine.contains(x))
            })
            .collect())
    }

    /// Changes a registered app (a practice manager, as registering): its
    /// name, redirect URIs or scopes, checked as a registration is, or
    /// disables it (its tokens stop working at once) or enables it again.
    /// Scopes granted before stay as they were until their tokens expire.
    pub async fn update_app(
        &self,
        ctx: &Ctx,
        client_id: &str,
        change: AppChange,
    ) -> Result<AppRecord, StoreError> {
        app_admin(ctx)?;
        let id = client_id.to_owned();
        self.write_in(ctx, move |tx| {
            let mut app = tx
                .app(&id)?
                .ok_or_else(|| StoreError::NotFound(format!("no app has the client id '{id}'")))?;
            if let Some(n) = change.name {
                app.name = n;
            }
            if let Some(u) = change.redirect_uris {
                app.redirect_uris = u;
            }
            if let Some(s) = change.scope {
                app.scope = s;
            }
            if let Some(u) = change.launch_url {
                app.launch_url = Some(u).filter(|u| !u.is_empty());
            }
            if let Some(d) = change.disabled {
                app.disabled = d;
                // Its tokens end for good: enabling it again does not bring
                // them back.
                if d {
                    tx.revoke_app_tokens(&id)?;
                }
            }
            check_new_app(&NewApp {
                name: app.name.clone(),
                kind: app.kind,
                redirect_uris: app.redirect_uris.clone(),
                jwks: app.jwks.clone(),
                scope: app.scope.clone(),
                launch_url: app.launch_url.clone(),
            })?;
            tx.put_app(&app)?;
            Ok(app)
        })
        .await
    }

    /// Keeps a one-time value of the authorization server until `expires`
    /// (its key stored by SHA-256); `false` if a live one has that key.
    pub async fn put_once(
        &self,
        practice: &Practice,
        kind: Once,
        key: &str,
        body: String,
        expires: Instant,
    ) -> Result<bool, StoreError> {
        let system = Ctx::new(practice.clone(), Actor::system());
        let hash = token_hash(key);
        self.write_in(&system, move |tx| {
            tx.put_once(kind.code(), &hash, &body, expires, Instant::now())
        })
        .await
    }

    /// A live one-time value; used up (removed) when `take`.
    pub async fn once(
        &self,
        practice: &Practice,
        kind: Once,
        key: &str,
        take: bool,
    ) -> Result<Option<String>, StoreError> {
        let system = Ctx::new(practice.clone(), Actor::system());
        let hash = token_hash(key);
        self.write_in(&system, move |tx| {
            tx.once(kind.code(), &hash, Instant::now(), take)
        })
        .await
    }

    /// A registered app, for the authorization server: `None` if it is
    /// unknown or disabled.
    pub async fn app(
        &self,
        practice: &Practice,
        client_id: &str,
    ) -> Result<Option<AppRecord>, StoreError> {
        let system = Ctx::new(practice.clone(), Actor::system());
        let id = client_id.to_owned();
        let app = self.read_in(&system, move |tx| tx.app(&id)).await?;
        Ok(app.filter(|a| !a.disabled))
    }

    /// Checks a confidential app's secret.
    pub async fn check_app_secret(app: &AppRecord, secret: &str) -> bool {
        let (Some(hash), secret) = (app.secret_hash.clone(), secret.to_owned()) else {
            return false;
        };
        blocking(move || Ok(verify_password(&secret, &hash)))
            .await
            .unwrap_or(false)
    }

    /// Issues an access token (and a refresh token when `offline_access`
    /// or `online_access` was granted) for `grant`; `grant_id` continues
    /// an earlier grant (a refresh), else a new one starts.
    pub async fn issue_tokens(
        &self,
        practice: &Practice,
        grant: GrantRequest,
        continuing: Option<String>,
    ) -> Result<Issued, StoreError> {
        let system = Ctx::new(practice.clone(), Actor::system());
        let now = Instant::now();
        let grant_id = continuing
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let access = new_token(practice);
        let (user_id, role) = grant.user.clone().unzip();
        let record = |token: &str, kind, millis: i64| TokenRecord {
            token_hash: token_hash(token),
            kind,
            grant_id: grant_id.clone(),
            client_id: grant.client_id.clone(),
            user_id: user_id.clone(),
            role: role.clone(),
            scope: grant.scope.clone(),
            patient: grant.patient.clone(),
            created: now,
            expires: Instant::from_millis(now.millis() + millis),
            revoked: false,
        };
        let mut rows = vec![record(&access, TokenKind::Access, ACCESS_MILLIS)];
        let refresh_for = if has_scope(&grant.scope, "offline_access") {
            Some(OFFLINE_MILLIS)
        } else if has_scope(&grant.scope, "online_access") {
            Some(ONLINE_MILLIS)
        } else {
            None
        };
        // A refresh keeps the refresh token it was given.
        let refresh = match (refresh_for, &continuing, &grant.user) {
            (Some(millis), None, Some(_)) => {
                let t = new_token(practice);
                rows.push(record(&t, TokenKind::Refresh, millis));
                Some(t)
            }
            _ => None,
        };
        self.write_in(&system, move |tx| {
            rows.iter().try_for_each(|r| tx.put_token(r))
        })
        .await?;
        Ok(Issued {
            access_token: access,
            refresh_token: refresh,
            expires_in: ACCESS_MILLIS / 1000,
            scope: grant.scope,
            patient: grant.patient,
        })
    }

    /// A token issued to an app, if it is one, live or not.
    pub async fn token(
        &self,
        practice: &Practice,
        token: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let system = Ctx::new(practice.clone(), Actor::system());
        let hash = token_hash(token);
        self.read_in(&system, move |tx| tx.token(&hash)).await
    }

    /// RFC 7662: the token's record and user when it is live (not expired,
    /// not revoked, its user still there); `None` otherwise.
    pub async fn introspect(
        &self,
        practice: &Practice,
        token: &str,
    ) -> Result<Option<Introspection>, StoreError> {
        let Some(record) = self.token(practice, token).await? else {
            return Ok(None);
        };
        if record.revoked || record.expires <= Instant::now() {
            return Ok(None);
        }
        if self.app(practice, &record.client_id).await?.is_none() {
            return Ok(None);
        }
        let user = match &record.user_id {
            Some(id) => {
                let system = Ctx::new(practice.clone(), Actor::system());
                let id = id.clone();
                match self.read_in(&system, move |tx| tx.user_by_id(&id)).await? {
                    Some(u) => Some(u),
                    None => return Ok(None),
                }
            }
            None => None,
        };
        let (username, practitioner) = match user {
            Some(u) => (Some(u.username), u.practitioner),
            None => (None, None),
        };
        Ok(Some(Introspection {
            record,
            username,
            practitioner,
        }))
    }

    /// Revokes every token of the grant `token` belongs to, if it was
    /// issued to `client_id` (RFC 7009); the grant revoked, if any.
    pub async fn revoke_token(
        &self,
        practice: &Practice,
        client_id: &str,
        token: &str,
    ) -> Result<Option<String>, StoreError> {
        let Some(record) = self.token(practice, token).await? else {
            return Ok(None);
        };
        if record.client_id != client_id {
            return Ok(None);
        }
        let system = Ctx::new(practice.clone(), Actor::system());
        let grant = record.grant_id.clone();
        self.write_in(&system, move |tx| tx.revoke_tokens(&grant))
            .await?;
        Ok(Some(record.grant_id))
    }

    /// The context an app's access token stands for, by its hash (`None`
    /// if it is not one): the user's role narrowed by the scopes, or for a
    /// backend service the scopes alone. With `expired`, a token past its
    /// expiry still stands (for work it started, [`Store::resolve_owner`]).
    pub(crate) async fn resolve_app_token(
        &self,
        practice: &Practice,
        hash: String,
        expired: bool,
    ) -> Result<Option<Ctx>, StoreError> {
        let system = Ctx::new(practice.clone(), Actor::system());
        let token_hash = hash.clone();
        let found = self
            .read_in(&system, move |tx| {
                let Some(t) = tx.token(&hash)? else {
                    return Ok(None);
                };
                if tx.app(&t.client_id)?.is_none_or(|a| a.disabled) {
                    return Ok(None);
                }
                let user = match &t.user_id {
                    Some(id) => match tx.user_by_id(id)? {
                        Some(u) if !u.disabled => Some(u),
                        _ => return Ok(None),
                    },
                    None => None,
                };
                Ok(Some((t, user, tx.policy()?)))
            })
            .await?;
        let Some((t, user, policy)) = found else {
            return Ok(None);
        };
        if t.kind != TokenKind::Access || t.revoked || (!expired && t.expires <= Instant::now()) {
            return Ok(None);
        }
        let mut grant = AppGrant::new(&t.client_id, &t.grant_id, &t.scope, t.patient, t.expires);
        grant.token_hash = token_hash;
        let scoped = grant.activities();
        let ctx = match (user, t.role) {
            (Some(u), Some(role)) => {
                let policy = match policy {
                    Some(text) => Policy::from_json(&text)?,
                    None => Policy::baseline()?,
                };
                let role_allows = policy.activities(&role);
                let both: Activities = role_allows.iter().filter(|a| scoped.contains(*a)).collect();
                Ctx::signed_in(
                    practice.clone(),
                    SignedIn {
                        user_id: u.id,
                        username: u.username,
                        name: u.name,
                        role,
                        practitioner: u.practitioner,
                        expires: t.expires,
                        session: format!("app:{}", t.grant_id),
                    },
                    both,
                )
            }
            _ => Ctx {
                practice: practice.clone(),
                actor: Actor::new(format!("app:{}", t.client_id)),
                access: Access {
                    user: None,
                    activities: scoped,
                },
                address: None,
                grant: None,
                online: None,
            },
        };
        Ok(Some(Ctx {
            grant: Some(Arc::new(grant)),
            ..ctx
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> ResourceType {
        ResourceType::parse(s).unwrap_or_else(|| panic!("{s}"))
    }

    #[test]
    fn launch_urls_are_https_or_loopback_http() {
        for ok in [
            "https://app.example.com/launch",
            "https://app.example.com:8443/smart/launch?tenant=3",
            "https://app.example.com",
            "http://127.0.0.1:5000/launch",
            "http://localhost/launch",
            "http://[::1]:8080/",
        ] {
            assert!(check_launch_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://app.example.com/launch",
            "http://127.0.0.1.evil.example/launch",
            "http://localhost.evil.example/",
            "http://127.0.0.1@evil.example/",
            "https://user:pw@app.example.com/",
            "https://app.example.com/launch#frag",
            "ftp://app.example.com/",
            "/relative/launch",
            "https://",
            "https://app.example.com:port/",
            "https://app example.com/",
            "javascript:alert(1)",
        ] {
            assert!(check_launch_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes_read_in_both_syntaxes() {
        let v1 = Rule::parse("patient/*.read").unwrap_or_else(|| panic!("v1"));
        let v2 = Rule::parse("patient/*.rs").unwrap_or_else(|| panic!("v2"));
        assert_eq!(v1, v2);
        assert_eq!(
            Rule::parse("patient/Observation.write"),
            Rule::parse("patient/Observation.cud")
        );
        assert_eq!(
            Rule::parse("user/Observation.*"),
            Rule::parse("user/Observation.cruds")
        );
        for bad in [
            "patient/Observation.sr",
            "patient/Observation.rr",
            "patient/Observation.x",
            "patient/Nothing.read",
            "nobody/*.read",
            "patient/Observation.cruds?category=laboratory",
            "patient/*.rs?category=laboratory",
            "patient/Observation.rs?nonsense=1",
            "patient/Observation.rs?",
            "launch/patient",
        ] {
            assert_eq!(Rule::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn query_restricted_scopes_narrow_and_unite() {
        let lab = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
        let r = Rule::parse(lab).unwrap_or_else(|| panic!("restricted"));
        assert_eq!(r.query.as_ref().map(Vec::len), Some(1));
        let obs = Some(t("Observation"));
        let only = |scope: &str| {
            AppGrant::new("c", "g", scope, Some("p".into()), Instant::now())
                .scope_query(obs, Op::Search)
                .ok()
                .flatten()
                .map(|q| q[0].1.clone())
        };
        assert!(only(lab).is_some_and(|v| v.ends_with("|laboratory")));
        assert_eq!(only(&format!("{lab} patient/Observation.rs")), None);
        assert_eq!(
            only(
                "patient/Observation.rs?category=laboratory patient/Observation.rs?category=vital-signs"
            ),
            Some("laboratory,vital-signs".to_owned())
        );
        // A registered restricted scope grants only itself; a plain one
        // grants it restricted.
        assert_eq!(grantable(lab, lab, AppKind::Public), lab);
        assert_eq!(
            grantable(lab, "patient/Observation.rs", AppKind::Public),
            lab
        );
        assert_eq!(
            grantable("patient/Observation.rs", lab, AppKind::Public),
            ""
        );
    }

    #[test]
    fn a_grant_reaches_what_its_scopes_say() {
        let exp = Instant::now();
        let g = AppGrant::new(
            "c",
            "g",
            "patient/Observation.rs user/Patient.read launch/patient",
            Some("p1".into()),
            exp,
        );
        let obs = Some(t("Observation"));
        assert_eq!(
            g.reach(obs, Op::Read).ok(),
            Some(Reach::Patient("p1".into()))
        );
        assert_eq!(
            g.reach(Some(t("Patient")), Op::Search).ok(),
            Some(Reach::Any)
        );
        assert!(g.reach(obs, Op::Create).is_err());
        assert!(g.reach(Some(t("Condition")), Op::Read).is_err());
        assert!(g.reach(None, Op::Search).is_err());
        assert!(g.activities().contains(Activity::ViewRecord));
        assert!(!g.activities().contains(Activity::RecordClinical));
        let without_patient = AppGrant::new("c", "g", "patient/*.read", None, exp);
        assert!(without_patient.reach(obs, Op::Read).is_err());
    }

    #[test]
    fn only_registered_scopes_are_granted() {
        let reg = "patient/*.rs user/Observation.read launch/patient offline_access";
        assert_eq!(
            grantable(
                "launch/patient patient/Observation.read user/*.read openid patient/Patient.write offline_access",
                reg,
                AppKind::Public
            ),
            "launch/patient patient/Observation.read offline_access"
        );
        assert_eq!(
            grantable("system/*.rs", "system/Observation.rs", AppKind::Backend),
            ""
        );
        assert_eq!(
            grantable(
                "system/Observation.read launch",
                "system/*.read",
                AppKind::Backend
            ),
            "system/Observation.read"
        );
    }
}
