//! Archive-aware chunking: a tar stream, or a zip file, is cut at its member boundaries.
//!
//! A tar interleaves 512-byte headers (paths with the version in them, fresh mtimes) with the
//! members' data. Cut blindly, nearly every content-defined chunk spans a header, so a new
//! release shares almost nothing with the last. Here each header block is a chunk of its own
//! and each member's data (with its padding to 512 bytes) is cut on its own, with the profile
//! its first bytes call for: a header that changes drags no file data with it, and a file
//! that did not change gives the same chunks in every archive that carries it. Extension
//! records (pax, GNU long names) are members like any other, so they are small chunks too.
//!
//! A zip is cut the same way from its central directory (read with the `zip` crate, so it
//! needs a file it can seek in): each local header is a chunk, each member's stored or
//! compressed data is cut on its own, and the central directory is cut as plain binary. From
//! a plain stream, a zip is cut as binary.
//!
//! The chunks tile the stream exactly, so reassembly is concatenation as for any content. If
//! the stream stops looking like a tar (a bad checksum, a truncated member, the end-of-archive
//! blocks), the rest is cut by plain content-defined chunking: nothing is lost, only dedup.
//! The same bytes always give the same chunks.

use std::io::{self, Read, Seek, SeekFrom};

use super::engine::{sniff_head, Chunk, ChunkEngine, SNIFF_LEN};
use super::manifest::Hash32;
use super::profile::{checksum_ok, sniff, ContentKind, TAR_BLOCK as BLOCK};

