//! Nearest-edge selection: geography, measured RTT, load and health.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use crate::routing::GeoPoint;

/// An edge as the registry knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeNode {
    /// Node id.
    pub id: String,
    /// Region name.
    pub region: String,
    /// Position, if known.
    pub geo: Option<GeoPoint>,
    /// Load, 0 (idle) to 1 (saturated).
    pub load: f64,
    /// Unhealthy edges are never chosen.
    pub healthy: bool,
}

/// Where a client is.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientLocation {
    /// Latitude and longitude.
    Geo(GeoPoint),
    /// A region name.
    Region(String),
    /// An address, located through the operator's [`PrefixTable`].
    Address(Ipv6Addr),
}

/// Why no edge could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdgeError {
    /// No healthy edge is registered.
    #[error("no healthy edge is registered")]
    NoEdge,
    /// An address no prefix of the table covers.
    #[error("no prefix in the table covers {0}; give the client's position or region")]
    UnknownAddress(Ipv6Addr),
    /// A load outside 0..=1 or a duplicate id.
    #[error("invalid edge {0}")]
    Invalid(String),
}

/// An operator-supplied table from IPv6 prefixes to a region and position; the longest
/// matching prefix wins.
#[derive(Debug, Clone, Default)]
pub struct PrefixTable {
    /// (prefix length) → (masked prefix → location)
    entries: BTreeMap<u8, Vec<(u128, String, Option<GeoPoint>)>>,
}

impl PrefixTable {
    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.values().all(Vec::is_empty)
    }

    /// Adds `prefix/len` → region (and position).
    pub fn insert(&mut self, prefix: Ipv6Addr, len: u8, region: &str, geo: Option<GeoPoint>) {
        let len = len.min(128);
        let masked = u128::from(prefix) & mask(len);
        self.entries
            .entry(len)
            .or_default()
            .push((masked, region.to_owned(), geo));
    }

    /// The region and position of the longest prefix covering `addr`.
    pub fn lookup(&self, addr: Ipv6Addr) -> Option<(&str, Option<GeoPoint>)> {
        let bits = u128::from(addr);
        self.entries.iter().rev().find_map(|(len, list)| {
            list.iter()
                .find(|(p, _, _)| bits & mask(*len) == *p)
                .map(|(_, region, geo)| (region.as_str(), *geo))
        })
    }
}

fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

/// Edge selection as a host application sees it; [`EdgeRegistry`] is the implementation.
pub trait EdgeNetwork: Send + Sync {
    /// Adds or replaces an edge.
    fn register_edge(&mut self, edge: EdgeNode) -> Result<(), EdgeError>;
    /// Forgets an edge; returns whether it was known.
    fn remove_edge(&mut self, id: &str) -> bool;
    /// The edge a client at `client` should use.
    fn find_nearest(&self, client: &ClientLocation) -> Result<EdgeNode, EdgeError>;
}

/// The known edges, their measured RTTs to client areas, and the prefix table.
#[derive(Debug, Clone, Default)]
pub struct EdgeRegistry {
    edges: BTreeMap<String, EdgeNode>,
    prefixes: PrefixTable,
    /// Measured RTT (ms) from an edge to clients of an area: (edge id, area) → ms.
    measured: BTreeMap<(String, String), f64>,
}

/// The area a client is in, as measured RTTs are kept: its 1°×1° cell for a position, its
/// region otherwise (for an address, the region the prefix table gives).
pub fn area_of(client: &ClientLocation, prefixes: &PrefixTable) -> Option<String> {
    match client {
        ClientLocation::Geo(g) => Some(format!("cell:{:.0},{:.0}", g.lat.floor(), g.lon.floor())),
        ClientLocation::Region(r) => Some(format!("region:{r}")),
        ClientLocation::Address(a) => prefixes.lookup(*a).map(|(r, _)| format!("region:{r}")),
    }
}

/// Candidates whose estimated latency is within this factor of the best are compared by load
/// ("the better of two close candidates"), so one edge is not piled with every nearby client.
const CLOSE_ENOUGH: f64 = 1.5;
/// A latency estimate for an edge whose distance cannot be known (ms).
const UNKNOWN_DISTANCE_MS: f64 = 200.0;

impl EdgeRegistry {
    /// An empty registry using `prefixes` to locate clients by address.
    pub fn new(prefixes: PrefixTable) -> Self {
        EdgeRegistry {
            edges: BTreeMap::new(),
            prefixes,
            measured: BTreeMap::new(),
        }
    }

    /// Records a measured RTT from `edge` to clients in `area` (see [`area_of`]); it replaces
    /// the geographic estimate for that pair. Non-finite or negative values are ignored.
    pub fn record_rtt(&mut self, edge: &str, area: &str, rtt_ms: f64) {
        if rtt_ms.is_finite() && rtt_ms >= 0.0 {
            self.measured
                .insert((edge.to_owned(), area.to_owned()), rtt_ms);
        }
    }

