//! One request each: a manifest, a chunk, a run of chunks, checked against their ids.

use std::collections::VecDeque;
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::Bytes;
use stoq_transport::{FramedRecv, StoqConnection, TransportError};
use tokio::sync::oneshot::error::TryRecvError;

use super::error::FetchError;
use super::verifier::Verifier;
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

/// Chunks of one run received and still being hashed, at most: the receiving task reads
/// this far ahead of the hashing (8 chunks of the generic profile's 64 KiB mean: 512 KiB).
const HASHING_AHEAD: usize = 8;

/// A received chunk being joined and checked off the receiving thread.
struct Checking {
    index: u32,
    took: Duration,
    /// The joined chunk if it matched its id.
    checked: tokio::sync::oneshot::Receiver<Option<Bytes>>,
}

/// The chunks a run fetch asks for: `run` of content `id`, whose manifest is `manifest`,
/// with the read token of restricted content.
#[derive(Debug, Clone)]
pub struct ChunkRun<'a> {
    /// The content.
    pub id: &'a ContentId,
    /// Its manifest (verified).
    pub manifest: &'a Manifest,
    /// The chunks, by position in the manifest.
    pub run: Range<u32>,
    /// The read token, for restricted content.
    pub read_token: Option<&'a str>,
}

/// Fetches the chunks `asked` with one GET_CHUNKS request, checking each against the
/// manifest and handing it to `deliver` in order as soon as it is checked (so the caller
/// writes and measures chunk by chunk). Hashing runs on `verifier`'s thread, up to
/// [`HASHING_AHEAD`] chunks behind the receiving, so on a machine with a core to spare the
/// thread that drives the connection only receives. Chunk `i` gets `deadline(i)` from the
/// previous chunk's arrival (the first, from the request). Stops at the first failure, which
/// it also hands on.
pub async fn fetch_run(
    conn: &StoqConnection,
    asked: ChunkRun<'_>,
    verifier: &Verifier,
    deadline: impl Fn(u32) -> Duration,
    mut deliver: impl FnMut(RunEvent),
) {
    let addr = || conn.remote_addr().to_string();
    let ChunkRun {
        id,
        manifest,
        run,
        read_token,
    } = asked;
    let request = Request::GetChunks {
        id: *id,
        first: run.start,
        count: run.end - run.start,
        read_token: Request::read_token(read_token),
    };
    let mut recv: Option<FramedRecv> = None;
    let mut checking = VecDeque::new();
    for index in run.clone() {
        if !settle(conn, &mut checking, false, run.end, &mut deliver).await {
            return;
        }
        let entry = &manifest.chunks[index as usize];
        let started = Instant::now();
        let after = deadline(index);
        let received = tokio::time::timeout(after, async {
            let stream = match recv.as_mut() {
                Some(stream) => stream,
                None => recv.insert(open_run(conn, &request).await?),
            };
            stream.recv_exact_pieces(entry.length as usize).await
        })
        .await;
        let error = match received {
            Ok(Ok(Some(pieces))) => {
                let checked = verifier.check(entry.id, pieces, entry.length as usize);
                let took = started.elapsed();
                checking.push_back(Checking {
                    index,
                    took,
                    checked,
                });
                continue;
            }
            Err(_) => FetchError::Stalled {
                source_addr: addr(),
                index,
                after,
            },
            Ok(Err(error)) => FetchError::Transport {
                source_addr: addr(),
                error,
            },
            Ok(Ok(None)) => FetchError::Transport {
                source_addr: addr(),
                error: TransportError::UnexpectedEnd("the run of chunks ended early"),
            },
        };
        // The chunks before this one arrived: they are handed on (or stop the run) first.
        if !settle(conn, &mut checking, true, run.end, &mut deliver).await {
            return;
        }
        deliver(RunEvent::Stopped {
            index,
            error,
            rest: index + 1..run.end,
        });
        return;
    }
    if !settle(conn, &mut checking, true, run.end, &mut deliver).await {
        return;
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

/// Hands on the checked chunks at the front of `checking`: those whose check is done, any
/// beyond [`HASHING_AHEAD`], or (with `all`) every one, waiting for each. False once one
/// failed its check: it stops the run (the chunks after it, to `run_end`, are its rest).
async fn settle(
    conn: &StoqConnection,
    checking: &mut VecDeque<Checking>,
    all: bool,
    run_end: u32,
    deliver: &mut impl FnMut(RunEvent),
) -> bool {
    loop {
        let must_wait = all || checking.len() >= HASHING_AHEAD;
        let Some(front) = checking.front_mut() else {
            break;
        };
        let checked = match front.checked.try_recv() {
            Ok(checked) => checked,
            Err(TryRecvError::Empty) if must_wait => (&mut front.checked).await.unwrap_or(None),
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Closed) => None,
        };
        let Checking { index, took, .. } = checking.pop_front().expect("checked above");
        if let Some(bytes) = checked {
            deliver(RunEvent::Chunk { index, took, bytes });
        } else {
            let source_addr = conn.remote_addr().to_string();
            deliver(RunEvent::Stopped {
                index,
                error: FetchError::BadChunk { source_addr, index },
                rest: index + 1..run_end,
            });
            return false;
        }
    }
    true
}

async fn open_run(conn: &StoqConnection, request: &Request) -> Result<FramedRecv, TransportError> {
    let (mut send, recv) = conn.open_bi().await?;
    send.send_request(request.encode()).await?;
    send.finish()?;
    Ok(recv)
}
