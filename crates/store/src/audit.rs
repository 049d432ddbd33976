//! The audit trail: every read, search, write, export, sign-in and refused
//! access becomes a FHIR R4 `AuditEvent` (auditevent.html), coded as IHE
//! BALP codes RESTful events: type `rest` with the `restful-interaction`
//! code as subtype and action C/R/U/D/E; sign-ins as DICOM "User
//! Authentication"/"Login"; exports as DICOM "Export".
//!
//! AuditEvents are stored as ordinary resources of type `AuditEvent`, so the
//! search machinery serves `AuditEvent?patient=...`, and each is also a link
//! of the practice's hash chain ([`AuditLink`]): the SHA-256 of the previous
//! link's hash and the event's stored bytes. [`Store::verify_audit`] walks
//! the chain, so an event changed or removed behind the server's back shows.
//!
//! When they are written:
//! - a write's event goes into the same job as the write, so it commits in
//!   the same transaction, or, if the write is rolled back, not at all (a
//!   failed write records a failure event of its own, separately);
//! - a read's event is queued for the writer without waiting: it commits
//!   with the next group (milliseconds), so reads pay no commit. A crash
//!   can lose the events of reads answered in the last group-commit window;
//! - reading the audit first waits for the events queued before it
//!   ([`Store::audit_barrier`]), so a search of the trail sees every access
//!   that was answered before it.
//!
//! No interaction writes an AuditEvent except through this module, and
//! recording one audits nothing, so there is no loop.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use gp_fhir::search::index::{IndexEntry, IndexValue};
use gp_fhir::search::registry;
use gp_fhir::search::value::normalize;
use gp_fhir::{DateRange, Id, Instant, Resource, ResourceType};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::backend::{StoredVersion, WriteTx};
use crate::engine::Prepared;
use crate::online::Online;
use crate::{Ctx, StoreError};

/// What kind of access an event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A RESTful interaction, by its `restful-interaction` code (`read`,
    /// `vread`, `search-type`, `history-instance`, `create`, `transaction`...).
    Rest(&'static str),
    /// A sign-in.
    Login,
    /// A request whose session could not be checked (401) or is for
    /// another practice (403).
    Session,
    /// A whole-practice or Bulk Data export.
    Export,
    /// An administrative action on accounts or the access policy.
    Admin(Admin),
}

/// What an administrator (or the console operator) did: the subtype of an
/// administrative event, after DICOM's Security Alert type
/// (`110113`) and its subtype for the kind of change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admin {
    /// A staff account created.
    AddUser,
    /// An account disabled: no sign-in, its sessions ended.
    DisableUser,
    /// A disabled account enabled again.
    EnableUser,
    /// A staff account's role profiles changed.
    ChangeRoles,
    /// A patient's online account created.
    AddPatientAccount,
    /// The practice's access policy replaced.
    SetPolicy,
    /// A practice package or other system's data imported.
    Import,
    /// A practice's search index rows computed again (`reindex.rs`).
    Reindex,
}

/// The code system of [`Admin`] subtypes.
pub const ADMIN_ACTION: &str = "https://opengp.dev/fhir/CodeSystem/admin-action";

impl Admin {
    /// Its code in [`ADMIN_ACTION`].
    pub fn code(self) -> &'static str {
        match self {
            Admin::AddUser => "user-add",
            Admin::DisableUser => "user-disable",
            Admin::EnableUser => "user-enable",
            Admin::ChangeRoles => "user-roles",
            Admin::AddPatientAccount => "patient-account-add",
            Admin::SetPolicy => "policy-set",
            Admin::Import => "import",
            Admin::Reindex => "reindex",
        }
    }

    /// DICOM's subtype of Security Alert for it (Import is its own type,
    /// and a reindex an Application Activity).
    fn dicom(self) -> (&'static str, &'static str) {
        match self {
            Admin::ChangeRoles => ("110136", "Security Roles Changed"),
            Admin::SetPolicy => ("110129", "Security Configuration"),
            Admin::Import => ("110107", "Import"),
            Admin::Reindex => ("110100", "Application Activity"),
            _ => ("110137", "User Security Attributes Changed"),
        }
    }
}

impl Kind {
    /// BALP's action for the kind: creates C, reads R, updates U, deletes
    /// D, searches and other operations E.
    fn action(self) -> &'static str {
        match self {
            Kind::Rest("create") => "C",
            Kind::Rest(
                "read" | "vread" | "history-instance" | "history-type" | "history-system",
            ) => "R",
            Kind::Rest("update" | "patch") => "U",
            Kind::Rest("delete") => "D",
            Kind::Export => "R",
            Kind::Admin(Admin::AddUser | Admin::AddPatientAccount | Admin::Import) => "C",
            Kind::Admin(Admin::Reindex) => "E",
            Kind::Admin(_) => "U",
            Kind::Rest(_) | Kind::Login | Kind::Session => "E",
        }
    }

    fn type_and_subtype(self) -> (Value, Option<Value>) {
        const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
        match self {
            Kind::Rest(code) => (
                json!({"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "Restful Operation"}),
                Some(json!({"system": "http://hl7.org/fhir/restful-interaction", "code": code})),
            ),
            Kind::Login => (
                json!({"system": DCM, "code": "110114", "display": "User Authentication"}),
                Some(json!({"system": DCM, "code": "110122", "display": "Login"})),
            ),
            Kind::Session => (
                json!({"system": DCM, "code": "110114", "display": "User Authentication"}),
                None,
            ),
            Kind::Admin(a) => {
                let (code, display) = a.dicom();
                let ty = if matches!(a, Admin::Import | Admin::Reindex) {
                    json!({"system": DCM, "code": code, "display": display})
                } else {
                    json!({"system": DCM, "code": "110113", "display": "Security Alert"})
                };
                (ty, Some(json!({"system": ADMIN_ACTION, "code": a.code()})))
            }
            Kind::Export => (
                json!({"system": DCM, "code": "110106", "display": "Export"}),
                Some(
                    json!({"system": "http://hl7.org/fhir/restful-interaction", "code": "operation"}),
                ),
            ),
        }
    }
}

/// How the access ended (audit-event-outcome).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `0`.
    Success,
    /// `4`: refused or failed because of the request (401, 403, 404, 422...).
    Minor(String),
    /// `8`: failed in the server.
    Serious(String),
}

