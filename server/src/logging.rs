//! The server's log: `tracing-subscriber` (the `log` records of every crate captured through
//! `tracing-log`) with timestamps and levels, plain or JSON lines, written by
//! `tracing-appender`'s non-blocking writer. Logging never stops serving: lines go to a
//! bounded queue that one thread drains to stderr; when stderr is not read (a stalled log
//! shipper) the queue fills and further lines are dropped and counted, never waited for (a
//! request thread blocked in `write(2)` inside a log call hung the whole server).
//!
//! `BAOMI_LOG` sets the level and filters (`info` by default; `debug`, `warn`,
//! `baomi_server=debug,info`, ...), `BAOMI_LOG_FORMAT=json` writes JSON lines.

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Lines the queue holds before new ones are dropped.
pub const QUEUED_LINES: usize = 16_384;

/// Keeps the writer thread alive (dropping it flushes what is queued); counts drops.
pub struct LogGuard {
    _worker: WorkerGuard,
    dropped: ErrorCounter,
}

impl LogGuard {
    /// Lines dropped because stderr was not read fast enough.
    pub fn dropped(&self) -> usize {
        self.dropped.dropped_lines()
    }
}

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogGuard")
            .field("dropped", &self.dropped())
            .finish()
    }
}

/// Installs the logger from `BAOMI_LOG` and `BAOMI_LOG_FORMAT`. Keep the guard for the
/// process's life.
pub fn init() -> Result<LogGuard, String> {
    let filter = std::env::var("BAOMI_LOG").unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::try_new(&filter).map_err(|e| format!("BAOMI_LOG `{filter}`: {e}"))?;
    let (writer, worker) = NonBlockingBuilder::default()
        .buffered_lines_limit(QUEUED_LINES)
        .lossy(true)
        .thread_name("baomi-log")
        .finish(std::io::stderr());
    let dropped = writer.error_counter();
    let json = std::env::var("BAOMI_LOG_FORMAT").is_ok_and(|f| f == "json");
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_env_filter(filter)
        .with_ansi(false);
    let installed = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    installed.map_err(|e| format!("installing the logger: {e}"))?;
    Ok(LogGuard {
        _worker: worker,
        dropped,
    })
}
