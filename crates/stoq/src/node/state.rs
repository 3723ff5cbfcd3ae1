//! What a running node holds, one part per concern: its role's holdings, its links, its
//! membership, access control, upstream choice, pull-through and load.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use stoq_transport::StoqEndpoint;

use super::access::Access;
use super::bounded::BoundedMap;
use super::cache::EdgeCache;
use super::dialer::Dialer;
use super::locator::Locator;
use super::membership::{Member, Membership};
use super::metrics::{NodeMetrics, Snapshot};
use super::pull::PullThrough;
use super::stored::OriginStore;
use super::upstream::Upstreams;
use crate::config::Role;
use crate::routing::Ewma;

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
        let mut average = areas
            .get(&area.to_owned())
            .map_or(Ewma::new(0.2), |(e, _)| *e);
        average.update(rtt_ms);
        areas.insert(area.to_owned(), (average, Instant::now()));
    }

    /// The smoothed RTT to clients of `area`, if measured.
    pub fn area_rtt(&self, area: &str) -> Option<f64> {
        let areas = self.area_rtts.lock().expect("areas lock");
        areas.get(&area.to_owned()).and_then(|(e, _)| e.value())
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
}

impl NodeState {
    /// Its role.
    pub fn role(&self) -> Role {
        self.holdings.role()
    }

    /// Figures for the metrics page.
    pub fn snapshot(&self) -> Snapshot {
        let counters = self.endpoint.counters();
        Snapshot {
            cache: self.holdings.cache().map(|c| c.stats()).unwrap_or_default(),
            connections_open: counters.open,
            connections_accepted: counters.accepted,
            connections_refused: counters.refused_limit,
            peers: self.membership.peers().len() as u64,
            membership_changes: self.membership.changes(),
            load: self.load.load(),
        }
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