impl Outcome {
    pub fn of_error(e: &StoreError) -> Outcome {
        match e {
            StoreError::Backend(_) | StoreError::Unavailable => {
                Outcome::Serious("the server could not complete the request".into())
            }
            StoreError::Restricted(what) => {
                Outcome::Minor(format!("refused: {what} is a restricted entry"))
            }
            other => Outcome::Minor(other.to_string()),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Outcome::Success => "0",
            Outcome::Minor(_) => "4",
            Outcome::Serious(_) => "8",
        }
    }
}

/// A resource an event touched, and how (dicom-audit-lifecycle), when an
/// event touches several in different ways (a transaction).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entity {
    /// `Type/id` or `Type/id/_history/version`.
    reference: String,
    lifecycle: Option<&'static str>,
}

/// One access, before it is stamped and stored.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: Kind,
    pub outcome: Outcome,
    entities: Vec<Entity>,
    /// The patients whose record the access touched, by id.
    pub patients: BTreeSet<String>,
    /// A search's query string, recorded as the query entity.
    query: Option<String>,
    /// The user name a sign-in was attempted with, when no account matched.
    attempted_username: Option<String>,
    /// Set for an access under a break-glass override (purposeOfEvent
    /// `BTG`), with the reason given when the glass was broken.
    break_glass: Option<String>,
    /// The identity provider (its issuer URL) that vouched for a sign-in.
    provider: Option<String>,
    /// What an administrative action was about: an account's id (none
    /// for the policy or an import), its name, and what changed.
    about: Option<(Option<String>, String, String)>,
}

/// How many resources one event lists; a larger page lists its patients
/// and the first ones only, and says so in `outcomeDesc`.
const MAX_ENTITIES: usize = 1000;

impl Event {
    pub fn new(kind: Kind) -> Self {
        Event {
            kind,
            outcome: Outcome::Success,
            entities: Vec::new(),
            patients: BTreeSet::new(),
            query: None,
            attempted_username: None,
            break_glass: None,
            provider: None,
            about: None,
        }
    }

    /// Names the account an administrative action was about (`id`, user
    /// name) and what was done to it, recorded as a Security User entity.
    pub fn account(mut self, id: &str, username: &str, what: impl Into<String>) -> Self {
        let id = (!id.is_empty()).then(|| id.to_owned());
        self.about = Some((id, username.to_owned(), what.into()));
        self
    }

    /// Names what else an administrative action was about (the access
    /// policy, an import's source) and what was done, recorded as a
    /// Security Resource entity.
    pub fn about(mut self, name: &str, what: impl Into<String>) -> Self {
        self.about = Some((None, name.to_owned(), what.into()));
        self
    }

    /// Names a patient whose record an action concerns.
    pub fn patient(mut self, id: &str) -> Self {
        self.patients.insert(id.to_owned());
        self
    }

    /// Marks the event as an access under a break-glass override, with the
    /// reason (empty when the event does not repeat it).
    pub fn break_glass(mut self, reason: &str) -> Self {
        self.break_glass = Some(reason.to_owned());
        self
    }

