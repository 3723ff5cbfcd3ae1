//! Pull-through: a node answers for content it does not hold by fetching it from upstream,
//! once however many clients ask (coalesced), verified, and kept where its role keeps things.
//!
//! - an origin reads its store; content it holds only shards of is rebuilt from any K
//!   holders ([`super::erasure`]);
//! - an edge reads its cache and fills it from upstream;
//! - a relay fetches from origins and keeps nothing.
//!
//! Names work the same way: an origin answers from its store; edges and relays keep a copy,
//! serve it while fresh, serve it stale while refreshing it, and fetch anew once expired.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::erasure::rebuild_chunk;
use super::error::{Answered, Refusal};
use super::state::{Holdings, NodeState};
use super::upstream::{first_answer, transport_refusal, upstream_refusal};
use crate::chunking::{ContentId, Manifest};
use crate::client::{fetch_chunk, fetch_manifest_as, resolve_name};
use crate::edge::names::{Freshness, NameRecord};
use crate::store::StoreError;

/// The manifest of `id`: from the store, the cache, or upstream. `asked` is true when a client
/// asked for the manifest itself (it then counts as a cache hit or miss).
pub async fn manifest_of(
    state: &Arc<NodeState>,
    id: ContentId,
    asked: bool,
) -> Answered<Arc<Manifest>> {
    // A chunk request must not cost work in proportion to the content's size: the manifest
    // resolved for an earlier request is kept decoded. (A client's own manifest request goes
    // the whole way, so an edge counts it as a cache hit or miss.)
    if !asked {
        if let Some(m) = state.pull.decoded(&id) {
            return Ok(m);
        }
    }
    let manifest = resolve_manifest(state, id, asked).await?;
    state.pull.keep_decoded(id, &manifest);
    Ok(manifest)
}

async fn resolve_manifest(
    state: &Arc<NodeState>,
    id: ContentId,
    asked: bool,
) -> Answered<Arc<Manifest>> {
    if let Holdings::Origin(store) = &state.holdings {
        return store
            .read(move |s| match s.manifest(&id) {
                Err(StoreError::NotFound(_)) => {
                    s.held_manifest(&id)?.ok_or(StoreError::NotFound(id))
                }
                other => other,
            })
            .await
            .map(Arc::new);
    }
    let cache = state.holdings.cache().cloned();
    if let Some(m) = cache.as_ref().and_then(|c| c.manifest(&id, asked)) {
        return Ok(Arc::new(m));
    }
    let fetcher = state.clone();
    state
        .pull
        .manifests
        .get_or_fetch(id, move || async move {
            // A fetch that finished between our cache check and now has stored the manifest.
            if let Some(m) = cache.as_ref().and_then(|c| c.manifest(&id, false)) {
                return Ok(Arc::new(m));
            }
            if let (true, Some(cache)) = (asked, &cache) {
                cache.count_fetch();
            }
            let (manifest, meta) = first_answer(&fetcher, |_, conn| async move {
                fetch_manifest_as(&conn, &id, None)
                    .await
                    .map_err(upstream_refusal)
            })
            .await?;
            // The restriction is recorded before the manifest is cached, so a restricted
            // content is never served openly, even after a restart.
            if let Some(d) = meta.restriction {
                fetcher.access.learn(id, d);
                if let Some(cache) = &cache {
                    cache
                        .set_restriction(&id, &d)
                        .map_err(|_| Refusal::internal("cannot record a read restriction"))?;
                }
            }
            if let Some(media_type) = meta.media_type {
                if let Some(cache) = &cache {
                    let _ = cache.set_media_type(&id, &media_type);
                }
                fetcher.pull.learn_media_type(id, media_type);
            }
            if let Some(cache) = &cache {
                let _ = cache.put(id, &manifest.encode());
            }
            Ok(Arc::new(manifest))
        })
        .await
}

