//! The routing matrix: nodes, links and their smoothed metrics, stored sparsely.
//!
//! Nodes live in a vector indexed by a dense `u32`; each node has a short list of adjacent
//! links; each link's metrics live once, shared by both directions. Memory is linear in nodes
//! plus links, so 10,000 nodes with a handful of links each cost a few MB, where a dense matrix
//! would cost 10,000² cells per metric.

use std::collections::HashMap;

use super::cost::{link_part, node_part, CostWeights};
use super::ewma::RobustEwma;
use super::geo::GeoPoint;
use super::vivaldi::Vivaldi;
use super::{LinkSpec, MetricsUpdate, NodeSpec, RoutingError};

/// Bounds on metrics; anything outside is refused as absurd.
pub const MAX_RTT_MS: f64 = 60_000.0;
/// 10 Tbit/s: no single link STOQ will see is faster.
pub const MAX_BANDWIDTH_MBPS: f64 = 10_000_000.0;

#[derive(Debug, Clone)]
pub(crate) struct NodeState {
    pub(crate) id: String,
    pub(crate) region: String,
    pub(crate) geo: Option<GeoPoint>,
    pub(crate) load: RobustEwma,
    pub(crate) successes: u64,
    pub(crate) failures: u64,
    pub(crate) throughput_mbps: Option<RobustEwma>,
}

impl NodeState {
    /// Failures over attempts, with one imaginary success so a new node starts at 0.
    pub(crate) fn failure_rate(&self) -> f64 {
        self.failures as f64 / (self.successes + self.failures + 1) as f64
    }
}

#[derive(Debug, Clone)]
pub(crate) struct LinkState {
    pub(crate) a: u32,
    pub(crate) b: u32,
    pub(crate) rtt: RobustEwma,
    pub(crate) bandwidth: RobustEwma,
    pub(crate) loss: RobustEwma,
    /// Great-circle length, 0 if either end has no position.
    pub(crate) distance_km: f64,
}

impl LinkState {
    pub(crate) fn other(&self, from: u32) -> u32 {
        if self.a == from {
            self.b
        } else {
            self.a
        }
    }
}

/// One entry of a node's adjacency list, with copies of the link's smoothed metrics so a route
/// search reads one contiguous list per node and nothing else (kept in step by
/// `RoutingMatrix::refresh_link`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Adjacent {
    pub(crate) node: u32,
    pub(crate) link: u32,
    pub(crate) rtt_ms: f64,
    pub(crate) bandwidth_mbps: f64,
    /// The balanced objective's link-only terms.
    pub(crate) link_cost: f64,
}

/// Nodes, links and metrics; routes are computed from it by [`super::Router`].
#[derive(Debug, Clone, Default)]
pub struct RoutingMatrix {
    pub(crate) index: HashMap<String, u32>,
    pub(crate) nodes: Vec<NodeState>,
    pub(crate) adjacency: Vec<Vec<Adjacent>>,
    pub(crate) links: Vec<LinkState>,
    pub(crate) weights: CostWeights,
    pub(crate) vivaldi: Vivaldi,
    /// The smallest `rtt / distance` over links with a length: a lower bound on the RTT of any
    /// path per km of straight-line distance, used as A*'s heuristic. 0 disables it.
    pub(crate) rtt_per_km_floor: f64,
    /// The link that sets `rtt_per_km_floor`.
    floor_link: Option<u32>,
    pub(crate) nodes_without_geo: usize,
    /// Per node: the balanced objective's terms for entering it (load, history).
    pub(crate) entry_cost: Vec<f64>,
    /// Per node: position as a unit vector (zero if unknown), for chord-distance bounds.
    pub(crate) units: Vec<[f64; 3]>,
}

fn invalid(what: impl Into<String>, value: f64, reason: &'static str) -> RoutingError {
    RoutingError::Invalid {
        what: what.into(),
        value,
        reason,
    }
}

/// Checks an RTT sample.
pub(crate) fn check_rtt(what: &str, v: f64) -> Result<f64, RoutingError> {
    if !v.is_finite() || !(0.0..=MAX_RTT_MS).contains(&v) {
        return Err(invalid(
            format!("{what} rtt_ms"),
            v,
            "must be a number from 0 to 60000",
        ));
    }
    Ok(v)
}

