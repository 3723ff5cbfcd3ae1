//! Content profiles: chunk-size parameters chosen by what the bytes are.
//!
//! Small chunks find more repeats in text and source (edits are small and local); large chunks
//! keep per-chunk overhead down where repeats are rare anyway (media and already-compressed
//! data, whose bytes change wholesale).

use serde::{Deserialize, Serialize};

/// What kind of content a file is, as far as chunking cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentKind {
    /// Mostly printable UTF-8: text, source, JSON, logs.
    Text,
    /// Anything not recognised.
    Binary,
    /// Images, audio, video, archives and other already-compressed formats.
    Media,
    /// A tar archive: cut at its members, each member's data with the profile it calls for
    /// (see `chunking::archive`); what does not parse is cut as binary.
    Tar,
    /// A zip archive (also jar, wheel, docx...): cut at its members when stored from a file,
    /// as binary from a stream.
    Zip,
    /// A collection: paths mapped to contents ([`super::collection`]), a directory published
    /// as one id. Chunked as text.
    Collection,
}

impl ContentKind {
    /// The kind's byte in a manifest.
    pub fn code(self) -> u8 {
        match self {
            ContentKind::Binary => 0,
            ContentKind::Text => 1,
            ContentKind::Media => 2,
            ContentKind::Tar => 3,
            ContentKind::Zip => 4,
            ContentKind::Collection => 5,
        }
    }

    /// The kind for a manifest byte.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(ContentKind::Binary),
            1 => Some(ContentKind::Text),
            2 => Some(ContentKind::Media),
            3 => Some(ContentKind::Tar),
            4 => Some(ContentKind::Zip),
            5 => Some(ContentKind::Collection),
            _ => None,
        }
    }

    /// The chunk sizes for this kind.
    pub fn profile(self) -> ChunkProfile {
        match self {
            ContentKind::Text | ContentKind::Collection => {
                ChunkProfile::new(4 * KIB, 16 * KIB, 64 * KIB)
            }
            ContentKind::Binary | ContentKind::Tar | ContentKind::Zip => {
                ChunkProfile::new(16 * KIB, 64 * KIB, 256 * KIB)
            }
            ContentKind::Media => ChunkProfile::new(256 * KIB, MIB, 4 * MIB),
        }
    }
}

const KIB: u32 = 1024;
const MIB: u32 = 1024 * 1024;

/// FastCDC parameters: no chunk is shorter than `min` (except the last) or longer than `max`,
/// and the average is near `avg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkProfile {
    /// Smallest chunk, bytes.
    pub min: u32,
    /// Target average chunk, bytes.
    pub avg: u32,
    /// Largest chunk, bytes.
    pub max: u32,
}

/// The largest chunk any profile may produce (16 MiB, FastCDC's own ceiling); manifests refuse
/// longer chunks.
pub const MAX_CHUNK_LEN: u32 = 16 * MIB;

impl ChunkProfile {
    /// A profile; see [`ChunkProfile::validate`] for the accepted ranges.
    pub const fn new(min: u32, avg: u32, max: u32) -> Self {
        ChunkProfile { min, avg, max }
    }

    /// Checks the sizes against FastCDC's limits and each other.
    pub fn validate(&self) -> Result<(), String> {
        use fastcdc::v2020::{
            AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
        };
        if !(MINIMUM_MIN..=MINIMUM_MAX).contains(&self.min) {
            return Err(format!(
                "min {} outside {MINIMUM_MIN}..={MINIMUM_MAX}",
                self.min
            ));
        }
        if !(AVERAGE_MIN..=AVERAGE_MAX).contains(&self.avg) {
            return Err(format!(
                "avg {} outside {AVERAGE_MIN}..={AVERAGE_MAX}",
                self.avg
            ));
        }
        if !(MAXIMUM_MIN..=MAXIMUM_MAX).contains(&self.max) {
            return Err(format!(
                "max {} outside {MAXIMUM_MIN}..={MAXIMUM_MAX}",
                self.max
            ));
        }
        if !(self.min <= self.avg && self.avg <= self.max) {
            return Err(format!(
                "need min <= avg <= max, got {} / {} / {}",
                self.min, self.avg, self.max
            ));
        }
        Ok(())
    }
}

