//! LOCATE: which edges a client should fetch from, nearest (and not overloaded) first, then
//! every origin.
//!
//! By default the node ranks the live edges with an [`EdgeRegistry`] built from membership:
//! position, region or address prefix, the RTTs edges measured to the client's area, and load.
//! A host that injected its own [`EdgeNetwork`] ([`crate::StoqBuilder::edge_network`]) decides
//! instead: the node keeps it told of the live edges and sends the client to its choice.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use super::error::{Answered, Refusal};
use super::membership::Member;
use super::state::{NodeState, SharedEdges};
use crate::config::Role;
use crate::edge::{area_of, ClientLocation, EdgeError, EdgeNetwork, EdgeNode, EdgeRegistry};
use crate::protocol::{LocateAnswer, Location, Source};
use crate::routing::GeoPoint;

/// The answer to LOCATE from `client` (its address, and its RTT to this node where measured).
pub fn locate(
    state: &NodeState,
    location: &Location,
    client: SocketAddr,
    client_rtt: Option<Duration>,
) -> Answered<LocateAnswer> {
    let location = match location {
        Location::Geo(g) => ClientLocation::Geo(*g),
        Location::Region(r) => ClientLocation::Region(r.clone()),
        Location::ByAddress => match client.ip() {
            std::net::IpAddr::V6(ip) => ClientLocation::Address(ip),
            std::net::IpAddr::V4(_) => return Err(Refusal::bad_request("STOQ is IPv6-only")),
        },
    };
    let mut members: Vec<(Member, f32)> = state
        .membership
        .peers()
        .into_iter()
        .map(|p| (p.member, p.load))
        .collect();
    members.push((state.me.clone(), state.load.load() as f32));
    let locator = &state.locator;
    let area = area_of(&location, &locator.prefixes());
    if let (Some(area), Role::Edge, Some(rtt)) = (&area, state.role(), client_rtt) {
        // An edge that a client asks measures its own RTT to that client's area.
        state.load.record_area_rtt(area, rtt.as_secs_f64() * 1e3);
    }
    let edges: Vec<EdgeNode> = members
        .iter()
        .filter(|(m, _)| m.role == Role::Edge)
        .map(|(m, load)| EdgeNode {
            id: m.node_id().to_string(),
            region: m.region.clone(),
            geo: m.geo().and_then(|(lat, lon)| GeoPoint::new(lat, lon)),
            load: f64::from(*load).clamp(0.0, 1.0),
            healthy: true,
        })
        .collect();
    let chosen = match &locator.host {
        Some(host) => host_choice(host, &locator.told, edges, &location),
        None => own_ranking(state, edges, &location, area.as_deref()),
    }
    .map_err(|e| Refusal::bad_request(e.to_string()))?;
    let describe = |(m, load): &(Member, f32)| Source {
        id: m.node_id(),
        addr: m.addr,
        role: m.role,
        region: m.region.clone(),
        load: *load,
    };
    let mut sources: Vec<Source> = chosen
        .iter()
        .filter_map(|e| {
            members
                .iter()
                .find(|(m, _)| m.node_id().to_string() == e.id)
        })
        .map(describe)
        .collect();
    sources.extend(
        members
            .iter()
            .filter(|(m, _)| m.role == Role::Origin)
            .map(describe),
    );
    Ok(LocateAnswer { sources })
}

/// The base URL of the HTTP front of the edge nearest to `client`, when that edge is another
/// node and announces a valid one.
pub fn nearest_front(state: &NodeState, client: SocketAddr) -> Option<String> {
    let answer = locate(state, &Location::ByAddress, client, None).ok()?;
    let nearest = answer.sources.first()?;
    if nearest.role != Role::Edge || nearest.id == state.me.node_id() {
        return None;
    }
    let peer = state.membership.peer(&nearest.id)?;
    crate::config::front_base_url(peer.member.http_url.as_deref()?).ok()
}

/// Every live edge, ranked by STOQ's registry with the RTTs measured to the client's area.
fn own_ranking(
    state: &NodeState,
    edges: Vec<EdgeNode>,
    location: &ClientLocation,
    area: Option<&str>,
) -> Result<Vec<EdgeNode>, EdgeError> {
    let mut registry = EdgeRegistry::new((*state.locator.prefixes()).clone());
    if let Some(area) = area {
        if let Some(ms) = state.load.area_rtt(area) {
            registry.record_rtt(&state.me.node_id().to_string(), area, ms);
        }
        for p in state.membership.peers() {
            for (a, ms) in p.areas.iter().filter(|(a, _)| a == area) {
                registry.record_rtt(&p.member.node_id().to_string(), a, f64::from(*ms));
            }
        }
    }
    for edge in edges {
        let _ = registry.register_edge(edge);
    }
    match registry.rank(location) {
        Err(EdgeError::NoEdge) => Ok(Vec::new()),
        other => other,
    }
}

/// The host's choice, after telling it which edges are live now.
fn host_choice(
    host: &SharedEdges,
    told: &Mutex<HashSet<String>>,
    edges: Vec<EdgeNode>,
    location: &ClientLocation,
) -> Result<Vec<EdgeNode>, EdgeError> {
    let mut host = host.write().expect("edge network lock");
    let mut told = told.lock().expect("told lock");
    let live: HashSet<String> = edges.iter().map(|e| e.id.clone()).collect();
    for gone in told.difference(&live) {
        host.remove_edge(gone);
    }
    *told = live;
    for edge in edges {
        let _ = host.register_edge(edge);
    }
    match host.find_nearest(location) {
        Ok(edge) => Ok(vec![edge]),
        Err(EdgeError::NoEdge) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}
