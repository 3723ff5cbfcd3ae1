//! The routing layer: which way content should travel between nodes. Pure and deterministic:
//! metrics come in as values, routes go out; no sockets, no tasks, no clock.
//!
//! - [`RoutingMatrix`]: nodes and links with smoothed metrics ([`RobustEwma`]), sparse so it
//!   scales to 10,000 nodes;
//! - [`Objective`]: `latency` (sum of link RTTs), `bandwidth` (widest bottleneck, ties by
//!   latency) or `balanced` (the multi-factor cost in [`cost`]);
//! - [`RoutingMatrix::alternative_routes`]: node-disjoint failover routes;
//! - [`Vivaldi`]: a latency predictor for pairs never measured;
//! - [`Topology`]: the JSON topology file of `stoq route`.

pub mod cost;
mod ewma;
mod geo;
mod matrix;
mod search;
pub mod synthetic;
mod topology;
mod vivaldi;

use serde::{Deserialize, Serialize};

pub use cost::CostWeights;
pub use ewma::{Ewma, RobustEwma};
pub use geo::{GeoPoint, FIBRE_KM_PER_MS};
pub use matrix::{RoutingMatrix, MAX_BANDWIDTH_MBPS, MAX_RTT_MS};
pub use topology::{Topology, TopologyError};
pub use vivaldi::{Coordinate, Vivaldi, DIMENSIONS};

/// A node as a topology file or membership describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Unique id.
    pub id: String,
    /// Region name (free text, e.g. `eu-central`).
    #[serde(default)]
    pub region: String,
    /// Latitude in degrees; with `lon`, enables geographic terms and A*.
    #[serde(default)]
    pub lat: Option<f64>,
    /// Longitude in degrees.
    #[serde(default)]
    pub lon: Option<f64>,
    /// Current load, 0 (idle) to 1 (saturated).
    #[serde(default)]
    pub load: f64,
}

/// A bidirectional link as a topology file describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// One end.
    pub from: String,
    /// The other end.
    pub to: String,
    /// Round-trip time in ms.
    pub rtt_ms: f64,
    /// Bandwidth in Mbit/s.
    pub bandwidth_mbps: f64,
    /// Loss rate, 0 to below 1.
    #[serde(default)]
    pub loss: f64,
}

/// What a route is chosen for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Minimise the sum of link RTTs. `cost` = that sum, in ms.
    Latency,
    /// Maximise the smallest link bandwidth on the path; among equally wide paths, the lowest
    /// latency. `cost` = ms to move 1 MB at the bottleneck (8000 / bottleneck_mbps).
    Bandwidth,
    /// Minimise the multi-factor cost of [`cost`]. `cost` = that sum.
    #[default]
    Balanced,
}

impl std::str::FromStr for Objective {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "latency" => Ok(Objective::Latency),
            "bandwidth" => Ok(Objective::Bandwidth),
            "balanced" => Ok(Objective::Balanced),
            other => Err(format!(
                "unknown objective {other:?}: use latency, bandwidth or balanced"
            )),
        }
    }
}

/// A chosen route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Route {
    /// Node ids from source to destination (relays in between).
    pub path: Vec<String>,
    /// Sum of the links' smoothed RTTs.
    pub latency_ms: f64,
    /// Smallest smoothed bandwidth on the path (infinite for a route from a node to itself).
    pub bottleneck_mbps: f64,
    /// The objective's cost (see [`Objective`]).
    pub cost: f64,
    /// The objective the route was chosen for.
    pub objective: Objective,
}

impl Route {
    /// Number of links crossed.
    pub fn hops(&self) -> usize {
        self.path.len().saturating_sub(1)
    }
}

/// Failover routes, best first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alternatives {
    /// The routes.
    pub routes: Vec<Route>,
    /// How many of the first routes share no node but the endpoints with one another.
    pub node_disjoint: usize,
}

