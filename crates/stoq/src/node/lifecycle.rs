//! A node's life: [`Node::start`] opens what its role holds, binds its endpoint, joins the
//! membership and starts serving; [`Node::shutdown`] leaves and drains; [`Node::kill`] stops
//! at once, as a crash looks to the others.

use std::net::{SocketAddr, SocketAddrV6};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use stoq_transport::{
    ConnectionPool, NodeId, NodeIdentity, ShutdownReport, StoqEndpoint, TransportError,
};
use tracing::Instrument;

use super::admission::Admission;
use super::cache::{CacheStats, EdgeCache};
use super::dialer::{Dialer, GossipOverQuic};
use super::error::NodeError;
use super::membership::{Member, Membership, MembershipTiming};
use super::metrics::NodeMetrics;
use super::report::report_loop;
use super::scrub::scrub_loop;
use super::state::{
    Access, Holdings, LoadMeter, Locator, NodeState, SharedEdges, SharedRouter, Upstreams,
};
use super::stored::OriginStore;
use super::token::{token_path, AdminToken};
use crate::chunking::ChunkEngine;
use crate::config::Role;
use crate::config::StoqConfig;
use crate::edge::PrefixTable;
use crate::protocol::StatusAnswer;
use crate::routing::GeoPoint;
use crate::store::Store;

/// Everything a node needs to start.
#[derive(Clone)]
pub struct NodeOptions {
    /// The whole configuration (transport, node, routing, edge).
    pub config: StoqConfig,
    /// Seeds with their node ids resolved.
    pub seeds: Vec<(NodeId, SocketAddrV6)>,
    /// The admin token; read from `node.admin_token_file` or `DATA_DIR/admin.token` if `None`.
    pub token: Option<AdminToken>,
    /// How clients' addresses map to regions (for clients that give no location).
    pub prefixes: PrefixTable,
    /// A host's router, consulted to rank upstreams instead of the node's own matrix.
    pub router: Option<SharedRouter>,
    /// A host's chunk engine, used to chunk what this node publishes (origins).
    pub chunk_engine: Option<Arc<dyn ChunkEngine>>,
    /// A host's edge selection, used to answer LOCATE.
    pub edge_network: Option<SharedEdges>,
    /// The base URL of this node's HTTP front, announced to its peers (so an origin can
    /// redirect clients to it); see [`crate::http::BoundFront::announced_url`].
    pub http_url: Option<String>,
}

impl std::fmt::Debug for NodeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeOptions")
            .field("config", &self.config)
            .field("seeds", &self.seeds)
            .field("router", &self.router.is_some())
            .field("chunk_engine", &self.chunk_engine.is_some())
            .field("edge_network", &self.edge_network.is_some())
            .field("http_url", &self.http_url)
            .finish()
    }
}

impl NodeOptions {
    /// Options from a configuration, with no seeds and STOQ's own parts.
    pub fn new(config: StoqConfig) -> Self {
        NodeOptions {
            config,
            seeds: Vec::new(),
            token: None,
            prefixes: PrefixTable::default(),
            router: None,
            chunk_engine: None,
            edge_network: None,
            http_url: None,
        }
    }
}

/// A running node. Cloning shares it.
#[derive(Clone)]
pub struct Node {
    pub(super) state: Arc<NodeState>,
    background: Arc<Vec<tokio::task::JoinHandle<()>>>,
    pub(super) live: Arc<Live>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.node_id())
            .field("role", &self.role())
            .finish()
    }
}

fn addr_v6(addr: SocketAddr) -> Result<SocketAddrV6, TransportError> {
    match stoq_transport::ensure_ipv6(addr)? {
        SocketAddr::V6(v6) => Ok(v6),
        SocketAddr::V4(_) => unreachable!("ensure_ipv6 refuses IPv4"),
    }
}

