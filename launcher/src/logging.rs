//! How the launcher talks to a person: messages through `tracing`, on stderr, above the
//! progress bars ([`crate::tasks::LogWriter`]).
//!
//! `-q` shows warnings and errors only, the default adds progress messages (info), `-v`
//! adds debug and `-vv` trace. `RUST_LOG` (e.g. `RUST_LOG=debug`)
//! overrides both. Plain messages print as they are; warnings and errors get a
//! `warning:` or `error:` prefix, so output reads like a CLI's, not a server's log.

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The filter for a verbosity: -1 quiet, 0 default, 1 `-v`, 2 or more `-vv`.
pub fn filter_for(verbosity: i8) -> &'static str {
    match verbosity {
        i8::MIN..=-1 => "warn",
        0 => "warn,cmesh_launcher=info",
        1 => "warn,cmesh_launcher=debug",
        _ => "debug,cmesh_launcher=trace",
    }
}

struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let level = *event.metadata().level();
        match level {
            Level::ERROR => write!(writer, "error: ")?,
            Level::WARN => write!(writer, "warning: ")?,
            Level::DEBUG | Level::TRACE => write!(writer, "[{}] ", event.metadata().target())?,
            Level::INFO => {}
        }
        ctx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Sets up messages for `verbosity` (`RUST_LOG` wins when set).
pub fn init(verbosity: i8) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| filter_for(verbosity).into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| crate::tasks::LogWriter)
        .event_format(Plain)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_maps_to_filters() {
        assert_eq!(filter_for(-1), "warn");
        assert!(filter_for(0).contains("cmesh_launcher=info"));
        assert!(filter_for(1).contains("cmesh_launcher=debug"));
        assert!(filter_for(5).contains("trace"));
    }
}
