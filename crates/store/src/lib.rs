//! Storage for OpenGP: the traits every backend implements, and the FHIR
//! interaction engine (create, read, update, patch, delete, conditional
//! forms, history, search, batch and transaction) written once over them.
//!
//! API Boundary: the HTTP layer calls [`Store`]; backends implement
//! [`Backend`], [`ReadTx`] and [`WriteTx`].
//!
//! Architecture invariants:
//! - Every call names the practice and the acting user ([`Ctx`]); a backend
//!   transaction is scoped to one practice and cannot see another's rows.
//! - Every interaction checks the activity it needs against the context's
//!   access ([`access`]): the one enforcement point.
//! - A write is acknowledged only after its transaction has committed
//!   durably; an error leaves nothing behind (the job's savepoint is rolled back).
//! - This crate contains no SQL and knows nothing about HTTP.

pub mod access;
pub mod accounts;
pub mod audit;
mod backend;
mod bundle;
mod codes;
mod context;
mod engine;
mod error;
mod glass;
pub mod online;
mod reindex;
pub mod render;
pub mod smart;
mod target;
mod terminology;
mod trail;

pub use backend::{
    AccountsRead, AccountsWrite, Backend, DEFER, Held, HistoryPage, HistoryQuery, HistoryScope,
    IndexState, NewVersion, OnceWrite, ReadTx, Reindexed, SearchPage, StoredVersion, VersionRecord,
    WriteJob, WriteTx, gather,
};
pub use bundle::{EntryResponse, EntryResult, history_query};
pub use context::{Actor, Ctx, Practice};
pub use engine::{Authorship, DeleteOutcome, Preconditions, SearchResult, Store, WriteOutcome};
pub use error::StoreError;
pub use reindex::{INDEX_VERSION, Reindexing};
pub use target::Target;
pub use terminology::{DmdInfo, ReleaseInfo, RowCounts, SnomedLoad, TerminologyStore};