    /// Marks the event as a break-glass access when `ctx` sees restricted
    /// entries only by a grant and one of `served` is restricted.
    pub(crate) fn mark_override<'a>(
        &mut self,
        ctx: &Ctx,
        mut served: impl Iterator<Item = &'a StoredVersion>,
    ) {
        if ctx.sees() != crate::access::Sees::All
            && served.any(|v| crate::access::restriction(v.resource_type, &v.id, &v.body).is_some())
        {
            self.break_glass.get_or_insert_with(String::new);
        }
    }

    pub fn rest(code: &'static str) -> Self {
        Event::new(Kind::Rest(code))
    }

    /// Names a resource by type and id (what was asked for, before it is known).
    pub fn target(mut self, ty: ResourceType, id: &str) -> Self {
        self.add_reference(format!("{ty}/{id}"), None);
        if ty.as_str() == "Patient" {
            self.patients.insert(id.to_owned());
        }
        self
    }

    pub fn query(mut self, query: impl Into<String>) -> Self {
        self.query = Some(query.into());
        self
    }

    pub fn attempted_username(mut self, username: &str) -> Self {
        self.attempted_username = Some(username.to_owned());
        self
    }

    /// Names the identity provider (an OpenID Connect issuer) whose
    /// assertion a sign-in rests on: recorded as the agent's `policy`.
    pub fn via(mut self, provider: &str) -> Self {
        self.provider = Some(provider.to_owned());
        self
    }

    /// Adds a resource served or written, with the patients it belongs to.
    pub fn resource(&mut self, v: &StoredVersion) {
        self.resource_as(v, None);
    }

    fn resource_as(&mut self, v: &StoredVersion, lifecycle: Option<&'static str>) {
        let reference = format!("{}/{}/_history/{}", v.resource_type, v.id, v.version);
        // The unversioned target named before the access is replaced by
        // the version it turned out to be.
        let bare = format!("{}/{}", v.resource_type, v.id);
        self.entities.retain(|e| e.reference != bare);
        self.add_reference(reference, lifecycle);
        self.patients
            .extend(patients_of(v.resource_type, &v.id, &v.body));
    }

    /// Adds a resource a transaction wrote, created (`1`), amended (`3`)
    /// or deleted (`14`).
    pub(crate) fn written(&mut self, v: &StoredVersion, lifecycle: &'static str) {
        self.resource_as(v, Some(lifecycle));
    }

    fn add_reference(&mut self, reference: String, lifecycle: Option<&'static str>) {
        self.entities.push(Entity {
            reference,
            lifecycle,
        });
    }

    /// The event of a failed access.
    pub fn failed(mut self, e: &StoreError) -> Self {
        self.outcome = Outcome::of_error(e);
        self
    }

    /// Marks the event with an interaction's result, adding what it served.
    pub fn with_result<T>(
        mut self,
        out: &Result<T, StoreError>,
        add: impl Fn(&mut Self, &T),
    ) -> Self {
        match out {
            Ok(v) => add(&mut self, v),
            Err(e) => self.outcome = Outcome::of_error(e),
        }
        self
    }

    /// The AuditEvent, as it will be stored (before `id` and `meta`).
    pub fn to_json(&self, ctx: &Ctx, recorded: Instant) -> Value {
        let (ty, subtype) = self.kind.type_and_subtype();
        let mut ev = serde_json::Map::new();
        ev.insert("resourceType".into(), json!("AuditEvent"));
        ev.insert("type".into(), ty);
        if let Some(subtype) = subtype {
            ev.insert("subtype".into(), json!([subtype]));
        }
        ev.insert("action".into(), json!(self.kind.action()));
        ev.insert("recorded".into(), json!(recorded.to_fhir()));
        ev.insert("outcome".into(), json!(self.outcome.code()));
        let mut desc = match &self.outcome {
            Outcome::Success => None,
            Outcome::Minor(d) | Outcome::Serious(d) => Some(d.clone()),
        };
        let mut agents = vec![self.agent(ctx)];
        if let Some(g) = &ctx.grant {
            // The SMART app the request came through (RFC 6749 client).
            agents.push(json!({
                "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110150", "display": "Application"}]},
                "who": {"identifier": {"system": APP_ID, "value": g.client_id}, "display": format!("app {}", g.client_id)},
                "altId": g.client_id,
                "requestor": ctx.access.user.is_none()
            }));
        }
        ev.insert("agent".into(), Value::Array(agents));
        ev.insert(
            "source".into(),
            json!({
                "site": ctx.practice.ods.as_str(),
                "observer": {"display": "OpenGP"},
                "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]
            }),
        );
        let mut entities: Vec<Value> = self
            .patients
            .iter()
            .map(|p| {
                json!({
                    "what": {"reference": format!("Patient/{p}")},
                    "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
                    "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}
                })
            })
            .collect();
        if self.entities.len() > MAX_ENTITIES {
            let note = format!(
                "{} resources; the first {MAX_ENTITIES} are listed",
                self.entities.len()
            );
            desc = Some(desc.map_or(note.clone(), |d| format!("{d}; {note}")));
        }
        for e in self.entities.iter().take(MAX_ENTITIES) {
            let mut entity = json!({
                "what": {"reference": e.reference},
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"}
            });
            if let Some(code) = e.lifecycle {
                entity["lifecycle"] = json!({"system": "http://terminology.hl7.org/CodeSystem/dicom-audit-lifecycle", "code": code});
            }
            entities.push(entity);
        }
        if let Some((id, name, what)) = &self.about {
            let (what_json, role) = match id {
                Some(id) => (
                    json!({"identifier": {"system": USER_ID, "value": id}, "display": name}),
                    json!({"system": OBJECT_ROLE, "code": "11", "display": "Security User Entity"}),
                ),
                None => (
                    json!({"display": name}),
                    json!({"system": OBJECT_ROLE, "code": "13", "display": "Security Resource"}),
                ),
            };
            entities.push(json!({
                "what": what_json,
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": role,
                "name": name,
                "description": what
            }));
        }
        if let Some(q) = &self.query {
            entities.push(json!({
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
                "query": base64(q.as_bytes())
            }));
        }
        if let Some(d) = desc {
            ev.insert("outcomeDesc".into(), json!(d));
        }
        if let Some(reason) = &self.break_glass {
            let mut btg = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "BTG", "display": "break the glass"}]});
            if !reason.is_empty() {
                btg["text"] = json!(reason);
            }
            ev.insert("purposeOfEvent".into(), json!([btg]));
        }
        if !entities.is_empty() {
            ev.insert("entity".into(), Value::Array(entities));
        }
        Value::Object(ev)
    }

    /// The requesting agent: the signed-in user (their account, user name,
    /// role profile and Practitioner), or the operator or server component.
    fn agent(&self, ctx: &Ctx) -> Value {
        let mut agent = match &ctx.access.user {
            Some(u) => {
                let mut who = json!({
                    "identifier": {"system": USER_ID, "value": u.user_id},
                    "display": u.name
                });
                if let Some(p) = &u.practitioner {
                    who["reference"] = json!(format!("Practitioner/{p}"));
                }
                // A patient account (online.rs) is the patient, or the
                // proxy's RelatedPerson with its relationship; the patient
                // whose record it reaches is among the entities.
                let role = match ctx.online.as_deref() {
                    None => json!({"coding": [{"system": JOB_ROLE, "code": u.role}]}),
                    Some(Online {
                        patient,
                        proxy: None,
                    }) => {
                        who["reference"] = json!(format!("Patient/{patient}"));
                        json!({"coding": [{"system": ROLE_CLASS, "code": "PAT", "display": "patient"}]})
                    }
                    Some(Online {
                        proxy: Some((rp, relationship)),
                        ..
                    }) => {
                        who["reference"] = json!(format!("RelatedPerson/{rp}"));
                        relationship.clone()
                    }
                };
                json!({
                    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "humanuser", "display": "human user"}]},
                    "role": [role],
                    "who": who,
                    "altId": u.username,
                    "name": u.name,
                    "requestor": true
                })
            }
            None => match &self.attempted_username {
                Some(name) => json!({
                    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "humanuser", "display": "human user"}]},
                    "who": {"display": format!("sign-in as '{name}'")},
                    "altId": name,
                    "requestor": true
                }),
                None => json!({
                    "who": {"display": ctx.actor.id()},
                    "altId": ctx.actor.id(),
                    "requestor": true
                }),
            },
        };
        if let Some(p) = &self.provider {
            agent["policy"] = json!([p]);
        }
        if let Some(address) = &ctx.address {
            agent["network"] = json!({"address": address.as_ref(), "type": "2"});
        }
        agent
    }

    /// The AuditEvent ready for the writer: built and indexed here (off
    /// the writer thread when called from a request), its index entries
    /// read straight from the JSON it builds ([`index_entries`]).
    pub(crate) fn prepare(&self, ctx: &Ctx) -> Option<Prepared> {
        let json = self.to_json(ctx, Instant::now());
        let index = index_entries(&json);
        let resource = Resource::from_value(json).ok()?;
        Some(Prepared::with_index(resource, index))
    }
}

