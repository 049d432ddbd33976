//! Patients as users (online access, `../shared/DOMAIN.md`): patient
//! accounts, proxy access, and what they reach.
//!
//! A patient account is a built-in account (accounts.rs: the same Argon2id
//! hashes, lockout and sessions as staff) whose one "role" is
//! `patient:{id}`, the Patient of the practice it belongs to. A session acts
//! for one patient at a time, its role naming them: the account's own
//! patient, or one it is a proxy for. Proxy access is recorded in the
//! patient's record: a `RelatedPerson` (the patient, the relationship such
//! as v3-RoleCode `MTH`, `FTH`, `GUARD`) carrying the proxy's account id as
//! an identifier of the system [`PROXY_ACCOUNT`]. It holds only while that
//! RelatedPerson is active and within its period; revoking it is
//! deactivating it, which ends the proxy's next request at once.
//!
//! A patient context ([`Online`] on the [`Ctx`]) reads the patient's
//! compartment only, by the same criterion and checks as a SMART app's
//! `patient/` scopes ([`Reach::Patient`]), AuditEvents included (who
//! accessed the record), and writes nothing; what it sees leaves out
//! restricted entries and those the practice marked hidden from online
//! access ([`crate::access::Sees::Online`]).

use gp_fhir::{DateRange, Instant, ResourceType};
use serde_json::Value;

use crate::access::{Activities, Activity};
use crate::accounts::{NewUser, UserRecord};
use crate::smart::{Op, Reach};
use crate::{Ctx, ReadTx, Store, StoreError};

/// The role of a session acting for the patient `id` is `patient:{id}`.
pub const ROLE_PREFIX: &str = "patient:";

/// The identifier system of a RelatedPerson naming the account (its id)
/// that holds proxy access to the patient's record.
pub const PROXY_ACCOUNT: &str = "https://opengp.dev/fhir/sid/patient-account";

/// The NHS number identifier system.
const NHS_NUMBER: &str = "https://fhir.nhs.uk/Id/nhs-number";

/// Whom a patient context acts for.
#[derive(Clone, Debug, PartialEq)]
pub struct Online {
    /// The patient whose record it reaches.
    pub patient: String,
    /// For a proxy, the RelatedPerson that gives the access, and its
    /// relationship (a CodeableConcept), for the audit trail.
    pub proxy: Option<(String, Value)>,
}

impl Online {
    /// Reads and searches reach the patient's compartment; nothing is
    /// written by a patient account.
    pub(crate) fn reach(&self, op: Op) -> Result<Reach, StoreError> {
        match op {
            Op::Read | Op::Search => Ok(Reach::Patient(self.patient.clone())),
            _ => Err(StoreError::Forbidden(
                "a patient account reads the record online; it does not write to it".into(),
            )),
        }
    }

    /// The activities of a patient context, confined by [`Online::reach`].
    pub(crate) fn activities() -> Activities {
        [
            Activity::ViewDemographics,
            Activity::ViewRecord,
            Activity::ViewAudit,
        ]
        .into_iter()
        .collect()
    }
}

/// The patient a session role acts for.
pub fn role_patient(role: &str) -> Option<&str> {
    role.strip_prefix(ROLE_PREFIX)
}

fn forbidden() -> StoreError {
    StoreError::Forbidden(
        "this account does not have online access to that patient's record \
         (a proxy's access holds only while the practice's record of the relationship is active)"
            .into(),
    )
}