/// Chunk `index` of `id` (whose manifest the caller resolved): from the store, the cache, or
/// upstream (one fetch however many ask).
pub async fn chunk_of(
    state: &Arc<NodeState>,
    id: ContentId,
    manifest: Arc<Manifest>,
    index: u32,
) -> Answered<Bytes> {
    let entry = manifest
        .chunks
        .get(index as usize)
        .cloned()
        .ok_or_else(|| Refusal::not_found(format!("content {id} has no chunk {index}")))?;
    if let Holdings::Origin(store) = &state.holdings {
        let (local_entry, policy) = (entry.clone(), manifest.erasure);
        let whole = store
            .read(move |s| {
                if s.contains(&id)? {
                    s.read_chunk(&id, &local_entry, policy)
                        .map(|(bytes, _)| Some(Bytes::from(bytes)))
                } else {
                    Ok(None)
                }
            })
            .await
            .map_err(|e| Refusal::not_found(e.reason))?;
        if let Some(bytes) = whole {
            return Ok(bytes);
        }
        // Not published here: this origin may hold some of its shards; rebuild from any K.
        let fetcher = state.clone();
        return state
            .pull
            .chunks
            .get_or_fetch(entry.id, move || async move {
                rebuild_chunk(&fetcher, id, &manifest, index).await
            })
            .await;
    }
    let cache = state.holdings.cache().cloned();
    if let Some(bytes) = cache.as_ref().and_then(|c| c.get(&entry.id)) {
        return Ok(Bytes::from(bytes));
    }
    let fetcher = state.clone();
    state
        .pull
        .chunks
        .get_or_fetch(entry.id, move || async move {
            // A fetch that finished between our cache check and now has stored the chunk.
            if let Some(bytes) = cache.as_ref().and_then(|c| c.peek(&entry.id)) {
                return Ok(Bytes::from(bytes));
            }
            if let Some(cache) = &cache {
                cache.count_fetch();
            }
            let manifest = &manifest;
            let upstreams = &fetcher.upstreams;
            let bytes = first_answer(&fetcher, |up, conn| async move {
                let started = Instant::now();
                let bytes = fetch_chunk(&conn, &id, manifest, index)
                    .await
                    .map_err(upstream_refusal)?;
                upstreams.record_pull(up.node_id(), bytes.len(), started.elapsed().as_secs_f64());
                Ok(bytes)
            })
            .await?;
            fetcher
                .metrics
                .bytes_in
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            if let Some(cache) = &cache {
                if let Err(e) = cache.put(entry.id, &bytes) {
                    tracing::warn!(error = %e, "cannot cache a chunk");
                }
            }
            Ok(bytes)
        })
        .await
}

/// What `name` points at, and how old this node's copy of the record is (ms): an origin
/// answers from its store (age 0); an edge or relay from its copy while fresh, from its copy
/// while refreshing it in the background when stale, and from upstream when it has none or it
/// expired.
pub async fn name_of(state: &Arc<NodeState>, name: String) -> Answered<(NameRecord, u64)> {
    if let Holdings::Origin(store) = &state.holdings {
        let lookup = name.clone();
        return store
            .read(move |s| s.name(&lookup))
            .await?
            .map(|record| (record, 0))
            .ok_or_else(|| Refusal::not_found(format!("name {name:?} is not set")));
    }
    let copy = state
        .pull
        .names
        .lock()
        .expect("names lock")
        .get(&name)
        .cloned();
    if let Some((record, fetched)) = copy {
        let age_ms = fetched.elapsed().as_millis() as u64;
        match record.freshness(age_ms) {
            Freshness::Fresh => return Ok((record, age_ms)),
            Freshness::Stale => {
                let state = state.clone();
                super::spawn_in_span(async move {
                    let _ = refresh_name(&state, name).await;
                });
                return Ok((record, age_ms));
            }
            Freshness::Expired => {}
        }
    }
    refresh_name(state, name).await.map(|record| (record, 0))
}

/// Fetches a name's record from upstream (once, however many ask) and keeps a copy.
async fn refresh_name(state: &Arc<NodeState>, name: String) -> Answered<NameRecord> {
    let fetcher = state.clone();
    state
        .pull
        .name_fetches
        .get_or_fetch(name.clone(), move || async move {
            let name_ref = &name;
            let record = first_answer(&fetcher, |_, conn| async move {
                resolve_name(&conn, name_ref)
                    .await
                    .map_err(|e| transport_refusal(&e))
            })
            .await?;
            fetcher
                .pull
                .names
                .lock()
                .expect("names lock")
                .insert(name.clone(), (record.clone(), Instant::now()));
            Ok(record)
        })
        .await
}
