//! Sets of concepts as bitsets over the index's concept numbers: ECL and
//! value set operators are then word-wise `AND`, `OR` and `AND NOT`.

/// A set of concepts of one [`crate::Index`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConceptSet {
    bits: Vec<u64>,
}

impl ConceptSet {
    /// The empty set for an index of `n` concepts.
    pub(crate) fn empty(n: usize) -> Self {
        ConceptSet {
            bits: vec![0; n.div_ceil(64)],
        }
    }

    /// Every concept of an index of `n` concepts.
    pub(crate) fn full(n: usize) -> Self {
        let mut s = ConceptSet {
            bits: vec![u64::MAX; n.div_ceil(64)],
        };
        let rest = n % 64;
        if rest != 0
            && let Some(last) = s.bits.last_mut()
        {
            *last = (1u64 << rest) - 1;
        }
        s
    }

    pub(crate) fn insert(&mut self, i: u32) -> bool {
        let (w, b) = ((i / 64) as usize, i % 64);
        match self.bits.get_mut(w) {
            Some(word) => {
                let was = *word & (1 << b) != 0;
                *word |= 1 << b;
                !was
            }
            None => false,
        }
    }

    pub(crate) fn contains(&self, i: u32) -> bool {
        let (w, b) = ((i / 64) as usize, i % 64);
        self.bits.get(w).is_some_and(|word| word & (1 << b) != 0)
    }

    pub fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|w| *w == 0)
    }

    pub fn and(mut self, other: &ConceptSet) -> Self {
        for (a, b) in self.bits.iter_mut().zip(&other.bits) {
            *a &= b;
        }
        self
    }

    pub fn or(mut self, other: &ConceptSet) -> Self {
        for (a, b) in self.bits.iter_mut().zip(&other.bits) {
            *a |= b;
        }
        self
    }

    pub fn minus(mut self, other: &ConceptSet) -> Self {
        for (a, b) in self.bits.iter_mut().zip(&other.bits) {
            *a &= !b;
        }
        self
    }

    /// The concept numbers in the set, ascending.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.bits.iter().enumerate().flat_map(|(w, word)| {
            let mut word = *word;
            std::iter::from_fn(move || {
                if word == 0 {
                    return None;
                }
                let b = word.trailing_zeros();
                word &= word - 1;
                Some(w as u32 * 64 + b)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_algebra() {
        let mut a = ConceptSet::empty(130);
        let mut b = ConceptSet::empty(130);
        for i in [0, 63, 64, 129] {
            a.insert(i);
        }
        for i in [63, 100] {
            b.insert(i);
        }
        assert_eq!(a.clone().and(&b).iter().collect::<Vec<_>>(), vec![63]);
        assert_eq!(a.clone().or(&b).len(), 5);
        assert_eq!(
            a.clone().minus(&b).iter().collect::<Vec<_>>(),
            vec![0, 64, 129]
        );
        assert_eq!(ConceptSet::full(130).len(), 130);
        assert!(!a.insert(130 + 64), "out of range is refused");
    }
}
