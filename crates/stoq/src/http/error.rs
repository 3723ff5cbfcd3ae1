//! Why a front could not start.

use std::net::SocketAddr;

/// Why the front could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The `[http]` settings are unusable.
    #[error("{0}")]
    Config(String),
    /// The address could not be bound.
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate or key could not be read or used.
    #[error("cannot use the HTTP certificate {path}: {reason}")]
    Certificate {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}
