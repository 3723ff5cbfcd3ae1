//! Frames: the unit of everything on a STOQ stream.
//!
//! A frame is a 6-byte header followed by `length` payload bytes:
//!
//! ```text
//! +---------+------+----------------------+------------------+
//! | version | kind | length (u32, BE)     | payload ...      |
//! | 1 byte  | 1 B  | 4 bytes              | `length` bytes   |
//! +---------+------+----------------------+------------------+
//! ```
//!
//! The header is checked *before* any payload is read or allocated: a receiver that meets a
//! length above its maximum frame size fails with [`ProtocolError::FrameTooLarge`] having
//! allocated nothing.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{ErrorCode, VERSION};

/// Length of a frame header in bytes.
pub const HEADER_LEN: usize = 6;

/// The largest maximum frame size a receiver may configure (16 MiB). No STOQ v1 frame is ever
/// longer, whatever the configuration.
pub const MAX_FRAME_SIZE_CEILING: u32 = 16 * 1024 * 1024;

/// The smallest maximum frame size a receiver may configure (256 KiB). Every peer accepts frames
/// this long, so a sender that keeps DATA frames at or below [`DATA_FRAME_TARGET`] never needs
/// to know its peer's setting.
pub const MIN_MAX_FRAME_SIZE: u32 = 256 * 1024;

/// Default maximum frame size (1 MiB).
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 1024 * 1024;

/// The payload size a sender uses when it splits a body into DATA frames (256 KiB).
pub const DATA_FRAME_TARGET: usize = MIN_MAX_FRAME_SIZE as usize;

/// Longest reason text carried by an ERROR frame, in bytes.
pub const MAX_ERROR_REASON_LEN: usize = 1024;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Opens an exchange on a bidirectional stream; payload is the application request.
    Request,
    /// Answers a REQUEST; payload is the application response.
    Response,
    /// A piece of a body that follows a REQUEST or RESPONSE; payload is body bytes.
    Data,
    /// Ends a body; payload must be empty.
    End,
    /// Ends an exchange with an error; payload is an [`ErrorFrame`].
    Error,
    /// A one-way message, on unidirectional streams; payload is application defined.
    Message,
}

impl FrameKind {
    /// The kind's byte on the wire.
    pub fn to_u8(self) -> u8 {
        match self {
            FrameKind::Request => 0x01,
            FrameKind::Response => 0x02,
            FrameKind::Data => 0x03,
            FrameKind::End => 0x04,
            FrameKind::Error => 0x05,
            FrameKind::Message => 0x06,
        }
    }

    /// The kind for a byte off the wire, or `None` for a byte v1 does not define.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0x01 => FrameKind::Request,
            0x02 => FrameKind::Response,
            0x03 => FrameKind::Data,
            0x04 => FrameKind::End,
            0x05 => FrameKind::Error,
            0x06 => FrameKind::Message,
            _ => return None,
        })
    }
}

/// Why bytes off the wire are not a valid STOQ frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The header's version byte is not one this peer speaks.
    #[error("unsupported STOQ protocol version {0} (this peer speaks version {VERSION})")]
    UnsupportedVersion(u8),
    /// The header's kind byte is not defined in v1.
    #[error("unknown frame kind 0x{0:02x}")]
    UnknownFrameKind(u8),
    /// The header announces a payload longer than the receiver accepts.
    #[error("frame of {length} bytes exceeds the maximum frame size of {max} bytes")]
    FrameTooLarge {
        /// The announced payload length.
        length: u32,
        /// The receiver's maximum.
        max: u32,
    },
    /// An END frame carried a payload.
    #[error("END frame must be empty, got {0} bytes")]
    NonEmptyEnd(u32),
    /// An ERROR frame's payload is not a code followed by UTF-8 text within the limit.
    #[error("malformed ERROR frame: {0}")]
    MalformedError(&'static str),
    /// A frame arrived where the exchange does not allow it.
    #[error("unexpected {got:?} frame, expected {expected}")]
    UnexpectedFrame {
        /// The kind that arrived.
        got: FrameKind,
        /// What the exchange needed at this point.
        expected: &'static str,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({missing} bytes missing)")]
    Truncated {
        /// How many bytes of the frame never came.
        missing: usize,
    },
}

impl ProtocolError {
    /// The code a peer is told when this error ends a stream.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            ProtocolError::UnknownFrameKind(_) => ErrorCode::UnknownFrameKind,
            ProtocolError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            _ => ErrorCode::ProtocolViolation,
        }
    }
}

