//! Realistic synthetic topologies for tests and `stoq bench route`, deterministic from a seed.
//!
//! Nodes are scattered around real internet hub cities. Each node links to its nearest
//! neighbours, and a few long-haul links cross oceans and continents. The "true" RTT of a pair
//! is what the internet would give: fibre distance inflated by indirect cable paths, plus each
//! end's access delay, plus a little noise; links carry that RTT. Bandwidths follow link kind
//! (metro, regional, long-haul).

use super::geo::{GeoPoint, FIBRE_KM_PER_MS};
use super::{LinkSpec, NodeSpec, Topology};

/// Internet hubs: (name, region, lat, lon).
pub const CITIES: &[(&str, &str, f64, f64)] = &[
    ("fra", "eu-central", 50.11, 8.68),
    ("ams", "eu-west", 52.37, 4.90),
    ("lon", "eu-west", 51.51, -0.13),
    ("par", "eu-west", 48.86, 2.35),
    ("mad", "eu-south", 40.42, -3.70),
    ("mil", "eu-south", 45.46, 9.19),
    ("sto", "eu-north", 59.33, 18.07),
    ("waw", "eu-central", 52.23, 21.01),
    ("ist", "eu-east", 41.01, 28.98),
    ("mos", "eu-east", 55.76, 37.62),
    ("nyc", "us-east", 40.71, -74.01),
    ("ash", "us-east", 39.04, -77.49),
    ("atl", "us-east", 33.75, -84.39),
    ("mia", "us-east", 25.76, -80.19),
    ("chi", "us-central", 41.88, -87.63),
    ("dfw", "us-central", 32.78, -96.80),
    ("den", "us-west", 39.74, -104.99),
    ("sea", "us-west", 47.61, -122.33),
    ("sjc", "us-west", 37.34, -121.89),
    ("lax", "us-west", 34.05, -118.24),
    ("tor", "ca-east", 43.65, -79.38),
    ("mex", "latam", 19.43, -99.13),
    ("gru", "latam", -23.55, -46.63),
    ("eze", "latam", -34.60, -58.38),
    ("scl", "latam", -33.45, -70.67),
    ("bog", "latam", 4.71, -74.07),
    ("jnb", "africa", -26.20, 28.05),
    ("cpt", "africa", -33.92, 18.42),
    ("los", "africa", 6.52, 3.38),
    ("nbo", "africa", -1.29, 36.82),
    ("cai", "africa", 30.04, 31.24),
    ("dxb", "me", 25.20, 55.27),
    ("bom", "ap-south", 19.08, 72.88),
    ("del", "ap-south", 28.61, 77.21),
    ("maa", "ap-south", 13.08, 80.27),
    ("sin", "ap-southeast", 1.35, 103.82),
    ("jkt", "ap-southeast", -6.21, 106.85),
    ("bkk", "ap-southeast", 13.76, 100.50),
    ("hkg", "ap-east", 22.32, 114.17),
    ("tpe", "ap-east", 25.03, 121.57),
    ("sha", "ap-east", 31.23, 121.47),
    ("pek", "ap-east", 39.90, 116.41),
    ("icn", "ap-east", 37.57, 126.98),
    ("nrt", "ap-east", 35.68, 139.69),
    ("kix", "ap-east", 34.69, 135.50),
    ("syd", "oceania", -33.87, 151.21),
    ("mel", "oceania", -37.81, 144.96),
    ("akl", "oceania", -36.85, 174.76),
    ("per", "oceania", -31.95, 115.86),
    ("hnl", "oceania", 21.31, -157.86),
];

/// A small deterministic generator (SplitMix64), so a seed always gives the same topology.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// A generated topology and the ground truth behind it.
#[derive(Debug, Clone)]
pub struct Synthetic {
    /// The topology (what `stoq route` reads).
    pub topology: Topology,
    positions: Vec<GeoPoint>,
    access_ms: Vec<f64>,
    seed: u64,
}

impl Synthetic {
    /// The RTT the internet would give between nodes `i` and `j` (indices into
    /// `topology.nodes`): fibre distance × a per-pair path inflation of 1.2 to 1.8, plus both
    /// access delays. Deterministic per pair.
    pub fn true_rtt_ms(&self, i: usize, j: usize) -> f64 {
        if i == j {
            return 0.0;
        }
        let (a, b) = (i.min(j) as u64, i.max(j) as u64);
        let mut r = SplitMix::new(self.seed ^ a.wrapping_mul(0x1000_0000_01B3) ^ b.rotate_left(32));
        let inflation = 1.2 + 0.6 * r.unit();
        let km = self.positions[i].distance_km(&self.positions[j]);
        2.0 * km / FIBRE_KM_PER_MS * inflation + self.access_ms[i] + self.access_ms[j]
    }

    /// The best any predictor can do without measuring the pair: the true positions and access
    /// delays with the *average* path inflation (1.5). Its error is the noise floor that no
    /// latency predictor can beat on this topology, reported next to Vivaldi's.
    pub fn oracle_rtt_ms(&self, i: usize, j: usize) -> f64 {
        if i == j {
            return 0.0;
        }
        let km = self.positions[i].distance_km(&self.positions[j]);
        2.0 * km / FIBRE_KM_PER_MS * 1.5 + self.access_ms[i] + self.access_ms[j]
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }
}

