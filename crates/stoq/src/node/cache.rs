//! An edge's cache on disk: manifests and chunks, bounded in bytes, evicted by a policy.
//!
//! Entries are files named by their BLAKE3 id (`DIR/ab/<hex>`), written to a temporary name
//! and renamed, so a crash leaves whole entries or none. An entry is hashed when it is stored
//! and on its first read after a restart, then trusted until the scrub ([`EdgeCache::scrub`])
//! hashes it again; a corrupt file is deleted and reported as a miss, so the next request
//! fetches it afresh (repaired). On start the directory is scanned
//! (oldest first) to rebuild the policy, so the cache survives restarts.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::chunking::{ContentId, Hash32, Manifest};
pub use crate::config::PolicyKind;
use crate::edge::cache::{CachePolicy, Lru, S3Fifo};
use crate::store::{health_of, BlobHealth, Verified};

pub use crate::protocol::CacheStats;

/// A policy of `kind` bounded to `capacity` bytes.
fn new_policy(capacity: u64, kind: PolicyKind) -> Box<dyn CachePolicy> {
    match kind {
        PolicyKind::Lru => Box::new(Lru::new(capacity)),
        PolicyKind::S3fifo => Box::new(S3Fifo::new(capacity, 4096)),
    }
}

/// The entries in the cache directory `dir`, oldest first: (modified, id, length).
fn scan(dir: &Path) -> io::Result<Vec<(std::time::SystemTime, Hash32, u64)>> {
    let mut found = Vec::new();
    for shard in fs::read_dir(dir)? {
        let shard = shard?;
        if shard.file_name() == "tmp"
            || shard.file_name() == "restricted"
            || shard.file_name() == "types"
            || !shard.file_type()?.is_dir()
        {
            continue;
        }
        for entry in fs::read_dir(shard.path())? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.parse::<Hash32>().ok()) else {
                continue;
            };
            let meta = entry.metadata()?;
            found.push((meta.modified()?, id, meta.len()));
        }
    }
    found.sort();
    Ok(found)
}

/// An on-disk cache of verified, content-addressed entries.
pub struct EdgeCache {
    dir: PathBuf,
    policy: Mutex<Box<dyn CachePolicy>>,
    hits: AtomicU64,
    /// Lookups that missed; those that then fetched upstream are also counted in `fetches`,
    /// the rest joined a fetch under way (coalesced).
    missed: AtomicU64,
    fetches: AtomicU64,
    evictions: AtomicU64,
    purged: AtomicU64,
    tmp_counter: AtomicU64,
    /// Entries hashed since open (see the module doc).
    verified: Verified,
    /// Read restrictions of cached contents, loaded at open; the files are their durable copy.
    restrictions: Mutex<std::collections::HashMap<ContentId, [u8; 32]>>,
}

impl std::fmt::Debug for EdgeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeCache").field("dir", &self.dir).finish()
    }
}

