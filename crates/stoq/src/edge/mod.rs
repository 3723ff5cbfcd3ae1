//! The edge layer's decisions, with no IO: which edge a client should use, what an edge's
//! cache keeps, and how long a name record may be served. (The running edges are in
//! [`crate::node`].)
//!
//! - [`EdgeRegistry`]: the known edges and [`EdgeNetwork::find_nearest`];
//! - [`cache`]: byte-bounded cache policies, LRU and the scan-resistant S3-FIFO;
//! - [`names`]: mutable name records with TTL and stale-while-revalidate.

pub mod cache;
pub mod names;
mod nearest;

pub use nearest::{
    area_of, ClientLocation, EdgeError, EdgeNetwork, EdgeNode, EdgeRegistry, PrefixTable,
};
