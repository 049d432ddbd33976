//! A synthetic SNOMED CT release: deterministic from a seed, any size, with
//! the shape of a real one (a rooted is-a graph of depth about ten with some
//! concepts under two parents, attribute relationships between hierarchies,
//! a fully specified name, a preferred term and synonyms per concept in a
//! GB English language refset, a few simple refsets, inactive concepts and
//! inactive relationships). The UK clinical edition is about 370,000
//! concepts, 1.6 million descriptions and 3 million relationships;
//! [`UK_CONCEPTS`] makes one of that size.
//!
//! Identifiers are minted in namespace [`NAMESPACE`] with valid check
//! digits; only the metadata concepts (root, top-level hierarchies,
//! attributes, description types) have their real ids.

use std::path::Path;

use crate::id::{Partition, SctId};
use crate::rf2::{Concept, Description, RefsetMember, Relationship};
use crate::writer::Rf2Writer;
use crate::{
    ACCEPTABLE, CORE_MODULE, EXISTENTIAL, FSN, GB_ENGLISH, INFERRED, INITIAL_CASE_INSENSITIVE,
    IS_A, PREFERRED, PRIMITIVE, ROOT, SYNONYM, TermError,
};

/// Concepts in a release the size of the UK clinical edition.
pub const UK_CONCEPTS: usize = 370_000;
/// The namespace synthetic identifiers are minted in.
pub const NAMESPACE: u32 = 9_999_999;
const DATE: u32 = 20_250_101;

/// The hierarchies generated concepts go under: (top-level id, FSN,
/// semantic tag, share of concepts in percent).
const HIERARCHIES: &[(u64, &str, &str, u32)] = &[
    (404684003, "Clinical finding", "finding", 30),
    (71388002, "Procedure", "procedure", 18),
    (123037004, "Body structure", "body structure", 10),
    (105590001, "Substance", "substance", 8),
    (
        373873005,
        "Pharmaceutical / biologic product",
        "product",
        12,
    ),
    (410607006, "Organism", "organism", 6),
    (363787002, "Observable entity", "observable entity", 4),
    (362981000, "Qualifier value", "qualifier value", 4),
    (243796009, "Situation with explicit context", "situation", 2),
    (272379006, "Event", "event", 2),
    (48176007, "Social context", "social concept", 2),
    (49062001, "Device", "physical object", 2),
];

/// Attribute types (real ids) and the hierarchy (by index above) their
/// values come from, for concepts of the hierarchy they apply to.
const ATTRIBUTES: &[(u64, &str, usize, usize)] = &[
    (363698007, "Finding site", 0, 2),
    (116676008, "Associated morphology", 0, 7),
    (246075003, "Causative agent", 0, 5),
    (405813007, "Procedure site - Direct", 1, 2),
    (260686004, "Method", 1, 7),
    (424226004, "Using device", 1, 11),
    (127489000, "Has active ingredient", 4, 3),
    (704321009, "Characterizes", 6, 7),
];

const MODEL_ATTRIBUTE: u64 = 410662002;
const MODEL_COMPONENT: u64 = 900000000000441003;

/// Sizes of a generated release.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub concepts: u64,
    pub descriptions: u64,
    pub relationships: u64,
    pub members: u64,
}

