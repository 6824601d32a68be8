//! Log output: tracing to standard error, as text or JSON, at the configured
//! level. `RUST_LOG` overrides the level for debugging. Under systemd
//! (`JOURNAL_STREAM` set) text lines carry no time stamp and no colours: the
//! journal adds its own time.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogLevel, LogSettings};

pub fn init(settings: &LogSettings) {
    let level = match settings.level().unwrap_or(LogLevel::Info) {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("patron={level},warn")));
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && !under_journal);
    // A second init (tests calling the library twice) keeps the first subscriber.
    let _ = match settings.format().unwrap_or(LogFormat::Text) {
        LogFormat::Text if under_journal => builder.without_time().try_init(),
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
