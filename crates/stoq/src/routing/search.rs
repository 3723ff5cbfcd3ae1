//! Route search over the matrix: A* (Dijkstra with a geographic lower bound) for additive
//! objectives, widest path for bandwidth, and node-disjoint alternatives for failover.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::matrix::RoutingMatrix;
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

/// A widest-path heap entry: widest first; among equal widths, the one nearest the destination
/// (so ties, common when many links share a speed, are explored towards the goal).
#[derive(Debug, Clone, Copy)]
struct WidthEntry {
    width: f64,
    distance: f64,
    node: u32,
}

impl PartialEq for WidthEntry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for WidthEntry {}
impl PartialOrd for WidthEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for WidthEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.width
            .total_cmp(&other.width)
            .then_with(|| other.distance.total_cmp(&self.distance))
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

/// One direction of a bidirectional search.
struct Side {
    cost: Vec<f64>,
    via: Vec<u32>,
    settled: Vec<bool>,
    heap: BinaryHeap<Entry>,
}

impl Side {
    fn new(n: usize) -> Self {
        Side {
            cost: vec![f64::INFINITY; n],
            via: vec![u32::MAX; n],
            settled: vec![false; n],
            heap: BinaryHeap::new(),
        }
    }

    fn reach(&mut self, v: u32, cost: f64, via: u32, key: f64) {
        self.cost[v as usize] = cost;
        self.via[v as usize] = via;
        self.heap.push(Entry { key, node: v });
    }

    /// The smallest live key, discarding entries of nodes already settled.
    fn top(&mut self) -> f64 {
        while let Some(e) = self.heap.peek() {
            if self.settled[e.node as usize] {
                self.heap.pop();
            } else {
                return e.key;
            }
        }
        f64::INFINITY
    }

    fn settle_next(&mut self) -> Option<u32> {
        let e = self.heap.pop()?;
        if self.settled[e.node as usize] {
            return None;
        }
        self.settled[e.node as usize] = true;
        Some(e.node)
    }
}

/// A path as node and link indices.
struct Path {
    nodes: Vec<u32>,
    links: Vec<u32>,
}

impl RoutingMatrix {
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
    /// links and links narrower than `min_bandwidth`.
    ///
    /// Bidirectional A*: a forward search from `src` and a backward one from `dst` run in turn,
    /// each guided by the "average" potential `p(v) = (π_dst(v) − π_src(v)) / 2` built from
    /// chord-distance lower bounds π (consistent, so each search is a Dijkstra on reduced
    /// costs). The best meeting so far, μ, is optimal once the two queues' smallest keys add
    /// up to μ or more.
    fn cheapest(
        &self,
        src: u32,
        dst: u32,
        objective: Objective,
        banned: &Banned,
        min_bandwidth: f64,
    ) -> Option<Path> {
        if src == dst {
            return Some(Path {
                nodes: vec![src],
                links: Vec::new(),
            });
        }
        let n = self.nodes.len();
        let scale = self.heuristic_scale(objective);
        let potential = |v: u32| {
            if scale > 0.0 {
                scale * (self.chord_km(v, dst) - self.chord_km(src, v)) / 2.0
            } else {
                0.0
            }
        };
        // Cost of crossing `adj`'s link into `entered` (the node the traffic enters).
        let step = |adj: &super::matrix::Adjacent, entered: u32| match objective {
            Objective::Latency | Objective::Bandwidth => adj.rtt_ms,
            Objective::Balanced => adj.link_cost + self.entry_cost[entered as usize],
        };
        let usable = |adj: &super::matrix::Adjacent| {
            !banned.node(adj.node) && !banned.link(adj.link) && adj.bandwidth_mbps >= min_bandwidth
        };

        let mut side = [Side::new(n), Side::new(n)];
        side[0].reach(src, 0.0, u32::MAX, potential(src));
        side[1].reach(dst, 0.0, u32::MAX, -potential(dst));
        let mut best = f64::INFINITY;
        let mut meeting = u32::MAX;
        loop {
            let (top_f, top_r) = (side[0].top(), side[1].top());
            if top_f.is_infinite() && top_r.is_infinite() {
                break;
            }
            if top_f + top_r >= best {
                break;
            }
            // Expand the side whose queue is smaller (ties: forward).
            let dir = usize::from(side[1].heap.len() < side[0].heap.len() || top_f.is_infinite());
            let Some(u) = side[dir].settle_next() else {
                continue;
            };
            let (this, other) = if dir == 0 { (0, 1) } else { (1, 0) };
            for adj in &self.adjacency[u as usize] {
                if !usable(adj) || side[this].settled[adj.node as usize] {
                    continue;
                }
                let v = adj.node;
                // Forward: u → v enters v. Backward: the traffic goes v → u, entering u.
                let cost = side[this].cost[u as usize]
                    + if this == 0 {
                        step(adj, v)
                    } else {
                        step(adj, u)
                    };
                if cost < side[this].cost[v as usize] {
                    let key = cost
                        + if this == 0 {
                            potential(v)
                        } else {
                            -potential(v)
                        };
                    side[this].reach(v, cost, adj.link, key);
                    let through = cost + side[other].cost[v as usize];
                    if through < best {
                        best = through;
                        meeting = v;
                    }
                }
            }
            if side[other].cost[u as usize].is_finite() {
                let through = side[this].cost[u as usize] + side[other].cost[u as usize];
                if through < best {
                    best = through;
                    meeting = u;
                }
            }
        }
        if meeting == u32::MAX {
            return None;
        }
        // Walk back from the meeting node to each end.
        let mut nodes = vec![meeting];
        let mut links = Vec::new();
        let mut at = meeting;
        while at != src {
            let link = side[0].via[at as usize];
            links.push(link);
            at = self.links[link as usize].other(at);
            nodes.push(at);
        }
        nodes.reverse();
        links.reverse();
        let mut at = meeting;
        while at != dst {
            let link = side[1].via[at as usize];
            links.push(link);
            at = self.links[link as usize].other(at);
            nodes.push(at);
        }
        Some(Path { nodes, links })
    }

