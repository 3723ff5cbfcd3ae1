//! Route search over the matrix: A* (Dijkstra with a geographic lower bound) for additive
//! objectives, widest path for bandwidth, and node-disjoint alternatives for failover.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::cost::{balanced_cost, LinkFactors};
use super::matrix::{LinkState, RoutingMatrix};
use super::{Alternatives, Objective, Route, RoutingError};

/// A heap entry ordered by `key` (smallest first for costs; callers negate for widest).
#[derive(Debug, Clone, Copy)]
struct Entry {
    key: f64,
    node: u32,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.key.total_cmp(&other.key) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed, so `BinaryHeap` (a max-heap) pops the smallest key first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .key
            .total_cmp(&self.key)
            .then_with(|| other.node.cmp(&self.node))
    }
}

/// Nodes and links a search must not use (empty vectors ban nothing).
#[derive(Debug, Clone, Default)]
pub(crate) struct Banned {
    nodes: Vec<bool>,
    links: Vec<bool>,
}

impl Banned {
    fn node(&self, n: u32) -> bool {
        self.nodes.get(n as usize).copied().unwrap_or(false)
    }
    fn link(&self, l: u32) -> bool {
        self.links.get(l as usize).copied().unwrap_or(false)
    }
    fn ban_node(&mut self, n: u32, total: usize) {
        self.nodes.resize(total, false);
        self.nodes[n as usize] = true;
    }
    fn ban_link(&mut self, l: u32, total: usize) {
        self.links.resize(total, false);
        self.links[l as usize] = true;
    }
}

/// A path as node and link indices.
struct Path {
    nodes: Vec<u32>,
    links: Vec<u32>,
}

impl RoutingMatrix {
    fn factors(&self, link: &LinkState, to: u32) -> LinkFactors {
        let node = &self.nodes[to as usize];
        LinkFactors {
            rtt_ms: link.rtt.mean(),
            bandwidth_mbps: link.bandwidth.mean(),
            loss: link.loss.mean(),
            load: node.load.mean(),
            distance_km: link.distance_km,
            failure_rate: node.failure_rate(),
        }
    }

    /// Per-km lower bound of the objective's cost, for A*; 0 turns A* into Dijkstra.
    fn heuristic_scale(&self, objective: Objective) -> f64 {
        if self.nodes_without_geo > 0 {
            return 0.0;
        }
        match objective {
            Objective::Latency | Objective::Bandwidth => self.rtt_per_km_floor,
            Objective::Balanced => {
                self.weights.latency * self.rtt_per_km_floor + self.weights.geo / 100.0
            }
        }
    }

    /// Cheapest path from `src` to `dst` under an additive link cost, skipping banned nodes and
    /// links and links narrower than `min_bandwidth`. A* with the chord-distance bound, which is
    /// consistent, so the first time `dst` is settled its cost is optimal.
    fn cheapest(
        &self,
        src: u32,
        dst: u32,
        objective: Objective,
        banned: &Banned,
        min_bandwidth: f64,
    ) -> Option<Path> {
        let n = self.nodes.len();
        let scale = self.heuristic_scale(objective);
        let mut cost = vec![f64::INFINITY; n];
        let mut via = vec![u32::MAX; n];
        let mut settled = vec![false; n];
        let mut heap = BinaryHeap::new();
        cost[src as usize] = 0.0;
        heap.push(Entry {
            key: scale * self.chord_km(src, dst),
            node: src,
        });
        while let Some(Entry { node: u, .. }) = heap.pop() {
            if settled[u as usize] {
                continue;
            }
            settled[u as usize] = true;
            if u == dst {
                break;
            }
            for adj in &self.adjacency[u as usize] {
                let v = adj.node;
                if settled[v as usize] || banned.node(v) || banned.link(adj.link) {
                    continue;
                }
                let link = &self.links[adj.link as usize];
                if link.bandwidth.mean() < min_bandwidth {
                    continue;
                }
                let step = match objective {
                    Objective::Latency | Objective::Bandwidth => link.rtt.mean(),
                    Objective::Balanced => balanced_cost(&self.weights, &self.factors(link, v)),
                };
                let candidate = cost[u as usize] + step;
                if candidate < cost[v as usize] {
                    cost[v as usize] = candidate;
                    via[v as usize] = adj.link;
                    heap.push(Entry {
                        key: candidate + scale * self.chord_km(v, dst),
                        node: v,
                    });
                }
            }
        }
        if !cost[dst as usize].is_finite() {
            return None;
        }
        let mut nodes = vec![dst];
        let mut links = Vec::new();
        let mut at = dst;
        while at != src {
            let link = via[at as usize];
            links.push(link);
            at = self.links[link as usize].other(at);
            nodes.push(at);
        }
        nodes.reverse();
        links.reverse();
        Some(Path { nodes, links })
    }

