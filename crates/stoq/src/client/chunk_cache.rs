//! The client's chunk cache: every chunk a `get` fetched, kept in the user's cache directory
//! (bounded in bytes), so the next version of a content fetches only what it does not share
//! with what this machine fetched before.
//!
//! One file per chunk, named by its id; written whole then renamed, so concurrent `get`s and
//! a crash never leave a partial chunk under its name (and every read is verified anyway).
//! Past the budget, the chunks used longest ago go first.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;

use super::reuse::LocalChunks;
use crate::chunking::ChunkId;

/// The cache's size unless configured: 1 GiB.
pub const DEFAULT_CACHE_BYTES: u64 = 1 << 30;

/// A directory of chunks, bounded in bytes.
#[derive(Debug)]
pub struct ChunkCache {
    dir: PathBuf,
    budget: u64,
    present: Mutex<HashSet<ChunkId>>,
}

impl ChunkCache {
    /// The cache in `dir` (created if missing), holding at most `budget` bytes after
    /// [`ChunkCache::trim`].
    pub fn open(dir: &Path, budget: u64) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        let present = fs::read_dir(dir)?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<ChunkId>().ok())
            .collect();
        Ok(ChunkCache {
            dir: dir.to_path_buf(),
            budget,
            present: Mutex::new(present),
        })
    }

    /// Where a user's cache lives: `$STOQ_CACHE_DIR`, else `$XDG_CACHE_HOME/stoq/chunks`,
    /// else `~/.cache/stoq/chunks`; `None` without a home.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("STOQ_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("stoq").join("chunks"))
    }

    fn path_of(&self, id: &ChunkId) -> PathBuf {
        self.dir.join(id.to_string())
    }

    /// Deletes the chunks used longest ago until the cache holds at most its budget.
    pub fn trim(&self) -> std::io::Result<()> {
        let mut files: Vec<(SystemTime, u64, PathBuf)> = fs::read_dir(&self.dir)?
            .flatten()
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.budget {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total -= len;
                if let Some(id) = path.file_name().and_then(|n| n.to_str()?.parse().ok()) {
                    self.present.lock().expect("cache lock").remove(&id);
                }
            }
        }
        Ok(())
    }
}

impl LocalChunks for ChunkCache {
    fn contains(&self, id: &ChunkId) -> bool {
        self.present.lock().expect("cache lock").contains(id)
    }

    fn read(&self, id: &ChunkId) -> Option<Bytes> {
        let path = self.path_of(id);
        let bytes = fs::read(&path).ok()?;
        if !id.matches(&bytes) {
            let _ = fs::remove_file(&path);
            return None;
        }
        // Used now: the last to go when the cache is trimmed.
        if let Ok(f) = fs::File::options().write(true).open(&path) {
            let _ = f.set_modified(SystemTime::now());
        }
        Some(Bytes::from(bytes))
    }

    fn keep(&self, id: &ChunkId, bytes: &[u8]) {
        if self.contains(id) || bytes.len() as u64 > self.budget {
            return;
        }
        let tmp = self.dir.join(format!(".{id}.{}.tmp", std::process::id()));
        let written = fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(bytes))
            .and_then(|()| fs::rename(&tmp, self.path_of(id)));
        match written {
            Ok(()) => {
                self.present.lock().expect("cache lock").insert(*id);
            }
            Err(_) => {
                let _ = fs::remove_file(&tmp);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunking::Hash32;

    #[test]
    fn kept_chunks_are_read_back_verified_and_the_oldest_go_past_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ChunkCache::open(dir.path(), 2500).unwrap();
        let chunks: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 1000]).collect();
        let ids: Vec<ChunkId> = chunks.iter().map(|c| Hash32::of(c)).collect();
        for (i, (id, bytes)) in ids.iter().zip(&chunks).enumerate() {
            cache.keep(id, bytes);
            // Distinct use times, oldest first.
            let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000 + i as u64);
            let f = fs::File::options()
                .write(true)
                .open(dir.path().join(id.to_string()));
            f.unwrap().set_modified(at).unwrap();
        }
        assert_eq!(cache.read(&ids[3]).as_deref(), Some(&chunks[3][..]));
        // A damaged file is not served, and is removed.
        fs::write(dir.path().join(ids[2].to_string()), b"garbage").unwrap();
        assert!(cache.read(&ids[2]).is_none());
        cache.trim().unwrap();
        // 4 kB kept, 2.5 kB allowed: the oldest went; a reopened cache knows what is there.
        let reopened = ChunkCache::open(dir.path(), 2500).unwrap();
        assert!(!reopened.contains(&ids[0]));
        assert!(reopened.contains(&ids[3]));
        assert_eq!(reopened.read(&ids[3]).as_deref(), Some(&chunks[3][..]));
    }
}
