//! Built-in staff accounts: users stored per practice with Argon2id password
//! hashes, lockout after repeated failures, sessions that expire, and
//! sign-out everywhere.
//!
//! A session token is `{ODS}.{64 hex digits}`: the practice it belongs to,
//! then 256 random bits. Only its SHA-256 is stored, so a copy of the
//! database gives nobody a working token.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params};
use gp_fhir::{Instant, IssueType};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::access::{Activities, Activity, Policy, SignedIn, is_role_code};
use crate::audit::{Admin, Event, Kind};
use crate::engine::blocking;
use crate::{Actor, Ctx, Practice, Store, StoreError};

/// Failed sign-ins in a row before an account locks.
pub const MAX_FAILURES: u32 = 5;
/// How long a locked account stays locked.
pub const LOCKOUT_MILLIS: i64 = 15 * 60 * 1000;
/// How long a session lasts: one working day.
pub const SESSION_MILLIS: i64 = 12 * 60 * 60 * 1000;

/// A staff account as stored.
#[derive(Clone, Debug)]
pub struct UserRecord {
    pub id: String,
    /// What the user types to sign in; unique within the practice.
    pub username: String,
    pub name: String,
    /// The Argon2id hash in PHC string form (never the password).
    pub password_hash: String,
    /// The role profiles (R-codes) the user holds at the practice; the first
    /// is the one a sign-in without a role chooses.
    pub roles: Vec<String>,
    /// The Practitioner resource the account belongs to, if any.
    pub practitioner: Option<String>,
    /// Failed sign-ins since the last success or lockout.
    pub failed: u32,
    pub locked_until: Option<Instant>,
    /// Disabled by an administrator: no sign-in, no session
    /// ([`Store::set_enabled`]).
    pub disabled: bool,
}

/// A session as stored: the hash of its token, never the token.
#[derive(Clone, Debug)]
pub struct SessionRecord {
    pub token_hash: String,
    pub user_id: String,
    pub role: String,
    /// The role profiles this sign-in may switch between: those an
    /// identity provider granted, or for a password sign-in every one the
    /// account held. `None` for sessions stored before this was recorded,
    /// which may use the account's roles.
    pub roles: Option<Vec<String>>,
    pub created: Instant,
    pub expires: Instant,
    pub revoked: bool,
}

impl SessionRecord {
    /// The role profiles the session may use now: those it was opened
    /// with that the account still holds.
    pub fn usable_roles(&self, user: &UserRecord) -> Vec<String> {
        match &self.roles {
            Some(granted) => user
                .roles
                .iter()
                .filter(|r| granted.contains(r))
                .cloned()
                .collect(),
            None => user.roles.clone(),
        }
    }
}

/// An account to create.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub username: String,
    pub name: String,
    pub password: String,
    pub roles: Vec<String>,
    pub practitioner: Option<String>,
}

/// A session just opened: the token is shown to the client once.
#[derive(Clone, Debug)]
pub struct Session {
    pub token: String,
    pub user: SignedIn,
    /// The role profiles this session may use (every one the user holds at
    /// the practice, or those an identity provider granted), so that a
    /// user with several can be offered the choice ([`Store::change_role`]).
    pub roles: Vec<String>,
}

/// The practice a token names (its part before the dot).
pub fn token_practice(token: &str) -> Option<&str> {
    token.split_once('.').map(|(ods, _)| ods)
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn new_token(practice: &Practice) -> String {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    format!("{}.{}", practice.ods, hex(&secret))
}

/// A random password of 20 letters and digits (about 115 bits), without
/// the characters people misread (0/O, 1/l/I).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()] as char)
        .collect()
}

/// A random client secret: 256 bits as hex.
pub fn generate_secret() -> String {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    hex(&secret)
}

fn argon2() -> Argon2<'static> {
    // OWASP's Argon2id recommendation: 19 MiB, two passes, one lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// Hashes a password with Argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String, StoreError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| StoreError::Backend(e.to_string()))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Backend(format!("hashing a password: {e}")))
}

