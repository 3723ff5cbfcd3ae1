//! The multi-source downloader: fetches a content from one or several nodes at once, verifies
//! every manifest and chunk, and moves the work of a source that fails, stalls or lies to the
//! others.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use stoq_transport::{StoqConnection, TransportError};

use crate::chunking::{ContentId, Manifest};
use crate::protocol::{Request, MAX_MANIFEST_BYTES};
use crate::routing::Ewma;

/// Chunks a fetch keeps in flight per source.
pub const WINDOW_PER_SOURCE: usize = 4;

/// The most chunks one source may have in flight, however fast it is.
pub const MAX_WINDOW_PER_SOURCE: usize = 32;

/// The most bytes one source may have in flight (bounds memory for large chunks).
pub const MAX_IN_FLIGHT_BYTES: u64 = 32 << 20;

/// How much data a source should have in flight, in seconds of its measured rate: enough to
/// cover the round trip of a loaded path (queues add tens of milliseconds).
const IN_FLIGHT_SECONDS: f64 = 0.1;

/// Chunks in flight for a source that has shown `rate` bytes/s, for chunks of about
/// `chunk_len` bytes: enough to keep 100 ms of its rate in flight (so a fast source is never
/// idle waiting for requests), at least 2, at most [`MAX_WINDOW_PER_SOURCE`] and
/// [`MAX_IN_FLIGHT_BYTES`]. A source with no measurement yet gets [`WINDOW_PER_SOURCE`].
pub fn window_for(rate: Option<f64>, chunk_len: u32) -> usize {
    let len = u64::from(chunk_len.max(1));
    let cap = ((MAX_IN_FLIGHT_BYTES / len) as usize).clamp(2, MAX_WINDOW_PER_SOURCE);
    match rate {
        None => WINDOW_PER_SOURCE.min(cap),
        Some(r) => ((r * IN_FLIGHT_SECONDS / len as f64).ceil() as usize).clamp(2, cap),
    }
}

/// The least time a source gets for a chunk before it counts as stalled.
pub const STALL_FLOOR: Duration = Duration::from_millis(500);

/// How many stalls in a row the only source left may show before the fetch gives up; each one
/// doubles the time it gets (a source with others beside it is dropped at its first stall, and
/// its chunks go to the others).
pub const MAX_STRIKES: u32 = 5;

/// How long a source may take to send a manifest before the next source is asked.
pub const MANIFEST_DEADLINE: Duration = Duration::from_secs(5);

/// The rate assumed for a source before its first chunk arrives (1 MB/s: generous, so a slow
/// but working source is not dropped on its first chunk).
const INITIAL_RATE_BYTES_PER_S: f64 = 1e6;

/// How long a source may take for a chunk of `len` bytes, given the rate it has shown so far
/// (with its other chunks in flight): 500 ms plus three times the expected transfer time.
pub fn stall_deadline(len: u32, rate_bytes_per_s: f64) -> Duration {
    STALL_FLOOR + Duration::from_secs_f64(3.0 * f64::from(len) / rate_bytes_per_s.max(1.0))
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request could not be made or answered.
    #[error("{source_addr}: {error}")]
    Transport {
        /// The source.
        source_addr: String,
        /// What happened.
        error: TransportError,
    },
    /// A source sent a manifest that does not hash to the content id.
    #[error("{0}: the manifest does not match the content id")]
    BadManifest(String),
    /// A source sent a chunk that does not match its id.
    #[error("{source_addr}: chunk {index} does not match its id; source dropped")]
    BadChunk {
        /// The source.
        source_addr: String,
        /// The chunk's index.
        index: u32,
    },
    /// A source took longer than its stall deadline for a chunk.
    #[error("{source_addr}: chunk {index} stalled past {after:?}; source dropped")]
    Stalled {
        /// The source.
        source_addr: String,
        /// The chunk's index.
        index: u32,
        /// The deadline it missed.
        after: Duration,
    },
    /// Every source failed before the content was complete.
    #[error("no source could deliver chunk {index}; last error: {last}")]
    Exhausted {
        /// The chunk nobody delivered.
        index: u32,
        /// The last source's error.
        last: String,
    },
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// No source was given.
    #[error("no source to fetch from")]
    NoSource,
}

