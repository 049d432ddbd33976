//! Roles and activities (national RBAC, `../shared/DOMAIN.md`): what a
//! signed-in user may do, and which activity each interaction needs.
//!
//! A user signs in to one role profile (an R-code); the practice's policy
//! maps the role to activities. The baseline policy ships as data
//! (`data/policy.json`); a practice can store its own. The engine checks
//! the activity of every interaction against the [`crate::Ctx`] it is given,
//! so no caller can reach data the role does not allow.

use std::collections::BTreeMap;
use std::sync::Arc;

use gp_fhir::{Instant, ResourceType};

use crate::StoreError;

/// Something a role may be allowed to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Activity {
    /// Read demographics, the practice directory and the appointment book.
    ViewDemographics,
    /// Read the clinical record.
    ViewRecord,
    /// Register patients and change their demographics.
    AmendDemographics,
    /// Record consultations, problems, observations and other clinical entries.
    RecordClinical,
    /// Issue and change prescriptions (MedicationRequest).
    Prescribe,
    /// Manage sessions, slots and appointments.
    ManageAppointments,
    /// Manage staff accounts and the practice directory.
    AdministerUsers,
    /// Read the audit trail.
    ViewAudit,
    /// See entries marked restricted (`meta.security` R or V); others see
    /// them only by breaking the glass ([`Sees`]).
    ViewRestricted,
}

impl Activity {
    pub const ALL: [Activity; 9] = [
        Activity::ViewDemographics,
        Activity::ViewRecord,
        Activity::AmendDemographics,
        Activity::RecordClinical,
        Activity::Prescribe,
        Activity::ManageAppointments,
        Activity::AdministerUsers,
        Activity::ViewAudit,
        Activity::ViewRestricted,
    ];

