//! Helpers for running nodes inside this process, as the demo and the benchmarks do.

use std::path::PathBuf;

use anyhow::Result;
use stoq::transport::{StoqConnection, StoqEndpoint};
use stoq::{AdminToken, Node, NodeOptions, Role, StoqConfig};

/// A scratch directory under the system temp dir, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// `TMP/stoq-NAME-PID`, created.
    pub fn new(name: &str) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("stoq-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where a local node sits and whom it joins.
pub struct Place<'a> {
    /// Its role.
    pub role: Role,
    /// Its region name.
    pub region: &'a str,
    /// Its position, `LAT,LON`.
    pub geo: Option<&'a str>,
    /// A node to join through.
    pub seed: Option<&'a Node>,
}

/// Starts a node on [::1] in `dir`, sharing `token`, with quick failure detection (250 ms
/// probes, 1 s suspicion) so that a demo shows a death within seconds.
pub async fn start_node(dir: PathBuf, place: Place<'_>, token: &AdminToken) -> Result<Node> {
    start_node_with(dir, place, token, |_| {}).await
}

/// [`start_node`] with the configuration adjusted by `tune` (a benchmark's settings).
pub async fn start_node_with(
    dir: PathBuf,
    place: Place<'_>,
    token: &AdminToken,
    tune: impl FnOnce(&mut StoqConfig),
) -> Result<Node> {
    let mut config = StoqConfig::default();
    config.transport.listen = "[::1]:0".parse()?;
    config.node.data_dir = dir;
    config.node.role = place.role;
    config.node.region = place.region.into();
    config.node.geo = place.geo.map(str::to_owned);
    config.node.probe_interval_ms = 250;
    config.node.suspect_after_ms = 1000;
    tune(&mut config);
    let mut options = NodeOptions::new(config);
    options.token = Some(token.clone());
    options.seeds = place
        .seed
        .map(|s| (s.node_id(), s.local_addr()))
        .into_iter()
        .collect();
    Ok(Node::start(options).await?)
}

/// Whether every node comes to see exactly `count` peers within `within` (membership wakes
/// the wait whenever a member comes or goes).
pub async fn peers_become(nodes: &[&Node], count: usize, within: std::time::Duration) -> bool {
    for node in nodes {
        let seen = node.membership();
        if !seen.wait_for(|p| p.len() == count, within).await {
            return false;
        }
    }
    true
}

/// A connection from `client` to a local node, its id pinned.
pub async fn dial(client: &StoqEndpoint, node: &Node) -> Result<StoqConnection> {
    Ok(stoq::client::dial(client, node.node_id(), node.local_addr()).await?)
}