/// Whether `user` (a patient account) may act for `patient` now, and how:
/// as that patient, or as a proxy through an active RelatedPerson.
pub(crate) fn acting_for(
    tx: &mut dyn ReadTx,
    user: &UserRecord,
    patient: &str,
) -> Result<Online, StoreError> {
    let own = user.roles.iter().find_map(|r| role_patient(r));
    let pt = ResourceType::parse("Patient").ok_or(StoreError::Unavailable)?;
    if tx.latest(pt, patient)?.is_none_or(|p| p.deleted) {
        return Err(forbidden());
    }
    if own == Some(patient) {
        return Ok(Online {
            patient: patient.to_owned(),
            proxy: None,
        });
    }
    let rp = ResourceType::parse("RelatedPerson").ok_or(StoreError::Unavailable)?;
    let query = [
        (
            "identifier".to_owned(),
            format!("{PROXY_ACCOUNT}|{}", user.id),
        ),
        ("patient".to_owned(), format!("Patient/{patient}")),
        ("active".to_owned(), "true".to_owned()),
    ];
    let now = Instant::now();
    let found = crate::engine::matches(tx, rp, &query, None, &Reach::Any)?;
    found
        .iter()
        .filter_map(|v| Some((v.id.clone(), serde_json::from_slice::<Value>(&v.body).ok()?)))
        .find(|(_, body)| in_period(body.get("period"), now))
        .map(|(id, body)| Online {
            patient: patient.to_owned(),
            proxy: Some((
                id,
                body.get("relationship")
                    .and_then(|r| r.get(0))
                    .cloned()
                    .unwrap_or(Value::Null),
            )),
        })
        .ok_or_else(forbidden)
}

/// Whether `now` falls within a FHIR Period (open ends allowed).
fn in_period(period: Option<&Value>, now: Instant) -> bool {
    let bound = |k: &str| {
        period
            .and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .and_then(|s| DateRange::parse(s).ok())
    };
    bound("start").is_none_or(|s| s.low <= now) && bound("end").is_none_or(|e| now < e.high)
}

impl Store {
    /// Creates the online account of the practice's patient with NHS
    /// number `nhs_number` (its user name), with `password`: for staff
    /// with the administer-users activity, or an operator.
    pub async fn add_patient_account(
        &self,
        ctx: &Ctx,
        nhs_number: &str,
        name: &str,
        password: &str,
    ) -> Result<UserRecord, StoreError> {
        ctx.require(Activity::AdministerUsers)?;
        let pt = ResourceType::parse("Patient").ok_or(StoreError::Unavailable)?;
        let query = [(
            "identifier".to_owned(),
            format!("{NHS_NUMBER}|{nhs_number}"),
        )];
        let system = Ctx::new(ctx.practice.clone(), crate::Actor::system());
        let found = self
            .read_in(&system, move |tx| {
                crate::engine::matches(tx, pt, &query, None, &Reach::Any)
            })
            .await?;
        let patient = match found.as_slice() {
            [one] => one.id.clone(),
            [] => {
                return Err(StoreError::NotFound(format!(
                    "the practice has no patient with NHS number {nhs_number}"
                )));
            }
            _ => {
                return Err(StoreError::Conflict(format!(
                    "more than one patient has NHS number {nhs_number}"
                )));
            }
        };
        self.create_account(
            ctx,
            NewUser {
                username: nhs_number.to_owned(),
                name: name.to_owned(),
                password: password.to_owned(),
                roles: vec![format!("{ROLE_PREFIX}{patient}")],
                practitioner: None,
            },
        )
        .await
    }

