//! The lists of descriptions a typed word stands for, and their
//! intersection, for typeahead ([`crate::search`]).
//!
//! A word typed is a prefix of a range of vocabulary words. Its list is the
//! posting list of that word when there is one; for a prefix of several
//! words with many postings between them ("di", "hyp") a merged list made
//! at build time, so that no query merges or sorts large lists. A list
//! holding at least one description in [`DENSE_SHARE`] is also (or, for a
//! merged one, only) kept as a bitset over the descriptions, which costs no
//! more memory than the numbers would: intersecting common words ("of",
//! "ch sc ot") is then word-wise `AND` or one bit test per candidate,
//! instead of a walk through long lists whose cache misses made the slow
//! tail.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::index::Csr;

/// A prefix of several words gets a merged list at build time when its
/// words have at least this many postings between them; below it, a query
/// gathers and sorts the few postings itself.
const MERGE_AT: u32 = 2048;
/// A list is kept as a bitset when it holds at least one description in
/// this many (a bitset then takes no more room than the numbers).
const DENSE_SHARE: usize = 32;

/// A list of descriptions, ascending.
#[derive(Clone, Debug)]
pub(crate) enum List<'a> {
    Sparse(Cow<'a, [u32]>),
    /// A bitset over description numbers, and how many bits are set.
    Dense(&'a [u64], usize),
}

impl List<'_> {
    fn len(&self) -> usize {
        match self {
            List::Sparse(v) => v.len(),
            List::Dense(_, n) => *n,
        }
    }
}

/// Where a prefix's prepared list is.
#[derive(Clone, Copy, Debug)]
enum Slot {
    Sparse(u32),
    Dense(u32, u32),
}

/// The lists prepared at build time.
#[derive(Debug, Default)]
pub(crate) struct Lists {
    /// Merged sparse lists, by slot.
    merged: Csr<u32>,
    /// Bitsets, each `words` long, back to back.
    dense: Vec<u64>,
    words: usize,
    /// Prepared lists of prefixes, by their range of word numbers (a range
    /// of one word: that word's bitset, when it has one).
    by_range: HashMap<(u32, u32), Slot>,
}

impl Lists {
    /// Prepares the lists for a vocabulary (sorted) and its postings over
    /// `descriptions` descriptions. Prefixes are taken over bytes, as a trie
    /// walked depth first: a prefix can only need a list if its parent does.
    pub(crate) fn build(
        vocabulary: &[Box<str>],
        postings: &Csr<u32>,
        descriptions: usize,
    ) -> Lists {
        let words = descriptions.div_ceil(64);
        let dense_at = descriptions.div_ceil(DENSE_SHARE).max(1);
        let total = |lo: u32, hi: u32| postings.offset(hi).saturating_sub(postings.offset(lo));
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        let mut stack: Vec<(usize, u32, u32)> = vec![(0, 0, vocabulary.len() as u32)];
        while let Some((depth, lo, hi)) = stack.pop() {
            // Children: the words longer than `depth`, grouped by their
            // next byte (contiguous, as the vocabulary is sorted).
            let next = |i: u32| {
                vocabulary
                    .get(i as usize)
                    .and_then(|w| w.as_bytes().get(depth))
            };
            let mut i = lo;
            while i < hi {
                let Some(b) = next(i) else {
                    i += 1;
                    continue;
                };
                let mut j = i + 1;
                while j < hi && next(j) == Some(b) {
                    j += 1;
                }
                if j - i >= 2 && total(i, j) >= MERGE_AT {
                    ranges.push((i, j));
                    stack.push((depth + 1, i, j));
                }
                i = j;
            }
        }
        ranges.sort_unstable();
        ranges.dedup();
        let mut out = Lists {
            words,
            ..Lists::default()
        };
        let mut offsets = vec![0u32];
        let mut items: Vec<u32> = Vec::new();
        let mut scratch: Vec<u32> = Vec::new();
        for (lo, hi) in ranges {
            scratch.clear();
            for w in lo..hi {
                scratch.extend_from_slice(postings.of(w));
            }
            scratch.sort_unstable();
            scratch.dedup();
            let slot = if scratch.len() >= dense_at {
                out.push_dense(&scratch)
            } else {
                items.extend_from_slice(&scratch);
                offsets.push(items.len() as u32);
                Slot::Sparse(offsets.len() as u32 - 2)
            };
            out.by_range.insert((lo, hi), slot);
        }
        for w in 0..vocabulary.len() as u32 {
            let list = postings.of(w);
            if list.len() >= dense_at {
                let slot = out.push_dense(list);
                out.by_range.insert((w, w + 1), slot);
            }
        }
        out.merged = Csr::from_parts(offsets, items);
        out
    }

