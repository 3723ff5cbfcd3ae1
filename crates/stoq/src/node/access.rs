//! Who may do what on a node: the admin token for changes, and per-content read tokens.
//!
//! Reads are open unless a content was published with a read token; then a reader must
//! present it, unless the reader is a member node (edges and relays fetch for clients they
//! checked themselves). Restrictions travel with the content: an origin keeps them in its
//! store, an edge on disk beside its cache, a relay in memory (bounded).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use stoq_transport::{NodeId, StoqConnection};

use super::error::{Answered, Refusal};
use super::state::NodeState;
use super::token::unix_now_s;
use crate::chunking::ContentId;
use crate::protocol::{read_digest, Op, Request};

/// Lets a change through if it carries the admin token; counts and refuses it otherwise.
pub fn authorise(state: &NodeState, token: &Bytes) -> Answered<()> {
    allow_if(state, state.access.token().verify(token))
}

/// Lets `op` on `id` through if it carries the admin token (a client) or a proof another node
/// of the network made for exactly this node, operation and content (see [`vouch`]).
pub fn authorise_forwarded(
    state: &NodeState,
    token: &Bytes,
    op: Op,
    id: &ContentId,
) -> Answered<()> {
    let me = state.endpoint.node_id();
    allow_if(
        state,
        state
            .access
            .token()
            .accepts(token, op, id, &me, unix_now_s()),
    )
}

/// What this node sends node `to` in place of the token to have it do `op` on `id`.
pub fn vouch(state: &NodeState, op: Op, id: &ContentId, to: &NodeId) -> Bytes {
    Request::admin_token(&state.access.token().vouch(op, id, to, unix_now_s()))
}

fn allow_if(state: &NodeState, allowed: bool) -> Answered<()> {
    if allowed {
        return Ok(());
    }
    state.metrics.unauthorized.fetch_add(1, Ordering::Relaxed);
    Err(Refusal::unauthorized(
        "wrong admin token; nothing was changed",
    ))
}

/// The read-token digest content `id` requires here, if its reads are restricted.
pub fn restriction_of(state: &NodeState, id: &ContentId) -> Option<[u8; 32]> {
    if let Some(store) = state.holdings.store() {
        if let Ok(Some(d)) = store.read_now(|s| s.restriction(id)) {
            return Some(d);
        }
    }
    if let Some(d) = state.holdings.cache().and_then(|c| c.restriction(id)) {
        return Some(d);
    }
    state.access.learned(id)
}

/// Lets a read of `id` through if the content is open, the reader is a member node, or it
/// presented the read token. Returns the content's restriction, which a member passes on.
pub fn check_read(
    state: &NodeState,
    conn: &StoqConnection,
    id: &ContentId,
    token: Option<&Bytes>,
) -> Answered<Option<[u8; 32]>> {
    let Some(digest) = restriction_of(state, id) else {
        return Ok(None);
    };
    let member = conn.peer_node_id().is_some_and(|p| state.is_member(&p));
    let presented = token
        .and_then(|t| std::str::from_utf8(t).ok())
        .is_some_and(|t| read_digest(t) == digest);
    if member || presented {
        return Ok(Some(digest));
    }
    state.metrics.unauthorized.fetch_add(1, Ordering::Relaxed);
    Err(Refusal::unauthorized(format!(
        "content {id} is restricted: a valid read token is required"
    )))
}
