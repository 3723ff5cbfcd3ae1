//! A running node: its role, membership, request handlers, pull-through cache and load reports.
//!
//! - An **origin** serves content from its store and accepts uploads (with the admin token).
//! - An **edge** serves from its on-disk cache; a miss is fetched once (coalesced) from the
//!   best upstream, verified, cached and served.
//! - A **relay** fetches from origins on behalf of edges whose best route to an origin runs
//!   through it; it caches nothing.
//!
//! Upstreams are ranked by the routing matrix built from membership (the `balanced` cost over
//! measured RTTs and reported loads). Edges ask origins and relays, relays ask origins only, so
//! a request never loops.

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV6};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use stoq_transport::protocol::ErrorCode;
use stoq_transport::{
    ConnectionPool, IncomingRequest, NodeId, NodeIdentity, PeerExpectation, ShutdownReport,
    StoqConnection, StoqEndpoint, TransportError,
};
use tokio::io::AsyncWriteExt;

use super::cache::EdgeCache;
use super::coalesce::Coalescer;
use super::content::{fetch_chunk, fetch_manifest_as};
use super::membership::{
    GossipSender, Member, Membership, MembershipTiming, Report, Role, MAX_REPORTED_RTTS,
};
use super::metrics::{NodeMetrics, Snapshot};
use super::token::{AdminToken, TOKEN_FILE};
use super::{wire, Op};
use crate::chunking::{ChunkId, ContentId, Hash32, Manifest};
use crate::edge::names::{check_name, Freshness, NameRecord};
use crate::edge::{ClientLocation, EdgeNode, EdgeRegistry, PrefixTable};
use crate::routing::{GeoPoint, LinkSpec, NodeSpec, Objective, RoutingMatrix};
use crate::store::Store;
use crate::StoqConfig;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// The transport could not start (identity, socket).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The cache directory or token file could not be used.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The whole configuration (transport, node, routing, edge).
    pub config: StoqConfig,
    /// Seeds with their node ids resolved.
    pub seeds: Vec<(NodeId, SocketAddrV6)>,
    /// The admin token; read from `node.admin_token_file` or `DATA_DIR/admin.token` if `None`.
    pub token: Option<AdminToken>,
    /// How clients' addresses map to regions (for clients that give no location).
    pub prefixes: PrefixTable,
}

impl NodeOptions {
    /// Options from a configuration, with no seeds.
    pub fn new(config: StoqConfig) -> Self {
        NodeOptions {
            config,
            seeds: Vec::new(),
            token: None,
            prefixes: PrefixTable::default(),
        }
    }
}

/// How often a node reports its load and RTTs to the others.
pub const REPORT_INTERVAL: Duration = Duration::from_millis(1000);
/// How long a node waits to dial a peer.
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a forwarded purge may take per peer.
const PURGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Dials peers through the node's own endpoint (so they see its node id) and remembers the
/// connections, whose RTTs go into the node's reports.
struct Dialer {
    pool: ConnectionPool,
    links: Mutex<HashMap<NodeId, StoqConnection>>,
    /// When a dial to a peer last failed: it is not retried for [`REDIAL_AFTER`].
    failed: Mutex<HashMap<NodeId, Instant>>,
}

/// How long a peer that could not be reached is not dialled again.
const REDIAL_AFTER: Duration = Duration::from_secs(2);

impl Dialer {
    async fn connect(
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

    fn rtts(&self) -> Vec<(NodeId, Duration)> {
        let mut links = self.links.lock().expect("links lock");
        links.retain(|_, c| !c.is_closed());
        links.iter().map(|(id, c)| (*id, c.rtt())).collect()
    }
}

struct GossipOverQuic(Arc<Dialer>);

impl GossipSender for GossipOverQuic {
    fn send(&self, to: &Member, data: Bytes) {
        let dialer = self.0.clone();
        let (id, addr) = (to.node_id(), to.addr);
        tokio::spawn(async move {
            let Ok(conn) = dialer.connect(id, addr).await else {
                return;
            };
            let mut payload = Vec::with_capacity(1 + data.len());
            payload.push(Op::Gossip.code());
            payload.extend_from_slice(&data);
            let _ = tokio::time::timeout(DIAL_TIMEOUT, conn.request(payload)).await;
        });
    }
}

type Shared<T> = Result<T, (ErrorCode, String)>;

struct Inner {
    endpoint: StoqEndpoint,
    me: Member,
    data_dir: PathBuf,
    store: Option<Arc<RwLock<Store>>>,
    cache: Option<Arc<EdgeCache>>,
    dialer: Arc<Dialer>,
    membership: Membership,
    token: AdminToken,
    metrics: Arc<NodeMetrics>,
    manifests: Coalescer<ContentId, Shared<Arc<Manifest>>>,
    chunks: Coalescer<Hash32, Shared<Bytes>>,
    prefixes: PrefixTable,
    weights: crate::routing::CostWeights,
    load_bits: AtomicU64,
    served_since_report: AtomicU64,
    preferred_upstream: Mutex<Option<NodeId>>,
    /// The last upstream ranking: membership change count, when, and the ranking.
    upstream_cache: Mutex<Option<(u64, Instant, Vec<Member>)>>,
    upload_counter: AtomicU64,
    names: Mutex<HashMap<String, (NameRecord, Instant)>>,
    /// Smoothed throughput this node observed pulling chunks from each upstream (Mbit/s).
    throughput: Mutex<HashMap<NodeId, f64>>,
    /// This node's smoothed RTT to clients of an area (ms), and when it was last measured.
    area_rtts: Mutex<HashMap<String, (f64, Instant)>>,
    /// Read restrictions learned from upstream (relays; edges also keep them on disk).
    restrictions: Mutex<HashMap<ContentId, [u8; 32]>>,
    name_fetches: Coalescer<String, Shared<NameRecord>>,
}

/// Most client areas a node keeps RTTs for.
const MAX_AREAS: usize = 4096;

/// Most name records an edge or relay keeps copies of.
const MAX_CACHED_NAMES: usize = 65_536;

/// A running node. Cloning shares it.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
    background: Arc<Vec<tokio::task::JoinHandle<()>>>,
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

impl Node {
    /// Starts a node: identity, listening endpoint, store or cache, membership, handlers.
    pub async fn start(options: NodeOptions) -> Result<Node, NodeError> {
        let config = options.config;
        config.validate()?;
        let data_dir = config.node.data_dir.clone();
        std::fs::create_dir_all(&data_dir)?;
        let identity = NodeIdentity::from_config(&config.transport.tls, &data_dir)?;
        let token = match options.token {
            Some(t) => t,
            None => match &config.node.admin_token_file {
                Some(path) => AdminToken::read(path)?,
                None => AdminToken::load_or_create(&data_dir.join(TOKEN_FILE))?,
            },
        };
        let role = config.node.role;
        let store = match role {
            Role::Origin => Some(Arc::new(RwLock::new(Store::open(&data_dir)?))),
            _ => None,
        };
        let cache = match role {
            Role::Edge => Some(Arc::new(EdgeCache::open(
                &data_dir.join("cache"),
                config.edge.cache_bytes,
                config.edge.cache_policy,
            )?)),
            _ => None,
        };
        let endpoint = StoqEndpoint::bind(config.transport.clone(), identity)?;
        let addr = addr_v6(endpoint.local_addr()?)?;
        let me = Member {
            id: *endpoint.node_id().as_bytes(),
            addr,
            bump: 0,
            role,
            region: config.node.region.clone(),
            geo_e6: config
                .node
                .geo
                .as_deref()
                .and_then(GeoPoint::parse)
                .map(|g| Member::geo_to_e6(g.lat, g.lon)),
            capacity_mbps: config.node.capacity_mbps,
        };
        let dialer = Arc::new(Dialer {
            pool: ConnectionPool::new(endpoint.clone(), &config.transport.pool),
            links: Mutex::default(),
            failed: Mutex::default(),
        });
        let timing = MembershipTiming {
            probe_period: Duration::from_millis(config.node.probe_interval_ms),
            suspect_after: Duration::from_millis(config.node.suspect_after_ms),
        };
        let membership =
            Membership::start(me.clone(), timing, Arc::new(GossipOverQuic(dialer.clone())));
        let inner = Arc::new(Inner {
            endpoint: endpoint.clone(),
            me,
            data_dir,
            store,
            cache,
            dialer,
            membership,
            token,
            metrics: Arc::default(),
            manifests: Coalescer::default(),
            chunks: Coalescer::default(),
            prefixes: if options.prefixes.is_empty() {
                config.edge.prefix_table()
            } else {
                options.prefixes
            },
            weights: config.routing.weights,
            load_bits: AtomicU64::new(0f64.to_bits()),
            served_since_report: AtomicU64::new(0),
            preferred_upstream: Mutex::new(None),
            upstream_cache: Mutex::new(None),
            upload_counter: AtomicU64::new(0),
            names: Mutex::default(),
            restrictions: Mutex::default(),
            area_rtts: Mutex::default(),
            throughput: Mutex::default(),
            name_fetches: Coalescer::default(),
        });
        for (id, addr) in &options.seeds {
            inner.membership.join(*id, *addr);
        }
        let handler_inner = inner.clone();
        endpoint.serve(move |req| handle(handler_inner.clone(), req));
        let mut background = vec![tokio::spawn(report_loop(inner.clone(), options.seeds))];
        if let Some(metrics_addr) = config.node.metrics {
            let listener = super::metrics::bind_metrics(metrics_addr)?;
            let render_inner = inner.clone();
            let render = Arc::new(move || render_inner.metrics.render(&snapshot(&render_inner)));
            background.push(tokio::spawn(super::metrics::serve_http(listener, render)));
        }
        Ok(Node {
            inner,
            background: Arc::new(background),
        })
    }

