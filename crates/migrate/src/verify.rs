//! Comparing two sides (stores or packages) version by version.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, Result};
use gp_store::{Ctx, Store};

use crate::trail::Record;
use crate::{Line, digest};

/// One side of a comparison.
pub enum Side {
    Store(Store, Ctx),
    Package(PathBuf),
}

/// `(type, id, version)`.
pub type Key = (String, String, u64);

/// What identifies a version's content: digest, deletion, instant, author.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    pub sha256: String,
    pub deleted: bool,
    pub last_updated: String,
    pub author: String,
}

/// A version that is not the same on both sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Difference {
    OnlyInFirst(Key),
    OnlyInSecond(Key),
    Differs {
        key: Key,
        first: Fingerprint,
        second: Fingerprint,
    },
    /// A staff account, app, the access policy or an audit record that is
    /// not the same on both sides, described.
    Other(String),
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = |k: &Key| format!("{}/{}/_history/{}", k.0, k.1, k.2);
        match self {
            Difference::OnlyInFirst(k) => write!(f, "{}: only in the first", name(k)),
            Difference::OnlyInSecond(k) => write!(f, "{}: only in the second", name(k)),
            Difference::Differs { key, first, second } => {
                let mut what = Vec::new();
                if first.sha256 != second.sha256 {
                    what.push("content");
                }
                if first.deleted != second.deleted {
                    what.push("deletion");
                }
                if first.last_updated != second.last_updated {
                    what.push("lastUpdated");
                }
                if first.author != second.author {
                    what.push("author");
                }
                write!(f, "{}: {} differ", name(key), what.join(", "))
            }
            Difference::Other(what) => f.write_str(what),
        }
    }
}

/// Every version of a side, by key.
pub async fn digests(side: &Side) -> Result<BTreeMap<Key, Fingerprint>> {
    let mut out = BTreeMap::new();
    match side {
        Side::Store(store, ctx) => {
            let until = store.read_with(ctx, |tx| tx.last_position()).await?;
            let mut after = 0;
            loop {
                let page = store
                    .read_with(ctx, move |tx| tx.versions(after, until, 5_000))
                    .await?;
                let Some(last) = page.last() else { break };
                after = last.position;
                for r in page {
                    let v = r.version;
                    out.insert(
                        (v.resource_type.as_str().to_owned(), v.id, v.version),
                        Fingerprint {
                            sha256: digest(&v.body),
                            deleted: v.deleted,
                            last_updated: v.last_updated.to_string(),
                            author: r.author,
                        },
                    );
                }
            }
        }
        Side::Package(dir) => {
            let m = crate::import::open(dir)?;
            let file = std::fs::File::open(dir.join(&m.versions_file))?;
            for (n, text) in std::io::BufReader::new(file).lines().enumerate() {
                let text = text?;
                if text.trim().is_empty() {
                    continue;
                }
                let l: Line<'_> = serde_json::from_str(&text)
                    .with_context(|| format!("line {} of {}", n + 1, m.versions_file))?;
                out.insert(
                    (l.resource_type.to_owned(), l.id.to_owned(), l.version),
                    Fingerprint {
                        sha256: l.sha256.to_owned(),
                        deleted: l.deleted,
                        last_updated: l.last_updated.to_owned(),
                        author: l.author.to_owned(),
                    },
                );
            }
        }
    }
    Ok(out)
}

/// A side's accounts, policy and apps.
async fn accounts(side: &Side) -> Result<crate::Accounts> {
    match side {
        Side::Store(store, ctx) => crate::accounts::read(store, ctx).await,
        Side::Package(dir) => crate::import::accounts(dir, &crate::import::open(dir)?),
    }
}

/// A side's audit chain, by link number.
async fn audit(side: &Side) -> Result<BTreeMap<i64, Record>> {
    let mut out = BTreeMap::new();
    let mut add = |seq, r| {
        out.insert(seq, r);
        Ok(())
    };
    match side {
        Side::Store(store, ctx) => {
            crate::trail::records(store, ctx, |seq, r, _| add(seq, r)).await?
        }
        Side::Package(dir) => {
            crate::import::open(dir)?;
            crate::trail::read_package(dir, add)?;
        }
    }
    Ok(out)
}

/// What [`verify`] found.
#[derive(Debug)]
pub struct Comparison {
    /// What differs; none when all is well.
    pub differences: Vec<Difference>,
    /// How many audit records the first side's trail has after the second
    /// side's last: the first (the store moved to) continued the chain it
    /// received, with its import's own record and whatever happened since.
    /// Not differences: every record of the second is still compared.
    pub trail_continues: usize,
}

/// What differs between two sides, version by version, then accounts,
/// policy, apps and audit record by record.
pub async fn verify(first: &Side, second: &Side) -> Result<Comparison> {
    let mut diffs = versions(first, second).await?;
    let (a, b) = (accounts(first).await?, accounts(second).await?);
    diffs.extend(
        crate::accounts::differences(&a, &b)
            .into_iter()
            .map(Difference::Other),
    );
    let (a, b) = (audit(first).await?, audit(second).await?);
    let name = |seq: &i64, r: &Record| format!("audit record {seq} (AuditEvent/{})", r.event);
    let last = b.keys().next_back().copied().unwrap_or(i64::MIN);
    let trail_continues = a.range(last.saturating_add(1)..).count();
    for (seq, ra) in a.range(..=last) {
        match b.get(seq) {
            None => diffs.push(Difference::Other(format!(
                "{}: only in the first",
                name(seq, ra)
            ))),
            Some(rb) if ra != rb => diffs.push(Difference::Other(format!(
                "{}: differs{}",
                name(seq, ra),
                if ra.event != rb.event {
                    format!(" (the second's is AuditEvent/{})", rb.event)
                } else {
                    String::new()
                }
            ))),
            Some(_) => {}
        }
    }
    for (seq, rb) in b.iter().filter(|(k, _)| !a.contains_key(*k)) {
        diffs.push(Difference::Other(format!(
            "{}: only in the second",
            name(seq, rb)
        )));
    }
    Ok(Comparison {
        differences: diffs,
        trail_continues,
    })
}

/// The versions that differ between two sides.
async fn versions(first: &Side, second: &Side) -> Result<Vec<Difference>> {
    let (a, b) = (digests(first).await?, digests(second).await?);
    let mut diffs = Vec::new();
    for (k, fa) in &a {
        match b.get(k) {
            None => diffs.push(Difference::OnlyInFirst(k.clone())),
            Some(fb) if fa != fb => diffs.push(Difference::Differs {
                key: k.clone(),
                first: fa.clone(),
                second: fb.clone(),
            }),
            Some(_) => {}
        }
    }
    for k in b.keys().filter(|k| !a.contains_key(*k)) {
        diffs.push(Difference::OnlyInSecond(k.clone()));
    }
    Ok(diffs)
}
