//! What the front learns from a content's bytes before answering: a collection's document
//! (read once, kept decoded) and a lone content's sniffed media type.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::chunking::collection::MAX_COLLECTION_BYTES;
use crate::chunking::{Collection, ContentId, Manifest};
use crate::node::{NodeContent, Refusal};

use super::media::{sniff_type, UNKNOWN_TYPE};

/// Most decoded collections a front keeps.
const KEPT_COLLECTIONS: usize = 256;

/// Decoded collections, by id (a collection never changes under its id).
#[derive(Debug, Default)]
pub struct Collections {
    kept: Mutex<HashMap<ContentId, Arc<Collection>>>,
}

impl Collections {
    /// The collection `id` (whose manifest says it is one), read through the node and kept.
    pub async fn get(
        &self,
        content: &NodeContent,
        client: usize,
        id: ContentId,
        manifest: Arc<Manifest>,
    ) -> Result<Arc<Collection>, Refusal> {
        if let Some(c) = self.kept.lock().expect("collections lock").get(&id) {
            return Ok(c.clone());
        }
        if manifest.size > MAX_COLLECTION_BYTES {
            return Err(Refusal::bad_request(format!(
                "collection {id} is larger than this front reads (64 MiB)"
            )));
        }
        let bytes = read_all(content, client, id, manifest).await?;
        let collection = Arc::new(
            Collection::decode(&bytes).map_err(|e| Refusal::bad_request(format!("{id}: {e}")))?,
        );
        let mut kept = self.kept.lock().expect("collections lock");
        if kept.len() >= KEPT_COLLECTIONS {
            kept.clear();
        }
        kept.insert(id, collection.clone());
        Ok(collection)
    }
}

/// The media type of content `id` from its first chunk.
pub async fn sniffed_type(
    content: &NodeContent,
    client: usize,
    id: ContentId,
    manifest: Arc<Manifest>,
) -> Result<String, Refusal> {
    if manifest.chunks.is_empty() {
        return Ok(UNKNOWN_TYPE.to_owned());
    }
    let mut first = content.chunks(id, manifest, 0..1, client);
    match first.recv().await {
        Some(Ok(bytes)) => Ok(sniff_type(&bytes)),
        Some(Err(refusal)) => Err(refusal),
        None => Err(Refusal::internal("the chunk reader stopped")),
    }
}

async fn read_all(
    content: &NodeContent,
    client: usize,
    id: ContentId,
    manifest: Arc<Manifest>,
) -> Result<Vec<u8>, Refusal> {
    let count = manifest.chunks.len() as u32;
    let mut out = Vec::with_capacity(manifest.size as usize);
    let mut chunks = content.chunks(id, manifest, 0..count, client);
    while let Some(next) = chunks.recv().await {
        out.extend_from_slice(&next?);
    }
    Ok(out)
}
