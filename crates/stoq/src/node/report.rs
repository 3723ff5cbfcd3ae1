//! Every second a node measures its load, spreads it with the RTTs of its open links and
//! what it observed of upstreams and client areas, and re-announces itself to its seeds while
//! it is alone (a seed that was down at start is joined when it comes up).

use std::net::SocketAddrV6;
use std::sync::Arc;
use std::time::Duration;

use stoq_transport::NodeId;

use super::dialer::link_sample;
use super::membership::{Report, MAX_REPORTED_RTTS};
use super::state::NodeState;

/// How often a node reports its load and RTTs to the others.
pub const REPORT_INTERVAL: Duration = Duration::from_millis(1000);

/// Runs until aborted.
pub async fn report_loop(state: Arc<NodeState>, seeds: Vec<(NodeId, SocketAddrV6)>) {
    // Sequence numbers start from the clock, so a restarted node's reports are newer than
    // the ones members still hold from before the restart.
    let mut seq = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut ticker = tokio::time::interval(REPORT_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        seq += 1;
        state.membership.report(report(&state, seq));
        let totals = state.totals();
        state.recent.record(std::time::Instant::now(), totals);
        if state.membership.peers().is_empty() {
            for (id, addr) in &seeds {
                state.membership.join(*id, *addr);
            }
        }
    }
}

/// This interval's report; also feeds a host router the links it measured.
fn report(state: &NodeState, seq: u64) -> Report {
    let capacity_bits = f64::from(state.me.capacity_mbps) * 1e6 * REPORT_INTERVAL.as_secs_f64();
    let load = state.load.close_interval(capacity_bits);
    let samples: Vec<_> = state
        .dialer
        .link_stats()
        .iter()
        .map(|(id, stats)| (*id, link_sample(stats)))
        .collect();
    state
        .upstreams
        .feed(&state.me.node_id().to_string(), &samples);
    let mut rtts: Vec<([u8; 32], f32)> = samples
        .iter()
        .map(|(id, s)| (*id.as_bytes(), s.rtt_ms as f32))
        .collect();
    rtts.truncate(MAX_REPORTED_RTTS);
    Report {
        from: state.me.id,
        seq,
        load: load as f32,
        rtts,
        areas: state
            .load
            .recent_areas(MAX_REPORTED_RTTS)
            .into_iter()
            .map(|(a, ms)| (a, ms as f32))
            .collect(),
        throughput: state
            .upstreams
            .throughput()
            .into_iter()
            .take(MAX_REPORTED_RTTS)
            .map(|(id, mbps)| (*id.as_bytes(), mbps as f32))
            .collect(),
    }
}
