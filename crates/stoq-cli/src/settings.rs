//! How flags and files become the configuration a command runs with.

use anyhow::Result;
use stoq::StoqConfig;

use crate::cli::{address, ConfigArgs, ServeArgs};
use crate::usage::usage;

/// Defaults, then the file, then flags; then validation. Every failure is a usage error.
pub fn serve_config(args: &ServeArgs) -> Result<StoqConfig> {
    let mut config = match &args.config {
        Some(path) => StoqConfig::load(path).map_err(usage)?,
        None => StoqConfig::default(),
    };
    if let Some(listen) = &args.listen {
        config.transport.listen = address(listen)?;
    }
    if let Some(dir) = &args.data_dir {
        config.node.data_dir = dir.clone();
    }
    if let Some(role) = &args.role {
        config.node.role = role.parse().map_err(usage)?;
    }
    if let Some(region) = &args.region {
        config.node.region = region.clone();
    }
    if let Some(geo) = &args.geo {
        config.node.geo = Some(geo.clone());
    }
    if !args.seeds.is_empty() {
        config.node.seeds = args.seeds.clone();
    }
    if let Some(metrics) = &args.metrics {
        config.node.metrics = Some(address(metrics)?);
    }
    if let Some(file) = &args.token_file {
        config.node.admin_token_file = Some(file.clone());
    }
    if let Some(http) = &args.http {
        config.http.listen = Some(address(http)?);
    }
    if args.http_cert.is_some() {
        config.http.cert = args.http_cert.clone();
        config.http.key = args.http_key.clone();
    }
    if let Some(capacity) = args.capacity_mbps {
        config.node.capacity_mbps = capacity;
    }
    config.validate().map_err(usage)?;
    Ok(config)
}

/// `stoq config`: prints the chosen configuration.
pub fn print_config(args: ConfigArgs) -> Result<()> {
    let config = match args.file {
        Some(path) => StoqConfig::load(&path).map_err(usage)?,
        None => args.preset.config(),
    };
    print!("{}", config.to_toml());
    Ok(())
}