/// One measurement for [`Router::update_metrics`].
#[derive(Debug, Clone, PartialEq)]
pub enum MetricsUpdate {
    /// Samples of an existing link (RTT from QUIC path stats, observed bandwidth, loss).
    Link {
        /// One end.
        from: String,
        /// The other end.
        to: String,
        /// RTT sample in ms.
        rtt_ms: Option<f64>,
        /// Bandwidth sample in Mbit/s.
        bandwidth_mbps: Option<f64>,
        /// Loss-rate sample.
        loss: Option<f64>,
    },
    /// A node's current load.
    Load {
        /// The node.
        node: String,
        /// Load, 0 to 1.
        load: f64,
    },
    /// How a transfer from a node went (its history).
    Outcome {
        /// The node.
        node: String,
        /// Whether it succeeded.
        success: bool,
        /// Throughput observed, if it moved data.
        throughput_mbps: Option<f64>,
    },
}

/// Why routing refused an input or found nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RoutingError {
    /// A node id that is not in the matrix.
    #[error("unknown node {0:?}")]
    UnknownNode(String),
    /// A node id given twice.
    #[error("duplicate node id {0:?}")]
    DuplicateNode(String),
    /// A link given twice (in either direction).
    #[error("duplicate link between {a:?} and {b:?}")]
    DuplicateLink {
        /// One end.
        a: String,
        /// The other end.
        b: String,
    },
    /// A link from a node to itself.
    #[error("link from {0:?} to itself")]
    SelfLink(String),
    /// Metrics for a link that does not exist.
    #[error("no link between {a:?} and {b:?}")]
    UnknownLink {
        /// One end.
        a: String,
        /// The other end.
        b: String,
    },
    /// A negative, non-finite or absurd number.
    #[error("{what} = {value} is invalid: {reason}")]
    Invalid {
        /// Which figure.
        what: String,
        /// The value given.
        value: f64,
        /// The accepted range.
        reason: &'static str,
    },
    /// The destination cannot be reached from the source.
    #[error("no route from {from:?} to {to:?}: the graph does not connect them")]
    NoRoute {
        /// Source.
        from: String,
        /// Destination.
        to: String,
    },
    /// More than 2^32 nodes or links.
    #[error("too many nodes or links for one matrix")]
    TooManyNodes,
}

/// Route selection as a host application sees it; [`RoutingMatrix`] is the implementation, and
/// a host may inject its own.
pub trait Router: Send + Sync {
    /// The best route for `objective`.
    fn find_optimal_route(
        &self,
        src: &str,
        dst: &str,
        objective: Objective,
    ) -> Result<Route, RoutingError>;
    /// Up to `k` failover routes, best first.
    fn alternative_routes(
        &self,
        src: &str,
        dst: &str,
        objective: Objective,
        k: usize,
    ) -> Result<Alternatives, RoutingError>;
    /// Folds in one measurement.
    fn update_metrics(&mut self, update: MetricsUpdate) -> Result<(), RoutingError>;
    /// Latency between two nodes: measured if linked, predicted otherwise.
    fn latency_ms(&self, a: &str, b: &str) -> Result<f64, RoutingError>;
}

impl Router for RoutingMatrix {
    fn find_optimal_route(
        &self,
        src: &str,
        dst: &str,
        objective: Objective,
    ) -> Result<Route, RoutingError> {
        RoutingMatrix::find_optimal_route(self, src, dst, objective)
    }
    fn alternative_routes(
        &self,
        src: &str,
        dst: &str,
        objective: Objective,
        k: usize,
    ) -> Result<Alternatives, RoutingError> {
        RoutingMatrix::alternative_routes(self, src, dst, objective, k)
    }
    fn update_metrics(&mut self, update: MetricsUpdate) -> Result<(), RoutingError> {
        RoutingMatrix::update_metrics(self, update)
    }
    fn latency_ms(&self, a: &str, b: &str) -> Result<f64, RoutingError> {
        RoutingMatrix::latency_ms(self, a, b)
    }
}

/// One measurement of a link, as the layer that owns the connection took it (the node takes
/// it from QUIC's own path statistics, so peers that already talk need no probe traffic).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkSample {
    /// Smoothed round-trip time, milliseconds.
    pub rtt_ms: f64,
    /// Fraction of packets lost so far, if any were sent.
    pub loss: Option<f64>,
}

/// The metrics update for a link sample from `local` to `peer`.
pub fn link_update(local: &str, peer: &str, sample: LinkSample) -> MetricsUpdate {
    MetricsUpdate::Link {
        from: local.to_owned(),
        to: peer.to_owned(),
        rtt_ms: Some(sample.rtt_ms),
        bandwidth_mbps: None,
        loss: sample.loss.map(|l| l.min(0.999)),
    }
}
