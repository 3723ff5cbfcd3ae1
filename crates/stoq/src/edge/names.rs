//! Mutable names: a name points at a content id for a while. Content is immutable and cached
//! until evicted; names are how a publisher moves users to a new version.
//!
//! A [`NameRecord`] carries its own freshness rules: for `ttl_s` seconds after an edge fetched
//! it, the edge answers from its copy ([`Freshness::Fresh`]); for `swr_s` seconds more it still
//! answers from its copy but refreshes it in the background ([`Freshness::Stale`],
//! stale-while-revalidate); after that it must ask upstream first ([`Freshness::Expired`]).
//! No clock here: ages are passed in.

use crate::chunking::{ContentId, Hash32};

/// Longest name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// What a name points at, and for how long an edge may answer from its copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRecord {
    /// The name (UTF-8, 1 to [`MAX_NAME_LEN`] bytes, no control characters).
    pub name: String,
    /// The content it points at.
    pub id: ContentId,
    /// Seconds an edge serves its copy without asking.
    pub ttl_s: u32,
    /// Seconds after that it may still serve its copy while refreshing it.
    pub swr_s: u32,
    /// Increases with each update at the origin.
    pub version: u64,
}

/// How usable an edge's copy of a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Serve it.
    Fresh,
    /// Serve it, and refresh it in the background.
    Stale,
    /// Fetch it again before answering.
    Expired,
}

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// An empty, too long or control-character name.
    #[error("invalid name {0:?}: 1 to 255 bytes of UTF-8, no control characters")]
    BadName(String),
    /// The bytes are not a record.
    #[error("malformed name record")]
    Malformed,
}

/// Checks a name.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(NameError::BadName(name.to_owned()));
    }
    Ok(())
}

impl NameRecord {
    /// How usable a copy fetched `age_ms` ago is.
    pub fn freshness(&self, age_ms: u64) -> Freshness {
        let ttl = u64::from(self.ttl_s) * 1000;
        let swr = u64::from(self.swr_s) * 1000;
        if age_ms < ttl {
            Freshness::Fresh
        } else if age_ms < ttl + swr {
            Freshness::Stale
        } else {
            Freshness::Expired
        }
    }

    /// Seconds a copy fetched `age_ms` ago stays fresh (what an HTTP `max-age` says).
    pub fn fresh_for_s(&self, age_ms: u64) -> u32 {
        let left_ms = (u64::from(self.ttl_s) * 1000).saturating_sub(age_ms);
        (left_ms / 1000) as u32
    }

    /// `id (32) | ttl_s u32 | swr_s u32 | version u64 | name (UTF-8, the rest)`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48 + self.name.len());
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&self.ttl_s.to_be_bytes());
        out.extend_from_slice(&self.swr_s.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out
    }

    /// Decodes what [`NameRecord::encode`] wrote; anything else is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, NameError> {
        if bytes.len() < 48 {
            return Err(NameError::Malformed);
        }
        let u32_at = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let name = std::str::from_utf8(&bytes[48..]).map_err(|_| NameError::Malformed)?;
        check_name(name)?;
        Ok(NameRecord {
            id: Hash32(bytes[..32].try_into().expect("32 bytes")),
            ttl_s: u32_at(32),
            swr_s: u32_at(36),
            version: u64::from_be_bytes(bytes[40..48].try_into().expect("8 bytes")),
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record() -> NameRecord {
        NameRecord {
            name: "site/index".into(),
            id: Hash32([7; 32]),
            ttl_s: 60,
            swr_s: 30,
            version: 3,
        }
    }

    #[test]
    fn a_copy_is_fresh_then_stale_then_expired() {
        let r = record();
        assert_eq!(r.freshness(0), Freshness::Fresh);
        assert_eq!(r.freshness(59_999), Freshness::Fresh);
        assert_eq!(r.freshness(60_000), Freshness::Stale);
        assert_eq!(r.freshness(89_999), Freshness::Stale);
        assert_eq!(r.freshness(90_000), Freshness::Expired);
        let no_swr = NameRecord { swr_s: 0, ..r };
        assert_eq!(no_swr.freshness(60_000), Freshness::Expired);
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_refused() {
        let r = record();
        assert_eq!(NameRecord::decode(&r.encode()).unwrap(), r);
        assert_eq!(
            NameRecord::decode(&r.encode()[..47]),
            Err(NameError::Malformed)
        );
        let mut empty = r.encode();
        empty.truncate(48);
        assert!(matches!(
            NameRecord::decode(&empty),
            Err(NameError::BadName(_))
        ));
        assert!(check_name("a\nb").is_err());
        assert!(check_name(&"x".repeat(256)).is_err());
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics_and_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            if let Ok(r) = NameRecord::decode(&bytes) {
                prop_assert_eq!(r.encode(), bytes);
            }
        }
    }
}
