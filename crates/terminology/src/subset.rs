//! The shipped GP subset (`data/snomed`, see its README), embedded in the
//! binary so that a server without a loaded release still codes the common
//! GP concepts, and the build reads no file at run time.

use crate::rf2::{Progress, ReadError, Rows, read_texts};

/// The name the subset is stored under.
pub const NAME: &str = "OpenGP shipped GP subset 20250101";

const FILES: &[(&str, &str)] = &[
    (
        "sct2_Concept_Snapshot_OPENGP_20250101.txt",
        include_str!("../data/snomed/sct2_Concept_Snapshot_OPENGP_20250101.txt"),
    ),
    (
        "sct2_Description_Snapshot-en_OPENGP_20250101.txt",
        include_str!("../data/snomed/sct2_Description_Snapshot-en_OPENGP_20250101.txt"),
    ),
    (
        "sct2_Relationship_Snapshot_OPENGP_20250101.txt",
        include_str!("../data/snomed/sct2_Relationship_Snapshot_OPENGP_20250101.txt"),
    ),
    (
        "der2_cRefset_LanguageSnapshot-en_OPENGP_20250101.txt",
        include_str!("../data/snomed/der2_cRefset_LanguageSnapshot-en_OPENGP_20250101.txt"),
    ),
    (
        "der2_Refset_SimpleSnapshot_OPENGP_20250101.txt",
        include_str!("../data/snomed/der2_Refset_SimpleSnapshot_OPENGP_20250101.txt"),
    ),
];

/// Hands the subset's rows to `sink`, concepts first.
pub fn read<E>(sink: &mut dyn FnMut(Rows, Progress) -> Result<(), E>) -> Result<(), ReadError<E>> {
    read_texts(FILES, sink)
}

/// The subset's index.
pub fn index() -> Result<crate::Index, crate::TermError> {
    let mut b = crate::IndexBuilder::new();
    read::<()>(&mut |rows, _| {
        b.add(rows);
        Ok(())
    })
    .map_err(|e| match e {
        ReadError::Term(t) => t,
        ReadError::Sink(()) => crate::TermError::NoRelease(NAME.into()),
    })?;
    Ok(b.finish())
}
