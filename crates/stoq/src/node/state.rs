//! What a running node holds, one part per concern: its role's holdings, its links, its
//! membership, access control, upstream choice, pull-through, load and edge choice. The
//! files named after each concern hold what the node does with its part.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use stoq_transport::{NodeId, StoqEndpoint};

use super::admission::Admission;
use super::bounded::BoundedMap;
use super::cache::EdgeCache;
use super::coalesce::Coalescer;
use super::dialer::Dialer;
use super::error::Answered;
use super::membership::{Member, Membership};
use super::metrics::{NodeMetrics, Snapshot};
use super::stored::OriginStore;
use super::token::AdminToken;
use crate::chunking::{ContentId, Hash32, Manifest};
use crate::config::Role;
use crate::edge::names::NameRecord;
use crate::edge::{EdgeNetwork, PrefixTable};
use crate::routing::{link_update, CostWeights, Ewma, LinkSample, Router};

/// What a node keeps content in, by role: an origin's store, an edge's cache, or (a relay)
/// nothing.
#[derive(Debug)]
pub enum Holdings {
    /// Published content and shards held for other origins.
    Origin(OriginStore),
    /// Content pulled from upstream, bounded in bytes.
    Edge(Arc<EdgeCache>),
    /// A relay forwards and keeps nothing.
    Relay,
}

impl Holdings {
    /// The role these holdings belong to.
    pub fn role(&self) -> Role {
        match self {
            Holdings::Origin(_) => Role::Origin,
            Holdings::Edge(_) => Role::Edge,
            Holdings::Relay => Role::Relay,
        }
    }

    /// The store, on an origin.
    pub fn store(&self) -> Option<&OriginStore> {
        match self {
            Holdings::Origin(s) => Some(s),
            _ => None,
        }
    }

    /// The cache, on an edge.
    pub fn cache(&self) -> Option<&Arc<EdgeCache>> {
        match self {
            Holdings::Edge(c) => Some(c),
            _ => None,
        }
    }
}

/// Most client areas a node keeps RTTs for.
const MAX_AREAS: usize = 4096;

/// How busy this node is, and how near it is to its clients' areas.
#[derive(Debug)]
pub struct LoadMeter {
    load: Mutex<Ewma>,
    served_since_report: AtomicU64,
    /// Smoothed RTT to clients of an area (ms), and when it was last measured.
    area_rtts: Mutex<BoundedMap<String, (Ewma, Instant)>>,
}

impl Default for LoadMeter {
    fn default() -> Self {
        LoadMeter {
            load: Mutex::new(Ewma::starting_at(0.3, 0.0)),
            served_since_report: AtomicU64::new(0),
            area_rtts: Mutex::new(BoundedMap::new(MAX_AREAS)),
        }
    }
}

impl LoadMeter {
    /// The smoothed load, 0 to 1.
    pub fn load(&self) -> f64 {
        self.load.lock().expect("load lock").value().unwrap_or(0.0)
    }

    /// Counts bytes served to clients.
    pub fn served(&self, bytes: u64) {
        self.served_since_report.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Folds in the bytes served since the last call, against `capacity_bits` for the interval;
    /// returns the new smoothed load.
    pub fn close_interval(&self, capacity_bits: f64) -> f64 {
        let bytes = self.served_since_report.swap(0, Ordering::Relaxed) as f64;
        let measured = (bytes * 8.0 / capacity_bits).clamp(0.0, 1.0);
        self.load.lock().expect("load lock").update(measured)
    }

    /// Records an RTT to a client of `area`.
    pub fn record_area_rtt(&self, area: &str, rtt_ms: f64) {
        let mut areas = self.area_rtts.lock().expect("areas lock");
        let mut average = areas.get(area).map_or(Ewma::new(0.2), |(e, _)| *e);
        average.update(rtt_ms);
        areas.insert(area.to_owned(), (average, Instant::now()));
    }

    /// The smoothed RTT to clients of `area`, if measured.
    pub fn area_rtt(&self, area: &str) -> Option<f64> {
        let areas = self.area_rtts.lock().expect("areas lock");
        areas.get(area).and_then(|(e, _)| e.value())
    }

    /// The most recently measured areas, at most `n`.
    pub fn recent_areas(&self, n: usize) -> Vec<(String, f64)> {
        let areas = self.area_rtts.lock().expect("areas lock");
        areas
            .newest_first()
            .filter_map(|(a, (e, _))| Some((a.clone(), e.value()?)))
            .take(n)
            .collect()
    }
}

impl std::fmt::Debug for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeState")
            .field("node", &self.me.node_id())
            .finish()
    }
}

