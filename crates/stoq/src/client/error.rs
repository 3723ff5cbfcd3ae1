//! Why a fetch failed, and which failures are only a busy node.

use std::time::Duration;

use stoq_transport::protocol::ErrorCode;
use stoq_transport::TransportError;

use crate::protocol::retry_after;

/// The pause after a BUSY answer that names none.
pub const DEFAULT_BUSY_PAUSE: Duration = Duration::from_millis(100);

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request could not be made or answered.
    #[error("{source_addr}: {error}")]
    Transport {
        /// The source.
        source_addr: String,
        /// What happened.
        error: TransportError,
    },
    /// A source sent a manifest that does not hash to the content id.
    #[error("{0}: the manifest does not match the content id")]
    BadManifest(String),
    /// A source sent a chunk that does not match its id.
    #[error("{source_addr}: chunk {index} does not match its id; source dropped")]
    BadChunk {
        /// The source.
        source_addr: String,
        /// The chunk's index.
        index: u32,
    },
    /// A source took longer than its stall deadline for a chunk.
    #[error("{source_addr}: chunk {index} stalled past {after:?}; source dropped")]
    Stalled {
        /// The source.
        source_addr: String,
        /// The chunk's index.
        index: u32,
        /// The deadline it missed.
        after: Duration,
    },
    /// Every source failed before the content was complete.
    #[error("no source could deliver chunk {index}; last error: {last}")]
    Exhausted {
        /// The chunk nobody delivered.
        index: u32,
        /// The last source's error.
        last: String,
    },
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// No source was given.
    #[error("no source to fetch from")]
    NoSource,
}

impl FetchError {
    /// The pause a source asked for when it answered BUSY (it is loaded) or UNAVAILABLE (it
    /// cannot reach the content's source for now): not failing, ask again later. `None` for
    /// every other failure.
    pub fn busy_pause(&self) -> Option<Duration> {
        match self {
            FetchError::Transport {
                error:
                    TransportError::Remote {
                        code: ErrorCode::Busy | ErrorCode::Unavailable,
                        reason,
                    },
                ..
            } => Some(retry_after(reason).unwrap_or(DEFAULT_BUSY_PAUSE)),
            _ => None,
        }
    }
}