    /// Updates an edge's load and health (from membership); returns whether it was known.
    pub fn update(&mut self, id: &str, load: f64, healthy: bool) -> bool {
        match self.edges.get_mut(id) {
            Some(e) => {
                e.load = load.clamp(0.0, 1.0);
                e.healthy = healthy;
                true
            }
            None => false,
        }
    }

    /// Estimated RTT from the client to an edge, in ms: the fibre floor over the great-circle
    /// distance with a typical path inflation of 1.5, or region match when positions are
    /// unknown.
    fn estimate_ms(edge: &EdgeNode, geo: Option<&GeoPoint>, region: Option<&str>) -> f64 {
        match (geo, &edge.geo) {
            (Some(c), Some(e)) => {
                2.0 * c.distance_km(e) / crate::routing::FIBRE_KM_PER_MS * 1.5 + 1.0
            }
            _ if region == Some(edge.region.as_str()) => 10.0,
            _ => UNKNOWN_DISTANCE_MS,
        }
    }
}

impl EdgeNetwork for EdgeRegistry {
    fn register_edge(&mut self, edge: EdgeNode) -> Result<(), EdgeError> {
        if !(0.0..=1.0).contains(&edge.load) || !edge.load.is_finite() {
            return Err(EdgeError::Invalid(format!(
                "{}: load {} outside 0..=1",
                edge.id, edge.load
            )));
        }
        self.edges.insert(edge.id.clone(), edge);
        Ok(())
    }

    fn remove_edge(&mut self, id: &str) -> bool {
        self.edges.remove(id).is_some()
    }

    /// Ranks healthy edges by estimated latency; among those within 1.5× of the best, picks
    /// the one with the lowest `latency × (1 + 2·load)`, so a much less loaded edge nearby wins
    /// over a saturated nearest one.
    fn find_nearest(&self, client: &ClientLocation) -> Result<EdgeNode, EdgeError> {
        self.rank(client)?
            .into_iter()
            .next()
            .ok_or(EdgeError::NoEdge)
    }
}