/// A decoded frame header: what follows and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the payload is.
    pub kind: FrameKind,
    /// Payload length in bytes.
    pub length: u32,
}

impl FrameHeader {
    /// Checks a header against `max_frame_size` and decodes it. Nothing is allocated, so a
    /// hostile length costs the receiver nothing.
    pub fn decode(bytes: [u8; HEADER_LEN], max_frame_size: u32) -> Result<Self, ProtocolError> {
        if bytes[0] != VERSION {
            return Err(ProtocolError::UnsupportedVersion(bytes[0]));
        }
        let kind = FrameKind::from_u8(bytes[1]).ok_or(ProtocolError::UnknownFrameKind(bytes[1]))?;
        let length = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
        let max = max_frame_size.min(MAX_FRAME_SIZE_CEILING);
        if length > max {
            return Err(ProtocolError::FrameTooLarge { length, max });
        }
        if kind == FrameKind::End && length != 0 {
            return Err(ProtocolError::NonEmptyEnd(length));
        }
        Ok(FrameHeader { kind, length })
    }

    /// The header's six bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let len = self.length.to_be_bytes();
        [VERSION, self.kind.to_u8(), len[0], len[1], len[2], len[3]]
    }
}

/// A whole frame: its kind and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the payload is.
    pub kind: FrameKind,
    /// The payload bytes.
    pub payload: Bytes,
}

impl Frame {
    /// A frame of `kind` carrying `payload`.
    pub fn new(kind: FrameKind, payload: impl Into<Bytes>) -> Self {
        Frame {
            kind,
            payload: payload.into(),
        }
    }

    /// The frame's header. Panics only if the payload exceeds 4 GiB, which no caller can
    /// build within the frame-size ceiling the receiver enforces anyway.
    pub fn header(&self) -> FrameHeader {
        FrameHeader {
            kind: self.kind,
            length: u32::try_from(self.payload.len()).expect("frame payload over 4 GiB"),
        }
    }

    /// Appends the encoded frame to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(HEADER_LEN + self.payload.len());
        out.put_slice(&self.header().encode());
        out.put_slice(&self.payload);
    }
}

/// Decodes one frame from the front of `buf`, advancing it past the frame.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole frame (and leaves it untouched);
/// errors as soon as the header is known to be bad, before the payload arrives.
pub fn decode_frame(buf: &mut Bytes, max_frame_size: u32) -> Result<Option<Frame>, ProtocolError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&buf[..HEADER_LEN]);
    let header = FrameHeader::decode(header, max_frame_size)?;
    let total = HEADER_LEN + header.length as usize;
    if buf.len() < total {
        return Ok(None);
    }
    buf.advance(HEADER_LEN);
    let payload = buf.split_to(header.length as usize);
    if header.kind == FrameKind::Error {
        ErrorFrame::decode(&payload)?;
    }
    Ok(Some(Frame {
        kind: header.kind,
        payload,
    }))
}

/// The payload of an ERROR frame: a code and a human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFrame {
    /// What went wrong, as a code.
    pub code: ErrorCode,
    /// What went wrong, for a person (at most [`MAX_ERROR_REASON_LEN`] bytes of UTF-8).
    pub reason: String,
}

impl ErrorFrame {
    /// An error frame; a reason longer than the limit is cut at a character boundary.
    pub fn new(code: ErrorCode, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        if reason.len() > MAX_ERROR_REASON_LEN {
            let mut cut = MAX_ERROR_REASON_LEN;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        ErrorFrame { code, reason }
    }

    /// The payload bytes: `code` (u16, BE) then the UTF-8 reason.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(2 + self.reason.len());
        out.put_u16(self.code.to_u16());
        out.put_slice(self.reason.as_bytes());
        out.freeze()
    }