/// The AuditEvent search parameters OpenGP indexes: the ones an auditor
/// asks by (who, whose record, what, when, which interaction, how it
/// ended). The others (`address`, `agent-name`, `agent-role`,
/// `entity-name`, `entity-role`, `entity-type`, `policy`, `site`,
/// `source`) would cost every read about ten more index rows; a search
/// by them is refused (400) rather than answered wrongly.
pub const INDEXED_PARAMS: [&str; 9] = [
    "action", "agent", "altid", "date", "entity", "outcome", "patient", "subtype", "type",
];

/// The index entries of an AuditEvent this module built, for
/// [`INDEXED_PARAMS`]: what gp-search's FHIRPath extraction gives those
/// parameters (a unit test compares them), read directly from the JSON:
/// `type` and `subtype` (Coding), `action`, `outcome` and `agent.altId`
/// (code-like), `recorded` (date), `agent.who` and `entity.what`
/// (Reference, with `agent.who.identifier` as `agent:identifier` and
/// `entity.what.identifier`, an account, as `entity:identifier`), and
/// the Patient references among them as `patient`.
pub fn index_entries(ev: &Value) -> Vec<IndexEntry> {
    let mut out = Vec::with_capacity(12);
    let mut group = 0u32;
    let str_at = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let coding = |code: &str, c: &Value| {
        token(
            code,
            0,
            str_at(c, "system"),
            str_at(c, "code"),
            c.get("display").and_then(Value::as_str),
        )
    };
    if let Some(c) = ev.get("type") {
        out.push(coding("type", c));
    }
    for c in ev
        .get("subtype")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push(coding("subtype", c));
    }
    if let Some(a) = str_at(ev, "action") {
        out.push(token("action", 0, None, Some(a), None));
    }
    if let Some(r) = ev
        .get("recorded")
        .and_then(Value::as_str)
        .and_then(|d| DateRange::parse(d).ok())
    {
        out.push(IndexEntry {
            code: "date".into(),
            group: 0,
            value: IndexValue::Date {
                low: r.low.millis(),
                high: r.high.millis(),
            },
        });
    }
    if let Some(o) = str_at(ev, "outcome") {
        out.push(token("outcome", 0, None, Some(o), None));
    }
    let mut patients = Vec::new();
    for a in ev
        .get("agent")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(who) = a.get("who") {
            if let Some(r) = who.get("reference").and_then(Value::as_str) {
                reference("agent", r, &mut out, &mut patients);
            }
            if let Some(i) = who.get("identifier") {
                group += 1;
                out.push(token(
                    "agent:identifier",
                    group,
                    str_at(i, "system"),
                    str_at(i, "value"),
                    None,
                ));
            }
        }
        if let Some(alt) = str_at(a, "altId") {
            out.push(token("altid", 0, None, Some(alt), None));
        }
    }
    for e in ev
        .get("entity")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(r) = e
            .get("what")
            .and_then(|w| w.get("reference"))
            .and_then(Value::as_str)
        {
            reference("entity", r, &mut out, &mut patients);
        }
        // An account an administrative action was about.
        if let Some(i) = e.get("what").and_then(|w| w.get("identifier")) {
            group += 1;
            out.push(token(
                "entity:identifier",
                group,
                str_at(i, "system"),
                str_at(i, "value"),
                None,
            ));
        }
    }
    out.extend(patients);
    out
}

