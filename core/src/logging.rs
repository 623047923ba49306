//! A minimal `log` sink for hosts (the CLI, `baomi-server`, the JVM tests through
//! `JNI_OnLoad`): Info and above to stderr. Android routes `log` to logcat instead.

struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("baomi {} {}", r.level(), r.args());
        }
    }
    fn flush(&self) {}
}

static LOGGER: Stderr = Stderr;

/// Installs the stderr sink unless the host installed a logger already (that one is kept).
pub fn log_to_stderr() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}
