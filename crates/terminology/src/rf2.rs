//! Reading an RF2 snapshot release (SNOMED CT Release File Specification,
//! "RF2"): tab-separated UTF-8 files with a header line, from a folder or the
//! release zip, streamed in batches so that a full edition never sits in
//! memory as text.
//!
//! Files are recognised by the start of their names and the word `Snapshot`
//! in them, which covers the International edition
//! (`sct2_Concept_Snapshot_INT_20240101.txt`, `sct2_Description_Snapshot-en_INT_...`)
//! and the UK editions (`sct2_Concept_UKCLSnapshot_GB1000000_...`,
//! `der2_cRefset_LanguageUKCLSnapshot-en_...`). Full and Delta files, stated
//! relationships, concrete values and other refset patterns are skipped.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::TermError;

/// A row of a concept file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Concept {
    pub id: u64,
    /// `YYYYMMDD` as a number.
    pub effective_time: u32,
    pub active: bool,
    pub module: u64,
    pub definition_status: u64,
}

/// A row of a description file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Description {
    pub id: u64,
    pub effective_time: u32,
    pub active: bool,
    pub module: u64,
    pub concept: u64,
    pub language: String,
    /// FSN ([`crate::FSN`]) or synonym ([`crate::SYNONYM`]).
    pub type_id: u64,
    pub term: String,
    pub case_significance: u64,
}

/// A row of a relationship file (inferred).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relationship {
    pub id: u64,
    pub effective_time: u32,
    pub active: bool,
    pub module: u64,
    pub source: u64,
    pub destination: u64,
    pub group: u32,
    /// The attribute; [`crate::IS_A`] for the hierarchy.
    pub type_id: u64,
    pub characteristic_type: u64,
    pub modifier: u64,
}

/// A member of a reference set: a language refset (with an acceptability)
/// or a simple refset (without).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefsetMember {
    /// A UUID.
    pub id: String,
    pub effective_time: u32,
    pub active: bool,
    pub module: u64,
    pub refset: u64,
    pub component: u64,
    /// For a language refset member: preferred ([`crate::PREFERRED`]) or
    /// acceptable ([`crate::ACCEPTABLE`]).
    pub acceptability: Option<u64>,
}

/// A batch of rows of one kind.
#[derive(Clone, Debug)]
pub enum Rows {
    Concepts(Vec<Concept>),
    Descriptions(Vec<Description>),
    Relationships(Vec<Relationship>),
    /// Language and simple refset members.
    Members(Vec<RefsetMember>),
}