    /// Creates the online account of the practice's Patient `patient`
    /// (from their record): its user name their NHS number, its name
    /// theirs, with `password`. Administer-users.
    pub async fn add_patient_account_for(
        &self,
        ctx: &Ctx,
        patient: &str,
        password: &str,
    ) -> Result<UserRecord, StoreError> {
        ctx.require(Activity::AdministerUsers)?;
        let pt = ResourceType::parse("Patient").ok_or(StoreError::Unavailable)?;
        let system = Ctx::new(ctx.practice.clone(), crate::Actor::system());
        let id = patient.to_owned();
        let found = self
            .read_in(&system, move |tx| tx.latest(pt, &id))
            .await?
            .filter(|v| !v.deleted)
            .and_then(|v| serde_json::from_slice::<Value>(&v.body).ok())
            .ok_or_else(|| {
                StoreError::NotFound(format!("the practice has no patient {patient}"))
            })?;
        let nhs_number = found["identifier"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["system"] == NHS_NUMBER)
            .and_then(|i| i["value"].as_str())
            .ok_or_else(|| {
                StoreError::bad_request(
                    gp_fhir::IssueType::BusinessRule,
                    "the patient has no NHS number, which an online account signs in with",
                )
            })?
            .to_owned();
        let name = found["name"]
            .get(0)
            .map(|n| {
                let given = n["given"].as_array().into_iter().flatten();
                given
                    .chain(std::iter::once(&n["family"]))
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("patient {nhs_number}"));
        self.create_account(
            ctx,
            NewUser {
                username: nhs_number,
                name,
                password: password.to_owned(),
                roles: vec![format!("{ROLE_PREFIX}{patient}")],
                practitioner: None,
            },
        )
        .await
    }

    /// Whom the patient account of `ctx` may act for now: its own patient,
    /// then each patient whose record holds an active RelatedPerson naming
    /// the account (with that relationship), by id and name.
    pub async fn act_for_targets(&self, ctx: &Ctx) -> Result<Vec<ActFor>, StoreError> {
        let (Some(_), Some(me)) = (&ctx.online, ctx.access.user.clone()) else {
            return Err(StoreError::Forbidden(
                "only a patient account acts for a patient".into(),
            ));
        };
        let system = Ctx::new(ctx.practice.clone(), crate::Actor::system());
        self.read_in(&system, move |tx| {
            let Some(account) = tx.user_by_id(&me.user_id)? else {
                return Ok(Vec::new());
            };
            let pt = ResourceType::parse("Patient").ok_or(StoreError::Unavailable)?;
            let rp = ResourceType::parse("RelatedPerson").ok_or(StoreError::Unavailable)?;
            let mut whom: Vec<(String, Option<Value>)> = account
                .roles
                .iter()
                .filter_map(|r| role_patient(r))
                .map(|p| (p.to_owned(), None))
                .collect();
            let query = [
                (
                    "identifier".to_owned(),
                    format!("{PROXY_ACCOUNT}|{}", account.id),
                ),
                ("active".to_owned(), "true".to_owned()),
            ];
            let now = Instant::now();
            for v in crate::engine::matches(tx, rp, &query, None, &Reach::Any)? {
                let Ok(body) = serde_json::from_slice::<Value>(&v.body) else {
                    continue;
                };
                let patient = body["patient"]["reference"]
                    .as_str()
                    .and_then(|r| r.strip_prefix("Patient/"));
                if let Some(p) = patient
                    && in_period(body.get("period"), now)
                    && !whom.iter().any(|(w, _)| w == p)
                {
                    whom.push((p.to_owned(), body["relationship"].get(0).cloned()));
                }
            }
            let mut out = Vec::new();
            for (patient, relationship) in whom {
                let Some(v) = tx.latest(pt, &patient)?.filter(|v| !v.deleted) else {
                    continue;
                };
                let body: Value = serde_json::from_slice(&v.body).unwrap_or(Value::Null);
                out.push(ActFor {
                    patient,
                    name: body["name"].get(0).cloned().unwrap_or(Value::Null),
                    relationship,
                });
            }
            Ok(out)
        })
        .await
    }
}

/// Someone a patient account may act for ([`Store::act_for_targets`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ActFor {
    /// The Patient's id.
    pub patient: String,
    /// Their first HumanName, as recorded.
    pub name: Value,
    /// For a proxy, the RelatedPerson's relationship (a CodeableConcept);
    /// `None` for the account's own patient.
    pub relationship: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_bound_proxy_access() {
        let now = Instant::now();
        let p = |v: Value| in_period(Some(&v), now);
        assert!(in_period(None, now));
        assert!(p(serde_json::json!({"start": "2000-01-01"})));
        assert!(!p(serde_json::json!({"end": "2000-01-01"})));
        assert!(!p(serde_json::json!({"start": "2999-01-01"})));
    }
}
