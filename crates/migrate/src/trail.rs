//! The audit trail in a package: `audit.ndjson`, one line per link of the
//! practice's hash chain, in order, with the AuditEvent it protects (its
//! stored bytes, instant and author). Written as it is, it lands as it was:
//! the same ids, bytes and links, so that `opengp audit verify` passes on
//! the target as it did on the source.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, Result};
use gp_fhir::{Instant, ResourceType};
use gp_store::audit::{AuditLink, chain_hash, index_entries};
use gp_store::{Ctx, NewVersion, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::import::{Outcome, Report};
use crate::{AUDIT_FILE, AuditTotals, digest, instant};

/// Links read or written per transaction.
const PAGE: usize = 2_000;

/// One line of `audit.ndjson`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Line<'a> {
    pub seq: i64,
    pub event: &'a str,
    pub hash: &'a str,
    pub last_updated: Option<String>,
    pub author: Option<String>,
    pub sha256: &'a str,
    #[serde(borrow)]
    pub resource: Option<&'a serde_json::value::RawValue>,
}

/// A link as the verifier compares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub event: String,
    pub hash: String,
    pub sha256: String,
    pub last_updated: String,
    pub author: String,
}

/// Every link of the practice's chain, by number, from a store (after the
/// events queued for the writer have been written).
pub(crate) async fn records(
    store: &Store,
    ctx: &Ctx,
    mut each: impl FnMut(i64, Record, &[u8]) -> Result<()>,
) -> Result<()> {
    store.audit_barrier(ctx).await?;
    let mut after = 0;
    loop {
        let page = store
            .read_with(ctx, move |tx| tx.audit_links(after, PAGE))
            .await?;
        let Some(last) = page.last() else { break };
        after = last.link.seq;
        for s in page {
            let body = s.body.unwrap_or_default();
            let r = Record {
                event: s.link.event,
                hash: s.link.hash,
                sha256: digest(&body),
                last_updated: s.last_updated.map(|i| i.to_string()).unwrap_or_default(),
                author: s.author.unwrap_or_default(),
            };
            each(s.link.seq, r, &body)?;
        }
    }
    Ok(())
}

/// Writes the chain to `out`; returns its totals.
pub(crate) async fn export(store: &Store, ctx: &Ctx, out: &mut impl Write) -> Result<AuditTotals> {
    let mut totals = AuditTotals::default();
    records(store, ctx, |seq, r, body| {
        let mut header = serde_json::to_vec(&serde_json::json!({
            "seq": seq,
            "event": r.event,
            "hash": r.hash,
            "lastUpdated": r.last_updated,
            "author": r.author,
            "sha256": r.sha256,
        }))?;
        header.pop();
        out.write_all(&header)?;
        out.write_all(b",\"resource\":")?;
        out.write_all(if body.is_empty() { b"null" } else { body })?;
        out.write_all(b"}\n")?;
        totals.records += 1;
        totals.head = Some(r.hash);
        Ok(())
    })
    .await?;
    Ok(totals)
}

/// Whether importing the package in `dir` could still add links to the
/// practice's audit trail: the practice has no trail yet, or its last link
/// is in the package's trail (same number, same hash) with more after it.
/// The package's trail file is read as it is, seals unchecked, as for a
/// package that was refused: an intact copy of it would continue the
/// trail, so nothing may be appended to the trail before it. A file that
/// does not read says no.
pub async fn would_continue(store: &Store, ctx: &Ctx, dir: &Path) -> Result<bool> {
    store.audit_barrier(ctx).await?;
    let head = store.write_with(ctx, |tx| tx.audit_head()).await?;
    let Some((seq, hash)) = head else {
        return Ok(true);
    };
    let mut found = false;
    let mut beyond = false;
    let read = read_package(dir, |n, r| {
        found |= n == seq && r.hash == hash;
        beyond |= n > seq;
        Ok(())
    });
    Ok(read.is_ok() && found && beyond)
}

/// Every link of a package's chain, by number.
pub(crate) fn read_package(
    dir: &Path,
    mut each: impl FnMut(i64, Record) -> Result<()>,
) -> Result<()> {
    let file = std::fs::File::open(dir.join(AUDIT_FILE))?;
    for (n, text) in std::io::BufReader::new(file).lines().enumerate() {
        let text = text?;
        if text.trim().is_empty() {
            continue;
        }
        let l: Line<'_> = serde_json::from_str(&text)
            .with_context(|| format!("line {} of {AUDIT_FILE}", n + 1))?;
        each(
            l.seq,
            Record {
                event: l.event.to_owned(),
                hash: l.hash.to_owned(),
                sha256: l.sha256.to_owned(),
                last_updated: l.last_updated.unwrap_or_default(),
                author: l.author.unwrap_or_default(),
            },
        )?;
    }
    Ok(())
}

/// A link checked and ready to write.
struct Ready {
    line: u64,
    link: AuditLink,
    last_updated: Instant,
    author: String,
    body: Vec<u8>,
    index: Vec<gp_fhir::search::index::IndexEntry>,
}

/// The report's name for a link, and the origin of a line.
fn record_name(seq: i64, event: &str) -> String {
    format!("audit record {seq} (AuditEvent/{event})")
}