impl Rows {
    pub fn len(&self) -> usize {
        match self {
            Rows::Concepts(v) => v.len(),
            Rows::Descriptions(v) => v.len(),
            Rows::Relationships(v) => v.len(),
            Rows::Members(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How far a read has got, in bytes of file content.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

/// Rows per batch: large enough for multi-row inserts to pay, small enough
/// to keep memory flat.
pub const BATCH: usize = 20_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Concept,
    Description,
    Relationship,
    Language,
    Simple,
}

fn kind_of(name: &str) -> Option<Kind> {
    if !name.ends_with(".txt") || !name.contains("Snapshot") {
        return None;
    }
    let kinds = [
        ("sct2_Concept_", Kind::Concept),
        ("sct2_Description_", Kind::Description),
        ("sct2_Relationship_", Kind::Relationship),
        ("der2_cRefset_Language", Kind::Language),
        ("der2_Refset_Simple", Kind::Simple),
    ];
    kinds
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map(|(_, k)| *k)
}

#[derive(Debug)]
enum Source {
    Folder,
    Zip(PathBuf),
}

/// One file of the release.
#[derive(Clone, Debug)]
struct Entry {
    kind: Kind,
    /// A path in the folder, or a name in the zip.
    name: String,
    size: u64,
}

/// An RF2 release: its snapshot files, found but not yet read.
#[derive(Debug)]
pub struct Release {
    source: Source,
    entries: Vec<Entry>,
}

impl Release {
    /// Finds the snapshot files in a folder (searched recursively) or a zip.
    pub fn open(path: &Path) -> Result<Release, TermError> {
        let io = |e: std::io::Error| TermError::Io(path.display().to_string(), e);
        let meta = std::fs::metadata(path).map_err(io)?;
        let (source, mut entries) = if meta.is_dir() {
            let mut entries = Vec::new();
            walk(path, &mut entries)?;
            (Source::Folder, entries)
        } else {
            let file = File::open(path).map_err(io)?;
            let zip = zip::ZipArchive::new(file)
                .map_err(|e| TermError::Zip(path.display().to_string(), e.to_string()))?;
            let mut entries = Vec::new();
            for i in 0..zip.len() {
                let Some(name) = zip.name_for_index(i) else {
                    continue;
                };
                let base = name.rsplit('/').next().unwrap_or(name);
                if let Some(kind) = kind_of(base) {
                    entries.push(Entry {
                        kind,
                        name: name.to_owned(),
                        size: 0,
                    });
                }
            }
            (Source::Zip(path.to_path_buf()), entries)
        };
        if let Source::Zip(p) = &source {
            let mut zip = open_zip(p)?;
            for e in &mut entries {
                if let Ok(f) = zip.by_name(&e.name) {
                    e.size = f.size();
                }
            }
        }
        if !entries.iter().any(|e| e.kind == Kind::Concept) {
            return Err(TermError::NoRelease(path.display().to_string()));
        }
        // Concepts first, then descriptions, relationships, refsets: the
        // order loaders and the index builder rely on.
        entries.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        Ok(Release { source, entries })
    }

    /// The file names found, in reading order.
    pub fn files(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.name.clone()).collect()
    }

    /// Total bytes to read, for a progress bar.
    pub fn total_bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    /// Reads every file, handing rows to `sink` in batches of at most
    /// [`BATCH`], concepts first. Stops at the first error, the sink's own
    /// included.
    pub fn read<E>(
        &self,
        sink: &mut dyn FnMut(Rows, Progress) -> Result<(), E>,
    ) -> Result<(), ReadError<E>> {
        let mut progress = Progress {
            done: 0,
            total: self.total_bytes(),
        };
        match &self.source {
            Source::Folder => {
                for e in &self.entries {
                    let f = File::open(&e.name)
                        .map_err(|err| ReadError::Term(TermError::Io(e.name.clone(), err)))?;
                    read_file(e, BufReader::with_capacity(1 << 20, f), &mut progress, sink)?;
                }
            }
            Source::Zip(p) => {
                let mut zip = open_zip(p).map_err(ReadError::Term)?;
                for e in &self.entries {
                    let f = zip.by_name(&e.name).map_err(|err| {
                        ReadError::Term(TermError::Zip(e.name.clone(), err.to_string()))
                    })?;
                    read_file(e, BufReader::with_capacity(1 << 20, f), &mut progress, sink)?;
                }
            }
        }
        Ok(())
    }
}

/// Reads RF2 files held in memory, `(file name, content)`, as
/// [`Release::read`] reads files: recognised by name, concepts first.
pub fn read_texts<E>(
    files: &[(&str, &str)],
    sink: &mut dyn FnMut(Rows, Progress) -> Result<(), E>,
) -> Result<(), ReadError<E>> {
    let mut entries: Vec<(Entry, &str)> = files
        .iter()
        .filter_map(|(name, text)| {
            let kind = kind_of(name)?;
            Some((
                Entry {
                    kind,
                    name: (*name).to_owned(),
                    size: text.len() as u64,
                },
                *text,
            ))
        })
        .collect();
    entries.sort_by(|a, b| (a.0.kind, &a.0.name).cmp(&(b.0.kind, &b.0.name)));
    let mut progress = Progress {
        done: 0,
        total: entries.iter().map(|e| e.0.size).sum(),
    };
    for (e, text) in &entries {
        read_file(e, BufReader::new(text.as_bytes()), &mut progress, sink)?;
    }
    Ok(())
}

/// A read failed in the release or in the sink.
#[derive(Debug)]
pub enum ReadError<E> {
    Term(TermError),
    Sink(E),
}

fn open_zip(p: &Path) -> Result<zip::ZipArchive<File>, TermError> {
    let file = File::open(p).map_err(|e| TermError::Io(p.display().to_string(), e))?;
    zip::ZipArchive::new(file).map_err(|e| TermError::Zip(p.display().to_string(), e.to_string()))
}

fn walk(dir: &Path, out: &mut Vec<Entry>) -> Result<(), TermError> {
    let io = |e: std::io::Error| TermError::Io(dir.display().to_string(), e);
    for item in std::fs::read_dir(dir).map_err(io)? {
        let item = item.map_err(io)?;
        let path = item.path();
        let meta = item.metadata().map_err(io)?;
        if meta.is_dir() {
            walk(&path, out)?;
        } else if let Some(kind) = path.file_name().and_then(|n| n.to_str()).and_then(kind_of) {
            out.push(Entry {
                kind,
                name: path.display().to_string(),
                size: meta.len(),
            });
        }
    }
    Ok(())
}

fn read_file<R: Read, E>(
    entry: &Entry,
    mut reader: BufReader<R>,
    progress: &mut Progress,
    sink: &mut dyn FnMut(Rows, Progress) -> Result<(), E>,
) -> Result<(), ReadError<E>> {
    let mut batch = empty(entry.kind);
    let mut line = String::new();
    let mut number = 0usize;
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| ReadError::Term(TermError::Io(entry.name.clone(), e)))?;
        if n == 0 {
            break;
        }
        progress.done += n as u64;
        number += 1;
        let text = line.trim_end_matches(['\n', '\r']);
        if number == 1 || text.is_empty() {
            // The header line names the columns; RF2 fixes their order.
            continue;
        }
        parse_row(entry.kind, text, &mut batch).map_err(|msg| {
            ReadError::Term(TermError::Format {
                file: entry.name.clone(),
                line: number,
                msg,
            })
        })?;
        if batch.len() >= BATCH {
            let full = std::mem::replace(&mut batch, empty(entry.kind));
            sink(full, *progress).map_err(ReadError::Sink)?;
        }
    }
    if !batch.is_empty() {
        sink(batch, *progress).map_err(ReadError::Sink)?;
    }
    Ok(())
}

