//! Erasure coding across nodes: an origin places each chunk's K+M shards on distinct live
//! origins ([`distribute`]), streams each holder its shards ([`store_shards`] on the other
//! side), and any holder rebuilds a chunk from any K of them ([`rebuild_chunk`]).
//!
//! Placement uses the pure planner ([`crate::chunking::placement::plan`]): shard `i` of each
//! chunk goes to a distinct node, regions spread first. The [`Placement`] is stored with the
//! content on every holder, so any of them can answer for it.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use stoq_transport::{IncomingRequest, NodeId, TransportError};
use tokio::task::JoinSet;

use super::access::{restriction_of, vouch};
use super::error::{Answered, Refusal};
use super::membership::Member;
use super::state::NodeState;
use super::stored::OriginStore;
use crate::chunking::placement::{plan, PlacementError, PlacementNode, Redundancy};
use crate::chunking::{ChunkId, ContentId, ErasurePolicy, Manifest};
use crate::config::Role;
use crate::protocol::shards::{encode_shard, ShardDecoder, ShardsHead};
use crate::protocol::{
    Distribution, Holder, HolderOutcome, Op, Placement, Request, StoreShardsAnswer,
};

/// Bytes of shards a holder buffers before writing them.
const MAX_SHARD_BATCH_BYTES: usize = 32 << 20;

/// How long a holder waits for one shard from another.
const SHARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Plans where each chunk's shards go among `origins` (capacity-weighted, regions spread).
pub fn plan_placement(
    origins: &[Member],
    manifest: &Manifest,
    policy: ErasurePolicy,
) -> Result<Placement, PlacementError> {
    let nodes: Vec<PlacementNode> = origins
        .iter()
        .map(|m| PlacementNode {
            id: m.node_id().to_string(),
            region: m.region.clone(),
            capacity: f64::from(m.capacity_mbps.max(1)),
            healthy: true,
        })
        .collect();
    let items: Vec<ChunkId> = manifest.chunks.iter().map(|c| c.id).collect();
    let planned = plan(&items, &nodes, Redundancy::Erasure(policy))?;
    let index = |id: &str| {
        nodes
            .iter()
            .position(|n| n.id == id)
            .expect("planned on these nodes") as u16
    };
    Ok(Placement {
        nodes: origins
            .iter()
            .map(|m| Holder {
                id: m.node_id(),
                addr: m.addr,
            })
            .collect(),
        stripes: planned
            .iter()
            .map(|stripe| stripe.iter().map(|id| index(id)).collect())
            .collect(),
    })
}

fn not_distributed(reason: impl ToString) -> Distribution {
    Distribution {
        distributed: false,
        reason: Some(reason.to_string()),
        holders: Vec::new(),
    }
}

/// Places an erasure-coded content's shards across the live origins (this one included) and
/// sends each holder its shards; says what happened, for the PUT answer.
pub async fn distribute(
    state: &Arc<NodeState>,
    store: &OriginStore,
    id: ContentId,
    policy: ErasurePolicy,
) -> Distribution {
    let mut origins: Vec<Member> = state
        .membership
        .peers()
        .into_iter()
        .map(|p| p.member)
        .filter(|m| m.role == Role::Origin)
        .collect();
    origins.push(state.me.clone());
    origins.sort_by_key(|m| m.id);
    if origins.len() < policy.total() {
        return not_distributed(format!(
            "{} shards per chunk need {} origins, {} are live; all shards stay here",
            policy.total(),
            policy.total(),
            origins.len()
        ));
    }
    let manifest = match store.read(move |s| s.manifest(&id)).await {
        Ok(m) => Arc::new(m),
        Err(e) => return not_distributed(e.reason),
    };
    let placement = match plan_placement(&origins, &manifest, policy) {
        Ok(p) => p,
        Err(e) => return not_distributed(e),
    };
    let placement_json = serde_json::to_vec(&placement).expect("placements serialise");
    let stored = placement_json.clone();
    if let Err(e) = store.write(move |s| s.set_placement(&id, &stored)).await {
        return not_distributed(e.reason);
    }
    let head = ShardsHead {
        manifest: manifest.encode(),
        placement: placement_json,
        restriction: restriction_of(state, &id),
    };
    let mut sends = JoinSet::new();
    for (h, holder) in placement.nodes.iter().enumerate() {
        if holder.id == state.me.node_id() {
            continue;
        }
        let shards: Vec<ChunkId> = placement
            .shards_of(h)
            .filter_map(|(c, i)| manifest.chunks[c].shards.as_ref().map(|s| s.ids[i]))
            .collect();
        let (state, store, head, holder) =
            (state.clone(), store.clone(), head.clone(), holder.clone());
        sends.spawn(async move {
            let result = send_shards(&state, &store, &id, &head, &holder, &shards).await;
            (holder.id, shards.len(), result)
        });
    }
    let mut holders = vec![HolderOutcome {
        id: state.me.node_id(),
        shards: None,
        ok: true,
        reason: None,
    }];
    while let Some(joined) = sends.join_next().await {
        let (id, count, result) = match joined {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(error = %e, "a shard sender panicked");
                continue;
            }
        };
        holders.push(HolderOutcome {
            id,
            shards: Some(count),
            ok: result.is_ok(),
            reason: result.err(),
        });
    }
    Distribution {
        distributed: true,
        reason: None,
        holders,
    }
}