    /// The name used in policy files.
    pub fn code(self) -> &'static str {
        match self {
            Activity::ViewDemographics => "view-demographics",
            Activity::ViewRecord => "view-record",
            Activity::AmendDemographics => "amend-demographics",
            Activity::RecordClinical => "record-clinical",
            Activity::Prescribe => "prescribe",
            Activity::ManageAppointments => "manage-appointments",
            Activity::AdministerUsers => "administer-users",
            Activity::ViewAudit => "view-audit",
            Activity::ViewRestricted => "view-restricted",
        }
    }

    pub fn parse(code: &str) -> Option<Activity> {
        Activity::ALL.into_iter().find(|a| a.code() == code)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of activities.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Activities(u16);

impl Activities {
    pub fn all() -> Self {
        Activity::ALL.into_iter().collect()
    }

    pub fn contains(self, a: Activity) -> bool {
        self.0 & a.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Activity> {
        Activity::ALL.into_iter().filter(move |a| self.contains(*a))
    }
}

impl FromIterator<Activity> for Activities {
    fn from_iter<I: IntoIterator<Item = Activity>>(iter: I) -> Self {
        Activities(iter.into_iter().fold(0, |acc, a| acc | a.bit()))
    }
}

/// How resource types group for access: each group has a read activity and
/// a write activity.
fn group(ty: ResourceType) -> (Activity, Option<Activity>) {
    use Activity::*;
    match ty.as_str() {
        "Patient" | "RelatedPerson" | "Person" => (ViewDemographics, Some(AmendDemographics)),
        "Appointment" | "AppointmentResponse" | "Schedule" | "Slot" => {
            (ViewDemographics, Some(ManageAppointments))
        }
        "Organization" | "Location" | "Practitioner" | "PractitionerRole" | "HealthcareService"
        | "Endpoint" => (ViewDemographics, Some(AdministerUsers)),
        "MedicationRequest" => (ViewRecord, Some(Prescribe)),
        // The audit trail is append-only: nobody writes it through the API.
        "AuditEvent" => (ViewAudit, None),
        _ => (ViewRecord, Some(RecordClinical)),
    }
}

/// The activity reading resources of `ty` needs; `None` (a whole-practice
/// search or history) needs the clinical record.
pub fn read_activity(ty: Option<ResourceType>) -> Activity {
    ty.map_or(Activity::ViewRecord, |t| group(t).0)
}

/// The activity writing a resource of `ty` needs; `None` when no role may.
pub fn write_activity(ty: ResourceType) -> Option<Activity> {
    group(ty).1
}

/// The code system of `meta.security` confidentiality labels.
pub const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";

/// How long a break-glass grant lasts.
pub const BREAK_GLASS_MINUTES: i64 = 60;

/// Whether a stored resource is restricted (`meta.security` carries the
/// confidentiality code `R` restricted or `V` very restricted), and if so
/// the patient whose record it belongs to (`""` when none), which is what
/// a break-glass grant opens. Stored with the current row
/// (`resource_current.restricted`) so that searches filter on it.
pub fn restriction(ty: ResourceType, id: &str, body: &[u8]) -> Option<String> {
    // Most bodies carry no confidentiality label: no parse for them.
    if !body.windows(18).any(|w| w == b"v3-Confidentiality") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let labels = v.get("meta")?.get("security")?.as_array()?;
    let restricted = labels.iter().any(|c| {
        c.get("system").and_then(|s| s.as_str()) == Some(CONFIDENTIALITY)
            && matches!(c.get("code").and_then(|s| s.as_str()), Some("R" | "V"))
    });
    restricted.then(|| {
        crate::audit::patients_of(ty, id, body)
            .into_iter()
            .next()
            .unwrap_or_default()
    })
}

/// The code system of OpenGP's online-access labels: an entry whose
/// `meta.tag` carries [`HIDDEN_ONLINE`] from it is hidden from patients and
/// their proxies (online access), and only from them.
pub const ONLINE_ACCESS: &str = "https://opengp.dev/fhir/CodeSystem/online-access";

/// The code marking an entry hidden from online access.
pub const HIDDEN_ONLINE: &str = "hidden";

/// Whether a stored resource is marked hidden from online access.
pub fn hidden_online(body: &[u8]) -> bool {
    // Most bodies carry no such tag: no parse for them.
    if !body
        .windows(ONLINE_ACCESS.len())
        .any(|w| w == ONLINE_ACCESS.as_bytes())
    {
        return false;
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let tags = v
        .get("meta")
        .and_then(|m| m.get("tag"))
        .and_then(|t| t.as_array());
    tags.is_some_and(|tags| {
        tags.iter().any(|c| {
            c.get("system").and_then(|s| s.as_str()) == Some(ONLINE_ACCESS)
                && c.get("code").and_then(|s| s.as_str()) == Some(HIDDEN_ONLINE)
        })
    })
}

/// Which restricted entries a context sees; every backend transaction
/// carries one ([`crate::ReadTx::sees`]) and applies it inside its queries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sees {
    /// What a patient (or their proxy) sees online: neither restricted
    /// entries nor those the practice marked hidden from online access
    /// ([`hidden_online`]), whatever grant exists.
    Online,
    /// Everything: the view-restricted activity, or the server itself.
    All,
    /// Unrestricted entries, and the restricted entries of the patients
    /// `holder` holds an unexpired break-glass grant for at `now`.
    Unrestricted {
        /// The sign-in whose grants count; `None` when the role cannot
        /// break the glass (no view-record activity).
        holder: Option<Holder>,
        now: Instant,
    },
}

/// Whose break-glass grants count: the user's, made in this sign-in. A
/// grant is tied to the session that broke the glass, so signing out (or
/// out everywhere) ends it with the session, and another session of the
/// same user does not see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub user_id: String,
    /// [`SignedIn::session`].
    pub session: String,
}

/// A break-glass grant: `user` may see `patient`'s restricted entries
/// until `expires`, in the session that broke the glass, for the recorded
/// reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub user_id: String,
    /// The session it belongs to ([`SignedIn::session`]).
    pub session: String,
    pub patient: String,
    pub reason: String,
    pub expires: Instant,
}

/// Roles to activities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    roles: BTreeMap<String, Activities>,
}

const BASELINE: &str = include_str!("../data/policy.json");

impl Policy {
    /// The policy OpenGP ships.
    pub fn baseline() -> Result<Policy, StoreError> {
        Policy::from_json(BASELINE)
    }

    /// Reads a policy file: `{"roles": {"R8000": ["view-record", ...]}}`.
    pub fn from_json(text: &str) -> Result<Policy, StoreError> {
        #[derive(serde::Deserialize)]
        struct File {
            roles: BTreeMap<String, Vec<String>>,
        }
        let bad = |m: String| StoreError::bad_request(gp_fhir::IssueType::Invalid, m);
        let file: File =
            serde_json::from_str(text).map_err(|e| bad(format!("not a policy file: {e}")))?;
        let mut roles = BTreeMap::new();
        for (role, names) in file.roles {
            if !is_role_code(&role) {
                return Err(bad(format!("'{role}' is not a role code (R and digits)")));
            }
            let set = names
                .iter()
                .map(|n| Activity::parse(n).ok_or_else(|| bad(format!("unknown activity '{n}'"))))
                .collect::<Result<Vec<_>, _>>()?;
            roles.insert(role, set.into_iter().collect());
        }
        Ok(Policy { roles })
    }

