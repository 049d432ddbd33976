//! Breaking the glass (access.rs): a user whose role may read the record
//! but not restricted entries gives a reason and, for
//! [`BREAK_GLASS_MINUTES`], sees one patient's restricted entries, in the
//! session that broke the glass only: signing out (or out everywhere) ends
//! it, and another session of the same user does not have it. The grant
//! is stored (it outlives a restart) and its AuditEvent, written in the
//! same transaction, carries the reason as purposeOfEvent `BTG`; every
//! access that then serves a restricted entry is marked `BTG` too.

use gp_fhir::{Id, Instant, IssueType, ResourceType};

use crate::access::{Activity, BREAK_GLASS_MINUTES, Grant, Holder, Sees};
use crate::audit::Event;
use crate::{Ctx, Store, StoreError};

/// The longest reason kept, in characters.
const MAX_REASON: usize = 1000;

impl Store {
    /// Grants the signed-in user `patient`'s restricted entries for
    /// [`BREAK_GLASS_MINUTES`], for `reason` (required). Needs the
    /// view-record activity and a user's own session (an app's token is
    /// refused, 403); a role that sees restricted entries anyway needs no
    /// grant and is told so (400).
    pub async fn break_glass(
        &self,
        ctx: &Ctx,
        patient: Id,
        reason: &str,
    ) -> Result<Grant, StoreError> {
        let ty = ResourceType::parse("Patient").ok_or(StoreError::Unavailable)?;
        let reason = reason.trim().to_owned();
        let event = Event::rest("operation")
            .target(ty, patient.as_str())
            .break_glass(&reason);
        self.allow(ctx, Activity::ViewRecord, &event)?;
        let refuse = |e: StoreError| {
            self.audit(ctx, event.clone().failed(&e));
            Err(e)
        };
        // Overriding a restriction is a user's own deliberate act in their
        // session, never an app's, whatever its scopes and its user.
        if ctx.grant.is_some() {
            return refuse(StoreError::Forbidden(
                "an app cannot break the glass: only its user can, in their own session".into(),
            ));
        }
        let Some((user, session)) = ctx
            .access
            .user
            .as_ref()
            .map(|u| (u.user_id.clone(), u.session.clone()))
            .filter(|(_, s)| !s.is_empty())
        else {
            return refuse(StoreError::Forbidden(
                "breaking the glass needs a signed-in user".into(),
            ));
        };
        if ctx.online.is_some() {
            return refuse(StoreError::Forbidden(
                "a patient account cannot break the glass".into(),
            ));
        }
        if ctx.sees() == Sees::All {
            return refuse(StoreError::bad_request(
                IssueType::BusinessRule,
                "your role already sees restricted entries: there is no glass to break",
            ));
        }
        if reason.is_empty() || reason.chars().count() > MAX_REASON {
            return refuse(StoreError::bad_request(
                IssueType::Required,
                format!("breaking the glass needs a reason (1 to {MAX_REASON} characters)"),
            ));
        }
        let grant = Grant {
            user_id: user,
            session,
            patient: patient.to_string(),
            reason,
            expires: Instant::from_millis(Instant::now().millis() + BREAK_GLASS_MINUTES * 60_000),
        };
        self.write_audited(ctx, event, move |tx, _| {
            match tx.latest(ty, patient.as_str())? {
                Some(p) if !p.deleted => {}
                _ => {
                    return Err(StoreError::NotFound(format!(
                        "Patient/{patient} is not known"
                    )));
                }
            }
            tx.put_grant(&grant)?;
            Ok(grant)
        })
        .await
    }

    /// How many of `patient`'s entries the context does not see because
    /// they are restricted (0 with view-restricted or a grant for the
    /// patient): the number a clinician is told, never the entries.
    pub async fn withheld(&self, ctx: &Ctx, patient: Id) -> Result<u64, StoreError> {
        self.allow(ctx, Activity::ViewRecord, &Event::rest("operation"))?;
        let holder = match ctx.sees() {
            Sees::All | Sees::Online => return Ok(0),
            Sees::Unrestricted { holder, now } => holder.map(|h| (h, now)),
        };
        self.read_in(ctx, move |tx| {
            if let Some((holder, now)) = holder
                && tx
                    .grants(&holder, now)?
                    .iter()
                    .any(|g| g.patient == patient.as_str())
            {
                return Ok(0);
            }
            tx.restricted_count(patient.as_str())
        })
        .await
    }

    /// The unexpired break-glass grants of the signed-in user's session.
    pub async fn grants(&self, ctx: &Ctx) -> Result<Vec<Grant>, StoreError> {
        let Some(holder) = ctx.access.user.as_ref().map(|u| Holder {
            user_id: u.user_id.clone(),
            session: u.session.clone(),
        }) else {
            return Ok(Vec::new());
        };
        self.read_in(ctx, move |tx| tx.grants(&holder, Instant::now()))
            .await
    }
}
