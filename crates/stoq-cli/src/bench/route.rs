//! `stoq bench route`: route computation on realistic topologies of 100 to 10,000 nodes,
//! against petgraph's Dijkstra on the same graph in the same run, plus memory per node and
//! the latency predictor's error on held-out pairs.

use std::collections::HashSet;
use std::time::Instant;

use anyhow::{ensure, Result};
use petgraph::graph::{NodeIndex, UnGraph};
use stoq::routing::synthetic::{self, SplitMix, Synthetic};
use stoq::routing::{CostWeights, Objective, Vivaldi};

use super::{machine, quantile};
use crate::cli::RouteBenchArgs;
use crate::usage::usage;

const SEED: u64 = 20261124;
const NEIGHBOURS: usize = 4;

/// Runs the benchmark and prints the figures (JSON with `--json`).
pub fn run(args: RouteBenchArgs) -> Result<()> {
    let sizes = if args.nodes.is_empty() {
        vec![100, 1000, 10_000]
    } else {
        args.nodes.clone()
    };
    if sizes.iter().any(|&n| n < 2) || args.queries == 0 {
        return Err(usage("--nodes must be at least 2 and --queries at least 1"));
    }
    let mut reports = Vec::new();
    for &n in &sizes {
        let report = measure_size(n, args.queries)?;
        if !args.json {
            print_size(&report);
        }
        reports.push(report);
    }
    let predictor = predictor_error(sizes.iter().copied().max().unwrap_or(1000).min(2000));
    let largest = reports.last().expect("at least one size");
    let p99_us = ["latency", "bandwidth", "balanced"]
        .iter()
        .map(|o| largest["p99_us"][o].as_f64().unwrap_or(f64::NAN))
        .fold(0.0, f64::max);
    let ratio = largest["p50_us"]["latency"].as_f64().unwrap_or(f64::NAN)
        / largest["p50_us"]["petgraph"].as_f64().unwrap_or(f64::NAN);
    let out = serde_json::json!({
        "name": "route",
        "sizes": reports,
        "p99_us": p99_us,
        "baseline": "petgraph_dijkstra",
        "ratio": { "petgraph": ratio },
        "predictor": predictor,
        "machine": machine(),
    });
    if args.json {
        println!("{out}");
    } else {
        println!(
            "worst p99 at {} nodes: {:.1} us (target < 1000 us); stoq/petgraph p50 time for the latency objective = {:.3}",
            largest["nodes"], p99_us, ratio
        );
        println!(
            "predictor (Vivaldi, {} nodes, {} peers each): median relative error {:.1} % on held-out pairs; \
             noise floor {:.1} %; naive mean {:.1} %",
            predictor["nodes"],
            predictor["peers_per_node"],
            predictor["median_error"].as_f64().unwrap_or(f64::NAN) * 100.0,
            predictor["floor_median_error"].as_f64().unwrap_or(f64::NAN) * 100.0,
            predictor["naive_median_error"].as_f64().unwrap_or(f64::NAN) * 100.0,
        );
    }
    Ok(())
}

