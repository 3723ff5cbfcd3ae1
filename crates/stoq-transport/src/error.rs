//! The transport's typed errors.

use stoq_protocol::{ErrorCode, ProtocolError};

/// Everything that can go wrong in the transport, each with enough context to act on.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// An IPv4 (or IPv4-mapped) address was given; STOQ speaks IPv6 only.
    #[error(
        "{addr} is an IPv4 address: STOQ is IPv6-only (use an IPv6 address such as [::1]:4433)"
    )]
    Ipv4Refused {
        /// The refused address as given.
        addr: String,
    },
    /// Text that is not a socket address.
    #[error("{addr:?} is not a socket address (expected an IPv6 address such as [::1]:4433)")]
    BadAddress {
        /// The text as given.
        addr: String,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {field}: {reason}")]
    Config {
        /// The field's path, such as `transport.max_frame_size`.
        field: String,
        /// Why it is refused.
        reason: String,
    },
    /// Reading or writing the node's identity or trust files failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An operation did not finish in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A certificate, key or trust anchor could not be used.
    #[error("certificate or key error: {0}")]
    Certificate(String),
    /// The UDP socket could not be set up.
    #[error("socket setup failed: {0}")]
    Socket(#[source] std::io::Error),
    /// A connection could not be started (bad address, endpoint closed...).
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The connection failed (handshake refused, timed out, lost).
    #[error("connection failed: {0}")]
    Connection(quinn::ConnectionError),
    /// The peer closed the connection with a STOQ code: limit reached, shutting down...
    #[error("peer closed the connection: {code}: {reason}")]
    Closed {
        /// Why, as a code.
        code: ErrorCode,
        /// Why, for a person.
        reason: String,
    },
    /// Writing to a stream failed.
    #[error("stream write failed: {0}")]
    Write(quinn::WriteError),
    /// Reading from a stream failed.
    #[error("stream read failed: {0}")]
    Read(quinn::ReadError),
    /// The stream was already finished or reset.
    #[error("stream closed: {0}")]
    ClosedStream(#[from] quinn::ClosedStream),
    /// A datagram could not be sent.
    #[error("datagram failed: {0}")]
    Datagram(#[from] quinn::SendDatagramError),
    /// The peer sent bytes that break the STOQ framing rules.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The peer answered an exchange with an ERROR frame.
    #[error("peer error: {code}: {reason}")]
    Remote {
        /// What went wrong, as a code.
        code: ErrorCode,
        /// What went wrong, for a person.
        reason: String,
    },
    /// The stream ended before the exchange was complete.
    #[error("stream ended early: {0}")]
    UnexpectedEnd(&'static str),
    /// The endpoint is shutting down or was closed.
    #[error("endpoint is shut down")]
    Shutdown,
}

impl From<quinn::ConnectionError> for TransportError {
    fn from(e: quinn::ConnectionError) -> Self {
        connection_error(e)
    }
}

impl TransportError {
    /// A configuration error for `field`.
    pub fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        TransportError::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A connection error, with a peer's STOQ close code and reason surfaced as
/// [`TransportError::Closed`].
pub(crate) fn connection_error(e: quinn::ConnectionError) -> TransportError {
    match e {
        quinn::ConnectionError::ApplicationClosed(close) => TransportError::Closed {
            code: ErrorCode::from_quic(close.error_code.into_inner()),
            reason: String::from_utf8_lossy(&close.reason).into_owned(),
        },
        other => TransportError::Connection(other),
    }
}
