//! Writing a practice package from a store.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use gp_store::{Ctx, Store, VersionRecord};
use sha2::{Digest, Sha256};

use crate::{
    ACCOUNTS_FILE, AUDIT_FILE, AccountTotals, FORMAT, FORMAT_VERSION, MANIFEST_FILE, Manifest,
    PracticeInfo, Progress, TypeTotals, VERSIONS_FILE, digest, hex,
};

/// Versions read per page.
const PAGE: usize = 5_000;

/// Writes every version the practice holds into `dir` (which must be new or
/// empty), the manifest last. Versions written while the export runs are
/// left for the next one: the export covers the practice as it was when it
/// started (freeze the practice first for a final export).
pub async fn export(
    store: &Store,
    ctx: &Ctx,
    dir: &Path,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Manifest> {
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!("{} is not empty; export into a new folder", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let until = store.read_with(ctx, |tx| tx.last_position()).await?;
    let file = std::fs::File::create(dir.join(VERSIONS_FILE))?;
    let mut out = HashingWriter {
        inner: std::io::BufWriter::with_capacity(1 << 20, file),
        hash: Sha256::new(),
    };
    let mut types: BTreeMap<String, TypeTotals> = BTreeMap::new();
    // Whether each resource's latest version so far is a deletion.
    let mut latest: HashMap<(String, String), bool> = HashMap::new();
    let mut after = 0i64;
    let mut done = 0u64;
    loop {
        let page: Vec<VersionRecord> = store
            .read_with(ctx, move |tx| tx.versions(after, until, PAGE))
            .await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for r in &page {
            write_line(&mut out, r)?;
            let ty = r.version.resource_type.as_str();
            types.entry(ty.to_owned()).or_default().versions += 1;
            latest.insert((ty.to_owned(), r.version.id.clone()), r.version.deleted);
        }
        done += page.len() as u64;
        progress(Progress {
            done,
            total: until.max(0) as u64,
        });
    }
    out.inner.flush()?;
    out.inner
        .get_ref()
        .sync_all()
        .context("writing the versions file")?;
    for ((ty, _), deleted) in &latest {
        let t = types.entry(ty.clone()).or_default();
        t.resources += 1;
        t.deleted += u64::from(*deleted);
    }
    let mut totals = TypeTotals::default();
    for t in types.values() {
        totals.versions += t.versions;
        totals.resources += t.resources;
        totals.deleted += t.deleted;
    }
    let versions_sha256 = hex(&out.hash.finalize());
    // The accounts, policy and apps, then the audit trail (after the
    // events still queued for the writer).
    let accounts = crate::accounts::read(store, ctx).await?;
    let accounts_bytes = serde_json::to_vec_pretty(&accounts)?;
    write_synced(&dir.join(ACCOUNTS_FILE), &accounts_bytes)?;
    let file = std::fs::File::create(dir.join(AUDIT_FILE))?;
    let mut out = HashingWriter {
        inner: std::io::BufWriter::with_capacity(1 << 20, file),
        hash: Sha256::new(),
    };
    let audit = crate::trail::export(store, ctx, &mut out).await?;
    out.inner.flush()?;
    out.inner
        .get_ref()
        .sync_all()
        .context("writing the audit trail")?;
    let frozen = store.read_with(ctx, |tx| tx.frozen()).await?;
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        practice: PracticeInfo {
            ods: ctx.practice.ods.to_string(),
            name: ctx.practice.name.clone(),
            frozen,
        },
        exported_at: gp_fhir::Instant::now().to_string(),
        exported_by: ctx.actor.id().to_owned(),
        source: format!("OpenGP {}", env!("CARGO_PKG_VERSION")),
        types,
        totals,
        versions_file: VERSIONS_FILE.into(),
        versions_sha256,
        accounts: AccountTotals {
            users: accounts.users.len() as u64,
            apps: accounts.apps.len() as u64,
            policy: u64::from(accounts.policy.is_some()),
        },
        accounts_file: ACCOUNTS_FILE.into(),
        accounts_sha256: digest(&accounts_bytes),
        audit,
        audit_file: AUDIT_FILE.into(),
        audit_sha256: hex(&out.hash.finalize()),
    };
    // The manifest appears whole or not at all: written aside, then renamed.
    let tmp = dir.join(format!("{MANIFEST_FILE}.partial"));
    write_synced(&tmp, &serde_json::to_vec_pretty(&manifest)?)?;
    std::fs::rename(&tmp, dir.join(MANIFEST_FILE))?;
    Ok(manifest)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    std::fs::File::open(path)?.sync_all()?;
    Ok(())
}

/// One version as a line: the header fields, then the stored bytes as they
/// are (they are compact JSON, so the line stays one line).
fn write_line(out: &mut impl Write, r: &VersionRecord) -> Result<()> {
    let v = &r.version;
    let header = serde_json::json!({
        "resourceType": v.resource_type.as_str(),
        "id": v.id,
        "version": v.version,
        "lastUpdated": v.last_updated.to_string(),
        "deleted": v.deleted,
        "author": r.author,
        "sha256": digest(&v.body),
    });
    let mut header = serde_json::to_vec(&header)?;
    header.pop(); // the closing brace
    out.write_all(&header)?;
    out.write_all(b",\"resource\":")?;
    if v.deleted || v.body.is_empty() {
        out.write_all(b"null")?;
    } else {
        out.write_all(&v.body)?;
    }
    out.write_all(b"}\n")?;
    Ok(())
}

/// A writer that hashes what passes through it.
struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
