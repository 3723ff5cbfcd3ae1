//! Error codes shared by ERROR frames, stream resets and connection closes.

/// A STOQ error code. The same number is used in an ERROR frame, as the application error code
/// of a QUIC stream reset or STOP_SENDING, and as the application close code of a connection,
/// so a peer always learns *why* in one vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Orderly close; nothing went wrong.
    NoError,
    /// The peer broke the framing rules (bad header, frame out of place).
    ProtocolViolation,
    /// A frame longer than the receiver's maximum frame size.
    FrameTooLarge,
    /// A frame header carried a protocol version this peer does not speak.
    UnsupportedVersion,
    /// A frame kind this version does not define.
    UnknownFrameKind,
    /// The node is at its configured connection limit; try another node or later.
    ConnectionLimit,
    /// The node is shutting down gracefully.
    ShuttingDown,
    /// The handler failed for a reason of its own.
    Internal,
    /// The request was understood but is not valid.
    BadRequest,
    /// The thing asked for does not exist here.
    NotFound,
    /// The request needs a credential it did not carry.
    Unauthorized,
    /// The node is at its limit of requests in progress: nothing failed; ask again after a
    /// pause (the reason says how long), or ask another node.
    Busy,
    /// The peer stalled within an exchange: a request that did not arrive whole, or an answer
    /// it did not take, within the receiver's deadline. The stream is reset; nothing is lost.
    Timeout,
    /// The node cannot reach the content's source now (it is cut off from every origin, or
    /// they failed): nothing is known to be missing; ask again after the pause the reason
    /// names, or ask another node. Never used for content that is not in the network.
    Unavailable,
    /// A code this version does not know; kept so it can be reported.
    Other(u16),
}

impl ErrorCode {
    /// The code's number on the wire.
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::NoError => 0x00,
            ErrorCode::ProtocolViolation => 0x01,
            ErrorCode::FrameTooLarge => 0x02,
            ErrorCode::UnsupportedVersion => 0x03,
            ErrorCode::UnknownFrameKind => 0x04,
            ErrorCode::ConnectionLimit => 0x10,
            ErrorCode::ShuttingDown => 0x11,
            ErrorCode::Internal => 0x12,
            ErrorCode::BadRequest => 0x13,
            ErrorCode::NotFound => 0x14,
            ErrorCode::Unauthorized => 0x15,
            ErrorCode::Busy => 0x16,
            ErrorCode::Timeout => 0x17,
            ErrorCode::Unavailable => 0x18,
            ErrorCode::Other(n) => n,
        }
    }

    /// The code for a number read off the wire; unknown numbers become [`ErrorCode::Other`].
    pub fn from_u16(n: u16) -> Self {
        match n {
            0x00 => ErrorCode::NoError,
            0x01 => ErrorCode::ProtocolViolation,
            0x02 => ErrorCode::FrameTooLarge,
            0x03 => ErrorCode::UnsupportedVersion,
            0x04 => ErrorCode::UnknownFrameKind,
            0x10 => ErrorCode::ConnectionLimit,
            0x11 => ErrorCode::ShuttingDown,
            0x12 => ErrorCode::Internal,
            0x13 => ErrorCode::BadRequest,
            0x14 => ErrorCode::NotFound,
            0x15 => ErrorCode::Unauthorized,
            0x16 => ErrorCode::Busy,
            0x17 => ErrorCode::Timeout,
            0x18 => ErrorCode::Unavailable,
            other => ErrorCode::Other(other),
        }
    }

    /// The code for a QUIC application error code (VarInt range); codes above `u16::MAX`
    /// are not STOQ codes and are reported as [`ErrorCode::Other`] with `u16::MAX`.
    pub fn from_quic(code: u64) -> Self {
        u16::try_from(code).map_or(ErrorCode::Other(u16::MAX), ErrorCode::from_u16)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            ErrorCode::NoError => "no error",
            ErrorCode::ProtocolViolation => "protocol violation",
            ErrorCode::FrameTooLarge => "frame too large",
            ErrorCode::UnsupportedVersion => "unsupported version",
            ErrorCode::UnknownFrameKind => "unknown frame kind",
            ErrorCode::ConnectionLimit => "connection limit reached",
            ErrorCode::ShuttingDown => "shutting down",
            ErrorCode::Internal => "internal error",
            ErrorCode::BadRequest => "bad request",
            ErrorCode::NotFound => "not found",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Busy => "busy",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Other(_) => "unknown error code",
        };
        write!(f, "{name} (0x{:02x})", self.to_u16())
    }
}

/// The reason text of a BUSY answer: it names the pause the client should take, so clients
/// of any language can read it back ([`retry_after`]).
pub fn busy_reason(after: std::time::Duration, why: &str) -> String {
    format!("busy: retry after {} ms ({why})", after.as_millis())
}

/// The reason text of an UNAVAILABLE answer, naming the pause like [`busy_reason`].
pub fn unavailable_reason(after: std::time::Duration, why: &str) -> String {
    format!("unavailable: retry after {} ms ({why})", after.as_millis())
}

/// The pause a BUSY or UNAVAILABLE reason asks for, if it names one.
pub fn retry_after(reason: &str) -> Option<std::time::Duration> {
    let rest = reason
        .strip_prefix("busy: retry after ")
        .or_else(|| reason.strip_prefix("unavailable: retry after "))?;
    let (ms, _) = rest.split_once(" ms")?;
    ms.parse().ok().map(std::time::Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_round_trips() {
        for n in 0..=u16::MAX {
            assert_eq!(ErrorCode::from_u16(n).to_u16(), n);
        }
    }

    #[test]
    fn huge_quic_codes_are_not_mistaken_for_stoq_codes() {
        assert_eq!(ErrorCode::from_quic(0x1_0000), ErrorCode::Other(u16::MAX));
        assert_eq!(ErrorCode::from_quic(0x10), ErrorCode::ConnectionLimit);
    }
}
