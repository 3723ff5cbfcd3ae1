//! What an edge's cache keeps: byte-bounded eviction policies over content-addressed chunks.
//!
//! A policy only decides; the edge stores and deletes the bytes. Two policies:
//! - [`Lru`]: evicts the least recently used chunk;
//! - [`S3Fifo`] (Yang et al., SOSP 2023): new chunks enter a small FIFO (10 % of the bytes);
//!   only those hit again while there move to the main FIFO; the ids of the others are
//!   remembered in a ghost queue, so a chunk that comes back soon goes straight to main. A
//!   one-time scan passes through the small queue without pushing hot chunks out.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use crate::chunking::Hash32;

/// A byte-bounded cache eviction policy.
pub trait CachePolicy: Send {
    /// Whether `id` is cached.
    fn contains(&self, id: &Hash32) -> bool;
    /// Records a hit on a cached `id`.
    fn on_hit(&mut self, id: &Hash32);
    /// Admits `id` (`size` bytes) and returns what must be evicted to make room, which is
    /// `id` itself when it is larger than the whole cache.
    fn insert(&mut self, id: Hash32, size: u64) -> Vec<Hash32>;
    /// Forgets `id` (a purge); returns whether it was cached.
    fn remove(&mut self, id: &Hash32) -> bool;
    /// Bytes held.
    fn used_bytes(&self) -> u64;
    /// The bound.
    fn capacity_bytes(&self) -> u64;
}

/// Least recently used.
#[derive(Debug, Clone)]
pub struct Lru {
    capacity: u64,
    used: u64,
    tick: u64,
    entries: HashMap<Hash32, (u64, u64)>,
    order: BTreeMap<u64, Hash32>,
}

impl Lru {
    /// An LRU bounded to `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Lru {
            capacity,
            used: 0,
            tick: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn touch(&mut self, id: &Hash32) {
        if let Some((_, t)) = self.entries.get_mut(id) {
            self.order.remove(t);
            self.tick += 1;
            *t = self.tick;
            self.order.insert(self.tick, *id);
        }
    }
}

impl CachePolicy for Lru {
    fn contains(&self, id: &Hash32) -> bool {
        self.entries.contains_key(id)
    }

    fn on_hit(&mut self, id: &Hash32) {
        self.touch(id);
    }

    fn insert(&mut self, id: Hash32, size: u64) -> Vec<Hash32> {
        if size > self.capacity {
            return vec![id];
        }
        if self.entries.contains_key(&id) {
            self.touch(&id);
            return Vec::new();
        }
        let mut evicted = Vec::new();
        while self.used + size > self.capacity {
            let Some((_, victim)) = self.order.pop_first() else {
                break;
            };
            if let Some((s, _)) = self.entries.remove(&victim) {
                self.used -= s;
            }
            evicted.push(victim);
        }
        self.tick += 1;
        self.entries.insert(id, (size, self.tick));
        self.order.insert(self.tick, id);
        self.used += size;
        evicted
    }

    fn remove(&mut self, id: &Hash32) -> bool {
        match self.entries.remove(id) {
            Some((size, t)) => {
                self.order.remove(&t);
                self.used -= size;
                true
            }
            None => false,
        }
    }

    fn used_bytes(&self) -> u64 {
        self.used
    }

    fn capacity_bytes(&self) -> u64 {
        self.capacity
    }
}

/// Which queue a cached chunk is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    Small,
    Main,
}

#[derive(Debug, Clone)]
struct Entry {
    size: u64,
    freq: u8,
    queue: Queue,
}

/// S3-FIFO: small, main and ghost FIFO queues.
#[derive(Debug, Clone)]
pub struct S3Fifo {
    capacity: u64,
    small_target: u64,
    small_used: u64,
    main_used: u64,
    entries: HashMap<Hash32, Entry>,
    small: VecDeque<Hash32>,
    main: VecDeque<Hash32>,
    ghost: VecDeque<Hash32>,
    ghost_set: HashSet<Hash32>,
    ghost_limit: usize,
}

impl S3Fifo {
    /// An S3-FIFO cache bounded to `capacity` bytes; the small queue gets 10 % of it and the
    /// ghost queue remembers up to `ghost_entries` evicted ids.
    pub fn new(capacity: u64, ghost_entries: usize) -> Self {
        S3Fifo {
            capacity,
            small_target: (capacity / 10).max(1),
            small_used: 0,
            main_used: 0,
            entries: HashMap::new(),
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost: VecDeque::new(),
            ghost_set: HashSet::new(),
            ghost_limit: ghost_entries,
        }
    }

    fn remember_ghost(&mut self, id: Hash32) {
        if self.ghost_limit == 0 {
            return;
        }
        if self.ghost_set.insert(id) {
            self.ghost.push_back(id);
        }
        while self.ghost.len() > self.ghost_limit {
            if let Some(old) = self.ghost.pop_front() {
                self.ghost_set.remove(&old);
            }
        }
    }

