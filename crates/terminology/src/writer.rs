//! Writing RF2 snapshot files, named as a release names them, for the
//! synthetic generator and the shipped subset.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::TermError;
use crate::rf2::{Concept, Description, RefsetMember, Relationship};

/// Writers for the five snapshot files of a release.
pub struct Rf2Writer {
    concept: Out,
    description: Out,
    relationship: Out,
    language: Out,
    simple: Out,
    members: u64,
}

struct Out {
    name: String,
    w: BufWriter<File>,
}

impl Out {
    fn create(dir: &Path, name: String, header: &str) -> Result<Out, TermError> {
        let path = dir.join(&name);
        let f = File::create(&path).map_err(|e| TermError::Io(path.display().to_string(), e))?;
        let mut out = Out {
            name: path.display().to_string(),
            w: BufWriter::with_capacity(1 << 20, f),
        };
        out.line(format_args!("{header}"))?;
        Ok(out)
    }

    fn line(&mut self, args: std::fmt::Arguments<'_>) -> Result<(), TermError> {
        // RF2 lines end with CR LF.
        self.w
            .write_fmt(args)
            .and_then(|()| self.w.write_all(b"\r\n"))
            .map_err(|e| TermError::Io(self.name.clone(), e))
    }
}

fn b(x: bool) -> u8 {
    u8::from(x)
}

impl Rf2Writer {
    /// Creates the files in `dir` (which must exist), named for `edition`
    /// (`INT`, or a namespace tag) and the release date `YYYYMMDD`.
    pub fn create(dir: &Path, edition: &str, date: u32) -> Result<Rf2Writer, TermError> {
        Ok(Rf2Writer {
            concept: Out::create(
                dir,
                format!("sct2_Concept_Snapshot_{edition}_{date}.txt"),
                "id\teffectiveTime\tactive\tmoduleId\tdefinitionStatusId",
            )?,
            description: Out::create(
                dir,
                format!("sct2_Description_Snapshot-en_{edition}_{date}.txt"),
                "id\teffectiveTime\tactive\tmoduleId\tconceptId\tlanguageCode\ttypeId\tterm\tcaseSignificanceId",
            )?,
            relationship: Out::create(
                dir,
                format!("sct2_Relationship_Snapshot_{edition}_{date}.txt"),
                "id\teffectiveTime\tactive\tmoduleId\tsourceId\tdestinationId\trelationshipGroup\ttypeId\tcharacteristicTypeId\tmodifierId",
            )?,
            language: Out::create(
                dir,
                format!("der2_cRefset_LanguageSnapshot-en_{edition}_{date}.txt"),
                "id\teffectiveTime\tactive\tmoduleId\trefsetId\treferencedComponentId\tacceptabilityId",
            )?,
            simple: Out::create(
                dir,
                format!("der2_Refset_SimpleSnapshot_{edition}_{date}.txt"),
                "id\teffectiveTime\tactive\tmoduleId\trefsetId\treferencedComponentId",
            )?,
            members: 0,
        })
    }

    pub fn concept(&mut self, c: &Concept) -> Result<(), TermError> {
        self.concept.line(format_args!(
            "{}\t{}\t{}\t{}\t{}",
            c.id,
            c.effective_time,
            b(c.active),
            c.module,
            c.definition_status
        ))
    }

    /// Writes a description; tabs and line breaks in the term are not
    /// allowed by RF2 and are written as spaces.
    pub fn description(&mut self, d: &Description) -> Result<(), TermError> {
        let term = d.term.replace(['\t', '\r', '\n'], " ");
        self.description.line(format_args!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            d.id,
            d.effective_time,
            b(d.active),
            d.module,
            d.concept,
            d.language,
            d.type_id,
            term,
            d.case_significance
        ))
    }

    pub fn relationship(&mut self, r: &Relationship) -> Result<(), TermError> {
        self.relationship.line(format_args!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.id,
            r.effective_time,
            b(r.active),
            r.module,
            r.source,
            r.destination,
            r.group,
            r.type_id,
            r.characteristic_type,
            r.modifier
        ))
    }

    /// Writes a refset member: to the language file when it has an
    /// acceptability, to the simple refset file otherwise.
    pub fn member(&mut self, m: &RefsetMember) -> Result<(), TermError> {
        match m.acceptability {
            Some(a) => self.language.line(format_args!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                m.id,
                m.effective_time,
                b(m.active),
                m.module,
                m.refset,
                m.component,
                a
            )),
            None => self.simple.line(format_args!(
                "{}\t{}\t{}\t{}\t{}\t{}",
                m.id,
                m.effective_time,
                b(m.active),
                m.module,
                m.refset,
                m.component
            )),
        }
    }

    /// A deterministic UUID for the next member (refset member ids are
    /// UUIDs; these are version-4 shaped and unique within the release).
    pub fn next_member_id(&mut self, salt: u64) -> String {
        self.members += 1;
        let x = self.members;
        let h = x.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (h >> 32) as u32,
            (h >> 16) & 0xffff,
            h & 0xfff,
            (x >> 48) & 0xfff,
            x & 0xffff_ffff_ffff
        )
    }

    /// Flushes every file.
    pub fn finish(mut self) -> Result<(), TermError> {
        for out in [
            &mut self.concept,
            &mut self.description,
            &mut self.relationship,
            &mut self.language,
            &mut self.simple,
        ] {
            out.w
                .flush()
                .map_err(|e| TermError::Io(out.name.clone(), e))?;
        }
        Ok(())
    }
}