pub(crate) fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// A hash of nothing anyone knows, checked when the user name is unknown so
/// that the answer takes as long as for a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("no user has this password").unwrap_or_default())
}

/// The one answer to every failed sign-in, so that it tells nothing about
/// which part was wrong or whether the account exists or is locked.
fn refused() -> StoreError {
    StoreError::Unauthorized(
        "the user name or password is not right, or the account is locked for a while".into(),
    )
}

/// The user as the audit trail names them at a sign-in, in `role`.
fn as_user(practice: &Practice, user: &UserRecord, role: &str, address: &Option<String>) -> Ctx {
    Ctx::signed_in(
        practice.clone(),
        SignedIn {
            user_id: user.id.clone(),
            username: user.username.clone(),
            name: user.name.clone(),
            role: role.to_owned(),
            practitioner: user.practitioner.clone(),
            expires: Instant::now(),
            session: String::new(),
        },
        Activities::default(),
    )
    .from_address(address.clone())
}

/// The AuditEvent of creating an account (a staff account, or a patient's
/// online account, which then names the patient).
fn account_added(roles: &[String], id: &str, username: &str) -> Event {
    let event = match roles.first().and_then(|r| crate::online::role_patient(r)) {
        Some(patient) => Event::new(Kind::Admin(Admin::AddPatientAccount)).patient(patient),
        None => Event::new(Kind::Admin(Admin::AddUser)),
    };
    let what = format!("created with role profiles {}", roles.join(" "));
    event.account(id, username, what)
}

/// Staff role profiles: at least one, each an R-code.
fn check_roles(roles: &[String]) -> Result<(), StoreError> {
    if roles.is_empty() {
        return Err(StoreError::bad_request(
            IssueType::Invalid,
            "a user needs at least one role profile",
        ));
    }
    match roles.iter().find(|r| !is_role_code(r)) {
        Some(r) => Err(StoreError::bad_request(
            IssueType::Invalid,
            format!("'{r}' is not a role code (R and digits)"),
        )),
        None => Ok(()),
    }
}

fn check_new_user(u: &NewUser) -> Result<(), StoreError> {
    let bad = |m: String| StoreError::bad_request(IssueType::Invalid, m);
    let name_ok = !u.username.is_empty()
        && u.username.len() <= 64
        && u.username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if !name_ok {
        return Err(bad(format!(
            "'{}' is not a user name (letters, digits and . _ - @, up to 64)",
            u.username
        )));
    }
    if u.password.chars().count() < 12 {
        return Err(bad("a password needs at least 12 characters".into()));
    }
    if u.roles.is_empty() {
        return Err(bad("a user needs at least one role profile".into()));
    }
    Ok(())
}

impl Store {
    /// Creates a staff account at the context's practice.
    pub async fn add_user(&self, ctx: &Ctx, new: NewUser) -> Result<UserRecord, StoreError> {
        if let Err(e) = ctx
            .require(Activity::AdministerUsers)
            .and_then(|()| check_roles(&new.roles))
        {
            let event = account_added(&new.roles, "", &new.username);
            self.audit(ctx, event.failed(&e));
            return Err(e);
        }
        self.create_account(ctx, new).await
    }

