//! Getting SNOMED CT and dm+d releases into the store, and into memory at
//! start.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use gp_store::{Actor, DmdInfo, ReleaseInfo, StoreError};
use gp_terminology::dmd::{self, DmdIndex};
use gp_terminology::rf2::{Progress, ReadError, Release, Rows};
use gp_terminology::{Index, subset};

/// The release the server answers from: the stored one, or, when the store
/// has none yet, the shipped GP subset, stored first.
pub async fn ready(store: &gp_store::Store) -> Result<(String, Index)> {
    let actor = Actor::system();
    if store.snomed_release(&actor).await?.is_none() {
        let s = store.clone();
        let info = tokio::task::spawn_blocking(move || load_subset(&s, &actor)).await??;
        tracing::info!(release = %info.name, concepts = info.concepts, "stored the shipped SNOMED CT subset");
    }
    let started = Instant::now();
    let (info, index) = store
        .snomed_index(&Actor::system())
        .await?
        .ok_or_else(|| anyhow!("the SNOMED CT release vanished from the store"))?;
    tracing::info!(
        release = %info.name,
        concepts = index.concept_count(),
        descriptions = index.description_count(),
        ms = started.elapsed().as_millis() as u64,
        "SNOMED CT index ready"
    );
    Ok((info.name, index))
}

/// The dm+d release the server answers from: the stored one, or, when the
/// store has none yet or an older edition of the shipped sample, this
/// edition of the sample, stored first.
pub async fn ready_dmd(store: &gp_store::Store) -> Result<(String, DmdIndex)> {
    let actor = Actor::system();
    let stored = store.dmd_release(&actor).await?;
    if stored.is_none_or(|i| i.name.starts_with(dmd::SHIPPED_PREFIX) && i.name != dmd::SHIPPED_NAME)
    {
        let s = store.clone();
        let info = tokio::task::spawn_blocking(move || -> Result<DmdInfo> {
            let release = dmd::shipped()?;
            Ok(s.store_dmd(&actor, dmd::SHIPPED_NAME, release)?)
        })
        .await??;
        tracing::info!(release = %info.name, products = info.products, "stored the shipped dm+d sample");
    }
    let (info, index) = store
        .dmd_index(&Actor::system())
        .await?
        .ok_or_else(|| anyhow!("the dm+d release vanished from the store"))?;
    tracing::info!(release = %info.name, products = index.len(), "dm+d index ready");
    Ok((info.name, index))
}

/// What `opengp terminology load` stored.
pub enum Loaded {
    Snomed(ReleaseInfo),
    Dmd(DmdInfo),
}

/// Loads the release at `path`: a dm+d XML release when the folder or zip
/// has a VMP file (`f_vmp2_*.xml`), otherwise an RF2 SNOMED CT release (see
/// [`load`]). Blocking.
pub fn load_any(
    store: &gp_store::Store,
    actor: &Actor,
    path: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<Loaded> {
    if dmd::xml::is_release(path) {
        let release =
            dmd::xml::read(path).with_context(|| format!("reading {}", path.display()))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("dm+d release")
            .to_owned();
        return Ok(Loaded::Dmd(store.store_dmd(actor, &name, release)?));
    }
    load(store, actor, path, progress).map(Loaded::Snomed)
}

fn load_subset(store: &gp_store::Store, actor: &Actor) -> Result<ReleaseInfo> {
    let mut load = store.begin_snomed_load(actor, subset::NAME)?;
    subset::read(&mut |rows, _| load.add(rows)).map_err(read_error)?;
    Ok(load.commit()?)
}

fn read_error(e: ReadError<StoreError>) -> anyhow::Error {
    match e {
        ReadError::Term(t) => anyhow!(t),
        ReadError::Sink(s) => anyhow!(s),
    }
}

/// Loads the RF2 release at `path` (a folder or the release zip) into the
/// store in one transaction, calling `progress` as it reads. Blocking.
pub fn load(
    store: &gp_store::Store,
    actor: &Actor,
    path: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<ReleaseInfo> {
    let release = Release::open(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("SNOMED CT release")
        .to_owned();
    let mut load = store.begin_snomed_load(actor, &name)?;
    release
        .read(&mut |rows: Rows, p| {
            progress(p);
            load.add(rows)
        })
        .map_err(read_error)?;
    Ok(load.commit()?)
}
