//! Where log lines and the node's notices go: standard error, as text or JSON lines.
//!
//! Notices (`stoq serve`'s "created the token file", "shutting down", ...) are plain lines for a
//! person in text mode; in JSON mode they are events like every other line, so a log shipper
//! reading standard error never meets a line that is not JSON.

use std::sync::OnceLock;

use stoq::config::{LogFormat, StoqConfig};

use crate::cli::{Cli, Command};

/// The target notices are logged under in JSON mode (always enabled at INFO).
const NOTICE_TARGET: &str = "stoq_notice";

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Starts logging to standard error at the level `STOQ_LOG` names (default `warn`), in the
/// format the command asks for.
pub fn start(cli: &Cli) {
    let format = *FORMAT.get_or_init(|| format_for(cli));
    let filter = tracing_subscriber::EnvFilter::try_from_env("STOQ_LOG")
        .unwrap_or_else(|_| "warn".into())
        .add_directive(
            format!("{NOTICE_TARGET}=info")
                .parse()
                .expect("a valid directive"),
        );
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => logs.json().init(),
        // Colour only for a person at a terminal; a log file or pipe gets plain text.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

/// Tells the operator something: a `stoq: ...` line in text mode, an INFO event in JSON mode.
pub fn notice(message: &str) {
    match FORMAT.get() {
        Some(LogFormat::Json) => tracing::info!(target: NOTICE_TARGET, "{message}"),
        _ => eprintln!("stoq: {message}"),
    }
}

/// Reports why the command failed: a `stoq: ...` line in text mode, an ERROR event in JSON
/// mode.
pub fn failure(message: &str) {
    match FORMAT.get() {
        Some(LogFormat::Json) => tracing::error!(target: NOTICE_TARGET, "{message}"),
        _ => eprintln!("stoq: {message}"),
    }
}

/// The format asked for: the flag, else (for `serve`) the config file's, else text. A config
/// file that does not load is reported by `serve` itself; here it just means text.
fn format_for(cli: &Cli) -> LogFormat {
    match cli.log_format.as_deref() {
        Some("json") => LogFormat::Json,
        Some(_) => LogFormat::Text,
        None => match &cli.command {
            Command::Serve(args) => args
                .config
                .as_deref()
                .and_then(|path| StoqConfig::load(path).ok())
                .map_or(LogFormat::Text, |c| c.node.log_format),
            _ => LogFormat::Text,
        },
    }
}
