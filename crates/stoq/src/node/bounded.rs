//! A map with a size bound that evicts the least recently written entry: what a node keeps of
//! what peers and clients tell it (names, read restrictions, client areas, decoded manifests)
//! stays bounded.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// A map whose entries' weights add up to at most a budget; inserting past it evicts the
/// entries written longest ago. With [`BoundedMap::insert`] every entry weighs 1, so the
/// budget is a count.
#[derive(Debug)]
pub struct BoundedMap<K, V> {
    budget: usize,
    used: usize,
    entries: HashMap<K, (V, u64, usize)>,
    order: BTreeMap<u64, K>,
    next: u64,
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    /// An empty map whose entries weigh at most `budget` in all (at least 1).
    pub fn new(budget: usize) -> Self {
        BoundedMap {
            budget: budget.max(1),
            used: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
        }
    }

    /// Inserts or replaces `key` with weight 1 (see [`BoundedMap::insert_weighing`]).
    pub fn insert(&mut self, key: K, value: V) {
        self.insert_weighing(key, value, 1);
    }

    /// Inserts or replaces `key`, weighing `weight`, as the most recently written entry, and
    /// evicts the oldest entries until the budget holds. An entry heavier than the whole
    /// budget is not kept.
    pub fn insert_weighing(&mut self, key: K, value: V, weight: usize) {
        self.remove(&key);
        if weight > self.budget {
            return;
        }
        while self.used + weight > self.budget {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, _, w)) = self.entries.remove(&oldest) {
                self.used -= w;
            }
        }
        let seq = self.next;
        self.next += 1;
        self.order.insert(seq, key.clone());
        self.entries.insert(key, (value, seq, weight));
        self.used += weight;
    }

    /// The value for `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.get(key).map(|(v, _, _)| v)
    }

    /// Removes `key`; returns whether it was there.
    pub fn remove(&mut self, key: &K) -> bool {
        match self.entries.remove(key) {
            Some((_, seq, weight)) => {
                self.order.remove(&seq);
                self.used -= weight;
                true
            }
            None => false,
        }
    }

    /// Entries, most recently written first.
    pub fn newest_first(&self) -> impl Iterator<Item = (&K, &V)> {
        self.order
            .values()
            .rev()
            .filter_map(|k| self.entries.get_key_value(k).map(|(k, (v, _, _))| (k, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::BoundedMap;

    #[test]
    fn the_oldest_write_is_evicted_first_and_a_rewrite_makes_an_entry_new() {
        let mut m = BoundedMap::new(3);
        for k in ["a", "b", "c"] {
            m.insert(k, 0);
        }
        m.insert("a", 1); // a is now the newest; b the oldest
        m.insert("d", 0);
        assert_eq!(m.get(&"b"), None);
        assert_eq!(m.get(&"a"), Some(&1));
        assert_eq!(m.newest_first().count(), 3);
        let order: Vec<_> = m.newest_first().map(|(k, _)| *k).collect();
        assert_eq!(order, ["d", "a", "c"]);
    }

    #[test]
    fn weights_bound_the_total_and_an_entry_over_the_budget_is_not_kept() {
        let mut m = BoundedMap::new(100);
        m.insert_weighing("a", (), 40);
        m.insert_weighing("b", (), 40);
        m.insert_weighing("c", (), 40); // evicts a
        assert!(m.get(&"a").is_none() && m.get(&"b").is_some() && m.get(&"c").is_some());
        m.insert_weighing("huge", (), 101);
        assert!(m.get(&"huge").is_none());
        assert!(m.get(&"b").is_some(), "a refused entry evicts nothing");
        assert!(m.remove(&"b"));
        m.insert_weighing("d", (), 60); // 40 (c) + 60 fits
        assert!(m.get(&"c").is_some() && m.get(&"d").is_some());
    }
}
