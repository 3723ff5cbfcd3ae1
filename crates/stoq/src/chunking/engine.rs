//! The chunk engine: content-defined boundaries (FastCDC 2020) and BLAKE3 ids.

use std::io::{self, Read};
use std::sync::mpsc;

use fastcdc::v2020::{FastCDC, StreamCDC};

use super::manifest::{ChunkId, Hash32};
use super::profile::{sniff, ChunkProfile, ContentKind};

/// Bytes read from the start of a stream to choose its profile.
pub const SNIFF_LEN: usize = 8 * 1024;

/// A cut chunk: its id, where it starts, and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Chunk<'a> {
    /// BLAKE3 of `data`.
    pub id: ChunkId,
    /// Offset in the content.
    pub offset: u64,
    /// The bytes.
    pub data: &'a [u8],
}

/// A chunk's place in a buffer: its id, offset and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSpan {
    /// BLAKE3 of the bytes.
    pub id: ChunkId,
    /// Offset in the buffer.
    pub offset: usize,
    /// Length.
    pub length: usize,
}

/// How content becomes chunks. [`FastCdcEngine`] is the default; a host may inject its own.
pub trait ChunkEngine: Send + Sync {
    /// The content kind and chunk sizes for content starting with `head`.
    fn profile_for(&self, head: &[u8]) -> (ContentKind, ChunkProfile);

    /// Cuts an in-memory buffer into chunks and names each.
    fn chunk_slice(&self, data: &[u8], profile: ChunkProfile) -> Vec<ChunkSpan>;

    /// Cuts a stream, handing each chunk to `sink` in order, holding at most one maximum-size
    /// chunk (plus the cutter's window) in memory. Returns the bytes read.
    fn chunk_stream(
        &self,
        reader: &mut dyn Read,
        profile: ChunkProfile,
        sink: &mut dyn FnMut(Chunk<'_>) -> io::Result<()>,
    ) -> io::Result<u64>;
}

/// FastCDC (the 2020 algorithm, normalisation level 1) with BLAKE3 ids.
#[derive(Debug, Clone, Copy, Default)]
pub struct FastCdcEngine;

/// Buffers shorter than this many maximum-size chunks are cut on one thread.
const PARALLEL_MIN_MAX_CHUNKS: usize = 8;

fn spans_from(data: &[u8], base: usize, p: ChunkProfile) -> impl Iterator<Item = ChunkSpan> + '_ {
    FastCDC::new(&data[base..], p.min, p.avg, p.max).map(move |c| ChunkSpan {
        id: Hash32::of(&data[base + c.offset..base + c.offset + c.length]),
        offset: base + c.offset,
        length: c.length,
    })
}

/// Content-defined chunking on two threads with a result identical to one thread.
///
/// FastCDC decides each cut from the bytes after the previous cut only. So a second thread can
/// cut (and hash) the second half from its own start; the first thread cuts from the beginning
/// and, past the middle, stops at the first cut that is also a chunk start of the second
/// thread: from there on both would cut alike, and the second thread's spans are taken. If the
/// two never meet (no shared boundary), the first thread simply finishes alone.
pub fn parallel_spans(data: &[u8], p: ChunkProfile) -> Vec<ChunkSpan> {
    if data.len() < PARALLEL_MIN_MAX_CHUNKS * p.max as usize {
        return spans_from(data, 0, p).collect();
    }
    let mid = data.len() / 2;
    let (starts_tx, starts_rx) = mpsc::sync_channel::<Vec<usize>>(1);
    std::thread::scope(|scope| {
        let second = scope.spawn(move || {
            let cuts: Vec<(usize, usize)> = FastCDC::new(&data[mid..], p.min, p.avg, p.max)
                .map(|c| (mid + c.offset, c.length))
                .collect();
            let _ = starts_tx.send(cuts.iter().map(|c| c.0).collect());
            cuts.into_iter()
                .map(|(offset, length)| ChunkSpan {
                    id: Hash32::of(&data[offset..offset + length]),
                    offset,
                    length,
                })
                .collect::<Vec<_>>()
        });
        let mut spans = Vec::with_capacity(data.len() / p.avg as usize + 1);
        let mut starts: Option<Vec<usize>> = None;
        for span in spans_from(data, 0, p) {
            let end = span.offset + span.length;
            spans.push(span);
            if end < mid || end == data.len() {
                continue;
            }
            let starts = starts.get_or_insert_with(|| starts_rx.recv().unwrap_or_default());
            if starts.binary_search(&end).is_ok() {
                let tail = second.join().expect("chunking thread panicked");
                spans.extend(tail.into_iter().filter(|s| s.offset >= end));
                return spans;
            }
        }
        spans
    })
}

impl ChunkEngine for FastCdcEngine {
    fn profile_for(&self, head: &[u8]) -> (ContentKind, ChunkProfile) {
        let kind = sniff(head);
        (kind, kind.profile())
    }

    /// Cuts and hashes the two halves of the buffer on two threads and splices them where the
    /// boundaries re-synchronise, so the result is exactly the sequential cut (see
    /// [`parallel_spans`]).
    fn chunk_slice(&self, data: &[u8], p: ChunkProfile) -> Vec<ChunkSpan> {
        parallel_spans(data, p)
    }

