//! What a practice holds besides its resources and its audit trail: the
//! staff accounts, the practice's own access policy and its registered
//! SMART apps, as `accounts.json`.
//!
//! An account moves with its role profiles and its Argon2id hash, so that
//! its user signs in to the new system with the same password; sessions do
//! not move (everyone signs in again). An app moves with a confidential
//! app's secret hash, so that it keeps working after the move without a
//! new secret; the tokens issued to apps do not move (they ask again).

use std::collections::BTreeMap;

use anyhow::Result;
use gp_store::access::Policy;
use gp_store::accounts::UserRecord;
use gp_store::smart::{AppKind, AppRecord};
use gp_store::{Ctx, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::import::{Outcome, Report};
use crate::{ACCOUNTS_FILE, instant};

/// The contents of `accounts.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Accounts {
    /// By user name.
    pub users: Vec<Account>,
    /// The practice's own policy file, if it stores one.
    pub policy: Option<String>,
    /// By name.
    pub apps: Vec<App>,
}

/// A staff account as the package carries it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub id: String,
    pub username: String,
    pub name: String,
    pub password_hash: String,
    pub roles: Vec<String>,
    pub practitioner: Option<String>,
    pub failed: u32,
    pub locked_until: Option<String>,
    /// Disabled by an administrator (absent from packages made before).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

/// A registered SMART app as the package carries it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct App {
    pub client_id: String,
    pub name: String,
    pub kind: String,
    pub secret_hash: Option<String>,
    pub redirect_uris: Vec<String>,
    pub jwks: Option<String>,
    pub scope: String,
    pub created: String,
    /// Absent from exports made before apps could be disabled.
    #[serde(default)]
    pub disabled: bool,
    /// Where it is opened from a record (absent when none, and from
    /// exports made before apps had one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_url: Option<String>,
}

impl From<&UserRecord> for Account {
    fn from(u: &UserRecord) -> Self {
        Account {
            id: u.id.clone(),
            username: u.username.clone(),
            name: u.name.clone(),
            password_hash: u.password_hash.clone(),
            roles: u.roles.clone(),
            practitioner: u.practitioner.clone(),
            failed: u.failed,
            locked_until: u.locked_until.map(|i| i.to_string()),
            disabled: u.disabled,
        }
    }
}

impl Account {
    fn record(&self) -> Result<UserRecord, String> {
        let locked_until = match &self.locked_until {
            Some(s) => Some(instant(s).ok_or_else(|| format!("'{s}' is not an instant"))?),
            None => None,
        };
        if self.id.is_empty() || self.username.is_empty() || self.password_hash.is_empty() {
            return Err("an account needs an id, a user name and a password hash".into());
        }
        Ok(UserRecord {
            id: self.id.clone(),
            username: self.username.clone(),
            name: self.name.clone(),
            password_hash: self.password_hash.clone(),
            roles: self.roles.clone(),
            practitioner: self.practitioner.clone(),
            failed: self.failed,
            locked_until,
            disabled: self.disabled,
        })
    }
}

impl From<&AppRecord> for App {
    fn from(a: &AppRecord) -> Self {
        App {
            client_id: a.client_id.clone(),
            name: a.name.clone(),
            kind: a.kind.code().to_owned(),
            secret_hash: a.secret_hash.clone(),
            redirect_uris: a.redirect_uris.clone(),
            jwks: a.jwks.clone(),
            scope: a.scope.clone(),
            created: a.created.to_string(),
            disabled: a.disabled,
            launch_url: a.launch_url.clone(),
        }
    }
}

impl App {
    fn record(&self) -> Result<AppRecord, String> {
        Ok(AppRecord {
            client_id: self.client_id.clone(),
            name: self.name.clone(),
            kind: AppKind::parse(&self.kind)
                .ok_or_else(|| format!("'{}' is not a kind of app", self.kind))?,
            secret_hash: self.secret_hash.clone(),
            redirect_uris: self.redirect_uris.clone(),
            jwks: self.jwks.clone(),
            scope: self.scope.clone(),
            created: instant(&self.created)
                .ok_or_else(|| format!("'{}' is not an instant", self.created))?,
            disabled: self.disabled,
            launch_url: self.launch_url.clone(),
        })
    }
}

/// The practice's accounts, policy and apps, in one snapshot.
pub(crate) async fn read(store: &Store, ctx: &Ctx) -> Result<Accounts> {
    Ok(store
        .read_with(ctx, |tx| {
            Ok::<_, StoreError>(Accounts {
                users: tx.users()?.iter().map(Account::from).collect(),
                policy: tx.policy()?,
                apps: tx.apps()?.iter().map(App::from).collect(),
            })
        })
        .await?)
}

