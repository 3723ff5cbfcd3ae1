//! Putting content: chunk a stream, write the blobs it does not have, commit its manifest.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

use super::error::io_error;
use super::{PutOptions, PutReport, Store, StoreError, BLOBS, PUT_MARKER};
use crate::chunking::{
    chunk_content, chunk_file, erasure, kind_of_file, sniff_head, Chunk, ChunkEntry, ChunkId,
    Hash32, Manifest, Replayed, ShardSet,
};

impl Store {
    /// Chunks and stores what `reader` yields. Memory stays bounded by the largest chunk,
    /// whatever the content's size. A put that fails takes back the blobs it wrote; one that is
    /// killed leaves a marker, and the next open collects its orphans.
    pub fn put_reader<R: Read>(
        &mut self,
        reader: R,
        options: PutOptions,
    ) -> Result<PutReport, StoreError> {
        self.put_from(Source::Stream(Box::new(reader)), options, &mut |_| {})
    }

    fn put_from(
        &mut self,
        source: Source<'_>,
        options: PutOptions,
        progress: &mut dyn FnMut(u64),
    ) -> Result<PutReport, StoreError> {
        let marker = self.root.join(PUT_MARKER);
        File::create(&marker).map_err(io_error("cannot create", &marker))?;
        let mut written = HashSet::new();
        let result = self.put_blobs(source, options, &mut written, progress);
        if result.is_err() {
            self.take_back(&written);
        }
        let _ = fs::remove_file(&marker);
        result
    }

    /// Deletes the blobs of a failed put that the index does not refer to.
    fn take_back(&self, written: &HashSet<ChunkId>) {
        let Ok(txn) = self.db.begin_read() else {
            return;
        };
        let Ok(blobs) = txn.open_table(BLOBS) else {
            return;
        };
        for id in written {
            if matches!(blobs.get(&id.0), Ok(None)) {
                let _ = fs::remove_file(self.blob_path(id));
            }
        }
    }

    fn put_blobs(
        &mut self,
        source: Source<'_>,
        options: PutOptions,
        written: &mut HashSet<ChunkId>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<PutReport, StoreError> {
        let input_error = || io_error("cannot read", Path::new("input"));
        let (sniffed, mut input) = match source {
            Source::Stream(reader) => {
                let (head, replayed) = sniff_head(reader).map_err(input_error())?;
                (self.engine.profile_for(&head).0, Input::Stream(replayed))
            }
            Source::File(mut file) => {
                let kind = kind_of_file(&*self.engine, &mut file).map_err(input_error())?;
                (kind, Input::File(file))
            }
        };
        let kind = options.kind.unwrap_or(sniffed);
        // A snapshot of the index answers "do we have this blob?" per chunk, without loading
        // the whole index into memory.
        let snapshot = self.db.begin_read()?;
        let known = snapshot.open_table(BLOBS)?;
        let mut chunks = Vec::new();
        let mut new_chunks = 0usize;
        let mut new_bytes = 0u64;
        let mut failure: Option<StoreError> = None;
        let store_blob = |store: &Self,
                          id: ChunkId,
                          data: &[u8],
                          written: &mut HashSet<ChunkId>|
         -> Result<bool, StoreError> {
            // A blob the index knows is reused only if it is really there and intact, so
            // putting the original file again heals a damaged or lost blob.
            if written.contains(&id) || (known.get(&id.0)?.is_some() && store.blob_intact(&id)) {
                return Ok(false);
            }
            store.write_blob(&id, data)?;
            written.insert(id);
            Ok(true)
        };
        let this = &*self;
        let mut sink = |chunk: Chunk<'_>| {
            progress(chunk.data.len() as u64);
            let outcome = (|| {
                let shards = match options.erasure {
                    None => {
                        if store_blob(this, chunk.id, chunk.data, written)? {
                            new_chunks += 1;
                            new_bytes += chunk.data.len() as u64;
                        }
                        None
                    }
                    Some(policy) => {
                        let data = erasure::data_shards(chunk.data, policy.k);
                        let parity = erasure::parity(&data, policy)?;
                        let shards: Vec<&[u8]> = data
                            .iter()
                            .map(|d| d.as_ref())
                            .chain(parity.iter().map(Vec::as_slice))
                            .collect();
                        let mut ids = Vec::with_capacity(shards.len());
                        let mut any_new = false;
                        for shard in &shards {
                            let id = Hash32::of(shard);
                            if store_blob(this, id, shard, written)? {
                                any_new = true;
                                new_bytes += shard.len() as u64;
                            }
                            ids.push(id);
                        }
                        new_chunks += usize::from(any_new);
                        Some(ShardSet {
                            shard_len: shards[0].len() as u32,
                            ids,
                        })
                    }
                };
                chunks.push(ChunkEntry {
                    id: chunk.id,
                    offset: chunk.offset,
                    length: chunk.data.len() as u32,
                    shards,
                });
                Ok(())
            })();
            outcome.map_err(|e: StoreError| {
                failure = Some(e);
                io::Error::other("store write failed")
            })
        };
        let engine = &*this.engine;
        let result = match &mut input {
            Input::Stream(reader) => chunk_content(engine, reader, kind, &mut sink),
            Input::File(file) => chunk_file(engine, file, kind, &mut sink),
        };
        if let Some(e) = failure {
            return Err(e);
        }
        let size = result.map_err(input_error())?;
        let manifest = Manifest {
            kind,
            size,
            erasure: options.erasure,
            chunks,
        };
        let id = manifest.content_id();
        self.keep_manifest_file(&id, &manifest.encode())?;
        self.sync_data()?;
        self.commit_manifest(&id, &manifest)?;
        Ok(PutReport {
            id,
            size,
            chunks: manifest.chunks.len(),
            new_chunks,
            new_bytes,
            kind,
        })
    }

    /// Stores a file. A file can be read out of order, so a zip is cut at its members.
    pub fn put_file(&mut self, path: &Path, options: PutOptions) -> Result<PutReport, StoreError> {
        self.put_file_reporting(path, options, &mut |_| {})
    }

    /// [`Store::put_file`], telling `progress` the bytes of each chunk as it is stored (for a
    /// progress bar: the calls add up to the content's size).
    pub fn put_file_reporting(
        &mut self,
        path: &Path,
        options: PutOptions,
        progress: &mut dyn FnMut(u64),
    ) -> Result<PutReport, StoreError> {
        let file = File::open(path).map_err(io_error("cannot open", path))?;
        self.put_from(Source::File(file), options, progress)
    }
}

/// What a put reads: a stream, or a file it may also seek in.
enum Source<'a> {
    Stream(Box<dyn Read + 'a>),
    File(File),
}

/// A source once its first bytes were read to choose the kind.
enum Input<'a> {
    Stream(Replayed<Box<dyn Read + 'a>>),
    File(File),
}
