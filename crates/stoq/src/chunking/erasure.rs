//! Erasure coding of one chunk with reed-solomon-simd: `k` data shards and `m` parity shards,
//! any `k` of which rebuild the chunk.

use std::borrow::Cow;
use std::str::FromStr;

/// Erasure coding of an object: every chunk is cut into `k` data shards and `m` parity shards;
/// any `k` of the `k + m` rebuild it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErasurePolicy {
    /// Data shards per chunk.
    pub k: u8,
    /// Parity shards per chunk.
    pub m: u8,
}

impl FromStr for ErasurePolicy {
    type Err = String;
    /// Parses `K+M`, e.g. `4+2`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (k, m) = s
            .split_once('+')
            .ok_or_else(|| format!("{s:?} is not K+M (e.g. 4+2)"))?;
        let k: u8 = k
            .trim()
            .parse()
            .map_err(|_| format!("K in {s:?} is not a number from 1 to 64"))?;
        let m: u8 = m
            .trim()
            .parse()
            .map_err(|_| format!("M in {s:?} is not a number from 1 to 64"))?;
        let policy = ErasurePolicy { k, m };
        policy.validate()?;
        Ok(policy)
    }
}

impl ErasurePolicy {
    /// Both counts from 1 to 64.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=64).contains(&self.k) || !(1..=64).contains(&self.m) {
            return Err(format!(
                "erasure {}+{}: K and M must each be 1 to 64",
                self.k, self.m
            ));
        }
        Ok(())
    }

    /// Shards per chunk.
    pub fn total(&self) -> usize {
        usize::from(self.k) + usize::from(self.m)
    }
}

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

/// The `k` data shards of `chunk`: slices of it, copied only where zero padding is needed.
pub fn data_shards(chunk: &[u8], k: u8) -> Vec<Cow<'_, [u8]>> {
    let size = shard_len(chunk.len(), k);
    (0..usize::from(k))
        .map(|i| {
            let start = (i * size).min(chunk.len());
            let end = ((i + 1) * size).min(chunk.len());
            if end - start == size {
                Cow::Borrowed(&chunk[start..end])
            } else {
                let mut padded = chunk[start..end].to_vec();
                padded.resize(size, 0);
                Cow::Owned(padded)
            }
        })
        .collect()
}

/// The `m` parity shards of some data shards.
pub fn parity(data: &[Cow<'_, [u8]>], policy: ErasurePolicy) -> Result<Vec<Vec<u8>>, ErasureError> {
    reed_solomon_simd::encode(usize::from(policy.k), usize::from(policy.m), data)
        .map_err(|e| ErasureError::Codec(e.to_string()))
}

/// All `k + m` shards of `chunk`, as owned buffers (data shards first).
pub fn encode(chunk: &[u8], policy: ErasurePolicy) -> Result<Vec<Vec<u8>>, ErasureError> {
    let data = data_shards(chunk, policy.k);
    let parity = parity(&data, policy)?;
    Ok(data
        .into_iter()
        .map(Cow::into_owned)
        .chain(parity)
        .collect())
}

/// Rebuilds a chunk of `len` bytes from whichever shards are present (`None` = missing);
/// shards are indexed data first, then parity.
pub fn decode<S: AsRef<[u8]>>(
    shards: &[Option<S>],
    policy: ErasurePolicy,
    len: usize,
) -> Result<Vec<u8>, ErasureError> {
    let k = usize::from(policy.k);
    let have = shards.iter().filter(|s| s.is_some()).count();
    if have < k || shards.len() < k {
        return Err(ErasureError::NotEnoughShards { have, need: k });
    }
    let present = |range: std::ops::Range<usize>| {
        shards[range.clone()]
            .iter()
            .enumerate()
            .filter_map(move |(i, s)| s.as_ref().map(|s| (i, s.as_ref())))
    };
    let restored = if shards[..k].iter().any(Option::is_none) {
        reed_solomon_simd::decode(
            k,
            usize::from(policy.m),
            present(0..k),
            present(k..shards.len()),
        )
        .map_err(|e| ErasureError::Codec(e.to_string()))?
    } else {
        Default::default()
    };
    let mut chunk = Vec::with_capacity(k * shard_len(len, policy.k));
    for (i, shard) in shards[..k].iter().enumerate() {
        let piece = match shard {
            Some(s) => s.as_ref(),
            None => restored
                .get(&i)
                .map(Vec::as_slice)
                .ok_or_else(|| ErasureError::Codec("codec left a shard missing".into()))?,
        };
        chunk.extend_from_slice(piece);
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
