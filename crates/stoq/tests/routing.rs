//! The routing layer against hand-computed answers, brute force on random graphs, and bad input.

use proptest::prelude::*;
use stoq::routing::{
    synthetic, CostWeights, LinkSpec, MetricsUpdate, NodeSpec, Objective, RoutingError,
    RoutingMatrix, Topology,
};

fn node(id: &str) -> NodeSpec {
    NodeSpec {
        id: id.into(),
        region: String::new(),
        lat: None,
        lon: None,
        load: 0.0,
    }
}

fn link(a: &str, b: &str, rtt_ms: f64, bandwidth_mbps: f64) -> LinkSpec {
    LinkSpec {
        from: a.into(),
        to: b.into(),
        rtt_ms,
        bandwidth_mbps,
        loss: 0.0,
    }
}

/// a–b–d is fastest (20 ms), a–c–d widest (1000 Mbit/s), a–d direct is slow and narrow.
fn diamond() -> RoutingMatrix {
    diamond_with(CostWeights::default())
}

fn diamond_with(weights: CostWeights) -> RoutingMatrix {
    let mut m = RoutingMatrix::new(weights);
    for id in ["a", "b", "c", "d"] {
        m.add_node(node(id)).unwrap();
    }
    m.add_link(link("a", "b", 10.0, 100.0)).unwrap();
    m.add_link(link("b", "d", 10.0, 100.0)).unwrap();
    m.add_link(link("a", "c", 5.0, 1000.0)).unwrap();
    m.add_link(link("c", "d", 30.0, 1000.0)).unwrap();
    m.add_link(link("a", "d", 50.0, 10.0)).unwrap();
    m
}

#[test]
fn latency_objective_sums_rtts_and_uses_relays_when_they_win() {
    let r = diamond()
        .find_optimal_route("a", "d", Objective::Latency)
        .unwrap();
    assert_eq!(r.path, ["a", "b", "d"]);
    assert_eq!(r.latency_ms, 20.0);
    assert_eq!(r.cost, 20.0);
    assert_eq!(r.bottleneck_mbps, 100.0);
    assert_eq!(r.hops(), 2);
}

#[test]
fn bandwidth_objective_maximises_the_bottleneck_then_minimises_latency() {
    let mut m = diamond();
    let r = m
        .find_optimal_route("a", "d", Objective::Bandwidth)
        .unwrap();
    assert_eq!(r.path, ["a", "c", "d"]);
    assert_eq!((r.bottleneck_mbps, r.latency_ms), (1000.0, 35.0));
    assert_eq!(r.cost, 8.0);
    // An equally wide but faster way wins the tie.
    m.add_node(node("e")).unwrap();
    m.add_link(link("a", "e", 1.0, 1000.0)).unwrap();
    m.add_link(link("e", "d", 1.0, 1000.0)).unwrap();
    let r = m
        .find_optimal_route("a", "d", Objective::Bandwidth)
        .unwrap();
    assert_eq!(r.path, ["a", "e", "d"]);
    assert_eq!(r.latency_ms, 2.0);
}

#[test]
fn balanced_objective_matches_the_documented_cost() {
    // Per link: rtt + 8000/bandwidth + 1 (hop); no load, loss, geography or history here.
    let m = diamond();
    let r = m.find_optimal_route("a", "d", Objective::Balanced).unwrap();
    assert_eq!(r.path, ["a", "c", "d"]);
    assert!(
        (r.cost - ((5.0 + 8.0 + 1.0) + (30.0 + 8.0 + 1.0))).abs() < 1e-9,
        "{}",
        r.cost
    );
}

#[test]
fn balanced_objective_steers_around_a_loaded_node_and_a_failing_one() {
    let mut m = diamond();
    for _ in 0..200 {
        m.update_metrics(MetricsUpdate::Load {
            node: "c".into(),
            load: 0.95,
        })
        .unwrap();
    }
    // Entering c now costs about 10·0.95/0.05 = 190 more: a–b–d (182) wins.
    let r = m.find_optimal_route("a", "d", Objective::Balanced).unwrap();
    assert_eq!(r.path, ["a", "b", "d"]);

    // c failed 20 of 20 times: its history term is 100·20/21 = 95.2, so a–c–d costs 148.2,
    // still under a–b–d's 182; with the history weight at 2 it costs 243.5 and loses.
    let fail_c = |m: &mut RoutingMatrix| {
        for _ in 0..20 {
            m.update_metrics(MetricsUpdate::Outcome {
                node: "c".into(),
                success: false,
                throughput_mbps: None,
            })
            .unwrap();
        }
    };
    let mut m = diamond();
    fail_c(&mut m);
    let r = m.find_optimal_route("a", "d", Objective::Balanced).unwrap();
    assert_eq!(r.path, ["a", "c", "d"]);
    assert!(
        (r.cost - (53.0 + 100.0 * 20.0 / 21.0)).abs() < 1e-9,
        "{}",
        r.cost
    );
    let mut wary = diamond_with(CostWeights {
        history: 2.0,
        ..CostWeights::default()
    });
    fail_c(&mut wary);
    assert_eq!(
        wary.find_optimal_route("a", "d", Objective::Balanced)
            .unwrap()
            .path,
        ["a", "b", "d"]
    );
}