/// Checks a bandwidth sample.
pub(crate) fn check_bandwidth(what: &str, v: f64) -> Result<f64, RoutingError> {
    if !v.is_finite() || v <= 0.0 || v > MAX_BANDWIDTH_MBPS {
        return Err(invalid(
            format!("{what} bandwidth_mbps"),
            v,
            "must be above 0 and at most 10000000 (10 Tbit/s)",
        ));
    }
    Ok(v)
}

/// Checks a loss rate.
pub(crate) fn check_loss(what: &str, v: f64) -> Result<f64, RoutingError> {
    if !v.is_finite() || !(0.0..1.0).contains(&v) {
        return Err(invalid(
            format!("{what} loss"),
            v,
            "must be from 0 up to (not including) 1; remove a link that loses everything",
        ));
    }
    Ok(v)
}

/// Checks a load figure.
pub(crate) fn check_load(what: &str, v: f64) -> Result<f64, RoutingError> {
    if !v.is_finite() || !(0.0..=1.0).contains(&v) {
        return Err(invalid(format!("{what} load"), v, "must be from 0 to 1"));
    }
    Ok(v)
}

fn unit_vector(p: &GeoPoint) -> [f64; 3] {
    let (lat, lon) = (p.lat.to_radians(), p.lon.to_radians());
    [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]
}

const EARTH_RADIUS_KM: f64 = 6371.0;

impl RoutingMatrix {
    /// An empty matrix whose `balanced` objective uses `weights`.
    pub fn new(weights: CostWeights) -> Self {
        RoutingMatrix {
            weights,
            ..Default::default()
        }
    }

    /// Adds a node; its id must be new and its numbers in range.
    pub fn add_node(&mut self, spec: NodeSpec) -> Result<(), RoutingError> {
        if self.index.contains_key(&spec.id) {
            return Err(RoutingError::DuplicateNode(spec.id));
        }
        let what = format!("node {:?}", spec.id);
        let load = check_load(&what, spec.load)?;
        let geo = match (spec.lat, spec.lon) {
            (Some(lat), Some(lon)) => Some(GeoPoint::new(lat, lon).ok_or_else(|| {
                invalid(
                    format!("{what} lat/lon"),
                    if lat.abs() > 90.0 { lat } else { lon },
                    "latitude must be -90..90 and longitude -180..180",
                )
            })?),
            (None, None) => None,
            (Some(v), None) | (None, Some(v)) => {
                return Err(invalid(
                    format!("{what} lat/lon"),
                    v,
                    "give both lat and lon, or neither",
                ))
            }
        };
        if geo.is_none() {
            self.nodes_without_geo += 1;
        }
        let index = u32::try_from(self.nodes.len()).map_err(|_| RoutingError::TooManyNodes)?;
        self.index.insert(spec.id.clone(), index);
        self.nodes.push(NodeState {
            id: spec.id,
            region: spec.region,
            geo,
            load: RobustEwma::new(load, 0.01),
            successes: 0,
            failures: 0,
            throughput_mbps: None,
        });
        self.units.push(geo.as_ref().map_or([0.0; 3], unit_vector));
        self.entry_cost.push(node_part(&self.weights, load, 0.0));
        self.adjacency.push(Vec::new());
        self.vivaldi.ensure(index as usize);
        Ok(())
    }

    /// Adds a bidirectional link between two known nodes.
    pub fn add_link(&mut self, spec: LinkSpec) -> Result<(), RoutingError> {
        let a = self.node_index(&spec.from)?;
        let b = self.node_index(&spec.to)?;
        if a == b {
            return Err(RoutingError::SelfLink(spec.from));
        }
        if self.find_link(a, b).is_some() {
            return Err(RoutingError::DuplicateLink {
                a: spec.from,
                b: spec.to,
            });
        }
        let what = format!("link {}-{}", spec.from, spec.to);
        let rtt = check_rtt(&what, spec.rtt_ms)?;
        let bandwidth = check_bandwidth(&what, spec.bandwidth_mbps)?;
        let loss = check_loss(&what, spec.loss)?;
        let distance_km = match (&self.nodes[a as usize].geo, &self.nodes[b as usize].geo) {
            (Some(p), Some(q)) => p.distance_km(q),
            _ => 0.0,
        };
        let link = u32::try_from(self.links.len()).map_err(|_| RoutingError::TooManyNodes)?;
        self.links.push(LinkState {
            a,
            b,
            rtt: RobustEwma::new(rtt, 0.05),
            bandwidth: RobustEwma::new(bandwidth, 1.0),
            loss: RobustEwma::new(loss, 0.005),
            distance_km,
        });
        let template = Adjacent {
            node: b,
            link,
            rtt_ms: 0.0,
            bandwidth_mbps: 0.0,
            link_cost: 0.0,
        };
        self.adjacency[a as usize].push(template);
        self.adjacency[b as usize].push(Adjacent {
            node: a,
            ..template
        });
        self.refresh_link(link);
        self.vivaldi.observe(a as usize, b as usize, rtt);
        Ok(())
    }