    fn push_dense(&mut self, ascending: &[u32]) -> Slot {
        let at = self.dense.len();
        self.dense.resize(at + self.words, 0);
        if let Some(bits) = self.dense.get_mut(at..) {
            for d in ascending {
                if let Some(word) = bits.get_mut(*d as usize / 64) {
                    *word |= 1 << (d % 64);
                }
            }
        }
        Slot::Dense((at / self.words.max(1)) as u32, ascending.len() as u32)
    }

    /// The descriptions with a word in `lo..hi`, ascending.
    pub(crate) fn list<'a>(&'a self, postings: &'a Csr<u32>, (lo, hi): (u32, u32)) -> List<'a> {
        match self.by_range.get(&(lo, hi)) {
            Some(Slot::Sparse(n)) => List::Sparse(Cow::Borrowed(self.merged.of(*n))),
            Some(Slot::Dense(n, count)) => {
                let at = *n as usize * self.words;
                List::Dense(
                    self.dense.get(at..at + self.words).unwrap_or(&[]),
                    *count as usize,
                )
            }
            None if hi - lo == 1 => List::Sparse(Cow::Borrowed(postings.of(lo))),
            None => {
                let mut v: Vec<u32> = (lo..hi)
                    .flat_map(|w| postings.of(w).iter().copied())
                    .collect();
                v.sort_unstable();
                v.dedup();
                List::Sparse(Cow::Owned(v))
            }
        }
    }
}

/// The first position at or after `from` whose value is at least `target`
/// (galloping, then binary search), or the length if there is none.
fn seek(list: &[u32], from: usize, target: u32) -> usize {
    match list.get(from) {
        None => return list.len(),
        Some(x) if *x >= target => return from,
        Some(_) => {}
    }
    // list[lo] < target throughout; the answer is in lo + 1 ..= hi.
    let (mut lo, mut step) = (from, 1);
    let mut hi = from + 1;
    while list.get(hi).is_some_and(|x| *x < target) {
        lo = hi;
        step *= 2;
        hi = from + step;
    }
    let hi = hi.min(list.len());
    lo + 1
        + list
            .get(lo + 1..hi)
            .map_or(0, |s| s.partition_point(|x| *x < target))
}

fn bit(bits: &[u64], d: u32) -> bool {
    bits.get(d as usize / 64)
        .is_some_and(|w| w & (1 << (d % 64)) != 0)
}