/// How two sides' accounts, policy and apps differ, one line each.
pub(crate) fn differences(a: &Accounts, b: &Accounts) -> Vec<String> {
    let mut out = Vec::new();
    let users = |s: &Accounts| -> BTreeMap<String, Account> {
        s.users.iter().map(|u| (u.id.clone(), u.clone())).collect()
    };
    compare(
        &users(a),
        &users(b),
        |u| format!("staff account {} ({})", u.id, u.username),
        &mut out,
    );
    let apps = |s: &Accounts| -> BTreeMap<String, App> {
        s.apps
            .iter()
            .map(|x| (x.client_id.clone(), x.clone()))
            .collect()
    };
    compare(
        &apps(a),
        &apps(b),
        |x| format!("SMART app {} ({})", x.client_id, x.name),
        &mut out,
    );
    match (&a.policy, &b.policy) {
        (Some(_), None) => out.push("the practice's access policy: only in the first".into()),
        (None, Some(_)) => out.push("the practice's access policy: only in the second".into()),
        (Some(x), Some(y)) if x != y => out.push("the practice's access policy: differs".into()),
        _ => {}
    }
    out
}

fn compare<T: PartialEq>(
    a: &BTreeMap<String, T>,
    b: &BTreeMap<String, T>,
    name: impl Fn(&T) -> String,
    out: &mut Vec<String>,
) {
    for (k, x) in a {
        match b.get(k) {
            None => out.push(format!("{}: only in the first", name(x))),
            Some(y) if x != y => out.push(format!("{}: differs", name(x))),
            Some(_) => {}
        }
    }
    for (k, y) in b {
        if !a.contains_key(k) {
            out.push(format!("{}: only in the second", name(y)));
        }
    }
}

/// The report's names for these records.
pub(crate) const USER: &str = "(staff account)";
pub(crate) const APP: &str = "(SMART app)";
pub(crate) const POLICY: &str = "(access policy)";
/// The whole file, when it cannot be read at all.
pub(crate) const FILE: &str = "(accounts file)";

/// Reads `accounts.json` record by record, so that one bad record is
/// rejected alone: a file that is not JSON at all (nothing in it can be
/// imported, and the report says how many records the manifest says it
/// held), an account or app that does not read, an account whose roles
/// the practice's policy does not know, accounts sharing an id or a user
/// name (which one is right cannot be told, so none of them is imported),
/// a policy that is not one. Each rejection goes in the report; the rest
/// is returned for [`import`].
pub(crate) fn parse(bytes: &[u8], held: &crate::AccountTotals, report: &mut Report) -> Accounts {
    #[derive(Deserialize)]
    struct Loose {
        #[serde(default)]
        users: Vec<serde_json::Value>,
        #[serde(default)]
        policy: Option<serde_json::Value>,
        #[serde(default)]
        apps: Vec<serde_json::Value>,
    }
    let loose: Loose = match serde_json::from_slice(bytes) {
        Ok(l) => l,
        Err(e) => {
            report.reject_record(
                FILE,
                ACCOUNTS_FILE,
                ACCOUNTS_FILE.into(),
                format!(
                    "{ACCOUNTS_FILE} cannot be read ({e}): none of what the manifest says it holds \
                     ({} staff accounts, {} SMART apps, {} access policy) is imported",
                    held.users, held.apps, held.policy
                ),
            );
            return Accounts::default();
        }
    };
    let mut out = Accounts::default();
    let mut policy = None;
    if let Some(p) = loose.policy {
        match p.as_str().map(Policy::from_json) {
            Some(Ok(parsed)) => {
                policy = Some(parsed);
                out.policy = p.as_str().map(str::to_owned);
            }
            Some(Err(e)) => report.reject_record(
                POLICY,
                ACCOUNTS_FILE,
                "policy".into(),
                format!("not an access policy: {e}"),
            ),
            None => report.reject_record(
                POLICY,
                ACCOUNTS_FILE,
                "policy".into(),
                "not an access policy: the policy is not a string".into(),
            ),
        }
    }
    // The roles the practice will know: its own policy, else the baseline.
    let policy = policy.or_else(|| Policy::baseline().ok());
    let known = |role: &str| match role.strip_prefix(gp_store::online::ROLE_PREFIX) {
        Some(patient) => gp_fhir::Id::parse(patient).is_ok(),
        None => policy
            .as_ref()
            .is_some_and(|p| p.roles().any(|(r, _)| r == role)),
    };
    let mut users = Vec::new();
    for (n, v) in loose.users.into_iter().enumerate() {
        let what = v["username"].as_str().map_or_else(
            || format!("staff account {}", n + 1),
            |u| format!("staff account '{u}'"),
        );
        match serde_json::from_value::<Account>(v) {
            Ok(u) => users.push(u),
            Err(e) => report.reject_record(
                USER,
                ACCOUNTS_FILE,
                what,
                format!("not a staff account: {e}"),
            ),
        }
    }
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for u in &users {
        *ids.entry(u.id.clone()).or_default() += 1;
        *names.entry(u.username.clone()).or_default() += 1;
    }
    for u in users {
        let what = format!("{} ({})", u.id, u.username);
        let why = if ids[&u.id] > 1 {
            Some(format!(
                "the package holds {} accounts with the id {}: which one is right cannot be told, so none of them is imported",
                ids[&u.id], u.id
            ))
        } else if names[&u.username] > 1 {
            Some(format!(
                "the package holds {} accounts with the user name '{}': which one is right cannot be told, so none of them is imported",
                names[&u.username], u.username
            ))
        } else {
            u.roles.iter().find(|r| !known(r)).map(|r| {
                format!("the role '{r}' is not in the practice's access policy: the account would not be what it was")
            })
        };
        match why {
            Some(why) => report.reject_record(USER, ACCOUNTS_FILE, what, why),
            None => out.users.push(u),
        }
    }
    for (n, v) in loose.apps.into_iter().enumerate() {
        let what = v["clientId"].as_str().map_or_else(
            || format!("SMART app {}", n + 1),
            |c| format!("SMART app '{c}'"),
        );
        match serde_json::from_value::<App>(v) {
            Ok(a) => out.apps.push(a),
            Err(e) => {
                report.reject_record(APP, ACCOUNTS_FILE, what, format!("not a SMART app: {e}"))
            }
        }
    }
    out
}

