//! What travels with a manifest besides its chunks: the content's read restriction (sent to
//! member nodes only, so an edge keeps enforcing it) and the media type recorded when it was
//! published (so every node's HTTP front serves the same `Content-Type`).
//!
//! GET_MANIFEST's RESPONSE, by length:
//!
//! ```text
//! 0 bytes            open content, no media type
//! 32 bytes           the restriction digest, no media type
//! 33 bytes or more   flags u8 (bit 0: restricted) | digest [32] (zeros when open) | media type (UTF-8, the rest)
//! ```

use super::DecodeError;

/// Longest media type recorded, bytes.
pub const MAX_MEDIA_TYPE_LEN: usize = 255;

/// Whether `text` may be recorded as a media type: 1 to 255 bytes of visible ASCII and spaces,
/// with a `/` (what an HTTP `Content-Type` header can carry).
pub fn valid_media_type(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_MEDIA_TYPE_LEN
        && text.contains('/')
        && text.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// A manifest's companions on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestMeta {
    /// BLAKE3 of the read token, for restricted content.
    pub restriction: Option<[u8; 32]>,
    /// The media type recorded at publish.
    pub media_type: Option<String>,
}

impl ManifestMeta {
    /// The RESPONSE bytes.
    pub fn encode(&self) -> Vec<u8> {
        match (&self.restriction, &self.media_type) {
            (None, None) => Vec::new(),
            (Some(d), None) => d.to_vec(),
            (restriction, Some(media_type)) => {
                let mut out = Vec::with_capacity(33 + media_type.len());
                out.push(u8::from(restriction.is_some()));
                out.extend_from_slice(&restriction.unwrap_or([0; 32]));
                out.extend_from_slice(media_type.as_bytes());
                out
            }
        }
    }

    /// Reads RESPONSE bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes.len() {
            0 => Ok(ManifestMeta::default()),
            32 => Ok(ManifestMeta {
                restriction: Some(bytes.try_into().expect("32 bytes")),
                media_type: None,
            }),
            1..=32 => Err(DecodeError::bad(
                "a manifest's RESPONSE is 0, 32 or 34+ bytes",
            )),
            _ => {
                let flags = bytes[0];
                if flags > 1 {
                    return Err(DecodeError::bad(format!(
                        "unknown manifest flags {flags:#x}"
                    )));
                }
                let media_type = std::str::from_utf8(&bytes[33..])
                    .ok()
                    .filter(|t| valid_media_type(t))
                    .ok_or_else(|| {
                        DecodeError::bad("a media type is 1 to 255 bytes of visible ASCII")
                    })?;
                Ok(ManifestMeta {
                    restriction: (flags == 1).then(|| bytes[1..33].try_into().expect("32 bytes")),
                    media_type: Some(media_type.to_owned()),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_combination_round_trips_and_the_old_forms_still_read() {
        for restriction in [None, Some([7u8; 32])] {
            for media_type in [None, Some("text/html; charset=utf-8".to_owned())] {
                let meta = ManifestMeta {
                    restriction,
                    media_type: media_type.clone(),
                };
                assert_eq!(ManifestMeta::decode(&meta.encode()).unwrap(), meta);
            }
        }
        assert_eq!(ManifestMeta::default().encode(), Vec::<u8>::new());
        assert_eq!(
            ManifestMeta::decode(&[9; 32]).unwrap().restriction,
            Some([9; 32])
        );
        assert!(ManifestMeta::decode(&[1; 5]).is_err());
        let mut bad = vec![2u8];
        bad.extend_from_slice(&[0; 32]);
        bad.extend_from_slice(b"text/plain");
        assert!(ManifestMeta::decode(&bad).is_err());
        bad[0] = 0;
        bad.push(b'\n');
        assert!(ManifestMeta::decode(&bad).is_err());
        assert!(!valid_media_type("") && !valid_media_type("plain") && valid_media_type("a/b"));
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(meta) = ManifestMeta::decode(&bytes) {
                prop_assert!(meta.media_type.as_deref().is_none_or(valid_media_type));
            }
        }
    }
}
