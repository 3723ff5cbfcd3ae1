//! Erasure coding of one chunk with reed-solomon-simd: `k` data shards and `m` parity shards,
//! any `k` of which rebuild the chunk.

use super::manifest::ErasurePolicy;

/// Why a chunk could not be encoded or rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErasureError {
    /// Fewer than k shards are available.
    #[error("only {have} of the {need} shards needed to rebuild the chunk are available")]
    NotEnoughShards {
        /// Shards at hand.
        have: usize,
        /// Shards needed (k).
        need: usize,
    },
    /// The codec refused the input.
    #[error("erasure codec: {0}")]
    Codec(String),
}

/// Bytes per shard for a chunk of `len` bytes split in `k`: rounded up, and even (the codec
/// works on 16-bit symbols), at least 2.
pub fn shard_len(len: usize, k: u8) -> usize {
    let per = len.div_ceil(usize::from(k.max(1)));
    (per + (per & 1)).max(2)
}

/// Cuts `chunk` into `k` data shards (zero-padded) and computes `m` parity shards.
pub fn encode(chunk: &[u8], policy: ErasurePolicy) -> Result<Vec<Vec<u8>>, ErasureError> {
    let k = usize::from(policy.k);
    let size = shard_len(chunk.len(), policy.k);
    let mut shards: Vec<Vec<u8>> = (0..k)
        .map(|i| {
            let start = (i * size).min(chunk.len());
            let end = ((i + 1) * size).min(chunk.len());
            let mut shard = chunk[start..end].to_vec();
            shard.resize(size, 0);
            shard
        })
        .collect();
    let parity = reed_solomon_simd::encode(k, usize::from(policy.m), &shards)
        .map_err(|e| ErasureError::Codec(e.to_string()))?;
    shards.extend(parity);
    Ok(shards)
}

/// Rebuilds a chunk of `len` bytes from whichever shards are present (`None` = missing);
/// shards are indexed data first, then parity.
pub fn decode(
    shards: &[Option<Vec<u8>>],
    policy: ErasurePolicy,
    len: usize,
) -> Result<Vec<u8>, ErasureError> {
    let k = usize::from(policy.k);
    let have = shards.iter().filter(|s| s.is_some()).count();
    if have < k {
        return Err(ErasureError::NotEnoughShards { have, need: k });
    }
    let mut data: Vec<Option<Vec<u8>>> = shards[..k].to_vec();
    if data.iter().any(Option::is_none) {
        let originals = data
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)));
        let recovery = shards[k..]
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)));
        let restored = reed_solomon_simd::decode(k, usize::from(policy.m), originals, recovery)
            .map_err(|e| ErasureError::Codec(e.to_string()))?;
        for (i, shard) in restored {
            data[i] = Some(shard);
        }
    }
    let mut chunk = Vec::with_capacity(k * shard_len(len, policy.k));
    for shard in data {
        chunk.extend_from_slice(
            &shard.ok_or_else(|| ErasureError::Codec("codec left a shard missing".into()))?,
        );
    }
    chunk.truncate(len);
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
        (0u32..(1 << n))
            .filter(|m| m.count_ones() as usize == k)
            .map(|m| (0..n).filter(|i| m & (1 << i) != 0).collect())
            .collect()
    }

    #[test]
    fn every_k_subset_of_a_small_k_plus_m_rebuilds_the_chunk() {
        let policy = ErasurePolicy { k: 3, m: 2 };
        for len in [1usize, 2, 5, 999, 4096] {
            let chunk: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let shards = encode(&chunk, policy).unwrap();
            assert_eq!(shards.len(), 5);
            for keep in subsets(5, 3) {
                let partial: Vec<Option<Vec<u8>>> = (0..5)
                    .map(|i| keep.contains(&i).then(|| shards[i].clone()))
                    .collect();
                assert_eq!(
                    decode(&partial, policy, len).unwrap(),
                    chunk,
                    "len {len}, kept {keep:?}"
                );
            }
            for keep in subsets(5, 2) {
                let partial: Vec<Option<Vec<u8>>> = (0..5)
                    .map(|i| keep.contains(&i).then(|| shards[i].clone()))
                    .collect();
                assert!(matches!(
                    decode(&partial, policy, len),
                    Err(ErasureError::NotEnoughShards { .. })
                ));
            }
        }
    }

    #[test]
    fn overhead_is_k_plus_m_over_k() {
        let policy = ErasurePolicy { k: 4, m: 2 };
        let shards = encode(&vec![1u8; 4096], policy).unwrap();
        let stored: usize = shards.iter().map(Vec::len).sum();
        assert_eq!(stored, 4096 * 6 / 4);
    }
}
