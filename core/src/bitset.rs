//! A fixed-size bit set over dense indices (rules, zones, packages). Posture and activation
//! are unions of these, so comparing two postures is a word-wise compare, not a list diff.

/// Bits `0..len` over `u64` words.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    /// An empty set able to hold indices below `len`.
    pub fn with_len(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(64)],
        }
    }

    /// Sets bit `i`; indices beyond the set's length are ignored (they cannot be produced by
    /// the compiler, which sizes every set from the same tables).
    pub fn insert(&mut self, i: usize) {
        if let Some(w) = self.words.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    /// Clears bit `i`.
    pub fn remove(&mut self, i: usize) {
        if let Some(w) = self.words.get_mut(i / 64) {
            *w &= !(1 << (i % 64));
        }
    }

    /// Whether bit `i` is set.
    pub fn contains(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Adds every bit of `other`.
    pub fn union_with(&mut self, other: &BitSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    /// Whether no bit is set.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// Clears every bit, keeping the capacity.
    pub fn clear(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
    }

    /// Set bits in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            let mut rest = w;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                Some(wi * 64 + bit)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_union_iterate_in_order() {
        let mut a = BitSet::with_len(130);
        a.insert(129);
        a.insert(3);
        a.insert(64);
        let mut b = BitSet::with_len(130);
        b.insert(5);
        a.union_with(&b);
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![3, 5, 64, 129]);
        a.remove(64);
        assert!(!a.contains(64));
        assert!(a.contains(129));
        a.insert(1000); // out of range: ignored, not a panic
        assert!(!a.contains(1000));
        a.clear();
        assert!(a.is_empty());
    }
}
