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
    /// shared lock per item (a writer waits for one item, not the whole run). Results go into a
    /// channel that holds `ahead` of them, so reading runs ahead of the consumer by that much
    /// and no further; it stops at the first error or when the receiver is dropped.
    pub fn read_each<I, T, F>(&self, items: I, ahead: usize, f: F) -> mpsc::Receiver<Answered<T>>
    where
        I: IntoIterator + Send + 'static,
        I::Item: Send,
        T: Send + 'static,
        F: Fn(&Store, I::Item) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(ahead.max(1));
        let store = self.0.clone();
        tokio::task::spawn_blocking(move || {
            for item in items {
                let result = f(&store.read().expect("store lock"), item).map_err(Refusal::from);
                let failed = result.is_err();
                if tx.blocking_send(result).is_err() || failed {
                    break;
                }
            }
        });
        rx
    }

    /// Runs `f` with shared access on this thread, for calls that touch only the index.
    pub fn read_now<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        f(&self.0.read().expect("store lock"))
    }
}
