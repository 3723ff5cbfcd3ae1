//! `stoq route`: routes over a topology file.

use anyhow::{Context, Result};
use stoq::routing::{Objective, Route, RoutingError, Topology};
use stoq::StoqConfig;

use crate::cli::RouteArgs;
use crate::usage::usage;

/// Loads the topology, computes the route (and alternatives) and prints them.
pub fn run(args: RouteArgs) -> Result<()> {
    let weights = match &args.config {
        Some(path) => StoqConfig::load(path).map_err(usage)?.routing.weights,
        None => Default::default(),
    };
    let text = std::fs::read_to_string(&args.topology).map_err(|e| {
        usage(format!(
            "cannot read topology {}: {e}",
            args.topology.display()
        ))
    })?;
    let matrix = Topology::from_json(&text)
        .and_then(|t| t.into_matrix(weights))
        .map_err(|e| usage(format!("{}: {e}", args.topology.display())))?;
    let objective = Objective::from(args.objective);
    let route = matrix
        .find_optimal_route(&args.from, &args.to, objective)
        .map_err(|e| match e {
            RoutingError::UnknownNode(_) => usage(e),
            other => anyhow::Error::from(other),
        })?;
    let alternatives = if args.alternatives > 0 {
        Some(
            matrix
                .alternative_routes(&args.from, &args.to, objective, args.alternatives)
                .context("alternatives")?,
        )
    } else {
        None
    };
    if args.json {
        let mut out = route_json(&route);
        out["from"] = args.from.clone().into();
        out["to"] = args.to.clone().into();
        if let Some(alt) = &alternatives {
            out["alternatives"] = alt.routes.iter().map(route_json).collect();
            out["node_disjoint"] = alt.node_disjoint.into();
        }
        println!("{out}");
    } else {
        println!("{}", describe(&route));
        if let Some(alt) = alternatives {
            for (i, r) in alt.routes.iter().enumerate() {
                let kind = if i < alt.node_disjoint {
                    "node-disjoint"
                } else {
                    "link-disjoint"
                };
                println!("  alternative {} ({kind}): {}", i + 1, describe(r));
            }
        }
    }
    Ok(())
}

fn route_json(r: &Route) -> serde_json::Value {
    serde_json::json!({
        "path": r.path,
        "latency_ms": r.latency_ms,
        "bottleneck_mbps": if r.bottleneck_mbps.is_finite() { serde_json::json!(r.bottleneck_mbps) } else { serde_json::Value::Null },
        "cost": r.cost,
        "hops": r.hops(),
        "objective": r.objective,
    })
}

fn describe(r: &Route) -> String {
    format!(
        "{}  latency {:.2} ms, bottleneck {} Mbit/s, cost {:.3} ({:?}, {} hop(s))",
        r.path.join(" -> "),
        r.latency_ms,
        if r.bottleneck_mbps.is_finite() {
            format!("{:.0}", r.bottleneck_mbps)
        } else {
            "unlimited".into()
        },
        r.cost,
        r.objective,
        r.hops()
    )
}
