//! The edge layer's decisions, with no IO: which edge a client should use, and what an edge's
//! cache keeps. (The running edge nodes, membership and purge come with the node layer.)
//!
//! - [`EdgeRegistry`]: the known edges and [`EdgeNetwork::find_nearest`];
//! - [`cache`]: byte-bounded cache policies, LRU and the scan-resistant S3-FIFO.

pub mod cache;
mod nearest;

pub use nearest::{ClientLocation, EdgeError, EdgeNetwork, EdgeNode, EdgeRegistry, PrefixTable};
