//! Request coalescing: many callers asking for the same missing thing share one fetch.
//!
//! An edge that misses a chunk asks upstream once, however many clients want that chunk at the
//! same moment; the others wait for the same answer.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

/// Shares in-flight fetches by key.
#[derive(Debug)]
pub struct Coalescer<K, V> {
    inflight: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K, V> Default for Coalescer<K, V> {
    fn default() -> Self {
        Coalescer {
            inflight: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Coalescer<K, V> {
    /// The result of `fetch` for `key`. If a fetch for `key` is already running, waits for it
    /// instead of starting another. If the caller running the fetch is cancelled, a waiting
    /// caller takes it over. Results (errors included, when `V` is a `Result`) are handed to
    /// everyone who waited and then forgotten, so a later call fetches anew.
    pub async fn get_or_fetch<F, Fut>(&self, key: K, fetch: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let cell = {
            let mut inflight = self.inflight.lock().expect("coalescer lock poisoned");
            inflight.entry(key.clone()).or_default().clone()
        };
        let value = cell.get_or_init(fetch).await.clone();
        let mut inflight = self.inflight.lock().expect("coalescer lock poisoned");
        if inflight.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            inflight.remove(&key);
        }
        value
    }

    /// Callers waiting on (or running) the fetch for `key` now.
    pub fn waiting(&self, key: &K) -> usize {
        let inflight = self.inflight.lock().expect("coalescer lock poisoned");
        inflight
            .get(key)
            .map_or(0, |cell| Arc::strong_count(cell) - 1)
    }

    /// Keys with a fetch running now.
    pub fn in_flight(&self) -> usize {
        self.inflight.lock().expect("coalescer lock poisoned").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fifty_callers_for_one_key_cause_one_fetch() {
        let coalescer = Arc::new(Coalescer::<u32, Result<String, String>>::default());
        let fetches = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut callers = Vec::new();
        for _ in 0..50 {
            let (c, f, g) = (coalescer.clone(), fetches.clone(), gate.clone());
            callers.push(tokio::spawn(async move {
                c.get_or_fetch(7, || async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    g.notified().await;
                    Ok("chunk".to_string())
                })
                .await
            }));
        }
        // Release the one fetch once every caller is waiting on it.
        while coalescer.waiting(&7) < 50 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for c in callers {
            assert_eq!(c.await.unwrap(), Ok("chunk".to_string()));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!(coalescer.in_flight(), 0, "finished fetches are forgotten");
    }

    #[tokio::test]
    async fn failures_reach_every_waiter_and_a_later_call_fetches_again() {
        let coalescer = Coalescer::<&str, Result<u8, String>>::default();
        let failed = coalescer
            .get_or_fetch("a", || async { Err("upstream down".to_string()) })
            .await;
        assert_eq!(failed, Err("upstream down".to_string()));
        let ok = coalescer.get_or_fetch("a", || async { Ok(1) }).await;
        assert_eq!(ok, Ok(1));
        let other = coalescer.get_or_fetch("b", || async { Ok(2) }).await;
        assert_eq!(other, Ok(2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_fetcher_is_taken_over_by_a_waiter() {
        let coalescer = Arc::new(Coalescer::<u8, u8>::default());
        let first = {
            let c = coalescer.clone();
            tokio::spawn(async move { c.get_or_fetch(1, std::future::pending::<u8>).await })
        };
        while coalescer.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        let second = {
            let c = coalescer.clone();
            tokio::spawn(async move { c.get_or_fetch(1, || async { 9 }).await })
        };
        first.abort();
        assert_eq!(second.await.unwrap(), 9);
    }
}
