//! The error of [`Detect`](super::Detect).

use std::{error::Error as StdError, fmt, io, time::Duration};

/// Why a connection ended before [`Detect`](super::Detect) chose a branch.
#[derive(Debug)]
pub struct DetectError {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Timeout(Duration),
    Io(io::Error),
}

impl DetectError {
    pub(super) fn timeout(after: Duration) -> Self {
        Self {
            kind: Kind::Timeout(after),
        }
    }

    pub(super) fn io(error: io::Error) -> Self {
        Self {
            kind: Kind::Io(error),
        }
    }

    /// The client sent too little to decide on within the detection timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout(_))
    }
}

impl fmt::Display for DetectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Timeout(after) => {
                write!(
                    f,
                    "the client sent too little to detect its protocol within {after:?}"
                )
            }
            Kind::Io(_) => f.write_str("reading the first bytes failed"),
        }
    }
}

impl StdError for DetectError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.kind {
            Kind::Io(error) => Some(error),
            Kind::Timeout(_) => None,
        }
    }
}
