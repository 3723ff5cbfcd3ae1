//! A node's counters, and the Prometheus text endpoint that exposes them (`--metrics ADDR`).
//!
//! Series are `stoq_`-prefixed. Counters are plain atomics updated on the request path; the
//! figures that live elsewhere (cache, connections, membership) are read at scrape time.

use std::fmt::Write as _;

pub use super::histogram::{Histogram, LATENCY_BUCKETS};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

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

    /// The Prometheus text exposition of these counters and `snap`.
    pub fn render(&self, snap: &Snapshot) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP stoq_{name} {help}\n# TYPE stoq_{name} counter\nstoq_{name} {value}"
            );
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            "bytes_in_total",
            "Body bytes received.",
            get(&self.bytes_in),
        );
        counter("bytes_out_total", "Body bytes sent.", get(&self.bytes_out));
        counter(
            "cache_hits_total",
            "Cache lookups answered from the cache.",
            snap.cache.hits,
        );
        counter(
            "cache_misses_total",
            "Cache lookups that missed and fetched upstream.",
            snap.cache.misses,
        );
        counter(
            "cache_coalesced_total",
            "Cache lookups that missed and waited for a fetch already under way.",
            snap.cache.coalesced,
        );
        counter(
            "cache_evictions_total",
            "Cache entries evicted.",
            snap.cache.evictions,
        );
        counter(
            "cache_purged_total",
            "Cache entries removed by purges.",
            snap.cache.purged,
        );
        counter(
            "connections_accepted_total",
            "Connections accepted.",
            snap.connections_accepted,
        );
        counter(
            "connections_refused_total",
            "Connections refused by the connection limit.",
            snap.connections_refused,
        );
        counter(
            "stalled_streams_total",
            "Request streams reset because the peer sent or took nothing within transport.stall_timeout_ms.",
            snap.stalled_streams,
        );
        counter(
            "request_buffers_full_total",
            "Requests answered BUSY because the request buffers (per connection or per node) were full.",
            snap.request_buffers_full,
        );
        counter(
            "route_changes_total",
            "Times the preferred upstream changed.",
            get(&self.route_changes),
        );
        counter(
            "membership_changes_total",
            "Members that joined or left.",
            snap.membership_changes,
        );
        counter(
            "unauthorized_total",
            "Requests refused for a missing or wrong admin token.",
            get(&self.unauthorized),
        );
        counter(
            "requests_busy_total",
            "Content requests answered BUSY (every slot taken, or the connection's share).",
            get(&self.busy),
        );
        counter(
            "scrub_blobs_total",
            "Stored blobs the scrub hashed again.",
            get(&self.scrub_blobs),
        );
        counter(
            "scrub_damaged_total",
            "Damaged (corrupt or missing) blobs the scrub found.",
            get(&self.scrub_damaged),
        );
        counter(
            "scrub_passes_total",
            "Scrub passes over the whole store completed.",
            get(&self.scrub_passes),
        );
        let _ = writeln!(
            out,
            "# HELP stoq_requests_total Requests answered, by kind.\n# TYPE stoq_requests_total counter"
        );
        for (kind, n) in REQUEST_KINDS.iter().zip(&self.requests) {
            let _ = writeln!(out, "stoq_requests_total{{kind=\"{kind}\"}} {}", get(n));
        }
        let mut gauge = |name: &str, help: &str, value: f64| {
            let _ = writeln!(
                out,
                "# HELP stoq_{name} {help}\n# TYPE stoq_{name} gauge\nstoq_{name} {value}"
            );
        };
        gauge(
            "connections",
            "Open connections.",
            snap.connections_open as f64,
        );
        gauge("peers", "Live peers.", snap.peers as f64);
        gauge(
            "cache_bytes",
            "Bytes held by the cache.",
            snap.cache.used_bytes as f64,
        );
        gauge("load", "This node's load, 0 to 1.", snap.load);
        gauge(
            "read_slots_in_use",
            "Content requests being worked on now.",
            snap.slots_in_use as f64,
        );
        gauge(
            "read_slots",
            "Content requests worked on at once, at most (node.max_concurrent_reads).",
            snap.slots as f64,
        );
        gauge(
            "disk_free_bytes",
            "Bytes free to this node on its data directory's filesystem.",
            snap.disk.0 as f64,
        );
        gauge(
            "disk_size_bytes",
            "Bytes in all on its data directory's filesystem.",
            snap.disk.1 as f64,
        );
        self.chunk_latency.render(
            &mut out,
            "stoq_chunk_retrieval_seconds",
            "Time to answer a chunk request.",
        );
        self.front.render(&mut out);
        out
    }
}

/// Longest HTTP request head the metrics endpoint reads.
const MAX_HEAD: usize = 8 * 1024;

/// Serves `GET /metrics` on `listener` with what `render` returns, until the task is dropped.
pub async fn serve_http<F>(listener: TcpListener, render: Arc<F>)
where
    F: Fn() -> String + Send + Sync + 'static,
{
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let render = render.clone();
        super::spawn_in_span(async move {
            let mut head = Vec::with_capacity(512);
            let mut buf = [0u8; 1024];
            let read = async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
                    let n = stream.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                Ok::<_, std::io::Error>(())
            };
            if tokio::time::timeout(Duration::from_secs(5), read)
                .await
                .is_err()
            {
                return;
            }
            let wanted = head.starts_with(b"GET /metrics ") || head.starts_with(b"GET /metrics?");
            let (status, body) = if wanted {
                ("200 OK", render())
            } else {
                ("404 Not Found", "only /metrics is served here\n".to_owned())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
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

    #[test]
    fn the_histogram_counts_cumulatively_and_bounds_quantiles() {
        let h = Histogram::default();
        for ms in [1, 2, 3, 40, 400] {
            h.observe(Duration::from_millis(ms));
        }
        assert_eq!(h.count(), 5);
        assert_eq!(h.quantile_bound(0.5), Some(0.005));
        assert_eq!(h.quantile_bound(1.0), Some(0.5));
        let m = NodeMetrics::default();
        m.request("chunk");
        m.request("nonsense");
        let text = m.render(&Snapshot::default());
        assert!(text.contains("stoq_requests_total{kind=\"chunk\"} 1"));
        assert!(text.contains("stoq_requests_total{kind=\"other\"} 1"));
        assert!(text.contains("stoq_chunk_retrieval_seconds_bucket{le=\"+Inf\"} 0"));
    }
}