    /// Evicts one chunk (or moves one from small to main); returns the evicted id, if any.
    fn evict_one(&mut self) -> Option<Hash32> {
        loop {
            let from_small = self.small_used > self.small_target || self.main.is_empty();
            if from_small {
                let id = self.small.pop_front()?;
                let Some(e) = self.entries.get_mut(&id) else {
                    continue;
                };
                self.small_used -= e.size;
                if e.freq > 0 {
                    e.freq = 0;
                    e.queue = Queue::Main;
                    self.main_used += e.size;
                    self.main.push_back(id);
                    continue;
                }
                self.entries.remove(&id);
                self.remember_ghost(id);
                return Some(id);
            }
            let id = self.main.pop_front()?;
            let Some(e) = self.entries.get_mut(&id) else {
                continue;
            };
            if e.freq > 0 {
                e.freq -= 1;
                self.main.push_back(id);
                continue;
            }
            self.main_used -= e.size;
            self.entries.remove(&id);
            return Some(id);
        }
    }
}

impl CachePolicy for S3Fifo {
    fn contains(&self, id: &Hash32) -> bool {
        self.entries.contains_key(id)
    }

    fn on_hit(&mut self, id: &Hash32) {
        if let Some(e) = self.entries.get_mut(id) {
            e.freq = (e.freq + 1).min(3);
        }
    }

    fn insert(&mut self, id: Hash32, size: u64) -> Vec<Hash32> {
        if size > self.capacity {
            return vec![id];
        }
        if self.entries.contains_key(&id) {
            self.on_hit(&id);
            return Vec::new();
        }
        let mut evicted = Vec::new();
        while self.small_used + self.main_used + size > self.capacity {
            match self.evict_one() {
                Some(v) => evicted.push(v),
                None => break,
            }
        }
        let queue = if self.ghost_set.remove(&id) {
            self.ghost.retain(|g| *g != id);
            self.main.push_back(id);
            self.main_used += size;
            Queue::Main
        } else {
            self.small.push_back(id);
            self.small_used += size;
            Queue::Small
        };
        self.entries.insert(
            id,
            Entry {
                size,
                freq: 0,
                queue,
            },
        );
        evicted
    }

    fn remove(&mut self, id: &Hash32) -> bool {
        match self.entries.remove(id) {
            Some(e) => {
                match e.queue {
                    Queue::Small => {
                        self.small_used -= e.size;
                        self.small.retain(|x| x != id);
                    }
                    Queue::Main => {
                        self.main_used -= e.size;
                        self.main.retain(|x| x != id);
                    }
                }
                true
            }
            None => false,
        }
    }

    fn used_bytes(&self) -> u64 {
        self.small_used + self.main_used
    }

    fn capacity_bytes(&self) -> u64 {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u32) -> Hash32 {
        Hash32::of(&n.to_le_bytes())
    }

    /// Hits on a hot set, then a long one-time scan, then the hot set again: how much of the
    /// hot set is still cached.
    fn hot_set_survival(policy: &mut dyn CachePolicy) -> usize {
        let hot: Vec<Hash32> = (0..20).map(id).collect();
        for _ in 0..5 {
            for h in &hot {
                if policy.contains(h) {
                    policy.on_hit(h);
                } else {
                    policy.insert(*h, 100);
                }
            }
        }
        for n in 1000..1300 {
            policy.insert(id(n), 100);
        }
        hot.iter().filter(|h| policy.contains(h)).count()
    }

    #[test]
    fn s3fifo_resists_a_scan_that_flushes_lru() {
        let lru = hot_set_survival(&mut Lru::new(5_000));
        let s3 = hot_set_survival(&mut S3Fifo::new(5_000, 100));
        assert_eq!(lru, 0, "a scan of 300 one-time chunks flushes LRU");
        assert_eq!(s3, 20, "S3-FIFO keeps the hot set");
    }

    #[test]
    fn lru_evicts_the_least_recently_used() {
        let mut lru = Lru::new(300);
        lru.insert(id(1), 100);
        lru.insert(id(2), 100);
        lru.insert(id(3), 100);
        lru.on_hit(&id(1));
        assert_eq!(lru.insert(id(4), 100), vec![id(2)]);
        assert!(lru.contains(&id(1)) && !lru.contains(&id(2)));
        assert_eq!(
            lru.insert(id(5), 1000),
            vec![id(5)],
            "larger than the whole cache"
        );
        assert!(lru.remove(&id(1)));
        assert_eq!(lru.used_bytes(), 200);
    }

    #[test]
    fn a_ghost_hit_goes_straight_to_main() {
        let mut s3 = S3Fifo::new(1_000, 10);
        s3.insert(id(1), 100);
        for n in 2..20 {
            s3.insert(id(n), 100);
        }
        assert!(!s3.contains(&id(1)), "evicted from the small queue unhit");
        s3.insert(id(1), 100);
        assert_eq!(s3.entries[&id(1)].queue, Queue::Main);
    }

    proptest! {
        #[test]
        fn the_byte_bound_always_holds(ops in proptest::collection::vec((0u32..40, 1u64..400, 0u8..3), 1..300)) {
            let mut policies: Vec<Box<dyn CachePolicy>> = vec![Box::new(Lru::new(1_000)), Box::new(S3Fifo::new(1_000, 16))];
            for p in policies.iter_mut() {
                let mut sizes = HashMap::new();
                for &(n, size, op) in &ops {
                    let key = id(n);
                    match op {
                        0 => {
                            let size = *sizes.entry(n).or_insert(size);
                            for gone in p.insert(key, size) {
                                prop_assert!(!p.contains(&gone), "an evicted chunk is still cached");
                            }
                        }
                        1 => p.on_hit(&key),
                        _ => { p.remove(&key); }
                    }
                    prop_assert!(p.used_bytes() <= p.capacity_bytes());
                }
            }
        }
    }
}
