//! The in-memory index of a SNOMED CT release: concepts by number, the is-a
//! graph both ways, attribute relationships, reference sets, and the term
//! index ([`crate::search`]). Built once from RF2 rows, read many times by
//! any number of threads.

use std::collections::{HashMap, VecDeque};

use crate::rf2::Rows;
use crate::search::TermIndex;
use crate::set::ConceptSet;
use crate::{FSN, GB_ENGLISH, IS_A, PREFERRED, UK_CLINICAL_ENGLISH};

/// Collects rows (from files or the store) and builds an [`Index`].
#[derive(Debug, Default)]
pub struct IndexBuilder {
    concepts: Vec<(u64, bool)>,
    descriptions: Vec<RawDescription>,
    is_a: Vec<(u64, u64)>,
    attributes: Vec<(u64, u64, u64, u32)>,
    /// (description, refset, preferred).
    acceptability: Vec<(u64, u64, bool)>,
    refsets: HashMap<u64, Vec<u64>>,
}

#[derive(Debug)]
pub(crate) struct RawDescription {
    pub id: u64,
    pub concept: u64,
    pub active: bool,
    pub fsn: bool,
    pub term: Box<str>,
}

impl IndexBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a batch; any order of batches works. Inactive relationships and
    /// refset members are dropped: nothing the index answers uses them.
    pub fn add(&mut self, rows: Rows) {
        match rows {
            Rows::Concepts(v) => self
                .concepts
                .extend(v.into_iter().map(|c| (c.id, c.active))),
            Rows::Descriptions(v) => {
                self.descriptions
                    .extend(v.into_iter().map(|d| RawDescription {
                        id: d.id,
                        concept: d.concept,
                        active: d.active,
                        fsn: d.type_id == FSN,
                        term: d.term.into_boxed_str(),
                    }))
            }
            Rows::Relationships(v) => {
                for r in v.into_iter().filter(|r| r.active) {
                    if r.type_id == IS_A {
                        self.is_a.push((r.source, r.destination));
                    } else {
                        self.attributes
                            .push((r.source, r.type_id, r.destination, r.group));
                    }
                }
            }
            Rows::Members(v) => {
                for m in v.into_iter().filter(|m| m.active) {
                    match m.acceptability {
                        Some(a) => self
                            .acceptability
                            .push((m.component, m.refset, a == PREFERRED)),
                        None => self.refsets.entry(m.refset).or_default().push(m.component),
                    }
                }
            }
        }
    }

    pub fn finish(mut self) -> Index {
        self.concepts.sort_unstable();
        self.concepts.dedup_by_key(|c| c.0);
        let ids: Vec<u64> = self.concepts.iter().map(|c| c.0).collect();
        let active: Vec<bool> = self.concepts.iter().map(|c| c.1).collect();
        let by_id: HashMap<u64, u32> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i as u32))
            .collect();
        let n = ids.len();
        let edges: Vec<(u32, u32)> = self
            .is_a
            .iter()
            .filter_map(|(s, d)| Some((*by_id.get(s)?, *by_id.get(d)?)))
            .collect();
        let parents = Csr::build(n, edges.iter().map(|(s, d)| (*s, *d)));
        let children = Csr::build(n, edges.iter().map(|(s, d)| (*d, *s)));
        let attributes = Csr::build(
            n,
            self.attributes.iter().filter_map(|(s, t, d, _)| {
                Some((
                    *by_id.get(s)?,
                    Attribute {
                        type_idx: *by_id.get(t)?,
                        destination: *by_id.get(d)?,
                    },
                ))
            }),
        );
        // The dialect whose preferences rank terms: the UK's, when the
        // release has it, otherwise whatever language refsets it has.
        let preferred_refsets: Vec<u64> = [UK_CLINICAL_ENGLISH, GB_ENGLISH]
            .into_iter()
            .filter(|r| self.acceptability.iter().any(|a| a.1 == *r))
            .collect();
        let mut acceptability: HashMap<u64, bool> = HashMap::new();
        for (desc, refset, preferred) in &self.acceptability {
            if preferred_refsets.is_empty() || preferred_refsets.contains(refset) {
                let e = acceptability.entry(*desc).or_insert(false);
                *e |= *preferred;
            }
        }
        let descriptions = std::mem::take(&mut self.descriptions);
        let terms = TermIndex::build(descriptions, &by_id, &acceptability, n);
        let mut refsets: HashMap<u64, Vec<u32>> = HashMap::new();
        for (refset, members) in self.refsets {
            let mut v: Vec<u32> = members
                .iter()
                .filter_map(|c| by_id.get(c).copied())
                .collect();
            v.sort_unstable();
            v.dedup();
            refsets.insert(refset, v);
        }
        Index {
            ids,
            active,
            by_id,
            parents,
            children,
            attributes,
            refsets,
            terms,
        }
    }
}

