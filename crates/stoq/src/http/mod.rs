//! The HTTP front: a node's content over HTTP/1.1 and HTTP/2 (hyper) and HTTP/3 (h3 on quinn)
//! for browsers, curl and package managers.
//!
//! Where to read, in order: [`route`] (which operation a method and path ask for, no IO),
//! [`plan`] (which bytes and status a read is answered with, from its headers, no IO),
//! `listen` (sockets, TLS and connections; [`limits`]), `h3` (the same over QUIC), `serve`
//! (one request; `answer` holds the pieces of answers and the statuses refusals map to),
//! `redirect` (a read sent to the client's nearest edge, where asked), `read` (GET and HEAD,
//! streamed chunk by chunk as the node verifies them) and `publish`
//! (PUT and DELETE with the admin token). The front asks the node through
//! [`crate::node::NodeContent`], so a read over HTTP goes exactly the way a `stoq get` does:
//! the edge's cache, coalesced pulls, admission slots, verification.

mod answer;
mod collections;
mod error;
mod front;
mod h3;
pub mod limits;
mod listen;
pub mod media;
pub mod plan;
mod publish;
mod read;
mod redirect;
pub mod route;
mod serve;

pub use crate::config::HttpConfig;
pub use error::HttpError;
pub use listen::{BoundFront, HttpFront};