    /// Stores a new account (staff or patient, online.rs) at the
    /// context's practice, its password hashed.
    pub(crate) async fn create_account(
        &self,
        ctx: &Ctx,
        new: NewUser,
    ) -> Result<UserRecord, StoreError> {
        if let Err(e) = ctx
            .require(Activity::AdministerUsers)
            .and_then(|()| check_new_user(&new))
        {
            let event = account_added(&new.roles, "", &new.username);
            self.audit(ctx, event.failed(&e));
            return Err(e);
        }
        let password = new.password.clone();
        let password_hash = blocking(move || hash_password(&password)).await?;
        let user = UserRecord {
            id: uuid::Uuid::new_v4().to_string(),
            username: new.username,
            name: new.name,
            password_hash,
            roles: new.roles,
            practitioner: new.practitioner,
            failed: 0,
            locked_until: None,
            disabled: false,
        };
        let record = user.clone();
        let event = account_added(&user.roles, &user.id, &user.username);
        self.admin_write(ctx, event, move |tx| {
            if tx.user_named(&record.username)?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "the practice already has a user '{}'",
                    record.username
                )));
            }
            tx.put_user(&record)
        })
        .await?;
        Ok(user)
    }

    /// Runs an administrative change as one write job with its AuditEvent
    /// (who, what, when, outcome) in the same transaction; a refusal or
    /// failure is recorded apart.
    async fn admin_write<T: Send + 'static>(
        &self,
        ctx: &Ctx,
        event: Event,
        f: impl FnOnce(&mut dyn crate::WriteTx) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let out = async {
            ctx.require(Activity::AdministerUsers)?;
            let prepared = event.prepare(ctx).ok_or_else(|| {
                StoreError::Backend("an administrative audit event could not be built".into())
            })?;
            self.write_in(ctx, move |tx| {
                let out = f(tx)?;
                crate::audit::append(tx, prepared)?;
                Ok(out)
            })
            .await
        }
        .await;
        if let Err(e) = &out {
            self.audit(ctx, event.failed(e));
        }
        out
    }

    /// The practice's account `username`, for an administrator.
    async fn account_named(&self, ctx: &Ctx, username: &str) -> Result<UserRecord, StoreError> {
        ctx.require(Activity::AdministerUsers)?;
        let name = username.to_owned();
        self.read_in(ctx, move |tx| tx.user_named(&name))
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!("the practice has no account '{username}'"))
            })
    }

    /// Disables (`enabled` false) or enables again the account `username`
    /// (staff or patient): a disabled account cannot sign in, and its
    /// sessions and the app tokens it approved end at once. An
    /// administrator cannot disable their own account.
    pub async fn set_enabled(
        &self,
        ctx: &Ctx,
        username: &str,
        enabled: bool,
    ) -> Result<UserRecord, StoreError> {
        let (kind, what) = if enabled {
            (Admin::EnableUser, "enabled")
        } else {
            (Admin::DisableUser, "disabled; its sessions ended")
        };
        let event = Event::new(Kind::Admin(kind));
        let mut user = match self.account_named(ctx, username).await {
            Ok(u) => u,
            Err(e) => {
                self.audit(ctx, event.account("", username, what).failed(&e));
                return Err(e);
            }
        };
        let event = event.account(&user.id, &user.username, what);
        let me = ctx.access.user.as_ref().map(|u| u.user_id.as_str());
        if !enabled && me == Some(user.id.as_str()) {
            let e = StoreError::bad_request(
                IssueType::BusinessRule,
                "you cannot disable your own account",
            );
            self.audit(ctx, event.failed(&e));
            return Err(e);
        }
        user.disabled = !enabled;
        let record = user.clone();
        self.admin_write(ctx, event, move |tx| {
            tx.put_user(&record)?;
            if !enabled {
                tx.revoke_sessions(&record.id, None)?;
                tx.revoke_user_tokens(&record.id)?;
            }
            Ok(())
        })
        .await?;
        Ok(user)
    }

    /// Gives the staff account `username` exactly the role profiles
    /// `roles`; a session using a role it no longer holds ends at its next
    /// request ([`Store::resolve`]).
    pub async fn set_roles(
        &self,
        ctx: &Ctx,
        username: &str,
        roles: Vec<String>,
    ) -> Result<UserRecord, StoreError> {
        let event = Event::new(Kind::Admin(Admin::ChangeRoles));
        let checked = async {
            let user = self.account_named(ctx, username).await?;
            if user
                .roles
                .iter()
                .any(|r| crate::online::role_patient(r).is_some())
            {
                return Err(StoreError::bad_request(
                    IssueType::BusinessRule,
                    format!("'{username}' is a patient's online account: it has no role profiles"),
                ));
            }
            check_roles(&roles)?;
            Ok(user)
        }
        .await;
        let mut user = match checked {
            Ok(u) => u,
            Err(e) => {
                let what = format!("role profiles set to {}", roles.join(" "));
                self.audit(ctx, event.account("", username, what).failed(&e));
                return Err(e);
            }
        };
        let what = format!(
            "role profiles {} changed to {}",
            user.roles.join(" "),
            roles.join(" ")
        );
        user.roles = roles;
        let record = user.clone();
        self.admin_write(
            ctx,
            event.account(&user.id, &user.username, what),
            move |tx| tx.put_user(&record),
        )
        .await?;
        Ok(user)
    }

    /// The practice's staff accounts.
    pub async fn users(&self, ctx: &Ctx) -> Result<Vec<UserRecord>, StoreError> {
        ctx.require(Activity::AdministerUsers)?;
        self.read_in(ctx, |tx| tx.users()).await
    }

    /// Checks a user name and password and opens a session in `role` (or
    /// the user's first role). Every failure looks the same to the caller;
    /// [`MAX_FAILURES`] in a row lock the account for [`LOCKOUT_MILLIS`].
    pub async fn sign_in(
        &self,
        practice: &Practice,
        username: &str,
        password: &str,
        role: Option<&str>,
    ) -> Result<Session, StoreError> {
        self.sign_in_from(practice, username, password, role, None)
            .await
    }

    /// [`Store::sign_in`] from a network address, which the audit trail
    /// records with the sign-in: every attempt, successful or not, is an
    /// AuditEvent, written in the same transaction as what the sign-in
    /// changes (the session, the failure count).
    pub async fn sign_in_from(
        &self,
        practice: &Practice,
        username: &str,
        password: &str,
        role: Option<&str>,
        address: Option<String>,
    ) -> Result<Session, StoreError> {
        let ctx = Ctx::new(practice.clone(), Actor::system()).from_address(address.clone());
        let login = Event::new(Kind::Login);
        let name = username.to_owned();
        let user = self.read_in(&ctx, move |tx| tx.user_named(&name)).await?;
        let (pw, hash) = (
            password.to_owned(),
            user.as_ref()
                .map_or_else(|| decoy_hash().to_owned(), |u| u.password_hash.clone()),
        );
        let good = blocking(move || Ok(verify_password(&pw, &hash))).await?;
        let Some(user) = user else {
            self.audit(&ctx, login.attempted_username(username).failed(&refused()));
            return Err(refused());
        };
        let now = Instant::now();
        let asked = role
            .or(user.roles.first().map(String::as_str))
            .unwrap_or_default()
            .to_owned();
        let locked = user.locked_until.is_some_and(|t| t > now);
        if locked || (user.disabled && good) {
            self.audit(
                &as_user(practice, &user, &asked, &address),
                login.failed(&refused()),
            );
            return Err(refused());
        }
        if !good {
            let id = user.id.clone();
            let failed = login
                .clone()
                .failed(&refused())
                .prepare(&as_user(practice, &user, &asked, &address));
            self.write_in(&ctx, move |tx| {
                if let Some(event) = failed {
                    crate::audit::append(tx, event)?;
                }
                let Some(mut u) = tx.user_by_id(&id)? else {
                    return Ok(());
                };
                u.failed += 1;
                if u.failed >= MAX_FAILURES {
                    u.failed = 0;
                    u.locked_until = Some(Instant::from_millis(now.millis() + LOCKOUT_MILLIS));
                    tracing::warn!(user = %u.username, "account locked after repeated failed sign-ins");
                }
                tx.put_user(&u)
            })
            .await?;
            return Err(refused());
        }
        let roles = user.roles.clone();
        self.open_session(practice, user, roles, role, login, address)
            .await
    }

    /// Opens a session for a user whom an external identity provider (an
    /// OpenID Connect issuer, `provider`) has vouched for: no password is
    /// checked here, the provider's signed assertion is the proof. The
    /// account must exist at the practice (only an administrator creates
    /// one) and not be locked; `granted`, when the provider names the role
    /// profiles it grants, narrows the account's roles to those. Every
    /// attempt is an AuditEvent naming the provider.
    pub async fn sign_in_external(
        &self,
        practice: &Practice,
        username: &str,
        provider: &str,
        granted: Option<&[String]>,
        address: Option<String>,
    ) -> Result<Session, StoreError> {
        let ctx = Ctx::new(practice.clone(), Actor::system()).from_address(address.clone());
        let login = Event::new(Kind::Login).via(provider);
        let name = username.to_owned();
        let user = self.read_in(&ctx, move |tx| tx.user_named(&name)).await?;
        let Some(user) = user else {
            let e = StoreError::Unauthorized(format!(
                "there is no account '{username}' at this practice; \
                 an administrator must create one before you can sign in"
            ));
            self.audit(&ctx, login.attempted_username(username).failed(&e));
            return Err(e);
        };
        let first = user.roles.first().cloned().unwrap_or_default();
        if user.disabled {
            let e = StoreError::Unauthorized(
                "the account is disabled; ask the practice's administrator".into(),
            );
            self.audit(
                &as_user(practice, &user, &first, &address),
                login.failed(&e),
            );
            return Err(e);
        }
        if user.locked_until.is_some_and(|t| t > Instant::now()) {
            let e = StoreError::Unauthorized(
                "the account is locked for a while after repeated failed sign-ins".into(),
            );
            self.audit(
                &as_user(practice, &user, &first, &address),
                login.failed(&e),
            );
            return Err(e);
        }
        let roles: Vec<String> = match granted {
            Some(g) => user
                .roles
                .iter()
                .filter(|r| g.contains(r))
                .cloned()
                .collect(),
            None => user.roles.clone(),
        };
        if roles.is_empty() {
            let e = StoreError::Forbidden(
                "the identity provider grants none of the role profiles your account holds \
                 at this practice"
                    .into(),
            );
            self.audit(
                &as_user(practice, &user, &first, &address),
                login.failed(&e),
            );
            return Err(e);
        }
        self.open_session(practice, user, roles, None, login, address)
            .await
    }

    /// Opens a session for `user`, whose identity has been proven, in
    /// `role` (or the first of `roles`, the ones this sign-in may use),
    /// recording `login` in the same transaction.
    async fn open_session(
        &self,
        practice: &Practice,
        user: UserRecord,
        roles: Vec<String>,
        role: Option<&str>,
        login: Event,
        address: Option<String>,
    ) -> Result<Session, StoreError> {
        let ctx = Ctx::new(practice.clone(), Actor::system()).from_address(address.clone());
        let now = Instant::now();
        let role = match role {
            Some(r) if roles.iter().any(|h| h == r) => r.to_owned(),
            Some(r) => {
                let e = StoreError::Forbidden(format!(
                    "you do not hold the role profile {r} at this practice"
                ));
                self.audit(&as_user(practice, &user, r, &address), login.failed(&e));
                return Err(e);
            }
            None => roles.first().cloned().ok_or_else(refused)?,
        };
        let token = new_token(practice);
        let session = SessionRecord {
            token_hash: token_hash(&token),
            user_id: user.id.clone(),
            role: role.clone(),
            roles: Some(roles.clone()),
            created: now,
            expires: Instant::from_millis(now.millis() + SESSION_MILLIS),
            revoked: false,
        };
        let signed_in = SignedIn {
            user_id: user.id.clone(),
            username: user.username.clone(),
            name: user.name.clone(),
            role: role.clone(),
            practitioner: user.practitioner.clone(),
            expires: session.expires,
            session: session.token_hash.clone(),
        };
        let id = user.id.clone();
        let event = login
            .prepare(&as_user(practice, &user, &role, &address))
            .ok_or_else(|| {
                StoreError::Backend("the sign-in's audit event could not be built".into())
            })?;
        self.write_in(&ctx, move |tx| {
            crate::audit::append(tx, event)?;
            if let Some(mut u) = tx.user_by_id(&id)?
                && (u.failed != 0 || u.locked_until.is_some())
            {
                u.failed = 0;
                u.locked_until = None;
                tx.put_user(&u)?;
            }
            tx.put_session(&session)
        })
        .await?;
        Ok(Session {
            token,
            user: signed_in,
            roles,
        })
    }

    /// The role profiles the session of `token` may use: those the user
    /// holds at the practice, narrowed to the ones its sign-in granted.
    pub async fn held_roles(&self, ctx: &Ctx, token: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .session_roles(ctx, token)
            .await?
            .map(|(_, roles)| roles)
            .unwrap_or_default())
    }

    /// The user of `ctx`'s session `token`, and the roles it may use.
    async fn session_roles(
        &self,
        ctx: &Ctx,
        token: &str,
    ) -> Result<Option<(UserRecord, Vec<String>)>, StoreError> {
        let Some(me) = ctx.access.user.clone() else {
            return Ok(None);
        };
        let system = Ctx::new(ctx.practice.clone(), Actor::system());
        let hash = token_hash(token);
        self.read_in(&system, move |tx| {
            let (Some(s), Some(u)) = (tx.session(&hash)?, tx.user_by_id(&me.user_id)?) else {
                return Ok(None);
            };
            if s.user_id != u.id {
                return Ok(None);
            }
            let roles = s.usable_roles(&u);
            Ok(Some((u, roles)))
        })
        .await
    }

    /// Replaces the session of `token` with one in another role the
    /// session may use (the old token stops working at once). A sign-in
    /// through an identity provider that granted fewer roles than the
    /// account holds cannot widen itself here.
    pub async fn change_role(
        &self,
        ctx: &Ctx,
        token: &str,
        role: &str,
    ) -> Result<Session, StoreError> {
        let Some(me) = ctx.access.user.clone() else {
            return Err(refused());
        };
        let (user, roles) = self.session_roles(ctx, token).await?.ok_or_else(refused)?;
        let online = roles
            .iter()
            .any(|r| crate::online::role_patient(r).is_some());
        if online && let Some(patient) = crate::online::role_patient(role) {
            // A patient account switches to someone it is a proxy for.
            let system = Ctx::new(ctx.practice.clone(), Actor::system());
            let (account, patient) = (user.clone(), patient.to_owned());
            self.read_in(&system, move |tx| {
                crate::online::acting_for(tx, &account, &patient)
            })
            .await?;
        } else if !roles.iter().any(|h| h == role) {
            return Err(StoreError::Forbidden(format!(
                "this sign-in does not give you the role profile {role} at this practice"
            )));
        }
        let system = Ctx::new(ctx.practice.clone(), Actor::system());
        let now = Instant::now();
        let new = new_token(&ctx.practice);
        let session = SessionRecord {
            token_hash: token_hash(&new),
            user_id: user.id.clone(),
            role: role.to_owned(),
            roles: Some(roles.clone()),
            created: now,
            expires: me.expires,
            revoked: false,
        };
        let old = token_hash(token);
        let uid = user.id.clone();
        // A new session: break-glass grants of the old one end with it.
        let hash = session.token_hash.clone();
        self.write_in(&system, move |tx| {
            tx.revoke_sessions(&uid, Some(old.as_str()))?;
            tx.put_session(&session)
        })
        .await?;
        Ok(Session {
            token: new,
            user: SignedIn {
                role: role.to_owned(),
                session: hash,
                ..(*me).clone()
            },
            roles,
        })
    }

    /// The context a session token stands for at `practice`: 401 for a
    /// token that is unknown, expired or revoked, 403 for one of another
    /// practice.
    pub async fn resolve(&self, practice: &Practice, token: &str) -> Result<Ctx, StoreError> {
        self.resolve_from(practice, token, None).await
    }

    /// [`Store::resolve`] for a request from a network address: a refusal
    /// is recorded in the audit trail, and the context carries the address.
    pub async fn resolve_from(
        &self,
        practice: &Practice,
        token: &str,
        address: Option<String>,
    ) -> Result<Ctx, StoreError> {
        let out = self.resolve_token(practice, token).await;
        match out {
            Ok(ctx) => Ok(ctx.from_address(address)),
            Err(e) => {
                let nobody = Ctx::anonymous(practice.clone()).from_address(address);
                self.audit(&nobody, Event::new(Kind::Session).failed(&e));
                Err(e)
            }
        }
    }

    async fn resolve_token(&self, practice: &Practice, token: &str) -> Result<Ctx, StoreError> {
        let expired = || StoreError::Unauthorized("the session is not valid; sign in again".into());
        match token_practice(token) {
            Some(ods) if ods == practice.ods.as_str() => {}
            Some(_) => {
                return Err(StoreError::Forbidden(
                    "this session is for another practice".into(),
                ));
            }
            None => return Err(expired()),
        }
        self.resolve_session(practice, &token_hash(token)).await
    }

    /// The context of a stored session, by the hash of its token (as a
    /// context keeps it: `SignedIn::session`), checked as [`Store::resolve`]
    /// checks a token: refused once the session has ended or expired, the
    /// account is disabled or the role taken away. For work a request
    /// started that the server carries on after a restart (a Bulk Data
    /// export), with no request to bring the context.
    pub async fn resolve_session(
        &self,
        practice: &Practice,
        session: &str,
    ) -> Result<Ctx, StoreError> {
        self.resolve_stored(practice, session, false).await
    }

    /// The context of whoever started work the server carries on after a
    /// restart (a Bulk Data export), by the hash of the session or app
    /// token the work was started with: as [`Store::resolve_session`], but
    /// a session that has since ended or expired, or an app's access token
    /// that has expired, still stands for its owner, whose authority is
    /// checked as it is now: refused once the account is disabled or gone,
    /// the role taken away, the app disabled or removed, or its token
    /// revoked.
    pub async fn resolve_owner(
        &self,
        practice: &Practice,
        session: &str,
    ) -> Result<Ctx, StoreError> {
        self.resolve_stored(practice, session, true).await
    }

    /// [`Store::resolve_session`], or with `ended` [`Store::resolve_owner`].
    async fn resolve_stored(
        &self,
        practice: &Practice,
        session: &str,
        ended: bool,
    ) -> Result<Ctx, StoreError> {
        let expired = || StoreError::Unauthorized("the session is not valid; sign in again".into());
        let system = Ctx::new(practice.clone(), Actor::system());
        let hash = session.to_owned();
        let app_hash = hash.clone();
        let found = self
            .read_in(&system, move |tx| {
                let Some(s) = tx.session(&hash)? else {
                    return Ok(None);
                };
                let user = tx.user_by_id(&s.user_id)?;
                let policy = tx.policy()?;
                Ok(user.map(|u| (s, u, policy)))
            })
            .await?;
        let Some((session, user, policy)) = found else {
            // Not a staff session: perhaps an app's access token.
            return self
                .resolve_app_token(practice, app_hash, ended)
                .await?
                .ok_or_else(expired);
        };
        if user.disabled || (!ended && (session.revoked || session.expires <= Instant::now())) {
            return Err(expired());
        }
        if let Some(patient) = crate::online::role_patient(&session.role).map(str::to_owned) {
            return self.resolve_online(practice, user, session, &patient).await;
        }
        // A role taken away from the account ends the sessions using it.
        if !session.usable_roles(&user).contains(&session.role) {
            return Err(StoreError::Unauthorized(format!(
                "you no longer hold the role profile {} at this practice; sign in again",
                session.role
            )));
        }
        let policy = match policy {
            Some(text) => Policy::from_json(&text)?,
            None => Policy::baseline()?,
        };
        let activities = policy.activities(&session.role);
        Ok(Ctx::signed_in(
            practice.clone(),
            SignedIn {
                user_id: user.id,
                username: user.username,
                name: user.name,
                role: session.role,
                practitioner: user.practitioner,
                expires: session.expires,
                session: session.token_hash,
            },
            activities,
        ))
    }

    /// The context of a patient account's session acting for `patient`,
    /// checked at every resolution (online.rs): a proxy whose
    /// RelatedPerson is no longer active is refused at once.
    async fn resolve_online(
        &self,
        practice: &Practice,
        user: UserRecord,
        session: SessionRecord,
        patient: &str,
    ) -> Result<Ctx, StoreError> {
        let system = Ctx::new(practice.clone(), Actor::system());
        let (account, patient) = (user.clone(), patient.to_owned());
        let online = self
            .read_in(&system, move |tx| {
                crate::online::acting_for(tx, &account, &patient)
            })
            .await?;
        let mut ctx = Ctx::signed_in(
            practice.clone(),
            SignedIn {
                user_id: user.id,
                username: user.username,
                name: user.name,
                role: session.role,
                practitioner: None,
                expires: session.expires,
                session: session.token_hash,
            },
            crate::online::Online::activities(),
        );
        ctx.online = Some(std::sync::Arc::new(online));
        Ok(ctx)
    }

    /// Ends the session of `token`, or with `everywhere` every session of
    /// its user and every SMART app token the user approved.
    pub async fn sign_out(
        &self,
        ctx: &Ctx,
        token: &str,
        everywhere: bool,
    ) -> Result<(), StoreError> {
        let Some(user) = ctx.access.user.clone() else {
            return Ok(());
        };
        let hash = token_hash(token);
        let system = Ctx::new(ctx.practice.clone(), Actor::system());
        self.write_in(&system, move |tx| {
            tx.revoke_sessions(&user.user_id, (!everywhere).then_some(hash.as_str()))?;
            // Everywhere includes the apps the user approved.
            if everywhere {
                tx.revoke_user_tokens(&user.user_id)?;
            }
            Ok(())
        })
        .await
    }

    /// The practice's policy: its own if it has stored one, else the baseline.
    pub async fn policy(&self, ctx: &Ctx) -> Result<Policy, StoreError> {
        match self.read_in(ctx, |tx| tx.policy()).await? {
            Some(text) => Policy::from_json(&text),
            None => Policy::baseline(),
        }
    }

    /// Replaces the practice's policy.
    pub async fn set_policy(&self, ctx: &Ctx, policy: &Policy) -> Result<(), StoreError> {
        let before = if ctx.allows(Activity::AdministerUsers) {
            self.policy(ctx).await?
        } else {
            Policy::baseline()?
        };
        let changed: Vec<String> = before
            .roles()
            .map(|(r, _)| r)
            .chain(policy.roles().map(|(r, _)| r))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|r| before.activities(r) != policy.activities(r))
            .map(|r| {
                let codes: Vec<&str> = policy.activities(r).iter().map(Activity::code).collect();
                format!("{r}: {}", codes.join(" "))
            })
            .collect();
        let what = if changed.is_empty() {
            "replaced, unchanged".to_owned()
        } else {
            format!("changed {}", changed.join("; "))
        };
        let event = Event::new(Kind::Admin(Admin::SetPolicy)).about("access policy", what);
        let text = policy.to_json();
        self.admin_write(ctx, event, move |tx| tx.put_policy(&text))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery").unwrap_or_else(|e| panic!("{e}"));
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterx", &h));
        assert!(!verify_password("anything", "not a hash"));
        let again = hash_password("correct horse battery").unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(h, again, "salted");
    }

    #[test]
    fn tokens_name_their_practice_and_are_stored_hashed() {
        let p = Practice {
            key: 1,
            ods: gp_fhir::OdsCode::parse("A81001").unwrap_or_else(|| panic!("ods")),
            name: "x".into(),
        };
        let t = new_token(&p);
        assert_eq!(token_practice(&t), Some("A81001"));
        assert_eq!(t.len(), "A81001.".len() + 64);
        assert_ne!(new_token(&p), t);
        assert_eq!(token_hash(&t).len(), 64);
        assert_ne!(token_hash(&t), t);
    }
}
