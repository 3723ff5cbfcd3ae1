//! STOQ: a QUIC-over-IPv6 transport with content-delivery capabilities.
//!
//! The layers (see `docs/ARCHITECTURE.md`, and `../shared/DESIGN.md` for the plan):
//! - [`transport`]: QUIC endpoints, trust, framed streams, pooling, limits (the
//!   `stoq-transport` crate, usable on its own);
//! - [`protocol`]: the STOQ v1 wire format, with no IO;
//! - [`config`]: one configuration for a whole node, loaded from TOML;
//! - [`node`]: a running node: roles, membership, edge cache, requests, metrics;
//! - [`routing`]: the routing matrix, route objectives, failover alternatives and the latency
//!   predictor, with no IO;
//! - [`edge`]: nearest-edge selection, cache policies and name records, with no IO;
//! - [`chunking`] and [`store`]: content-defined chunks, manifests, erasure coding, placement,
//!   and the on-disk content store;
//! - [`facade`]: [`Stoq`] and [`StoqBuilder`], the embedding surface, where a host injects its
//!   own transport, router, chunk engine or edge selection.

pub mod chunking;
pub mod config;
pub mod edge;
pub mod facade;
pub mod node;
pub mod routing;
pub mod store;

pub use config::{ConfigError, StoqConfig};
pub use facade::{Stoq, StoqBuilder};
pub use stoq_transport as transport;
pub use stoq_transport::protocol;
