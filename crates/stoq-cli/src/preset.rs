//! The built-in configurations `stoq config --preset` prints and benchmarks run with.

use clap::ValueEnum;
use stoq::StoqConfig;

/// Built-in configurations.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Preset {
    /// The defaults.
    Default,
    /// `StoqConfig::cdn_optimized()`.
    Cdn,
    /// `StoqConfig::high_performance()`.
    HighPerformance,
}

impl Preset {
    /// The preset's name as typed on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Default => "default",
            Preset::Cdn => "cdn",
            Preset::HighPerformance => "high-performance",
        }
    }

    /// The configuration the preset names.
    pub fn config(self) -> StoqConfig {
        match self {
            Preset::Default => StoqConfig::default(),
            Preset::Cdn => StoqConfig::cdn_optimized(),
            Preset::HighPerformance => StoqConfig::high_performance(),
        }
    }
}