fn holdings(
    config: &StoqConfig,
    engine: Option<Arc<dyn ChunkEngine>>,
) -> Result<Holdings, NodeError> {
    let data_dir = &config.node.data_dir;
    Ok(match config.node.role {
        Role::Origin => Holdings::Origin(OriginStore::new(match engine {
            Some(engine) => Store::open_with(data_dir, engine)?,
            None => Store::open(data_dir)?,
        })),
        Role::Edge => Holdings::Edge(Arc::new(EdgeCache::open(
            &data_dir.join("cache"),
            config.edge.cache_bytes,
            config.edge.cache_policy,
        )?)),
        Role::Relay => Holdings::Relay,
    })
}

/// What a running node keeps to be reloaded.
pub(super) struct Live {
    /// The configuration it started with (what restart-only settings are compared with).
    pub(super) started: StoqConfig,
    /// The configuration in effect now.
    pub(super) applied: Mutex<StoqConfig>,
    /// The membership proof its gossip carries (follows the admin token).
    pub(super) proof: Arc<RwLock<[u8; 32]>>,
    /// The `/metrics` server, if one runs.
    pub(super) metrics_server: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The token was handed in by the host, not read from a file: a reload keeps it.
    pub(super) token_given: bool,
    /// The prefix table was handed in by the host: a reload keeps it.
    pub(super) prefixes_given: bool,
}

impl Node {
    /// Starts a node: identity, listening endpoint, store or cache, membership, handlers.
    pub async fn start(options: NodeOptions) -> Result<Node, NodeError> {
        let config = options.config;
        config.validate()?;
        let data_dir = config.node.data_dir.clone();
        std::fs::create_dir_all(&data_dir)?;
        let identity = NodeIdentity::from_config(&config.transport.tls, &data_dir)?;
        let token_given = options.token.is_some();
        let token = match options.token {
            Some(t) => t,
            // A token file that does not exist yet is created (mode 0600), so a network's
            // first node makes the token the others and its clients are given.
            None => AdminToken::load_or_create(&token_path(&data_dir, &config.node))
                .map_err(NodeError::Token)?,
        };
        let holdings = holdings(&config, options.chunk_engine)?;
        // Every event of this node carries its id: its tasks run in this span (an error-level
        // span, so it is there whatever level events are filtered at).
        let span = tracing::error_span!("node", node = %identity.node_id().short());
        let endpoint = span.in_scope(|| StoqEndpoint::bind(config.transport.clone(), identity))?;
        let me = Member {
            id: *endpoint.node_id().as_bytes(),
            addr: addr_v6(endpoint.local_addr()?)?,
            bump: super::membership::next_incarnation(&data_dir),
            role: config.node.role,
            region: config.node.region.clone(),
            geo_e6: config
                .node
                .geo
                .as_deref()
                .and_then(GeoPoint::parse)
                .map(|g| Member::geo_to_e6(g.lat, g.lon)),
            capacity_mbps: config.node.capacity_mbps,
            http_url: options.http_url.clone(),
        };
        let dialer = Arc::new(Dialer::new(ConnectionPool::new(
            endpoint.clone(),
            &config.transport.pool,
        )));
        let timing = MembershipTiming {
            probe_period: Duration::from_millis(config.node.probe_interval_ms),
            suspect_after: Duration::from_millis(config.node.suspect_after_ms),
        };
        let proof = Arc::new(RwLock::new(token.membership_proof(&endpoint.node_id())));
        let gossip = GossipOverQuic {
            dialer: dialer.clone(),
            proof: proof.clone(),
        };
        let membership = span.in_scope(|| Membership::start(me.clone(), timing, Arc::new(gossip)));
        let prefixes_given = !options.prefixes.is_empty();
        let prefixes = if options.prefixes.is_empty() {
            config.edge.prefix_table()
        } else {
            options.prefixes
        };
        let state = Arc::new(NodeState {
            endpoint: endpoint.clone(),
            me,
            data_dir,
            holdings,
            dialer,
            membership,
            metrics: Arc::default(),
            access: Access::new(token),
            join_policy: config.node.membership,
            qos: super::qos::Qos::new(super::qos::QosLimits::of(&config.node)),
            upstreams: Upstreams::new(config.routing.weights, options.router),
            pull: Default::default(),
            load: LoadMeter::default(),
            locator: Locator::new(prefixes, options.edge_network),
            upload_counter: AtomicU64::new(0),
            admission: Admission::new(
                config.node.max_concurrent_reads as usize,
                Duration::from_millis(config.node.read_queue_ms),
            ),
            recent: Default::default(),
            span: span.clone(),
            request_ids: AtomicU64::new(0),
            front_budget: super::front::front_budget(config.http.read_ahead_bytes),
        });
        for (id, addr) in &options.seeds {
            state.membership.join(*id, *addr);
        }
        let handler_state = state.clone();
        span.in_scope(|| {
            endpoint.serve(move |req| {
                let span = super::serve::request_span(&handler_state, &req);
                super::serve::handle(handler_state.clone(), req).instrument(span)
            })
        });
        let mut background = vec![tokio::spawn(
            report_loop(state.clone(), options.seeds).instrument(span.clone()),
        )];
        let metrics_server = match config.node.metrics {
            Some(addr) => Some(super::metrics_http::serve_metrics(&state, addr)?),
            None => None,
        };
        if config.node.scrub_interval_ms > 0 {
            let every = Duration::from_millis(config.node.scrub_interval_ms);
            background.push(tokio::spawn(
                scrub_loop(state.clone(), every).instrument(span.clone()),
            ));
        }
        Ok(Node {
            state,
            background: Arc::new(background),
            live: Arc::new(Live {
                started: config.clone(),
                applied: Mutex::new(config),
                proof,
                metrics_server: Mutex::new(metrics_server),
                token_given,
                prefixes_given,
            }),
        })
    }

