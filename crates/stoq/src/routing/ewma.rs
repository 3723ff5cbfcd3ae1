//! Smoothing of noisy measurements that one wild sample cannot drag around.

/// An exponentially weighted moving average that resists outliers.
///
/// Like TCP's RTT estimator (RFC 6298) it tracks a mean and a mean deviation, with gains 1/8 and
/// 1/4. Unlike it, each sample is first clamped ("winsorised") to `mean ± 4·deviation` (plus 1 %
/// of the mean, so a perfectly steady series still admits small changes): a single absurd
/// sample moves the mean by at most half a deviation, while a lasting change still wins, because
/// every clamped sample widens the deviation and the band follows. `floor` is the narrowest
/// band, in the measurement's unit, so a series that starts at 0 (loss, say) can still move.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RobustEwma {
    mean: f64,
    deviation: f64,
    floor: f64,
    samples: u32,
}

const GAIN: f64 = 1.0 / 8.0;
const DEVIATION_GAIN: f64 = 1.0 / 4.0;
const BAND: f64 = 4.0;

impl RobustEwma {
    /// Starts from a first sample (deviation = half of it, as RFC 6298 does for RTT), with
    /// `floor` as the narrowest clamping band.
    pub fn new(first: f64, floor: f64) -> Self {
        RobustEwma {
            mean: first,
            deviation: first.abs() / 2.0,
            floor,
            samples: 1,
        }
    }

    /// Folds in a sample; returns the value actually used after clamping.
    pub fn update(&mut self, sample: f64) -> f64 {
        let band = BAND * self.deviation + (0.01 * self.mean.abs()).max(self.floor);
        let used = sample.clamp(self.mean - band, self.mean + band);
        self.deviation += DEVIATION_GAIN * ((self.mean - used).abs() - self.deviation);
        self.mean += GAIN * (used - self.mean);
        self.samples = self.samples.saturating_add(1);
        used
    }

    /// The smoothed value.
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// The smoothed mean deviation.
    pub fn deviation(&self) -> f64 {
        self.deviation
    }

    /// How many samples went in.
    pub fn samples(&self) -> u32 {
        self.samples
    }
}

/// A plain exponentially weighted moving average: `value += gain · (sample − value)`, the
/// first sample taken as it is. For rates and loads, where an outlier is real news.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ewma {
    gain: f64,
    value: Option<f64>,
}

impl Ewma {
    /// An average that gives each new sample weight `gain` (0 to 1).
    pub fn new(gain: f64) -> Self {
        Ewma {
            gain: gain.clamp(0.0, 1.0),
            value: None,
        }
    }

    /// Starts from `value` as if it had been the first sample.
    pub fn starting_at(gain: f64, value: f64) -> Self {
        Ewma {
            value: Some(value),
            ..Ewma::new(gain)
        }
    }

    /// Folds in a sample; returns the new average.
    pub fn update(&mut self, sample: f64) -> f64 {
        let next = match self.value {
            None => sample,
            Some(v) => v + self.gain * (sample - v),
        };
        self.value = Some(next);
        next
    }

    /// The average, if any sample went in.
    pub fn value(&self) -> Option<f64> {
        self.value
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_plain_average_starts_at_its_first_sample_and_follows_with_its_gain() {
        let mut e = super::Ewma::new(0.2);
        assert_eq!(e.value(), None);
        assert_eq!(e.update(10.0), 10.0);
        assert!((e.update(20.0) - 12.0).abs() < 1e-9);
        assert!((super::Ewma::starting_at(0.3, 0.0).update(1.0) - 0.3).abs() < 1e-9);
    }

    use super::*;

    #[test]
    fn a_single_outlier_barely_moves_the_mean() {
        let mut e = RobustEwma::new(10.0, 0.05);
        for _ in 0..50 {
            e.update(10.0 + 0.1);
        }
        let before = e.mean();
        e.update(10_000.0);
        assert!((e.mean() - before).abs() < 1.0, "moved to {}", e.mean());
    }

    #[test]
    fn a_lasting_change_is_followed() {
        let mut e = RobustEwma::new(10.0, 0.05);
        for _ in 0..50 {
            e.update(10.0);
        }
        for _ in 0..200 {
            e.update(50.0);
        }
        assert!((e.mean() - 50.0).abs() < 1.0, "stuck at {}", e.mean());
        assert_eq!(e.samples(), 251);
    }

    #[test]
    fn a_series_starting_at_zero_can_rise() {
        let mut e = RobustEwma::new(0.0, 0.005);
        for _ in 0..300 {
            e.update(0.2);
        }
        assert!((e.mean() - 0.2).abs() < 0.01, "{}", e.mean());
    }

    #[test]
    fn a_steady_series_converges_to_its_value() {
        let mut e = RobustEwma::new(100.0, 0.05);
        for i in 0..500 {
            e.update(if i % 2 == 0 { 90.0 } else { 110.0 });
        }
        assert!((e.mean() - 100.0).abs() < 3.0, "{}", e.mean());
        assert!(
            e.deviation() > 5.0 && e.deviation() < 15.0,
            "{}",
            e.deviation()
        );
    }
}