/// Cuts content of `kind` from `reader` with `engine`: a tar member by member (see
/// this module), anything else as one stream with the kind's profile.
pub fn chunk_content(
    engine: &dyn ChunkEngine,
    reader: &mut dyn Read,
    kind: ContentKind,
    sink: &mut dyn FnMut(Chunk<'_>) -> io::Result<()>,
) -> io::Result<u64> {
    match kind {
        ContentKind::Tar => chunk_tar(engine, reader, ContentKind::Binary, sink),
        other => engine.chunk_stream(reader, other.profile(), sink),
    }
}

/// The longest a zip local header can be: 30 fixed bytes, a name and an extra field of at most
/// 65,535 bytes each.
const MAX_LOCAL_HEADER: u64 = 30 + 2 * 65_535;

/// The kind `engine` gives the file from its first [`SNIFF_LEN`] bytes (read from its start),
/// as a publisher chooses it.
pub fn kind_of_file<F: Read + Seek>(
    engine: &dyn ChunkEngine,
    file: &mut F,
) -> io::Result<ContentKind> {
    file.seek(SeekFrom::Start(0))?;
    let mut head = Vec::with_capacity(SNIFF_LEN);
    file.take(SNIFF_LEN as u64).read_to_end(&mut head)?;
    Ok(engine.profile_for(&head).0)
}

/// [`chunk_content`] for a file it can seek in: a zip is cut at its members
/// ([`chunk_zip`]); anything else as from a stream. Reads from the file's start.
pub fn chunk_file<F: Read + Seek>(
    engine: &dyn ChunkEngine,
    file: &mut F,
    kind: ContentKind,
    sink: &mut dyn FnMut(Chunk<'_>) -> io::Result<()>,
) -> io::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    match kind {
        ContentKind::Zip => chunk_zip(engine, file, sink),
        other => chunk_content(
            engine,
            &mut io::BufReader::with_capacity(1 << 20, file),
            other,
            sink,
        ),
    }
}

/// Cuts a zip at its members: where the central directory says each local header and each
/// member's data start, in file order; whatever lies between (data descriptors, the central
/// directory, anything unlisted) is cut as plain binary. A zip whose directory cannot be read
/// is cut as plain binary throughout.
pub fn chunk_zip<F: Read + Seek>(
    engine: &dyn ChunkEngine,
    file: &mut F,
    sink: &mut dyn FnMut(Chunk<'_>) -> io::Result<()>,
) -> io::Result<u64> {
    let mut members: Vec<(u64, u64, u64)> = match zip::ZipArchive::new(&mut *file) {
        Ok(mut archive) => (0..archive.len())
            .filter_map(|i| {
                let member = archive.by_index_raw(i).ok()?;
                Some((
                    member.header_start(),
                    member.data_start(),
                    member.compressed_size(),
                ))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    members.sort_unstable();
    file.seek(SeekFrom::Start(0))?;
    let mut reader = io::BufReader::with_capacity(1 << 20, file);
    let mut at = 0u64;
    for (header, data, size) in members {
        // Members out of order, overlapping what was cut already, or with a local header
        // longer than a zip allows: the rest is plain.
        if header < at || data < header || data - header > MAX_LOCAL_HEADER {
            break;
        }
        for (len, kind) in [
            (header - at, Some(ContentKind::Binary)),
            (data - header, None),
        ] {
            let read = piece(engine, &mut reader, at, len, kind, sink)?;
            at += read;
            if read < len {
                return Ok(at);
            }
        }
        let (head, mut rest) = sniff_head((&mut reader).take(size))?;
        let kind = match sniff(&head) {
            ContentKind::Text => ContentKind::Text,
            _ => ContentKind::Binary,
        };
        let read = plain(engine, &mut rest, kind, at, sink)?;
        at += read;
        if read < size {
            return Ok(at);
        }
    }
    at += piece(
        engine,
        &mut reader,
        at,
        u64::MAX,
        Some(ContentKind::Binary),
        sink,
    )?;
    Ok(at)
}

/// The next `len` bytes of `reader` (fewer at its end), at offset `base`: one chunk when
/// `kind` is `None` (a zip local header, at most 30 + 2 × 65,535 bytes), else cut with that
/// kind's profile. Returns the bytes read.
fn piece(
    engine: &dyn ChunkEngine,
    reader: &mut dyn Read,
    base: u64,
    len: u64,
    kind: Option<ContentKind>,
    sink: &mut dyn FnMut(Chunk<'_>) -> io::Result<()>,
) -> io::Result<u64> {
    let mut part = reader.take(len);
    match kind {
        Some(kind) => plain(engine, &mut part, kind, base, sink),
        None => {
            let mut bytes = Vec::new();
            part.read_to_end(&mut bytes)?;
            if !bytes.is_empty() {
                sink(Chunk {
                    id: Hash32::of(&bytes),
                    offset: base,
                    data: &bytes,
                })?;
            }
            Ok(bytes.len() as u64)
        }
    }
}

/// Cuts a tar stream member by member (see the module docs), handing chunks to `sink` in
/// order with their offsets in the whole stream; `fallback` is the profile for whatever does
/// not parse as tar. Holds one member's chunk at a time, like [`ChunkEngine::chunk_stream`].
/// Returns the bytes read.
pub fn chunk_tar(
    engine: &dyn ChunkEngine,
    reader: &mut dyn Read,
    fallback: ContentKind,
    sink: &mut dyn FnMut(Chunk<'_>) -> io::Result<()>,
) -> io::Result<u64> {
    let mut offset = 0u64;
    loop {
        let mut block = [0u8; BLOCK];
        let got = read_full(reader, &mut block)?;
        let header_ok = got == BLOCK && block.iter().any(|&b| b != 0) && checksum_ok(&block);
        let size = tar::Header::from_byte_slice(&block).entry_size().ok();
        let Some(size) = size.filter(|_| header_ok) else {
            // Not a header (or the end-of-archive blocks): the rest, these bytes first, is
            // cut as plain content.
            let mut rest = io::Cursor::new(&block[..got]).chain(reader);
            return Ok(offset + plain(engine, &mut rest, fallback, offset, sink)?);
        };
        sink(Chunk {
            id: Hash32::of(&block),
            offset,
            data: &block,
        })?;
        offset += BLOCK as u64;
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        if padded == 0 {
            continue;
        }
        let mut member = reader.take(padded);
        let (head, mut member) = sniff_head(&mut member)?;
        let kind = sniff(&head);
        let start = offset;
        let read = engine.chunk_stream(&mut member, kind.profile(), &mut |c| {
            sink(Chunk {
                offset: start + c.offset,
                ..c
            })
        })?;
        offset += read;
        if read < padded {
            // The stream ended inside a member: what there was is chunked, nothing more.
            return Ok(offset);
        }
    }
}

/// Content-defined chunks of the rest of the stream, offsets counted from `base`.
fn plain(
    engine: &dyn ChunkEngine,
    reader: &mut dyn Read,
    kind: ContentKind,
    base: u64,
    sink: &mut dyn FnMut(Chunk<'_>) -> io::Result<()>,
) -> io::Result<u64> {
    engine.chunk_stream(reader, kind.profile(), &mut |c| {
        sink(Chunk {
            offset: base + c.offset,
            ..c
        })
    })
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunking::engine::tests::noise;
    use crate::chunking::engine::FastCdcEngine;
    use proptest::prelude::*;

    /// A tar built with the `tar` crate: `(path, bytes)` members, GNU long names for long
    /// paths, plus a directory and a hard link.
    fn tar_of(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_size(0);
        dir.set_mode(0o755);
        builder
            .append_data(&mut dir, "pkg-1.0/", io::empty())
            .unwrap();
        for (path, data) in members {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(1_700_000_000);
            builder.append_data(&mut header, path, &data[..]).unwrap();
        }
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Link);
        link.set_size(0);
        builder
            .append_link(&mut link, "pkg-1.0/hard", members[0].0)
            .unwrap();
        builder.into_inner().unwrap()
    }

    /// The chunks of `data` cut as `kind` from a seekable file, each checked against its id
    /// and covering the whole input.
    fn cut(data: &[u8], kind: ContentKind) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let total = chunk_file(&FastCdcEngine, &mut io::Cursor::new(data), kind, &mut |c| {
            assert!(c.id.matches(c.data));
            out.push((c.offset, c.data.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(total, data.len() as u64);
        out
    }

    fn chunks_of(data: &[u8]) -> Vec<(u64, Vec<u8>)> {
        cut(data, ContentKind::Tar)
    }

    /// Whether `data` cut as `kind` gives chunks that tile it exactly, in order.
    fn tiles(data: &[u8], kind: ContentKind) -> bool {
        let mut next = 0u64;
        let mut back = Vec::with_capacity(data.len());
        for (offset, bytes) in cut(data, kind) {
            if offset != next {
                return false;
            }
            next += bytes.len() as u64;
            back.extend_from_slice(&bytes);
        }
        back == data
    }

    /// The chunks tile the tar `data` exactly, in order.
    fn reassembles(data: &[u8]) -> bool {
        tiles(data, ContentKind::Tar)
    }

    /// Bytes of `two`'s chunks (cut as `kind`) that `one`'s chunks do not hold.
    fn new_bytes(one: &[u8], two: &[u8], kind: ContentKind) -> usize {
        let before: std::collections::HashSet<Vec<u8>> =
            cut(one, kind).into_iter().map(|(_, b)| b).collect();
        cut(two, kind)
            .into_iter()
            .filter(|(_, b)| !before.contains(b))
            .map(|(_, b)| b.len())
            .sum()
    }

    fn release(version: &str, changed: &[u8]) -> Vec<u8> {
        let long = format!(
            "pkg-{version}/{}/deep/module.py",
            "a-very-long-directory-name".repeat(5)
        );
        tar_of(&[
            (&format!("pkg-{version}/README"), b"read me\n".to_vec()),
            (&format!("pkg-{version}/big.bin"), noise(300_000, 7)),
            (&long, noise(50_000, 8)),
            (&format!("pkg-{version}/empty"), Vec::new()),
            (&format!("pkg-{version}/changed.txt"), changed.to_vec()),
        ])
    }

    #[test]
    fn a_tar_is_recognised_and_cut_at_its_members() {
        let data = release("1.0", b"version 1\n");
        assert_eq!(sniff(&data), ContentKind::Tar);
        assert_ne!(sniff(&noise(4096, 1)), ContentKind::Tar);
        assert!(reassembles(&data));
        // Every header block is a chunk of its own, at a member boundary.
        let chunks = chunks_of(&data);
        let headers = chunks
            .iter()
            .filter(|(_, b)| b.len() == BLOCK && checksum_ok(b))
            .count();
        assert!(headers >= 8, "{headers} header chunks");
    }

    #[test]
    fn a_new_release_shares_every_unchanged_member() {
        let one = release("1.0", b"version 1\n");
        let two = release("1.1", b"version 2, with more words\n");
        let new_bytes = new_bytes(&one, &two, ContentKind::Tar);
        // New: the headers (renamed paths) and the changed file, nothing of the big members.
        assert!(
            new_bytes < 16 * 1024,
            "{new_bytes} new bytes of {}",
            two.len()
        );
    }

    #[test]
    fn pax_extended_headers_are_members_of_their_own() {
        // A pax header (type 'x') carrying a long path, then the member it describes.
        let long = format!("pkg-2.0/{}/file.txt", "deep".repeat(40));
        let record = format!("path={long}\n");
        let record = format!(
            "{} {record}",
            record.len() + 1 + (record.len() + 4).to_string().len()
        );
        let mut builder = tar::Builder::new(Vec::new());
        let mut pax = tar::Header::new_ustar();
        pax.set_entry_type(tar::EntryType::XHeader);
        pax.set_size(record.len() as u64);
        builder
            .append_data(&mut pax, "PaxHeader/file", record.as_bytes())
            .unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_size(5000);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "file.txt", &noise(5000, 4)[..])
            .unwrap();
        let data = builder.into_inner().unwrap();
        assert_eq!(sniff(&data), ContentKind::Tar);
        assert!(reassembles(&data));
        let chunks = chunks_of(&data);
        // pax header, its record, the member's header, its data, the end blocks.
        assert!(chunks.len() >= 5, "{} chunks", chunks.len());
        assert_eq!(
            chunks[1].1.len(),
            512,
            "the pax record is a chunk of its own"
        );
    }

    #[test]
    fn truncated_and_corrupt_archives_round_trip_through_the_fallback() {
        let data = release("1.0", b"x\n");
        for cut in [100, 512, 700, 20_000, data.len() - 1] {
            assert!(reassembles(&data[..cut]), "cut at {cut}");
        }
        let mut corrupt = data.clone();
        corrupt[512 + 148] ^= 0x55; // a checksum digit of the second header
        assert!(reassembles(&corrupt));
    }

    /// A zip built with the `zip` crate: stored members (no compression in this build).
    fn zip_of(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .last_modified_time(zip::DateTime::default());
        for (path, data) in members {
            writer.start_file(*path, options).unwrap();
            io::Write::write_all(&mut writer, data).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn a_zip_is_cut_at_its_members_and_a_new_version_shares_the_unchanged_ones() {
        let release = |version: &str| {
            zip_of(&[
                (&format!("pkg-{version}/big.bin"), noise(300_000, 7)),
                (&format!("pkg-{version}/empty"), Vec::new()),
                (
                    &format!("pkg-{version}/VERSION"),
                    version.as_bytes().to_vec(),
                ),
            ])
        };
        let (one, two) = (release("1.0"), release("1.1"));
        assert_eq!(sniff(&one), ContentKind::Zip);
        let new_bytes = new_bytes(&one, &two, ContentKind::Zip);
        assert!(
            new_bytes < 8 * 1024,
            "{new_bytes} new bytes of {}",
            two.len()
        );
        // Truncated (no central directory) or not a zip at all: cut as binary, exactly.
        assert!(tiles(&one, ContentKind::Zip));
        for end in [10, 400, one.len() / 2, one.len() - 5] {
            assert!(tiles(&one[..end], ContentKind::Zip), "cut at {end}");
        }
        assert!(tiles(&noise(100_000, 3), ContentKind::Zip));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_bytes_reassemble_exactly(mut data in proptest::collection::vec(any::<u8>(), 0..6000), header_at in 0usize..4) {
            // Half the time, make the bytes start with (or contain) a plausible tar header.
            if header_at < 2 {
                let tar = tar_of(&[("f", data.clone())]);
                let at = (header_at * 512).min(data.len());
                data.splice(at..at, tar[..512].iter().copied());
            }
            prop_assert!(reassembles(&data));
        }
    }
}