    /// The node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.endpoint.node_id()
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddrV6 {
        self.inner.me.addr
    }

    /// Its role.
    pub fn role(&self) -> Role {
        self.inner.me.role
    }

    /// Its membership (live peers, changes).
    pub fn membership(&self) -> &Membership {
        &self.inner.membership
    }

    /// Its counters.
    pub fn metrics(&self) -> &NodeMetrics {
        &self.inner.metrics
    }

    /// Its admin token.
    pub fn token(&self) -> &AdminToken {
        &self.inner.token
    }

    /// Cache counters, for edges.
    pub fn cache_stats(&self) -> Option<super::cache::CacheStats> {
        self.inner.cache.as_ref().map(|c| c.stats())
    }

    /// The status document `stoq status --node` prints.
    pub fn status(&self) -> serde_json::Value {
        status(&self.inner)
    }

    /// Leaves the membership, then shuts the endpoint down gracefully within `deadline`.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        self.inner.membership.leave().await;
        for task in self.background.iter() {
            task.abort();
        }
        self.inner.endpoint.shutdown(deadline).await
    }

    /// Stops at once without telling anyone (what a crash looks like to the others).
    pub async fn kill(&self) {
        for task in self.background.iter() {
            task.abort();
        }
        self.inner.membership.stop();
        self.inner.endpoint.shutdown(Duration::ZERO).await;
    }
}

fn load(inner: &Inner) -> f64 {
    f64::from_bits(inner.load_bits.load(Ordering::Relaxed))
}

fn snapshot(inner: &Inner) -> Snapshot {
    let counters = inner.endpoint.counters();
    Snapshot {
        cache: inner.cache.as_ref().map(|c| c.stats()).unwrap_or_default(),
        connections_open: counters.open,
        connections_accepted: counters.accepted,
        connections_refused: counters.refused_limit,
        peers: inner.membership.peers().len() as u64,
        membership_changes: inner.membership.changes(),
        load: load(inner),
    }
}

/// Every second: measure load, spread it with the RTTs of open links, and re-announce to the
/// seeds while alone (a seed that was down at start is joined when it comes up).
async fn report_loop(inner: Arc<Inner>, seeds: Vec<(NodeId, SocketAddrV6)>) {
    let mut seq = 0u64;
    let mut ticker = tokio::time::interval(REPORT_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        seq += 1;
        let bytes = inner.served_since_report.swap(0, Ordering::Relaxed) as f64;
        let capacity_bits = f64::from(inner.me.capacity_mbps) * 1e6 * REPORT_INTERVAL.as_secs_f64();
        let measured = (bytes * 8.0 / capacity_bits).clamp(0.0, 1.0);
        let smoothed = 0.7 * load(&inner) + 0.3 * measured;
        inner.load_bits.store(smoothed.to_bits(), Ordering::Relaxed);
        let mut rtts: Vec<([u8; 32], f32)> = inner
            .dialer
            .rtts()
            .into_iter()
            .map(|(id, rtt)| (*id.as_bytes(), (rtt.as_secs_f64() * 1e3) as f32))
            .collect();
        rtts.truncate(MAX_REPORTED_RTTS);
        let mut areas: Vec<(String, f64, Instant)> = inner
            .area_rtts
            .lock()
            .expect("areas lock")
            .iter()
            .map(|(a, (ms, at))| (a.clone(), *ms, *at))
            .collect();
        areas.sort_by_key(|(_, _, at)| std::cmp::Reverse(*at));
        areas.truncate(MAX_REPORTED_RTTS);
        inner.membership.report(Report {
            from: inner.me.id,
            seq,
            load: smoothed as f32,
            rtts,
            areas: areas.into_iter().map(|(a, ms, _)| (a, ms as f32)).collect(),
            throughput: inner
                .throughput
                .lock()
                .expect("throughput lock")
                .iter()
                .take(MAX_REPORTED_RTTS)
                .map(|(id, mbps)| (*id.as_bytes(), *mbps as f32))
                .collect(),
        });
        if inner.membership.peers().is_empty() {
            for (id, addr) in &seeds {
                inner.membership.join(*id, *addr);
            }
        }
    }
}

/// The routing matrix as this node sees the network now: itself and its live peers, with the
/// RTTs it measures and those the peers report.
fn matrix(inner: &Inner) -> RoutingMatrix {
    let mut matrix = RoutingMatrix::new(inner.weights);
    let peers = inner.membership.peers();
    let spec = |m: &Member, load: f64| {
        let geo = m.geo();
        NodeSpec {
            id: m.node_id().to_string(),
            region: m.region.clone(),
            lat: geo.map(|g| g.0),
            lon: geo.map(|g| g.1),
            load,
        }
    };
    let _ = matrix.add_node(spec(&inner.me, load(inner)));
    let mut capacity = HashMap::new();
    capacity.insert(inner.me.node_id(), inner.me.capacity_mbps);
    for p in &peers {
        let _ = matrix.add_node(spec(&p.member, f64::from(p.load)));
        capacity.insert(p.member.node_id(), p.member.capacity_mbps);
    }
    // Observed throughput between two nodes, where one of them has pulled from the other.
    let mut observed: HashMap<(NodeId, NodeId), f64> = HashMap::new();
    for (peer, mbps) in inner.throughput.lock().expect("throughput lock").iter() {
        observed.insert((inner.me.node_id(), *peer), *mbps);
    }
    for p in &peers {
        for (to, mbps) in &p.throughput {
            observed.insert((p.member.node_id(), *to), f64::from(*mbps));
        }
    }
    let capacity_between = |a: &NodeId, b: &NodeId| {
        f64::from(
            capacity
                .get(a)
                .copied()
                .unwrap_or(1)
                .min(capacity.get(b).copied().unwrap_or(1)),
        )
    };
    let mut link = |a: NodeId, b: NodeId, rtt_ms: f64| {
        if a == b || !capacity.contains_key(&a) || !capacity.contains_key(&b) {
            return;
        }
        let _ = matrix.add_link(LinkSpec {
            from: a.to_string(),
            to: b.to_string(),
            rtt_ms: rtt_ms.max(0.001),
            bandwidth_mbps: observed
                .get(&(a, b))
                .or_else(|| observed.get(&(b, a)))
                .copied()
                .unwrap_or_else(|| capacity_between(&a, &b))
                .clamp(0.001, crate::routing::MAX_BANDWIDTH_MBPS),
            loss: 0.0,
        });
    };
    for (peer, rtt) in inner.dialer.rtts() {
        link(inner.me.node_id(), peer, rtt.as_secs_f64() * 1e3);
    }
    for p in &peers {
        for (to, ms) in &p.rtts {
            link(p.member.node_id(), *to, f64::from(*ms));
        }
    }
    matrix
}