/// What a fetch moved, per source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReport {
    /// Content bytes delivered.
    pub size: u64,
    /// (source address, verified bytes it delivered), in the order the sources were given.
    pub sources: Vec<(String, u64)>,
    /// Sources dropped for failing or sending bad data.
    pub dropped: Vec<String>,
    /// Bytes the caller already had (a resumed download), not fetched again.
    pub resumed_bytes: u64,
}

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
/// the content's read restriction if the node says it has one.
pub async fn fetch_manifest_as(
    conn: &StoqConnection,
    id: &ContentId,
    read_token: Option<&str>,
) -> Result<(Manifest, Option<ReadDigest>), FetchError> {
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
    let restriction = match response.len() {
        0 => None,
        32 => Some(response[..].try_into().expect("32 bytes")),
        _ => return Err(FetchError::BadManifest(addr)),
    };
    let manifest = Manifest::decode(&bytes).map_err(|_| FetchError::BadManifest(addr))?;
    Ok((manifest, restriction))
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

/// Fetches `id` from several sources at once and writes it to `out` in order.
///
/// Each source has a window of chunks in flight sized to its measured throughput
/// ([`window_for`]), so a faster source both finishes its chunks sooner and keeps more of them
/// going. A source that fails, stalls (misses its
/// [`stall_deadline`], which adapts to the rate it has shown) or sends a chunk that does not
/// match its id is dropped, and its unfinished chunks go to the others; a verified chunk is
/// never fetched twice. The only source left is not dropped for slowness: it gets one chunk at
/// a time and twice the time after each stall, up to [`MAX_STRIKES`] stalls in a row. Memory
/// is bounded by the in-flight and not-yet-written chunks.
pub async fn fetch<W: Write>(
    sources: &[StoqConnection],
    id: &ContentId,
    out: &mut W,
) -> Result<FetchReport, FetchError> {
    let options = FetchOptions {
        active: sources.len(),
        read_token: None,
    };
    fetch_with(sources, id, out, &options, |_| Ok(0)).await
}

/// How [`fetch_with`] uses its sources.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Sources used at once; the others stand by.
    pub active: usize,
    /// A read token for restricted content.
    pub read_token: Option<String>,
}

/// [`fetch`] with refinements: only the first `options.active` sources are used at once, the
/// others stand by and replace a dropped one in order (failover without fanning out); and
/// `already_have` says how many leading chunks the caller already holds (checked against the
/// manifest it is given), so an interrupted download resumes where it stopped.
pub async fn fetch_with<W: Write>(
    sources: &[StoqConnection],
    id: &ContentId,
    out: &mut W,
    options: &FetchOptions,
    already_have: impl FnOnce(&Manifest) -> std::io::Result<u32>,
) -> Result<FetchReport, FetchError> {
    let active = options.active;
    let token = options.read_token.clone();
    if sources.is_empty() {
        return Err(FetchError::NoSource);
    }
    let manifest = fetch_manifest_from_any(sources, id, token.as_deref()).await?;
    let manifest = Arc::new(manifest);
    let mut report = FetchReport {
        size: 0,
        sources: sources
            .iter()
            .map(|c| (c.remote_addr().to_string(), 0))
            .collect(),
        dropped: Vec::new(),
        resumed_bytes: 0,
    };
    let count = manifest.chunks.len() as u32;
    let skip = already_have(&manifest)?.min(count);
    report.resumed_bytes = manifest.chunks[..skip as usize]
        .iter()
        .map(|c| u64::from(c.length))
        .sum();
    let mut todo: VecDeque<u32> = (skip..count).collect();
    let mut alive: Vec<bool> = (0..sources.len()).map(|s| s < active.max(1)).collect();
    let mut standby: VecDeque<usize> = (active.max(1)..sources.len()).collect();
    let mut in_flight = vec![0usize; sources.len()];
    let mut ready: BTreeMap<u32, Bytes> = BTreeMap::new();
    let mut next_write = skip;
    let mut last = String::new();
    let mut rate = vec![Ewma::starting_at(0.3, INITIAL_RATE_BYTES_PER_S); sources.len()];
    // Stalls a source has shown since its last delivered chunk (see `MAX_STRIKES`).
    let mut strikes = vec![0u32; sources.len()];
    // (source, chunk index, its strikes when asked, time taken, outcome)
    type Outcome = (usize, u32, u32, Duration, Result<Bytes, FetchError>);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Outcome>();
    let window = MAX_WINDOW_PER_SOURCE * active.clamp(1, sources.len());
    let typical_len = (manifest.size / u64::from(count.max(1))).max(1) as u32;
    while next_write < count {
        // Hand out work: chunks not too far ahead of the write cursor, to live sources with room.
        for (s, conn) in sources.iter().enumerate() {
            let measured = (report.sources[s].1 > 0).then(|| rate_of(&rate[s]));
            // A source that stalled gets one chunk at a time until it delivers again.
            let room = match strikes[s] {
                0 => window_for(measured, typical_len),
                _ => 1,
            };
            while alive[s] && in_flight[s] < room {
                let Some(&index) = todo.front() else { break };
                if index >= next_write + window as u32 {
                    break;
                }
                todo.pop_front();
                in_flight[s] += 1;
                let (conn, manifest, tx, id) = (conn.clone(), manifest.clone(), tx.clone(), *id);
                let token = token.clone();
                let asked_at = strikes[s];
                let deadline =
                    stall_deadline(manifest.chunks[index as usize].length, rate_of(&rate[s]))
                        * 2u32.pow(asked_at);
                tokio::spawn(async move {
                    let started = Instant::now();
                    let result = match tokio::time::timeout(
                        deadline,
                        fetch_chunk_as(&conn, &id, &manifest, index, token.as_deref()),
                    )
                    .await
                    {
                        Ok(result) => result,
                        Err(_) => Err(FetchError::Stalled {
                            source_addr: conn.remote_addr().to_string(),
                            index,
                            after: deadline,
                        }),
                    };
                    let _ = tx.send((s, index, asked_at, started.elapsed(), result));
                });
            }
        }
        if in_flight.iter().all(|&n| n == 0) {
            let index = todo.front().copied().unwrap_or(next_write);
            return Err(FetchError::Exhausted { index, last });
        }
        let (s, index, asked_at, took, result) = rx
            .recv()
            .await
            .expect("a sender is alive while chunks are in flight");
        in_flight[s] -= 1;
        match result {
            Ok(bytes) => {
                let observed = bytes.len() as f64 / took.as_secs_f64().max(1e-6);
                if report.sources[s].1 == 0 {
                    rate[s] = Ewma::new(0.3);
                }
                rate[s].update(observed);
                report.sources[s].1 += bytes.len() as u64;
                strikes[s] = 0;
                ready.insert(index, bytes);
            }
            Err(e) => {
                last = e.to_string();
                let stalled = matches!(e, FetchError::Stalled { .. });
                let others = !standby.is_empty()
                    || alive.iter().enumerate().any(|(o, &live)| live && o != s);
                if stalled && !others && strikes[s] < MAX_STRIKES {
                    // Slowness is not failure: the only source left gets twice the time
                    // (once per stall, however many of its requests stalled together).
                    if asked_at == strikes[s] {
                        strikes[s] += 1;
                    }
                } else if alive[s] {
                    alive[s] = false;
                    report.dropped.push(report.sources[s].0.clone());
                    if let Some(next) = standby.pop_front() {
                        alive[next] = true;
                    }
                }
                // Put the chunk back in order, at the front: it is the most overdue.
                let at = todo.iter().position(|&i| i > index).unwrap_or(todo.len());
                todo.insert(at, index);
            }
        }
        while let Some(bytes) = ready.remove(&next_write) {
            out.write_all(&bytes)?;
            report.size += bytes.len() as u64;
            next_write += 1;
        }
    }
    Ok(report)
}

