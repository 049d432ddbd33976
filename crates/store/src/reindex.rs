//! Reindexing: a practice's index rows computed again from its current
//! versions, when what extraction gives has changed since they were written
//! (`gp_search::EXTRACTION_VERSION`; a parameter indexed since, say, so that
//! a List stored before `item:deleted` was extracted gains those rows).
//!
//! Each backend records per practice the version its rows are of
//! ([`IndexState`]). [`Store::reindex`] walks the practice's current
//! versions in `(type, id)` order, a page at a time: entries are extracted
//! in a read transaction, off the writer, then replaced in one writer
//! transaction together with the cursor (the last resource done), so a
//! reindex that is stopped resumes where it was and running one twice
//! changes nothing. A resource written in between keeps the rows its write
//! gave it (they are of the current version already). The version is
//! recorded when the last page is done, in the same transaction as the
//! reindex's administrative AuditEvent (DICOM Application Activity,
//! `admin-action` `reindex`: who ran it, the operator or the server at
//! start, the versions and the counts), a link of the practice's chain
//! like any other; a reindex that fails records its failure.

use gp_fhir::{OdsCode, ResourceType};

use crate::audit::{Admin, Event, Kind};
use crate::backend::{IndexState, Reindexed, StoredVersion};
use crate::engine::operator_only;
use crate::{Actor, Ctx, Store, StoreError};

/// The extraction version this OpenGP writes index rows with.
pub const INDEX_VERSION: u32 = gp_search::EXTRACTION_VERSION;

/// Resources reindexed per writer transaction.
const PAGE: usize = 500;

/// How far a practice's reindex has gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reindexing {
    pub practice: OdsCode,
    /// The index version its rows were of before (0: unknown).
    pub from: u32,
    /// Whether it took up a reindex that had been stopped.
    pub resumed: bool,
    /// Current resources seen so far.
    pub resources: u64,
    /// Of those, the ones whose rows were replaced (the others were written
    /// again meanwhile, with rows of this version).
    pub replaced: u64,
    pub done: bool,
}

/// The index entries a stored version gets when it is written: the
/// AuditEvents the server builds are indexed directly
/// ([`crate::audit::index_entries`]), everything else by gp-search. `None`
/// when the stored body is not a resource this OpenGP reads.
fn entries_of(v: &StoredVersion) -> Option<Vec<gp_fhir::search::index::IndexEntry>> {
    let json: serde_json::Value = serde_json::from_slice(&v.body).ok()?;
    if v.resource_type == ResourceType::parse("AuditEvent")? {
        return Some(crate::audit::index_entries(&json));
    }
    Some(gp_search::extract_json(v.resource_type, &json))
}

