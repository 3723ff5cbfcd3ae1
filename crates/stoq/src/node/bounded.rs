//! A map with a size bound that evicts the least recently written entry: what a node keeps of
//! what peers and clients tell it (names, read restrictions, client areas) stays bounded.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// A map of at most `capacity` entries; inserting past it evicts the entry written longest ago.
#[derive(Debug)]
pub struct BoundedMap<K, V> {
    capacity: usize,
    entries: HashMap<K, (V, u64)>,
    order: BTreeMap<u64, K>,
    next: u64,
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    /// An empty map holding at most `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> Self {
        BoundedMap {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
        }
    }

    /// Inserts or replaces `key`, making it the most recently written; evicts the oldest
    /// entry if the map is full.
    pub fn insert(&mut self, key: K, value: V) {
        if let Some((_, seq)) = self.entries.remove(&key) {
            self.order.remove(&seq);
        } else if self.entries.len() >= self.capacity {
            if let Some((_, oldest)) = self.order.pop_first() {
                self.entries.remove(&oldest);
            }
        }
        let seq = self.next;
        self.next += 1;
        self.order.insert(seq, key.clone());
        self.entries.insert(key, (value, seq));
    }

    /// The value for `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(v, _)| v)
    }

    /// Entries, most recently written first.
    pub fn newest_first(&self) -> impl Iterator<Item = (&K, &V)> {
        self.order
            .values()
            .rev()
            .filter_map(|k| self.entries.get_key_value(k).map(|(k, (v, _))| (k, v)))
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
}
