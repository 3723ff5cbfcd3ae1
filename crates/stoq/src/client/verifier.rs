//! A download's chunk checks, on a thread of their own where the machine has cores to spare:
//! the task that receives the chunks hands each one over as the pieces it arrived in and goes
//! on receiving, so joining, hashing and receiving run side by side.

use std::sync::mpsc;

use bytes::Bytes;
use stoq_transport::join_pieces;
use tokio::sync::oneshot;

use crate::chunking::ChunkId;

/// Cores from which [`Verifier::for_this_machine`] checks on a thread of its own. On 16 cores
/// that raised a one-source download from 0.69–0.74× to 0.81–0.94× raw quinn; on 2 cores,
/// shared with the node in `stoq bench delivery`, the hand-over and the wake-up per chunk
/// cost more than the thread freed (docs/PERFORMANCE.md, "16 cores").
pub const THREADED_FROM_CORES: usize = 4;

/// A chunk to check (its id, its pieces, its length), and where its answer goes.
type Job = (ChunkId, Vec<Bytes>, usize, oneshot::Sender<Option<Bytes>>);

/// Joins chunks and checks them against their ids: on a thread of its own (which ends when
/// the last clone is dropped), or on the caller's thread.
#[derive(Clone)]
pub struct Verifier {
    /// The checking thread's queue; `None` checks on the caller's thread.
    jobs: Option<mpsc::Sender<Job>>,
}

impl Verifier {
    /// Starts a checking thread: chunks are checked in the order they are handed over.
    pub fn start() -> std::io::Result<Verifier> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("stoq-verify".into())
            .spawn(move || {
                for (id, pieces, len, answer) in queue {
                    let _ = answer.send(checked(id, pieces, len));
                }
            })?;
        Ok(Verifier { jobs: Some(jobs) })
    }

    /// Checks on the caller's thread, each answer ready at once.
    pub fn inline() -> Verifier {
        Verifier { jobs: None }
    }

    /// A thread of its own from [`THREADED_FROM_CORES`] cores on, the caller's thread below.
    pub fn for_this_machine() -> std::io::Result<Verifier> {
        match stoq_transport::cores() >= THREADED_FROM_CORES {
            true => Verifier::start(),
            false => Ok(Verifier::inline()),
        }
    }

    /// The chunk of `len` bytes in `pieces`, joined, if it hashes to `id` (`None` if not). A
    /// checking thread that is gone drops the answer's sender, which the caller reads as "not
    /// checked".
    pub fn check(
        &self,
        id: ChunkId,
        pieces: Vec<Bytes>,
        len: usize,
    ) -> oneshot::Receiver<Option<Bytes>> {
        let (answer, receiver) = oneshot::channel();
        match &self.jobs {
            Some(jobs) => _ = jobs.send((id, pieces, len, answer)),
            None => _ = answer.send(checked(id, pieces, len)),
        }
        receiver
    }
}

/// The chunk joined from `pieces`, if it hashes to `id`.
fn checked(id: ChunkId, pieces: Vec<Bytes>, len: usize) -> Option<Bytes> {
    let chunk = join_pieces(pieces, len);
    id.matches(&chunk).then_some(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_are_joined_and_checked_against_their_ids_on_a_thread_or_inline() {
        for verifier in [Verifier::start().unwrap(), Verifier::inline()] {
            let whole = Bytes::from_static(b"a chunk of content");
            let id = ChunkId::of(&whole);
            let pieces = vec![whole.slice(..5), whole.slice(5..6), whole.slice(6..)];
            let joined = verifier.check(id, pieces, whole.len()).await.unwrap();
            assert_eq!(joined, Some(whole.clone()));
            let flipped = Bytes::from_static(b"a chunk of cOntent");
            let answer = verifier
                .check(id, vec![flipped], whole.len())
                .await
                .unwrap();
            assert_eq!(
                answer, None,
                "a chunk that does not match its id is not handed back"
            );
        }
    }
}