/// The nodes this node pulls missing content from, best first: ranked afresh when a member
/// came or went or the ranking is older than a report interval (loads and RTTs change no
/// faster), and otherwise reused, so a burst of misses does not rebuild the matrix each time.
fn upstreams(inner: &Inner) -> Vec<Member> {
    let changes = inner.membership.changes();
    let mut cached = inner.upstream_cache.lock().expect("upstream cache lock");
    if let Some((seen, at, list)) = cached.as_ref() {
        if *seen == changes && at.elapsed() < REPORT_INTERVAL {
            return list.clone();
        }
    }
    let list = rank_upstreams(inner);
    *cached = Some((changes, Instant::now(), list.clone()));
    list
}

/// Ranks upstreams by the routing matrix. Edges use origins and relays (a relay only where the
/// best route to an origin runs through it); relays use origins.
fn rank_upstreams(inner: &Inner) -> Vec<Member> {
    let peers = inner.membership.peers();
    let by_id: HashMap<NodeId, &Member> = peers
        .iter()
        .map(|p| (p.member.node_id(), &p.member))
        .collect();
    let matrix = matrix(inner);
    let me = inner.me.node_id().to_string();
    let mut ranked: Vec<(f64, Member)> = Vec::new();
    for p in peers.iter().filter(|p| p.member.role == Role::Origin) {
        let target = p.member.node_id().to_string();
        let (cost, via) = match matrix.find_optimal_route(&me, &target, Objective::Balanced) {
            Ok(route) => {
                let first_hop = route
                    .path
                    .get(1)
                    .and_then(|hop| hop.parse::<NodeId>().ok())
                    .and_then(|id| by_id.get(&id).copied())
                    .filter(|m| m.role == Role::Relay && inner.me.role == Role::Edge);
                (route.cost, first_hop.unwrap_or(&p.member).clone())
            }
            // Not measured yet: rank by distance, unknown last.
            Err(_) => {
                let km = match (inner.me.geo(), p.member.geo()) {
                    (Some(a), Some(b)) => GeoPoint::new(a.0, a.1)
                        .zip(GeoPoint::new(b.0, b.1))
                        .map_or(1e6, |(a, b)| a.distance_km(&b)),
                    _ => 1e6,
                };
                (1e9 + km, p.member.clone())
            }
        };
        ranked.push((cost, via));
    }
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    let mut seen = std::collections::HashSet::new();
    let list: Vec<Member> = ranked
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| seen.insert(m.id))
        .collect();
    let best = list.first().map(Member::node_id);
    let mut preferred = inner.preferred_upstream.lock().expect("preferred lock");
    if *preferred != best {
        if preferred.is_some() {
            inner.metrics.route_changes.fetch_add(1, Ordering::Relaxed);
        }
        *preferred = best;
    }
    list
}

fn not_found(id: &ContentId) -> (ErrorCode, String) {
    (
        ErrorCode::NotFound,
        format!("content {id} is not in this network"),
    )
}

/// The manifest of `id`: from the store, the cache, or (edges and relays) upstream. `asked`
/// is true when a client asked for the manifest itself (it then counts as a cache hit or miss).
async fn manifest_of(inner: &Arc<Inner>, id: ContentId, asked: bool) -> Shared<Arc<Manifest>> {
    if let Some(store) = &inner.store {
        let store = store.clone();
        return tokio::task::spawn_blocking(move || {
            let store = store.read().expect("store lock");
            match store.manifest(&id) {
                Err(crate::store::StoreError::NotFound(_)) => store
                    .held_manifest(&id)?
                    .ok_or(crate::store::StoreError::NotFound(id)),
                other => other,
            }
        })
        .await
        .map_err(|e| (ErrorCode::Internal, e.to_string()))?
        .map(Arc::new)
        .map_err(|e| match e {
            crate::store::StoreError::NotFound(_) => not_found(&id),
            other => (ErrorCode::Internal, other.to_string()),
        });
    }
    if let Some(m) = inner.cache.as_ref().and_then(|c| c.manifest(&id, asked)) {
        return Ok(Arc::new(m));
    }
    let fetcher = inner.clone();
    inner
        .manifests
        .get_or_fetch(id, move || async move {
            // A fetch that finished between our cache check and now has stored the manifest.
            if let Some(m) = fetcher.cache.as_ref().and_then(|c| c.manifest(&id, false)) {
                return Ok(Arc::new(m));
            }
            let mut last = not_found(&id);
            for up in upstreams(&fetcher) {
                let Ok(conn) = fetcher.dialer.connect(up.node_id(), up.addr).await else {
                    continue;
                };
                match fetch_manifest_as(&conn, &id, None).await {
                    Ok((m, restriction)) => {
                        // The restriction is recorded before the manifest is cached, so a
                        // restricted content is never served openly, even after a restart.
                        if let Some(d) = restriction {
                            remember_restriction(&fetcher, id, d);
                            if let Some(cache) = &fetcher.cache {
                                if cache.set_restriction(&id, &d).is_err() {
                                    return Err((
                                        ErrorCode::Internal,
                                        "cannot record a read restriction".into(),
                                    ));
                                }
                            }
                        }
                        if let Some(cache) = &fetcher.cache {
                            let _ = cache.put(id, &m.encode());
                        }
                        return Ok(Arc::new(m));
                    }
                    Err(e) => last = (ErrorCode::NotFound, e.to_string()),
                }
            }
            Err(last)
        })
        .await
}

/// Chunk `index` of `id` (whose manifest the caller resolved): from the store, the cache, or
/// upstream (one fetch however many ask).
async fn chunk_of(
    inner: &Arc<Inner>,
    id: ContentId,
    manifest: Arc<Manifest>,
    index: u32,
) -> Shared<Bytes> {
    let entry = manifest.chunks.get(index as usize).cloned().ok_or((
        ErrorCode::BadRequest,
        format!("content {id} has no chunk {index}"),
    ))?;
    if let Some(store) = &inner.store {
        let (reader, local_entry, policy) = (store.clone(), entry.clone(), manifest.erasure);
        let whole = tokio::task::spawn_blocking(move || {
            let store = reader.read().expect("store lock");
            if store.contains(&id)? {
                store
                    .read_chunk(&id, &local_entry, policy)
                    .map(|(bytes, _)| Some(Bytes::from(bytes)))
            } else {
                Ok(None)
            }
        })
        .await
        .map_err(|e| (ErrorCode::Internal, e.to_string()))?
        .map_err(|e| (ErrorCode::NotFound, e.to_string()))?;
        if let Some(bytes) = whole {
            return Ok(bytes);
        }
        // Not published here: this origin may hold some of its shards; rebuild from any K.
        let fetcher = inner.clone();
        return inner
            .chunks
            .get_or_fetch(entry.id, move || async move {
                rebuild_chunk(&fetcher, id, &manifest, index).await
            })
            .await;
    }
    if let Some(bytes) = inner.cache.as_ref().and_then(|c| c.get(&entry.id)) {
        return Ok(Bytes::from(bytes));
    }
    let fetcher = inner.clone();
    inner
        .chunks
        .get_or_fetch(entry.id, move || async move {
            // A fetch that finished between our cache check and now has stored the chunk.
            if let Some(bytes) = fetcher.cache.as_ref().and_then(|c| c.peek(&entry.id)) {
                return Ok(Bytes::from(bytes));
            }
            let mut last = (
                ErrorCode::NotFound,
                format!("no upstream has chunk {index} of {id}"),
            );
            for up in upstreams(&fetcher) {
                let Ok(conn) = fetcher.dialer.connect(up.node_id(), up.addr).await else {
                    continue;
                };
                let started = Instant::now();
                match fetch_chunk(&conn, &id, &manifest, index).await {
                    Ok(bytes) => {
                        let mbps = bytes.len() as f64 * 8.0
                            / started.elapsed().as_secs_f64().max(1e-6)
                            / 1e6;
                        let mut seen = fetcher.throughput.lock().expect("throughput lock");
                        let smoothed = seen
                            .get(&up.node_id())
                            .map_or(mbps, |old| 0.8 * old + 0.2 * mbps);
                        seen.insert(up.node_id(), smoothed);
                        drop(seen);
                        fetcher
                            .metrics
                            .bytes_in
                            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                        if let Some(cache) = &fetcher.cache {
                            if let Err(e) = cache.put(entry.id, &bytes) {
                                tracing::warn!(error = %e, "cannot cache a chunk");
                            }
                        }
                        return Ok(Bytes::from(bytes));
                    }
                    Err(e) => last = (ErrorCode::NotFound, e.to_string()),
                }
            }
            Err(last)
        })
        .await
}

