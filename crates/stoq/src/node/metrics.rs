//! A node's counters, and how a scrape encodes them (prometheus-client; served by
//! `metrics_http` at `--metrics ADDR`).
//!
//! Series are `stoq_`-prefixed. Counters are plain atomics updated on the request path; the
//! figures that live elsewhere (cache, connections, membership) are read at scrape time, by a
//! prometheus-client collector.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

pub use super::histogram::{Histogram, LATENCY_BUCKETS};

/// The request kinds counted separately.
pub const REQUEST_KINDS: [&str; 11] = [
    "manifest", "chunk", "shard", "put", "purge", "prefetch", "locate", "status", "gossip", "name",
    "other",
];

/// Counters a node updates as it works.
#[derive(Debug, Default)]
pub struct NodeMetrics {
    /// Body bytes received (uploads, chunks pulled from upstream).
    pub bytes_in: AtomicU64,
    /// Body bytes sent (manifests and chunks served).
    pub bytes_out: AtomicU64,
    /// Requests by kind, in [`REQUEST_KINDS`] order.
    pub requests: [AtomicU64; REQUEST_KINDS.len()],
    /// Time to answer a chunk request, hit or miss.
    pub chunk_latency: Histogram,
    /// Times the preferred upstream (route to content) changed.
    pub route_changes: AtomicU64,
    /// Requests refused for a missing or wrong admin token.
    pub unauthorized: AtomicU64,
    /// Content requests answered BUSY (every slot taken, or the connection's share).
    pub busy: AtomicU64,
    /// Blobs the scrub hashed again.
    pub scrub_blobs: AtomicU64,
    /// Damaged (corrupt or missing) blobs the scrub found.
    pub scrub_damaged: AtomicU64,
    /// Scrub passes completed.
    pub scrub_passes: AtomicU64,
    /// The HTTP front's counters.
    pub front: super::front_metrics::FrontMetrics,
}

/// Figures read at scrape time from the parts that own them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    /// Cache hits, misses, evictions and bytes held (zero on nodes without a cache).
    pub cache: crate::node::cache::CacheStats,
    /// Open connections.
    pub connections_open: u64,
    /// Connections accepted since start.
    pub connections_accepted: u64,
    /// Connections refused by the limit.
    pub connections_refused: u64,
    /// Request streams reset because the peer stalled.
    pub stalled_streams: u64,
    /// Requests answered BUSY because the request buffers were full.
    pub request_buffers_full: u64,
    /// Live peers.
    pub peers: u64,
    /// Membership changes since start.
    pub membership_changes: u64,
    /// This node's load, 0 to 1.
    pub load: f64,
    /// Content request slots in use now.
    pub slots_in_use: u64,
    /// Content request slots there are (`node.max_concurrent_reads`).
    pub slots: u64,
    /// Bytes free and in all on the data directory's filesystem (zero when it cannot be read).
    pub disk: (u64, u64),
}

