//! The log subscriber: `RUST_LOG` filtering (default `info`) on stderr, as
//! text (coloured only on a terminal, and never with `NO_COLOR` set) or as
//! one JSON object per line.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the process's subscriber.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(colours()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

/// Colours only on a terminal, and not when `NO_COLOR` is set to anything
/// but the empty string (<https://no-color.org>): log collectors store the
/// escape codes verbatim.
fn colours() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
