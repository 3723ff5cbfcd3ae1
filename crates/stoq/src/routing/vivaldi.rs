//! Vivaldi network coordinates (Dabek et al., SIGCOMM 2004) with heights: a latency predictor
//! learned from RTT samples, for pairs of nodes that never measured each other.
//!
//! Each node holds a point in a small Euclidean space plus a *height* (its access-link delay,
//! which every path to it pays). Predicted RTT = distance between the points + both heights.
//! Every sample pulls the two points towards agreement, weighted by how sure each side is of
//! its own coordinate. Deterministic: the only "randomness" (a direction for two coincident
//! points) is a hash of the two indices.

/// Dimensions of the Euclidean part.
pub const DIMENSIONS: usize = 3;

/// Tuning constants from the paper.
const CE: f64 = 0.25;
const CC: f64 = 0.25;
/// Heights never go below 10 µs, so a pull can always lift them again.
const MIN_HEIGHT_MS: f64 = 0.01;
const MAX_ERROR: f64 = 1.5;

/// One node's coordinate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coordinate {
    /// Position in ms units.
    pub position: [f64; DIMENSIONS],
    /// Access delay in ms.
    pub height: f64,
    /// Confidence: relative error, 0 = sure, 1.5 = knows nothing.
    pub error: f64,
    /// Samples applied.
    pub samples: u64,
}

impl Default for Coordinate {
    fn default() -> Self {
        Coordinate {
            position: [0.0; DIMENSIONS],
            height: MIN_HEIGHT_MS,
            error: MAX_ERROR,
            samples: 0,
        }
    }
}

impl Coordinate {
    /// Predicted RTT to `other` in ms.
    pub fn rtt_to(&self, other: &Coordinate) -> f64 {
        euclid(&self.position, &other.position) + self.height + other.height
    }
}

fn euclid(a: &[f64; DIMENSIONS], b: &[f64; DIMENSIONS]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

/// A unit vector from a hash of two indices, for points that coincide.
fn pseudo_random_direction(i: usize, j: usize) -> [f64; DIMENSIONS] {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (j as u64).wrapping_add(0xD1B5_4A32_D192_ED03);
    let mut v = [0.0; DIMENSIONS];
    for c in &mut v {
        x ^= x >> 30;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 27;
        *c = (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
    }
    let norm = v.iter().map(|c| c * c).sum::<f64>().sqrt().max(1e-12);
    v.map(|c| c / norm)
}

/// The coordinates of a set of nodes, indexed like the routing matrix's nodes.
#[derive(Debug, Clone, Default)]
pub struct Vivaldi {
    coords: Vec<Coordinate>,
}

impl Vivaldi {
    /// Makes room for node `index` (new nodes start at the origin, knowing nothing).
    pub fn ensure(&mut self, index: usize) {
        if self.coords.len() <= index {
            self.coords.resize(index + 1, Coordinate::default());
        }
    }

    /// The coordinate of node `i`.
    pub fn coordinate(&self, i: usize) -> Option<&Coordinate> {
        self.coords.get(i)
    }

    /// Predicted RTT between two nodes in ms.
    pub fn predict(&self, i: usize, j: usize) -> Option<f64> {
        Some(self.coords.get(i)?.rtt_to(self.coords.get(j)?))
    }

    /// Applies one RTT sample between `i` and `j` to both coordinates.
    pub fn observe(&mut self, i: usize, j: usize, rtt_ms: f64) {
        if i == j || !rtt_ms.is_finite() || rtt_ms <= 0.0 {
            return;
        }
        self.ensure(i.max(j));
        let (ci, cj) = (self.coords[i], self.coords[j]);
        self.coords[i] = pulled(ci, &cj, rtt_ms, i, j);
        self.coords[j] = pulled(cj, &ci, rtt_ms, j, i);
    }
}

/// `me` moved towards agreement with `other` at measured `rtt`.
fn pulled(mut me: Coordinate, other: &Coordinate, rtt: f64, i: usize, j: usize) -> Coordinate {
    let predicted = me.rtt_to(other);
    let weight = me.error / (me.error + other.error).max(1e-12);
    let sample_error = (predicted - rtt).abs() / rtt;
    me.error = (sample_error * CE * weight + me.error * (1.0 - CE * weight)).min(MAX_ERROR);
    let force = CC * weight * (rtt - predicted);
    // Unit vector from `other` to `me`, with the heights as one more (always positive) axis.
    let spatial = euclid(&me.position, &other.position);
    let direction = if spatial > 1e-9 {
        let mut d = [0.0; DIMENSIONS];
        for (k, c) in d.iter_mut().enumerate() {
            *c = (me.position[k] - other.position[k]) / spatial;
        }
        d
    } else {
        pseudo_random_direction(i, j)
    };
    let norm = spatial + me.height + other.height;
    let spatial_share = if spatial > 1e-9 { spatial / norm } else { 1.0 };
    for (k, c) in me.position.iter_mut().enumerate() {
        *c += force * spatial_share * direction[k];
    }
    me.height = (me.height + force * (me.height + other.height) / norm).max(MIN_HEIGHT_MS);
    me.samples += 1;
    me
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points in a plane with access delays: a space Vivaldi with heights can represent exactly.
    fn synthetic(n: usize) -> (Vec<[f64; 2]>, Vec<f64>) {
        let mut x = 12345u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 10_000) as f64 / 10_000.0
        };
        let points = (0..n).map(|_| [next() * 100.0, next() * 100.0]).collect();
        let heights = (0..n).map(|_| 1.0 + next() * 5.0).collect();
        (points, heights)
    }

    #[test]
    fn converges_on_a_synthetic_metric_space() {
        let n = 60;
        let (points, heights) = synthetic(n);
        let truth = |i: usize, j: usize| {
            let (a, b) = (points[i], points[j]);
            ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt() + heights[i] + heights[j]
        };
        let mut v = Vivaldi::default();
        // Each node measures 10 neighbours (by index distance), many rounds.
        for _ in 0..200 {
            for i in 0..n {
                for step in 1..=10 {
                    let j = (i + step * 7) % n;
                    v.observe(i, j, truth(i, j));
                }
            }
        }
        // Judge on pairs never measured.
        let mut errors = Vec::new();
        for i in 0..n {
            for j in (i + 1)..n {
                let measured = (1..=10).any(|s| (i + s * 7) % n == j || (j + s * 7) % n == i);
                if !measured {
                    let t = truth(i, j);
                    errors.push((v.predict(i, j).unwrap() - t).abs() / t);
                }
            }
        }
        errors.sort_by(f64::total_cmp);
        let median = errors[errors.len() / 2];
        assert!(median < 0.05, "median relative error {median}");
    }

    #[test]
    fn bad_samples_are_ignored() {
        let mut v = Vivaldi::default();
        v.observe(0, 1, f64::NAN);
        v.observe(0, 1, -3.0);
        v.observe(2, 2, 10.0);
        assert_eq!(v.coordinate(0), None);
    }

    #[test]
    fn coincident_points_separate() {
        let mut v = Vivaldi::default();
        v.observe(0, 1, 50.0);
        assert!(v.predict(0, 1).unwrap() > 1.0);
    }
}
