//! Term search for typeahead: every word typed is a prefix of some word of
//! a description, in any order ("diab typ 2" finds "Type 2 diabetes
//! mellitus").
//!
//! Descriptions are numbered in rank order once, at build time: preferred
//! synonyms first, then acceptable synonyms, then fully specified names,
//! shorter before longer. Every word typed stands for an ascending list of
//! description numbers ([`crate::postings`]); a search intersects these
//! lists best first and stops once it has a pool of matches a few pages
//! deep: its cost follows the page size, not the number of matches. Within
//! the pool, a description whose first word is one typed goes first.

use std::collections::{HashMap, HashSet};

use crate::index::{Csr, Index, RawDescription, Term};
use crate::postings::{List, Lists, intersect};
use crate::set::ConceptSet;

const NONE: u32 = u32::MAX;
const ACTIVE: u8 = 1;
const IS_FSN: u8 = 2;
const PREFERRED: u8 = 4;

/// The words of a text as the index sees them: lower case, accents folded
/// (Ménière → meniere), apostrophes dropped (Crohn's → crohns), split at
/// anything that is not a letter or digit.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if c == '\'' || c == '\u{2019}' {
            continue;
        }
        if c.is_alphanumeric() {
            for l in c.to_lowercase() {
                match fold_char(l) {
                    Some(s) => cur.push_str(s),
                    None => cur.push(l),
                }
            }
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn fold_char(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => "a",
        'ç' => "c",
        'è' | 'é' | 'ê' | 'ë' => "e",
        'ì' | 'í' | 'î' | 'ï' => "i",
        'ñ' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => "o",
        'ù' | 'ú' | 'û' | 'ü' => "u",
        'ý' | 'ÿ' => "y",
        'æ' => "ae",
        'œ' => "oe",
        'ß' => "ss",
        _ => return None,
    })
}

/// The descriptions of a release, numbered in rank order, with their words.
#[derive(Debug, Default)]
pub(crate) struct TermIndex {
    ids: Vec<u64>,
    concept: Vec<u32>,
    flags: Vec<u8>,
    text: String,
    text_offsets: Vec<u32>,
    /// Each description's word numbers (distinct).
    words: Csr<u32>,
    /// Every word, sorted; a word's number is its position.
    vocabulary: Vec<Box<str>>,
    /// Each word's descriptions, ascending (best first).
    postings: Csr<u32>,
    /// Each concept's descriptions, best first.
    by_concept: Csr<u32>,
    /// Prepared lists for common prefixes and words.
    lists: Lists,
    preferred: Vec<u32>,
    fsn: Vec<u32>,
}

