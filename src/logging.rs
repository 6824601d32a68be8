//! Log output: tracing to standard error, as text or JSON, at the configured
//! level. `RUST_LOG` overrides the level for debugging. Under systemd
//! (`JOURNAL_STREAM` set) text lines carry no time stamp and no colours: the
//! journal adds its own time.
//!
//! Only patron's own events may go below `warn`, whatever `RUST_LOG` says:
//! the libraries' debug output carries personal data (html5ever logs the
//! rendered names and addresses of a message, sqlx the bound values).

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterFn, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, LogLevel, LogSettings};

pub fn init(settings: &LogSettings) {
    let level = match settings.level() {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("patron={level},warn")));
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && !under_journal);
    let registry = tracing_subscriber::registry().with(filter).with(own_or_warnings());
    // A second init (tests calling the library twice) keeps the first subscriber.
    let _ = match settings.format() {
        LogFormat::Text if under_journal => registry.with(layer.without_time()).try_init(),
        LogFormat::Text => registry.with(layer).try_init(),
        LogFormat::Json => registry.with(layer.json()).try_init(),
    };
}

/// patron's own events at any level; other crates' at `warn` and `error` only.
fn own_or_warnings() -> FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    filter_fn(|metadata| is_own(metadata.target()) || *metadata.level() <= Level::WARN)
}

fn is_own(target: &str) -> bool {
    target == "patron" || target.starts_with("patron::")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_patrons_own_targets_count_as_its_own() {
        assert!(is_own("patron") && is_own("patron::delivery::sender"));
        assert!(!is_own("html5ever::tree_builder") && !is_own("sqlx::query") && !is_own("patronage"));
        assert!(Level::ERROR <= Level::WARN && Level::DEBUG > Level::WARN);
    }
}
