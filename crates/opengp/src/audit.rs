//! `opengp audit verify`: walks a practice's audit chain and says whether
//! it is intact, or where it first breaks (exit code 1 then).

use std::io::Write;

use anyhow::{Result, bail};
use opengp::config::ServerConfig;

use crate::migrate::{close, open_existing, practice};

pub async fn verify(cfg: ServerConfig) -> Result<()> {
    let store = open_existing(&cfg).await?;
    let ctx = practice(&store, &cfg.practice).await?;
    let report = store.verify_audit(&ctx).await;
    close(store).await?;
    let report = report?;
    let ods = &ctx.practice.ods;
    if let Some(b) = &report.broken {
        bail!(
            "the audit trail of {ods} is broken at record {} (AuditEvent/{}): {}; the {} records before it are intact",
            b.seq,
            b.event,
            b.why,
            report.records
        );
    }
    let mut o = std::io::stdout().lock();
    match &report.head {
        Some(head) => writeln!(
            o,
            "the audit trail of {ods} is intact: {} records, the last with hash {head}",
            report.records
        )?,
        None => writeln!(o, "the audit trail of {ods} is empty")?,
    }
    Ok(())
}
