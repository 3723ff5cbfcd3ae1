//! A running node: its role, membership, request handlers, pull-through cache and load reports.
//!
//! - An **origin** serves content from its store and accepts uploads (with the admin token).
//! - An **edge** serves from its on-disk cache; a miss is fetched once (coalesced) from the
//!   best upstream, verified, cached and served.
//! - A **relay** fetches from origins on behalf of edges whose best route to an origin runs
//!   through it; it caches nothing.
//!
//! Where to read, in order: [`lifecycle`] (start and stop), [`state`] (what a node holds),
//! `serve/` (one file per group of operations), [`pull`] (fetching what is not here),
//! [`upstream`] (whom to fetch from), [`access`] (tokens), [`erasure`] (shards across nodes),
//! [`locator`] (which edge a client should use), [`report`] (what a node tells the others).

mod access;
mod admission;
mod bounded;
mod cache;
mod coalesce;
mod dialer;
mod erasure;
mod error;
mod front;
mod front_metrics;
mod histogram;
mod lifecycle;
mod locator;
mod membership;
mod metrics;
mod metrics_http;
mod pull;
mod qos;
mod recent;
mod reload;
mod report;
mod scrub;
mod serve;
mod state;
mod stored;
mod token;
mod upstream;
mod view;

pub use cache::{CacheStats, EdgeCache};
pub use coalesce::Coalescer;
pub use error::{NodeError, Refusal};
pub use front::{Arriving, NodeContent, ReadRefused, FRONT_RUN_BYTES, FRONT_RUN_CHUNKS};
pub use lifecycle::{Node, NodeOptions};
pub use reload::Reloaded;

pub use dialer::link_sample;
pub use front_metrics::FrontMetrics;
pub use membership::{
    GossipError, GossipSender, Member, Membership, MembershipTiming, Peer, Report, View,
    MAX_MEMBERS, MAX_REPORTED_RTTS,
};
pub use metrics::{
    bind_tcp_v6, registry, render, Histogram, NodeMetrics, Scrape, Snapshot, LATENCY_BUCKETS,
    REQUEST_KINDS,
};
pub use report::REPORT_INTERVAL;
pub use serve::serve_basic;
pub use state::{SharedEdges, SharedRouter};
pub use token::{AdminToken, MIN_TOKEN_LEN, TOKEN_FILE};

/// `tokio::spawn` that keeps the caller's tracing span (the node's, a request's) for the task,
/// so what the task logs still names the node and the request.
pub(crate) fn spawn_in_span<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(tracing::Instrument::in_current_span(future))
}
