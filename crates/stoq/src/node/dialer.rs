//! A node's links to its peers: dialled through its own endpoint (so peers see its node id),
//! remembered (their RTTs go into its reports), and not redialled for a while after a failure.

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV6};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use stoq_transport::{
    ConnectionPool, ConnectionStats, NodeId, PeerExpectation, StoqConnection, TransportError,
};

use super::membership::{GossipSender, Member};
use crate::protocol::Request;
use crate::routing::LinkSample;

/// How long a node waits to dial a peer.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a peer that could not be reached is not dialled again.
const REDIAL_AFTER: Duration = Duration::from_secs(2);

/// Dials and remembers peers.
pub struct Dialer {
    pool: ConnectionPool,
    links: Mutex<HashMap<NodeId, StoqConnection>>,
    /// When a dial to a peer last failed: it is not retried for [`REDIAL_AFTER`].
    failed: Mutex<HashMap<NodeId, Instant>>,
}

impl Dialer {
    /// A dialer over `pool`.
    pub fn new(pool: ConnectionPool) -> Self {
        Dialer {
            pool,
            links: Mutex::default(),
            failed: Mutex::default(),
        }
    }

    /// A connection to peer `id` at `addr`, its id pinned; fails at once if the last dial to
    /// it failed less than two seconds ago.
    pub async fn connect(
        &self,
        id: NodeId,
        addr: SocketAddrV6,
    ) -> Result<StoqConnection, TransportError> {
        if let Some(at) = self.failed.lock().expect("failed lock").get(&id) {
            if at.elapsed() < REDIAL_AFTER {
                return Err(TransportError::Timeout(format!(
                    "{addr} was unreachable {} ms ago",
                    at.elapsed().as_millis()
                )));
            }
        }
        let expect = PeerExpectation::Node(id);
        let dial = self.pool.get(SocketAddr::V6(addr), &expect);
        let conn = match tokio::time::timeout(DIAL_TIMEOUT, dial).await {
            Ok(Ok(conn)) => conn,
            outcome => {
                self.failed
                    .lock()
                    .expect("failed lock")
                    .insert(id, Instant::now());
                return Err(match outcome {
                    Ok(Err(e)) => e,
                    _ => TransportError::Timeout(format!("dialling {addr}")),
                });
            }
        };
        self.failed.lock().expect("failed lock").remove(&id);
        self.links
            .lock()
            .expect("links lock")
            .insert(id, conn.clone());
        Ok(conn)
    }

    /// A connection to `member`.
    pub async fn connect_to(&self, member: &Member) -> Result<StoqConnection, TransportError> {
        self.connect(member.node_id(), member.addr).await
    }

    /// The open links and their smoothed RTTs.
    pub fn rtts(&self) -> Vec<(NodeId, Duration)> {
        self.with_links(|c| c.rtt())
    }

    /// The open links and their path statistics.
    pub fn link_stats(&self) -> Vec<(NodeId, ConnectionStats)> {
        self.with_links(|c| c.stats())
    }

    fn with_links<T>(&self, f: impl Fn(&StoqConnection) -> T) -> Vec<(NodeId, T)> {
        let mut links = self.links.lock().expect("links lock");
        links.retain(|_, c| !c.is_closed());
        links.iter().map(|(id, c)| (*id, f(c))).collect()
    }
}

/// Carries membership messages as GOSSIP requests over the node's links, each with this
/// node's membership proof.
pub struct GossipOverQuic {
    /// The node's links.
    pub dialer: Arc<Dialer>,
    /// This node's proof that it holds the network's token (replaced when a reload changes
    /// the token).
    pub proof: Arc<std::sync::RwLock<[u8; 32]>>,
}

impl GossipSender for GossipOverQuic {
    fn send(&self, to: &Member, data: Bytes) {
        let proof = *self.proof.read().expect("proof lock");
        let dialer = self.dialer.clone();
        let to = to.clone();
        super::spawn_in_span(async move {
            let Ok(conn) = dialer.connect_to(&to).await else {
                return;
            };
            let request = Request::Gossip {
                proof,
                message: data,
            };
            let _ = tokio::time::timeout(DIAL_TIMEOUT, conn.request(request.encode())).await;
        });
    }
}

/// A link sample from a QUIC connection's own path statistics: the smoothed RTT quinn keeps
/// and the loss rate of the packets sent so far.
pub fn link_sample(stats: &ConnectionStats) -> LinkSample {
    LinkSample {
        rtt_ms: stats.rtt.as_secs_f64() * 1e3,
        loss: (stats.packets_sent > 0).then(|| stats.loss_rate()),
    }
}