/// What a request is answered with.
enum Answer {
    /// A body (DATA frames), then a RESPONSE carrying the second part.
    Body(Bytes, Bytes),
    /// A RESPONSE only.
    Response(Bytes),
}

impl Answer {
    fn json(doc: serde_json::Value) -> Self {
        Answer::Response(Bytes::from(doc.to_string()))
    }
}

/// The request kind an operation is counted under in the metrics.
fn kind_of(op: Op) -> &'static str {
    match op {
        Op::GetManifest => "manifest",
        Op::GetChunk => "chunk",
        Op::GetShard | Op::StoreShards | Op::Holders => "shard",
        Op::Put => "put",
        Op::Purge => "purge",
        Op::Prefetch => "prefetch",
        Op::Locate => "locate",
        Op::Status => "status",
        Op::Gossip => "gossip",
        Op::NameSet | Op::NameGet => "name",
        Op::Ping | Op::Echo | Op::Sink | Op::Discard => "other",
    }
}

/// Answers one request: the basic operations as a bare endpoint does, the others here.
async fn handle(inner: Arc<Inner>, mut req: IncomingRequest) -> Result<(), TransportError> {
    let op = req.payload.first().copied().and_then(Op::from_code);
    let Some(op) = op.filter(|op| kind_of(*op) != "other") else {
        inner.metrics.request("other");
        return super::basic(req, &inner.endpoint.node_id().to_string()).await;
    };
    inner.metrics.request(kind_of(op));
    let started = Instant::now();
    let answer = answer(&inner, op, &mut req).await;
    if op == Op::GetChunk {
        inner.metrics.chunk_latency.observe(started.elapsed());
    }
    match answer {
        Ok(Answer::Body(body, response)) => {
            let len = body.len() as u64;
            req.reply.send_data(body).await?;
            req.reply.send_end().await?;
            req.reply.send_response(response).await?;
            inner.metrics.bytes_out.fetch_add(len, Ordering::Relaxed);
            inner.served_since_report.fetch_add(len, Ordering::Relaxed);
            req.reply.finish()
        }
        Ok(Answer::Response(payload)) => {
            req.reply.send_response(payload).await?;
            req.reply.finish()
        }
        Err((code, reason)) => req.reply.send_error(code, &reason).await,
    }
}

/// A GET's content id, the bytes after it (a chunk's index) and the read token it may carry.
type GetTarget<'a> = (ContentId, &'a [u8], Option<&'a [u8]>);

/// The content id (and, for chunks, index) a GET names, and the read token it may carry.
fn get_target<'a>(args: &'a [u8], fixed: usize, usage: &str) -> Shared<GetTarget<'a>> {
    let (head, token) =
        wire::get_args(args, fixed).ok_or((ErrorCode::BadRequest, usage.to_owned()))?;
    Ok((
        wire::content_id(head).expect("at least 32 bytes"),
        &head[32..],
        token,
    ))
}

/// The answer to one operation other than the basic ones.
async fn answer(inner: &Arc<Inner>, op: Op, req: &mut IncomingRequest) -> Shared<Answer> {
    let args = req.payload.slice(1..);
    match op {
        Op::GetManifest => {
            let (id, _, token) = get_target(
                &args,
                32,
                "a content id (32 bytes) is required, then an optional read token",
            )?;
            let manifest = manifest_of(inner, id, true).await?;
            let digest = check_read(inner, &req.conn, &id, token)?;
            let restriction = digest.map_or_else(Bytes::new, |d| Bytes::copy_from_slice(&d));
            Ok(Answer::Body(Bytes::from(manifest.encode()), restriction))
        }
        Op::GetChunk => {
            let (id, index, token) = get_target(
                &args,
                36,
                "GET_CHUNK needs id + u32 index, then an optional read token",
            )?;
            let index = u32::from_be_bytes(index.try_into().expect("4 bytes"));
            let manifest = manifest_of(inner, id, false).await?;
            check_read(inner, &req.conn, &id, token)?;
            Ok(Answer::Body(
                chunk_of(inner, id, manifest, index).await?,
                Bytes::new(),
            ))
        }
        Op::GetShard => Ok(Answer::Body(shard(inner, &args).await?, Bytes::new())),
        Op::StoreShards => store_shards(inner, req, &args).await.map(Answer::json),
        Op::Holders => holders(inner, &args).map(Answer::json),
        Op::Gossip => {
            let from = req.conn.peer_node_id().ok_or((
                ErrorCode::Unauthorized,
                "membership needs a node certificate".to_owned(),
            ))?;
            inner
                .membership
                .receive(args, from)
                .map_err(|e| (ErrorCode::BadRequest, e.to_string()))?;
            Ok(Answer::Response(Bytes::new()))
        }
        Op::Put => put(inner, req, &args).await.map(Answer::json),
        Op::Purge => purge(inner, &args).await.map(Answer::json),
        Op::Prefetch => prefetch(inner, &args).await.map(Answer::json),
        Op::Locate => {
            locate(inner, &args, req.conn.remote_addr(), req.conn.rtt()).map(Answer::json)
        }
        Op::NameSet => name_set(inner, &args).await.map(Answer::json),
        Op::NameGet => name_get(inner, &args)
            .await
            .map(|r| Answer::Response(Bytes::from(r.encode()))),
        Op::Status => Ok(Answer::json(status(inner))),
        Op::Ping | Op::Echo | Op::Sink | Op::Discard => unreachable!("answered by basic()"),
    }
}

/// GET_SHARD: a blob this node holds, by id.
async fn shard(inner: &Inner, args: &[u8]) -> Shared<Bytes> {
    let shard = match wire::content_id(args) {
        Some(id) if args.len() == 32 => id,
        _ => {
            return Err((
                ErrorCode::BadRequest,
                "a shard id (32 bytes) is required".into(),
            ))
        }
    };
    let store = inner
        .store
        .clone()
        .ok_or((ErrorCode::NotFound, "this node keeps no shards".to_owned()))?;
    tokio::task::spawn_blocking(move || store.read().expect("store lock").blob(&shard))
        .await
        .map_err(|e| (ErrorCode::Internal, e.to_string()))?
        .map_err(|e| (ErrorCode::Internal, e.to_string()))?
        .map(Bytes::from)
        .ok_or((ErrorCode::NotFound, format!("no shard {shard} here")))
}

/// HOLDERS: where a content's shards were placed.
fn holders(inner: &Inner, args: &[u8]) -> Shared<serde_json::Value> {
    let id = match wire::content_id(args) {
        Some(id) if args.len() == 32 => id,
        _ => {
            return Err((
                ErrorCode::BadRequest,
                "a content id (32 bytes) is required".into(),
            ))
        }
    };
    let not_placed = || {
        (
            ErrorCode::NotFound,
            format!("content {id} is not placed across nodes"),
        )
    };
    let store = inner.store.as_ref().ok_or_else(not_placed)?;
    let placement = store
        .read()
        .expect("store lock")
        .placement(&id)
        .map_err(|e| (ErrorCode::Internal, e.to_string()))?
        .ok_or_else(not_placed)?;
    serde_json::from_slice(&placement).map_err(|e| (ErrorCode::Internal, e.to_string()))
}