    /// Folds one measurement into the matrix. Only the link or node concerned changes; nothing
    /// is rebuilt. A bad number is refused and changes nothing.
    pub fn update_metrics(&mut self, update: MetricsUpdate) -> Result<(), RoutingError> {
        match update {
            MetricsUpdate::Link {
                from,
                to,
                rtt_ms,
                bandwidth_mbps,
                loss,
            } => {
                let a = self.node_index(&from)?;
                let b = self.node_index(&to)?;
                let link = self.find_link(a, b).ok_or(RoutingError::UnknownLink {
                    a: from.clone(),
                    b: to.clone(),
                })?;
                let what = format!("link {from}-{to}");
                // Check everything before changing anything.
                let rtt = rtt_ms.map(|v| check_rtt(&what, v)).transpose()?;
                let bandwidth = bandwidth_mbps
                    .map(|v| check_bandwidth(&what, v))
                    .transpose()?;
                let loss = loss.map(|v| check_loss(&what, v)).transpose()?;
                let state = &mut self.links[link as usize];
                if let Some(v) = rtt {
                    state.rtt.update(v);
                }
                if let Some(v) = bandwidth {
                    state.bandwidth.update(v);
                }
                if let Some(v) = loss {
                    state.loss.update(v);
                }
                self.refresh_link(link);
                if let Some(v) = rtt {
                    self.vivaldi.observe(a as usize, b as usize, v);
                }
            }
            MetricsUpdate::Load { node, load } => {
                let i = self.node_index(&node)?;
                let load = check_load(&format!("node {node:?}"), load)?;
                self.nodes[i as usize].load.update(load);
                self.refresh_node(i);
            }
            MetricsUpdate::Outcome {
                node,
                success,
                throughput_mbps,
            } => {
                let i = self.node_index(&node)?;
                let throughput = throughput_mbps
                    .map(|v| check_bandwidth(&format!("node {node:?} throughput"), v))
                    .transpose()?;
                let state = &mut self.nodes[i as usize];
                if success {
                    state.successes += 1;
                } else {
                    state.failures += 1;
                }
                if let Some(v) = throughput {
                    match &mut state.throughput_mbps {
                        Some(e) => {
                            e.update(v);
                        }
                        None => state.throughput_mbps = Some(RobustEwma::new(v, 1.0)),
                    }
                }
                self.refresh_node(i);
            }
        }
        Ok(())
    }

    /// Copies a link's smoothed metrics into both adjacency entries and keeps the A* bound
    /// valid: a lower ratio lowers it in O(1); only if the link that set the bound got slower
    /// is the bound recomputed over all links.
    fn refresh_link(&mut self, link: u32) {
        let l = &self.links[link as usize];
        let (rtt_ms, bandwidth_mbps) = (l.rtt.mean(), l.bandwidth.mean());
        let link_cost = link_part(
            &self.weights,
            rtt_ms,
            bandwidth_mbps,
            l.loss.mean(),
            l.distance_km,
        );
        let ratio = (l.distance_km > 0.0).then(|| rtt_ms / l.distance_km);
        for end in [l.a, l.b] {
            for adj in self.adjacency[end as usize]
                .iter_mut()
                .filter(|adj| adj.link == link)
            {
                adj.rtt_ms = rtt_ms;
                adj.bandwidth_mbps = bandwidth_mbps;
                adj.link_cost = link_cost;
            }
        }
        let Some(ratio) = ratio else { return };
        match self.floor_link {
            None => {
                self.rtt_per_km_floor = ratio;
                self.floor_link = Some(link);
            }
            Some(_) if ratio < self.rtt_per_km_floor => {
                self.rtt_per_km_floor = ratio;
                self.floor_link = Some(link);
            }
            Some(holder) if holder == link => self.recompute_rtt_bound(),
            Some(_) => {}
        }
    }