impl EdgeRegistry {
    /// Every healthy edge for `client`, the [`EdgeNetwork::find_nearest`] choice first, then the
    /// others by estimated latency: the order a client falls back in when an edge fails.
    pub fn rank(&self, client: &ClientLocation) -> Result<Vec<EdgeNode>, EdgeError> {
        let (geo, region) = match client {
            ClientLocation::Geo(g) => (Some(*g), None),
            ClientLocation::Region(r) => (None, Some(r.clone())),
            ClientLocation::Address(a) => {
                let (r, g) = self
                    .prefixes
                    .lookup(*a)
                    .ok_or(EdgeError::UnknownAddress(*a))?;
                (g, Some(r.to_owned()))
            }
        };
        let area = area_of(client, &self.prefixes);
        let mut ranked: Vec<(f64, &EdgeNode)> = self
            .edges
            .values()
            .filter(|e| e.healthy)
            .map(|e| {
                let measured = area
                    .as_ref()
                    .and_then(|a| self.measured.get(&(e.id.clone(), a.clone())));
                let ms = measured
                    .copied()
                    .unwrap_or_else(|| Self::estimate_ms(e, geo.as_ref(), region.as_deref()));
                (ms, e)
            })
            .collect();
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
        let best = ranked.first().ok_or(EdgeError::NoEdge)?.0;
        let chosen = ranked
            .iter()
            .enumerate()
            .take_while(|(_, (ms, _))| *ms <= best * CLOSE_ENOUGH)
            .min_by(|(_, a), (_, b)| {
                let cost = |(ms, e): &(f64, &EdgeNode)| ms * (1.0 + 2.0 * e.load);
                cost(a)
                    .total_cmp(&cost(b))
                    .then_with(|| a.1.id.cmp(&b.1.id))
            })
            .map(|(i, _)| i)
            .unwrap_or(0);
        let first = ranked.remove(chosen);
        Ok(std::iter::once(first)
            .chain(ranked)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(id: &str, region: &str, lat: f64, lon: f64, load: f64) -> EdgeNode {
        EdgeNode {
            id: id.into(),
            region: region.into(),
            geo: GeoPoint::new(lat, lon),
            load,
            healthy: true,
        }
    }

    fn registry() -> EdgeRegistry {
        let mut prefixes = PrefixTable::default();
        prefixes.insert(
            "2001:db8::".parse().unwrap(),
            32,
            "eu-central",
            GeoPoint::new(48.1, 11.6),
        );
        prefixes.insert(
            "2001:db8:ff::".parse().unwrap(),
            48,
            "us-east",
            GeoPoint::new(40.7, -74.0),
        );
        let mut r = EdgeRegistry::new(prefixes);
        for e in [
            edge("fra", "eu-central", 50.1, 8.7, 0.2),
            edge("lon", "eu-west", 51.5, -0.1, 0.2),
            edge("nyc", "us-east", 40.7, -74.0, 0.2),
            edge("sin", "ap-southeast", 1.35, 103.8, 0.2),
        ] {
            r.register_edge(e).unwrap();
        }
        r
    }

    fn near(r: &EdgeRegistry, lat: f64, lon: f64) -> String {
        r.find_nearest(&ClientLocation::Geo(GeoPoint::new(lat, lon).unwrap()))
            .unwrap()
            .id
    }

    #[test]
    fn a_measured_rtt_overrides_the_geographic_estimate_for_its_area() {
        let mut reg = EdgeRegistry::new(PrefixTable::default());
        for (id, lat, lon) in [("near", 48.0, 2.0), ("far", 40.7, -74.0)] {
            reg.register_edge(EdgeNode {
                id: id.into(),
                region: String::new(),
                geo: GeoPoint::new(lat, lon),
                load: 0.0,
                healthy: true,
            })
            .unwrap();
        }
        let paris = ClientLocation::Geo(GeoPoint::new(48.86, 2.35).unwrap());
        assert_eq!(reg.find_nearest(&paris).unwrap().id, "near");
        // The near edge's path to Paris turns out to be bad; the far one measured well.
        let area = area_of(&paris, &PrefixTable::default()).unwrap();
        assert_eq!(area, "cell:48,2");
        reg.record_rtt("near", &area, 180.0);
        reg.record_rtt("far", &area, 20.0);
        assert_eq!(reg.find_nearest(&paris).unwrap().id, "far");
        // Another area still uses geography.
        let lyon = ClientLocation::Geo(GeoPoint::new(45.76, 4.84).unwrap());
        assert_eq!(reg.find_nearest(&lyon).unwrap().id, "near");
        reg.record_rtt("near", &area, f64::NAN);
        assert_eq!(
            reg.find_nearest(&paris).unwrap().id,
            "far",
            "NaN is ignored"
        );
    }

    #[test]
    fn clients_get_the_geographically_nearest_edge() {
        let r = registry();
        assert_eq!(near(&r, 48.9, 2.4), "lon"); // Paris: London is a little nearer than Frankfurt
        assert_eq!(near(&r, 52.5, 13.4), "fra"); // Berlin
        assert_eq!(near(&r, 42.4, -71.1), "nyc"); // Boston
        assert_eq!(near(&r, -33.9, 151.2), "sin"); // Sydney
    }

    #[test]
    fn regions_and_address_prefixes_locate_clients() {
        let r = registry();
        assert_eq!(
            r.find_nearest(&ClientLocation::Region("us-east".into()))
                .unwrap()
                .id,
            "nyc"
        );
        // The longest prefix wins: 2001:db8:ff::/48 is New York inside Munich's /32.
        let munich: Ipv6Addr = "2001:db8:1::7".parse().unwrap();
        let newyork: Ipv6Addr = "2001:db8:ff::7".parse().unwrap();
        assert_eq!(
            r.find_nearest(&ClientLocation::Address(munich)).unwrap().id,
            "fra"
        );
        assert_eq!(
            r.find_nearest(&ClientLocation::Address(newyork))
                .unwrap()
                .id,
            "nyc"
        );
        let unknown: Ipv6Addr = "2001:db9::1".parse().unwrap();
        assert_eq!(
            r.find_nearest(&ClientLocation::Address(unknown)),
            Err(EdgeError::UnknownAddress(unknown))
        );
    }

    #[test]
    fn an_overloaded_nearest_edge_yields_to_a_close_idle_one_but_not_to_a_far_one() {
        let mut r = registry();
        // East of Brussels: Frankfurt is a bit nearer than London.
        assert_eq!(near(&r, 50.85, 5.0), "fra");
        r.update("fra", 0.95, true);
        // Frankfurt saturated: London is close enough and idle.
        assert_eq!(near(&r, 50.85, 5.0), "lon");
        // Berlin: London is twice as far as Frankfurt, too far to trade for load.
        assert_eq!(near(&r, 52.5, 13.4), "fra");
        // Boston: New York saturated, but every other edge is far: still New York.
        r.update("nyc", 0.95, true);
        assert_eq!(near(&r, 42.4, -71.1), "nyc");
    }

    #[test]
    fn unhealthy_and_removed_edges_are_never_chosen() {
        let mut r = registry();
        r.update("nyc", 0.1, false);
        assert_ne!(near(&r, 42.4, -71.1), "nyc");
        assert!(r.remove_edge("lon"));
        assert_ne!(near(&r, 51.5, -0.1), "lon");
        let empty = EdgeRegistry::default();
        assert_eq!(
            empty.find_nearest(&ClientLocation::Region("x".into())),
            Err(EdgeError::NoEdge)
        );
        assert!(r
            .clone()
            .register_edge(edge("bad", "x", 0.0, 0.0, 1.5))
            .is_err());
    }
}
