//! STOQ v1 wire format, with no IO.
//!
//! Everything a peer puts on a QUIC stream is a sequence of frames. This crate says what those
//! bytes are and checks them, and nothing else: no sockets, no tasks, no clock. That keeps it
//! deterministic and easy to fuzz; `stoq-transport` moves the bytes. The full specification is
//! `docs/PROTOCOL.md`.

mod codes;
mod frame;
mod hex;
mod node_id;

pub use codes::{busy_reason, retry_after, unavailable_reason, ErrorCode};
pub use frame::{
    decode_frame, ErrorFrame, Frame, FrameHeader, FrameKind, ProtocolError, DATA_FRAME_TARGET,
    DEFAULT_MAX_FRAME_SIZE, HEADER_LEN, MAX_ERROR_REASON_LEN, MAX_FRAME_SIZE_CEILING,
    MIN_MAX_FRAME_SIZE,
};
pub use hex::{decode_hex32, encode_hex32};
pub use node_id::{NodeId, NodeIdParseError};

/// The ALPN token of STOQ v1. A peer that offers anything else is refused during the handshake.
pub const ALPN: &[u8] = b"stoq/1";

/// The protocol version carried in the first byte of every frame header.
pub const VERSION: u8 = 1;
