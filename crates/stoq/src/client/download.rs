//! The multi-source downloader: fetches a content from one or several nodes at once, in runs
//! of chunks (one GET_CHUNKS each), verifies every manifest and chunk, and moves the work of a
//! source that fails, stalls or lies to the others. A busy source is paused, not dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use stoq_transport::StoqConnection;

use super::content::{fetch_manifest_as, fetch_run, ChunkRun, RunEvent};
use super::error::FetchError;
use super::plan::{stall_deadline, FetchReport, Plan, Waiting, MAX_BUSY_WAIT};
use super::reuse::LocalChunks;
use super::verifier::Verifier;
use crate::chunking::{ContentId, Manifest};

/// How long a source may take to send a manifest before the next source is asked.
pub const MANIFEST_DEADLINE: Duration = Duration::from_secs(5);

/// Fetches `id` from several sources at once and writes it to `out` in order.
///
/// Each source has a window of chunks in flight sized to its measured throughput
/// ([`window_for`](crate::client::window_for)), asked for in runs ([`run_len`](crate::client::run_len)), so a faster source both finishes its
/// chunks sooner and keeps more of them going. A source that fails, stalls (misses its
/// [`stall_deadline`], which adapts to the rate it has shown) or sends a chunk that does not
/// match its id is dropped, and its unfinished chunks go to the others; a verified chunk is
/// never fetched twice. The only source left is not dropped for slowness: it gets one chunk at
/// a time and twice the time after each stall, up to [`MAX_STRIKES`] stalls in a row. A source
/// that answers BUSY is paused for the time it asks (doubling while it stays busy) and its
/// chunks go back in line; the fetch gives up only after [`MAX_BUSY_WAIT`] without progress.
/// Memory is bounded by the in-flight and not-yet-written chunks.
pub async fn fetch<W: Write>(
    sources: &[StoqConnection],
    id: &ContentId,
    out: &mut W,
) -> Result<FetchReport, FetchError> {
    let options = FetchOptions {
        active: sources.len(),
        ..Default::default()
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
    /// Chunks the caller may hold on its own disk (earlier versions, its chunk cache): those
    /// are copied from there, verified, instead of fetched; every fetched chunk is offered to
    /// each of them to keep.
    pub local: Vec<Arc<dyn LocalChunks>>,
    /// The content's manifest when the caller already has it (say, fetched to see what kind
    /// of content it is): used instead of asking a source again, once its id is checked.
    pub manifest: Option<Arc<Manifest>>,
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
    fetch_into(
        sources,
        id,
        Sink::Ordered(out),
        options,
        already_have,
        |_| {},
    )
    .await
}

/// [`fetch_with`] into a file, each chunk written at its offset as soon as it is verified (its
/// bytes still in the CPU's caches, none waiting in memory for the chunks before it), by one
/// writer thread, so no async task blocks on the disk. `file` is written from its start: the leading chunks
/// `already_have` counts must already be there. `progress` is told the bytes complete from
/// the start, as that prefix grows. The file is not truncated to the content's size. The
/// writer hands the file's data to the disk (`fdatasync`) after every [`WRITEBACK_EVERY`]
/// bytes, while the download goes on: a caller's final `sync_all` has only the tail left, a
/// large download never piles up more dirty pages than that, and a full disk is reported
/// when it fills, not at the end.
pub async fn fetch_to_file(
    sources: &[StoqConnection],
    id: &ContentId,
    file: Arc<File>,
    options: &FetchOptions,
    already_have: impl FnOnce(&Manifest) -> std::io::Result<u32>,
    progress: impl FnMut(u64),
) -> Result<FetchReport, FetchError> {
    let sink = Sink::<std::io::Sink>::At(file);
    fetch_into(sources, id, sink, options, already_have, progress).await
}

/// Where a fetch puts the chunks it verified.
enum Sink<'a, W> {
    /// In content order through a writer (a pipe, standard output): a chunk that arrives early
    /// waits in memory for those before it.
    Ordered(&'a mut W),
    /// At each chunk's offset in a file, in any order.
    At(Arc<File>),
}

/// What a run's task, or the file's writer, tells the fetch loop.
enum Note {
    /// Source `s` delivered chunk `index`, verified: its bytes, unless they went to the writer.
    Arrived {
        s: usize,
        index: u32,
        len: usize,
        bytes: Option<Bytes>,
    },
    /// Source `s`'s run (asked with `asked_at` strikes) stopped (see [`RunEvent::Stopped`]).
    Stopped {
        s: usize,
        asked_at: u32,
        index: u32,
        error: FetchError,
        rest: std::ops::Range<u32>,
    },
    /// A run of source `s` is over.
    Ended { s: usize },
    /// The writer put chunk `index` in its place in the file.
    Written { index: u32 },
    /// Writing a chunk to the file failed.
    WriteFailed(std::io::Error),
}

type Notes = tokio::sync::mpsc::UnboundedSender<Note>;

/// Bytes a download into a file writes between two hand-overs of its data to the disk.
pub const WRITEBACK_EVERY: u64 = 16 << 20;

/// Counts bytes written since the last `fdatasync` and says when the next one is due.
#[derive(Debug, Default)]
struct Writeback {
    unsynced: u64,
}

impl Writeback {
    /// `len` more bytes written; true when they bring the count to [`WRITEBACK_EVERY`] (and
    /// the count starts again).
    fn wrote(&mut self, len: usize) -> bool {
        self.unsynced += len as u64;
        let due = self.unsynced >= WRITEBACK_EVERY;
        if due {
            self.unsynced = 0;
        }
        due
    }
}

/// The thread that writes verified chunks (index, offset, bytes) into `file` as they come and
/// tells the loop, handing the data to the disk every [`WRITEBACK_EVERY`] bytes; it ends when
/// the last sender is dropped.
fn spawn_writer(
    file: Arc<File>,
    notes: Notes,
) -> std::io::Result<std::sync::mpsc::Sender<(u32, u64, Bytes)>> {
    let (tx, rx) = std::sync::mpsc::channel::<(u32, u64, Bytes)>();
    std::thread::Builder::new()
        .name("stoq-file-writer".into())
        .spawn(move || {
            let mut writeback = Writeback::default();
            for (index, offset, bytes) in rx {
                if let Err(e) = file.write_all_at(&bytes, offset) {
                    let _ = notes.send(Note::WriteFailed(e));
                    return;
                }
                if notes.send(Note::Written { index }).is_err() {
                    return;
                }
                // After the note, so the download goes on while the disk catches up.
                if writeback.wrote(bytes.len()) {
                    if let Err(e) = file.sync_data() {
                        let _ = notes.send(Note::WriteFailed(e));
                        return;
                    }
                }
            }
        })?;
    Ok(tx)
}

async fn fetch_into<W: Write>(
    sources: &[StoqConnection],
    id: &ContentId,
    mut sink: Sink<'_, W>,
    options: &FetchOptions,
    already_have: impl FnOnce(&Manifest) -> std::io::Result<u32>,
    mut progress: impl FnMut(u64),
) -> Result<FetchReport, FetchError> {
    if sources.is_empty() {
        return Err(FetchError::NoSource);
    }
    let token = options.read_token.clone();
    let manifest = match &options.manifest {
        Some(given) if given.content_id() == *id => given.clone(),
        Some(_) => return Err(FetchError::BadManifest("the caller's".into())),
        None => Arc::new(fetch_manifest_from_any(sources, id, token.as_deref()).await?),
    };
    let count = manifest.chunks.len() as u32;
    let skip = already_have(&manifest)?.min(count);
    let mut plan = Plan::new(sources, options.active, &manifest, skip);
    // Chunks held locally are not asked for; they are copied in when the writer reaches them.
    let mut local: BTreeSet<u32> = (skip..count)
        .filter(|&i| {
            let id = &manifest.chunks[i as usize].id;
            options.local.iter().any(|l| l.contains(id))
        })
        .collect();
    for i in &local {
        plan.todo.remove(i);
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Note>();
    let writer = match &sink {
        Sink::At(file) => Some(spawn_writer(file.clone(), tx.clone())?),
        Sink::Ordered(_) => None,
    };
    let verifier = Verifier::for_this_machine()?;
    // Verified chunks past the write cursor: their bytes, or `None` where written to the file.
    let mut ready: BTreeMap<u32, Option<Bytes>> = BTreeMap::new();
    let mut next_write = skip;
    // Chunks handed to the writer and not yet written.
    let mut at_writer = 0usize;
    loop {
        // Move the write cursor over what is ready, copying in locally held chunks as it
        // reaches them (one that no longer verifies goes back in line to be fetched).
        let before = next_write;
        loop {
            if let Some(bytes) = ready.remove(&next_write) {
                let entry = &manifest.chunks[next_write as usize];
                if let Some(bytes) = bytes {
                    match &mut sink {
                        Sink::Ordered(out) => out.write_all(&bytes)?,
                        Sink::At(file) => file.write_all_at(&bytes, entry.offset)?,
                    }
                }
                plan.report.size += u64::from(entry.length);
                next_write += 1;
            } else if local.remove(&next_write) {
                let id = &manifest.chunks[next_write as usize].id;
                match options.local.iter().find_map(|l| l.read(id)) {
                    Some(bytes) => {
                        plan.report.reused_bytes += bytes.len() as u64;
                        ready.insert(next_write, Some(bytes));
                    }
                    None => {
                        plan.todo.insert(next_write);
                    }
                }
            } else {
                break;
            }
        }
        if next_write > before {
            progress(match manifest.chunks.get(next_write as usize) {
                Some(entry) => entry.offset,
                None => manifest.size,
            });
        }
        if next_write >= count {
            break;
        }
        // Hand out work: runs of chunks not too far ahead of the write cursor, to live sources
        // with room that are not paused.
        let now = Instant::now();
        for (s, conn) in sources.iter().enumerate() {
            while let Some(run) = plan.next_run(s, next_write, now) {
                let (conn, manifest, tx, id) = (conn.clone(), manifest.clone(), tx.clone(), *id);
                let (token, keepers) = (token.clone(), options.local.clone());
                let (writer, verifier) = (writer.clone(), verifier.clone());
                let (asked_at, rate) = (plan.strikes[s], plan.rate_of(s));
                tokio::spawn(async move {
                    let deadline = |i: u32| {
                        stall_deadline(manifest.chunks[i as usize].length, rate)
                            * 2u32.pow(asked_at)
                    };
                    let note = |event| match event {
                        RunEvent::Chunk { index, bytes, .. } => {
                            let entry = &manifest.chunks[index as usize];
                            for keeper in &keepers {
                                keeper.keep(&entry.id, &bytes);
                            }
                            let len = bytes.len();
                            let (bytes, to_write) = match &writer {
                                None => (Some(bytes), None),
                                Some(_) => (None, Some((index, entry.offset, bytes))),
                            };
                            let note = Note::Arrived {
                                s,
                                index,
                                len,
                                bytes,
                            };
                            (note, to_write)
                        }
                        RunEvent::Stopped { index, error, rest } => {
                            let note = Note::Stopped {
                                s,
                                asked_at,
                                index,
                                error,
                                rest,
                            };
                            (note, None)
                        }
                    };
                    let asked = ChunkRun {
                        id: &id,
                        manifest: &manifest,
                        run,
                        read_token: token.as_deref(),
                    };
                    fetch_run(&conn, asked, &verifier, deadline, |e| {
                        // The loop hears of a chunk before the writer can say it is written.
                        let (note, to_write) = note(e);
                        let _ = tx.send(note);
                        if let (Some(writer), Some(chunk)) = (&writer, to_write) {
                            // A writer gone means the fetch is over.
                            let _ = writer.send(chunk);
                        }
                    })
                    .await;
                    let _ = tx.send(Note::Ended { s });
                });
            }
        }
        let event = match plan.waiting() {
            // Chunks at the writer are still to come.
            Waiting::OnChunks | Waiting::Nothing if at_writer > 0 => rx.recv().await,
            Waiting::OnChunks => rx.recv().await,
            Waiting::Until(wake) => match tokio::time::timeout_at(wake.into(), rx.recv()).await {
                Ok(event) => event,
                Err(_) => continue,
            },
            Waiting::Nothing => {
                let index = plan.todo.first().copied().unwrap_or(next_write);
                return Err(FetchError::Exhausted {
                    index,
                    last: std::mem::take(&mut plan.last),
                });
            }
        };
        match event.expect("a sender is alive while chunks are in flight") {
            Note::Arrived {
                s,
                index,
                len,
                bytes,
            } => {
                plan.delivered(s, len);
                match bytes {
                    Some(bytes) => _ = ready.insert(index, Some(bytes)),
                    None => at_writer += 1,
                }
            }
            Note::Stopped {
                s,
                asked_at,
                index,
                error,
                rest,
            } => plan.stopped(s, asked_at, error, index, rest),
            Note::Ended { s } => plan.runs[s] -= 1,
            Note::Written { index } => {
                at_writer -= 1;
                ready.insert(index, None);
            }
            Note::WriteFailed(e) => return Err(FetchError::Output(e)),
        }
    }
    Ok(plan.report)
}

/// Extra rounds over the sources for a manifest when every source only stalled (each round
/// doubles the deadline): a busy node gets more time, a failing one does not.
const MANIFEST_RETRIES: u32 = 2;

/// The manifest of `id` from the first source that delivers a verified one, in order. Rounds
/// where every source stalled are repeated with doubled deadlines ([`MANIFEST_RETRIES`]);
/// rounds where some source answered BUSY (and none failed) are repeated after its pause, for
/// up to [`MAX_BUSY_WAIT`].
async fn fetch_manifest_from_any(
    sources: &[StoqConnection],
    id: &ContentId,
    token: Option<&str>,
) -> Result<Manifest, FetchError> {
    let started = Instant::now();
    let mut last_error = None;
    let mut stalled_rounds = 0;
    loop {
        let deadline = MANIFEST_DEADLINE * 2u32.pow(stalled_rounds);
        let (mut failed, mut pause) = (false, None);
        for conn in sources {
            match tokio::time::timeout(deadline, fetch_manifest_as(conn, id, token)).await {
                Ok(Ok((m, _))) => return Ok(m),
                Ok(Err(e)) => {
                    match e.busy_pause() {
                        Some(p) => pause = pause.max(Some(p)),
                        None => failed = true,
                    }
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
        match pause {
            _ if failed => break,
            Some(pause) if started.elapsed() < MAX_BUSY_WAIT => tokio::time::sleep(pause).await,
            Some(_) => break,
            None if stalled_rounds < MANIFEST_RETRIES => stalled_rounds += 1,
            None => break,
        }
    }
    Err(last_error.unwrap_or(FetchError::NoSource))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writeback_is_due_once_per_writeback_every_bytes() {
        let mut writeback = Writeback::default();
        let chunk = 1 << 20;
        let due: Vec<bool> = (0..40).map(|_| writeback.wrote(chunk)).collect();
        let at: Vec<usize> = (0..40).filter(|&i| due[i]).collect();
        let every = (WRITEBACK_EVERY as usize) / chunk;
        assert_eq!(at, vec![every - 1, 2 * every - 1], "due after each 16 MiB");
        // A chunk larger than the interval is due at once, every time.
        assert!(writeback.wrote(WRITEBACK_EVERY as usize + 1));
        assert!(writeback.wrote(WRITEBACK_EVERY as usize));
    }
}