/// The first AuditEvent parameter a search uses that is not indexed
/// ([`INDEXED_PARAMS`]): in criteria, sorting and includes of a search of
/// `ty`, and in `_has:AuditEvent:...` of any search.
pub(crate) fn unindexed_param(
    ty: Option<ResourceType>,
    q: &gp_fhir::search::SearchQuery,
) -> Option<&'static str> {
    use gp_fhir::search::{Criterion, SortField};
    fn criterion(c: &Criterion, audit: bool) -> Option<&'static str> {
        let own = match c {
            Criterion::Param { code, .. }
            | Criterion::Missing { code, .. }
            | Criterion::Chain { code, .. }
            | Criterion::Text { code, .. } => Some(*code),
            _ => None,
        };
        if let Some(code) = own.filter(|c| audit && !INDEXED_PARAMS.contains(c)) {
            return Some(code);
        }
        match c {
            Criterion::Has {
                source,
                code,
                inner,
            } => {
                let from_audit = source.as_str() == "AuditEvent";
                if from_audit && !INDEXED_PARAMS.contains(code) {
                    return Some(code);
                }
                criterion(inner, from_audit)
            }
            Criterion::All(all) => all.iter().find_map(|c| criterion(c, audit)),
            _ => None,
        }
    }
    let audit = ty.is_some_and(|t| t.as_str() == "AuditEvent");
    if let Some(code) = q.criteria.iter().find_map(|c| criterion(c, audit)) {
        return Some(code);
    }
    let sorted = q.sort.iter().filter(|_| audit).find_map(|k| match k.field {
        SortField::Param { code, .. } if !INDEXED_PARAMS.contains(&code) => Some(code),
        _ => None,
    });
    sorted.or_else(|| {
        q.include
            .iter()
            .chain(&q.revinclude)
            .find(|i| i.source.as_str() == "AuditEvent" && !INDEXED_PARAMS.contains(&i.code))
            .map(|i| i.code)
    })
}

fn token(
    code: &str,
    group: u32,
    system: Option<String>,
    value: Option<String>,
    text: Option<&str>,
) -> IndexEntry {
    IndexEntry {
        code: code.to_owned(),
        group,
        value: IndexValue::Token {
            system,
            code: value,
            text: text.map(normalize).filter(|t| !t.is_empty()),
        },
    }
}

/// A reference as `code`'s entry, as gp-search indexes one, and as
/// `patient`'s too when it names a Patient.
fn reference(code: &str, r: &str, out: &mut Vec<IndexEntry>, patients: &mut Vec<IndexEntry>) {
    let Some(value) = gp_search::reference_value(r) else {
        return;
    };
    if gp_search::reference_parts(r).0 == Some("Patient") {
        patients.push(IndexEntry {
            code: "patient".into(),
            group: 0,
            value: value.clone(),
        });
    }
    out.push(IndexEntry {
        code: code.to_owned(),
        group: 0,
        value,
    });
}

const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
/// HL7 v3 RoleClass (`PAT`, a patient acting for themselves).
const ROLE_CLASS: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleClass";
/// OpenGP's own account ids (they are not national SDS user ids).
const USER_ID: &str = "urn:opengp:user";
/// The client ids of SMART apps registered at OpenGP.
pub const APP_ID: &str = "urn:opengp:smart-client";
/// National RBAC job role codes (R-codes).
const JOB_ROLE: &str = "https://fhir.nhs.uk/CodeSystem/NHSDigital-SDS-JobRoleCode";

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The top-level elements of each type that put it in a patient's
/// compartment (compartmentdefinition-patient.html), from the parameters'
/// expressions: `Observation.subject.where(resolve() is Patient)` gives
/// `subject`.
fn compartment_elements() -> &'static HashMap<ResourceType, Vec<Vec<&'static str>>> {
    static ELEMENTS: OnceLock<HashMap<ResourceType, Vec<Vec<&'static str>>>> = OnceLock::new();
    ELEMENTS.get_or_init(|| {
        let mut out = HashMap::new();
        let (Some(patient), Ok(any)) = (ResourceType::parse("Patient"), Id::parse("x")) else {
            return out;
        };
        let Some(gp_fhir::search::Criterion::Compartment { members, .. }) =
            gp_fhir::search::compartment(patient, &any, None)
        else {
            return out;
        };
        for (ty, codes) in members {
            let prefix = format!("{ty}.");
            let mut paths: Vec<Vec<&'static str>> = Vec::new();
            for code in codes {
                let Some(expr) = registry::param(ty, code).and_then(|p| p.expression) else {
                    continue;
                };
                for part in expr.split('|') {
                    let part = part.trim().trim_start_matches('(');
                    let Some(rest) = part.strip_prefix(prefix.as_str()) else {
                        continue;
                    };
                    // The element path, without a function call at its
                    // end: `participant.actor.where(...)` is
                    // `participant.actor`.
                    let end = rest.find(['(', ')', ' ']).unwrap_or(rest.len());
                    let mut path: Vec<&'static str> = rest[..end].split('.').collect();
                    if rest[end..].starts_with('(') {
                        path.pop();
                    }
                    if !path.is_empty() && !path.contains(&"") && !paths.contains(&path) {
                        paths.push(path);
                    }
                }
            }
            out.insert(ty, paths);
        }
        out
    })
}