fn check(text: &str) -> Result<Ready, (Option<String>, String)> {
    let l: Line<'_> =
        serde_json::from_str(text).map_err(|e| (None, format!("not an audit trail line: {e}")))?;
    let name = Some(record_name(l.seq, l.event));
    let fail = |why: &str| (name.clone(), why.to_owned());
    let body = l
        .resource
        .map(|r| r.get().as_bytes().to_vec())
        .ok_or_else(|| fail("the AuditEvent is missing"))?;
    if digest(&body) != l.sha256 {
        return Err(fail(
            "the AuditEvent does not match its SHA-256: it was changed or damaged",
        ));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| fail("the AuditEvent is not JSON"))?;
    if json["resourceType"] != "AuditEvent" || json["id"] != l.event {
        return Err(fail("the resource is not the AuditEvent the link names"));
    }
    let last_updated = l
        .last_updated
        .as_deref()
        .and_then(instant)
        .ok_or_else(|| fail("the AuditEvent has no valid instant"))?;
    Ok(Ready {
        line: 0,
        link: AuditLink {
            seq: l.seq,
            event: l.event.to_owned(),
            hash: l.hash.to_owned(),
        },
        last_updated,
        author: l.author.unwrap_or_default(),
        index: index_entries(&json),
        body,
    })
}

/// Appends the package's chain to the target's, batch by batch. A link the
/// target already holds identically is skipped (a second or resumed run);
/// one that differs, does not follow the target's last link, or does not
/// match its hash is rejected, and so is every link after it, since a chain
/// cannot continue past a gap.
pub(crate) async fn import(
    store: &Store,
    ctx: &Ctx,
    dir: &Path,
    report: &mut Report,
) -> Result<()> {
    let file = std::fs::File::open(dir.join(AUDIT_FILE))?;
    let mut lines = std::io::BufReader::with_capacity(1 << 20, file).lines();
    let mut n = 0u64;
    let mut broken: Option<String> = None;
    let mut done = false;
    while !done {
        let mut batch = Vec::with_capacity(PAGE);
        // A line that cannot be read ends the batch: the records before it
        // are written, those after it rejected.
        let mut breaks: Option<String> = None;
        while batch.len() < PAGE {
            let Some(text) = lines.next() else {
                done = true;
                break;
            };
            n += 1;
            let text = text.with_context(|| format!("reading line {n} of {AUDIT_FILE}"))?;
            if text.trim().is_empty() {
                continue;
            }
            match check(&text) {
                Ok(mut r) => {
                    r.line = n;
                    batch.push(r);
                }
                Err((record, why)) => {
                    let origin = format!("{AUDIT_FILE}:{n}");
                    report.reject_audit(&origin, record, why.clone());
                    breaks = Some(format!("it follows a record that was rejected ({why})"));
                    break;
                }
            }
        }
        let Some(first) = batch.first().map(|r| r.link.seq) else {
            if let Some(b) = breaks {
                broken.get_or_insert(b);
            }
            continue;
        };
        let carried = broken.clone();
        let (outcomes, still) = store
            .write_with(ctx, move |tx| {
                let mut broken = carried;
                let held = tx.audit_links(first - 1, batch.len())?;
                let mut head = tx.audit_head()?;
                let mut out = Vec::with_capacity(batch.len());
                for r in batch {
                    let name = record_name(r.link.seq, &r.link.event);
                    let have = held.iter().find(|h| h.link.seq == r.link.seq);
                    let outcome = if let Some(why) = &broken {
                        Err(why.clone())
                    } else if let Some(h) = have {
                        if h.link == r.link {
                            Ok(Outcome::AlreadyPresent)
                        } else {
                            Err("the target's audit trail holds a different record with this number: a trail moves only into a practice whose trail is empty or a part of the package's".to_owned())
                        }
                    } else if r.link.seq != head.as_ref().map_or(1, |h| h.0 + 1) {
                        Err(format!(
                            "the target's audit trail ends at record {}, so this one cannot follow it",
                            head.as_ref().map_or(0, |h| h.0)
                        ))
                    } else if chain_hash(head.as_ref().map(|h| h.1.as_str()), &r.body)
                        != r.link.hash
                    {
                        Err("the AuditEvent does not match its link's hash: the trail was altered"
                            .to_owned())
                    } else {
                        let ty = ResourceType::parse("AuditEvent")
                            .ok_or_else(|| StoreError::Backend("AuditEvent".into()))?;
                        tx.insert(&NewVersion {
                            resource_type: ty,
                            id: r.link.event.clone(),
                            version: 1,
                            last_updated: r.last_updated,
                            deleted: false,
                            body: r.body,
                            index: r.index,
                            author: Some(r.author),
                            restricted: None,
                        })?;
                        tx.put_audit_link(&r.link)?;
                        head = Some((r.link.seq, r.link.hash.clone()));
                        Ok(Outcome::Imported)
                    };
                    if let Err(why) = &outcome {
                        broken.get_or_insert(format!(
                            "it follows a record that was rejected ({why})"
                        ));
                    }
                    out.push((r.line, name, outcome));
                }
                Ok::<_, StoreError>((out, broken))
            })
            .await?;
        broken = still;
        if let Some(b) = breaks {
            broken.get_or_insert(b);
        }
        for (line, name, outcome) in outcomes {
            match outcome {
                Ok(o) => report.count_outcome(AUDIT, &o),
                Err(why) => report.reject_audit(&format!("{AUDIT_FILE}:{line}"), Some(name), why),
            }
        }
    }
    Ok(())
}

/// The report's name for audit records.
pub(crate) const AUDIT: &str = "(audit record)";
