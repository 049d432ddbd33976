//! Terminology storage: SNOMED CT releases are national reference data,
//! the same for every practice, so these calls name the acting user (for
//! the record of who loaded what) but no practice.
//!
//! A load replaces the stored release in one transaction: readers see the
//! old release or the new one, never a mixture, and a failed load leaves
//! the old one in place. The store keeps the RF2 rows; the server builds
//! its in-memory index (`gp_terminology::Index`) from them at start.

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