    fn chunk_stream(
        &self,
        reader: &mut dyn Read,
        p: ChunkProfile,
        sink: &mut dyn FnMut(Chunk<'_>) -> io::Result<()>,
    ) -> io::Result<u64> {
        let mut total = 0u64;
        for chunk in StreamCDC::new(reader, p.min, p.avg, p.max) {
            let chunk = chunk.map_err(|e| match e {
                fastcdc::v2020::Error::IoError(e) => e,
                other => io::Error::other(other.to_string()),
            })?;
            total += chunk.length as u64;
            sink(Chunk {
                id: Hash32::of(&chunk.data),
                offset: chunk.offset,
                data: &chunk.data,
            })?;
        }
        Ok(total)
    }
}

/// A stream whose first bytes were already read for sniffing, replayed in front of the rest.
pub type Replayed<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

/// Reads up to [`SNIFF_LEN`] bytes from the start of `reader` and returns them with a reader
/// that yields the whole stream again (those bytes, then the rest).
pub fn sniff_head<R: Read>(mut reader: R) -> io::Result<(Vec<u8>, Replayed<R>)> {
    let mut head = Vec::with_capacity(SNIFF_LEN);
    (&mut reader)
        .take(SNIFF_LEN as u64)
        .read_to_end(&mut head)?;
    let replay = io::Cursor::new(head.clone());
    Ok((head, replay.chain(reader)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Deterministic pseudo-random bytes (xorshift), for the chunking tests.
    pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    const SMALL: ChunkProfile = ChunkProfile::new(256, 1024, 4096);

    #[test]
    fn slice_and_stream_cut_the_same_chunks() {
        let data = noise(300_000, 1);
        let slice = FastCdcEngine.chunk_slice(&data, SMALL);
        let mut streamed = Vec::new();
        let total = FastCdcEngine
            .chunk_stream(&mut &data[..], SMALL, &mut |c| {
                streamed.push(ChunkSpan {
                    id: c.id,
                    offset: c.offset as usize,
                    length: c.data.len(),
                });
                Ok(())
            })
            .unwrap();
        assert_eq!(total, data.len() as u64);
        assert_eq!(slice, streamed);
        assert!(slice.iter().all(|c| c.length <= 4096));
    }

    #[test]
    fn the_parallel_cut_equals_the_sequential_cut() {
        for (len, seed) in [(100_000usize, 1u64), (1 << 20, 2), ((3 << 20) + 17, 3)] {
            let data = noise(len, seed);
            let sequential: Vec<ChunkSpan> = spans_from(&data, 0, SMALL).collect();
            assert!(data.len() >= PARALLEL_MIN_MAX_CHUNKS * SMALL.max as usize);
            assert_eq!(parallel_spans(&data, SMALL), sequential, "len {len}");
        }
    }

    #[test]
    fn the_sniffed_head_is_replayed() {
        let data = noise(20_000, 2);
        let (head, mut all) = sniff_head(&data[..]).unwrap();
        assert_eq!(head.len(), SNIFF_LEN);
        let mut back = Vec::new();
        all.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn one_changed_byte_in_64_mib_adds_at_most_three_chunks() {
        let data = noise(64 << 20, 9);
        let profile = ContentKind::Binary.profile();
        let before: std::collections::HashSet<_> = FastCdcEngine
            .chunk_slice(&data, profile)
            .iter()
            .map(|c| c.id)
            .collect();
        for at in [0usize, 1 << 20, 33 << 20, (64 << 20) - 1] {
            let mut edited = data.clone();
            edited[at] ^= 0x5a;
            let new = FastCdcEngine
                .chunk_slice(&edited, profile)
                .iter()
                .filter(|c| !before.contains(&c.id))
                .count();
            assert!(new <= 3, "{new} new chunks for one byte at {at}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn chunks_tile_the_input_exactly(len in 0usize..40_000, seed in any::<u64>()) {
            let data = noise(len, seed);
            let spans = FastCdcEngine.chunk_slice(&data, SMALL);
            let mut next = 0;
            for s in &spans {
                prop_assert_eq!(s.offset, next);
                prop_assert!(s.id.matches(&data[s.offset..s.offset + s.length]));
                next += s.length;
            }
            prop_assert_eq!(next, data.len());
        }

        #[test]
        fn boundaries_resynchronise_after_an_insertion(seed in any::<u64>(), at in 1000usize..50_000, insert in proptest::collection::vec(any::<u8>(), 1..200)) {
            let data = noise(200_000, seed);
            let mut edited = data[..at].to_vec();
            edited.extend_from_slice(&insert);
            edited.extend_from_slice(&data[at..]);
            let before: std::collections::HashSet<_> = FastCdcEngine.chunk_slice(&data, SMALL).iter().map(|c| c.id).collect();
            let after = FastCdcEngine.chunk_slice(&edited, SMALL);
            // Chunks that end before the edit are cut from unchanged bytes: all reused. (The cut
            // decision reads the byte at the cut, so a chunk ending exactly at the edit may move.)
            for c in after.iter().filter(|c| c.offset + c.length < at) {
                prop_assert!(before.contains(&c.id), "chunk at {} before the edit at {} differs", c.offset, at);
            }
            // The edit disturbs the chunks around it; within a few maximum chunk lengths the
            // cutter is back on the old boundaries and everything downstream is reused.
            let settled = at + insert.len() + 8 * SMALL.max as usize;
            for c in after.iter().filter(|c| c.offset >= settled) {
                prop_assert!(before.contains(&c.id), "chunk at {} differs; edit at {}", c.offset, at);
            }
            let reused = after.iter().filter(|c| before.contains(&c.id)).count();
            prop_assert!(reused * 10 >= after.len() * 7, "only {} of {} chunks reused", reused, after.len());
        }
    }
}