fn empty(kind: Kind) -> Rows {
    match kind {
        Kind::Concept => Rows::Concepts(Vec::with_capacity(BATCH)),
        Kind::Description => Rows::Descriptions(Vec::with_capacity(BATCH)),
        Kind::Relationship => Rows::Relationships(Vec::with_capacity(BATCH)),
        Kind::Language | Kind::Simple => Rows::Members(Vec::with_capacity(BATCH)),
    }
}

fn parse_row(kind: Kind, line: &str, batch: &mut Rows) -> Result<(), String> {
    let f: Vec<&str> = line.split('\t').collect();
    let want = match kind {
        Kind::Concept => 5,
        Kind::Description => 9,
        Kind::Relationship => 10,
        Kind::Language => 7,
        Kind::Simple => 6,
    };
    if f.len() < want {
        return Err(format!("{} columns, expected {want}", f.len()));
    }
    let id = |i: usize| -> Result<u64, String> {
        f[i].parse::<u64>()
            .map_err(|_| format!("column {} is not an identifier: '{}'", i + 1, f[i]))
    };
    let time = || -> Result<u32, String> {
        f[1].parse::<u32>()
            .map_err(|_| format!("effectiveTime is not a date: '{}'", f[1]))
    };
    let active = || -> Result<bool, String> {
        match f[2] {
            "1" => Ok(true),
            "0" => Ok(false),
            other => Err(format!("active is '{other}', not 0 or 1")),
        }
    };
    match batch {
        Rows::Concepts(v) => v.push(Concept {
            id: id(0)?,
            effective_time: time()?,
            active: active()?,
            module: id(3)?,
            definition_status: id(4)?,
        }),
        Rows::Descriptions(v) => v.push(Description {
            id: id(0)?,
            effective_time: time()?,
            active: active()?,
            module: id(3)?,
            concept: id(4)?,
            language: f[5].to_owned(),
            type_id: id(6)?,
            term: f[7].to_owned(),
            case_significance: id(8)?,
        }),
        Rows::Relationships(v) => v.push(Relationship {
            id: id(0)?,
            effective_time: time()?,
            active: active()?,
            module: id(3)?,
            source: id(4)?,
            destination: id(5)?,
            group: f[6]
                .parse()
                .map_err(|_| format!("relationshipGroup is not a number: '{}'", f[6]))?,
            type_id: id(7)?,
            characteristic_type: id(8)?,
            modifier: id(9)?,
        }),
        Rows::Members(v) => v.push(RefsetMember {
            id: f[0].to_owned(),
            effective_time: time()?,
            active: active()?,
            module: id(3)?,
            refset: id(4)?,
            component: id(5)?,
            acceptability: if kind == Kind::Language {
                Some(id(6)?)
            } else {
                None
            },
        }),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_international_and_uk_file_names() {
        let table = [
            (
                "sct2_Concept_Snapshot_INT_20240101.txt",
                Some(Kind::Concept),
            ),
            (
                "sct2_Concept_UKCLSnapshot_GB1000000_20230412.txt",
                Some(Kind::Concept),
            ),
            (
                "sct2_Description_Snapshot-en_INT_20240101.txt",
                Some(Kind::Description),
            ),
            (
                "sct2_Description_UKEDSnapshot-en_GB1000000_20230412.txt",
                Some(Kind::Description),
            ),
            (
                "sct2_Relationship_Snapshot_INT_20240101.txt",
                Some(Kind::Relationship),
            ),
            (
                "sct2_RelationshipConcreteValues_Snapshot_INT_20240101.txt",
                None,
            ),
            ("sct2_StatedRelationship_Snapshot_INT_20240101.txt", None),
            (
                "der2_cRefset_LanguageSnapshot-en_INT_20240101.txt",
                Some(Kind::Language),
            ),
            (
                "der2_cRefset_LanguageUKCLSnapshot-en_GB1000000_20230412.txt",
                Some(Kind::Language),
            ),
            (
                "der2_Refset_SimpleSnapshot_INT_20240101.txt",
                Some(Kind::Simple),
            ),
            (
                "der2_Refset_SimpleUKCRSnapshot_GB1000000_20230412.txt",
                Some(Kind::Simple),
            ),
            ("sct2_Concept_Full_INT_20240101.txt", None),
            ("sct2_Concept_Delta_INT_20240101.txt", None),
            ("der2_cRefset_AssociationSnapshot_INT_20240101.txt", None),
        ];
        for (name, want) in table {
            assert_eq!(kind_of(name), want, "{name}");
        }
    }
}