/// Loads accounts, policy and apps in one transaction: each one imported,
/// already present (identical) or rejected (the target holds a different
/// one, or its user name belongs to another account).
pub(crate) async fn import(
    store: &Store,
    ctx: &Ctx,
    accounts: Accounts,
    report: &mut Report,
) -> Result<()> {
    type Done = Vec<(&'static str, String, Result<Outcome, String>)>;
    let done: Done = store
        .write_with(ctx, move |tx| {
            let mut done: Done = Vec::new();
            for u in &accounts.users {
                let what = format!("{} ({})", u.id, u.username);
                let outcome = match (u.record(), tx.user_by_id(&u.id)?) {
                    (Err(e), _) => Err(e),
                    (Ok(_), Some(have)) if Account::from(&have) == *u => {
                        Ok(Outcome::AlreadyPresent)
                    }
                    (Ok(_), Some(_)) => {
                        Err("the target holds a different account with this id".into())
                    }
                    (Ok(rec), None) => match tx.user_named(&u.username)? {
                        Some(other) => Err(format!(
                            "the user name belongs to another account ({}) in the target",
                            other.id
                        )),
                        None => {
                            tx.put_user(&rec)?;
                            Ok(Outcome::Imported)
                        }
                    },
                };
                done.push((USER, what, outcome));
            }
            if let Some(p) = &accounts.policy {
                let outcome = match tx.policy()? {
                    Some(have) if have == *p => Ok(Outcome::AlreadyPresent),
                    Some(_) => Err("the target practice has a different policy of its own".into()),
                    None => {
                        tx.put_policy(p)?;
                        Ok(Outcome::Imported)
                    }
                };
                done.push((POLICY, "policy".into(), outcome));
            }
            for a in &accounts.apps {
                let what = format!("{} ({})", a.client_id, a.name);
                let outcome = match (a.record(), tx.app(&a.client_id)?) {
                    (Err(e), _) => Err(e),
                    (Ok(_), Some(have)) if App::from(&have) == *a => Ok(Outcome::AlreadyPresent),
                    (Ok(_), Some(_)) => {
                        Err("the target holds a different app with this client id".into())
                    }
                    (Ok(rec), None) => {
                        tx.put_app(&rec)?;
                        Ok(Outcome::Imported)
                    }
                };
                done.push((APP, what, outcome));
            }
            Ok::<_, StoreError>(done)
        })
        .await?;
    for (ty, what, outcome) in done {
        match outcome {
            Ok(o) => report.count_outcome(ty, &o),
            Err(reason) => report.reject_record(ty, ACCOUNTS_FILE, what, reason),
        }
    }
    Ok(())
}