impl TermIndex {
    pub(crate) fn build(
        raw: Vec<RawDescription>,
        by_id: &HashMap<u64, u32>,
        acceptability: &HashMap<u64, bool>,
        concepts: usize,
    ) -> TermIndex {
        // Rank classes: 0 preferred synonym, 1 acceptable synonym, 2 FSN,
        // 3 in no language refset of the dialect, 4 inactive.
        let mut keyed: Vec<(u8, usize, String, RawDescription, u32)> = raw
            .into_iter()
            .filter_map(|d| {
                let c = *by_id.get(&d.concept)?;
                let class = match (d.active, d.fsn, acceptability.get(&d.id)) {
                    (false, _, _) => 4,
                    (true, true, _) => 2,
                    (true, false, Some(true)) => 0,
                    (true, false, Some(false)) => 1,
                    (true, false, None) => 3,
                };
                let key = d.term.to_lowercase();
                Some((class, d.term.chars().count(), key, d, c))
            })
            .collect();
        keyed.sort_unstable_by(|a, b| (a.0, a.1, &a.2, a.3.id).cmp(&(b.0, b.1, &b.2, b.3.id)));

        let n = keyed.len();
        let mut t = TermIndex {
            ids: Vec::with_capacity(n),
            concept: Vec::with_capacity(n),
            flags: Vec::with_capacity(n),
            text: String::new(),
            text_offsets: Vec::with_capacity(n + 1),
            preferred: vec![NONE; concepts],
            fsn: vec![NONE; concepts],
            ..TermIndex::default()
        };
        t.text_offsets.push(0);
        let mut vocab: HashMap<String, u32> = HashMap::new();
        let mut desc_words: Vec<(u32, u32)> = Vec::with_capacity(n * 4);
        for (rank, (class, _, _, d, c)) in keyed.into_iter().enumerate() {
            let rank = rank as u32;
            let mut flags = 0;
            if d.active {
                flags |= ACTIVE;
            }
            if d.fsn {
                flags |= IS_FSN;
            }
            if class == 0 || (class == 2 && acceptability.get(&d.id) == Some(&true)) {
                flags |= PREFERRED;
            }
            if class == 0 && t.preferred[c as usize] == NONE {
                t.preferred[c as usize] = rank;
            }
            if d.fsn && d.active && t.fsn[c as usize] == NONE {
                t.fsn[c as usize] = rank;
            }
            let mut seen: Vec<u32> = Vec::new();
            for w in words(&d.term) {
                let next = vocab.len() as u32;
                let id = *vocab.entry(w).or_insert(next);
                if !seen.contains(&id) {
                    seen.push(id);
                    desc_words.push((rank, id));
                }
            }
            t.ids.push(d.id);
            t.concept.push(c);
            t.flags.push(flags);
            t.text.push_str(&d.term);
            t.text_offsets.push(t.text.len() as u32);
        }
        // Number the words in sorted order, so that the words a prefix
        // matches are one range of numbers.
        let mut sorted: Vec<(String, u32)> = vocab.into_iter().collect();
        sorted.sort_unstable();
        let mut renumber = vec![0u32; sorted.len()];
        for (i, (_, old)) in sorted.iter().enumerate() {
            renumber[*old as usize] = i as u32;
        }
        for dw in &mut desc_words {
            dw.1 = renumber[dw.1 as usize];
        }
        t.vocabulary = sorted
            .into_iter()
            .map(|(w, _)| w.into_boxed_str())
            .collect();
        t.postings = Csr::build(
            t.vocabulary.len(),
            desc_words.iter().map(|(rank, w)| (*w, *rank)),
        );
        t.words = Csr::build(n, desc_words.iter().map(|(rank, w)| (*rank, *w)));
        t.by_concept = Csr::build(
            concepts,
            t.concept
                .iter()
                .enumerate()
                .map(|(rank, c)| (*c, rank as u32)),
        );
        t.lists = Lists::build(&t.vocabulary, &t.postings, n);
        // A concept without a preferred synonym in the dialect shows its
        // best active synonym.
        for c in 0..concepts {
            if t.preferred[c] == NONE
                && let Some(r) = t
                    .by_concept
                    .of(c as u32)
                    .iter()
                    .find(|r| t.flags[**r as usize] & (ACTIVE | IS_FSN) == ACTIVE)
            {
                t.preferred[c] = *r;
            }
        }
        t
    }

    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    fn term(&self, rank: u32) -> &str {
        let (a, b) = (
            self.text_offsets.get(rank as usize).copied().unwrap_or(0) as usize,
            self.text_offsets
                .get(rank as usize + 1)
                .copied()
                .unwrap_or(0) as usize,
        );
        self.text.get(a..b).unwrap_or("")
    }

    fn flag(&self, rank: u32, f: u8) -> bool {
        self.flags.get(rank as usize).is_some_and(|x| x & f != 0)
    }

    pub(crate) fn preferred(&self, concept: u32) -> Option<&str> {
        let r = *self.preferred.get(concept as usize)?;
        (r != NONE).then(|| self.term(r))
    }

    pub(crate) fn fsn(&self, concept: u32) -> Option<&str> {
        let r = *self.fsn.get(concept as usize)?;
        (r != NONE).then(|| self.term(r))
    }

    pub(crate) fn of_concept(&self, concept: u32) -> Vec<Term<'_>> {
        self.by_concept
            .of(concept)
            .iter()
            .map(|r| Term {
                id: self.ids.get(*r as usize).copied().unwrap_or(0),
                term: self.term(*r),
                fsn: self.flag(*r, IS_FSN),
                preferred: self.flag(*r, PREFERRED),
                active: self.flag(*r, ACTIVE),
            })
            .collect()
    }

    /// The numbers of the words starting with `prefix`.
    fn range(&self, prefix: &str) -> (u32, u32) {
        let lo = self.vocabulary.partition_point(|w| &**w < prefix);
        let len = self.vocabulary[lo..].partition_point(|w| w.starts_with(prefix));
        (lo as u32, (lo + len) as u32)
    }

    /// How many postings the words `lo..hi` have between them.
    fn postings_in(&self, (lo, hi): (u32, u32)) -> u32 {
        self.postings
            .offset(hi)
            .saturating_sub(self.postings.offset(lo))
    }
}

