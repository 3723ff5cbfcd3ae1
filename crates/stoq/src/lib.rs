//! STOQ: a QUIC-over-IPv6 transport with content-delivery capabilities.
//!
//! The layers (see `docs/ARCHITECTURE.md`, and `../shared/DESIGN.md` for the plan):
//! - [`transport`]: QUIC endpoints, trust, framed streams, pooling, limits (the
//!   `stoq-transport` crate, usable on its own);
//! - [`protocol`]: the STOQ v1 wire format, with no IO;
//! - [`config`]: one configuration for a whole node, loaded from TOML;
//! - [`node`]: the requests a running node answers;
//! - [`routing`]: the routing matrix, route objectives, failover alternatives and the latency
//!   predictor, with no IO;
//! - [`edge`]: nearest-edge selection and cache policies, with no IO.
//!
//! The chunk engine, content store and edge network join as their issues land.

pub mod chunking;
pub mod config;
pub mod edge;
pub mod node;
pub mod routing;
pub mod store;

pub use config::{ConfigError, StoqConfig};
pub use stoq_transport as transport;
pub use stoq_transport::protocol;