    /// The node's id.
    pub fn node_id(&self) -> NodeId {
        self.state.endpoint.node_id()
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddrV6 {
        self.state.me.addr
    }

    /// Its role.
    pub fn role(&self) -> Role {
        self.state.role()
    }

    /// Its membership (live peers, changes).
    pub fn membership(&self) -> &Membership {
        &self.state.membership
    }

    /// Its content, for a front such as the HTTP front ([`crate::http`]).
    pub fn content(&self) -> super::NodeContent {
        super::NodeContent::new(self.state.clone())
    }

    /// Its counters.
    pub fn metrics(&self) -> &NodeMetrics {
        &self.state.metrics
    }

    /// Its admin token.
    pub fn token(&self) -> Arc<AdminToken> {
        self.state.access.token()
    }

    /// Cache counters, for edges.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.state.holdings.cache().map(|c| c.stats())
    }

    /// What `stoq status --node` prints.
    pub fn status(&self) -> StatusAnswer {
        super::serve::status(&self.state)
    }

    /// Leaves the membership, then shuts the endpoint down gracefully within `deadline`.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let started = std::time::Instant::now();
        // Telling the others takes at most a tenth of the deadline; the rest is for draining.
        let _ = tokio::time::timeout(deadline / 10, self.state.membership.leave()).await;
        self.stop_background();
        let left = deadline.saturating_sub(started.elapsed());
        self.state.endpoint.shutdown(left).await
    }

    fn stop_background(&self) {
        for task in self.background.iter() {
            task.abort();
        }
        if let Some(server) = self
            .live
            .metrics_server
            .lock()
            .expect("metrics lock")
            .take()
        {
            server.abort();
        }
    }

    /// Stops at once without telling anyone (what a crash looks like to the others).
    pub async fn kill(&self) {
        self.stop_background();
        self.state.membership.stop();
        self.state.endpoint.shutdown(Duration::ZERO).await;
    }
}