/// Adjacency lists packed in two arrays (compressed sparse rows).
#[derive(Debug, Default)]
pub(crate) struct Csr<T> {
    offsets: Vec<u32>,
    items: Vec<T>,
}

impl<T: Copy + Default> Csr<T> {
    pub(crate) fn build(n: usize, edges: impl Iterator<Item = (u32, T)> + Clone) -> Self {
        let mut counts = vec![0u32; n + 1];
        for (s, _) in edges.clone() {
            counts[s as usize + 1] += 1;
        }
        for i in 1..=n {
            counts[i] += counts[i - 1];
        }
        let mut fill = counts.clone();
        let mut items = vec![T::default(); counts[n] as usize];
        for (s, t) in edges {
            let at = &mut fill[s as usize];
            items[*at as usize] = t;
            *at += 1;
        }
        Csr {
            offsets: counts,
            items,
        }
    }

    /// Lists already packed: `offsets` ascending from 0, ending at
    /// `items.len()`.
    pub(crate) fn from_parts(offsets: Vec<u32>, items: Vec<T>) -> Self {
        Csr { offsets, items }
    }

    /// Where list `i` starts in the packed items (the total when `i` is
    /// past the end).
    pub(crate) fn offset(&self, i: u32) -> u32 {
        self.offsets
            .get(i as usize)
            .or(self.offsets.last())
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn of(&self, i: u32) -> &[T] {
        let (a, b) = (
            self.offsets.get(i as usize).copied().unwrap_or(0) as usize,
            self.offsets.get(i as usize + 1).copied().unwrap_or(0) as usize,
        );
        self.items.get(a..b).unwrap_or(&[])
    }
}

/// An attribute relationship (not is-a) of a concept.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Attribute {
    pub type_idx: u32,
    pub destination: u32,
}

/// How two concepts relate (`CodeSystem/$subsumes` outcomes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subsumption {
    Equivalent,
    /// A subsumes B: B is a descendant of A.
    Subsumes,
    /// A is subsumed by B.
    SubsumedBy,
    NotSubsumed,
}

impl Subsumption {
    /// The FHIR code (`concept-subsumption-outcome`).
    pub fn code(self) -> &'static str {
        match self {
            Subsumption::Equivalent => "equivalent",
            Subsumption::Subsumes => "subsumes",
            Subsumption::SubsumedBy => "subsumed-by",
            Subsumption::NotSubsumed => "not-subsumed",
        }
    }
}

/// A description of a concept, for `$lookup`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term<'a> {
    pub id: u64,
    pub term: &'a str,
    pub fsn: bool,
    pub preferred: bool,
    pub active: bool,
}

/// What the index knows about one concept.
#[derive(Clone, Debug)]
pub struct ConceptInfo<'a> {
    pub id: u64,
    pub active: bool,
    pub fsn: Option<&'a str>,
    /// The preferred synonym, the display FHIR wants.
    pub preferred_term: Option<&'a str>,
    pub descriptions: Vec<Term<'a>>,
    pub parents: Vec<u64>,
    pub children: Vec<u64>,
}

/// A SNOMED CT release in memory. Immutable once built; share it.
#[derive(Debug)]
pub struct Index {
    /// Concept ids by number, ascending; a number is the position here.
    ids: Vec<u64>,
    active: Vec<bool>,
    by_id: HashMap<u64, u32>,
    parents: Csr<u32>,
    children: Csr<u32>,
    attributes: Csr<Attribute>,
    /// Active members of simple refsets, by refset id.
    refsets: HashMap<u64, Vec<u32>>,
    pub(crate) terms: TermIndex,
}

impl Index {
    pub fn concept_count(&self) -> usize {
        self.ids.len()
    }

    pub fn description_count(&self) -> usize {
        self.terms.len()
    }

    pub(crate) fn number(&self, id: u64) -> Option<u32> {
        self.by_id.get(&id).copied()
    }

    pub(crate) fn id_at(&self, n: u32) -> u64 {
        self.ids.get(n as usize).copied().unwrap_or(0)
    }

    pub(crate) fn active_at(&self, n: u32) -> bool {
        self.active.get(n as usize).copied().unwrap_or(false)
    }

    pub(crate) fn attributes_of(&self, n: u32) -> &[Attribute] {
        self.attributes.of(n)
    }

    pub fn contains(&self, id: u64) -> bool {
        self.by_id.contains_key(&id)
    }

    pub fn is_active(&self, id: u64) -> Option<bool> {
        self.number(id).map(|n| self.active_at(n))
    }