impl super::metrics::Scrape for NodeState {
    fn metrics(&self) -> &NodeMetrics {
        &self.metrics
    }

    fn snapshot(&self) -> Snapshot {
        NodeState::snapshot(self)
    }
}

/// Everything a running node shares among its tasks.
pub struct NodeState {
    /// The QUIC endpoint it listens and dials on.
    pub endpoint: StoqEndpoint,
    /// Itself, as membership knows it.
    pub me: Member,
    /// Where it keeps its files.
    pub data_dir: PathBuf,
    /// What it keeps content in.
    pub holdings: Holdings,
    /// Its links to peers.
    pub dialer: Arc<Dialer>,
    /// Who else is in the network.
    pub membership: Membership,
    /// Its counters.
    pub metrics: Arc<NodeMetrics>,
    /// The admin token and read restrictions.
    pub access: Access,
    /// Per-client request and byte rates.
    pub qos: super::qos::Qos,
    /// Who may join the membership (`node.membership`).
    pub join_policy: crate::config::JoinPolicy,
    /// Which peers it pulls from.
    pub upstreams: Upstreams,
    /// Fetches on behalf of clients, coalesced, and name copies.
    pub pull: PullThrough,
    /// Its load and RTTs to client areas.
    pub load: LoadMeter,
    /// Which edges a client should use.
    pub locator: Locator,
    /// Numbers uploads' temporary files.
    pub upload_counter: AtomicU64,
    /// Slots for content requests: the rest wait briefly, then are answered BUSY.
    pub admission: Admission,
    /// Its counters over the last minute, and its uptime.
    pub recent: super::recent::Recent,
    /// The tracing span its events are logged in (`node{node=ID}`).
    pub span: tracing::Span,
    /// Numbers requests for the logs (`request{id=N}`), from 1.
    pub request_ids: AtomicU64,
    /// The HTTP front's read-ahead budget (`http.read_ahead_bytes`).
    pub front_budget: Arc<tokio::sync::Semaphore>,
}

impl NodeState {
    /// Its role.
    pub fn role(&self) -> Role {
        self.holdings.role()
    }

    /// The counters a "last minute" window is the difference of, now.
    pub fn totals(&self) -> super::recent::Totals {
        let m = &self.metrics;
        let c = self.endpoint.counters();
        let (http_requests, http_errors) = m.front.totals();
        let requests = m
            .requests
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .sum::<u64>();
        super::recent::Totals {
            bytes_in: m.bytes_in.load(Ordering::Relaxed),
            bytes_out: m.bytes_out.load(Ordering::Relaxed),
            requests: requests + http_requests,
            errors: m.busy.load(Ordering::Relaxed)
                + m.unauthorized.load(Ordering::Relaxed)
                + c.refused_limit
                + c.failed_handshakes
                + c.stalled_streams
                + c.busy_requests
                + http_errors,
        }
    }

    /// Figures for the metrics page, read at scrape time from the parts that own them.
    pub fn snapshot(&self) -> Snapshot {
        let counters = self.endpoint.counters();
        Snapshot {
            cache: self.holdings.cache().map(|c| c.stats()).unwrap_or_default(),
            connections_open: counters.open,
            connections_accepted: counters.accepted,
            connections_refused: counters.refused_limit,
            stalled_streams: counters.stalled_streams,
            request_buffers_full: counters.busy_requests,
            peers: self.membership.peers().len() as u64,
            membership_changes: self.membership.changes(),
            load: self.load.load(),
            slots_in_use: self.admission.in_use() as u64,
            slots: self.admission.limit() as u64,
            disk: disk_space(&self.data_dir),
        }
    }

    /// Counts `bytes` of content sent to `conn`'s peer: metrics, load, and its byte rates.
    pub fn served(&self, conn: &stoq_transport::StoqConnection, bytes: u64) {
        self.metrics
            .bytes_out
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        self.load.served(bytes);
        self.qos.spent(
            super::qos::Client::of(conn),
            bytes,
            std::time::Instant::now(),
        );
    }

    /// A fresh path in the data directory for an upload to be written to before it is stored
    /// (the store's own disk, so a full disk fails the upload cleanly).
    pub fn upload_path(&self) -> PathBuf {
        let n = self.upload_counter.fetch_add(1, Ordering::Relaxed);
        self.data_dir
            .join(format!("upload.{}.{n}.tmp", std::process::id()))
    }

