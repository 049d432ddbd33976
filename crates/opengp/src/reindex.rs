//! `opengp reindex`: every current resource's search index rows computed
//! again (gp-store `reindex.rs`), for one practice or all of them.

use std::io::Write;

use anyhow::Result;
use opengp::config::ServerConfig;

use crate::migrate::{close, open_existing, operator, practice};

pub async fn run(cfg: ServerConfig) -> Result<()> {
    let store = open_existing(&cfg).await?;
    let only = if cfg.practice.is_empty() {
        None
    } else {
        Some(practice(&store, &cfg.practice).await?.practice.ods)
    };
    let started = std::time::Instant::now();
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("reindexing {msg} {pos} resources {per_sec}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let out = store
        .reindex(&operator(), only.as_ref(), true, &|r| {
            bar.set_message(r.practice.to_string());
            bar.set_position(r.resources);
        })
        .await;
    bar.finish_and_clear();
    close(store).await?;
    let mut o = std::io::stdout().lock();
    for r in out? {
        writeln!(
            o,
            "reindexed {}: {} resources, {} with their rows replaced",
            r.practice, r.resources, r.replaced
        )?;
    }
    writeln!(o, "in {:.1} s", started.elapsed().as_secs_f64())?;
    Ok(())
}