/// A typeahead search.
#[derive(Clone, Debug)]
pub struct TermQuery<'a> {
    /// What was typed: words in any order, each a prefix.
    pub text: &'a str,
    /// Concepts wanted (a page).
    pub limit: usize,
    /// Concepts to skip first (for paging).
    pub offset: usize,
    /// Also find inactive concepts and inactive descriptions.
    pub include_inactive: bool,
    /// Only concepts in this set (a hierarchy, a refset, an ECL result).
    pub within: Option<&'a ConceptSet>,
}

impl<'a> TermQuery<'a> {
    pub fn new(text: &'a str, limit: usize) -> Self {
        TermQuery {
            text,
            limit,
            offset: 0,
            include_inactive: false,
            within: None,
        }
    }
}

/// A concept found, by its best matching description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit<'a> {
    pub concept: u64,
    /// The description that matched.
    pub term: &'a str,
    /// The concept's preferred term (its display).
    pub preferred_term: &'a str,
    pub active: bool,
}

impl Index {
    /// Finds concepts whose descriptions contain every word typed, as a
    /// prefix of one of their words, best first (see the module doc).
    pub fn search(&self, q: &TermQuery<'_>) -> Vec<Hit<'_>> {
        let t = &self.terms;
        let tokens = words(q.text);
        let want = q.offset.saturating_add(q.limit);
        if tokens.is_empty() || want == 0 {
            return Vec::new();
        }
        let ranges: Vec<(u32, u32)> = tokens.iter().map(|w| t.range(w)).collect();
        if ranges.iter().any(|(lo, hi)| lo == hi) {
            return Vec::new();
        }
        let accept = |rank: u32| -> bool {
            let Some(&c) = t.concept.get(rank as usize) else {
                return false;
            };
            if !q.include_inactive && (!t.flag(rank, ACTIVE) || !self.active_at(c)) {
                return false;
            }
            q.within.is_none_or(|s| s.contains(c))
        };
        // Walk matching descriptions best first and keep the first `pool`;
        // then prefer those whose first word is one typed (a better match:
        // "hypertens" offers "Hypertension" before "Blind hypertensive
        // eye"), keeping the static order otherwise.
        let pool = want.saturating_mul(20).max(200);
        let mut found: Vec<u32> = Vec::new();
        let size = ranges.iter().map(|r| t.postings_in(*r)).min().unwrap_or(0);
        let scope_small = q
            .within
            .is_some_and(|s| s.len().saturating_mul(5) < size as usize);
        if let (true, Some(scope)) = (scope_small, q.within) {
            // A narrow hierarchy: try its descriptions instead.
            let mut ranks: Vec<u32> = scope
                .iter()
                .flat_map(|c| t.by_concept.of(c).iter().copied())
                .collect();
            ranks.sort_unstable();
            for r in ranks {
                let dw = t.words.of(r);
                let all = ranges
                    .iter()
                    .all(|(lo, hi)| dw.iter().any(|w| w >= lo && w < hi));
                if all && accept(r) {
                    found.push(r);
                    if found.len() >= pool {
                        break;
                    }
                }
            }
        } else {
            let lists: Vec<List<'_>> = ranges
                .iter()
                .map(|r| t.lists.list(&t.postings, *r))
                .collect();
            intersect(&lists, |r| {
                if accept(r) {
                    found.push(r);
                }
                found.len() < pool
            });
        }
        let starts = |rank: u32| -> bool {
            t.words
                .of(rank)
                .first()
                .is_some_and(|w| ranges.iter().any(|(lo, hi)| w >= lo && w < hi))
        };
        found.sort_by_key(|r| (!starts(*r), *r));
        let mut seen: HashSet<u32> = HashSet::new();
        found.retain(|r| t.concept.get(*r as usize).is_some_and(|c| seen.insert(*c)));
        found.truncate(want);
        found
            .into_iter()
            .skip(q.offset)
            .map(|rank| {
                let c = t.concept.get(rank as usize).copied().unwrap_or(0);
                let term = t.term(rank);
                Hit {
                    concept: self.id_at(c),
                    term,
                    preferred_term: t.preferred(c).unwrap_or(term),
                    active: self.active_at(c),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::words;

    #[test]
    fn words_fold_case_accents_and_apostrophes() {
        assert_eq!(words("Ménière's disease"), vec!["menieres", "disease"]);
        assert_eq!(
            words("Type 2 diabetes-mellitus"),
            vec!["type", "2", "diabetes", "mellitus"]
        );
        assert_eq!(words("  "), Vec::<String>::new());
    }
}