    /// The media type recorded for `id` when it was published: what this node learned of it
    /// already, else an origin's store (read off the runtime) or an edge's cache, kept once
    /// found so a request does no IO for it after the first.
    pub async fn media_type(&self, id: &ContentId) -> Option<String> {
        if let Some(known) = self.pull.learned_media_type(id) {
            return Some(known);
        }
        let found = match &self.holdings {
            Holdings::Origin(store) => {
                let id = *id;
                store
                    .read(move |s| Ok(s.media_type(&id)))
                    .await
                    .ok()
                    .flatten()
            }
            Holdings::Edge(cache) => cache.media_type(id),
            Holdings::Relay => None,
        };
        if let Some(t) = &found {
            self.pull.learn_media_type(*id, t.clone());
        }
        found
    }

    /// Whether `peer` is a live member (members fetch for their clients, who they checked).
    pub fn is_member(&self, peer: &stoq_transport::NodeId) -> bool {
        self.membership
            .view()
            .read()
            .expect("view lock")
            .peers
            .contains_key(peer)
    }
}

/// Bytes free (to an unprivileged user) and in all on the filesystem holding `dir`; zeros when
/// it cannot be read.
fn disk_space(dir: &std::path::Path) -> (u64, u64) {
    match rustix::fs::statvfs(dir) {
        Ok(s) => (
            s.f_bavail.saturating_mul(s.f_frsize),
            s.f_blocks.saturating_mul(s.f_frsize),
        ),
        Err(_) => (0, 0),
    }
}

/// Most read restrictions a node keeps in memory for content it does not store.
const MAX_LEARNED_RESTRICTIONS: usize = 65_536;

/// The node's admin token and the read restrictions it learned from upstream.
pub struct Access {
    token: RwLock<Arc<AdminToken>>,
    pub(super) learned: Mutex<BoundedMap<ContentId, [u8; 32]>>,
}

impl Access {
    /// Access control with `token` as the admin credential.
    pub fn new(token: AdminToken) -> Self {
        Access {
            token: RwLock::new(Arc::new(token)),
            learned: Mutex::new(BoundedMap::new(MAX_LEARNED_RESTRICTIONS)),
        }
    }

    /// The admin token now (shared: checking a request copies no secret).
    pub fn token(&self) -> Arc<AdminToken> {
        self.token.read().expect("token lock").clone()
    }

    /// Replaces the admin token (a reload): changes made after it need the new one.
    pub fn set_token(&self, token: AdminToken) {
        *self.token.write().expect("token lock") = Arc::new(token);
    }

    /// Keeps a restriction learned from upstream.
    pub fn learn(&self, id: ContentId, digest: [u8; 32]) {
        self.learned
            .lock()
            .expect("restrictions lock")
            .insert(id, digest);
    }

    pub(super) fn learned(&self, id: &ContentId) -> Option<[u8; 32]> {
        self.learned
            .lock()
            .expect("restrictions lock")
            .get(id)
            .copied()
    }
}

/// A router a host shares with the node that uses it.
pub type SharedRouter = Arc<RwLock<Box<dyn Router>>>;

/// How a node ranks its upstreams, and what it has observed of them.
pub struct Upstreams {
    pub(super) weights: CostWeights,
    pub(super) host_router: Option<SharedRouter>,
    pub(super) preferred: Mutex<Option<NodeId>>,
    /// The last ranking: membership change count, when, and the ranking.
    pub(super) ranking: Mutex<Option<(u64, Instant, Vec<Member>)>>,
    /// Smoothed throughput observed pulling chunks from each upstream (Mbit/s).
    pub(super) throughput: Mutex<HashMap<NodeId, Ewma>>,
}

impl Upstreams {
    /// Ranks by the node's own matrix with `weights`, or by `host_router` when given.
    pub fn new(weights: CostWeights, host_router: Option<SharedRouter>) -> Self {
        Upstreams {
            weights,
            host_router,
            preferred: Mutex::new(None),
            ranking: Mutex::new(None),
            throughput: Mutex::default(),
        }
    }

    /// Records a pull of `bytes` from `peer` that took `seconds`.
    pub fn record_pull(&self, peer: NodeId, bytes: usize, seconds: f64) {
        let mbps = bytes as f64 * 8.0 / seconds.max(1e-6) / 1e6;
        let mut seen = self.throughput.lock().expect("throughput lock");
        seen.entry(peer)
            .or_insert_with(|| Ewma::new(0.2))
            .update(mbps);
    }

    /// Smoothed throughput observed from each upstream, Mbit/s.
    pub fn throughput(&self) -> HashMap<NodeId, f64> {
        let seen = self.throughput.lock().expect("throughput lock");
        seen.iter()
            .filter_map(|(id, e)| Some((*id, e.value()?)))
            .collect()
    }

