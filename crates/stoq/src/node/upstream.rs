//! Which peers a node pulls missing content from, best first, and the one loop that asks them
//! in that order.
//!
//! Edges ask origins and relays (a relay only where the best route to an origin runs through
//! it), relays ask origins only, so a request never loops. Routes come from the node's
//! routing matrix, built from membership (measured RTTs, reported loads and throughput), or
//! from the router a host injected ([`crate::StoqBuilder::router`]), which the node feeds the
//! RTTs it measures.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Instant;

use stoq_transport::{NodeId, StoqConnection, TransportError};

use super::error::{Answered, Refusal};
use super::membership::Member;
use super::report::REPORT_INTERVAL;
use super::state::NodeState;
use crate::client::{FetchError, DEFAULT_BUSY_PAUSE};
use crate::config::Role;
use crate::protocol::{retry_after, ErrorCode};
use crate::routing::{GeoPoint, LinkSpec, NodeSpec, Objective, Router, RoutingMatrix};

/// The routing matrix as this node sees the network now: itself and its live peers, with the
/// RTTs it measures and those the peers report, and observed throughput where known.
pub fn matrix(state: &NodeState) -> RoutingMatrix {
    let mut matrix = RoutingMatrix::new(state.upstreams.weights);
    let peers = state.membership.peers();
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
    let _ = matrix.add_node(spec(&state.me, state.load.load()));
    let mut capacity = HashMap::new();
    capacity.insert(state.me.node_id(), state.me.capacity_mbps);
    for p in &peers {
        let _ = matrix.add_node(spec(&p.member, f64::from(p.load)));
        capacity.insert(p.member.node_id(), p.member.capacity_mbps);
    }
    let mut observed: HashMap<(NodeId, NodeId), f64> = HashMap::new();
    for (peer, mbps) in state.upstreams.throughput() {
        observed.insert((state.me.node_id(), peer), mbps);
    }
    for p in &peers {
        for (to, mbps) in &p.throughput {
            observed.insert((p.member.node_id(), *to), f64::from(*mbps));
        }
    }
    let capacity_between = |a: &NodeId, b: &NodeId| {
        let of = |n: &NodeId| capacity.get(n).copied().unwrap_or(1);
        f64::from(of(a).min(of(b)))
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
    for (peer, rtt) in state.dialer.rtts() {
        link(state.me.node_id(), peer, rtt.as_secs_f64() * 1e3);
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
pub fn upstreams(state: &NodeState) -> Vec<Member> {
    let changes = state.membership.changes();
    let mut cached = state.upstreams.ranking.lock().expect("ranking lock");
    if let Some((seen, at, list)) = cached.as_ref() {
        if *seen == changes && at.elapsed() < REPORT_INTERVAL {
            return list.clone();
        }
    }
    let list = rank(state);
    *cached = Some((changes, Instant::now(), list.clone()));
    list
}

/// Ranks the origins by the cost of the best route to each (the host's router if one was
/// injected, else the node's matrix); an origin with no route yet ranks by distance, after
/// every routed one.
fn rank(state: &NodeState) -> Vec<Member> {
    let peers = state.membership.peers();
    let by_id: HashMap<NodeId, &Member> = peers
        .iter()
        .map(|p| (p.member.node_id(), &p.member))
        .collect();
    let me = state.me.node_id().to_string();
    // The host's router if one was injected, else the matrix of this node's view.
    let (own, host);
    let router: &dyn Router = match &state.upstreams.host_router {
        Some(shared) => {
            host = shared.read().expect("router lock");
            &**host
        }
        None => {
            own = matrix(state);
            &own
        }
    };
    let mut ranked: Vec<(f64, Member)> = Vec::new();
    for p in peers.iter().filter(|p| p.member.role == Role::Origin) {
        let target = p.member.node_id().to_string();
        let (cost, via) = match router.find_optimal_route(&me, &target, Objective::Balanced) {
            Ok(route) => {
                let first_hop = route
                    .path
                    .get(1)
                    .and_then(|hop| hop.parse::<NodeId>().ok())
                    .and_then(|id| by_id.get(&id).copied())
                    .filter(|m| m.role == Role::Relay && state.role() == Role::Edge);
                (route.cost, first_hop.unwrap_or(&p.member).clone())
            }
            Err(_) => {
                let km = match (state.me.geo(), p.member.geo()) {
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
    let mut seen = HashSet::new();
    let list: Vec<Member> = ranked
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| seen.insert(m.id))
        .collect();
    let best = list.first().map(Member::node_id);
    let mut preferred = state.upstreams.preferred.lock().expect("preferred lock");
    if *preferred != best {
        if preferred.is_some() {
            state.metrics.route_changes.fetch_add(1, Ordering::Relaxed);
        }
        *preferred = best;
    }
    list
}

/// How long a client should wait before asking again a node that cannot reach any upstream:
/// about two probe intervals, the time a restarted or reconnected node takes to rejoin.
pub const UNAVAILABLE_PAUSE: std::time::Duration = std::time::Duration::from_millis(2000);

/// Asks the upstreams in order until one answers: `ask` gets each reachable upstream and its
/// connection; the first `Ok` wins. A definite refusal (NOT_FOUND) is passed on only when
/// every upstream was reached and gave one; while some could not be reached (or there are
/// none yet, as after a restart), the answer is UNAVAILABLE, never NOT_FOUND.
pub async fn first_answer<T, F, Fut>(state: &NodeState, mut ask: F) -> Answered<T>
where
    F: FnMut(Member, StoqConnection) -> Fut,
    Fut: Future<Output = Answered<T>>,
{
    let list = upstreams(state);
    let mut unreached = list.is_empty();
    let mut last = None;
    for up in list {
        let Ok(conn) = state.dialer.connect_to(&up).await else {
            unreached = true;
            continue;
        };
        match ask(up, conn).await {
            Ok(value) => return Ok(value),
            Err(refusal) => {
                unreached |= refusal.code == ErrorCode::Unavailable;
                last = Some(refusal);
            }
        }
    }
    match last {
        Some(refusal) if !unreached || refusal.code == ErrorCode::Busy => Err(refusal),
        _ => Err(Refusal::unavailable(
            "no upstream that may hold it can be reached from this node now",
            UNAVAILABLE_PAUSE,
        )),
    }
}

/// How a failed upstream fetch is passed on: what the upstream answered definitely
/// (NOT_FOUND, UNAUTHORIZED) as it was; BUSY and UNAVAILABLE with their pause; anything else
/// (the upstream cut off, stalled, or sent bad data) as UNAVAILABLE: the content may well
/// exist.
pub fn upstream_refusal(e: FetchError) -> Refusal {
    match e {
        FetchError::Transport { error, .. } => transport_refusal(&error),
        other => Refusal::unavailable(&format!("the upstream failed: {other}"), UNAVAILABLE_PAUSE),
    }
}

/// [`upstream_refusal`] for a failed request/response exchange with an upstream.
pub fn transport_refusal(e: &TransportError) -> Refusal {
    let pause = |reason: &str, default| retry_after(reason).unwrap_or(default);
    match e {
        TransportError::Remote {
            code: code @ (ErrorCode::NotFound | ErrorCode::Unauthorized),
            reason,
        } => Refusal::new(*code, reason.clone()),
        TransportError::Remote {
            code: ErrorCode::Busy,
            reason,
        } => Refusal::busy("the upstream is busy", pause(reason, DEFAULT_BUSY_PAUSE)),
        TransportError::Remote {
            code: ErrorCode::Unavailable,
            reason,
        } => Refusal::unavailable(
            "the upstream cannot reach the content's source",
            pause(reason, UNAVAILABLE_PAUSE),
        ),
        other => Refusal::unavailable(&format!("the upstream failed: {other}"), UNAVAILABLE_PAUSE),
    }
}
