//! STOQ transport: QUIC over IPv6 with real TLS 1.3 trust, framed streams and enforced limits.
//!
//! This crate stands alone: a program that wants only the transport depends on it and on none
//! of the CDN's layers.
//!
//! ```no_run
//! use stoq_transport::{NodeIdentity, PeerExpectation, StoqEndpoint, TransportConfig};
//!
//! # async fn demo() -> Result<(), stoq_transport::TransportError> {
//! // A server on an ephemeral port that echoes every request.
//! let server = StoqEndpoint::bind(
//!     TransportConfig { listen: "[::1]:0".parse().unwrap(), ..Default::default() },
//!     NodeIdentity::generate()?,
//! )?;
//! server.serve(|mut req| async move {
//!     req.reply.send_response(req.payload).await?;
//!     req.reply.finish()
//! });
//!
//! // A client that trusts exactly that server's node id.
//! let client = StoqEndpoint::client(TransportConfig::default(), NodeIdentity::generate()?)?;
//! let conn = client
//!     .connect(server.local_addr()?, &PeerExpectation::Node(server.node_id()))
//!     .await?;
//! assert_eq!(&conn.request("ping").await?[..], b"ping");
//! # Ok(()) }
//! ```

mod addr;
mod config;
mod connection;
mod dial;
mod endpoint;
mod error;
mod framed;
mod identity;
mod pool;
mod serving;
mod socket;
mod trust;

pub use addr::{ensure_ipv6, parse_ipv6};
pub use config::{
    cores, CongestionController, PoolConfig, TlsConfig, TransportConfig, DEFAULT_MAX_CONNECTIONS,
    MAX_MTU_WITH_GSO,
};
pub use connection::{ConnectionStats, StoqConnection};
pub use endpoint::{EndpointCounters, ShutdownReport, StoqEndpoint};
pub use error::TransportError;
pub use framed::{join_pieces, FramedRecv, FramedSend};
pub use identity::{
    node_id_of_certificate, NodeId, NodeIdParseError, NodeIdentity, CERT_FILE, KEY_FILE,
};
pub use pool::ConnectionPool;
pub use serving::IncomingRequest;
pub use socket::bind_udp_v6;
pub use trust::{load_ca_bundle, roots_from, PeerExpectation, PINNED_SERVER_NAME};

/// quinn, whose error types appear inside [`TransportError`].
pub use quinn;

/// The wire format this transport speaks.
pub use stoq_protocol as protocol;
