//! What one client may hold of a front, and for how long: connections, heads, streams.

use std::time::Duration;

/// Most connections the front serves at once; further ones are closed as they arrive.
pub const MAX_HTTP_CONNECTIONS: usize = 10_000;

/// How long a client has to finish the TLS handshake, and to send a request's head.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(10);

/// Most bytes of a request's head (HTTP/1.1 buffer, HTTP/2 header list).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Most requests a client has in flight on one HTTP/2 connection.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 100;
