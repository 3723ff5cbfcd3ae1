//! STOQ: a QUIC-over-IPv6 transport with content-delivery capabilities.
//!
//! The layers (see `docs/ARCHITECTURE.md` for a map and where to start reading):
//! - [`transport`]: QUIC endpoints, trust, framed streams, pooling, limits (the
//!   `stoq-transport` crate, usable on its own);
//! - [`protocol`]: one typed request and answer per node operation, one codec for both, no IO;
//! - [`config`]: one configuration for a whole node, loaded from TOML;
//! - [`chunking`] and [`store`]: content-defined chunks, manifests, erasure coding, placement
//!   (no IO), and the on-disk content store;
//! - [`routing`]: the routing matrix, route objectives, failover alternatives and the latency
//!   predictor, with no IO;
//! - [`edge`]: nearest-edge selection, cache policies and name records, with no IO;
//! - [`client`]: dialling with pinned ids, the management requests, and verified
//!   multi-source downloads;
//! - [`node`]: a running node: roles, membership, edge cache, requests, metrics;
//! - [`http`]: the HTTP front, a node's content for browsers, curl and package managers;
//! - [`Stoq`] and [`StoqBuilder`]: the embedding surface, where a host injects its own
//!   transport, router, chunk engine or edge selection, which a node started from it uses.
//!
//! What an embedder needs is re-exported here; the modules' own layouts are private.

pub mod chunking;
pub mod client;
pub mod config;
pub mod edge;
mod facade;
pub mod http;
pub mod node;
pub mod protocol;
pub mod routing;
pub mod store;

pub use client::{FetchError, FetchOptions, FetchReport, Located, Transport};
pub use config::{ConfigError, Role, StoqConfig};
pub use facade::{FacadeError, Stoq, StoqBuilder};
pub use node::{AdminToken, Node, NodeError, NodeOptions};
pub use protocol::{Location, Request};
pub use stoq_transport as transport;