/// Streams one holder its shards: the head, then each shard, read from the store in batches.
async fn send_shards(
    state: &NodeState,
    store: &OriginStore,
    id: &ContentId,
    head: &ShardsHead,
    holder: &Holder,
    shards: &[ChunkId],
) -> Result<(), String> {
    let conn = state
        .dialer
        .connect(holder.id, holder.addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let request = Request::StoreShards {
        token: vouch(state, Op::StoreShards, id, &holder.id),
        id: *id,
    };
    let sent = async {
        send.send_request(request.encode()).await?;
        send.send_data(Bytes::from(head.encode())).await?;
        for batch in shards.chunks(32) {
            let batch = batch.to_vec();
            let body = store
                .read(move |s| {
                    let mut body = Vec::new();
                    for shard in &batch {
                        if let Some(bytes) = s.blob(shard)? {
                            encode_shard(shard, &bytes, &mut body);
                        }
                    }
                    Ok(body)
                })
                .await
                .map_err(|e| TransportError::Timeout(e.reason))?;
            send.send_data(Bytes::from(body)).await?;
        }
        send.send_end().await?;
        send.finish()
    }
    .await;
    // The holder's answer says why when it refused; the send error says less.
    match (sent, recv.recv_response().await) {
        (_, Ok(_)) => Ok(()),
        (_, Err(e)) => Err(e.to_string()),
    }
}

/// STORE_SHARDS: keeps the shards another origin placed here, with the manifest and placement.
pub async fn store_shards(
    store: &OriginStore,
    req: &mut IncomingRequest,
    id: ContentId,
) -> Answered<StoreShardsAnswer> {
    fn bad(m: impl Into<String>) -> Refusal {
        Refusal::bad_request(m)
    }
    let mut buf: Vec<u8> = Vec::new();
    let head = loop {
        if let Some(head) = ShardsHead::take(&mut buf) {
            break head.map_err(bad)?;
        }
        match req
            .body
            .recv_data()
            .await
            .map_err(|e| Refusal::from_body(&e))?
        {
            Some(piece) => buf.extend_from_slice(&piece),
            None => return Err(bad("the body ended before the manifest and placement")),
        }
    };
    let manifest = Manifest::decode(&head.manifest).map_err(|e| bad(e.to_string()))?;
    let placement: Placement =
        serde_json::from_slice(&head.placement).map_err(|e| bad(e.to_string()))?;
    let restriction = head.restriction;
    if let Some(d) = restriction {
        store
            .write(move |s| s.set_restriction(&id, Some(&d)))
            .await?;
    }
    let policy = manifest
        .erasure
        .ok_or_else(|| bad("the content is not erasure-coded"))?;
    placement.check(&manifest, policy).map_err(bad)?;
    let manifest_bytes = Arc::new(head.manifest);
    let mut decoder = ShardDecoder::default();
    let mut pending = decoder.push(&buf).map_err(bad)?;
    let mut held = 0usize;
    loop {
        // Shards are written in batches, so memory holds at most one batch (plus one shard).
        let pending_bytes: usize = pending.iter().map(|(_, b)| b.len()).sum();
        if pending.len() >= 32 || pending_bytes >= MAX_SHARD_BATCH_BYTES {
            held += hold(store, id, &manifest_bytes, std::mem::take(&mut pending)).await?;
        }
        match req
            .body
            .recv_data()
            .await
            .map_err(|e| Refusal::from_body(&e))?
        {
            Some(piece) => pending.extend(decoder.push(&piece).map_err(bad)?),
            None => break,
        }
    }
    if !decoder.is_clean() {
        return Err(bad("the body ended inside a shard"));
    }
    held += hold(store, id, &manifest_bytes, pending).await?;
    let placement_bytes = head.placement;
    store
        .write(move |s| {
            s.set_restriction(&id, restriction.as_ref())?;
            s.set_placement(&id, &placement_bytes)
        })
        .await?;
    Ok(StoreShardsAnswer { id, held })
}

async fn hold(
    store: &OriginStore,
    id: ContentId,
    manifest: &Arc<Vec<u8>>,
    shards: Vec<(ChunkId, Vec<u8>)>,
) -> Answered<usize> {
    let manifest = manifest.clone();
    store
        .write(move |s| s.hold(&id, &manifest, &shards))
        .await
        .map_err(|e| Refusal::bad_request(e.reason))
}

/// Fetches one shard from another holder, verified against its id; `None` if it cannot.
async fn shard_from(
    state: &NodeState,
    holder: &Holder,
    shard: &ChunkId,
    len: u32,
) -> Option<Vec<u8>> {
    let fetch = async {
        let conn = state.dialer.connect(holder.id, holder.addr).await.ok()?;
        let (mut send, mut recv) = conn.open_bi().await.ok()?;
        send.send_request(Request::GetShard { shard: *shard }.encode())
            .await
            .ok()?;
        send.finish().ok()?;
        let body = recv.recv_body(len as usize).await.ok()?;
        recv.recv_response().await.ok()?;
        Some(body.to_vec())
    };
    tokio::time::timeout(SHARD_TIMEOUT, fetch)
        .await
        .ok()
        .flatten()
        .filter(|b| shard.matches(b))
}

/// Rebuilds chunk `index` of `id` from any K of its shards, asking their holders (data shards
/// first, parity only for what is missing), and checks it against its id.
pub async fn rebuild_chunk(
    state: &Arc<NodeState>,
    id: ContentId,
    manifest: &Manifest,
    index: u32,
) -> Answered<Bytes> {
    let store = state
        .holdings
        .store()
        .ok_or_else(|| Refusal::no_content(&id))?;
    let placement = store
        .read(move |s| s.placement(&id))
        .await?
        .ok_or_else(|| Refusal::no_content(&id))?;
    let placement: Placement = serde_json::from_slice(&placement).map_err(Refusal::internal)?;
    let entry = &manifest.chunks[index as usize];
    let (Some(policy), Some(set)) = (manifest.erasure, entry.shards.as_ref()) else {
        return Err(Refusal::no_content(&id));
    };
    let stripe = placement
        .stripes
        .get(index as usize)
        .ok_or_else(|| Refusal::no_content(&id))?;
    let k = usize::from(policy.k);
    let mut shards: Vec<Option<Vec<u8>>> = vec![None; policy.total()];
    let mut good = 0;
    // Only holders that membership knows to be alive are asked: a dead one would cost a dial
    // timeout per shard, and the answer would come too late for the client anyway.
    let live: HashSet<NodeId> = state
        .membership
        .peers()
        .iter()
        .map(|p| p.member.node_id())
        .chain(std::iter::once(state.me.node_id()))
        .collect();
    let holder_of = |i: usize| {
        stripe
            .get(i)
            .and_then(|&h| placement.nodes.get(usize::from(h)))
    };
    for i in (0..set.ids.len()).filter(|&i| holder_of(i).is_some_and(|h| live.contains(&h.id))) {
        if good == k {
            break;
        }
        let (Some(holder), shard) = (holder_of(i), set.ids[i]) else {
            continue;
        };
        let bytes = if holder.id == state.me.node_id() {
            store.read(move |s| s.blob(&shard)).await.ok().flatten()
        } else {
            shard_from(state, holder, &shard, set.shard_len).await
        };
        if let Some(bytes) = bytes {
            state
                .metrics
                .bytes_in
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            shards[i] = Some(bytes);
            good += 1;
        }
    }
    if good < k {
        return Err(Refusal::not_found(format!(
            "chunk {index} of {id}: only {good} of the {k} shards needed are reachable \
             (holders that membership knows to be alive: {})",
            live.len()
        )));
    }
    let chunk = crate::chunking::erasure::decode(&shards, policy, entry.length as usize)
        .map_err(Refusal::internal)?;
    if !entry.id.matches(&chunk) {
        return Err(Refusal::not_found(format!(
            "chunk {index} of {id} did not rebuild to its id"
        )));
    }
    Ok(Bytes::from(chunk))
}
