//! Reload: a running node takes a changed configuration (`stoq serve` does it on SIGHUP)
//! without dropping a connection or a download. What can change live is applied: the edge
//! cache's size and policy, the admin token (re-read from its file), the prefix table, the
//! rate limits and the metrics address (log level and format belong to the process, which
//! applies them itself). What cannot (addresses, identity, role, transport, membership timing,
//! the HTTP front) is named, and left as it was until a restart.

use super::error::NodeError;
use super::lifecycle::Node;
use super::metrics_http::serve_metrics;
use super::qos::QosLimits;
use super::token::{token_path, AdminToken};
use crate::config::StoqConfig;

/// What a reload did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Settings now in effect that were not before.
    pub applied: Vec<&'static str>,
    /// Settings that changed in the file but take effect only after a restart.
    pub needs_restart: Vec<&'static str>,
    /// Settings that could not be applied, and why (the old values stay in effect).
    pub failed: Vec<String>,
}

/// Restart-only settings that differ between `started` and `new`.
fn needs_restart(started: &StoqConfig, new: &StoqConfig) -> Vec<&'static str> {
    let (a, b) = (&started.node, &new.node);
    [
        ("transport", started.transport != new.transport),
        ("node.data_dir", a.data_dir != b.data_dir),
        ("node.role", a.role != b.role),
        ("node.region", a.region != b.region),
        ("node.geo", a.geo != b.geo),
        ("node.seeds", a.seeds != b.seeds),
        ("node.capacity_mbps", a.capacity_mbps != b.capacity_mbps),
        (
            "node.probe_interval_ms",
            a.probe_interval_ms != b.probe_interval_ms,
        ),
        (
            "node.suspect_after_ms",
            a.suspect_after_ms != b.suspect_after_ms,
        ),
        (
            "node.max_concurrent_reads",
            a.max_concurrent_reads != b.max_concurrent_reads,
        ),
        ("node.read_queue_ms", a.read_queue_ms != b.read_queue_ms),
        (
            "node.scrub_interval_ms",
            a.scrub_interval_ms != b.scrub_interval_ms,
        ),
        ("node.membership", a.membership != b.membership),
        ("routing", started.routing != new.routing),
        ("http", started.http != new.http),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect()
}

impl Node {
    /// Applies `new` to the running node as far as it can change live (see the module doc);
    /// an invalid configuration, an unreadable token file or a metrics address that cannot be
    /// bound changes nothing.
    pub fn reload(&self, new: StoqConfig) -> Result<Reloaded, NodeError> {
        new.validate()?;
        let live = &self.live;
        let state = &self.state;
        let mut applied = live.applied.lock().expect("config lock");
        let old = applied.clone();
        let mut done = Reloaded {
            needs_restart: needs_restart(&live.started, &new),
            ..Reloaded::default()
        };
        // What can fail comes first, so a failure leaves everything as it was.
        let token = match live.token_given {
            true => None,
            false => {
                let path = token_path(&live.started.node.data_dir, &new.node);
                Some(AdminToken::read(&path).map_err(NodeError::Token)?)
            }
        };
        let metrics_server = match new.node.metrics {
            Some(addr) if new.node.metrics != old.node.metrics => {
                Some(Some(serve_metrics(state, addr)?))
            }
            None if old.node.metrics.is_some() => Some(None),
            _ => None,
        };

        if let Some(token) = token.filter(|t| t.as_str() != state.access.token().as_str()) {
            *live.proof.write().expect("proof lock") = token.membership_proof(&self.node_id());
            state.access.set_token(token);
            done.applied.push("admin token");
        }
        if let Some(server) = metrics_server {
            let mut running = live.metrics_server.lock().expect("metrics lock");
            if let Some(old_server) = std::mem::replace(&mut *running, server) {
                old_server.abort();
            }
            done.applied.push("node.metrics");
        }
        if QosLimits::of(&new.node) != QosLimits::of(&old.node) {
            state.qos.set_limits(QosLimits::of(&new.node));
            done.applied.push("rate limits");
        }
        if new.edge.prefixes != old.edge.prefixes && !live.prefixes_given {
            state.locator.set_prefixes(new.edge.prefix_table());
            done.applied.push("edge.prefixes");
        }
        let mut next = new;
        let cache_changed = (next.edge.cache_bytes, next.edge.cache_policy)
            != (old.edge.cache_bytes, old.edge.cache_policy);
        if let (true, Some(cache)) = (cache_changed, state.holdings.cache()) {
            match cache.reconfigure(next.edge.cache_bytes, next.edge.cache_policy) {
                Ok(()) => done.applied.push("edge.cache_bytes and edge.cache_policy"),
                Err(e) => {
                    done.failed.push(format!("edge cache: {e}"));
                    next.edge.cache_bytes = old.edge.cache_bytes;
                    next.edge.cache_policy = old.edge.cache_policy;
                }
            }
        }
        *applied = next;
        Ok(done)
    }
}