/// Keeps a restriction learned from upstream, within a bound (the oldest-keyed goes first).
fn remember_restriction(inner: &Inner, id: ContentId, digest: [u8; 32]) {
    let mut known = inner.restrictions.lock().expect("restrictions lock");
    if known.len() >= MAX_CACHED_NAMES && !known.contains_key(&id) {
        let any = known.keys().next().copied();
        if let Some(any) = any {
            known.remove(&any);
        }
    }
    known.insert(id, digest);
}

/// The read-token digest content `id` requires here, if its reads are restricted.
fn restriction_of(inner: &Inner, id: &ContentId) -> Option<[u8; 32]> {
    if let Some(store) = &inner.store {
        if let Ok(Some(d)) = store.read().expect("store lock").restriction(id) {
            return Some(d);
        }
    }
    if let Some(d) = inner.cache.as_ref().and_then(|c| c.restriction(id)) {
        return Some(d);
    }
    inner
        .restrictions
        .lock()
        .expect("restrictions lock")
        .get(id)
        .copied()
}

/// Lets a read of `id` through if the content is open, the reader is a member node (edges
/// and relays fetching for their clients, who were checked there), or it presented the read
/// token. Returns the content's restriction, which a member passes on.
fn check_read(
    inner: &Inner,
    conn: &StoqConnection,
    id: &ContentId,
    token: Option<&[u8]>,
) -> Shared<Option<[u8; 32]>> {
    let Some(digest) = restriction_of(inner, id) else {
        return Ok(None);
    };
    let member = conn.peer_node_id().is_some_and(|p| {
        inner
            .membership
            .view()
            .read()
            .expect("view lock")
            .peers
            .contains_key(&p)
    });
    let presented = token
        .and_then(|t| std::str::from_utf8(t).ok())
        .is_some_and(|t| wire::read_digest(t) == digest);
    if member || presented {
        return Ok(Some(digest));
    }
    inner.metrics.unauthorized.fetch_add(1, Ordering::Relaxed);
    Err((
        ErrorCode::Unauthorized,
        format!("content {id} is restricted: a valid read token is required"),
    ))
}

/// Checks the admin token at the start of `args`; returns the rest.
fn authorise<'a>(inner: &Inner, args: &'a [u8]) -> Shared<&'a [u8]> {
    match wire::split_token(args) {
        Some((token, rest)) if inner.token.verify(token) => Ok(rest),
        Some(_) => {
            inner.metrics.unauthorized.fetch_add(1, Ordering::Relaxed);
            Err((
                ErrorCode::Unauthorized,
                "wrong admin token; nothing was changed".into(),
            ))
        }
        None => {
            inner.metrics.unauthorized.fetch_add(1, Ordering::Relaxed);
            Err((
                ErrorCode::Unauthorized,
                "an admin token is required; nothing was changed".into(),
            ))
        }
    }
}

/// PUT: the body is written to a temporary file in the data dir, then stored.
async fn put(
    inner: &Arc<Inner>,
    req: &mut IncomingRequest,
    args: &[u8],
) -> Shared<serde_json::Value> {
    let rest = authorise(inner, args)?;
    let Some(store) = inner.store.clone() else {
        return Err((
            ErrorCode::BadRequest,
            format!("this node is an {}; publish to an origin", inner.me.role),
        ));
    };
    let (options, read_digest) =
        wire::put_settings(rest).map_err(|e| (ErrorCode::BadRequest, e))?;
    let erasure = options.erasure;
    let n = inner.upload_counter.fetch_add(1, Ordering::Relaxed);
    let tmp = inner
        .data_dir
        .join(format!("upload.{}.{n}.tmp", std::process::id()));
    let received = async {
        let mut file = tokio::fs::File::create(&tmp).await?;
        let mut bytes = 0u64;
        while let Some(piece) = req.body.recv_data().await.map_err(std::io::Error::other)? {
            bytes += piece.len() as u64;
            file.write_all(&piece).await?;
        }
        file.flush().await?;
        Ok::<u64, std::io::Error>(bytes)
    }
    .await;
    let bytes = match received {
        Ok(b) => b,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err((
                ErrorCode::Internal,
                format!("upload failed, nothing stored: {e}"),
            ));
        }
    };
    inner.metrics.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    let path = tmp.clone();
    // One write lock over the put and its restriction: no reader sees the content open.
    let report = tokio::task::spawn_blocking(move || {
        let mut store = store.write().expect("store lock");
        let report = store.put_file(&path, options)?;
        if read_digest.is_some() || store.restriction(&report.id)?.is_some() {
            store.set_restriction(&report.id, read_digest.as_ref())?;
        }
        Ok::<_, crate::store::StoreError>(report)
    })
    .await
    .map_err(|e| (ErrorCode::Internal, e.to_string()));
    let _ = tokio::fs::remove_file(&tmp).await;
    let report = report?.map_err(|e| (ErrorCode::Internal, e.to_string()))?;
    let mut doc =
        serde_json::to_value(&report).map_err(|e| (ErrorCode::Internal, e.to_string()))?;
    if let Some(policy) = erasure {
        doc["placement"] = distribute(inner, report.id, policy).await;
    }
    Ok(doc)
}

