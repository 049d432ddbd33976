//! Terminology storage: SNOMED CT and dm+d releases are national reference data,
//! the same for every practice, so these calls name the acting user (for
//! the record of who loaded what) but no practice.
//!
//! A load replaces the stored release in one transaction: readers see the
//! old release or the new one, never a mixture, and a failed load leaves
//! the old one in place. The store keeps the RF2 rows; the server builds
//! its in-memory index (`gp_terminology::Index`) from them at start.

use gp_terminology::dmd::DmdRelease;
use gp_terminology::rf2::Rows;

use crate::{Actor, StoreError};

/// The release a store holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseInfo {
    /// What the loader called it (a file name, `shipped GP subset`).
    pub name: String,
    /// When it was loaded (milliseconds since the epoch).
    pub loaded_at: i64,
    /// Who loaded it.
    pub loaded_by: String,
    pub concepts: u64,
    pub descriptions: u64,
    pub relationships: u64,
    pub members: u64,
}

/// The dm+d release a store holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmdInfo {
    /// What the loader called it (a folder name, `OpenGP shipped dm+d sample`).
    pub name: String,
    /// When it was loaded (milliseconds since the epoch).
    pub loaded_at: i64,
    /// Who loaded it.
    pub loaded_by: String,
    /// Products of every kind (VTM, VMP, AMP, VMPP, AMPP).
    pub products: u64,
    pub lookups: u64,
}

/// A load under way. Rows go in with [`SnomedLoad::add`]; nothing is
/// visible until [`SnomedLoad::commit`]; dropping it without committing
/// rolls everything back.
pub trait SnomedLoad: Send {
    fn add(&mut self, rows: Rows) -> Result<(), StoreError>;
    /// Commits the whole release durably and returns what was stored.
    fn commit(self: Box<Self>) -> Result<ReleaseInfo, StoreError>;
}

/// What a backend implements to hold a SNOMED CT release. Blocking: call
/// it off the async executor.
pub trait TerminologyStore: Send + Sync {
    /// Starts replacing the stored release with one called `name`. A
    /// backend may hold back other writes until the load ends.
    fn begin_snomed_load(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<Box<dyn SnomedLoad>, StoreError>;
    /// The stored release, if any.
    fn snomed_release(&self, actor: &Actor) -> Result<Option<ReleaseInfo>, StoreError>;
    /// Hands the stored rows to `sink` in batches, concepts first, from one
    /// consistent snapshot. Returns the release read, or `None` if there
    /// is none.
    fn read_snomed(
        &self,
        actor: &Actor,
        sink: &mut dyn FnMut(Rows) -> Result<(), StoreError>,
    ) -> Result<Option<ReleaseInfo>, StoreError>;
    /// Replaces the stored dm+d release with `release`, called `name`, in
    /// one transaction (a dm+d release is small enough to hand over whole).
    fn store_dmd(
        &self,
        actor: &Actor,
        name: &str,
        release: DmdRelease,
    ) -> Result<DmdInfo, StoreError>;
    /// The stored dm+d release, if any.
    fn dmd_release(&self, actor: &Actor) -> Result<Option<DmdInfo>, StoreError>;
    /// Reads the stored dm+d release back whole, from one snapshot.
    fn read_dmd(&self, actor: &Actor) -> Result<Option<(DmdInfo, DmdRelease)>, StoreError>;
}

/// Counts rows as they go into a load, for [`ReleaseInfo`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RowCounts {
    pub concepts: u64,
    pub descriptions: u64,
    pub relationships: u64,
    pub members: u64,
}

impl RowCounts {
    pub fn add(&mut self, rows: &Rows) {
        let n = rows.len() as u64;
        match rows {
            Rows::Concepts(_) => self.concepts += n,
            Rows::Descriptions(_) => self.descriptions += n,
            Rows::Relationships(_) => self.relationships += n,
            Rows::Members(_) => self.members += n,
        }
    }
}

impl crate::Store {
    /// Starts a load (blocking: run it off the async executor, as the
    /// loader reads files anyway).
    pub fn begin_snomed_load(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<Box<dyn SnomedLoad>, StoreError> {
        self.backend().begin_snomed_load(actor, name)
    }

    /// The stored release, if any.
    pub async fn snomed_release(&self, actor: &Actor) -> Result<Option<ReleaseInfo>, StoreError> {
        let (backend, actor) = (self.backend().clone(), actor.clone());
        crate::engine::blocking(move || backend.snomed_release(&actor)).await
    }

    /// Stores a dm+d release (blocking: run it off the async executor).
    pub fn store_dmd(
        &self,
        actor: &Actor,
        name: &str,
        release: DmdRelease,
    ) -> Result<DmdInfo, StoreError> {
        self.backend().store_dmd(actor, name, release)
    }

    /// The stored dm+d release, if any.
    pub async fn dmd_release(&self, actor: &Actor) -> Result<Option<DmdInfo>, StoreError> {
        let (backend, actor) = (self.backend().clone(), actor.clone());
        crate::engine::blocking(move || backend.dmd_release(&actor)).await
    }

    /// Reads the stored dm+d release and builds its index, off the executor.
    pub async fn dmd_index(
        &self,
        actor: &Actor,
    ) -> Result<Option<(DmdInfo, gp_terminology::dmd::DmdIndex)>, StoreError> {
        let (backend, actor) = (self.backend().clone(), actor.clone());
        crate::engine::blocking(move || {
            Ok(backend
                .read_dmd(&actor)?
                .map(|(info, release)| (info, gp_terminology::dmd::DmdIndex::build(release))))
        })
        .await
    }

    /// Reads the stored release and builds its index, off the executor.
    pub async fn snomed_index(
        &self,
        actor: &Actor,
    ) -> Result<Option<(ReleaseInfo, gp_terminology::Index)>, StoreError> {
        let (backend, actor) = (self.backend().clone(), actor.clone());
        crate::engine::blocking(move || {
            let mut builder = gp_terminology::IndexBuilder::new();
            let info = backend.read_snomed(&actor, &mut |rows| {
                builder.add(rows);
                Ok(())
            })?;
            Ok(info.map(|i| (i, builder.finish())))
        })
        .await
    }
}
