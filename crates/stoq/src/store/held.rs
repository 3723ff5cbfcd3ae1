//! Shards this node holds for content published elsewhere (erasure coding across nodes), and
//! where each content's shards were placed.
//!
//! A holder keeps, per content: the manifest (so it can answer for the content even when the
//! publishing origin is gone), the placement (who holds which shard) and one reference on each
//! shard blob it holds, so `gc` never takes them. Shard blobs live with the other blobs and are
//! verified on every read like them.

use std::fs;

use redb::{ReadableTable, TableDefinition};

use super::files::MetaKind;
use super::{GcReport, Store, StoreError};
use crate::chunking::{ChunkId, ContentId, Hash32, Manifest};

/// Content id → `u32 manifest length | manifest | shard ids (32 bytes each)`.
pub(super) const HELD: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("held");
/// Content id → the placement document (opaque here; the node layer writes JSON).
pub(super) const PLACEMENTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("placements");

pub(super) fn encode_held(manifest: &[u8], shards: &[ChunkId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + manifest.len() + 32 * shards.len());
    out.extend_from_slice(&(manifest.len() as u32).to_be_bytes());
    out.extend_from_slice(manifest);
    for id in shards {
        out.extend_from_slice(&id.0);
    }
    out
}

pub(super) fn decode_held(bytes: &[u8]) -> Option<(&[u8], Vec<ChunkId>)> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let manifest = bytes.get(4..4 + len)?;
    let rest = bytes.get(4 + len..)?;
    if rest.len() % 32 != 0 {
        return None;
    }
    let ids = rest
        .chunks_exact(32)
        .map(|c| Hash32(c.try_into().expect("32 bytes")))
        .collect();
    Some((manifest, ids))
}

impl Store {
    /// Keeps `shards` (verified against their ids) for content `content`, with its manifest
    /// (verified against the content id). Holding the same shard twice changes nothing.
    pub fn hold(
        &mut self,
        content: &ContentId,
        manifest: &[u8],
        shards: &[(ChunkId, Vec<u8>)],
    ) -> Result<usize, StoreError> {
        if !content.matches(manifest) {
            return Err(StoreError::Invalid(format!(
                "the manifest sent for {content} does not hash to it"
            )));
        }
        Manifest::decode(manifest)?;
        if let Some((id, _)) = shards.iter().find(|(id, bytes)| !id.matches(bytes)) {
            return Err(StoreError::Invalid(format!(
                "shard {id} does not match its id"
            )));
        }
        for (id, bytes) in shards {
            self.write_blob(id, bytes)?;
        }
        self.sync_data()?;
        let txn = self.db.begin_write()?;
        let added = {
            let mut held = txn.open_table(HELD)?;
            let mut ids: Vec<ChunkId> = match held.get(&content.0)? {
                Some(v) => decode_held(v.value())
                    .map(|(_, ids)| ids)
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            let mut blobs = txn.open_table(super::BLOBS)?;
            let mut added = 0;
            for (id, bytes) in shards {
                if ids.contains(id) {
                    continue;
                }
                ids.push(*id);
                added += 1;
                let refs = blobs.get(&id.0)?.map_or(0, |v| v.value().0);
                blobs.insert(&id.0, (refs + 1, bytes.len() as u64))?;
            }
            let record = encode_held(manifest, &ids);
            // The file first (see `recover`), so a rebuilt index keeps these shards.
            self.keep_meta(MetaKind::Held, content, &record)?;
            self.sync_data()?;
            held.insert(&content.0, record.as_slice())?;
            added
        };
        txn.commit()?;
        Ok(added)
    }

    /// The manifest of content this node holds shards of, if it does.
    pub fn held_manifest(&self, content: &ContentId) -> Result<Option<Manifest>, StoreError> {
        let txn = self.db.begin_read()?;
        let held = txn.open_table(HELD)?;
        let Some(v) = held.get(&content.0)? else {
            return Ok(None);
        };
        match decode_held(v.value()) {
            Some((manifest, _)) => Ok(Some(Manifest::decode(manifest)?)),
            None => Ok(None),
        }
    }

    /// Drops the shards held for `content`; blobs no one else refers to are deleted.
    pub fn release_held(&mut self, content: &ContentId) -> Result<GcReport, StoreError> {
        let txn = self.db.begin_write()?;
        let mut freed = Vec::new();
        {
            let mut held = txn.open_table(HELD)?;
            let ids = match held.remove(&content.0)? {
                Some(v) => decode_held(v.value())
                    .map(|(_, ids)| ids)
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            let mut blobs = txn.open_table(super::BLOBS)?;
            for id in ids {
                let (refs, len) = blobs.get(&id.0)?.map_or((0, 0), |v| v.value());
                if refs <= 1 {
                    blobs.remove(&id.0)?;
                    freed.push((id, len));
                } else {
                    blobs.insert(&id.0, (refs - 1, len))?;
                }
            }
            txn.open_table(PLACEMENTS)?.remove(&content.0)?;
        }
        txn.commit()?;
        self.forget_meta(MetaKind::Held, content);
        self.forget_meta(MetaKind::Placement, content);
        let mut report = GcReport::default();
        for (id, len) in freed {
            if fs::remove_file(self.blob_path(&id)).is_ok() {
                report.orphans_removed += 1;
                report.bytes_freed += len;
            }
        }
        Ok(report)
    }

    /// Records where `content`'s shards were placed.
    pub fn set_placement(
        &mut self,
        content: &ContentId,
        placement: &[u8],
    ) -> Result<(), StoreError> {
        self.keep_meta(MetaKind::Placement, content, placement)?;
        self.sync_data()?;
        let txn = self.db.begin_write()?;
        txn.open_table(PLACEMENTS)?.insert(&content.0, placement)?;
        txn.commit()?;
        Ok(())
    }

    /// Where `content`'s shards were placed, if they were.
    pub fn placement(&self, content: &ContentId) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PLACEMENTS)?;
        let value = table.get(&content.0)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// A blob's verified bytes (a chunk or a shard), if this store has it intact.
    pub fn blob(&self, id: &ChunkId) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_verified(id)
    }