    fn recompute_rtt_bound(&mut self) {
        let best = self
            .links
            .iter()
            .enumerate()
            .filter(|(_, l)| l.distance_km > 0.0)
            .map(|(i, l)| (i as u32, l.rtt.mean() / l.distance_km))
            .min_by(|x, y| x.1.total_cmp(&y.1));
        (self.floor_link, self.rtt_per_km_floor) = match best {
            Some((i, ratio)) => (Some(i), ratio),
            None => (None, 0.0),
        };
    }

    /// Recomputes the balanced cost of entering node `i` after its load or history changed.
    fn refresh_node(&mut self, i: u32) {
        let n = &self.nodes[i as usize];
        self.entry_cost[i as usize] = node_part(&self.weights, n.load.mean(), n.failure_rate());
    }

    pub(crate) fn node_index(&self, id: &str) -> Result<u32, RoutingError> {
        self.index
            .get(id)
            .copied()
            .ok_or_else(|| RoutingError::UnknownNode(id.to_owned()))
    }

    pub(crate) fn find_link(&self, a: u32, b: u32) -> Option<u32> {
        self.adjacency[a as usize]
            .iter()
            .find(|adj| adj.node == b)
            .map(|adj| adj.link)
    }

    /// Straight-line (chord) distance in km: never more than the great-circle distance, so it
    /// is a safe lower bound. 0 when a position is unknown.
    pub(crate) fn chord_km(&self, a: u32, b: u32) -> f64 {
        let (p, q) = (&self.units[a as usize], &self.units[b as usize]);
        if *p == [0.0; 3] || *q == [0.0; 3] {
            return 0.0;
        }
        let d: f64 = (0..3).map(|k| (p[k] - q[k]).powi(2)).sum();
        EARTH_RADIUS_KM * d.sqrt()
    }

    /// A node's region, if the node exists.
    pub fn region(&self, id: &str) -> Option<&str> {
        let i = self.index.get(id)?;
        Some(self.nodes[*i as usize].region.as_str())
    }

    /// The smoothed RTT of the direct link between two nodes, if they have one.
    pub fn link_rtt_ms(&self, a: &str, b: &str) -> Option<f64> {
        let link = self.find_link(self.node_index(a).ok()?, self.node_index(b).ok()?)?;
        Some(self.links[link as usize].rtt.mean())
    }

    /// Latency between two nodes: the measured link RTT where there is one, otherwise the
    /// Vivaldi prediction.
    pub fn latency_ms(&self, a: &str, b: &str) -> Result<f64, RoutingError> {
        let (i, j) = (self.node_index(a)?, self.node_index(b)?);
        if let Some(link) = self.find_link(i, j) {
            return Ok(self.links[link as usize].rtt.mean());
        }
        Ok(self
            .vivaldi
            .predict(i as usize, j as usize)
            .unwrap_or(f64::NAN))
    }

    /// The learned predictor.
    pub fn predictor(&self) -> &Vivaldi {
        &self.vivaldi
    }

    /// Heap bytes held by the matrix (vectors and maps at their capacity), for the benchmark's
    /// memory-per-node figure.
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        let strings: usize = self
            .nodes
            .iter()
            .map(|n| n.id.capacity() + n.region.capacity())
            .sum();
        let keys: usize = self.index.keys().map(|k| k.capacity()).sum();
        // hashbrown: one control byte per bucket plus the (key, value) slot.
        let map = self.index.capacity() * (size_of::<(String, u32)>() + 1) + keys;
        let nodes = self.nodes.capacity() * size_of::<NodeState>() + strings;
        let adjacency = self.adjacency.capacity() * size_of::<Vec<Adjacent>>()
            + self
                .adjacency
                .iter()
                .map(|a| a.capacity() * size_of::<Adjacent>())
                .sum::<usize>();
        let links = self.links.capacity() * size_of::<LinkState>();
        let predictor = self.nodes.len() * size_of::<super::vivaldi::Coordinate>();
        let hot = self.entry_cost.capacity() * size_of::<f64>()
            + self.units.capacity() * size_of::<[f64; 3]>();
        map + nodes + adjacency + links + predictor + hot
    }
}
