//! An origin's content store as the async node uses it: every call runs off the runtime, under
//! the store's lock, with its error typed, written once here.

use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use crate::store::{Store, StoreError};

use super::error::{Answered, Refusal};

/// A shared store whose calls run on the blocking pool.
#[derive(Debug, Clone)]
pub struct OriginStore(Arc<RwLock<Store>>);

impl OriginStore {
    /// Wraps an opened store.
    pub fn new(store: Store) -> Self {
        OriginStore(Arc::new(RwLock::new(store)))
    }

    /// Runs `f` with shared access, off the async runtime.
    pub async fn read<T, F>(&self, f: F) -> Answered<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.0.clone();
        tokio::task::spawn_blocking(move || f(&store.read().expect("store lock")))
            .await
            .map_err(Refusal::internal)?
            .map_err(Refusal::from)
    }

    /// Runs `f` with exclusive access, off the async runtime.
    pub async fn write<T, F>(&self, f: F) -> Answered<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.0.clone();
        tokio::task::spawn_blocking(move || f(&mut store.write().expect("store lock")))
            .await
            .map_err(Refusal::internal)?
            .map_err(Refusal::from)
    }

    /// Runs `f` over `items` in order, off the runtime on one blocking thread, taking the
    /// shared lock per item (a writer waits for one item, not the whole run). Results are
    /// handed over in batches of at least `batch_weight` (each result weighs `weight(result)`,
    /// an error nothing; the last batch may weigh less) through a channel that holds `ahead` batches: reading runs
    /// ahead of the consumer by that much and no further, and each side wakes the other once
    /// per batch, not once per item. Stops after the first error (the last result of its
    /// batch) or when the receiver is dropped.
    pub fn read_batches<I, T, F, W>(
        &self,
        items: I,
        weight: W,
        batch_weight: u64,
        ahead: usize,
        f: F,
    ) -> mpsc::Receiver<Vec<Answered<T>>>
    where
        I: IntoIterator + Send + 'static,
        I::Item: Send,
        T: Send + 'static,
        W: Fn(&T) -> u64 + Send + 'static,
        F: Fn(&Store, I::Item) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(ahead.max(1));
        let store = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let mut batch = Vec::new();
            let mut weighed = 0u64;
            for item in items {
                let result = f(&store.read().expect("store lock"), item).map_err(Refusal::from);
                weighed += result.as_ref().map_or(0, &weight);
                let failed = result.is_err();
                batch.push(result);
                if failed || weighed >= batch_weight {
                    if tx.blocking_send(std::mem::take(&mut batch)).is_err() || failed {
                        return;
                    }
                    weighed = 0;
                }
            }
            if !batch.is_empty() {
                let _ = tx.blocking_send(batch);
            }
        });
        rx
    }

    /// Runs `f` with shared access on this thread, for calls that touch only the index.
    pub fn read_now<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        f(&self.0.read().expect("store lock"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, OriginStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = OriginStore::new(Store::open(dir.path()).unwrap());
        (dir, store)
    }

    /// Every item once, in order, in batches of at least the batch weight (the last one may
    /// weigh less), with at most `ahead` batches waiting.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_hold_every_item_in_order_by_weight() {
        let (_dir, store) = store();
        let mut rx = store.read_batches(0u32..10, |&i| u64::from(i), 7, 2, |_, i| Ok(i));
        let mut batches = Vec::new();
        while let Some(batch) = rx.recv().await {
            let items: Vec<u32> = batch.into_iter().map(Result::unwrap).collect();
            batches.push(items);
        }
        // Weights 0..9: 0+1+2+3+4 = 10 >= 7, then 5+6 = 11, 7, 8, 9.
        assert_eq!(
            batches,
            vec![vec![0, 1, 2, 3, 4], vec![5, 6], vec![7], vec![8], vec![9]]
        );
    }

    /// The first error ends its batch and the reading: nothing after it is read or handed
    /// over, and what came before it in the batch is kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_first_error_is_the_last_result() {
        let (_dir, store) = store();
        let read = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = read.clone();
        let mut rx = store.read_batches(
            0u32..100,
            |_| 1,
            4,
            2,
            move |_, i| {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                match i {
                    6 => Err(StoreError::Invalid("chunk 6 is bad".into())),
                    _ => Ok(i),
                }
            },
        );
        let mut got = Vec::new();
        while let Some(batch) = rx.recv().await {
            got.push(batch.into_iter().map(|r| r.ok()).collect::<Vec<_>>());
        }
        assert_eq!(
            got,
            vec![
                vec![Some(0), Some(1), Some(2), Some(3)],
                vec![Some(4), Some(5), None]
            ]
        );
        assert_eq!(read.load(std::sync::atomic::Ordering::SeqCst), 7);
    }
}