#[test]
fn weights_change_the_balanced_choice() {
    let only_bandwidth = CostWeights {
        latency: 0.0,
        loss: 0.0,
        load: 0.0,
        geo: 0.0,
        hop: 0.0,
        history: 0.0,
        bandwidth: 1.0,
    };
    let mut m = RoutingMatrix::new(only_bandwidth);
    for id in ["a", "b", "d"] {
        m.add_node(node(id)).unwrap();
    }
    m.add_link(link("a", "d", 1.0, 10.0)).unwrap();
    m.add_link(link("a", "b", 100.0, 10_000.0)).unwrap();
    m.add_link(link("b", "d", 100.0, 10_000.0)).unwrap();
    assert_eq!(
        m.find_optimal_route("a", "d", Objective::Balanced)
            .unwrap()
            .path,
        ["a", "b", "d"]
    );
    assert_eq!(
        m.find_optimal_route("a", "d", Objective::Latency)
            .unwrap()
            .path,
        ["a", "d"]
    );
}

#[test]
fn alternatives_are_node_disjoint_then_link_disjoint() {
    let m = diamond();
    let alt = m
        .alternative_routes("a", "d", Objective::Latency, 5)
        .unwrap();
    let paths: Vec<_> = alt.routes.iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [vec!["a", "b", "d"], vec!["a", "c", "d"], vec!["a", "d"]]
    );
    assert_eq!(alt.node_disjoint, 3);
    // A graph with one relay everything must cross: one disjoint route, then link-disjoint ones.
    let mut m = RoutingMatrix::new(CostWeights::default());
    for id in ["s", "x", "y", "hub", "p", "q", "t"] {
        m.add_node(node(id)).unwrap();
    }
    for (a, b, rtt) in [
        ("s", "x", 1.0),
        ("s", "y", 2.0),
        ("x", "hub", 1.0),
        ("y", "hub", 2.0),
        ("hub", "p", 1.0),
        ("hub", "q", 2.0),
        ("p", "t", 1.0),
        ("q", "t", 2.0),
    ] {
        m.add_link(link(a, b, rtt, 100.0)).unwrap();
    }
    let alt = m
        .alternative_routes("s", "t", Objective::Latency, 3)
        .unwrap();
    assert_eq!(alt.node_disjoint, 1);
    assert_eq!(alt.routes.len(), 2);
    assert_eq!(alt.routes[0].path, ["s", "x", "hub", "p", "t"]);
    assert_eq!(alt.routes[1].path, ["s", "y", "hub", "q", "t"]);
}

#[test]
fn alternatives_on_a_realistic_graph_share_no_relay() {
    let s = synthetic::realistic(400, 4, 11);
    let (from, to) = (
        s.topology.nodes[0].id.clone(),
        s.topology.nodes[399].id.clone(),
    );
    let m = s.topology.into_matrix(CostWeights::default()).unwrap();
    let alt = m
        .alternative_routes(&from, &to, Objective::Balanced, 3)
        .unwrap();
    assert!(alt.node_disjoint >= 2, "{alt:?}");
    let relays = |r: &stoq::routing::Route| r.path[1..r.path.len() - 1].to_vec();
    for i in 0..alt.node_disjoint {
        for j in (i + 1)..alt.node_disjoint {
            let (a, b) = (relays(&alt.routes[i]), relays(&alt.routes[j]));
            assert!(
                a.iter().all(|n| !b.contains(n)),
                "routes {i} and {j} share a relay"
            );
        }
    }
    assert!(
        alt.routes.windows(2).all(|w| w[0].cost <= w[1].cost + 1e-9),
        "best first"
    );
}