/// The patients a stored resource belongs to: itself for a Patient, else the
/// `Patient/...` references at its compartment elements' paths (such as
/// Appointment's `participant.actor`, AuditEvent's `agent.who` and
/// `entity.what`). Cheap enough for every read: one pass over the body,
/// which builds only the members those paths start with, and no FHIRPath.
pub fn patients_of(ty: ResourceType, id: &str, body: &[u8]) -> Vec<String> {
    if ty.as_str() == "Patient" {
        return vec![id.to_owned()];
    }
    let Some(paths) = compartment_elements().get(&ty) else {
        return Vec::new();
    };
    if paths.is_empty() || body.is_empty() {
        return Vec::new();
    }
    let firsts: Vec<&'static str> = paths.iter().filter_map(|p| p.first().copied()).collect();
    let mut de = serde_json::Deserializer::from_slice(body);
    let Ok(members) = serde::de::DeserializeSeed::deserialize(Members(&firsts), &mut de) else {
        return Vec::new();
    };
    let root = Value::Object(members);
    let mut out = Vec::new();
    for path in paths {
        at_path(&root, path, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// A JSON object's members named in `.0`, the others skipped without
/// being built (most of a resource: its narrative, codes and values).
struct Members<'k>(&'k [&'static str]);

impl<'de> serde::de::DeserializeSeed<'de> for Members<'_> {
    type Value = serde_json::Map<String, Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Members<'_> {
    type Value = serde_json::Map<String, Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = m.next_key_seed(Member(self.0))? {
            match key {
                Some(k) => {
                    out.insert(k.to_owned(), m.next_value::<Value>()?);
                }
                None => {
                    m.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// A member's name: the wanted one it is, or `None`, without allocating.
struct Member<'k>(&'k [&'static str]);

impl<'de> serde::de::DeserializeSeed<'de> for Member<'_> {
    type Value = Option<&'static str>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Member<'_> {
    type Value = Option<&'static str>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().find(|k| **k == v).copied())
    }
}

/// Collects the patients referenced at `path` under `v` (arrays crossed).
fn at_path(v: &Value, path: &[&str], out: &mut Vec<String>) {
    match (v, path.split_first()) {
        (Value::Array(items), _) => items.iter().for_each(|i| at_path(i, path, out)),
        (_, None) => collect_patients(v, out),
        (Value::Object(map), Some((first, rest))) => {
            if let Some(next) = map.get(*first) {
                at_path(next, rest, out);
            }
        }
        _ => {}
    }
}

fn collect_patients(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| collect_patients(i, out)),
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("reference")
                && let Some(rest) = r.strip_prefix("Patient/")
            {
                let id = rest.split('/').next().unwrap_or(rest);
                if !id.is_empty() {
                    out.push(id.to_owned());
                }
            }
        }
        _ => {}
    }
}

/// A link of a practice's audit chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditLink {
    /// 1, 2, 3... within the practice, in the order the events committed.
    pub seq: i64,
    /// The AuditEvent's id.
    pub event: String,
    /// Hex SHA-256 of the previous link's hash (32 zero bytes for the first)
    /// followed by the AuditEvent's stored bytes.
    pub hash: String,
}

/// A link with the stored AuditEvent it protects, as verification reads it.
#[derive(Clone, Debug)]
pub struct StoredLink {
    pub link: AuditLink,
    /// The AuditEvent's stored bytes; `None` if the version is missing.
    pub body: Option<bytes::Bytes>,
    /// When the AuditEvent's version was stored, and on whose behalf (as
    /// [`crate::VersionRecord::author`]), for a migration to keep them.
    pub last_updated: Option<Instant>,
    pub author: Option<String>,
}

/// The hash of a link: SHA-256 over the previous hash and the record's bytes.
pub fn chain_hash(previous: Option<&str>, body: &[u8]) -> String {
    let mut h = Sha256::new();
    match previous.and_then(unhex) {
        Some(p) => h.update(p),
        None => h.update([0u8; 32]),
    }
    h.update(body);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in h.finalize() {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Stores an AuditEvent in the writer's transaction and chains it.
pub(crate) fn append(tx: &mut dyn WriteTx, event: Prepared) -> Result<(), StoreError> {
    append_all(tx, std::iter::once(event))
}

/// A new AuditEvent's id: a time-ordered UUID (RFC 9562 version 7: the
/// time in milliseconds, then random bits), so that the trail's rows are
/// appended at the end of each table's and index's B-tree instead of at a
/// random page, as a version 4 UUID would be: the writer's cost per read
/// event falls from 156-244 us (growing with the trail) to 99-109 us
/// (audit_cost test, docs/benchmarks.md).
fn event_id() -> Id {
    let random = uuid::Uuid::new_v4();
    let mut bytes = [0u8; 10];
    bytes.copy_from_slice(&random.as_bytes()[6..]);
    let millis = u64::try_from(Instant::now().millis()).unwrap_or(0);
    Id::generate(uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid())
}

/// Stores AuditEvents in order in the writer's transaction and chains
/// them, looking the practice's chain head up once for the group.
pub(crate) fn append_all(
    tx: &mut dyn WriteTx,
    events: impl IntoIterator<Item = Prepared>,
) -> Result<(), StoreError> {
    let mut events = events.into_iter().peekable();
    if events.peek().is_none() {
        return Ok(());
    }
    let mut head = tx.audit_head()?;
    for event in events {
        let id = event_id();
        let stored = crate::engine::write_version(tx, &id, 1, event)?;
        let link = AuditLink {
            seq: head.as_ref().map_or(1, |h| h.0 + 1),
            event: id.to_string(),
            hash: chain_hash(head.as_ref().map(|h| h.1.as_str()), &stored.body),
        };
        tx.put_audit_link(&link)?;
        head = Some((link.seq, link.hash));
    }
    Ok(())
}

/// What [`Store::verify_audit`](crate::Store::verify_audit) found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainReport {
    /// Links checked.
    pub records: u64,
    /// The last link's hash: keep it elsewhere to detect a truncated chain.
    pub head: Option<String>,
    /// The first broken link, if any.
    pub broken: Option<BrokenLink>,
}

/// Where and why the chain breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokenLink {
    pub seq: i64,
    pub event: String,
    pub why: String,
}

/// Checks links in order, carrying the previous hash across pages.
#[derive(Default)]
pub(crate) struct Verifier {
    pub report: ChainReport,
    last_seq: i64,
}

impl Verifier {
    /// Checks the next page; false once a broken link is found.
    pub fn check(&mut self, page: &[StoredLink]) -> bool {
        for s in page {
            let l = &s.link;
            let broken = |why: String| BrokenLink {
                seq: l.seq,
                event: l.event.clone(),
                why,
            };
            let fault = if l.seq != self.last_seq + 1 {
                Some(broken(format!(
                    "record {} is missing from the chain (the next is {})",
                    self.last_seq + 1,
                    l.seq
                )))
            } else {
                match &s.body {
                    None => Some(broken(format!(
                        "AuditEvent/{} is missing from the store",
                        l.event
                    ))),
                    Some(body) => {
                        let expected = chain_hash(self.report.head.as_deref(), body);
                        (expected != l.hash).then(|| {
                            broken(format!(
                                "AuditEvent/{} does not match its hash: it, or the link before it, was altered",
                                l.event
                            ))
                        })
                    }
                }
            };
            if let Some(f) = fault {
                self.report.broken = Some(f);
                return false;
            }
            self.report.records += 1;
            self.report.head = Some(l.hash.clone());
            self.last_seq = l.seq;
        }
        true
    }

    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Actor, Practice};

    fn ctx() -> Ctx {
        let practice = Practice {
            key: 1,
            ods: gp_fhir::OdsCode::parse("A81001").unwrap_or_else(|| panic!("ods")),
            name: "Test".into(),
        };
        Ctx::new(practice, Actor::new("cli"))
    }

    fn t(s: &str) -> ResourceType {
        ResourceType::parse(s).unwrap_or_else(|| panic!("{s}"))
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
        }
    }

    #[test]
    fn patients_come_from_compartment_references() {
        let obs = br#"{"resourceType":"Observation","subject":{"reference":"Patient/p1"},"performer":[{"reference":"Practitioner/d"},{"reference":"Patient/p2/_history/3"}],"focus":[{"reference":"Patient/not-a-member"}]}"#;
        assert_eq!(patients_of(t("Observation"), "o", obs), vec!["p1", "p2"]);
        // Members skipped unbuilt (the narrative, components) are still
        // read past correctly, and an escaped member name is still its name.
        let skipped = br#"{"text":{"div":"<div>\"subject\": {\"reference\":\"Patient/no\"}</div>"},"component":[{"code":{"coding":[{"code":"x"}]},"valueQuantity":{"value":1e3}}],"subj\u0065ct":{"reference":"Patient/p3"}}"#;
        assert_eq!(patients_of(t("Observation"), "o", skipped), vec!["p3"]);
        assert!(patients_of(t("Observation"), "x", b"[1,2]").is_empty());
        assert_eq!(patients_of(t("Patient"), "p9", b"{}"), vec!["p9"]);
        let enc = br#"{"resourceType":"Encounter","subject":{"reference":"Patient/e1"}}"#;
        assert_eq!(patients_of(t("Encounter"), "e", enc), vec!["e1"]);
        assert!(patients_of(t("Organization"), "x", b"{}").is_empty());
        assert!(patients_of(t("Observation"), "x", b"not json").is_empty());
    }

    /// Every kind of event is a valid R4 AuditEvent (validation.html).
    #[test]
    fn events_are_valid_audit_events() {
        let v = StoredVersion {
            resource_type: t("Observation"),
            id: "o1".into(),
            version: 2,
            last_updated: Instant::now(),
            deleted: false,
            body: bytes::Bytes::from_static(br#"{"subject":{"reference":"Patient/p1"}}"#),
        };
        let mut read = Event::rest("read").target(t("Observation"), "o1");
        read.resource(&v);
        let mut tx = Event::rest("transaction");
        tx.written(&v, "1");
        let cases = [
            read,
            Event::rest("search-type").query("name=smith&_count=10"),
            Event::rest("delete")
                .target(t("Patient"), "p1")
                .failed(&StoreError::Forbidden("no".into())),
            tx,
            Event::new(Kind::Login)
                .attempted_username("nobody")
                .failed(&StoreError::Unauthorized("no".into())),
            Event::new(Kind::Export).failed(&StoreError::Unavailable),
            Event::new(Kind::Session).failed(&StoreError::Unauthorized("no".into())),
            Event::new(Kind::Admin(Admin::DisableUser)).account("u2", "nurse", "disabled"),
            Event::new(Kind::Admin(Admin::AddPatientAccount))
                .account("u3", "9434765919", "created")
                .patient("p1"),
            Event::new(Kind::Admin(Admin::Import))
                .about("package", "imported")
                .failed(&StoreError::Unavailable),
        ];
        for ev in cases {
            let json = ev.to_json(&ctx(), Instant::now());
            let outcome = gp_validate::validate(&json);
            assert!(
                gp_validate::rejection(outcome).is_none(),
                "{ev:?} gives an invalid AuditEvent: {json}"
            );
        }
        let json = Event::rest("read")
            .target(t("Observation"), "o1")
            .to_json(&ctx(), Instant::now());
        assert_eq!(json["action"], "R");
        assert_eq!(json["subtype"][0]["code"], "read");
        assert_eq!(json["entity"][0]["what"]["reference"], "Observation/o1");
    }

    /// The entries built directly are what FHIRPath extraction gives the
    /// indexed parameters, for every kind of event, with and without a
    /// signed-in user.
    #[test]
    fn direct_index_entries_match_fhirpath_extraction() {
        let v = StoredVersion {
            resource_type: t("Observation"),
            id: "o1".into(),
            version: 2,
            last_updated: Instant::now(),
            deleted: false,
            body: bytes::Bytes::from_static(
                br#"{"subject":{"reference":"Patient/p1"},"performer":[{"reference":"Patient/p2"}]}"#,
            ),
        };
        let mut read = Event::rest("read").target(t("Observation"), "o1");
        read.resource(&v);
        let mut tx = Event::rest("transaction");
        tx.written(&v, "1");
        tx.written(&v, "3");
        let events = [
            read,
            tx,
            Event::rest("read").target(t("Patient"), "p9"),
            Event::rest("search-type").query("name=smith&_count=10"),
            Event::rest("delete")
                .target(t("Patient"), "p1")
                .failed(&StoreError::Forbidden("no".into())),
            Event::new(Kind::Login)
                .attempted_username("nobody")
                .failed(&StoreError::Unauthorized("no".into())),
            Event::new(Kind::Export).failed(&StoreError::Unavailable),
            Event::new(Kind::Session).failed(&StoreError::Unauthorized("no".into())),
            Event::new(Kind::Admin(Admin::DisableUser)).account("u2", "nurse", "disabled"),
            Event::new(Kind::Admin(Admin::AddPatientAccount))
                .account("u3", "9434765919", "created")
                .patient("p1"),
            Event::new(Kind::Admin(Admin::Import))
                .about("package", "imported")
                .failed(&StoreError::Unavailable),
        ];
        let user = |practitioner: Option<&str>| {
            let mut c = ctx().from_address(Some("192.0.2.7".into()));
            c.access.user = Some(std::sync::Arc::new(crate::access::SignedIn {
                user_id: "u1".into(),
                username: "drsmith".into(),
                name: "Dr Ána Smith".into(),
                role: "R8000".into(),
                practitioner: practitioner.map(str::to_owned),
                expires: Instant::now(),
                session: String::new(),
            }));
            c
        };
        let contexts = [ctx(), user(Some("pr1")), user(None)];
        let comparable = |entries: Vec<IndexEntry>| {
            let mut out: Vec<String> = entries
                .into_iter()
                .filter(|e| {
                    INDEXED_PARAMS
                        .iter()
                        .any(|p| e.code == *p || e.code.starts_with(&format!("{p}:")))
                })
                .map(|mut e| {
                    e.group = 0;
                    format!("{e:?}")
                })
                .collect();
            out.sort();
            out
        };
        for c in &contexts {
            for ev in &events {
                let json = ev.to_json(c, Instant::now());
                let direct = comparable(index_entries(&json));
                let fhirpath = comparable(gp_search::extract_json(t("AuditEvent"), &json));
                assert_eq!(direct, fhirpath, "{json}");
                assert!(direct.iter().any(|e| e.contains("\"outcome\"")));
            }
        }
    }

    /// The request-side cost of auditing a read, FHIRPath extraction
    /// against the direct entries (docs/benchmarks.md): `cargo test
    /// --release -p gp-store --lib prepare_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn prepare_cost() {
        let v = StoredVersion {
            resource_type: t("Observation"),
            id: "9f2c1a7e-5b43-4c1e-9a0d-3c2b1e4f5a6b".into(),
            version: 1,
            last_updated: Instant::now(),
            deleted: false,
            body: bytes::Bytes::from_static(
                br#"{"resourceType":"Observation","subject":{"reference":"Patient/4d027a59-1b2c-4d5e-8f90-a1b2c3d4e5f6"}}"#,
            ),
        };
        let mut c = ctx().from_address(Some("127.0.0.1".into()));
        c.access.user = Some(std::sync::Arc::new(crate::access::SignedIn {
            user_id: "u1".into(),
            username: "drsmith".into(),
            name: "Dr Jane Smith".into(),
            role: "R8000".into(),
            practitioner: Some("pr1".into()),
            expires: Instant::now(),
            session: String::new(),
        }));
        let mut ev = Event::rest("read").target(t("Observation"), &v.id);
        ev.resource(&v);
        let n = 20_000u32;
        let time = |f: &dyn Fn() -> usize| {
            let start = std::time::Instant::now();
            let rows: usize = (0..n).map(|_| f()).sum();
            (start.elapsed() / n, rows / n as usize)
        };
        let fhirpath = time(&|| {
            let json = ev.to_json(&c, Instant::now());
            let r = Resource::from_value(json).unwrap_or_else(|_| panic!("resource"));
            gp_search::extract(&r).len()
        });
        let direct = time(&|| {
            let ev = ev.prepare(&c).unwrap_or_else(|| panic!("prepared"));
            ev.index.len()
        });
        let json_only = time(&|| {
            ev.to_json(&c, Instant::now())
                .as_object()
                .map_or(0, |m| m.len())
        });
        eprintln!(
            "per read event: FHIRPath {:?} ({} index rows), direct {:?} ({} rows), JSON alone {:?}",
            fhirpath.0, fhirpath.1, direct.0, direct.1, json_only.0
        );
    }

    #[test]
    fn the_chain_breaks_where_a_record_changes() {
        let bodies: Vec<&[u8]> = vec![b"one", b"two", b"three"];
        let mut links = Vec::new();
        let mut prev: Option<String> = None;
        for (i, b) in bodies.iter().enumerate() {
            let hash = chain_hash(prev.as_deref(), b);
            links.push(StoredLink {
                link: AuditLink {
                    seq: i as i64 + 1,
                    event: format!("e{i}"),
                    hash: hash.clone(),
                },
                body: Some(bytes::Bytes::copy_from_slice(b)),
                last_updated: None,
                author: None,
            });
            prev = Some(hash);
        }
        let mut ok = Verifier::default();
        assert!(ok.check(&links[..1]) && ok.check(&links[1..]));
        assert_eq!(ok.report.records, 3);
        assert_eq!(ok.report.head, prev);

        let mut altered = links.clone();
        altered[1].body = Some(bytes::Bytes::from_static(b"TWO"));
        let mut v = Verifier::default();
        assert!(!v.check(&altered));
        assert_eq!(v.report.broken.as_ref().map(|b| b.seq), Some(2));
        assert_eq!(v.report.records, 1);

        let mut gap = links.clone();
        gap.remove(1);
        let mut v = Verifier::default();
        assert!(!v.check(&gap));
        assert_eq!(v.report.broken.map(|b| b.seq), Some(3));
    }
}
