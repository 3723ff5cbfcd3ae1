//! An origin's content store as the async node uses it: every call runs off the runtime, under
//! the store's lock, with its error typed, written once here.

use std::sync::{Arc, RwLock};

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

    /// Runs `f` with shared access on this thread, for calls that touch only the index.
    pub fn read_now<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        f(&self.0.read().expect("store lock"))
    }
}