    /// A blob a peer asked for by id: not having it is a miss, not a disk fault, so it is not
    /// logged (any client could fill the log otherwise).
    pub fn blob_if_present(&self, id: &ChunkId) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_blob(id, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunking::ErasurePolicy;
    use crate::store::PutOptions;

    #[test]
    fn held_shards_survive_gc_and_are_freed_on_release() {
        let source_dir = tempfile::tempdir().unwrap();
        let mut source = Store::open(source_dir.path()).unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let report = source
            .put_reader(
                &data[..],
                PutOptions {
                    erasure: Some(ErasurePolicy { k: 2, m: 1 }),
                    kind: None,
                },
            )
            .unwrap();
        let manifest = source.manifest(&report.id).unwrap();
        let shard_ids: Vec<ChunkId> = manifest
            .chunks
            .iter()
            .map(|c| c.shards.as_ref().unwrap().ids[2])
            .collect();
        let shards: Vec<(ChunkId, Vec<u8>)> = shard_ids
            .iter()
            .map(|id| (*id, source.blob(id).unwrap().unwrap()))
            .collect();

        let dir = tempfile::tempdir().unwrap();
        let mut holder = Store::open(dir.path()).unwrap();
        let encoded = manifest.encode();
        assert!(
            holder.hold(&report.id, &encoded[1..], &shards).is_err(),
            "a manifest that does not match is refused"
        );
        let mut bad = shards.clone();
        bad[0].1[0] ^= 1;
        assert!(
            holder.hold(&report.id, &encoded, &bad).is_err(),
            "a corrupt shard is refused"
        );
        assert_eq!(
            holder.hold(&report.id, &encoded, &shards).unwrap(),
            shards.len()
        );
        assert_eq!(holder.hold(&report.id, &encoded, &shards).unwrap(), 0);
        assert_eq!(holder.gc().unwrap().orphans_removed, 0);
        assert_eq!(holder.held_manifest(&report.id).unwrap().unwrap(), manifest);
        assert!(holder.blob(&shard_ids[0]).unwrap().is_some());
        holder.set_placement(&report.id, b"{}").unwrap();
        let freed = holder.release_held(&report.id).unwrap();
        assert_eq!(freed.orphans_removed as usize, shards.len());
        assert!(holder.blob(&shard_ids[0]).unwrap().is_none());
        assert!(holder.placement(&report.id).unwrap().is_none());
    }
}