/// Extra rounds over the sources for a manifest when every source only stalled (each round
/// doubles the deadline): a busy node gets more time, a failing one does not.
const MANIFEST_RETRIES: u32 = 2;

/// The manifest of `id` from the first source that delivers a verified one, in order.
async fn fetch_manifest_from_any(
    sources: &[StoqConnection],
    id: &ContentId,
    token: Option<&str>,
) -> Result<Manifest, FetchError> {
    let mut last_error = None;
    for round in 0..=MANIFEST_RETRIES {
        let deadline = MANIFEST_DEADLINE * 2u32.pow(round);
        let mut only_stalls = true;
        for conn in sources {
            match tokio::time::timeout(deadline, fetch_manifest_as(conn, id, token)).await {
                Ok(Ok((m, _))) => return Ok(m),
                Ok(Err(e)) => {
                    only_stalls = false;
                    last_error = Some(e);
                }
                Err(_) => {
                    last_error = Some(FetchError::Stalled {
                        source_addr: conn.remote_addr().to_string(),
                        index: u32::MAX,
                        after: deadline,
                    })
                }
            }
        }
        if !only_stalls {
            break;
        }
    }
    Err(last_error.unwrap_or(FetchError::NoSource))
}

fn rate_of(rate: &Ewma) -> f64 {
    rate.value().unwrap_or(INITIAL_RATE_BYTES_PER_S)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_measured_throughput_within_bounds() {
        assert_eq!(window_for(None, 65536), WINDOW_PER_SOURCE);
        assert_eq!(
            window_for(Some(1e3), 65536),
            2,
            "a slow source keeps a minimum"
        );
        // 100 MB/s with 64 KiB chunks: 10 MB in 100 ms = 153 chunks, capped.
        assert_eq!(window_for(Some(1e8), 65536), MAX_WINDOW_PER_SOURCE);
        // 10 MB/s: 1 MB in flight = 16 chunks of 64 KiB.
        assert_eq!(window_for(Some(1e7), 65536), 16);
        // 4 MiB chunks: memory caps the window at 8 however fast the source.
        assert_eq!(window_for(Some(1e10), 4 << 20), 8);
    }
}