#[test]
fn disconnected_graphs_and_unknown_nodes_are_errors_not_panics() {
    let mut m = diamond();
    m.add_node(node("island")).unwrap();
    assert!(matches!(
        m.find_optimal_route("a", "island", Objective::Latency),
        Err(RoutingError::NoRoute { .. })
    ));
    assert!(matches!(
        m.alternative_routes("a", "island", Objective::Bandwidth, 3),
        Err(RoutingError::NoRoute { .. })
    ));
    assert!(matches!(
        m.find_optimal_route("a", "nowhere", Objective::Balanced),
        Err(RoutingError::UnknownNode(_))
    ));
    let same = m.find_optimal_route("a", "a", Objective::Latency).unwrap();
    assert_eq!((same.path.len(), same.latency_ms), (1, 0.0));
}

#[test]
fn bad_metrics_are_refused_and_change_nothing() {
    let mut m = diamond();
    let before = m.find_optimal_route("a", "d", Objective::Latency).unwrap();
    for update in [
        MetricsUpdate::Link {
            from: "a".into(),
            to: "b".into(),
            rtt_ms: Some(f64::NAN),
            bandwidth_mbps: None,
            loss: None,
        },
        MetricsUpdate::Link {
            from: "a".into(),
            to: "b".into(),
            rtt_ms: Some(-1.0),
            bandwidth_mbps: None,
            loss: None,
        },
        MetricsUpdate::Link {
            from: "a".into(),
            to: "b".into(),
            rtt_ms: Some(1.0),
            bandwidth_mbps: Some(0.0),
            loss: None,
        },
        MetricsUpdate::Link {
            from: "a".into(),
            to: "b".into(),
            rtt_ms: Some(1.0),
            bandwidth_mbps: None,
            loss: Some(1.5),
        },
        MetricsUpdate::Link {
            from: "a".into(),
            to: "b".into(),
            rtt_ms: Some(1e9),
            bandwidth_mbps: None,
            loss: None,
        },
        MetricsUpdate::Load {
            node: "a".into(),
            load: f64::INFINITY,
        },
        MetricsUpdate::Outcome {
            node: "a".into(),
            success: true,
            throughput_mbps: Some(-5.0),
        },
    ] {
        assert!(matches!(
            m.update_metrics(update),
            Err(RoutingError::Invalid { .. })
        ));
    }
    assert!(matches!(
        m.update_metrics(MetricsUpdate::Link {
            from: "b".into(),
            to: "c".into(),
            rtt_ms: Some(1.0),
            bandwidth_mbps: None,
            loss: None
        }),
        Err(RoutingError::UnknownLink { .. })
    ));
    assert_eq!(
        m.find_optimal_route("a", "d", Objective::Latency).unwrap(),
        before
    );
}

#[test]
fn updates_are_smoothed_an_outlier_is_ignored_and_a_lasting_change_reroutes() {
    let mut m = diamond();
    let sample = |m: &mut RoutingMatrix, rtt: f64| {
        m.update_metrics(MetricsUpdate::Link {
            from: "b".into(),
            to: "d".into(),
            rtt_ms: Some(rtt),
            bandwidth_mbps: None,
            loss: None,
        })
        .unwrap()
    };
    for _ in 0..20 {
        sample(&mut m, 10.0);
    }
    sample(&mut m, 5000.0);
    assert_eq!(
        m.find_optimal_route("a", "d", Objective::Latency)
            .unwrap()
            .path,
        ["a", "b", "d"]
    );
    assert!(m.link_rtt_ms("b", "d").unwrap() < 12.0);
    for _ in 0..100 {
        sample(&mut m, 60.0);
    }
    assert_eq!(
        m.find_optimal_route("a", "d", Objective::Latency)
            .unwrap()
            .path,
        ["a", "c", "d"]
    );
}