    /// Decodes an ERROR frame payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ProtocolError> {
        if payload.len() < 2 {
            return Err(ProtocolError::MalformedError(
                "shorter than its 2-byte code",
            ));
        }
        if payload.len() - 2 > MAX_ERROR_REASON_LEN {
            return Err(ProtocolError::MalformedError(
                "reason longer than 1024 bytes",
            ));
        }
        let code = ErrorCode::from_u16(u16::from_be_bytes([payload[0], payload[1]]));
        let reason = std::str::from_utf8(&payload[2..])
            .map_err(|_| ProtocolError::MalformedError("reason is not UTF-8"))?
            .to_owned();
        Ok(ErrorFrame { code, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_round_trips() {
        let h = FrameHeader {
            kind: FrameKind::Data,
            length: 4242,
        };
        assert_eq!(
            FrameHeader::decode(h.encode(), DEFAULT_MAX_FRAME_SIZE),
            Ok(h)
        );
    }

    #[test]
    fn oversized_length_is_refused_from_the_header_alone() {
        let header = [VERSION, 0x03, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            FrameHeader::decode(header, DEFAULT_MAX_FRAME_SIZE),
            Err(ProtocolError::FrameTooLarge {
                length: u32::MAX,
                max: DEFAULT_MAX_FRAME_SIZE
            })
        );
        // The payload is not there and is never waited for: the header decides.
        let mut buf = Bytes::copy_from_slice(&header);
        assert!(matches!(
            decode_frame(&mut buf, DEFAULT_MAX_FRAME_SIZE),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn configured_max_cannot_exceed_the_ceiling() {
        let header = FrameHeader {
            kind: FrameKind::Data,
            length: MAX_FRAME_SIZE_CEILING + 1,
        };
        assert!(FrameHeader::decode(header.encode(), u32::MAX).is_err());
    }

    #[test]
    fn wrong_version_and_unknown_kind_are_refused() {
        assert_eq!(
            FrameHeader::decode([2, 1, 0, 0, 0, 0], DEFAULT_MAX_FRAME_SIZE),
            Err(ProtocolError::UnsupportedVersion(2))
        );
        assert_eq!(
            FrameHeader::decode([VERSION, 0x7f, 0, 0, 0, 0], DEFAULT_MAX_FRAME_SIZE),
            Err(ProtocolError::UnknownFrameKind(0x7f))
        );
    }

    #[test]
    fn end_frame_must_be_empty() {
        assert_eq!(
            FrameHeader::decode([VERSION, 0x04, 0, 0, 0, 1], DEFAULT_MAX_FRAME_SIZE),
            Err(ProtocolError::NonEmptyEnd(1))
        );
    }

    #[test]
    fn partial_frame_waits_without_consuming() {
        let mut out = BytesMut::new();
        Frame::new(FrameKind::Request, &b"hello"[..]).encode(&mut out);
        let mut partial = out.clone().freeze().slice(..8);
        assert_eq!(decode_frame(&mut partial, DEFAULT_MAX_FRAME_SIZE), Ok(None));
        assert_eq!(partial.len(), 8);
    }

    #[test]
    fn error_frame_round_trips_and_reason_is_capped() {
        let e = ErrorFrame::new(ErrorCode::NotFound, "é".repeat(600));
        assert!(e.reason.len() <= MAX_ERROR_REASON_LEN);
        assert_eq!(ErrorFrame::decode(&e.encode()), Ok(e));
        assert!(ErrorFrame::decode(&[0]).is_err());
        assert!(ErrorFrame::decode(&[0, 1, 0xff]).is_err());
    }

    fn any_kind() -> impl Strategy<Value = FrameKind> {
        prop_oneof![
            Just(FrameKind::Request),
            Just(FrameKind::Response),
            Just(FrameKind::Data),
            Just(FrameKind::Message),
        ]
    }

    proptest! {
        #[test]
        fn frame_sequences_round_trip(frames in proptest::collection::vec(
            (any_kind(), proptest::collection::vec(any::<u8>(), 0..2048)), 0..16)
        ) {
            let mut wire = BytesMut::new();
            for (kind, payload) in &frames {
                Frame::new(*kind, payload.clone()).encode(&mut wire);
            }
            let mut wire = wire.freeze();
            for (kind, payload) in &frames {
                let frame = decode_frame(&mut wire, MIN_MAX_FRAME_SIZE).unwrap().unwrap();
                prop_assert_eq!(frame.kind, *kind);
                prop_assert_eq!(&frame.payload[..], &payload[..]);
            }
            prop_assert!(wire.is_empty());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = Bytes::from(bytes);
            let _ = decode_frame(&mut buf, MIN_MAX_FRAME_SIZE);
        }

        #[test]
        fn decoded_payload_never_exceeds_the_limit(bytes in proptest::collection::vec(any::<u8>(), 6..64), max in 0u32..32) {
            let mut buf = Bytes::from(bytes);
            if let Ok(Some(frame)) = decode_frame(&mut buf, max) {
                prop_assert!(frame.payload.len() <= max as usize);
            }
        }
    }
}
