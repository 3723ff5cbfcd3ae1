//! The chunk engine: how bytes become named chunks, manifests and shards, and where those
//! should live. Pure: no files, no sockets (the `store` module keeps chunks on disk).
//!
//! - [`FastCdcEngine`]: FastCDC 2020 boundaries with content profiles ([`sniff`]), BLAKE3 ids;
//! - [`chunk_content`]: a tar cut at its members ([`archive`]), anything else by the engine;
//! - [`Manifest`]: the ordered chunks of a piece of content; its hash is the content id;
//! - [`erasure`]: k data + m parity shards per chunk (reed-solomon-simd);
//! - [`placement::plan`]: rendezvous-hash placement across nodes and regions.

pub mod archive;
pub mod collection;
mod engine;
pub mod erasure;
mod manifest;
pub mod placement;
mod profile;

pub use archive::{chunk_content, chunk_file, kind_of_file};
pub use collection::{Collection, CollectionEntry, CollectionError};
pub use engine::{sniff_head, Chunk, ChunkEngine, ChunkSpan, FastCdcEngine, Replayed, SNIFF_LEN};
pub use manifest::{
    ChunkEntry, ChunkId, ContentId, ErasurePolicy, Hash32, Manifest, ManifestError, ShardSet,
};
pub use profile::{sniff, ChunkProfile, ContentKind, MAX_CHUNK_LEN};
