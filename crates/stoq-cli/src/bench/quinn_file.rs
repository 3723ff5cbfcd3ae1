//! Raw quinn doing the work of a verified download without STOQ's protocol: the server reads a
//! file and streams it; the client hashes what arrives with BLAKE3 and writes it to a file.
//!
//! `stoq bench delivery` runs it beside raw quinn memory to memory (the ceiling, which reads no
//! file, writes none and hashes nothing): the gap between the two is the work any verified
//! download to a file does on this machine, and the gap between this and STOQ is what STOQ's
//! requests, manifests, chunk framing and bookkeeping cost.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bytes::{Bytes, BytesMut};

use super::raw_quinn::QuinnServer;

/// The blocks the server reads and the client hashes and writes: the mean chunk of STOQ's
/// generic chunk profile, so the client hashes the same sizes a STOQ client verifies.
const BLOCK: usize = 64 << 10;

/// The longest request (a file's path) the server reads.
const MAX_REQUEST: usize = 4096;

/// Blocks the server's reader may be ahead of its sender.
const READ_AHEAD: usize = 16;

/// Blocks the client's receiver may be ahead of its writer (16 MiB).
const WRITE_AHEAD: usize = 256;

/// A raw quinn server that streams the file each request names.
pub(super) struct QuinnFile {
    server: QuinnServer,
}

/// A client connected to a [`QuinnFile`] server, driven by the runtime it was connected on.
#[derive(Clone)]
pub(super) struct QuinnFileClient {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
}

impl QuinnFile {
    /// Starts the server, on the current runtime, with the path MTU bounds of STOQ's transport
    /// (`max_mtu`).
    pub(super) fn start(max_mtu: u16) -> Result<Self> {
        let server = QuinnServer::start(max_mtu, |conn| async move {
            while let Ok((send, mut recv)) = conn.accept_bi().await {
                tokio::spawn(async move {
                    let Ok(path) = recv.read_to_end(MAX_REQUEST).await else {
                        return;
                    };
                    let path = PathBuf::from(std::ffi::OsStr::from_bytes(&path));
                    // A failed send resets the stream, and the client reports it.
                    let _ = send_file(send, path).await;
                });
            }
        })?;
        Ok(QuinnFile { server })
    }

    /// A client on the current runtime, connected.
    pub(super) async fn connect(&self) -> Result<QuinnFileClient> {
        let (endpoint, conn) = self.server.connect().await?;
        Ok(QuinnFileClient {
            _endpoint: endpoint,
            conn,
        })
    }
}

impl QuinnFileClient {
    /// Fetches `path` from the server into `out`, hashing every byte, and checks the hash is
    /// `expected`; the time from the request to the last byte written.
    pub(super) async fn fetch(
        &self,
        path: &Path,
        out: &Path,
        expected: &blake3::Hash,
    ) -> Result<Duration> {
        let started = Instant::now();
        let (mut send, mut recv) = self.conn.open_bi().await?;
        send.write_all(path.as_os_str().as_bytes()).await?;
        send.finish()?;
        // As a STOQ client does: hash on the receiving task, write on a thread of its own, at
        // most WRITE_AHEAD blocks behind (a full queue holds the receiver back).
        let mut file = File::create(out)?;
        let (to_write, mut blocks) = tokio::sync::mpsc::channel::<Bytes>(WRITE_AHEAD);
        let (wrote, written) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut result = Ok(());
            while let Some(block) = blocks.blocking_recv() {
                result = file.write_all(&block);
                if result.is_err() {
                    break;
                }
            }
            let _ = wrote.send(result);
        });
        let mut hasher = blake3::Hasher::new();
        let mut block = BytesMut::with_capacity(BLOCK);
        loop {
            let piece = recv.read_chunk(BLOCK - block.len(), true).await?;
            if let Some(piece) = &piece {
                block.extend_from_slice(&piece.bytes);
            }
            let ended = piece.is_none();
            if block.len() == BLOCK || (ended && !block.is_empty()) {
                let full = block.split().freeze();
                hasher.update(&full);
                // A writer gone has failed; its error is read below.
                if to_write.send(full).await.is_err() {
                    break;
                }
                block.reserve(BLOCK);
            }
            if ended {
                break;
            }
        }
        drop(to_write);
        written.await.context("the writer stopped")??;
        let took = started.elapsed();
        ensure!(
            hasher.finalize() == *expected,
            "raw quinn delivered other bytes"
        );
        Ok(took)
    }
}

/// Streams the file at `path` on `send`, read in [`BLOCK`]s on a blocking thread a few blocks
/// ahead of the sender.
async fn send_file(mut send: quinn::SendStream, path: PathBuf) -> Result<()> {
    let (blocks, mut to_send) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) => {
                let _ = blocks.blocking_send(Err(e));
                return;
            }
        };
        loop {
            let mut block = Vec::with_capacity(BLOCK);
            match (&mut file).take(BLOCK as u64).read_to_end(&mut block) {
                Ok(0) => return,
                Ok(_) => {
                    if blocks.blocking_send(Ok(block.into())).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = blocks.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    while let Some(block) = to_send.recv().await {
        send.write_chunk(block.context("reading the file")?).await?;
    }
    send.finish()?;
    Ok(())
}
