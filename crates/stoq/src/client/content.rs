//! One request each: a manifest, a chunk, a run of chunks, checked against their ids.

use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::Bytes;
use stoq_transport::{FramedRecv, StoqConnection, TransportError};

use super::error::FetchError;
use crate::chunking::{ContentId, Manifest};
use crate::protocol::{ManifestMeta, Request, MAX_MANIFEST_BYTES};

/// Sends a request and returns the body and the RESPONSE payload.
async fn request_body(
    conn: &StoqConnection,
    request: &Request,
    limit: usize,
) -> Result<(Bytes, Bytes), TransportError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.send_request(request.encode()).await?;
    send.finish()?;
    let body = recv.recv_body(limit).await?;
    let response = recv.recv_response().await?;
    Ok((body, response))
}

/// The read token a node requires for a content: a 32-byte BLAKE3 digest, or none.
pub type ReadDigest = [u8; 32];

/// Fetches and verifies the manifest of `id` from `conn`.
pub async fn fetch_manifest(conn: &StoqConnection, id: &ContentId) -> Result<Manifest, FetchError> {
    fetch_manifest_as(conn, id, None).await.map(|(m, _)| m)
}

/// Fetches and verifies the manifest of `id`, presenting `read_token` if given; also returns
/// what the node says comes with it (the read restriction, to a member; the media type).
pub async fn fetch_manifest_as(
    conn: &StoqConnection,
    id: &ContentId,
    read_token: Option<&str>,
) -> Result<(Manifest, ManifestMeta), FetchError> {
    let addr = conn.remote_addr().to_string();
    let request = Request::GetManifest {
        id: *id,
        read_token: Request::read_token(read_token),
    };
    let (bytes, response) = request_body(conn, &request, MAX_MANIFEST_BYTES)
        .await
        .map_err(|error| FetchError::Transport {
            source_addr: addr.clone(),
            error,
        })?;
    if !id.matches(&bytes) {
        return Err(FetchError::BadManifest(addr));
    }
    let meta =
        ManifestMeta::decode(&response).map_err(|_| FetchError::BadManifest(addr.clone()))?;
    let manifest = Manifest::decode(&bytes).map_err(|_| FetchError::BadManifest(addr))?;
    Ok((manifest, meta))
}

/// Fetches chunk `index` of `id` from `conn` and checks it against the manifest.
pub async fn fetch_chunk(
    conn: &StoqConnection,
    id: &ContentId,
    manifest: &Manifest,
    index: u32,
) -> Result<Bytes, FetchError> {
    fetch_chunk_as(conn, id, manifest, index, None).await
}

/// [`fetch_chunk`], presenting a read token for restricted content.
pub async fn fetch_chunk_as(
    conn: &StoqConnection,
    id: &ContentId,
    manifest: &Manifest,
    index: u32,
    read_token: Option<&str>,
) -> Result<Bytes, FetchError> {
    let addr = conn.remote_addr().to_string();
    let entry = &manifest.chunks[index as usize];
    let request = Request::GetChunk {
        id: *id,
        index,
        read_token: Request::read_token(read_token),
    };
    let (bytes, _) = request_body(conn, &request, entry.length as usize)
        .await
        .map_err(|error| FetchError::Transport {
            source_addr: addr.clone(),
            error,
        })?;
    if !entry.id.matches(&bytes) {
        return Err(FetchError::BadChunk {
            source_addr: addr,
            index,
        });
    }
    Ok(bytes)
}

/// How long a finished run's END and RESPONSE may take to arrive (they follow the last chunk
/// at once; a node that never sends them costs the run nothing it delivered).
const TAIL_DEADLINE: Duration = Duration::from_millis(500);

/// What a run fetch reports, chunk by chunk, as it goes.
#[derive(Debug)]
pub enum RunEvent {
    /// Chunk `index` arrived and matches its id; `took` is the time since the previous one
    /// (or since the run was asked for).
    Chunk {
        /// Its position in the manifest.
        index: u32,
        /// How long it took.
        took: Duration,
        /// Its bytes.
        bytes: Bytes,
    },
    /// The run stopped at chunk `index` (not delivered) because of `error`; the chunks in
    /// `rest` were never received.
    Stopped {
        /// The chunk that failed.
        index: u32,
        /// Why.
        error: FetchError,
        /// The chunks after it.
        rest: Range<u32>,
    },
}

/// Fetches the chunks `run` of `id` with one GET_CHUNKS request, checking each against the
/// manifest as it completes and handing it to `deliver` at once (so the caller writes and
/// measures chunk by chunk). Chunk `i` gets `deadline(i)` from the previous chunk's arrival
/// (the first, from the request). Stops at the first failure, which it also hands on.
pub async fn fetch_run(
    conn: &StoqConnection,
    id: &ContentId,
    manifest: &Manifest,
    run: Range<u32>,
    read_token: Option<&str>,
    deadline: impl Fn(u32) -> Duration,
    mut deliver: impl FnMut(RunEvent),
) {
    let addr = || conn.remote_addr().to_string();
    let request = Request::GetChunks {
        id: *id,
        first: run.start,
        count: run.end - run.start,
        read_token: Request::read_token(read_token),
    };
    let mut recv: Option<FramedRecv> = None;
    for index in run.clone() {
        let entry = &manifest.chunks[index as usize];
        let started = Instant::now();
        let after = deadline(index);
        let received = tokio::time::timeout(after, async {
            let stream = match recv.as_mut() {
                Some(stream) => stream,
                None => recv.insert(open_run(conn, &request).await?),
            };
            stream.recv_exact(entry.length as usize).await
        })
        .await;
        let outcome = match received {
            Err(_) => Err(FetchError::Stalled {
                source_addr: addr(),
                index,
                after,
            }),
            Ok(Err(error)) => Err(FetchError::Transport {
                source_addr: addr(),
                error,
            }),
            Ok(Ok(None)) => Err(FetchError::Transport {
                source_addr: addr(),
                error: TransportError::UnexpectedEnd("the run of chunks ended early"),
            }),
            Ok(Ok(Some(bytes))) if !entry.id.matches(&bytes) => Err(FetchError::BadChunk {
                source_addr: addr(),
                index,
            }),
            Ok(Ok(Some(bytes))) => Ok(bytes),
        };
        match outcome {
            Ok(bytes) => deliver(RunEvent::Chunk {
                index,
                took: started.elapsed(),
                bytes,
            }),
            Err(error) => {
                deliver(RunEvent::Stopped {
                    index,
                    error,
                    rest: index + 1..run.end,
                });
                return;
            }
        }
    }
    // Read the END and the empty RESPONSE, so the stream closes cleanly on both sides.
    if let Some(mut stream) = recv {
        let _ = tokio::time::timeout(TAIL_DEADLINE, async {
            if stream.recv_exact(1).await?.is_none() {
                stream.recv_response().await?;
            }
            Ok::<_, TransportError>(())
        })
        .await;
    }
}

async fn open_run(conn: &StoqConnection, request: &Request) -> Result<FramedRecv, TransportError> {
    let (mut send, recv) = conn.open_bi().await?;
    send.send_request(request.encode()).await?;
    send.finish()?;
    Ok(recv)
}
