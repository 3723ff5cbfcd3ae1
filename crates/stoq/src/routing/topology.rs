//! The topology file of `stoq route` (an example: `examples/topology.json`):
//! `{"nodes":[{"id","region","lat","lon","load"}], "links":[{"from","to","rtt_ms","bandwidth_mbps","loss"}]}`.

use serde::{Deserialize, Serialize};

use super::{CostWeights, LinkSpec, NodeSpec, RoutingError, RoutingMatrix};

/// A whole topology: nodes and bidirectional links.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// The nodes.
    pub nodes: Vec<NodeSpec>,
    /// The links (each usable both ways).
    pub links: Vec<LinkSpec>,
}

/// Why a topology file cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TopologyError {
    /// Not JSON of the expected shape (the message has line and column).
    #[error("topology is not valid: {0}")]
    Syntax(String),
    /// Valid JSON that is inconsistent or has bad numbers.
    #[error("topology is inconsistent: {0}")]
    Content(#[from] RoutingError),
}

impl Topology {
    /// Parses JSON text.
    pub fn from_json(text: &str) -> Result<Self, TopologyError> {
        serde_json::from_str(text).map_err(|e| TopologyError::Syntax(e.to_string()))
    }

    /// A routing matrix holding this topology; every node and link is checked (duplicates,
    /// unknown nodes in links, numbers out of range) and the first problem is named.
    pub fn into_matrix(self, weights: CostWeights) -> Result<RoutingMatrix, TopologyError> {
        let mut matrix = RoutingMatrix::new(weights);
        for node in self.nodes {
            matrix.add_node(node)?;
        }
        for link in self.links {
            matrix.add_link(link)?;
        }
        Ok(matrix)
    }
}