#[test]
fn bad_topology_files_name_the_problem() {
    let cases = [
        (
            r#"{"nodes":[{"id":"a"},{"id":"a"}],"links":[]}"#,
            "duplicate node id \"a\"",
        ),
        (
            r#"{"nodes":[{"id":"a"}],"links":[{"from":"a","to":"zz","rtt_ms":1,"bandwidth_mbps":1}]}"#,
            "unknown node \"zz\"",
        ),
        (
            r#"{"nodes":[{"id":"a"},{"id":"b"}],"links":[{"from":"a","to":"b","rtt_ms":-4,"bandwidth_mbps":1}]}"#,
            "rtt_ms = -4",
        ),
        (
            r#"{"nodes":[{"id":"a"},{"id":"b"}],"links":[{"from":"a","to":"b","rtt_ms":1,"bandwidth_mbps":0}]}"#,
            "bandwidth_mbps = 0",
        ),
        (
            r#"{"nodes":[{"id":"a","lat":95,"lon":0}],"links":[]}"#,
            "lat/lon",
        ),
        (r#"{"nodes":[{"id":"a","load":2}],"links":[]}"#, "load = 2"),
        (
            r#"{"nodes":[{"id":"a"},{"id":"b"}],"links":[{"from":"a","to":"b","rtt_ms":1,"bandwidth_mbps":1},{"from":"b","to":"a","rtt_ms":1,"bandwidth_mbps":1}]}"#,
            "duplicate link",
        ),
        (
            r#"{"nodes":[{"id":"a"}],"links":[{"from":"a","to":"a","rtt_ms":1,"bandwidth_mbps":1}]}"#,
            "to itself",
        ),
        (
            r#"{"nodes":[{"id":"a","rtt":1}],"links":[]}"#,
            "unknown field `rtt`",
        ),
        (
            r#"{"nodes":[{"id":"a"}],"links":[{"from":"a","to":"b","rtt_ms":"fast","bandwidth_mbps":1}]}"#,
            "line 1",
        ),
        ("not json", "line 1"),
    ];
    for (text, expected) in cases {
        let err = Topology::from_json(text)
            .and_then(|t| t.into_matrix(CostWeights::default()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(expected),
            "{text}\n  gave: {err}\n  wanted: {expected}"
        );
    }
}

#[test]
fn the_predictor_learns_a_realistic_topology() {
    let s = synthetic::realistic(300, 4, 5);
    let topology = s.topology.clone();
    let mut m = topology
        .clone()
        .into_matrix(CostWeights::default())
        .unwrap();
    // Besides its links, each node measures 16 random peers (as probes would).
    let mut rng = synthetic::SplitMix::new(99);
    let mut measured = std::collections::HashSet::new();
    let mut samples = Vec::new();
    for i in 0..s.len() {
        for _ in 0..16 {
            let j = rng.below(s.len());
            if i != j {
                measured.insert((i.min(j), i.max(j)));
                samples.push((i, j));
            }
        }
    }
    let mut predictor = m.predictor().clone();
    for _ in 0..40 {
        for &(i, j) in &samples {
            predictor.observe(i, j, s.true_rtt_ms(i, j));
        }
    }
    // Held-out pairs, judged against the noise floor (true positions, average inflation) and
    // against a naive predictor (the mean of all samples).
    let mean_sample = samples
        .iter()
        .map(|&(i, j)| s.true_rtt_ms(i, j))
        .sum::<f64>()
        / samples.len() as f64;
    let (mut vivaldi, mut floor, mut naive) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3000 {
        let (i, j) = (rng.below(s.len()), rng.below(s.len()));
        if i == j || measured.contains(&(i.min(j), i.max(j))) {
            continue;
        }
        let truth = s.true_rtt_ms(i, j);
        vivaldi.push((predictor.predict(i, j).unwrap() - truth).abs() / truth);
        floor.push((s.oracle_rtt_ms(i, j) - truth).abs() / truth);
        naive.push((mean_sample - truth).abs() / truth);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (vivaldi, floor, naive) = (median(&mut vivaldi), median(&mut floor), median(&mut naive));
    assert!(
        vivaldi < 1.6 * floor,
        "vivaldi {vivaldi} vs noise floor {floor}"
    );
    assert!(vivaldi < naive / 2.0, "vivaldi {vivaldi} vs naive {naive}");
    // The matrix itself answers unmeasured pairs with its own (link-trained) predictor.
    let a = &topology.nodes[0].id;
    let b = topology
        .nodes
        .iter()
        .map(|n| &n.id)
        .find(|b| *b != a && m.link_rtt_ms(a, b).is_none())
        .unwrap();
    assert!(m.latency_ms(a, b).unwrap().is_finite());
    m.update_metrics(MetricsUpdate::Load {
        node: a.clone(),
        load: 0.5,
    })
    .unwrap();
}

/// A link as (end, end, rtt_ms, bandwidth_mbps).
type Edge = (usize, usize, f64, f64);
/// Node count, links, and each node's (lat, lon).
type Graph = (usize, Vec<Edge>, Vec<(f64, f64)>);

/// Random graph: n nodes with positions, m random links.
fn random_graph() -> impl Strategy<Value = Graph> {
    (2usize..8).prop_flat_map(|n| {
        (
            Just(n),
            proptest::collection::vec((0..n, 0..n, 0.1f64..100.0, 1.0f64..1000.0), 0..20),
            proptest::collection::vec((-60.0f64..60.0, -170.0f64..170.0), n),
        )
    })
}

fn build(n: usize, links: &[Edge], geo: &[(f64, f64)]) -> (RoutingMatrix, Vec<Edge>) {
    let mut m = RoutingMatrix::new(CostWeights::default());
    for (i, (lat, lon)) in geo.iter().enumerate().take(n) {
        m.add_node(NodeSpec {
            id: i.to_string(),
            region: String::new(),
            lat: Some(*lat),
            lon: Some(*lon),
            load: 0.0,
        })
        .unwrap();
    }
    let mut kept = Vec::new();
    for &(a, b, rtt, bw) in links {
        if m.add_link(link(&a.to_string(), &b.to_string(), rtt, bw))
            .is_ok()
        {
            kept.push((a, b, rtt, bw));
        }
    }
    (m, kept)
}

/// Every simple path from 0 to n-1 as (bottleneck, latency).
fn all_paths(n: usize, links: &[Edge]) -> Vec<(f64, f64)> {
    fn walk(
        at: usize,
        goal: usize,
        seen: &mut Vec<bool>,
        links: &[Edge],
        width: f64,
        lat: f64,
        out: &mut Vec<(f64, f64)>,
    ) {
        if at == goal {
            out.push((width, lat));
            return;
        }
        for &(a, b, rtt, bw) in links {
            let next = if a == at {
                b
            } else if b == at {
                a
            } else {
                continue;
            };
            if !seen[next] {
                seen[next] = true;
                walk(next, goal, seen, links, width.min(bw), lat + rtt, out);
                seen[next] = false;
            }
        }
    }
    let mut seen = vec![false; n];
    seen[0] = true;
    let mut out = Vec::new();
    walk(0, n - 1, &mut seen, links, f64::INFINITY, 0.0, &mut out);
    out
}

proptest! {
    #[test]
    fn latency_objective_equals_brute_force_shortest_path((n, links, geo) in random_graph()) {
        let (m, kept) = build(n, &links, &geo);
        let paths = all_paths(n, &kept);
        let found = m.find_optimal_route("0", &(n - 1).to_string(), Objective::Latency);
        match paths.iter().map(|p| p.1).min_by(f64::total_cmp) {
            None => {
                let no_route = matches!(found, Err(RoutingError::NoRoute { .. }));
                prop_assert!(no_route);
            }
            Some(best) => prop_assert!((found.unwrap().latency_ms - best).abs() < 1e-6),
        }
    }

    #[test]
    fn bandwidth_objective_equals_brute_force_widest_path((n, links, geo) in random_graph()) {
        let (m, kept) = build(n, &links, &geo);
        let paths = all_paths(n, &kept);
        let found = m.find_optimal_route("0", &(n - 1).to_string(), Objective::Bandwidth);
        let widest = paths.iter().map(|p| p.0).max_by(f64::total_cmp);
        match widest {
            None => prop_assert!(found.is_err()),
            Some(w) => {
                let fastest_widest = paths.iter().filter(|p| p.0 == w).map(|p| p.1).min_by(f64::total_cmp).unwrap();
                let r = found.unwrap();
                prop_assert_eq!(r.bottleneck_mbps, w);
                prop_assert!((r.latency_ms - fastest_widest).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn balanced_routes_are_real_paths_and_never_cost_more_than_the_latency_route((n, links, geo) in random_graph()) {
        let (m, _) = build(n, &links, &geo);
        let dst = (n - 1).to_string();
        if let Ok(balanced) = m.find_optimal_route("0", &dst, Objective::Balanced) {
            let latency_route = m.find_optimal_route("0", &dst, Objective::Latency).unwrap();
            // No alternative the search finds costs less than the route it called best.
            let alt = m.alternative_routes("0", &dst, Objective::Balanced, 8).unwrap();
            prop_assert!(alt.routes.iter().all(|r| r.cost >= balanced.cost - 1e-9));
            prop_assert!(balanced.path.first().unwrap() == "0" && balanced.path.last().unwrap() == &dst);
            for w in balanced.path.windows(2) {
                prop_assert!(m.link_rtt_ms(&w[0], &w[1]).is_some(), "path uses a missing link");
            }
            prop_assert!(latency_route.latency_ms <= balanced.latency_ms + 1e-9);
        }
    }
}

/// Plain Dijkstra over explicit directed costs, as a reference for the bidirectional A*.
fn reference_costs(n: usize, src: usize, cost: &dyn Fn(usize, usize) -> Option<f64>) -> Vec<f64> {
    let mut dist = vec![f64::INFINITY; n];
    let mut done = vec![false; n];
    dist[src] = 0.0;
    for _ in 0..n {
        let Some(u) = (0..n)
            .filter(|&v| !done[v] && dist[v].is_finite())
            .min_by(|&a, &b| dist[a].total_cmp(&dist[b]))
        else {
            break;
        };
        done[u] = true;
        for v in 0..n {
            if let Some(c) = cost(u, v) {
                dist[v] = dist[v].min(dist[u] + c);
            }
        }
    }
    dist
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_objective_matches_a_reference_dijkstra_on_larger_graphs(
        seed in any::<u64>(),
        n in 20usize..120,
        extra in 0usize..200,
    ) {
        let mut rng = synthetic::SplitMix::new(seed);
        let mut topology = Topology::default();
        for i in 0..n {
            topology.nodes.push(NodeSpec {
                id: i.to_string(),
                region: String::new(),
                lat: Some(rng.unit() * 120.0 - 60.0),
                lon: Some(rng.unit() * 340.0 - 170.0),
                load: rng.unit() * 0.9,
            });
        }
        let mut edges = std::collections::HashMap::new();
        for i in 1..n {
            edges.insert((rng.below(i), i), ());
        }
        for _ in 0..extra {
            let (a, b) = (rng.below(n), rng.below(n));
            if a != b && !edges.contains_key(&(b, a)) {
                edges.insert((a, b), ());
            }
        }
        let mut table = vec![vec![None; n]; n];
        for &(a, b) in edges.keys() {
            let spec = LinkSpec {
                from: a.to_string(),
                to: b.to_string(),
                rtt_ms: 0.5 + rng.unit() * 200.0,
                bandwidth_mbps: [100.0, 1000.0, 10_000.0][rng.below(3)],
                loss: rng.unit() * 0.01,
            };
            table[a][b] = Some(spec.clone());
            table[b][a] = Some(spec.clone());
            topology.links.push(spec);
        }
        let weights = CostWeights::default();
        let m = topology.clone().into_matrix(weights).unwrap();
        let geo = |i: usize| stoq::routing::GeoPoint::new(topology.nodes[i].lat.unwrap(), topology.nodes[i].lon.unwrap()).unwrap();
        let latency = |u: usize, v: usize| table[u][v].as_ref().map(|l| l.rtt_ms);
        let balanced = |u: usize, v: usize| {
            table[u][v].as_ref().map(|l| {
                stoq::routing::cost::link_part(&weights, l.rtt_ms, l.bandwidth_mbps, l.loss, geo(u).distance_km(&geo(v)))
                    + stoq::routing::cost::node_part(&weights, topology.nodes[v].load, 0.0)
            })
        };
        let src = rng.below(n);
        let by_latency = reference_costs(n, src, &latency);
        let by_balanced = reference_costs(n, src, &balanced);
        for dst in 0..n {
            let (s, d) = (src.to_string(), dst.to_string());
            let r = m.find_optimal_route(&s, &d, Objective::Latency).unwrap();
            prop_assert!((r.latency_ms - by_latency[dst]).abs() < 1e-6 * by_latency[dst].max(1.0), "latency {} vs {}", r.latency_ms, by_latency[dst]);
            let r = m.find_optimal_route(&s, &d, Objective::Balanced).unwrap();
            prop_assert!((r.cost - by_balanced[dst]).abs() < 1e-6 * by_balanced[dst].max(1.0), "balanced {} vs {}", r.cost, by_balanced[dst]);
            // Bandwidth: the reference keeps only links at least as wide as the route's bottleneck.
            let r = m.find_optimal_route(&s, &d, Objective::Bandwidth).unwrap();
            let wide = |u: usize, v: usize| table[u][v].as_ref().filter(|l| l.bandwidth_mbps >= r.bottleneck_mbps).map(|l| l.rtt_ms);
            let wider = |u: usize, v: usize| table[u][v].as_ref().filter(|l| l.bandwidth_mbps > r.bottleneck_mbps).map(|l| l.rtt_ms);
            if dst != src {
                prop_assert!(reference_costs(n, src, &wider)[dst].is_infinite(), "a wider path exists");
            }
            prop_assert!((r.latency_ms - reference_costs(n, src, &wide)[dst]).abs() < 1e-6 * r.latency_ms.max(1.0));
        }
    }
}
