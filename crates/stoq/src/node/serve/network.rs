//! The network's requests: GOSSIP, LOCATE, STATUS, NAME_SET and NAME_GET.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use stoq_transport::{IncomingRequest, NodeId};

use super::super::access::authorise;
use super::super::error::{Answered, Refusal};
use super::super::locator;
use super::super::metrics::REQUEST_KINDS;
use super::super::pull::name_of;
use super::super::state::NodeState;
use super::super::upstream::matrix;
use super::Answer;
use crate::chunking::ContentId;
use crate::config::JoinPolicy;
use crate::protocol::{
    ConnectionCounts, Location, NameSetAnswer, PeerStatus, RouteStatus, StatusAnswer, StoreStatus,
};
use crate::routing::Objective;

/// GOSSIP: a membership message, accepted only from a node that proved its id.
pub fn gossip(
    state: &NodeState,
    req: &IncomingRequest,
    proof: &[u8; 32],
    message: Bytes,
) -> Answered<Answer> {
    let from = req
        .conn
        .peer_node_id()
        .ok_or_else(|| Refusal::unauthorized("membership needs a node certificate"))?;
    if state.join_policy == JoinPolicy::Closed
        && !state.access.token().checks_membership(proof, &from)
    {
        state.metrics.unauthorized.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%from, "membership message from a node without the network's token dropped");
        return Err(Refusal::unauthorized(
            "this network's membership is closed: join with its admin token (node.membership)",
        ));
    }
    state
        .membership
        .receive(message, from)
        .map_err(|e| Refusal::bad_request(e.to_string()))?;
    Ok(Answer::Response(Bytes::new()))
}

/// LOCATE: where the asking client should fetch from.
pub fn locate(state: &NodeState, req: &IncomingRequest, location: &Location) -> Answered<Answer> {
    let answer = locator::locate(
        state,
        location,
        req.conn.remote_addr(),
        Some(req.conn.rtt()),
    )?;
    Answer::json(&answer)
}

/// NAME_SET: an origin points a name at content it holds.
pub async fn name_set(
    state: &Arc<NodeState>,
    token: &Bytes,
    name: String,
    id: ContentId,
    ttl_s: u32,
    swr_s: u32,
) -> Answered<Answer> {
    authorise(state, token)?;
    let Some(store) = state.holdings.store() else {
        return Err(Refusal::bad_request(format!(
            "this node is an {}; set names on an origin",
            state.role()
        )));
    };
    let record = store
        .write(move |s| s.set_name(&name, &id, ttl_s, swr_s))
        .await
        // Content that is not here, or a bad name, is the asker's mistake.
        .map_err(|e| match e.code {
            stoq_transport::protocol::ErrorCode::NotFound => Refusal::no_content(&id),
            _ => Refusal::bad_request(e.reason),
        })?;
    Answer::json(&NameSetAnswer {
        name: record.name,
        id: record.id,
        ttl_s: record.ttl_s,
        swr_s: record.swr_s,
        version: record.version,
    })
}

/// NAME_GET: the record a name points at.
pub async fn name_get(state: &Arc<NodeState>, name: String) -> Answered<Answer> {
    let (record, _) = name_of(state, name).await?;
    Ok(Answer::Response(Bytes::from(record.encode())))
}

/// The node's view, as STATUS answers it.
pub fn status(state: &NodeState) -> StatusAnswer {
    let rtts: HashMap<NodeId, Duration> = state.dialer.rtts().into_iter().collect();
    let throughput = state.upstreams.throughput();
    let geo = |g: Option<(f64, f64)>| g.map(|(a, b)| [a, b]);
    let live = state.membership.peers();
    let peers = live
        .iter()
        .map(|p| PeerStatus {
            id: p.member.node_id(),
            addr: p.member.addr,
            role: p.member.role,
            region: p.member.region.clone(),
            geo: geo(p.member.geo()),
            load: p.load,
            rtt_ms: rtts.get(&p.member.node_id()).map(|d| d.as_secs_f64() * 1e3),
            throughput_mbps: throughput.get(&p.member.node_id()).copied(),
        })
        .collect();
    let matrix = matrix(state);
    let me = state.me.node_id().to_string();
    let routes = live
        .iter()
        .filter_map(|p| {
            let to = p.member.node_id().to_string();
            let route = matrix
                .find_optimal_route(&me, &to, Objective::Balanced)
                .ok()?;
            Some(RouteStatus {
                to,
                path: route.path,
                latency_ms: route.latency_ms,
                cost: route.cost,
            })
        })
        .collect();
    let cache = state.holdings.cache().map(|c| c.stats());
    let store = state
        .holdings
        .store()
        .and_then(|s| s.read_now(|s| s.stats()).ok())
        .map(|s| StoreStatus {
            objects: s.objects,
            logical_bytes: s.logical_bytes,
            stored_bytes: s.stored_bytes,
            dedup_ratio: s.dedup_ratio,
        });
    let counters = state.endpoint.counters();
    let last_minute = state
        .recent
        .window(std::time::Instant::now(), state.totals());
    StatusAnswer {
        uptime_s: state.recent.uptime().as_secs(),
        last_minute,
        node_id: state.me.node_id(),
        addr: state.me.addr,
        role: state.role(),
        region: state.me.region.clone(),
        geo: geo(state.me.geo()),
        load: state.load.load(),
        peers,
        routes,
        membership_changes: state.membership.changes(),
        cache,
        cache_hits: cache.map_or(0, |c| c.hits),
        store,
        connections: ConnectionCounts {
            accepted: counters.accepted,
            refused_limit: counters.refused_limit,
            failed_handshakes: counters.failed_handshakes,
            open: counters.open,
            stalled_streams: counters.stalled_streams,
            request_buffers_full: counters.busy_requests,
        },
        requests: REQUEST_KINDS
            .iter()
            .map(|k| (k.to_string(), state.metrics.requests_of(k)))
            .collect::<BTreeMap<_, _>>(),
        bytes_out: state.metrics.bytes_out.load(Ordering::Relaxed),
        bytes_in: state.metrics.bytes_in.load(Ordering::Relaxed),
    }
}
