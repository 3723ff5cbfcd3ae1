//! Where log lines and the node's notices go: standard error, as text or JSON lines.
//!
//! Notices (`stoq serve`'s "created the token file", "shutting down", ...) are plain lines for a
//! person in text mode; in JSON mode they are events like every other line, so a log shipper
//! reading standard error never meets a line that is not JSON.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use stoq::config::{LogFormat, StoqConfig};
use tracing_subscriber::filter::dynamic_filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::cli::{Cli, Command};

/// The target notices are logged under in JSON mode (always enabled at INFO).
const NOTICE_TARGET: &str = "stoq_notice";

/// The format in effect (a reload may change it): false text, true JSON.
static JSON: AtomicBool = AtomicBool::new(false);

/// Changes the level filter of the running process (set by [`start`]).
static LEVEL: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Starts logging to standard error at the level `STOQ_LOG` names (else, for `serve`, the
/// config's `node.log_level`, else `warn`), in the format the command asks for. Text and JSON
/// writers both stand ready, one of them enabled, so a reload can switch between them.
pub fn start(cli: &Cli) {
    let config = serve_config_file(cli);
    let format = format_for(cli.log_format.as_deref(), config.as_ref());
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
    let level = config.as_ref().map_or("", |c| c.node.log_level.as_str());
    let filter = filter_for(level).unwrap_or_else(|_| filter_for("").expect("the default parses"));
    let (filter, handle) = reload::Layer::new(filter);
    let _ = LEVEL.set(handle);
    // Colour only for a person at a terminal; a log file or pipe gets plain text.
    let text = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(dynamic_filter_fn(|_, _| !JSON.load(Ordering::Relaxed)));
    let json = tracing_subscriber::fmt::layer()
        .json()
        .with_writer(std::io::stderr)
        .with_filter(dynamic_filter_fn(|_, _| JSON.load(Ordering::Relaxed)));
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .init();
}

/// The filter for `level` (tracing directives; empty = `warn`); `STOQ_LOG` wins when set.
/// Notices always pass.
fn filter_for(level: &str) -> Result<EnvFilter, String> {
    let filter = match EnvFilter::try_from_env("STOQ_LOG") {
        Ok(from_env) => from_env,
        Err(_) if level.is_empty() => EnvFilter::new("warn"),
        Err(_) => EnvFilter::try_new(level)
            .map_err(|e| format!("node.log_level {level:?} is not a log filter: {e}"))?,
    };
    Ok(filter.add_directive(
        format!("{NOTICE_TARGET}=info")
            .parse()
            .expect("a valid directive"),
    ))
}

/// Checks `config`'s log level (a usage error at start, a refused reload later).
pub fn check_level(config: &StoqConfig) -> Result<(), String> {
    filter_for(&config.node.log_level).map(|_| ())
}

/// Applies a reloaded config's log level and format (the format only when no `--log-format`
/// flag, `format_flag`, fixed it); what changed, for the reload's report.
pub fn reload(format_flag: Option<&str>, config: &StoqConfig) -> Result<Vec<&'static str>, String> {
    let mut changed = Vec::new();
    let filter = filter_for(&config.node.log_level)?;
    if let Some(handle) = LEVEL.get() {
        let before = handle.with_current(|f| f.to_string()).unwrap_or_default();
        if before != filter.to_string() {
            handle.reload(filter).map_err(|e| e.to_string())?;
            changed.push("node.log_level");
        }
    }
    let json = format_for(format_flag, Some(config)) == LogFormat::Json;
    if JSON.swap(json, Ordering::Relaxed) != json {
        tracing::callsite::rebuild_interest_cache();
        changed.push("node.log_format");
    }
    Ok(changed)
}

/// Tells the operator something: a `stoq: ...` line in text mode, an INFO event in JSON mode.
pub fn notice(message: &str) {
    match JSON.load(Ordering::Relaxed) {
        true => tracing::info!(target: NOTICE_TARGET, "{message}"),
        false => eprintln!("stoq: {message}"),
    }
}

/// Reports why the command failed: a `stoq: ...` line in text mode, an ERROR event in JSON
/// mode.
pub fn failure(message: &str) {
    match JSON.load(Ordering::Relaxed) {
        true => tracing::error!(target: NOTICE_TARGET, "{message}"),
        false => eprintln!("stoq: {message}"),
    }
}

/// The format asked for: the flag, else (for `serve`) the config file's, else text.
fn format_for(flag: Option<&str>, config: Option<&StoqConfig>) -> LogFormat {
    match flag {
        Some("json") => LogFormat::Json,
        Some(_) => LogFormat::Text,
        None => config.map_or(LogFormat::Text, |c| c.node.log_format),
    }
}

/// `stoq serve`'s config file, if it has one that loads (one that does not is reported by
/// `serve` itself; here it just means the defaults).
fn serve_config_file(cli: &Cli) -> Option<StoqConfig> {
    match &cli.command {
        Command::Serve(args) => args
            .config
            .as_deref()
            .and_then(|path| StoqConfig::load(path).ok()),
        _ => None,
    }
}
