//! How the engine records the audit trail (`audit.rs` builds the events):
//! refusals checked and recorded, writes with their event in one job, and
//! every other event queued for the writer in groups.
//!
//! Queued events (reads', refusals', failures') are held per practice; the
//! first one queued while none is waiting submits one writer job, which at
//! its turn appends everything queued by then, in order, in one savepoint.
//! Under load a single job carries hundreds of events, so auditing reads
//! costs the writer one savepoint and one chain-head lookup per group, not
//! per read. A job is queued behind everything submitted before it, so a
//! barrier job submitted after an event still commits after it. A writer
//! holding only such jobs waits a few milliseconds for company before it
//! commits (`gp_store::gather`), so that even a single client's reads share
//! commits.

use std::collections::HashMap;
use std::sync::Mutex;

use gp_fhir::{OdsCode, ResourceType};

use crate::access::Activity;
use crate::audit::{self, Event};
use crate::backend::{StoredVersion, WriteJob, WriteTx};
use crate::engine::{DeleteOutcome, Prepared, operator_only};
use crate::{Actor, Ctx, Store, StoreError};

/// Audit events waiting for the writer, by practice key, and whether a job
/// that will take them is already queued.
#[derive(Default)]
pub(crate) struct Queued {
    by_practice: Mutex<HashMap<i64, (Vec<Prepared>, bool)>>,
}

impl Queued {
    /// Adds an event; true if no job will take it yet (the caller submits one).
    fn push(&self, practice: i64, event: Prepared) -> Option<bool> {
        let mut map = self.by_practice.lock().ok()?;
        let slot = map.entry(practice).or_default();
        slot.0.push(event);
        Some(!std::mem::replace(&mut slot.1, true))
    }

    /// Everything queued for the practice; events queued from now on need
    /// a new job.
    fn take(&self, practice: i64) -> Vec<Prepared> {
        let Ok(mut map) = self.by_practice.lock() else {
            return Vec::new();
        };
        map.remove(&practice)
            .map(|(events, _)| events)
            .unwrap_or_default()
    }
}

/// Appends the practice's queued events at its turn in the writer.
struct DrainJob {
    queued: std::sync::Arc<Queued>,
    practice: i64,
    ods: OdsCode,
    ran: bool,
}

impl WriteJob for DrainJob {
    fn run(&mut self, tx: &mut dyn WriteTx) -> bool {
        self.ran = true;
        let events = self.queued.take(self.practice);
        let count = events.len();
        if let Err(e) = audit::append_all(tx, events) {
            tracing::error!(practice = %self.ods, error = %e, count, "audit events could not be stored");
            return false;
        }
        true
    }

    fn deferrable(&self) -> bool {
        true
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        if let Err(e) = committed {
            tracing::error!(practice = %self.ods, error = %e, "audit events were not committed");
            if !self.ran {
                // The writer never ran it: let the next event submit a job
                // for what is waiting.
                if let Ok(mut map) = self.queued.by_practice.lock()
                    && let Some(slot) = map.get_mut(&self.practice)
                {
                    slot.1 = false;
                }
            }
        }
    }
}

impl Store {
    /// Checks an activity, recording a refusal in the audit trail.
    pub(crate) fn allow(
        &self,
        ctx: &Ctx,
        activity: Activity,
        event: &Event,
    ) -> Result<(), StoreError> {
        ctx.require(activity)
            .inspect_err(|e| self.audit(ctx, event.clone().failed(e)))
    }

    /// Records an event without waiting: it commits with the writer's next
    /// group. A failure to store it is logged.
    pub fn audit(&self, ctx: &Ctx, event: Event) {
        let Some(prepared) = event.prepare(ctx) else {
            tracing::error!(?event, "an audit event could not be built");
            return;
        };
        match self.queued.push(ctx.practice.key, prepared) {
            Some(true) => {
                // Stored by the server on the user's behalf: the event
                // itself names the user.
                let server = Ctx::new(ctx.practice.clone(), Actor::system());
                self.backend().submit(
                    &server,
                    Box::new(DrainJob {
                        queued: self.queued.clone(),
                        practice: ctx.practice.key,
                        ods: ctx.practice.ods.clone(),
                        ran: false,
                    }),
                );
            }
            Some(false) => {}
            None => tracing::error!(?event, "the audit queue is unusable"),
        }
    }

    /// Waits until every event queued for the practice so far has
    /// committed, so that reading the audit trail sees them: the writer
    /// runs a practice's jobs in the order they were submitted.
    pub async fn audit_barrier(&self, ctx: &Ctx) -> Result<(), StoreError> {
        self.submit_unchecked(ctx, |_| Ok(()))
            .await
            .unwrap_or(Err(StoreError::Unavailable))
    }

    /// The barrier before a read of the audit trail itself.
    pub(crate) async fn audit_barrier_for(
        &self,
        ctx: &Ctx,
        ty: Option<ResourceType>,
    ) -> Result<(), StoreError> {
        if ty.is_some_and(|t| t.as_str() == "AuditEvent") {
            self.audit_barrier(ctx).await?;
        }
        Ok(())
    }

    /// Runs a write with its audit event in the same job, so both commit
    /// in one transaction or neither does; a failure is recorded apart.
    pub(crate) async fn write_audited<R, F>(
        &self,
        ctx: &Ctx,
        event: Event,
        f: F,
    ) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn WriteTx, &mut Event) -> Result<R, StoreError> + Send + 'static,
    {
        let (who, failed) = (ctx.clone(), event.clone());
        let out = self
            .write_in(ctx, move |tx| {
                let mut event = event;
                let r = f(tx, &mut event)?;
                append_now(tx, &event, &who)?;
                Ok(r)
            })
            .await;
        if let Err(e) = &out {
            self.audit(ctx, failed.failed(e));
        }
        out
    }

    /// Checks the practice's audit chain from the first link to the last
    /// (an operator's context only): how many records, the head hash, and
    /// the first broken link if there is one.
    pub async fn verify_audit(&self, ctx: &Ctx) -> Result<audit::ChainReport, StoreError> {
        operator_only(ctx)?;
        self.audit_barrier(ctx).await?;
        let mut verifier = audit::Verifier::default();
        loop {
            let after = verifier.last_seq();
            let page = self
                .read_in(ctx, move |tx| tx.audit_links(after, 2_000))
                .await?;
            if page.is_empty() || !verifier.check(&page) {
                return Ok(verifier.report);
            }
        }
    }
}

/// Appends an event inside the current job (a write's, a batch entry's).
pub(crate) fn append_now(tx: &mut dyn WriteTx, event: &Event, who: &Ctx) -> Result<(), StoreError> {
    let prepared = event
        .prepare(who)
        .ok_or_else(|| StoreError::Backend("the audit event could not be built".into()))?;
    audit::append(tx, prepared)
}

/// Records what a delete removed: the deletion version, with the patients
/// of the version before it.
pub(crate) fn audit_deletion(ev: &mut Event, d: &DeleteOutcome, before: Option<StoredVersion>) {
    if let (DeleteOutcome::Deleted { version }, Some(mut v)) = (d, before) {
        v.version = *version;
        ev.resource(&v);
    }
}
