//! `stoq bench erasure`: STOQ's erasure coding of whole chunks against reed-solomon-simd
//! called directly on the same shards, encode and decode, in one run.

use std::borrow::Cow;
use std::time::Instant;

use anyhow::Result;
use stoq::chunking::{erasure, ErasurePolicy};

use super::{gb_per_s, machine, median, noise};
use crate::cli::ErasureBenchArgs;
use crate::usage::usage;

/// Runs the benchmark and prints the figures.
pub fn run(args: ErasureBenchArgs) -> Result<()> {
    let policy: ErasurePolicy = args.erasure.parse().map_err(usage)?;
    if args.size == 0 || args.chunk == 0 || args.rounds == 0 {
        return Err(usage("--size, --chunk and --rounds must be at least 1"));
    }
    let (k, m) = (usize::from(policy.k), usize::from(policy.m));
    let data = noise(args.size, 11);
    let chunks: Vec<&[u8]> = data.chunks(args.chunk).collect();
    // The baseline gets its shards ready-made, outside the clock.
    let split: Vec<Vec<Vec<u8>>> = chunks
        .iter()
        .map(|c| {
            erasure::data_shards(c, policy.k)
                .into_iter()
                .map(Cow::into_owned)
                .collect()
        })
        .collect();
    let coded: Vec<Vec<Vec<u8>>> = chunks
        .iter()
        .map(|c| erasure::encode(c, policy))
        .collect::<Result<_, _>>()?;
    let (mut enc, mut enc_base, mut dec, mut dec_base) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        let t = Instant::now();
        for s in &split {
            std::hint::black_box(reed_solomon_simd::encode(k, m, s)?);
        }
        enc_base.push(gb_per_s(data.len(), t.elapsed()));

        let t = Instant::now();
        for c in &chunks {
            let shards = erasure::data_shards(c, policy.k);
            std::hint::black_box(erasure::parity(&shards, policy)?);
        }
        enc.push(gb_per_s(data.len(), t.elapsed()));

        // Lose the first min(m, k) data shards of every chunk.
        let lost = m.min(k);
        let t = Instant::now();
        for shards in &coded {
            let originals = shards[lost..k]
                .iter()
                .enumerate()
                .map(|(i, s)| (i + lost, s));
            let recovery = shards[k..].iter().enumerate();
            std::hint::black_box(reed_solomon_simd::decode(k, m, originals, recovery)?);
        }
        dec_base.push(gb_per_s(data.len(), t.elapsed()));

        let t = Instant::now();
        for (shards, c) in coded.iter().zip(&chunks) {
            let partial: Vec<Option<&[u8]>> = shards
                .iter()
                .enumerate()
                .map(|(i, s)| (i >= lost).then_some(s.as_slice()))
                .collect();
            std::hint::black_box(erasure::decode(&partial, policy, c.len())?);
        }
        dec.push(gb_per_s(data.len(), t.elapsed()));
    }
    let [enc, enc_base, dec, dec_base] = [enc, enc_base, dec, dec_base].map(|v| median(&v));
    let report = serde_json::json!({
        "name": "erasure",
        "size_bytes": args.size,
        "chunk_bytes": args.chunk,
        "k": k,
        "m": m,
        "rounds": args.rounds,
        "gb_per_s": { "encode": enc, "decode": dec, "rs_encode": enc_base, "rs_decode": dec_base },
        "baseline": "reed-solomon-simd",
        "ratio": { "encode": enc / enc_base, "decode": dec / dec_base },
        "machine": machine(),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "erasure {k}+{m}, {} MiB in {} KiB chunks, medians of {} rounds (GB/s of data):",
            args.size >> 20,
            args.chunk >> 10,
            args.rounds
        );
        println!(
            "  encode  stoq {enc:6.2}   reed-solomon-simd {enc_base:6.2}   ratio {:.3}",
            enc / enc_base
        );
        println!("  decode  stoq {dec:6.2}   reed-solomon-simd {dec_base:6.2}   ratio {:.3}   ({} data shards lost per chunk)", dec / dec_base, m.min(k));
    }
    Ok(())
}