/// Calls `f` with every description in all of `lists`, in ascending order,
/// until it returns `false`. The shortest sparse list drives, the other
/// sparse ones are leapfrogged with galloping seeks, and bitsets are tested
/// per candidate; when every list is a bitset, they are `AND`ed a word at a
/// time.
pub(crate) fn intersect(lists: &[List<'_>], mut f: impl FnMut(u32) -> bool) {
    let mut sparse: Vec<&[u32]> = Vec::new();
    let mut dense: Vec<&[u64]> = Vec::new();
    let mut by_len: Vec<&List<'_>> = lists.iter().collect();
    by_len.sort_by_key(|l| l.len());
    for l in by_len {
        match l {
            List::Sparse(v) => sparse.push(v),
            List::Dense(b, _) => dense.push(b),
        }
    }
    let Some((first, rest)) = sparse.split_first() else {
        let Some((first, rest)) = dense.split_first() else {
            return;
        };
        for (i, w) in first.iter().enumerate() {
            let mut w = *w;
            for other in rest {
                w &= other.get(i).copied().unwrap_or(0);
            }
            while w != 0 {
                let d = i as u32 * 64 + w.trailing_zeros();
                if !f(d) {
                    return;
                }
                w &= w - 1;
            }
        }
        return;
    };
    let mut at = vec![0usize; rest.len()];
    let mut i = 0;
    'walk: while let Some(&candidate) = first.get(i) {
        let mut c = candidate;
        for (k, list) in rest.iter().enumerate() {
            let Some(pos) = at.get_mut(k) else {
                return;
            };
            *pos = seek(list, *pos, c);
            match list.get(*pos) {
                None => break 'walk,
                Some(&x) if x > c => c = x,
                Some(_) => {}
            }
        }
        if c == candidate {
            if dense.iter().all(|b| bit(b, c)) && !f(c) {
                return;
            }
            i += 1;
        } else {
            i = seek(first, i, c);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::{List, intersect, seek};

    #[test]
    fn seek_finds_the_first_value_not_below_the_target() {
        let list = [1, 3, 5, 7, 9, 11, 13, 15, 17];
        for from in 0..=list.len() {
            for target in 0..20 {
                let expected = (from..list.len())
                    .find(|i| list[*i] >= target)
                    .unwrap_or(list.len());
                assert_eq!(
                    seek(&list, from, target),
                    expected,
                    "from {from}, target {target}"
                );
            }
        }
        assert_eq!(seek(&[], 0, 4), 0);
    }

    fn bits(v: &[u32]) -> Vec<u64> {
        let mut b = vec![0u64; 1000usize.div_ceil(64)];
        for d in v {
            b[*d as usize / 64] |= 1 << (d % 64);
        }
        b
    }

    fn run(lists: &[List<'_>], stop_after: usize) -> Vec<u32> {
        let mut got = Vec::new();
        intersect(lists, |x| {
            got.push(x);
            got.len() < stop_after
        });
        got
    }

    #[test]
    fn intersect_yields_common_values_ascending_in_every_representation() {
        let a: Vec<u32> = (0..1000).filter(|x| x % 3 == 0).collect();
        let b: Vec<u32> = (0..1000).filter(|x| x % 5 == 0).collect();
        let c: Vec<u32> = vec![0, 15, 16, 30, 31, 600, 999];
        let (ab, bb, cb) = (bits(&a), bits(&b), bits(&c));
        let sparse = |v: &[u32]| List::Sparse(Cow::Owned(v.to_vec()));
        let cases: Vec<Vec<List<'_>>> = vec![
            vec![sparse(&c), sparse(&a), sparse(&b)],
            vec![sparse(&a), sparse(&b), sparse(&c)],
            vec![List::Dense(&ab, a.len()), sparse(&c), sparse(&b)],
            vec![
                List::Dense(&ab, a.len()),
                List::Dense(&bb, b.len()),
                sparse(&c),
            ],
            vec![
                List::Dense(&ab, a.len()),
                List::Dense(&bb, b.len()),
                List::Dense(&cb, c.len()),
            ],
        ];
        for lists in &cases {
            assert_eq!(run(lists, usize::MAX), vec![0, 15, 30, 600]);
            assert_eq!(run(lists, 2), vec![0, 15]);
        }
        assert_eq!(run(&[sparse(&a[..5])], usize::MAX), vec![0, 3, 6, 9, 12]);
        assert_eq!(run(&[List::Dense(&cb, c.len())], usize::MAX), c.clone());
        assert!(run(&[], usize::MAX).is_empty());
    }
}