    /// The largest bottleneck bandwidth of any path from `src` to `dst` (widest path).
    ///
    /// Searches from both ends at once; each side settles nodes widest first (ties: nearest the
    /// other end). `best` is the widest meeting found so far; once it is at least either side's
    /// widest open label, no wider path can exist: all its nodes would have that side's label
    /// above `best` and be settled already, the far end included.
    fn widest_bottleneck(&self, src: u32, dst: u32, banned: &Banned) -> Option<f64> {
        if src == dst {
            return Some(f64::INFINITY);
        }
        let n = self.nodes.len();
        let ends = [src, dst];
        let mut width = [vec![0.0f64; n], vec![0.0f64; n]];
        let mut settled = [vec![false; n], vec![false; n]];
        let mut heaps = [BinaryHeap::new(), BinaryHeap::new()];
        for side in 0..2 {
            width[side][ends[side] as usize] = f64::INFINITY;
            heaps[side].push(WidthEntry {
                width: f64::INFINITY,
                distance: 0.0,
                node: ends[side],
            });
        }
        let mut best = 0.0f64;
        loop {
            for side in 0..2 {
                while heaps[side]
                    .peek()
                    .is_some_and(|e| settled[side][e.node as usize])
                {
                    heaps[side].pop();
                }
            }
            let top = [0, 1].map(|side| heaps[side].peek().map_or(0.0, |e| e.width));
            if top[0] <= 0.0 || top[1] <= 0.0 || best >= top[0].min(top[1]) {
                break;
            }
            let side = usize::from(heaps[1].len() < heaps[0].len());
            let other = 1 - side;
            let u = heaps[side].pop().expect("peeked").node;
            settled[side][u as usize] = true;
            best = best.max(width[side][u as usize].min(width[other][u as usize]));
            for adj in &self.adjacency[u as usize] {
                let v = adj.node;
                if settled[side][v as usize] || banned.node(v) || banned.link(adj.link) {
                    continue;
                }
                let w = width[side][u as usize].min(adj.bandwidth_mbps);
                if w > width[side][v as usize] {
                    width[side][v as usize] = w;
                    best = best.max(w.min(width[other][v as usize]));
                    heaps[side].push(WidthEntry {
                        width: w,
                        distance: self.chord_km(v, ends[other]),
                        node: v,
                    });
                }
            }
        }
        (best > 0.0).then_some(best)
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
            let entered = path.nodes[i + 1];
            latency_ms += link.rtt.mean();
            bottleneck_mbps = bottleneck_mbps.min(link.bandwidth.mean());
            let adj = self.adjacency[path.nodes[i] as usize]
                .iter()
                .find(|a| a.link == l)
                .expect("path links are adjacent");
            balanced += adj.link_cost + self.entry_cost[entered as usize];
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
