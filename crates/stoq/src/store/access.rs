//! Which stored contents have restricted reads: content id → BLAKE3 digest of its read token.

use redb::TableDefinition;

use super::{Store, StoreError};
use crate::chunking::ContentId;

/// Content id → read-token digest.
pub(super) const RESTRICTED: TableDefinition<&[u8; 32], &[u8; 32]> =
    TableDefinition::new("restricted");

impl Store {
    /// Restricts reads of `content` to holders of the token whose digest is `digest`
    /// (`None` opens it again).
    pub fn set_restriction(
        &mut self,
        content: &ContentId,
        digest: Option<&[u8; 32]>,
    ) -> Result<(), StoreError> {
        // The file first, so a rebuilt index keeps the restriction (see `recover`).
        self.keep_restriction_file(content, digest)?;
        self.sync_data()?;
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(RESTRICTED)?;
            match digest {
                Some(d) => {
                    table.insert(&content.0, d)?;
                }
                None => {
                    table.remove(&content.0)?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The read-token digest `content` requires, if its reads are restricted.
    pub fn restriction(&self, content: &ContentId) -> Result<Option<[u8; 32]>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RESTRICTED)?;
        let value = table.get(&content.0)?;
        Ok(value.map(|v| *v.value()))
    }
}
