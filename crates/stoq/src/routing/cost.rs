//! The `balanced` objective: one additive cost per link, in milliseconds-equivalent.
//!
//! Crossing the link `u → v` costs the weighted sum of:
//!
//! | factor | term (before its weight) | why |
//! | --- | --- | --- |
//! | latency | `rtt_ms` | the link's smoothed round-trip time |
//! | bandwidth | `8000 / bandwidth_mbps` | ms to push 1 MB through the link: chunks are relayed store-and-forward, so every hop pays it |
//! | loss | `1000 · loss` | each 1 % of loss costs about one 10 ms retransmission timeout |
//! | load | `10 · ρ / (1 − ρ)`, ρ = load of `v` capped at 0.95 | queueing delay at the node entered (M/M/1 shape) |
//! | geography | `distance_km(u, v) / 100` | the physical floor of a round trip over fibre; a prior for links with few samples |
//! | hops | `1` | per-relay processing and one more thing that can fail |
//! | history | `100 · failures / (successes + failures + 1)` of `v` | nodes that failed recently are avoided |
//!
//! All terms are non-negative, so Dijkstra (and A* with the geographic lower bound) is exact.
//! The weights come from the `[routing.weights]` configuration section.

use serde::{Deserialize, Serialize};

/// Weights of the `balanced` objective's factors. 0 switches a factor off.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CostWeights {
    /// Weight of the link RTT.
    pub latency: f64,
    /// Weight of the time to move 1 MB over the link.
    pub bandwidth: f64,
    /// Weight of the loss penalty.
    pub loss: f64,
    /// Weight of the queueing penalty of the node entered.
    pub load: f64,
    /// Weight of the link's geographic length.
    pub geo: f64,
    /// Weight of each hop.
    pub hop: f64,
    /// Weight of the entered node's failure history.
    pub history: f64,
}

impl Default for CostWeights {
    fn default() -> Self {
        CostWeights {
            latency: 1.0,
            bandwidth: 1.0,
            loss: 1.0,
            load: 1.0,
            geo: 0.1,
            hop: 1.0,
            history: 1.0,
        }
    }
}

impl CostWeights {
    /// The first weight that is negative or not finite, by name.
    pub fn invalid_field(&self) -> Option<&'static str> {
        [
            ("latency", self.latency),
            ("bandwidth", self.bandwidth),
            ("loss", self.loss),
            ("load", self.load),
            ("geo", self.geo),
            ("hop", self.hop),
            ("history", self.history),
        ]
        .into_iter()
        .find(|(_, w)| !w.is_finite() || *w < 0.0)
        .map(|(name, _)| name)
    }
}

/// What the balanced cost of one link needs to know.
#[derive(Debug, Clone, Copy)]
pub struct LinkFactors {
    /// Smoothed RTT of the link.
    pub rtt_ms: f64,
    /// Smoothed bandwidth of the link.
    pub bandwidth_mbps: f64,
    /// Smoothed loss rate of the link.
    pub loss: f64,
    /// Load of the node entered, 0 to 1.
    pub load: f64,
    /// Geographic length of the link, 0 if a position is unknown.
    pub distance_km: f64,
    /// Failures over attempts (+1) of the node entered.
    pub failure_rate: f64,
}

/// The balanced cost of one link (see the module documentation).
pub fn balanced_cost(w: &CostWeights, f: &LinkFactors) -> f64 {
    link_part(w, f.rtt_ms, f.bandwidth_mbps, f.loss, f.distance_km)
        + node_part(w, f.load, f.failure_rate)
}

/// The terms that depend on the link alone: latency, bandwidth, loss, geography and the hop.
pub fn link_part(
    w: &CostWeights,
    rtt_ms: f64,
    bandwidth_mbps: f64,
    loss: f64,
    distance_km: f64,
) -> f64 {
    w.latency * rtt_ms
        + w.bandwidth * 8000.0 / bandwidth_mbps
        + w.loss * 1000.0 * loss
        + w.geo * distance_km / 100.0
        + w.hop
}

/// The terms that depend on the node entered: its load and its failure history.
pub fn node_part(w: &CostWeights, load: f64, failure_rate: f64) -> f64 {
    let rho = load.clamp(0.0, 0.95);
    w.load * 10.0 * rho / (1.0 - rho) + w.history * 100.0 * failure_rate
}

#[cfg(test)]
mod tests {
    use super::*;

    fn factors() -> LinkFactors {
        LinkFactors {
            rtt_ms: 10.0,
            bandwidth_mbps: 8000.0,
            loss: 0.0,
            load: 0.0,
            distance_km: 0.0,
            failure_rate: 0.0,
        }
    }

    #[test]
    fn each_factor_adds_what_the_table_says() {
        let w = CostWeights::default();
        assert_eq!(balanced_cost(&w, &factors()), 10.0 + 1.0 + 1.0);
        let lossy = LinkFactors {
            loss: 0.01,
            ..factors()
        };
        assert!((balanced_cost(&w, &lossy) - 22.0).abs() < 1e-9);
        let busy = LinkFactors {
            load: 0.5,
            ..factors()
        };
        assert!((balanced_cost(&w, &busy) - 22.0).abs() < 1e-9);
        let failing = LinkFactors {
            failure_rate: 0.5,
            ..factors()
        };
        assert!((balanced_cost(&w, &failing) - 62.0).abs() < 1e-9);
    }

    #[test]
    fn zero_weights_switch_factors_off() {
        let only_latency = CostWeights {
            bandwidth: 0.0,
            loss: 0.0,
            load: 0.0,
            geo: 0.0,
            hop: 0.0,
            history: 0.0,
            ..CostWeights::default()
        };
        let f = LinkFactors {
            loss: 0.5,
            load: 0.9,
            failure_rate: 1.0,
            ..factors()
        };
        assert_eq!(balanced_cost(&only_latency, &f), 10.0);
    }

    #[test]
    fn negative_weights_are_named() {
        let w = CostWeights {
            load: -1.0,
            ..CostWeights::default()
        };
        assert_eq!(w.invalid_field(), Some("load"));
        assert_eq!(CostWeights::default().invalid_field(), None);
    }
}