fn measure_size(n: usize, queries: usize) -> Result<serde_json::Value> {
    let generated = synthetic::realistic(n, NEIGHBOURS, SEED);
    let links = generated.topology.links.len();
    let ids: Vec<String> = generated
        .topology
        .nodes
        .iter()
        .map(|x| x.id.clone())
        .collect();
    let graph = petgraph_of(&generated);
    let started = Instant::now();
    let matrix = generated.topology.into_matrix(CostWeights::default())?;
    let build_ms = started.elapsed().as_secs_f64() * 1e3;

    let mut rng = SplitMix::new(SEED ^ n as u64);
    let pairs: Vec<(usize, usize)> = (0..queries).map(|_| (rng.below(n), rng.below(n))).collect();
    let mut timings = serde_json::Map::new();
    let mut medians = serde_json::Map::new();
    let mut p99s = serde_json::Map::new();
    for objective in [
        Objective::Latency,
        Objective::Bandwidth,
        Objective::Balanced,
    ] {
        let mut us = Vec::with_capacity(queries);
        for &(s, d) in &pairs {
            let t = Instant::now();
            let route = matrix.find_optimal_route(&ids[s], &ids[d], objective)?;
            us.push(t.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(route);
        }
        let name = format!("{objective:?}").to_lowercase();
        medians.insert(name.clone(), quantile(&us, 0.5).into());
        p99s.insert(name.clone(), quantile(&us, 0.99).into());
        timings.insert(name, quantile(&us, 1.0).into());
    }
    let mut us = Vec::with_capacity(queries);
    for &(s, d) in &pairs {
        let (a, b) = (NodeIndex::new(s), NodeIndex::new(d));
        let t = Instant::now();
        let found = petgraph::algo::astar(&graph, a, |x| x == b, |e| *e.weight(), |_| 0.0);
        us.push(t.elapsed().as_secs_f64() * 1e6);
        // Same graph, same answer: the benchmark checks itself.
        let (cost, _) = found.expect("generated graphs are connected");
        let ours = matrix
            .find_optimal_route(&ids[s], &ids[d], Objective::Latency)?
            .latency_ms;
        ensure!(
            (cost - ours).abs() < 1e-6 * cost.max(1.0),
            "latency {ours} but petgraph {cost}"
        );
    }
    medians.insert("petgraph".into(), quantile(&us, 0.5).into());
    p99s.insert("petgraph".into(), quantile(&us, 0.99).into());
    timings.insert("petgraph".into(), quantile(&us, 1.0).into());
    Ok(serde_json::json!({
        "nodes": n,
        "links": links,
        "queries": queries,
        "build_ms": build_ms,
        "memory_bytes_per_node": matrix.memory_bytes() as f64 / n as f64,
        "p50_us": medians,
        "p99_us": p99s,
        "max_us": timings,
    }))
}

fn petgraph_of(s: &Synthetic) -> UnGraph<(), f64> {
    let index: std::collections::HashMap<&str, usize> = s
        .topology
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut g = UnGraph::with_capacity(s.topology.nodes.len(), s.topology.links.len());
    for _ in &s.topology.nodes {
        g.add_node(());
    }
    for l in &s.topology.links {
        g.add_edge(
            NodeIndex::new(index[l.from.as_str()]),
            NodeIndex::new(index[l.to.as_str()]),
            l.rtt_ms,
        );
    }
    g
}

fn print_size(r: &serde_json::Value) {
    let us = |k: &str, o: &str| r[k][o].as_f64().unwrap_or(f64::NAN);
    println!(
        "{:>6} nodes, {:>6} links: {:.0} B/node, built in {:.1} ms",
        r["nodes"],
        r["links"],
        r["memory_bytes_per_node"].as_f64().unwrap_or(0.0),
        r["build_ms"].as_f64().unwrap_or(0.0)
    );
    for o in ["latency", "bandwidth", "balanced", "petgraph"] {
        println!(
            "    {o:<10} p50 {:>8.1} us   p99 {:>8.1} us",
            us("p50_us", o),
            us("p99_us", o)
        );
    }
}

/// Trains Vivaldi on `peers` random measured peers per node and judges it on pairs never
/// measured, next to the noise floor of the topology and a naive predictor.
fn predictor_error(n: usize) -> serde_json::Value {
    const PEERS: usize = 32;
    const ROUNDS: usize = 40;
    let s = synthetic::realistic(n, NEIGHBOURS, SEED);
    let mut rng = SplitMix::new(SEED + 1);
    let mut measured = HashSet::new();
    let mut samples = Vec::new();
    for i in 0..n {
        for _ in 0..PEERS {
            let j = rng.below(n);
            if i != j {
                measured.insert((i.min(j), i.max(j)));
                samples.push((i, j));
            }
        }
    }
    let mut v = Vivaldi::default();
    let started = Instant::now();
    for _ in 0..ROUNDS {
        for &(i, j) in &samples {
            v.observe(i, j, s.true_rtt_ms(i, j));
        }
    }
    let train_ms = started.elapsed().as_secs_f64() * 1e3;
    let mean = samples
        .iter()
        .map(|&(i, j)| s.true_rtt_ms(i, j))
        .sum::<f64>()
        / samples.len().max(1) as f64;
    let (mut ours, mut floor, mut naive) = (Vec::new(), Vec::new(), Vec::new());
    while ours.len() < 5000 {
        let (i, j) = (rng.below(n), rng.below(n));
        if i == j || measured.contains(&(i.min(j), i.max(j))) {
            continue;
        }
        let truth = s.true_rtt_ms(i, j);
        ours.push((v.predict(i, j).unwrap_or(f64::NAN) - truth).abs() / truth);
        floor.push((s.oracle_rtt_ms(i, j) - truth).abs() / truth);
        naive.push((mean - truth).abs() / truth);
    }
    serde_json::json!({
        "method": "vivaldi-3d-height",
        "nodes": n,
        "peers_per_node": PEERS,
        "rounds": ROUNDS,
        "train_ms": train_ms,
        "held_out_pairs": ours.len(),
        "median_error": quantile(&ours, 0.5),
        "p90_error": quantile(&ours, 0.9),
        "floor_median_error": quantile(&floor, 0.5),
        "naive_median_error": quantile(&naive, 0.5),
        "published_vivaldi_median_error": 0.11,
    })
}
