//! Delta downloads: chunks a client already holds in earlier versions on its own disk.
//!
//! The files given are chunked locally with the same engine a publisher uses (a tar member by
//! member), and every chunk is indexed by its id. A download then copies each chunk whose id
//! the index has from the local file instead of fetching it, hashing it first like any chunk
//! that arrives: a file that changed since it was indexed just means that chunk is fetched.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::chunking::{chunk_file, kind_of_file, ChunkEngine, ChunkId};

/// Chunks a client may have on its own disk, consulted before fetching and (for a cache)
/// given every chunk fetched. Whatever is read is checked against its id.
pub trait LocalChunks: Send + Sync + std::fmt::Debug {
    /// Whether chunk `id` may be had locally.
    fn contains(&self, id: &ChunkId) -> bool;
    /// Chunk `id`, if it is here and hashes to `id`.
    fn read(&self, id: &ChunkId) -> Option<Bytes>;
    /// A chunk that was fetched and verified; a cache keeps it, an index of files ignores it.
    fn keep(&self, _id: &ChunkId, _bytes: &[u8]) {}
}

/// Where each locally held chunk is: file, offset, length.
#[derive(Debug, Default)]
pub struct ReuseIndex {
    files: Vec<PathBuf>,
    chunks: HashMap<ChunkId, (usize, u64, u32)>,
}

impl ReuseIndex {
    /// Indexes the chunks of every file at `paths` (files, or directories walked recursively).
    pub fn build(paths: &[PathBuf], engine: &dyn ChunkEngine) -> io::Result<Self> {
        let mut index = ReuseIndex::default();
        let mut files = Vec::new();
        for path in paths {
            collect_files(path, &mut files)?;
        }
        for file in files {
            index.add_file(&file, engine)?;
        }
        Ok(index)
    }

    fn add_file(&mut self, path: &Path, engine: &dyn ChunkEngine) -> io::Result<()> {
        let mut file = File::open(path)?;
        let kind = kind_of_file(engine, &mut file)?;
        let n = self.files.len();
        let chunks = &mut self.chunks;
        // Cut as a publisher cuts a file (a zip at its members), so the ids can match.
        chunk_file(engine, &mut file, kind, &mut |c| {
            chunks
                .entry(c.id)
                .or_insert((n, c.offset, c.data.len() as u32));
            Ok(())
        })?;
        self.files.push(path.to_path_buf());
        Ok(())
    }

    /// Distinct chunks indexed.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Whether nothing was indexed.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

impl LocalChunks for ReuseIndex {
    fn contains(&self, id: &ChunkId) -> bool {
        self.chunks.contains_key(id)
    }

    /// Chunk `id` read from its local file, if it is there and still hashes to `id`.
    fn read(&self, id: &ChunkId) -> Option<Bytes> {
        let &(file, offset, len) = self.chunks.get(id)?;
        let mut f = File::open(&self.files[file]).ok()?;
        f.seek(SeekFrom::Start(offset)).ok()?;
        let mut bytes = vec![0u8; len as usize];
        f.read_exact(&mut bytes).ok()?;
        id.matches(&bytes).then(|| Bytes::from(bytes))
    }
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let meta = std::fs::metadata(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            collect_files(&entry.path(), out)?;
        }
    } else if meta.is_file() {
        out.push(path.to_path_buf());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunking::FastCdcEngine;

    #[test]
    fn indexed_chunks_are_read_back_verified_and_a_changed_file_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("old.bin");
        let data: Vec<u8> = (0..400_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
            .collect();
        std::fs::write(&file, &data).unwrap();
        let index = ReuseIndex::build(&[dir.path().to_path_buf()], &FastCdcEngine).unwrap();
        assert!(!index.is_empty());
        let kind = kind_of_file(&FastCdcEngine, &mut io::Cursor::new(&data)).unwrap();
        let mut ids = Vec::new();
        chunk_file(
            &FastCdcEngine,
            &mut io::Cursor::new(&data),
            kind,
            &mut |c| {
                ids.push((c.id, c.data.to_vec()));
                Ok(())
            },
        )
        .unwrap();
        for (id, bytes) in &ids {
            assert_eq!(index.read(id).as_deref(), Some(&bytes[..]));
        }
        // The file changes after indexing: its chunks fail verification and are not used.
        std::fs::write(&file, vec![0u8; data.len()]).unwrap();
        assert!(ids.iter().all(|(id, _)| index.read(id).is_none()));
        assert!(ReuseIndex::build(&[dir.path().join("missing")], &FastCdcEngine).is_err());
    }
}