/// Magic numbers of formats that are already compressed.
const MEDIA_MAGIC: &[&[u8]] = &[
    b"\x89PNG",          // PNG
    b"\xFF\xD8\xFF",     // JPEG
    b"GIF8",             // GIF
    b"RIFF",             // WebP, WAV, AVI
    b"\x1A\x45\xDF\xA3", // Matroska / WebM
    b"ID3",              // MP3
    b"fLaC",             // FLAC
    b"OggS",             // Ogg
    b"\x1F\x8B",         // gzip
    b"\x28\xB5\x2F\xFD", // zstd
    b"\xFD7zXZ",         // xz
    b"BZh",              // bzip2
    b"7z\xBC\xAF",       // 7-Zip
];

/// A tar block: headers are one, members are padded to whole ones.
pub const TAR_BLOCK: usize = 512;

/// Whether a 512-byte block is a tar header whose stored checksum equals the sum of its
/// bytes (the checksum field counted as spaces).
pub fn checksum_ok(block: &[u8]) -> bool {
    if block.len() != TAR_BLOCK {
        return false;
    }
    let sum: u32 = block[..148]
        .iter()
        .chain(&block[156..])
        .map(|&b| u32::from(b))
        .sum::<u32>()
        + 8 * u32::from(b' ');
    tar::Header::from_byte_slice(block)
        .cksum()
        .is_ok_and(|stored| stored == sum)
}

/// Guesses the kind from the first bytes of the content (a few KiB is plenty).
pub fn sniff(head: &[u8]) -> ContentKind {
    // A tar: the ustar magic (POSIX `ustar\0` or GNU `ustar  `) and a checksum that adds up.
    if head.len() >= TAR_BLOCK && &head[257..262] == b"ustar" && checksum_ok(&head[..TAR_BLOCK]) {
        return ContentKind::Tar;
    }
    if head.starts_with(b"PK\x03\x04") {
        return ContentKind::Zip;
    }
    if MEDIA_MAGIC.iter().any(|m| head.starts_with(m))
        || (head.len() >= 12 && &head[4..8] == b"ftyp")
    {
        return ContentKind::Media;
    }
    if head.is_empty() {
        return ContentKind::Binary;
    }
    // Text: valid UTF-8 (allowing a character cut at the end of the sample) and almost no
    // control bytes other than whitespace.
    let valid = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 > head.len(),
    };
    let controls = head
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0C))
        .count();
    if valid && controls * 100 <= head.len() {
        ContentKind::Text
    } else {
        ContentKind::Binary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_recognises_the_common_cases() {
        assert_eq!(
            sniff(b"fn main() {\n    println!(\"hi\");\n}\n"),
            ContentKind::Text
        );
        assert_eq!(sniff("héllo wörld".as_bytes()), ContentKind::Text);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), ContentKind::Media);
        assert_eq!(sniff(b"\x00\x00\x00\x18ftypmp42"), ContentKind::Media);
        assert_eq!(sniff(&[0u8, 1, 2, 3, 200, 201, 7, 8]), ContentKind::Binary);
        assert_eq!(sniff(b""), ContentKind::Binary);
    }

    #[test]
    fn every_profile_is_valid_and_ordered_by_size() {
        for kind in [
            ContentKind::Text,
            ContentKind::Binary,
            ContentKind::Media,
            ContentKind::Tar,
            ContentKind::Zip,
        ] {
            kind.profile().validate().unwrap();
            assert_eq!(ContentKind::from_code(kind.code()), Some(kind));
        }
        assert!(ContentKind::Text.profile().avg < ContentKind::Binary.profile().avg);
        assert!(ContentKind::Binary.profile().avg < ContentKind::Media.profile().avg);
        assert!(ChunkProfile::new(10, 20, 30).validate().is_err());
    }
}
