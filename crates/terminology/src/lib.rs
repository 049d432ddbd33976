//! SNOMED CT and dm+d for OpenGP: reading releases, and answering the
//! questions a GP system asks of them.
//!
//! - [`rf2`]: RF2 snapshot files, from a folder or the release zip, in batches.
//! - [`Index`]: a release in memory: term search for typeahead
//!   ([`Index::search`]), subsumption ([`Index::is_a`], [`Index::subsumes`]),
//!   ECL ([`Index::ecl`]), refsets, implicit value sets ([`valueset`]).
//! - [`dmd`]: the dm+d XML release (VTM, VMP, AMP, VMPP, AMPP and lookups)
//!   and [`dmd::DmdIndex`], name search for prescribing and VMP-AMP navigation.
//! - [`synth`]: a deterministic synthetic RF2 release of any size, for tests
//!   and benchmarks (the licensed releases are never shipped).
//!
//! Architecture invariant: pure. No SQL, no HTTP, no async; file IO only in
//! the readers and the generator, which take paths from their caller.
//! Nothing here panics on any input.

pub mod dmd;
pub mod ecl;
mod id;
mod index;
mod postings;
pub mod rf2;
mod search;
mod set;
pub mod subset;
pub mod synth;
pub mod valueset;
pub mod writer;

pub use ecl::EclError;
pub use id::{Partition, SctId};
pub use index::{ConceptInfo, Index, IndexBuilder, Subsumption, Term};
pub use search::{Hit, TermQuery, words};
pub use set::ConceptSet;

/// The code system URI of SNOMED CT in FHIR.
pub const SNOMED_URI: &str = "http://snomed.info/sct";

/// The SNOMED CT root concept.
pub const ROOT: u64 = 138875005;
/// `116680003 |Is a|`.
pub const IS_A: u64 = 116680003;
/// Description type: fully specified name.
pub const FSN: u64 = 900000000000003001;
/// Description type: synonym.
pub const SYNONYM: u64 = 900000000000013009;
/// Language refset acceptability: preferred.
pub const PREFERRED: u64 = 900000000000548007;
/// Language refset acceptability: acceptable.
pub const ACCEPTABLE: u64 = 900000000000549004;
/// The GB English language refset.
pub const GB_ENGLISH: u64 = 900000000000508004;
/// The US English language refset.
pub const US_ENGLISH: u64 = 900000000000509007;
/// The UK clinical language refset (NHS realm).
pub const UK_CLINICAL_ENGLISH: u64 = 999001261000000100;
/// The international core module.
pub const CORE_MODULE: u64 = 900000000000207008;
/// Definition status: primitive.
pub const PRIMITIVE: u64 = 900000000000074008;
/// Characteristic type: inferred.
pub const INFERRED: u64 = 900000000000011006;
/// Modifier: existential.
pub const EXISTENTIAL: u64 = 900000000000451002;
/// Case significance: only the initial character is case insensitive.
pub const INITIAL_CASE_INSENSITIVE: u64 = 900000000000020002;

/// What can go wrong reading a release.
#[derive(Debug, thiserror::Error)]
pub enum TermError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0} is not a readable zip file: {1}")]
    Zip(String, String),
    #[error("{file}, line {line}: {msg}")]
    Format {
        file: String,
        line: usize,
        msg: String,
    },
    #[error("{0} holds no RF2 snapshot concept file (sct2_Concept_...Snapshot...txt)")]
    NoRelease(String),
    #[error("{0}: {1}")]
    Xml(String, String),
}
