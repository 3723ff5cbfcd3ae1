//! `stoq status --node ADDR` for a person: the node's role, uptime and load, its peers with
//! region, load and RTT, its cache or store, and its traffic and errors over the last minute,
//! on one screen. `--json` prints the node's answer as it is instead.

use std::fmt::Write;
use std::time::Duration;

use indicatif::{HumanBytes, HumanDuration};
use stoq::protocol::StatusAnswer;

/// Most peers listed; the rest are counted.
const MAX_PEERS_SHOWN: usize = 12;

/// The screen for `status`.
pub fn render(status: &StatusAnswer) -> String {
    let mut out = String::new();
    let region = match status.region.as_str() {
        "" => String::new(),
        r => format!(", {r}"),
    };
    let _ = writeln!(
        out,
        "STOQ {} ({}{region}) at {}",
        status.node_id.short(),
        status.role,
        status.addr
    );
    let _ = writeln!(
        out,
        "  up {}, load {:.0}%, {} open connection(s)",
        HumanDuration(Duration::from_secs(status.uptime_s)),
        status.load * 100.0,
        status.connections.open
    );
    let w = &status.last_minute;
    let secs = w.seconds.max(1.0);
    let rate = |bytes: u64| format!("{:.1} Mbit/s", bytes as f64 * 8.0 / secs / 1e6);
    let _ = writeln!(
        out,
        "  last {:.0} s: out {} ({}), in {} ({}), {} request(s), {} error(s)",
        w.seconds,
        HumanBytes(w.bytes_out),
        rate(w.bytes_out),
        HumanBytes(w.bytes_in),
        rate(w.bytes_in),
        w.requests,
        w.errors
    );
    if let Some(cache) = &status.cache {
        let lookups = cache.hits + cache.misses;
        let ratio = match lookups {
            0 => "no lookups yet".to_owned(),
            n => format!("hit ratio {:.0}%", cache.hits as f64 * 100.0 / n as f64),
        };
        let _ = writeln!(
            out,
            "  cache: {} of {}, {ratio} ({} hits, {} misses), {} evicted",
            HumanBytes(cache.used_bytes),
            HumanBytes(cache.capacity_bytes),
            cache.hits,
            cache.misses,
            cache.evictions
        );
    }
    if let Some(store) = &status.store {
        let dedup = match store.objects {
            0 => String::new(),
            _ => format!(" (dedup {:.2}x)", store.dedup_ratio),
        };
        let _ = writeln!(
            out,
            "  store: {} object(s), {} published in {} on disk{dedup}",
            store.objects,
            HumanBytes(store.logical_bytes),
            HumanBytes(store.stored_bytes),
        );
    }
    let _ = writeln!(out, "peers: {}", status.peers.len());
    if !status.peers.is_empty() {
        let _ = writeln!(
            out,
            "  {:<12}  {:<6}  {:<16}  {:>5}  {:>10}",
            "id", "role", "region", "load", "rtt"
        );
    }
    for peer in status.peers.iter().take(MAX_PEERS_SHOWN) {
        let rtt = peer
            .rtt_ms
            .map_or("-".to_owned(), |ms| format!("{ms:.2} ms"));
        let _ = writeln!(
            out,
            "  {:<12}  {:<6}  {:<16}  {:>4.0}%  {:>10}",
            peer.id.short(),
            peer.role.to_string(),
            peer.region,
            peer.load * 100.0,
            rtt
        );
    }
    if status.peers.len() > MAX_PEERS_SHOWN {
        let _ = writeln!(
            out,
            "  ... and {} more (--json lists all)",
            status.peers.len() - MAX_PEERS_SHOWN
        );
    }
    out
}