/// The simple refsets a synthetic release has (ids minted; see [`NAMESPACE`]).
pub fn refset_ids() -> [u64; 3] {
    [1, 2, 3].map(|i| SctId::mint(900_000 + i, Some(NAMESPACE), Partition::Concept).get())
}

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// A skewed pick in 0..n: small numbers far more often (word frequency).
    fn skewed(&mut self, n: usize) -> usize {
        let u = (self.next() % 1_000_000) as f64 / 1_000_000.0;
        ((u * u * u) * n as f64) as usize % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const SYLLABLES: &[&str] = &[
    "car", "di", "o", "neph", "ro", "gas", "tro", "en", "ter", "hep", "at", "derm", "my", "el",
    "os", "te", "ar", "thr", "pul", "mon", "cer", "eb", "ral", "ven", "tric", "ul", "lym", "ph",
    "aden", "cyst", "chol", "ang", "io", "pan", "cre", "thy", "oid", "spl", "ren", "vas", "cul",
    "fib", "leu", "kae", "mia", "scler", "pso", "ri", "sis", "itis", "osis", "oma", "algia",
    "pathy", "ectomy", "otomy", "plasty", "scopy", "gram", "ic",
];

const COMMON: &[&str] = &[
    "of",
    "left",
    "right",
    "acute",
    "chronic",
    "disorder",
    "structure",
    "with",
    "without",
    "and",
    "due",
    "to",
    "type",
    "1",
    "2",
    "primary",
    "secondary",
    "congenital",
    "bilateral",
    "lesion",
    "injury",
    "fracture",
    "infection",
    "syndrome",
    "disease",
    "finding",
    "measurement",
    "level",
    "blood",
    "serum",
    "upper",
    "lower",
    "anterior",
    "posterior",
    "recurrent",
    "severe",
    "mild",
    "history",
    "family",
    "screening",
    "examination",
    "procedure",
    "repair",
    "excision",
];

/// Writes a release of about `concepts` concepts to `dir` (created if
/// needed), deterministically from `seed`.
pub fn generate(dir: &Path, concepts: usize, seed: u64) -> Result<Summary, TermError> {
    std::fs::create_dir_all(dir).map_err(|e| TermError::Io(dir.display().to_string(), e))?;
    let mut w = Rf2Writer::create(dir, "INT", DATE)?;
    let mut rng = Rng(seed ^ 0x5eed);
    let mut sum = Summary::default();
    let vocabulary: Vec<String> = (0..20_000)
        .map(|_| {
            let n = 2 + rng.below(3);
            (0..n)
                .map(|_| SYLLABLES[rng.below(SYLLABLES.len())])
                .collect()
        })
        .collect();
    let mut item = 0u64;
    let mut mint = |p: Partition| {
        item += 1;
        SctId::mint(item, Some(NAMESPACE), p).get()
    };
    let concept = |w: &mut Rf2Writer, sum: &mut Summary, id: u64, active: bool| {
        sum.concepts += 1;
        w.concept(&Concept {
            id,
            effective_time: DATE,
            active,
            module: CORE_MODULE,
            definition_status: PRIMITIVE,
        })
    };
    let names = |w: &mut Rf2Writer,
                 sum: &mut Summary,
                 mint: &mut dyn FnMut(Partition) -> u64,
                 id: u64,
                 terms: &[String],
                 tag: &str|
     -> Result<(), TermError> {
        for (i, term) in terms.iter().enumerate() {
            let (type_id, text, acceptability) = match i {
                0 => (FSN, format!("{term} ({tag})"), PREFERRED),
                1 => (SYNONYM, term.clone(), PREFERRED),
                _ => (SYNONYM, term.clone(), ACCEPTABLE),
            };
            let did = mint(Partition::Description);
            sum.descriptions += 1;
            w.description(&Description {
                id: did,
                effective_time: DATE,
                active: true,
                module: CORE_MODULE,
                concept: id,
                language: "en".into(),
                type_id,
                term: text,
                case_significance: INITIAL_CASE_INSENSITIVE,
            })?;
            let mid = w.next_member_id(seed);
            sum.members += 1;
            w.member(&RefsetMember {
                id: mid,
                effective_time: DATE,
                active: true,
                module: CORE_MODULE,
                refset: GB_ENGLISH,
                component: did,
                acceptability: Some(acceptability),
            })?;
        }
        Ok(())
    };
    let relate = |w: &mut Rf2Writer,
                  sum: &mut Summary,
                  mint: &mut dyn FnMut(Partition) -> u64,
                  (source, type_id, destination, group, active): (u64, u64, u64, u32, bool)|
     -> Result<(), TermError> {
        sum.relationships += 1;
        w.relationship(&Relationship {
            id: mint(Partition::Relationship),
            effective_time: DATE,
            active,
            module: CORE_MODULE,
            source,
            destination,
            group,
            type_id,
            characteristic_type: INFERRED,
            modifier: EXISTENTIAL,
        })
    };

    // The metadata: root, top levels, attributes and refsets, real ids.
    concept(&mut w, &mut sum, ROOT, true)?;
    names(
        &mut w,
        &mut sum,
        &mut mint,
        ROOT,
        &["SNOMED CT Concept".into(), "SNOMED CT Concept".into()],
        "SNOMED RT+CTV3",
    )?;
    for (id, name, tag) in [
        (MODEL_COMPONENT, "SNOMED CT Model Component", "metadata"),
        (MODEL_ATTRIBUTE, "Concept model attribute", "attribute"),
        (IS_A, "Is a", "attribute"),
    ] {
        concept(&mut w, &mut sum, id, true)?;
        names(
            &mut w,
            &mut sum,
            &mut mint,
            id,
            &[name.into(), name.into()],
            tag,
        )?;
    }
    relate(
        &mut w,
        &mut sum,
        &mut mint,
        (MODEL_COMPONENT, IS_A, ROOT, 0, true),
    )?;
    relate(
        &mut w,
        &mut sum,
        &mut mint,
        (MODEL_ATTRIBUTE, IS_A, MODEL_COMPONENT, 0, true),
    )?;
    relate(
        &mut w,
        &mut sum,
        &mut mint,
        (IS_A, IS_A, MODEL_ATTRIBUTE, 0, true),
    )?;
    for (id, name, _, _) in ATTRIBUTES {
        concept(&mut w, &mut sum, *id, true)?;
        names(
            &mut w,
            &mut sum,
            &mut mint,
            *id,
            &[(*name).into(), (*name).into()],
            "attribute",
        )?;
        relate(
            &mut w,
            &mut sum,
            &mut mint,
            (*id, IS_A, MODEL_ATTRIBUTE, 0, true),
        )?;
    }
    let refsets = refset_ids();
    for (i, id) in refsets.iter().enumerate() {
        let name = format!("Synthetic simple reference set {}", i + 1);
        concept(&mut w, &mut sum, *id, true)?;
        names(
            &mut w,
            &mut sum,
            &mut mint,
            *id,
            &[name.clone(), name],
            "foundation metadata concept",
        )?;
        relate(
            &mut w,
            &mut sum,
            &mut mint,
            (*id, IS_A, MODEL_COMPONENT, 0, true),
        )?;
    }
    let mut members: Vec<Vec<u64>> = HIERARCHIES.iter().map(|h| vec![h.0]).collect();
    for (id, name, tag, _) in HIERARCHIES {
        concept(&mut w, &mut sum, *id, true)?;
        names(
            &mut w,
            &mut sum,
            &mut mint,
            *id,
            &[(*name).into(), (*name).into()],
            tag,
        )?;
        relate(&mut w, &mut sum, &mut mint, (*id, IS_A, ROOT, 0, true))?;
    }
    let weights: u32 = HIERARCHIES.iter().map(|h| h.3).sum();
    let fixed = sum.concepts as usize;
    for _ in fixed..concepts.max(fixed) {
        let mut pick = (rng.next() % u64::from(weights)) as u32;
        let h = HIERARCHIES
            .iter()
            .position(|x| {
                if pick < x.3 {
                    true
                } else {
                    pick -= x.3;
                    false
                }
            })
            .unwrap_or(0);
        let id = mint(Partition::Concept);
        let active = !rng.chance(3);
        concept(&mut w, &mut sum, id, active)?;
        // Terms: a base of two to five words, and variants of it.
        let len = 2 + rng.below(4);
        let base: Vec<String> = (0..len)
            .map(|_| {
                if rng.chance(35) {
                    COMMON[rng.skewed(COMMON.len())].to_owned()
                } else {
                    vocabulary[rng.skewed(vocabulary.len())].clone()
                }
            })
            .collect();
        let mut first = base.join(" ");
        if let Some(c) = first.get(..1) {
            first = c.to_uppercase() + first.get(1..).unwrap_or("");
        }
        let mut terms = vec![first.clone(), first];
        for _ in 0..(rng.below(5) + usize::from(rng.chance(30))) {
            let mut v = base.clone();
            v.rotate_left(1 + rng.below(len));
            if rng.chance(50) {
                v.push(vocabulary[rng.skewed(vocabulary.len())].clone());
            }
            terms.push(v.join(" "));
        }
        names(&mut w, &mut sum, &mut mint, id, &terms, HIERARCHIES[h].2)?;
        // Parents: earlier concepts of the same hierarchy.
        let pool = &members[h];
        let parents = if rng.chance(30) { 2 } else { 1 };
        let mut chosen = Vec::with_capacity(2);
        for _ in 0..parents {
            let p = pool[rng.below(pool.len())];
            if !chosen.contains(&p) {
                chosen.push(p);
                relate(&mut w, &mut sum, &mut mint, (id, IS_A, p, 0, active))?;
            }
        }
        if rng.chance(8) {
            // A retired is-a, as real snapshots keep them.
            let p = pool[rng.below(pool.len())];
            relate(&mut w, &mut sum, &mut mint, (id, IS_A, p, 0, false))?;
        }
        // Attributes, grouped in twos.
        let applicable: Vec<&(u64, &str, usize, usize)> =
            ATTRIBUTES.iter().filter(|a| a.2 == h).collect();
        if !applicable.is_empty() {
            for k in 0..(5 + rng.below(12)) {
                let a = applicable[rng.below(applicable.len())];
                let values = &members[a.3];
                let v = values[rng.below(values.len())];
                relate(
                    &mut w,
                    &mut sum,
                    &mut mint,
                    (id, a.0, v, (k / 2) as u32 + 1, active),
                )?;
            }
        }
        for (i, r) in refsets.iter().enumerate() {
            if active && rng.chance([3, 1, 1][i]) {
                let mid = w.next_member_id(seed);
                sum.members += 1;
                w.member(&RefsetMember {
                    id: mid,
                    effective_time: DATE,
                    active: true,
                    module: CORE_MODULE,
                    refset: *r,
                    component: id,
                    acceptability: None,
                })?;
            }
        }
        if active {
            members[h].push(id);
        }
    }
    w.finish()?;
    Ok(sum)
}