    /// Feeds a host router the RTTs this node measured (its own matrix is rebuilt from them).
    pub fn feed(&self, me: &str, links: &[(NodeId, LinkSample)]) {
        let Some(router) = &self.host_router else {
            return;
        };
        let mut router = router.write().expect("router lock");
        for (peer, sample) in links {
            // A host router may not know every peer; that is its choice.
            let _ = router.update_metrics(link_update(me, &peer.to_string(), *sample));
        }
    }
}

/// Most name records an edge or relay keeps copies of.
const MAX_CACHED_NAMES: usize = 65_536;

/// Encoded bytes of manifests a node keeps decoded (a 1 GiB content's manifest is about
/// 0.5 MB), so a chunk request never decodes a whole manifest again.
const MAX_DECODED_MANIFEST_BYTES: usize = 256 << 20;

/// In-flight fetches (one per item however many wait), decoded manifests, and copies of name
/// records.
pub struct PullThrough {
    pub(super) manifests: Coalescer<ContentId, Answered<Arc<Manifest>>>,
    pub(super) chunks: Coalescer<Hash32, Answered<Bytes>>,
    pub(super) name_fetches: Coalescer<String, Answered<NameRecord>>,
    pub(super) names: Mutex<BoundedMap<String, (NameRecord, Instant)>>,
    decoded: Mutex<BoundedMap<ContentId, Arc<Manifest>>>,
    media_types: Mutex<BoundedMap<ContentId, String>>,
}

impl Default for PullThrough {
    fn default() -> Self {
        PullThrough {
            manifests: Coalescer::default(),
            chunks: Coalescer::default(),
            name_fetches: Coalescer::default(),
            names: Mutex::new(BoundedMap::new(MAX_CACHED_NAMES)),
            decoded: Mutex::new(BoundedMap::new(MAX_DECODED_MANIFEST_BYTES)),
            media_types: Mutex::new(BoundedMap::new(MAX_LEARNED_RESTRICTIONS)),
        }
    }
}

impl PullThrough {
    /// The decoded manifest of `id`, if this node resolved it lately.
    pub fn decoded(&self, id: &ContentId) -> Option<Arc<Manifest>> {
        self.decoded.lock().expect("decoded lock").get(id).cloned()
    }

    /// Keeps a resolved manifest decoded (a content id always names the same manifest).
    pub fn keep_decoded(&self, id: ContentId, manifest: &Arc<Manifest>) {
        let weight = manifest.encoded_len();
        self.decoded
            .lock()
            .expect("decoded lock")
            .insert_weighing(id, manifest.clone(), weight);
    }

    /// Keeps the media type recorded for `id` (learned from upstream, read once, or sniffed).
    pub fn learn_media_type(&self, id: ContentId, media_type: String) {
        self.media_types
            .lock()
            .expect("media types lock")
            .insert(id, media_type);
    }

    /// The media type learned from upstream for `id`.
    pub fn learned_media_type(&self, id: &ContentId) -> Option<String> {
        let types = self.media_types.lock().expect("media types lock");
        types.get(id).cloned()
    }

    /// Forgets a purged content's manifest.
    pub fn forget(&self, id: &ContentId) {
        self.decoded.lock().expect("decoded lock").remove(id);
        self.media_types
            .lock()
            .expect("media types lock")
            .remove(id);
    }
}

/// An edge network a host shares with the node that uses it.
pub type SharedEdges = Arc<RwLock<Box<dyn EdgeNetwork>>>;

/// How a node chooses edges for clients.
pub struct Locator {
    prefixes: RwLock<Arc<PrefixTable>>,
    pub(super) host: Option<SharedEdges>,
    /// The edges this node told the host about, so it can withdraw those that left.
    pub(super) told: Mutex<HashSet<String>>,
}

impl Locator {
    /// Locates clients' addresses through `prefixes`; `host` decides, when given.
    pub fn new(prefixes: PrefixTable, host: Option<SharedEdges>) -> Self {
        Locator {
            prefixes: RwLock::new(Arc::new(prefixes)),
            host,
            told: Mutex::default(),
        }
    }

    /// The prefix table now (shared, not copied).
    pub fn prefixes(&self) -> Arc<PrefixTable> {
        self.prefixes.read().expect("prefixes lock").clone()
    }

    /// Replaces the prefix table (a reload).
    pub fn set_prefixes(&self, prefixes: PrefixTable) {
        *self.prefixes.write().expect("prefixes lock") = Arc::new(prefixes);
    }
}
