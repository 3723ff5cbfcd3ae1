//! GET_CHUNKS: a run of chunks as one body, streamed as it is read.
//!
//! One request, one stream, one manifest lookup and one reading task for the whole run, where
//! GET_CHUNK costs each of those per chunk. The next chunks are read while the current ones
//! are sent, handed over in batches ([`READ_BATCH_BYTES`], [`READ_AHEAD_BATCHES`]), so the
//! disk and the network overlap and the reader and the sender wake each other once per batch,
//! not once per chunk. A chunk that cannot be had ends the body with an ERROR after the whole
//! chunks before it, which the asker keeps.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use stoq_transport::{IncomingRequest, TransportError};
use tokio::sync::mpsc;

use super::super::access::check_read;
use super::super::error::{Answered, Refusal};
use super::super::pull::{chunk_of, manifest_of};
use super::super::state::{Holdings, NodeState};
use crate::chunking::{ContentId, Manifest};

/// The bytes of chunks an origin's reader hands over at once (a bigger chunk goes alone).
pub const READ_BATCH_BYTES: u64 = 256 << 10;

/// Batches read ahead of the one being sent.
pub const READ_AHEAD_BATCHES: usize = 2;

/// Chunks fetched ahead of the one being sent where chunks come one at a time (an edge, a
/// relay, shards).
pub const READ_AHEAD: usize = 4;

/// The chunks of a run in order, as [`read_run`] reads them: taken one by one from the
/// batches the reader hands over.
pub struct RunChunks {
    batches: mpsc::Receiver<Vec<Answered<Bytes>>>,
    current: std::vec::IntoIter<Answered<Bytes>>,
}

impl RunChunks {
    /// The next chunk (or the refusal that ends the run); `None` after the last.
    pub async fn recv(&mut self) -> Option<Answered<Bytes>> {
        loop {
            if let Some(next) = self.current.next() {
                return Some(next);
            }
            self.current = self.batches.recv().await?.into_iter();
        }
    }
}

/// Answers GET_CHUNKS on `req`'s stream.
pub async fn run(
    state: &Arc<NodeState>,
    mut req: IncomingRequest,
    id: ContentId,
    first: u32,
    count: u32,
    read_token: Option<Bytes>,
) -> Result<(), TransportError> {
    let prepared = async {
        let manifest = manifest_of(state, id, false).await?;
        check_read(state, &req.conn, &id, read_token.as_ref())?;
        // The decoder checked that `first + count` does not overflow.
        let end = first + count;
        if end as usize > manifest.chunks.len() {
            return Err(Refusal::not_found(format!(
                "content {id} has {} chunks; the run {first}..{end} passes its end",
                manifest.chunks.len()
            )));
        }
        Ok(manifest)
    }
    .await;
    let manifest = match prepared {
        Ok(manifest) => manifest,
        Err(refusal) => return req.reply.send_error(refusal.code, &refusal.reason).await,
    };
    let mut chunks = read_run(state, id, manifest, first..first + count).await;
    let mut sent = 0u64;
    while let Some(next) = chunks.recv().await {
        match next {
            Ok(bytes) => {
                sent += bytes.len() as u64;
                req.reply.send_data(bytes).await?;
            }
            Err(refusal) => {
                state.served(&req.conn, sent);
                return req.reply.send_error(refusal.code, &refusal.reason).await;
            }
        }
    }
    req.reply.send_end().await?;
    req.reply.send_response(Bytes::new()).await?;
    state.served(&req.conn, sent);
    req.reply.finish()
}

/// The run's chunks in order, read ahead of the sender. An origin holding the content whole
/// reads it on one blocking thread, in batches; otherwise (an edge, a relay, an origin holding
/// shards) each chunk comes the way a single chunk would ([`chunk_of`]), fetched ahead the
/// same way ([`READ_AHEAD`]), one per batch.
pub async fn read_run(
    state: &Arc<NodeState>,
    id: ContentId,
    manifest: Arc<Manifest>,
    run: Range<u32>,
) -> RunChunks {
    let batches = match &state.holdings {
        Holdings::Origin(store) if store.read(move |s| s.contains(&id)).await.unwrap_or(false) => {
            let policy = manifest.erasure;
            store.read_batches(
                run,
                |bytes: &Bytes| bytes.len() as u64,
                READ_BATCH_BYTES,
                READ_AHEAD_BATCHES,
                move |s, index| {
                    s.read_chunk(&id, &manifest.chunks[index as usize], policy)
                        .map(|(bytes, _)| Bytes::from(bytes))
                },
            )
        }
        _ => {
            let (tx, rx) = mpsc::channel(READ_AHEAD);
            let state = state.clone();
            super::super::spawn_in_span(async move {
                for index in run {
                    let result = chunk_of(&state, id, manifest.clone(), index).await;
                    let failed = result.is_err();
                    if tx.send(vec![result]).await.is_err() || failed {
                        break;
                    }
                }
            });
            rx
        }
    };
    RunChunks {
        batches,
        current: Vec::new().into_iter(),
    }
}
