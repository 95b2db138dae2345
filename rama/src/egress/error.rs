//! Errors of [`Egress`](super::Egress).

use crate::Address;
use std::{error::Error as StdError, fmt, io};

/// The destination was denied by the rules.
#[derive(Debug)]
pub struct Denied {
    destination: Address,
}

/// The destination's name could not be resolved for the rules to judge it.
#[derive(Debug)]
pub struct ResolveError {
    destination: Address,
    source: Option<io::Error>,
}

impl Denied {
    pub(super) fn new(destination: Address) -> Self {
        Self { destination }
    }

    /// The destination that was denied.
    pub fn destination(&self) -> &Address {
        &self.destination
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} denied by egress rules", self.destination)
    }
}

impl StdError for Denied {}

impl ResolveError {
    pub(super) fn new(destination: Address, source: Option<io::Error>) -> Self {
        Self {
            destination,
            source,
        }
    }

    /// Resolving took longer than the timeout.
    pub fn is_timeout(&self) -> bool {
        self.source.is_none()
    }
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source {
            Some(_) => write!(f, "cannot resolve {}", self.destination),
            None => write!(f, "resolving {} timed out", self.destination),
        }
    }
}

impl StdError for ResolveError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}