impl NodeMetrics {
    /// Counts one request of `kind` (one of [`REQUEST_KINDS`]).
    pub fn request(&self, kind: &str) {
        let i = REQUEST_KINDS
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(REQUEST_KINDS.len() - 1);
        self.requests[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests of `kind` so far.
    pub fn requests_of(&self, kind: &str) -> u64 {
        REQUEST_KINDS
            .iter()
            .position(|k| *k == kind)
            .map_or(0, |i| self.requests[i].load(Ordering::Relaxed))
    }

    /// Encodes these counters and `snap` into a scrape (names under the registry's `stoq_`
    /// prefix; counters get `_total`).
    pub fn encode(
        &self,
        snap: &Snapshot,
        encoder: &mut DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let counters: [(&str, &str, u64); 18] = [
            ("bytes_in", "Body bytes received.", get(&self.bytes_in)),
            ("bytes_out", "Body bytes sent.", get(&self.bytes_out)),
            ("cache_hits", "Cache lookups answered from the cache.", snap.cache.hits),
            ("cache_misses", "Cache lookups that missed and fetched upstream.", snap.cache.misses),
            (
                "cache_coalesced",
                "Cache lookups that missed and waited for a fetch already under way.",
                snap.cache.coalesced,
            ),
            ("cache_evictions", "Cache entries evicted.", snap.cache.evictions),
            ("cache_purged", "Cache entries removed by purges.", snap.cache.purged),
            ("connections_accepted", "Connections accepted.", snap.connections_accepted),
            (
                "connections_refused",
                "Connections refused by the connection limit.",
                snap.connections_refused,
            ),
            (
                "stalled_streams",
                "Request streams reset because the peer sent or took nothing within transport.stall_timeout_ms.",
                snap.stalled_streams,
            ),
            (
                "request_buffers_full",
                "Requests answered BUSY because the request buffers (per connection or per node) were full.",
                snap.request_buffers_full,
            ),
            ("route_changes", "Times the preferred upstream changed.", get(&self.route_changes)),
            ("membership_changes", "Members that joined or left.", snap.membership_changes),
            (
                "unauthorized",
                "Requests refused for a missing or wrong admin token.",
                get(&self.unauthorized),
            ),
            (
                "requests_busy",
                "Content requests answered BUSY (every slot taken, or the connection's share).",
                get(&self.busy),
            ),
            ("scrub_blobs", "Stored blobs the scrub hashed again.", get(&self.scrub_blobs)),
            (
                "scrub_damaged",
                "Damaged (corrupt or missing) blobs the scrub found.",
                get(&self.scrub_damaged),
            ),
            (
                "scrub_passes",
                "Scrub passes over the whole store completed.",
                get(&self.scrub_passes),
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let mut by_kind = encoder.encode_descriptor(
            "requests",
            "Requests answered, by kind.",
            None,
            MetricType::Counter,
        )?;
        for (kind, n) in REQUEST_KINDS.iter().zip(&self.requests) {
            ConstCounter::new(get(n)).encode(by_kind.encode_family(&[("kind", *kind)])?)?;
        }
        let gauges: [(&str, &str, f64); 8] = [
            (
                "connections",
                "Open connections.",
                snap.connections_open as f64,
            ),
            ("peers", "Live peers.", snap.peers as f64),
            (
                "cache_bytes",
                "Bytes held by the cache.",
                snap.cache.used_bytes as f64,
            ),
            ("load", "This node's load, 0 to 1.", snap.load),
            (
                "read_slots_in_use",
                "Content requests being worked on now.",
                snap.slots_in_use as f64,
            ),
            (
                "read_slots",
                "Content requests worked on at once, at most (node.max_concurrent_reads).",
                snap.slots as f64,
            ),
            (
                "disk_free_bytes",
                "Bytes free to this node on its data directory's filesystem.",
                snap.disk.0 as f64,
            ),
            (
                "disk_size_bytes",
                "Bytes in all on its data directory's filesystem.",
                snap.disk.1 as f64,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        self.chunk_latency.encode(
            encoder,
            "chunk_retrieval_seconds",
            "Time to answer a chunk request.",
        )?;
        self.front.encode(encoder)
    }
}

/// What a scrape reads: a node's counters and the figures read at scrape time.
pub trait Scrape: Send + Sync + std::fmt::Debug + 'static {
    /// The counters.
    fn metrics(&self) -> &NodeMetrics;
    /// The figures that live elsewhere, read now.
    fn snapshot(&self) -> Snapshot;
}

/// Encodes a [`Scrape`] on every scrape (prometheus-client's collector).
#[derive(Debug)]
struct Scraped<S>(Arc<S>);

impl<S: Scrape> Collector for Scraped<S> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.metrics().encode(&self.0.snapshot(), &mut encoder)
    }
}

/// The registry a node's `/metrics` serves: every series of `source`, prefixed `stoq_`.
pub fn registry<S: Scrape>(source: Arc<S>) -> Registry {
    let mut registry = Registry::with_prefix("stoq");
    registry.register_collector(Box::new(Scraped(source)));
    registry
}

/// The Prometheus text exposition (format 0.0.4) of `registry`.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_text::encode(&mut out, registry).expect("writing to a String cannot fail");
    out
}

/// Binds an IPv6-only TCP listener at `addr` (IPv4 refused) with room for `backlog` pending
/// connections: the metrics endpoint's and the HTTP front's.
pub fn bind_tcp_v6(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let addr = stoq_transport::ensure_ipv6(addr)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let socket = tokio::net::TcpSocket::new_v6()?;
    socket.set_reuseaddr(true)?;
    socket2::SockRef::from(&socket).set_only_v6(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Debug, Default)]
    struct Fixed(NodeMetrics, Snapshot);

    impl Scrape for Fixed {
        fn metrics(&self) -> &NodeMetrics {
            &self.0
        }
        fn snapshot(&self) -> Snapshot {
            self.1
        }
    }

    #[test]
    fn a_scrape_names_every_series_as_before_with_labels_and_buckets() {
        let fixed = Fixed::default();
        fixed.0.request("chunk");
        fixed.0.request("nonsense");
        for ms in [1, 2, 3, 40, 400] {
            fixed.0.chunk_latency.observe(Duration::from_millis(ms));
        }
        fixed
            .0
            .front
            .answered("GET", 200, "2", Duration::from_millis(3));
        let text = render(&registry(Arc::new(fixed)));
        for line in [
            "# TYPE stoq_bytes_out_total counter",
            "stoq_requests_total{kind=\"chunk\"} 1",
            "stoq_requests_total{kind=\"other\"} 1",
            "# TYPE stoq_connections gauge",
            "# TYPE stoq_chunk_retrieval_seconds histogram",
            "stoq_chunk_retrieval_seconds_bucket{le=\"0.005\"} 3",
            "stoq_chunk_retrieval_seconds_bucket{le=\"+Inf\"} 5",
            "stoq_chunk_retrieval_seconds_count 5",
            "stoq_http_requests_total{method=\"GET\",status=\"200\",version=\"2\"} 1",
            "stoq_http_first_byte_seconds_count 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
    }
}
