//! Admission: how many content requests a node works on at once, and what the rest get.
//!
//! A node that takes every request at once serves none of them well: each gets a sliver of the
//! link and its client, seeing no progress, gives up. So content requests (manifests, chunks,
//! runs, shards) take a slot first. Requests beyond the slots wait in arrival order (a FIFO
//! semaphore: no one starves) for at most the queue wait (`node.read_queue_ms`, shorter than
//! a client's least stall deadline), and are then answered BUSY with a pause to retry after: the client learns that
//! the node is loaded, not failing, before it would have given up.
//!
//! Fair sharing: one connection holds at most [`PER_CONNECTION_SLOTS`] slots; past that its
//! further requests are BUSY at once, so a greedy client cannot crowd the others out of the
//! queue. Priority: background work (an edge's prefetch) may hold at most a quarter of the
//! slots, so client reads always have three quarters to themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::{Answered, Refusal};

/// The most slots one connection holds at once.
pub const PER_CONNECTION_SLOTS: usize = 16;

/// The pause a BUSY answer asks for.
pub const RETRY_AFTER: Duration = Duration::from_millis(100);

/// The node's slots for content requests.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    background: Arc<Semaphore>,
    held: Arc<Mutex<HashMap<usize, usize>>>,
    limit: usize,
    queue_wait: Duration,
}

/// A held slot; it is given back when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    _background: Option<OwnedSemaphorePermit>,
    _share: Option<Share>,
}

/// One unit of a connection's share; given back when dropped.
#[derive(Debug)]
struct Share {
    id: usize,
    held: Arc<Mutex<HashMap<usize, usize>>>,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut held = self.held.lock().expect("slots lock");
        if let Some(n) = held.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.id);
            }
        }
    }
}

impl Admission {
    /// `limit` slots (at least 1); a request waits at most `queue_wait` for one.
    pub fn new(limit: usize, queue_wait: Duration) -> Self {
        let limit = limit.max(1);
        Admission {
            slots: Arc::new(Semaphore::new(limit)),
            background: Arc::new(Semaphore::new((limit / 4).max(1))),
            held: Arc::default(),
            limit,
            queue_wait,
        }
    }

    /// How many slots there are.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Slots in use now.
    pub fn in_use(&self) -> usize {
        self.limit - self.slots.available_permits()
    }

    /// A slot for a request on connection `connection` (its stable id), or BUSY. `None` is a
    /// member node fetching for its own clients: it is not held to one connection's share.
    pub async fn enter(&self, connection: Option<usize>) -> Answered<Slot> {
        if let Some(id) = connection {
            let mut held = self.held.lock().expect("slots lock");
            let n = held.entry(id).or_insert(0);
            if *n >= PER_CONNECTION_SLOTS {
                drop(held);
                return Err(self.busy("this connection already has its share of requests"));
            }
            *n += 1;
        }
        // The connection's count is given back by the slot when it drops, or here.
        let share = connection.map(|id| Share {
            id,
            held: self.held.clone(),
        });
        match tokio::time::timeout(self.queue_wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Slot {
                _permit: permit,
                _background: None,
                _share: share,
            }),
            _ => Err(self.busy("every slot is taken")),
        }
    }

    /// A slot for background work: it waits (it has no client to disappoint), and holds one
    /// of at most a quarter of the slots.
    pub async fn enter_background(&self) -> Slot {
        let background = self
            .background
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        Slot {
            _permit: permit,
            _background: Some(background),
            _share: None,
        }
    }

    fn busy(&self, why: &str) -> Refusal {
        Refusal::busy(why, RETRY_AFTER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;

    const WAIT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn requests_past_the_slots_wait_then_are_busy_and_slots_come_back() {
        let admission = Admission::new(2, WAIT);
        let a = admission.enter(Some(1)).await.unwrap();
        let _b = admission.enter(Some(2)).await.unwrap();
        assert_eq!(admission.in_use(), 2);
        let refused = admission.enter(Some(3)).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::Busy);
        assert_eq!(retry_after(&refused.reason), Some(RETRY_AFTER));
        // A slot given back lets a waiting request in.
        let waiting = admission.enter(Some(3));
        drop(a);
        assert!(waiting.await.is_ok());
    }

    #[tokio::test]
    async fn one_connection_cannot_take_every_slot() {
        let admission = Admission::new(4 * PER_CONNECTION_SLOTS, WAIT);
        let mut mine = Vec::new();
        for _ in 0..PER_CONNECTION_SLOTS {
            mine.push(admission.enter(Some(7)).await.unwrap());
        }
        let refused = admission.enter(Some(7)).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::Busy);
        assert!(
            admission.enter(Some(8)).await.is_ok(),
            "another connection gets in"
        );
        assert!(
            admission.enter(None).await.is_ok(),
            "a member node is not held to a share"
        );
        mine.pop();
        assert!(
            admission.enter(Some(7)).await.is_ok(),
            "a freed share is usable again"
        );
    }

    /// Whether `future` is ready at its first poll (no waiting involved).
    async fn ready_now<F: std::future::Future>(future: F) -> Option<F::Output> {
        tokio::time::timeout(Duration::ZERO, future).await.ok()
    }

    #[tokio::test]
    async fn background_work_leaves_three_quarters_to_clients() {
        let admission = Admission::new(4, WAIT);
        let first = admission.enter_background().await;
        // One background job at most (a quarter of 4): a second waits although slots are free.
        assert!(ready_now(admission.enter_background()).await.is_none());
        // Clients still get the other three at once.
        let clients: Vec<Slot> = futures_of(&admission, 3).await;
        assert_eq!(admission.in_use(), 4);
        drop(first);
        drop(clients);
        assert!(ready_now(admission.enter_background()).await.is_some());
    }

    async fn futures_of(admission: &Admission, n: usize) -> Vec<Slot> {
        let mut slots = Vec::new();
        for c in 0..n {
            slots.push(ready_now(admission.enter(Some(c))).await.unwrap().unwrap());
        }
        slots
    }

    use crate::protocol::retry_after;
}
