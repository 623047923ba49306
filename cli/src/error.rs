//! Errors and exit codes. 0: success. 1: I/O or internal failure. 2: usage (clap's own).
//! 3: the input was read but refused (invalid policy, rejected bundle, bad event line).

use std::path::Path;
use std::process::ExitCode;

/// A failed command.
#[derive(Debug)]
pub enum CliError {
    /// A file could not be read or written.
    Io(String),
    /// Input refused: exit 3.
    Refused(String),
    /// Arguments that parse but do not fit together: exit 2.
    Usage(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(m) | Self::Refused(m) | Self::Usage(m) => f.write_str(m),
        }
    }
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Io(_) => ExitCode::from(1),
            Self::Usage(_) => ExitCode::from(2),
            Self::Refused(_) => ExitCode::from(3),
        }
    }

    pub fn io(path: &Path, e: std::io::Error) -> Self {
        Self::Io(format!("{}: {e}", path.display()))
    }

    pub fn refused(what: impl std::fmt::Display) -> Self {
        Self::Refused(what.to_string())
    }
}