/// PURGE: removes a content here (cache entries on edges, the stored object on origins) and,
/// unless this is already a forwarded purge, forwards it to every live peer.
async fn purge(inner: &Arc<Inner>, args: &[u8]) -> Shared<serde_json::Value> {
    let rest = authorise(inner, args)?;
    let (id, forward) = match (wire::content_id(rest), rest.get(32)) {
        (Some(id), Some(&f)) if rest.len() == 33 => (id, f == 1),
        _ => {
            return Err((
                ErrorCode::BadRequest,
                "PURGE needs a content id and a forward flag".into(),
            ))
        }
    };
    let mut removed = 0u64;
    if let Some(cache) = &inner.cache {
        removed += cache.purge(&id) as u64;
    }
    if let Some(store) = inner.store.clone() {
        let gone = tokio::task::spawn_blocking(move || {
            let mut store = store.write().expect("store lock");
            let held = u64::from(store.held_manifest(&id)?.is_some());
            store.release_held(&id)?;
            match store.contains(&id) {
                Ok(true) => store.delete(&id).map(|_| 1 + held),
                Ok(false) => Ok(held),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(|e| (ErrorCode::Internal, e.to_string()))?
        .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
        removed += gone;
    }
    let mut reached = Vec::new();
    let mut failed = Vec::new();
    if forward {
        let peers = inner.membership.peers();
        let sends = peers.iter().map(|p| {
            let (inner, member) = (inner.clone(), p.member.clone());
            async move {
                let payload = wire::purge_request(inner.token.as_str(), &id, false);
                let result = tokio::time::timeout(PURGE_TIMEOUT, async {
                    let conn = inner.dialer.connect(member.node_id(), member.addr).await?;
                    conn.request(payload).await
                })
                .await;
                let outcome = match result {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("no answer in time".to_owned()),
                };
                (member.node_id(), outcome)
            }
        });
        for (peer, outcome) in futures_join_all(sends).await {
            match outcome {
                Ok(()) => reached.push(peer.to_string()),
                Err(reason) => failed.push(json!({ "id": peer.to_string(), "reason": reason })),
            }
        }
    }
    Ok(json!({
        "id": id.to_string(),
        "removed_here": removed,
        "reached": reached,
        "failed": failed,
    }))
}

/// Runs futures concurrently and collects their outputs in order.
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

/// NAME_SET: an origin points a name at content it holds.
async fn name_set(inner: &Arc<Inner>, args: &[u8]) -> Shared<serde_json::Value> {
    let rest = authorise(inner, args)?;
    let Some(store) = inner.store.clone() else {
        return Err((
            ErrorCode::BadRequest,
            format!("this node is an {}; set names on an origin", inner.me.role),
        ));
    };
    let (name, id, ttl_s, swr_s) =
        wire::name_set_args(rest).map_err(|e| (ErrorCode::BadRequest, e))?;
    let name = name.to_owned();
    let record = tokio::task::spawn_blocking(move || {
        store
            .write()
            .expect("store lock")
            .set_name(&name, &id, ttl_s, swr_s)
    })
    .await
    .map_err(|e| (ErrorCode::Internal, e.to_string()))?
    .map_err(|e| match e {
        crate::store::StoreError::NotFound(_) => not_found(&id),
        other => (ErrorCode::BadRequest, other.to_string()),
    })?;
    Ok(json!({
        "name": record.name,
        "id": record.id.to_string(),
        "ttl_s": record.ttl_s,
        "swr_s": record.swr_s,
        "version": record.version,
    }))
}

/// NAME_GET: an origin answers from its store; an edge or relay from its copy while fresh,
/// from its copy while refreshing it in the background when stale, and from upstream when it
/// has none or it expired.
async fn name_get(inner: &Arc<Inner>, args: &[u8]) -> Shared<NameRecord> {
    let name = std::str::from_utf8(args)
        .ok()
        .filter(|n| check_name(n).is_ok())
        .ok_or((
            ErrorCode::BadRequest,
            "a name is 1 to 255 bytes of UTF-8".to_owned(),
        ))?
        .to_owned();
    if let Some(store) = inner.store.clone() {
        let lookup = name.clone();
        return tokio::task::spawn_blocking(move || {
            store.read().expect("store lock").name(&lookup)
        })
        .await
        .map_err(|e| (ErrorCode::Internal, e.to_string()))?
        .map_err(|e| (ErrorCode::Internal, e.to_string()))?
        .ok_or((ErrorCode::NotFound, format!("name {name:?} is not set")));
    }
    let cached = inner.names.lock().expect("names lock").get(&name).cloned();
    if let Some((record, fetched)) = cached {
        match record.freshness(fetched.elapsed().as_millis() as u64) {
            Freshness::Fresh => return Ok(record),
            Freshness::Stale => {
                let inner = inner.clone();
                tokio::spawn(async move {
                    let _ = refresh_name(&inner, name).await;
                });
                return Ok(record);
            }
            Freshness::Expired => {}
        }
    }
    refresh_name(inner, name).await
}

/// Fetches a name's record from upstream (once, however many ask) and keeps a copy.
async fn refresh_name(inner: &Arc<Inner>, name: String) -> Shared<NameRecord> {
    let fetcher = inner.clone();
    inner
        .name_fetches
        .get_or_fetch(name.clone(), move || async move {
            let mut last = (ErrorCode::NotFound, format!("name {name:?} is not set"));
            for up in upstreams(&fetcher) {
                let Ok(conn) = fetcher.dialer.connect(up.node_id(), up.addr).await else {
                    continue;
                };
                match super::client::resolve_name(&conn, &name).await {
                    Ok(record) => {
                        let mut names = fetcher.names.lock().expect("names lock");
                        if names.len() >= MAX_CACHED_NAMES && !names.contains_key(&name) {
                            let oldest = names
                                .iter()
                                .min_by_key(|(_, (_, t))| *t)
                                .map(|(n, _)| n.clone());
                            if let Some(oldest) = oldest {
                                names.remove(&oldest);
                            }
                        }
                        names.insert(name.clone(), (record.clone(), Instant::now()));
                        return Ok(record);
                    }
                    Err(e) => last = (ErrorCode::NotFound, e.to_string()),
                }
            }
            Err(last)
        })
        .await
}

/// Places an erasure-coded content's shards across the live origins (this one included) and
/// sends each holder its shards; returns what happened, for the PUT answer.
async fn distribute(
    inner: &Arc<Inner>,
    id: ContentId,
    policy: crate::chunking::ErasurePolicy,
) -> serde_json::Value {
    let Some(store) = inner.store.clone() else {
        return json!({ "distributed": false, "reason": "not an origin" });
    };
    let mut origins: Vec<Member> = inner
        .membership
        .peers()
        .into_iter()
        .map(|p| p.member)
        .filter(|m| m.role == Role::Origin)
        .collect();
    origins.push(inner.me.clone());
    origins.sort_by_key(|m| m.id);
    if origins.len() < policy.total() {
        return json!({
            "distributed": false,
            "reason": format!("{} shards per chunk need {} origins, {} are live; all shards stay here", policy.total(), policy.total(), origins.len()),
        });
    }
    let manifest = match store.read().expect("store lock").manifest(&id) {
        Ok(m) => m,
        Err(e) => return json!({ "distributed": false, "reason": e.to_string() }),
    };
    let placement = match super::shards::plan_placement(&origins, &manifest, policy) {
        Ok(p) => p,
        Err(e) => return json!({ "distributed": false, "reason": e.to_string() }),
    };
    let placement_json = serde_json::to_vec(&placement).expect("placements serialise");
    if let Err(e) = store
        .write()
        .expect("store lock")
        .set_placement(&id, &placement_json)
    {
        return json!({ "distributed": false, "reason": e.to_string() });
    }
    let manifest = Arc::new(manifest);
    let mut sends = Vec::new();
    for (h, holder) in placement.nodes.iter().enumerate() {
        if holder.id == inner.me.node_id() {
            continue;
        }
        let shards: Vec<ChunkId> = placement
            .shards_of(h)
            .filter_map(|(c, i)| manifest.chunks[c].shards.as_ref().map(|s| s.ids[i]))
            .collect();
        let (inner, store, manifest, placement_json, holder) = (
            inner.clone(),
            store.clone(),
            manifest.clone(),
            placement_json.clone(),
            holder.clone(),
        );
        sends.push(async move {
            let result = send_shards(
                &inner,
                &store,
                &id,
                &manifest,
                &placement_json,
                &holder,
                &shards,
            )
            .await;
            (holder.id, shards.len(), result)
        });
    }
    let mut holders = vec![json!({ "id": inner.me.node_id().to_string(), "ok": true })];
    for (holder, count, result) in futures_join_all(sends.into_iter()).await {
        holders.push(match result {
            Ok(()) => json!({ "id": holder.to_string(), "shards": count, "ok": true }),
            Err(reason) => {
                json!({ "id": holder.to_string(), "shards": count, "ok": false, "reason": reason })
            }
        });
    }
    json!({ "distributed": true, "holders": holders })
}

/// Streams one holder its shards: the manifest, the placement, then each shard.
async fn send_shards(
    inner: &Arc<Inner>,
    store: &Arc<RwLock<Store>>,
    id: &ContentId,
    manifest: &Manifest,
    placement: &[u8],
    holder: &super::shards::Holder,
    shards: &[ChunkId],
) -> Result<(), String> {
    let conn = inner
        .dialer
        .connect(holder.id, holder.addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let encoded = manifest.encode();
    head.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    head.extend_from_slice(&encoded);
    head.extend_from_slice(&(placement.len() as u32).to_be_bytes());
    head.extend_from_slice(placement);
    let restriction = restriction_of(inner, id);
    let restriction: &[u8] = restriction.as_ref().map_or(&[], |d| &d[..]);
    head.extend_from_slice(&(restriction.len() as u32).to_be_bytes());
    head.extend_from_slice(restriction);
    let sent = async {
        send.send_request(wire::store_shards_request(inner.token.as_str(), id))
            .await?;
        send.send_data(Bytes::from(head)).await?;
        for batch in shards.chunks(32) {
            let (store, batch) = (store.clone(), batch.to_vec());
            let body = tokio::task::spawn_blocking(move || {
                let store = store.read().expect("store lock");
                let mut body = Vec::new();
                for shard in &batch {
                    if let Ok(Some(bytes)) = store.blob(shard) {
                        super::shards::encode_shard(shard, &bytes, &mut body);
                    }
                }
                body
            })
            .await
            .map_err(|e| TransportError::Timeout(e.to_string()))?;
            send.send_data(Bytes::from(body)).await?;
        }
        send.send_end().await?;
        send.finish()
    }
    .await;
    match (sent, recv.recv_response().await) {
        (_, Ok(_)) => Ok(()),
        (_, Err(e)) => Err(e.to_string()),
    }
}

/// Bytes of shards a holder buffers before writing them.
const MAX_SHARD_BATCH_BYTES: usize = 32 << 20;

/// Longest manifest or placement a STORE_SHARDS body may carry.
const MAX_SHARD_HEADER: usize = 64 << 20;

/// Takes one length-prefixed block off the front of `buf`, once it has all arrived.
fn take_block(buf: &mut Vec<u8>) -> Option<Result<Vec<u8>, String>> {
    let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    if len > MAX_SHARD_HEADER {
        return Some(Err(format!("a block of {len} bytes is over the limit")));
    }
    if buf.len() < 4 + len {
        return None;
    }
    let block = buf[4..4 + len].to_vec();
    buf.drain(..4 + len);
    Some(Ok(block))
}

/// STORE_SHARDS: keeps the shards another origin placed here, with the manifest and placement.
async fn store_shards(
    inner: &Arc<Inner>,
    req: &mut IncomingRequest,
    args: &[u8],
) -> Shared<serde_json::Value> {
    let rest = authorise(inner, args)?;
    let Some(store) = inner.store.clone() else {
        return Err((ErrorCode::BadRequest, "only origins hold shards".into()));
    };
    let id = match wire::content_id(rest) {
        Some(id) if rest.len() == 32 => id,
        _ => {
            return Err((
                ErrorCode::BadRequest,
                "STORE_SHARDS needs a content id".into(),
            ))
        }
    };
    let bad = |m: String| (ErrorCode::BadRequest, m);
    // The head: the manifest, the placement and the read restriction (empty if open), each
    // length-prefixed (u32).
    let mut buf: Vec<u8> = Vec::new();
    let mut blocks = Vec::new();
    while blocks.len() < 3 {
        match take_block(&mut buf) {
            Some(block) => blocks.push(block.map_err(bad)?),
            None => match req.body.recv_data().await.map_err(|e| bad(e.to_string()))? {
                Some(piece) => buf.extend_from_slice(&piece),
                None => {
                    return Err(bad(
                        "the body ended before the manifest and placement".into()
                    ))
                }
            },
        }
    }
    let (manifest_bytes, placement_bytes, restriction) =
        (blocks.remove(0), blocks.remove(0), blocks.remove(0));
    let restriction: Option<[u8; 32]> = match restriction.len() {
        0 => None,
        32 => Some(restriction[..].try_into().expect("32 bytes")),
        _ => return Err(bad("a read restriction is 32 bytes".into())),
    };
    let manifest = Manifest::decode(&manifest_bytes).map_err(|e| bad(e.to_string()))?;
    let placement: super::shards::Placement =
        serde_json::from_slice(&placement_bytes).map_err(|e| bad(e.to_string()))?;
    if let Some(d) = restriction {
        let writer = store.clone();
        tokio::task::spawn_blocking(move || {
            writer
                .write()
                .expect("store lock")
                .set_restriction(&id, Some(&d))
        })
        .await
        .map_err(|e| (ErrorCode::Internal, e.to_string()))?
        .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
    }
    let policy = manifest
        .erasure
        .ok_or_else(|| bad("the content is not erasure-coded".into()))?;
    placement.check(&manifest, policy).map_err(bad)?;
    let mut decoder = super::shards::ShardDecoder::default();
    let mut pending = decoder.push(&buf).map_err(bad)?;
    let mut held = 0usize;
    loop {
        // Shards are written in batches, so memory holds at most one batch (plus one shard).
        let pending_bytes: usize = pending.iter().map(|(_, b)| b.len()).sum();
        if pending.len() >= 32 || pending_bytes >= MAX_SHARD_BATCH_BYTES {
            held += hold(&store, id, &manifest_bytes, std::mem::take(&mut pending)).await?;
        }
        match req.body.recv_data().await.map_err(|e| bad(e.to_string()))? {
            Some(piece) => pending.extend(decoder.push(&piece).map_err(bad)?),
            None => break,
        }
    }
    if !decoder.is_clean() {
        return Err(bad("the body ended inside a shard".into()));
    }
    held += hold(&store, id, &manifest_bytes, pending).await?;
    let writer = store.clone();
    tokio::task::spawn_blocking(move || {
        let mut store = writer.write().expect("store lock");
        store.set_restriction(&id, restriction.as_ref())?;
        store.set_placement(&id, &placement_bytes)
    })
    .await
    .map_err(|e| (ErrorCode::Internal, e.to_string()))?
    .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
    Ok(json!({ "id": id.to_string(), "held": held }))
}

async fn hold(
    store: &Arc<RwLock<Store>>,
    id: ContentId,
    manifest: &[u8],
    shards: Vec<(ChunkId, Vec<u8>)>,
) -> Shared<usize> {
    let (store, manifest) = (store.clone(), manifest.to_vec());
    tokio::task::spawn_blocking(move || {
        store
            .write()
            .expect("store lock")
            .hold(&id, &manifest, &shards)
    })
    .await
    .map_err(|e| (ErrorCode::Internal, e.to_string()))?
    .map_err(|e| (ErrorCode::BadRequest, e.to_string()))
}

/// How long a holder waits for one shard from another.
const SHARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Fetches one shard from another holder, verified against its id; `None` if it cannot.
async fn shard_from(
    inner: &Arc<Inner>,
    holder: &super::shards::Holder,
    shard: &ChunkId,
    len: u32,
) -> Option<Vec<u8>> {
    let fetch = async {
        let conn = inner.dialer.connect(holder.id, holder.addr).await.ok()?;
        let mut payload = vec![Op::GetShard.code()];
        payload.extend_from_slice(&shard.0);
        let (mut send, mut recv) = conn.open_bi().await.ok()?;
        send.send_request(payload).await.ok()?;
        send.finish().ok()?;
        let body = recv.recv_body(len as usize).await.ok()?;
        recv.recv_response().await.ok()?;
        Some(body.to_vec())
    };
    tokio::time::timeout(SHARD_TIMEOUT, fetch)
        .await
        .ok()
        .flatten()
        .filter(|b| shard.matches(b))
}

/// Rebuilds chunk `index` of `id` from any K of its shards, asking their holders (data shards
/// first, parity only for what is missing), and checks it against its id.
async fn rebuild_chunk(
    inner: &Arc<Inner>,
    id: ContentId,
    manifest: &Manifest,
    index: u32,
) -> Shared<Bytes> {
    let store = inner.store.clone().ok_or_else(|| not_found(&id))?;
    let placement = store
        .read()
        .expect("store lock")
        .placement(&id)
        .map_err(|e| (ErrorCode::Internal, e.to_string()))?
        .ok_or_else(|| not_found(&id))?;
    let placement: super::shards::Placement =
        serde_json::from_slice(&placement).map_err(|e| (ErrorCode::Internal, e.to_string()))?;
    let entry = &manifest.chunks[index as usize];
    let (Some(policy), Some(set)) = (manifest.erasure, entry.shards.as_ref()) else {
        return Err(not_found(&id));
    };
    let stripe = placement
        .stripes
        .get(index as usize)
        .ok_or_else(|| not_found(&id))?;
    let k = usize::from(policy.k);
    let mut shards: Vec<Option<Vec<u8>>> = vec![None; policy.total()];
    let mut good = 0;
    // Only holders that membership knows to be alive are asked: a dead one would cost a dial
    // timeout per shard, and the answer would come too late for the client anyway.
    let live: std::collections::HashSet<NodeId> = inner
        .membership
        .peers()
        .iter()
        .map(|p| p.member.node_id())
        .chain(std::iter::once(inner.me.node_id()))
        .collect();
    let holder_of = |i: usize| {
        stripe
            .get(i)
            .and_then(|&h| placement.nodes.get(usize::from(h)))
    };
    let order = (0..set.ids.len()).filter(|&i| holder_of(i).is_some_and(|h| live.contains(&h.id)));
    for i in order {
        let shard = &set.ids[i];
        if good == k {
            break;
        }
        let Some(holder) = holder_of(i) else {
            continue;
        };
        let bytes = if holder.id == inner.me.node_id() {
            store.read().expect("store lock").blob(shard).ok().flatten()
        } else {
            shard_from(inner, holder, shard, set.shard_len).await
        };
        if let Some(bytes) = bytes {
            inner
                .metrics
                .bytes_in
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            shards[i] = Some(bytes);
            good += 1;
        }
    }
    if good < k {
        return Err((
            ErrorCode::NotFound,
            format!(
                "chunk {index} of {id}: only {good} of the {k} shards needed are reachable \
                 (holders that membership knows to be alive: {})",
                live.len()
            ),
        ));
    }
    let chunk = crate::chunking::erasure::decode(&shards, policy, entry.length as usize)
        .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
    if !entry.id.matches(&chunk) {
        return Err((
            ErrorCode::NotFound,
            format!("chunk {index} of {id} did not rebuild to its id"),
        ));
    }
    Ok(Bytes::from(chunk))
}

/// PREFETCH: an edge pulls a whole content into its cache ahead of demand.
async fn prefetch(inner: &Arc<Inner>, args: &[u8]) -> Shared<serde_json::Value> {
    let rest = authorise(inner, args)?;
    if inner.cache.is_none() {
        return Err((
            ErrorCode::BadRequest,
            format!("this node is an {}; prefetch to an edge", inner.me.role),
        ));
    }
    let id = match wire::content_id(rest) {
        Some(id) if rest.len() == 32 => id,
        _ => return Err((ErrorCode::BadRequest, "PREFETCH needs a content id".into())),
    };
    let manifest = manifest_of(inner, id, false).await?;
    let mut bytes = 0u64;
    for index in 0..manifest.chunks.len() as u32 {
        bytes += chunk_of(inner, id, manifest.clone(), index).await?.len() as u64;
    }
    Ok(json!({ "id": id.to_string(), "chunks": manifest.chunks.len(), "bytes": bytes }))
}

/// LOCATE: the edges for a client, nearest (and not overloaded) first, then the origins.
fn locate(
    inner: &Inner,
    args: &[u8],
    client: SocketAddr,
    client_rtt: Duration,
) -> Shared<serde_json::Value> {
    let text = std::str::from_utf8(args)
        .map_err(|_| (ErrorCode::BadRequest, "location must be UTF-8".into()))?;
    let location = if let Some(geo) = text.strip_prefix("geo:") {
        ClientLocation::Geo(GeoPoint::parse(geo).ok_or((
            ErrorCode::BadRequest,
            format!("bad position {geo:?}: use LAT,LON"),
        ))?)
    } else if let Some(region) = text.strip_prefix("region:") {
        ClientLocation::Region(region.to_owned())
    } else {
        match client.ip() {
            std::net::IpAddr::V6(ip) => ClientLocation::Address(ip),
            std::net::IpAddr::V4(_) => {
                return Err((ErrorCode::BadRequest, "STOQ is IPv6-only".into()))
            }
        }
    };
    let mut members: Vec<(Member, f32)> = inner
        .membership
        .peers()
        .into_iter()
        .map(|p| (p.member, p.load))
        .collect();
    members.push((inner.me.clone(), load(inner) as f32));
    let area = crate::edge::area_of(&location, &inner.prefixes);
    if let (Some(area), Role::Edge) = (&area, inner.me.role) {
        // An edge that a client asks measures its own RTT to that client's area.
        let rtt = client_rtt.as_secs_f64() * 1e3;
        let mut areas = inner.area_rtts.lock().expect("areas lock");
        if areas.len() >= MAX_AREAS && !areas.contains_key(area) {
            let oldest = areas
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(a, _)| a.clone());
            if let Some(oldest) = oldest {
                areas.remove(&oldest);
            }
        }
        let smoothed = areas
            .get(area)
            .map_or(rtt, |(old, _)| 0.8 * old + 0.2 * rtt);
        areas.insert(area.clone(), (smoothed, Instant::now()));
    }
    let mut registry = EdgeRegistry::new(inner.prefixes.clone());
    if let Some(area) = &area {
        let me = inner.me.node_id().to_string();
        if let Some((ms, _)) = inner.area_rtts.lock().expect("areas lock").get(area) {
            registry.record_rtt(&me, area, *ms);
        }
        for p in inner.membership.peers() {
            for (a, ms) in p.areas.iter().filter(|(a, _)| a == area) {
                registry.record_rtt(&p.member.node_id().to_string(), a, f64::from(*ms));
            }
        }
    }
    for (m, load) in members.iter().filter(|(m, _)| m.role == Role::Edge) {
        let geo = m.geo().and_then(|(lat, lon)| GeoPoint::new(lat, lon));
        let _ = crate::edge::EdgeNetwork::register_edge(
            &mut registry,
            EdgeNode {
                id: m.node_id().to_string(),
                region: m.region.clone(),
                geo,
                load: f64::from(*load).clamp(0.0, 1.0),
                healthy: true,
            },
        );
    }
    let edges = match registry.rank(&location) {
        Ok(edges) => edges,
        Err(crate::edge::EdgeError::NoEdge) => Vec::new(),
        Err(e) => return Err((ErrorCode::BadRequest, e.to_string())),
    };
    let find = |id: &str| members.iter().find(|(m, _)| m.node_id().to_string() == id);
    let describe = |(m, load): &(Member, f32)| {
        json!({
            "id": m.node_id().to_string(),
            "addr": SocketAddr::V6(m.addr).to_string(),
            "role": m.role.to_string(),
            "region": m.region,
            "load": load,
        })
    };
    let mut sources: Vec<serde_json::Value> = edges
        .iter()
        .filter_map(|e| find(&e.id))
        .map(describe)
        .collect();
    sources.extend(
        members
            .iter()
            .filter(|(m, _)| m.role == Role::Origin)
            .map(describe),
    );
    Ok(json!({ "sources": sources }))
}

fn status(inner: &Inner) -> serde_json::Value {
    let rtts: HashMap<NodeId, Duration> = inner.dialer.rtts().into_iter().collect();
    let throughput = inner.throughput.lock().expect("throughput lock").clone();
    let peers: Vec<serde_json::Value> = inner
        .membership
        .peers()
        .iter()
        .map(|p| {
            json!({
                "id": p.member.node_id().to_string(),
                "addr": SocketAddr::V6(p.member.addr).to_string(),
                "role": p.member.role.to_string(),
                "region": p.member.region,
                "geo": p.member.geo().map(|(a, b)| vec![a, b]),
                "load": p.load,
                "rtt_ms": rtts.get(&p.member.node_id()).map(|d| d.as_secs_f64() * 1e3),
                "throughput_mbps": throughput.get(&p.member.node_id()),
            })
        })
        .collect();
    let matrix = matrix(inner);
    let me = inner.me.node_id().to_string();
    let routes: Vec<serde_json::Value> = inner
        .membership
        .peers()
        .iter()
        .filter_map(|p| {
            let to = p.member.node_id().to_string();
            let route = matrix.find_optimal_route(&me, &to, Objective::Balanced).ok()?;
            Some(json!({ "to": to, "path": route.path, "latency_ms": route.latency_ms, "cost": route.cost }))
        })
        .collect();
    let cache = inner.cache.as_ref().map(|c| c.stats());
    let store = inner
        .store
        .as_ref()
        .and_then(|s| s.read().expect("store lock").stats().ok());
    let counters = inner.endpoint.counters();
    json!({
        "node_id": me,
        "addr": SocketAddr::V6(inner.me.addr).to_string(),
        "role": inner.me.role.to_string(),
        "region": inner.me.region,
        "geo": inner.me.geo().map(|(a, b)| vec![a, b]),
        "load": load(inner),
        "peers": peers,
        "routes": routes,
        "membership_changes": inner.membership.changes(),
        "cache": cache,
        "cache_hits": cache.map_or(0, |c| c.hits),
        "store": store.map(|s| json!({
            "objects": s.objects,
            "logical_bytes": s.logical_bytes,
            "stored_bytes": s.stored_bytes,
            "dedup_ratio": s.dedup_ratio,
        })),
        "connections": counters,
        "requests": super::metrics::REQUEST_KINDS.iter().map(|k| (k.to_string(), serde_json::Value::from(inner.metrics.requests_of(k)))).collect::<serde_json::Map<_, _>>(),
        "bytes_out": inner.metrics.bytes_out.load(Ordering::Relaxed),
        "bytes_in": inner.metrics.bytes_in.load(Ordering::Relaxed),
    })
}