    /// The largest bottleneck bandwidth of any path from `src` to `dst` (widest path).
    fn widest_bottleneck(&self, src: u32, dst: u32, banned: &Banned) -> Option<f64> {
        let n = self.nodes.len();
        let mut width = vec![0.0f64; n];
        let mut settled = vec![false; n];
        let mut heap = BinaryHeap::new();
        width[src as usize] = f64::INFINITY;
        heap.push(Entry {
            key: -f64::INFINITY,
            node: src,
        });
        while let Some(Entry { node: u, .. }) = heap.pop() {
            if settled[u as usize] {
                continue;
            }
            settled[u as usize] = true;
            if u == dst {
                return Some(width[dst as usize]);
            }
            for adj in &self.adjacency[u as usize] {
                let v = adj.node;
                if settled[v as usize] || banned.node(v) || banned.link(adj.link) {
                    continue;
                }
                let w = width[u as usize].min(self.links[adj.link as usize].bandwidth.mean());
                if w > width[v as usize] {
                    width[v as usize] = w;
                    heap.push(Entry { key: -w, node: v });
                }
            }
        }
        None
    }

    /// The best path for `objective`. For bandwidth: first the widest bottleneck, then the
    /// lowest-latency path among links at least that wide (so ties go to latency, exactly).
    fn best_path(&self, src: u32, dst: u32, objective: Objective, banned: &Banned) -> Option<Path> {
        match objective {
            Objective::Latency | Objective::Balanced => {
                self.cheapest(src, dst, objective, banned, 0.0)
            }
            Objective::Bandwidth => {
                let widest = self.widest_bottleneck(src, dst, banned)?;
                self.cheapest(src, dst, objective, banned, widest)
            }
        }
    }

    fn route_of(&self, path: &Path, objective: Objective) -> Route {
        let mut latency_ms = 0.0;
        let mut bottleneck_mbps = f64::INFINITY;
        let mut balanced = 0.0;
        for (i, &l) in path.links.iter().enumerate() {
            let link = &self.links[l as usize];
            latency_ms += link.rtt.mean();
            bottleneck_mbps = bottleneck_mbps.min(link.bandwidth.mean());
            if objective == Objective::Balanced {
                balanced += balanced_cost(&self.weights, &self.factors(link, path.nodes[i + 1]));
            }
        }
        let cost = match objective {
            Objective::Latency => latency_ms,
            Objective::Bandwidth => 8000.0 / bottleneck_mbps,
            Objective::Balanced => balanced,
        };
        Route {
            path: path
                .nodes
                .iter()
                .map(|&n| self.nodes[n as usize].id.clone())
                .collect(),
            latency_ms,
            bottleneck_mbps,
            cost,
            objective,
        }
    }

    fn endpoints(&self, src: &str, dst: &str) -> Result<(u32, u32), RoutingError> {
        Ok((self.node_index(src)?, self.node_index(dst)?))
    }

    /// The best route from `src` to `dst` (see [`Objective`] for what "best" means).
    pub fn find_optimal_route(
        &self,
        src: &str,
        dst: &str,
        objective: Objective,
    ) -> Result<Route, RoutingError> {
        let (s, d) = self.endpoints(src, dst)?;
        let path = self
            .best_path(s, d, objective, &Banned::default())
            .ok_or_else(|| RoutingError::NoRoute {
                from: src.to_owned(),
                to: dst.to_owned(),
            })?;
        Ok(self.route_of(&path, objective))
    }

    /// Up to `k` routes, best first, for failover. First come routes that share no node but
    /// the endpoints with any route before them (each found with the earlier routes' relays
    /// removed; a direct link is used at most once); when the graph has no more of those,
    /// routes that share no *link* with earlier ones fill the rest.
    pub fn alternative_routes(
        &self,
        src: &str,
        dst: &str,
        objective: Objective,
        k: usize,
    ) -> Result<Alternatives, RoutingError> {
        let (s, d) = self.endpoints(src, dst)?;
        if s == d || k == 0 {
            let route = self.find_optimal_route(src, dst, objective)?;
            let routes = if k == 0 { Vec::new() } else { vec![route] };
            return Ok(Alternatives {
                node_disjoint: routes.len(),
                routes,
            });
        }
        let (n, m) = (self.nodes.len(), self.links.len());
        let mut routes = Vec::new();
        let mut used_links = Vec::new();
        let mut banned = Banned::default();
        while routes.len() < k {
            let Some(path) = self.best_path(s, d, objective, &banned) else {
                break;
            };
            for &relay in &path.nodes[1..path.nodes.len() - 1] {
                banned.ban_node(relay, n);
            }
            if path.links.len() == 1 {
                banned.ban_link(path.links[0], m);
            }
            used_links.extend_from_slice(&path.links);
            routes.push(self.route_of(&path, objective));
        }
        if routes.is_empty() {
            return Err(RoutingError::NoRoute {
                from: src.to_owned(),
                to: dst.to_owned(),
            });
        }
        let node_disjoint = routes.len();
        let mut banned = Banned::default();
        for &l in &used_links {
            banned.ban_link(l, m);
        }
        while routes.len() < k {
            let Some(path) = self.best_path(s, d, objective, &banned) else {
                break;
            };
            for &l in &path.links {
                banned.ban_link(l, m);
            }
            routes.push(self.route_of(&path, objective));
        }
        Ok(Alternatives {
            routes,
            node_disjoint,
        })
    }
}