impl Store {
    /// Reindexes the practices whose index rows are not of
    /// [`INDEX_VERSION`] (or whose reindex was stopped), or with `force`
    /// every one of them; `only` names one practice. `progress` hears
    /// after each page. The server calls it at start; `opengp reindex`
    /// with `force`.
    pub async fn reindex(
        &self,
        actor: &Actor,
        only: Option<&OdsCode>,
        force: bool,
        progress: &(dyn Fn(&Reindexing) + Sync),
    ) -> Result<Vec<Reindexing>, StoreError> {
        let mut out = Vec::new();
        for practice in self.practices(actor).await? {
            if only.is_some_and(|o| *o != practice.ods) {
                continue;
            }
            let ctx = Ctx::new(practice, actor.clone());
            if let Some(r) = self.reindex_practice(&ctx, force, progress).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    async fn reindex_practice(
        &self,
        ctx: &Ctx,
        force: bool,
        progress: &(dyn Fn(&Reindexing) + Sync),
    ) -> Result<Option<Reindexing>, StoreError> {
        operator_only(ctx)?;
        let state = self.read_with(ctx, |tx| tx.index_state()).await?;
        if !force && state.version == INDEX_VERSION && state.resume.is_none() {
            return Ok(None);
        }
        // A stopped reindex of this version goes on from its cursor; one of
        // another version, or a forced one, starts again. Until the last
        // page the recorded version stays what it was (0 when forced), so
        // that a reindex stopped half-way is taken up at the next start.
        let after = match state.resume {
            Some((v, ty, id)) if v == INDEX_VERSION && !force => (ty, id),
            _ => (String::new(), String::new()),
        };
        let from = if force { 0 } else { state.version };
        let mut report = Reindexing {
            practice: ctx.practice.ods.clone(),
            from: state.version,
            resumed: !after.0.is_empty(),
            resources: 0,
            replaced: 0,
            done: false,
        };
        tracing::info!(practice = %report.practice, from = report.from, to = INDEX_VERSION,
            resumed = report.resumed, "reindexing the practice's search index");
        match self
            .reindex_pages(ctx, after, from, &mut report, progress)
            .await
        {
            Ok(()) => Ok(Some(report)),
            Err(e) => {
                self.audit(ctx, event(&report).failed(&e));
                Err(e)
            }
        }
    }

    /// The pages of a practice's reindex from `after` on, `report` kept
    /// up to date; the last one records the event.
    async fn reindex_pages(
        &self,
        ctx: &Ctx,
        mut after: (String, String),
        from: u32,
        report: &mut Reindexing,
        progress: &(dyn Fn(&Reindexing) + Sync),
    ) -> Result<(), StoreError> {
        loop {
            let cursor = after.clone();
            let (rows, seen, last) = self
                .read_with(ctx, move |tx| {
                    let page = tx.current_after((&cursor.0, &cursor.1), PAGE)?;
                    let last = page
                        .last()
                        .map(|v| (v.resource_type.as_str().to_owned(), v.id.clone()));
                    let rows: Vec<Reindexed> = page
                        .iter()
                        .filter_map(|v| {
                            let index = entries_of(v).or_else(|| {
                                tracing::warn!(ty = %v.resource_type, id = %v.id,
                                    "a stored version does not read as JSON; its index rows are left as they are");
                                None
                            })?;
                            Some(Reindexed {
                                resource_type: v.resource_type,
                                id: v.id.clone(),
                                version: v.version,
                                index,
                            })
                        })
                        .collect();
                    Ok((rows, page.len(), last))
                })
                .await?;
            let done = seen < PAGE;
            let next = match (&last, done) {
                (Some((ty, id)), false) => IndexState {
                    version: from,
                    resume: Some((INDEX_VERSION, ty.clone(), id.clone())),
                },
                _ => IndexState {
                    version: INDEX_VERSION,
                    resume: None,
                },
            };
            // Index rows derive from the record: a frozen practice's are
            // kept right too.
            let (mut done_report, who) = (report.clone(), ctx.clone());
            let replaced = self
                .submit_unchecked(ctx, move |tx| {
                    let n = tx.reindex(&rows)?;
                    tx.set_index_state(&next)?;
                    if next.resume.is_none() {
                        done_report.resources += seen as u64;
                        done_report.replaced += n as u64;
                        crate::trail::append_now(tx, &event(&done_report), &who)?;
                    }
                    Ok(n)
                })
                .await
                .unwrap_or(Err(StoreError::Unavailable))?;
            report.resources += seen as u64;
            report.replaced += replaced as u64;
            report.done = done || last.is_none();
            progress(report);
            if report.resources.is_multiple_of(PAGE as u64 * 20) || report.done {
                tracing::info!(practice = %report.practice, resources = report.resources,
                    replaced = report.replaced, done = report.done, "reindexing");
            }
            match last {
                Some(l) if !report.done => after = l,
                _ => return Ok(()),
            }
        }
    }
}

/// A practice's reindex in its audit trail, as far as `r` tells it.
fn event(r: &Reindexing) -> Event {
    Event::new(Kind::Admin(Admin::Reindex)).about(
        "search index",
        format!(
            "reindexed from extraction version {} to {INDEX_VERSION}{}: {} resources, {} with their rows replaced",
            r.from,
            if r.resumed { ", resuming a stopped reindex" } else { "" },
            r.resources,
            r.replaced
        ),
    )
}