    pub fn to_json(&self) -> String {
        let roles: BTreeMap<&str, Vec<&str>> = self
            .roles
            .iter()
            .map(|(r, a)| (r.as_str(), a.iter().map(Activity::code).collect()))
            .collect();
        serde_json::json!({ "roles": roles }).to_string()
    }

    /// What `role` may do; nothing for a role the policy does not name.
    pub fn activities(&self, role: &str) -> Activities {
        self.roles.get(role).copied().unwrap_or_default()
    }

    /// Gives `role` exactly `activities`.
    pub fn set(&mut self, role: &str, activities: Activities) -> Result<(), StoreError> {
        if !is_role_code(role) {
            return Err(StoreError::bad_request(
                gp_fhir::IssueType::Invalid,
                format!("'{role}' is not a role code (R and digits)"),
            ));
        }
        self.roles.insert(role.to_owned(), activities);
        Ok(())
    }

    pub fn roles(&self) -> impl Iterator<Item = (&str, Activities)> {
        self.roles.iter().map(|(r, a)| (r.as_str(), *a))
    }
}

/// Whether `s` looks like a national RBAC role code (`R8000`).
pub fn is_role_code(s: &str) -> bool {
    s.len() >= 2
        && s.len() <= 10
        && s.starts_with('R')
        && s[1..].bytes().all(|b| b.is_ascii_digit())
}

/// A user signed in to one role at one practice, as a request carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedIn {
    pub user_id: String,
    pub username: String,
    /// The display name, for the audit trail.
    pub name: String,
    /// The role profile (R-code) the session was opened with.
    pub role: String,
    /// The Practitioner the account belongs to, if linked.
    pub practitioner: Option<String>,
    pub expires: Instant,
    /// Which sign-in this is: the SHA-256 of the session's token (for a
    /// SMART app acting for the user, `app:` and its grant id). Break-glass
    /// grants belong to it; empty where no session is open.
    pub session: String,
}

/// Who is acting and what they may do.
#[derive(Clone, Debug)]
pub struct Access {
    /// The signed-in user; `None` for the server itself or an operator at
    /// the console (demo seeding, migration, the `opengp` commands).
    pub user: Option<Arc<SignedIn>>,
    pub activities: Activities,
}

impl Access {
    /// Full rights: for the server's own work and console commands only.
    /// The HTTP API never builds one.
    pub fn operator() -> Self {
        Access {
            user: None,
            activities: Activities::all(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_policy_reads_and_round_trips() {
        let p = Policy::baseline().unwrap_or_else(|e| panic!("{e}"));
        let gp = p.activities("R8000");
        assert!(gp.contains(Activity::Prescribe));
        assert!(!gp.contains(Activity::ViewAudit));
        let rec = p.activities("R8009");
        assert!(!rec.contains(Activity::ViewRecord));
        assert!(rec.contains(Activity::ManageAppointments));
        assert_eq!(p.activities("R9999"), Activities::default());
        let again = Policy::from_json(&p.to_json()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again, p);
    }

    #[test]
    fn a_bad_policy_is_refused() {
        for bad in [
            r#"{"roles": {"R8000": ["fly"]}}"#,
            r#"{"roles": {"GP": ["view-record"]}}"#,
            "[]",
        ] {
            assert!(Policy::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn activities_by_type() {
        let t = |s| ResourceType::parse(s).unwrap_or_else(|| panic!("{s}"));
        let table = [
            (
                "Patient",
                Activity::ViewDemographics,
                Some(Activity::AmendDemographics),
            ),
            (
                "Observation",
                Activity::ViewRecord,
                Some(Activity::RecordClinical),
            ),
            (
                "MedicationRequest",
                Activity::ViewRecord,
                Some(Activity::Prescribe),
            ),
            (
                "Slot",
                Activity::ViewDemographics,
                Some(Activity::ManageAppointments),
            ),
            (
                "Practitioner",
                Activity::ViewDemographics,
                Some(Activity::AdministerUsers),
            ),
            ("AuditEvent", Activity::ViewAudit, None),
        ];
        for (ty, read, write) in table {
            assert_eq!(read_activity(Some(t(ty))), read, "{ty}");
            assert_eq!(write_activity(t(ty)), write, "{ty}");
        }
        assert_eq!(read_activity(None), Activity::ViewRecord);
    }
}