/// `n` nodes around [`CITIES`], each linked to its `neighbours` nearest (metro and regional
/// links) plus, for about one node in twenty, a long-haul link to a random distant node.
/// Links carry [`Synthetic::true_rtt_ms`]; loss 0 to 0.2 %; load 0 to 0.8.
pub fn realistic(n: usize, neighbours: usize, seed: u64) -> Synthetic {
    let mut rng = SplitMix::new(seed);
    let mut nodes = Vec::with_capacity(n);
    let mut positions = Vec::with_capacity(n);
    let mut access_ms = Vec::with_capacity(n);
    for i in 0..n {
        let (city, region, lat, lon) = CITIES[i % CITIES.len()];
        let lat = (lat + (rng.unit() - 0.5) * 2.0).clamp(-89.0, 89.0);
        let lon = (lon + (rng.unit() - 0.5) * 2.0).clamp(-179.0, 179.0);
        positions.push(GeoPoint::new(lat, lon).expect("clamped into range"));
        access_ms.push(0.2 + 2.0 * rng.unit());
        nodes.push(NodeSpec {
            id: format!("{city}-{i}"),
            region: region.to_owned(),
            lat: Some(lat),
            lon: Some(lon),
            load: 0.8 * rng.unit(),
        });
    }
    let mut synthetic = Synthetic {
        topology: Topology {
            nodes,
            links: Vec::new(),
        },
        positions,
        access_ms,
        seed,
    };
    let mut seen = std::collections::HashSet::new();
    let mut links = Vec::new();
    let mut add = |s: &Synthetic, rng: &mut SplitMix, i: usize, j: usize, bandwidth: f64| {
        if i == j || !seen.insert((i.min(j), i.max(j))) {
            return;
        }
        links.push(LinkSpec {
            from: s.topology.nodes[i].id.clone(),
            to: s.topology.nodes[j].id.clone(),
            rtt_ms: s.true_rtt_ms(i, j),
            bandwidth_mbps: bandwidth,
            loss: 0.002 * rng.unit(),
        });
    };
    // Nearest neighbours on a coarse grid of 5° cells, widening the search until enough are found.
    let cell = |p: &GeoPoint| {
        (
            ((p.lat + 90.0) / 5.0) as i32,
            ((p.lon + 180.0) / 5.0) as i32,
        )
    };
    let mut grid: std::collections::HashMap<(i32, i32), Vec<usize>> = Default::default();
    for (i, p) in synthetic.positions.iter().enumerate() {
        grid.entry(cell(p)).or_default().push(i);
    }
    for i in 0..n {
        let p = synthetic.positions[i];
        let (ci, cj) = cell(&p);
        let mut candidates = Vec::new();
        let mut radius = 1;
        while candidates.len() <= neighbours && radius <= 36 {
            candidates.clear();
            for di in -radius..=radius {
                for dj in -radius..=radius {
                    if let Some(members) = grid.get(&(ci + di, (cj + dj).rem_euclid(72))) {
                        candidates.extend(members.iter().copied().filter(|&j| j != i));
                    }
                }
            }
            radius *= 2;
        }
        candidates.sort_by(|&a, &b| {
            p.distance_km(&synthetic.positions[a])
                .total_cmp(&p.distance_km(&synthetic.positions[b]))
                .then(a.cmp(&b))
        });
        for &j in candidates.iter().take(neighbours) {
            let km = p.distance_km(&synthetic.positions[j]);
            let bandwidth = if km < 100.0 {
                100_000.0
            } else if km < 1000.0 {
                40_000.0
            } else {
                10_000.0
            };
            add(&synthetic, &mut rng, i, j, bandwidth);
        }
        if rng.below(20) == 0 {
            let j = rng.below(n);
            add(&synthetic, &mut rng, i, j, 100_000.0);
        }
    }
    // Connectivity: every node has a metro link to the previous node of its city, and the
    // first node of each city sits on a backbone ring.
    let hubs = CITIES.len().min(n);
    for i in hubs..n {
        add(&synthetic, &mut rng, i, i - CITIES.len(), 100_000.0);
    }
    for h in 0..hubs {
        add(&synthetic, &mut rng, h, (h + 1) % hubs, 100_000.0);
    }
    synthetic.topology.links = links;
    synthetic
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_topology() {
        let a = realistic(300, 4, 7);
        let b = realistic(300, 4, 7);
        assert_eq!(a.topology, b.topology);
        assert_ne!(a.topology, realistic(300, 4, 8).topology);
    }

    #[test]
    fn rtts_respect_physics_and_are_symmetric() {
        let s = realistic(200, 4, 1);
        for (i, j) in [(0, 1), (3, 150), (10, 199)] {
            let km = s.positions[i].distance_km(&s.positions[j]);
            assert!(s.true_rtt_ms(i, j) >= 2.0 * km / FIBRE_KM_PER_MS);
            assert_eq!(s.true_rtt_ms(i, j), s.true_rtt_ms(j, i));
        }
    }

    #[test]
    fn the_generated_graph_is_connected_and_loads_cleanly() {
        let s = realistic(500, 4, 3);
        let first = s.topology.nodes[0].id.clone();
        let last = s.topology.nodes[499].id.clone();
        let m = s.topology.into_matrix(Default::default()).unwrap();
        assert!(m
            .find_optimal_route(&first, &last, super::super::Objective::Latency)
            .is_ok());
    }
}
