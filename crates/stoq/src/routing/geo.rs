//! Positions on the Earth and the distances between them.

use serde::{Deserialize, Serialize};

/// Mean Earth radius in km.
const EARTH_RADIUS_KM: f64 = 6371.0;

/// Light in optical fibre covers about 200 km per millisecond (refractive index ~1.5), so a
/// round trip over `d` km takes at least `d / 100` ms.
pub const FIBRE_KM_PER_MS: f64 = 200.0;

/// A point given by latitude and longitude in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    /// Latitude, -90 to 90.
    pub lat: f64,
    /// Longitude, -180 to 180.
    pub lon: f64,
}

impl GeoPoint {
    /// A point, if both coordinates are in range.
    pub fn new(lat: f64, lon: f64) -> Option<Self> {
        ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon))
            .then_some(GeoPoint { lat, lon })
    }

    /// Great-circle distance in km (haversine).
    pub fn distance_km(&self, other: &GeoPoint) -> f64 {
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let dp = p2 - p1;
        let dl = (other.lon - self.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
    }

    /// Parses `LAT,LON` as given on a command line.
    pub fn parse(text: &str) -> Option<Self> {
        let (lat, lon) = text.split_once(',')?;
        Self::new(lat.trim().parse().ok()?, lon.trim().parse().ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frankfurt_to_new_york_is_about_6200_km() {
        let fra = GeoPoint::new(50.11, 8.68).unwrap();
        let nyc = GeoPoint::new(40.71, -74.01).unwrap();
        let d = fra.distance_km(&nyc);
        assert!((d - 6200.0).abs() < 50.0, "{d}");
        assert_eq!(fra.distance_km(&fra), 0.0);
    }

    #[test]
    fn out_of_range_and_malformed_points_are_refused() {
        assert!(GeoPoint::new(91.0, 0.0).is_none());
        assert!(GeoPoint::new(0.0, -181.0).is_none());
        assert!(GeoPoint::parse("50.1,8.7").is_some());
        assert!(GeoPoint::parse("50.1").is_none());
        assert!(GeoPoint::parse("north,east").is_none());
    }
}
