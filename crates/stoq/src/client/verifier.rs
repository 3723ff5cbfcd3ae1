//! A download's chunk checks on a thread of their own: the task that receives the chunks
//! hands each one over as the pieces it arrived in and goes on receiving, so on a machine with
//! a core to spare joining, hashing and receiving run side by side.

use std::sync::mpsc;

use bytes::Bytes;
use stoq_transport::join_pieces;
use tokio::sync::oneshot;

use crate::chunking::ChunkId;

/// A chunk to check (its id, its pieces, its length), and where its answer goes.
type Job = (ChunkId, Vec<Bytes>, usize, oneshot::Sender<Option<Bytes>>);

/// The thread that joins chunks and checks them against their ids, in the order they are
/// handed over; it ends when the last clone of its [`Verifier`] is dropped.
#[derive(Clone)]
pub struct Verifier {
    jobs: mpsc::Sender<Job>,
}

impl Verifier {
    /// Starts the checking thread.
    pub fn start() -> std::io::Result<Verifier> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("stoq-verify".into())
            .spawn(move || {
                for (id, pieces, len, answer) in queue {
                    let chunk = join_pieces(pieces, len);
                    let _ = answer.send(id.matches(&chunk).then_some(chunk));
                }
            })?;
        Ok(Verifier { jobs })
    }

    /// The chunk of `len` bytes in `pieces`, joined, if it hashes to `id` (`None` if not),
    /// answered when the thread reaches it. A thread that is gone drops the answer's sender,
    /// which the caller reads as "not checked".
    pub fn check(
        &self,
        id: ChunkId,
        pieces: Vec<Bytes>,
        len: usize,
    ) -> oneshot::Receiver<Option<Bytes>> {
        let (answer, receiver) = oneshot::channel();
        let _ = self.jobs.send((id, pieces, len, answer));
        receiver
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_are_joined_and_checked_against_their_ids() {
        let verifier = Verifier::start().unwrap();
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
