//! What can go wrong in a node: [`NodeError`] when it starts, [`Refusal`] when it answers.

use stoq_transport::protocol::ErrorCode;
use stoq_transport::TransportError;

use crate::chunking::ContentId;
use crate::protocol::DecodeError;
use crate::store::StoreError;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The transport could not start (identity, socket).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The admin token file could not be read or created, or holds no valid token.
    #[error(transparent)]
    Token(std::io::Error),
    /// The cache directory could not be used.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Why a node refused or failed a request: the ERROR frame the asker gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {reason}")]
pub struct Refusal {
    /// The error code on the wire.
    pub code: ErrorCode,
    /// What happened, for a person.
    pub reason: String,
}

impl Refusal {
    /// A refusal with `code`.
    pub fn new(code: ErrorCode, reason: impl Into<String>) -> Self {
        Refusal {
            code,
            reason: reason.into(),
        }
    }

    /// BAD_REQUEST.
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, reason)
    }

    /// NOT_FOUND.
    pub fn not_found(reason: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, reason)
    }

    /// UNAUTHORIZED.
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, reason)
    }

    /// BUSY: the node is loaded, not failing; the reason says when to ask again
    /// ([`crate::protocol::busy_reason`]).
    pub fn busy(why: &str, after: std::time::Duration) -> Self {
        Self::new(ErrorCode::Busy, crate::protocol::busy_reason(after, why))
    }

    /// UNAVAILABLE: the source of the content cannot be reached now; the reason says when to
    /// ask again ([`crate::protocol::unavailable_reason`]).
    pub fn unavailable(why: &str, after: std::time::Duration) -> Self {
        Self::new(
            ErrorCode::Unavailable,
            crate::protocol::unavailable_reason(after, why),
        )
    }

    /// INTERNAL.
    pub fn internal(reason: impl ToString) -> Self {
        Self::new(ErrorCode::Internal, reason.to_string())
    }

    /// The answer to a request body that could not be read: the frame error's own code
    /// (FRAME_TOO_LARGE, PROTOCOL_VIOLATION, ...), PROTOCOL_VIOLATION for a body that ended
    /// without END, INTERNAL for anything else.
    pub fn from_body(e: &TransportError) -> Self {
        match e {
            TransportError::Protocol(p) => Self::new(p.code(), format!("bad request body: {p}")),
            TransportError::UnexpectedEnd(what) => Self::new(
                ErrorCode::ProtocolViolation,
                format!("bad request body: {what}"),
            ),
            other => Self::internal(format!("the request body failed: {other}")),
        }
    }

    /// NOT_FOUND for content this network does not have.
    pub fn no_content(id: &ContentId) -> Self {
        Self::not_found(format!("content {id} is not in this network"))
    }
}

impl From<DecodeError> for Refusal {
    fn from(e: DecodeError) -> Self {
        Refusal::new(e.code, e.reason)
    }
}

impl From<StoreError> for Refusal {
    /// Missing or unrecoverably corrupt content is NOT_FOUND; anything else is INTERNAL.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => Refusal::no_content(&id),
            StoreError::Corrupt { .. } => Refusal::not_found(e.to_string()),
            other => Refusal::internal(other),
        }
    }
}

/// What a handler returns.
pub type Answered<T> = Result<T, Refusal>;