impl EdgeCache {
    /// Opens the cache in `dir`, bounded to `capacity` bytes, re-admitting what is on disk.
    pub fn open(dir: &Path, capacity: u64, kind: PolicyKind) -> io::Result<Self> {
        fs::create_dir_all(dir.join("tmp"))?;
        for entry in fs::read_dir(dir.join("tmp"))? {
            let _ = fs::remove_file(entry?.path());
        }
        let cache = EdgeCache {
            dir: dir.to_path_buf(),
            policy: Mutex::new(new_policy(capacity, kind)),
            hits: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            purged: AtomicU64::new(0),
            tmp_counter: AtomicU64::new(0),
            verified: Verified::default(),
            restrictions: Mutex::default(),
        };
        if let Ok(entries) = fs::read_dir(dir.join("restricted")) {
            let mut restrictions = cache.restrictions.lock().expect("restrictions lock");
            for entry in entries {
                let path = entry?.path();
                let id = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.parse::<ContentId>().ok());
                let digest = fs::read(&path).ok().and_then(|b| b.try_into().ok());
                if let (Some(id), Some(digest)) = (id, digest) {
                    restrictions.insert(id, digest);
                }
            }
        }
        for (_, id, len) in scan(dir)? {
            cache.admit(id, len);
        }
        Ok(cache)
    }

    /// Bounds the cache to `capacity` bytes under policy `kind`, while it runs: the policy is
    /// rebuilt from the entries on disk (oldest first, as at open) and what no longer fits is
    /// evicted. Reads under way keep the bytes they were handed.
    pub fn reconfigure(&self, capacity: u64, kind: PolicyKind) -> io::Result<()> {
        let evicted = {
            // Held while rebuilding, so no entry admitted meanwhile is missed by the new policy.
            let mut policy = self.policy.lock().expect("policy lock");
            let mut rebuilt = new_policy(capacity, kind);
            let mut evicted = Vec::new();
            for (_, id, len) in scan(&self.dir)? {
                evicted.extend(rebuilt.insert(id, len));
            }
            *policy = rebuilt;
            evicted
        };
        for gone in evicted {
            self.evictions.fetch_add(1, Ordering::Relaxed);
            self.verified.remove(&gone);
            let _ = fs::remove_file(self.path(&gone));
        }
        Ok(())
    }

    fn path(&self, id: &Hash32) -> PathBuf {
        let hex = id.to_string();
        self.dir.join(&hex[..2]).join(hex)
    }

    /// Admits an entry to the policy and deletes what it evicts.
    fn admit(&self, id: Hash32, len: u64) -> bool {
        let evicted = self.policy.lock().expect("policy lock").insert(id, len);
        let mut kept = true;
        for gone in evicted {
            if gone == id {
                kept = false;
            } else {
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
            self.verified.remove(&gone);
            let _ = fs::remove_file(self.path(&gone));
        }
        kept
    }

    /// The verified bytes of `id`, counting a hit or a miss.
    pub fn get(&self, id: &Hash32) -> Option<Vec<u8>> {
        self.lookup(id, true)
    }

    /// The verified bytes of `id` without counting a hit or miss (a re-check after a lookup
    /// that was already counted).
    pub fn peek(&self, id: &Hash32) -> Option<Vec<u8>> {
        self.lookup(id, false)
    }

    /// Counts a missed lookup that went upstream (the others that missed joined its fetch).
    pub fn count_fetch(&self) {
        self.fetches.fetch_add(1, Ordering::Relaxed);
    }

    fn lookup(&self, id: &Hash32, count: bool) -> Option<Vec<u8>> {
        let known = self.policy.lock().expect("policy lock").contains(id);
        let bytes = if known {
            match fs::read(self.path(id)) {
                Ok(bytes) if self.verified.contains(id) => Some(bytes),
                Ok(bytes) if id.matches(&bytes) => {
                    self.verified.insert(*id);
                    Some(bytes)
                }
                Ok(_) | Err(_) => {
                    self.drop_damaged(id);
                    None
                }
            }
        } else {
            None
        };
        match &bytes {
            Some(_) => {
                self.policy.lock().expect("policy lock").on_hit(id);
                if count {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                }
            }
            None if count => {
                self.missed.fetch_add(1, Ordering::Relaxed);
            }
            None => {}
        }
        bytes
    }

    /// Deletes a missing or corrupt entry, so the next request fetches it afresh.
    fn drop_damaged(&self, id: &Hash32) {
        tracing::warn!(entry = %id, "cache entry missing or corrupt; dropped");
        self.verified.remove(id);
        self.policy.lock().expect("policy lock").remove(id);
        let _ = fs::remove_file(self.path(id));
    }

    /// Entries trusted now, for the scrub to hash again.
    pub fn trusted(&self) -> Vec<Hash32> {
        self.verified.ids()
    }

    /// Hashes entry `id` again; a damaged one is deleted (the next request fetches it anew).
    /// `None` if the entry left the cache since it was listed.
    pub fn scrub(&self, id: &Hash32) -> Option<BlobHealth> {
        let health = health_of(&self.path(id), id).unwrap_or(BlobHealth::Missing);
        match health {
            BlobHealth::Intact(_) => return Some(health),
            // Evicted or purged since it was listed: nothing to check.
            BlobHealth::Missing if !self.policy.lock().expect("policy lock").contains(id) => {
                self.verified.remove(id);
                return None;
            }
            _ => self.drop_damaged(id),
        }
        Some(health)
    }

    /// Stores verified bytes under `id`. Bytes that do not hash to `id` are refused.
    pub fn put(&self, id: Hash32, bytes: &[u8]) -> io::Result<()> {
        if !id.matches(bytes) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bytes do not match {id}"),
            ));
        }
        if self.policy.lock().expect("policy lock").contains(&id) {
            return Ok(());
        }
        let path = self.path(&id);
        fs::create_dir_all(path.parent().expect("entries have a parent"))?;
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join("tmp").join(format!("{id}.{n}"));
        fs::write(&tmp, bytes)?;
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        if self.admit(id, bytes.len() as u64) {
            self.verified.insert(id);
        }
        Ok(())
    }

    /// The cached manifest of `id`, if any (verified). `count` says whether this lookup is a
    /// client's request (counted as a hit or miss) or the edge resolving a chunk request.
    pub fn manifest(&self, id: &ContentId, count: bool) -> Option<Manifest> {
        let bytes = self.lookup(id, count)?;
        Manifest::decode(&bytes).ok()
    }

    fn restriction_path(&self, id: &ContentId) -> PathBuf {
        self.dir.join("restricted").join(id.to_string())
    }

    /// Records that reads of `id` need the token with this digest (kept across restarts).
    pub fn set_restriction(&self, id: &ContentId, digest: &[u8; 32]) -> io::Result<()> {
        let path = self.restriction_path(id);
        fs::create_dir_all(path.parent().expect("has a parent"))?;
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join("tmp").join(format!("r{id}.{n}"));
        fs::write(&tmp, digest)?;
        fs::rename(&tmp, &path)?;
        self.restrictions
            .lock()
            .expect("restrictions lock")
            .insert(*id, *digest);
        Ok(())
    }

    /// The read-token digest `id` needs, if its reads are restricted.
    pub fn restriction(&self, id: &ContentId) -> Option<[u8; 32]> {
        self.restrictions
            .lock()
            .expect("restrictions lock")
            .get(id)
            .copied()
    }

    fn media_type_path(&self, id: &ContentId) -> PathBuf {
        self.dir.join("types").join(id.to_string())
    }

    /// Records the media type `id` was published with (kept across restarts).
    pub fn set_media_type(&self, id: &ContentId, media_type: &str) -> io::Result<()> {
        let path = self.media_type_path(id);
        fs::create_dir_all(path.parent().expect("has a parent"))?;
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join("tmp").join(format!("t{id}.{n}"));
        fs::write(&tmp, media_type)?;
        fs::rename(&tmp, &path)
    }

    /// The media type recorded for `id`, if any.
    pub fn media_type(&self, id: &ContentId) -> Option<String> {
        String::from_utf8(fs::read(self.media_type_path(id)).ok()?).ok()
    }

    /// Removes a content: its manifest and every chunk it lists. Returns entries removed.
    pub fn purge(&self, id: &ContentId) -> usize {
        let manifest = fs::read(self.path(id))
            .ok()
            .filter(|b| id.matches(b))
            .and_then(|b| Manifest::decode(&b).ok());
        let _ = fs::remove_file(self.restriction_path(id));
        let _ = fs::remove_file(self.media_type_path(id));
        self.restrictions
            .lock()
            .expect("restrictions lock")
            .remove(id);
        let mut ids = vec![*id];
        if let Some(m) = manifest {
            ids.extend(m.chunks.iter().map(|c| c.id));
        }
        let mut removed = 0;
        for entry in ids {
            let was = self.policy.lock().expect("policy lock").remove(&entry);
            self.verified.remove(&entry);
            if fs::remove_file(self.path(&entry)).is_ok() || was {
                removed += 1;
            }
        }
        self.purged.fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }

    /// Counters and occupancy.
    pub fn stats(&self) -> CacheStats {
        let fetches = self.fetches.load(Ordering::Relaxed);
        let policy = self.policy.lock().expect("policy lock");
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: fetches,
            coalesced: self.missed.load(Ordering::Relaxed).saturating_sub(fetches),
            evictions: self.evictions.load(Ordering::Relaxed),
            purged: self.purged.load(Ordering::Relaxed),
            used_bytes: policy.used_bytes(),
            capacity_bytes: policy.capacity_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, len: usize) -> (Hash32, Vec<u8>) {
        let bytes = vec![n; len];
        (Hash32(*blake3::hash(&bytes).as_bytes()), bytes)
    }

    #[test]
    fn entries_survive_a_restart_and_the_bound_holds() {
        let dir = tempfile::tempdir().unwrap();
        let (a, a_bytes) = entry(1, 400);
        let (b, b_bytes) = entry(2, 400);
        let (c, c_bytes) = entry(3, 400);
        {
            let cache = EdgeCache::open(dir.path(), 1000, PolicyKind::Lru).unwrap();
            cache.put(a, &a_bytes).unwrap();
            cache.put(b, &b_bytes).unwrap();
            assert_eq!(cache.get(&a).as_deref(), Some(&a_bytes[..]));
            cache.put(c, &c_bytes).unwrap(); // evicts b, the least recently used
            let stats = cache.stats();
            assert_eq!((stats.hits, stats.evictions, stats.used_bytes), (1, 1, 800));
            assert!(cache.get(&b).is_none());
        }
        let cache = EdgeCache::open(dir.path(), 1000, PolicyKind::Lru).unwrap();
        assert_eq!(cache.stats().used_bytes, 800);
        assert_eq!(cache.get(&a).as_deref(), Some(&a_bytes[..]));
        assert_eq!(cache.get(&c).as_deref(), Some(&c_bytes[..]));
    }

    #[test]
    fn corrupt_entries_are_dropped_and_wrong_bytes_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = EdgeCache::open(dir.path(), 1 << 20, PolicyKind::S3fifo).unwrap();
        let (a, a_bytes) = entry(1, 100);
        assert!(cache.put(a, b"not these bytes").is_err());
        cache.put(a, &a_bytes).unwrap();
        fs::write(cache.path(&a), b"tampered").unwrap();
        // Trusted since it was stored: the scrub finds the damage and deletes the entry.
        assert_eq!(cache.trusted(), vec![a]);
        assert_eq!(cache.scrub(&a), Some(BlobHealth::Corrupt));
        assert!(cache.get(&a).is_none());
        assert_eq!(cache.stats().used_bytes, 0);
        assert!(!cache.path(&a).exists());
        assert!(cache.trusted().is_empty());
        // After a restart nothing is trusted: a damaged entry is caught on its first read.
        let (b, b_bytes) = entry(2, 100);
        cache.put(b, &b_bytes).unwrap();
        drop(cache);
        fs::write(
            dir.path().join(&b.to_string()[..2]).join(b.to_string()),
            b"bad!",
        )
        .unwrap();
        let cache = EdgeCache::open(dir.path(), 1 << 20, PolicyKind::S3fifo).unwrap();
        assert!(cache.get(&b).is_none());
    }
}
