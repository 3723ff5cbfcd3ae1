//! Distribution planning: which nodes hold which chunks or shards. A pure function.
//!
//! Each stripe (the copies of a chunk, or the k+m shards of one) is placed by weighted
//! rendezvous hashing: every healthy node scores `capacity / -ln(u)`, with `u` a hash of the
//! stripe and the node in (0, 1); highest scores win. Nodes are taken first one per region (so
//! copies spread across regions where there are enough), then by score. A node that joins or
//! leaves changes only the stripes where it wins or won: about 1/N of them.

use super::manifest::ErasurePolicy;
use super::manifest::Hash32;

/// A node as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacementNode {
    /// Node id.
    pub id: String,
    /// Region name.
    pub region: String,
    /// Relative capacity (> 0): a node of capacity 2 gets about twice the placements of 1.
    pub capacity: f64,
    /// Unhealthy nodes get nothing.
    pub healthy: bool,
}

/// How much redundancy each chunk gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redundancy {
    /// Whole copies on this many nodes.
    Replicas(u8),
    /// k data + m parity shards, each on its own node.
    Erasure(ErasurePolicy),
}

impl Redundancy {
    /// Nodes per stripe.
    pub fn width(&self) -> usize {
        match self {
            Redundancy::Replicas(r) => usize::from(*r),
            Redundancy::Erasure(e) => e.total(),
        }
    }
}

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// Fewer healthy nodes than a stripe needs.
    #[error("a stripe needs {need} distinct nodes but only {have} healthy nodes are available")]
    NotEnoughNodes {
        /// Nodes per stripe.
        need: usize,
        /// Healthy nodes.
        have: usize,
    },
    /// A node with a capacity that is not a positive number.
    #[error("node {0:?} has a capacity that is not a positive number")]
    BadCapacity(String),
    /// Zero redundancy.
    #[error("redundancy must place at least one copy")]
    Empty,
}

/// For each item (chunk id), the nodes that hold it: copies in order of preference, or shard
/// `i` on node `i`.
pub fn plan(
    items: &[Hash32],
    nodes: &[PlacementNode],
    redundancy: Redundancy,
) -> Result<Vec<Vec<String>>, PlacementError> {
    let width = redundancy.width();
    if width == 0 {
        return Err(PlacementError::Empty);
    }
    if let Some(bad) = nodes
        .iter()
        .find(|n| !(n.capacity.is_finite() && n.capacity > 0.0))
    {
        return Err(PlacementError::BadCapacity(bad.id.clone()));
    }
    let healthy: Vec<&PlacementNode> = nodes.iter().filter(|n| n.healthy).collect();
    if healthy.len() < width {
        return Err(PlacementError::NotEnoughNodes {
            need: width,
            have: healthy.len(),
        });
    }
    Ok(items
        .iter()
        .map(|item| place_one(item, &healthy, width))
        .collect())
}