    /// The concept's terms and neighbours, if the release has it.
    pub fn concept(&self, id: u64) -> Option<ConceptInfo<'_>> {
        let n = self.number(id)?;
        Some(ConceptInfo {
            id,
            active: self.active_at(n),
            fsn: self.terms.fsn(n),
            preferred_term: self.terms.preferred(n),
            descriptions: self.terms.of_concept(n),
            parents: self.parents.of(n).iter().map(|p| self.id_at(*p)).collect(),
            children: self.children.of(n).iter().map(|c| self.id_at(*c)).collect(),
        })
    }

    /// The display for a concept: its preferred term, else its FSN.
    pub fn display(&self, id: u64) -> Option<&str> {
        let n = self.number(id)?;
        self.terms.preferred(n).or_else(|| self.terms.fsn(n))
    }

    /// The empty set, for building sets over this index.
    pub fn empty_set(&self) -> ConceptSet {
        ConceptSet::empty(self.ids.len())
    }

    /// Every concept of the release.
    pub fn all(&self) -> ConceptSet {
        ConceptSet::full(self.ids.len())
    }

    /// Whether a set holds the concept `id`.
    pub fn set_contains(&self, set: &ConceptSet, id: u64) -> bool {
        self.number(id).is_some_and(|n| set.contains(n))
    }

    /// The concept ids of a set, ascending.
    pub fn ids_of<'a>(&'a self, set: &'a ConceptSet) -> impl Iterator<Item = u64> + 'a {
        set.iter().map(|n| self.id_at(n))
    }

    /// A set of the given concepts (unknown ids left out).
    pub fn set_of(&self, ids: impl IntoIterator<Item = u64>) -> ConceptSet {
        let mut s = self.empty_set();
        for id in ids {
            if let Some(n) = self.number(id) {
                s.insert(n);
            }
        }
        s
    }

    /// Walks is-a edges from `start` (excluded) in one direction.
    fn closure(&self, start: &ConceptSet, up: bool, include_self: bool) -> ConceptSet {
        let graph = if up { &self.parents } else { &self.children };
        let mut out = if include_self {
            start.clone()
        } else {
            self.empty_set()
        };
        let mut seen = start.clone();
        let mut queue: VecDeque<u32> = start.iter().collect();
        while let Some(n) = queue.pop_front() {
            for next in graph.of(n) {
                out.insert(*next);
                if seen.insert(*next) {
                    queue.push_back(*next);
                }
            }
        }
        out
    }

    pub(crate) fn descendants_of_set(&self, s: &ConceptSet, include_self: bool) -> ConceptSet {
        self.closure(s, false, include_self)
    }

    pub(crate) fn ancestors_of_set(&self, s: &ConceptSet, include_self: bool) -> ConceptSet {
        self.closure(s, true, include_self)
    }

    pub(crate) fn children_of_set(&self, s: &ConceptSet, up: bool) -> ConceptSet {
        let graph = if up { &self.parents } else { &self.children };
        let mut out = self.empty_set();
        for n in s.iter() {
            for m in graph.of(n) {
                out.insert(*m);
            }
        }
        out
    }

    /// `<< id`: the concept and everything below it (empty if unknown). The
    /// search engine's `:below` and `isa/` value sets call this.
    pub fn descendants_or_self(&self, id: u64) -> ConceptSet {
        self.descendants_of_set(&self.set_of([id]), true)
    }

    /// `>> id`: the concept and everything above it.
    pub fn ancestors_or_self(&self, id: u64) -> ConceptSet {
        self.ancestors_of_set(&self.set_of([id]), true)
    }

    /// The active members of a simple refset (empty if there is none).
    pub fn refset(&self, refset: u64) -> ConceptSet {
        let mut s = self.empty_set();
        for n in self.refsets.get(&refset).into_iter().flatten() {
            s.insert(*n);
        }
        s
    }

    /// Whether the release has a simple refset with this id.
    pub fn has_refset(&self, refset: u64) -> bool {
        self.refsets.contains_key(&refset)
    }

    /// The refsets with members.
    pub fn refset_ids(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.refsets.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Whether `a` is `b` or one of its descendants, by active is-a
    /// relationships (transitively). `None` if either is unknown.
    pub fn is_a(&self, a: u64, b: u64) -> Option<bool> {
        let (na, nb) = (self.number(a)?, self.number(b)?);
        if na == nb {
            return Some(true);
        }
        // Walk up from `a`: ancestors are few compared with descendants.
        let mut seen = self.empty_set();
        let mut queue = VecDeque::from([na]);
        while let Some(n) = queue.pop_front() {
            for p in self.parents.of(n) {
                if *p == nb {
                    return Some(true);
                }
                if seen.insert(*p) {
                    queue.push_back(*p);
                }
            }
        }
        Some(false)
    }

    /// `CodeSystem/$subsumes`: how `a` relates to `b`. `None` if either is
    /// unknown.
    pub fn subsumes(&self, a: u64, b: u64) -> Option<Subsumption> {
        if a == b {
            return self.contains(a).then_some(Subsumption::Equivalent);
        }
        Some(if self.is_a(b, a)? {
            Subsumption::Subsumes
        } else if self.is_a(a, b)? {
            Subsumption::SubsumedBy
        } else {
            Subsumption::NotSubsumed
        })
    }
}