fn score(item: &Hash32, node: &PlacementNode) -> f64 {
    let mut h = blake3::Hasher::new();
    h.update(&item.0);
    h.update(node.id.as_bytes());
    let bits = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
    // u in (0, 1): never 0, so ln(u) is finite and negative.
    let u = ((bits >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    node.capacity / -u.ln()
}

fn place_one(item: &Hash32, nodes: &[&PlacementNode], width: usize) -> Vec<String> {
    let mut ranked: Vec<(f64, &PlacementNode)> =
        nodes.iter().map(|n| (score(item, n), *n)).collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
    let mut chosen: Vec<&PlacementNode> = Vec::with_capacity(width);
    // First pass: the best node of each region, best regions first.
    for (_, node) in &ranked {
        if chosen.len() == width {
            break;
        }
        if !chosen.iter().any(|c| c.region == node.region) {
            chosen.push(node);
        }
    }
    // Second pass: fill with the best remaining nodes.
    for (_, node) in &ranked {
        if chosen.len() == width {
            break;
        }
        if !chosen.iter().any(|c| c.id == node.id) {
            chosen.push(node);
        }
    }
    chosen.into_iter().map(|n| n.id.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(spec: &[(&str, &str, f64)]) -> Vec<PlacementNode> {
        spec.iter()
            .map(|(id, region, capacity)| PlacementNode {
                id: id.to_string(),
                region: region.to_string(),
                capacity: *capacity,
                healthy: true,
            })
            .collect()
    }

    fn items(n: usize) -> Vec<Hash32> {
        (0..n as u32)
            .map(|i| Hash32::of(&i.to_le_bytes()))
            .collect()
    }

    #[test]
    fn no_stripe_uses_a_node_twice_and_regions_spread_when_they_can() {
        let ns = nodes(&[
            ("a1", "eu", 1.0),
            ("a2", "eu", 1.0),
            ("b1", "us", 1.0),
            ("b2", "us", 1.0),
            ("c1", "ap", 1.0),
            ("c2", "ap", 1.0),
        ]);
        let region = |id: &str| ns.iter().find(|n| n.id == id).unwrap().region.clone();
        let p = plan(&items(500), &ns, Redundancy::Replicas(3)).unwrap();
        for stripe in &p {
            let mut ids = stripe.clone();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), 3);
            let mut regions: Vec<_> = stripe.iter().map(|id| region(id)).collect();
            regions.sort();
            regions.dedup();
            assert_eq!(regions.len(), 3, "3 copies, 3 regions: {stripe:?}");
        }
        let e = plan(
            &items(200),
            &ns,
            Redundancy::Erasure(ErasurePolicy { k: 4, m: 2 }),
        )
        .unwrap();
        for stripe in &e {
            let mut ids = stripe.clone();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), 6, "6 shards on 6 distinct nodes");
        }
    }

    #[test]
    fn capacity_weights_the_share() {
        let ns = nodes(&[("small", "r1", 1.0), ("big", "r2", 3.0)]);
        let p = plan(&items(20_000), &ns, Redundancy::Replicas(1)).unwrap();
        let big = p.iter().filter(|s| s[0] == "big").count() as f64 / 20_000.0;
        assert!((big - 0.75).abs() < 0.02, "big got {big}");
    }

    #[test]
    fn a_join_or_leave_moves_about_one_in_n() {
        let spec: Vec<(String, String)> = (0..10)
            .map(|i| (format!("n{i}"), format!("r{}", i % 5)))
            .collect();
        let before: Vec<PlacementNode> = spec
            .iter()
            .map(|(id, r)| PlacementNode {
                id: id.clone(),
                region: r.clone(),
                capacity: 1.0,
                healthy: true,
            })
            .collect();
        let list = items(20_000);
        let p0 = plan(&list, &before, Redundancy::Replicas(1)).unwrap();
        let mut joined = before.clone();
        joined.push(PlacementNode {
            id: "n10".into(),
            region: "r0".into(),
            capacity: 1.0,
            healthy: true,
        });
        let p1 = plan(&list, &joined, Redundancy::Replicas(1)).unwrap();
        let moved = p0.iter().zip(&p1).filter(|(a, b)| a != b).count() as f64 / list.len() as f64;
        assert!((moved - 1.0 / 11.0).abs() < 0.02, "join moved {moved}");
        assert!(
            p1.iter()
                .zip(&p0)
                .all(|(now, was)| now == was || now[0] == "n10"),
            "only moves onto the new node"
        );

        let mut left = before.clone();
        left[3].healthy = false;
        let p2 = plan(&list, &left, Redundancy::Replicas(1)).unwrap();
        for (was, now) in p0.iter().zip(&p2) {
            if was[0] != "n3" {
                assert_eq!(was, now, "a stripe not on the departed node stayed put");
            }
        }
    }

    #[test]
    fn impossible_plans_are_errors() {
        let ns = nodes(&[("a", "r", 1.0), ("b", "r", 1.0)]);
        assert_eq!(
            plan(&items(1), &ns, Redundancy::Replicas(3)),
            Err(PlacementError::NotEnoughNodes { need: 3, have: 2 })
        );
        assert_eq!(
            plan(&items(1), &ns, Redundancy::Replicas(0)),
            Err(PlacementError::Empty)
        );
        let bad = nodes(&[("a", "r", -1.0)]);
        assert!(matches!(
            plan(&items(1), &bad, Redundancy::Replicas(1)),
            Err(PlacementError::BadCapacity(_))
        ));
    }
}
