//! What to do when `accept(2)` fails.

use std::{io, time::Duration};

/// The first pause after a resource error; it doubles up to [`MAX_BACKOFF`].
pub(super) const MIN_BACKOFF: Duration = Duration::from_millis(5);
/// The longest pause between accept attempts while resources are exhausted.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How an accept error is handled.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Action {
    /// The error belongs to one connection that died in the backlog: accept the next at once.
    Retry,
    /// The process or system is out of something (descriptors, buffers, memory): pause, so the
    /// loop does not spin a core, and try again.
    Backoff,
}

pub(super) fn classify(error: &io::Error) -> Action {
    match error.kind() {
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionRefused
        | io::ErrorKind::Interrupted
        | io::ErrorKind::WouldBlock => Action::Retry,
        _ => match error.raw_os_error() {
            // Linux reports network errors of the pending connection through accept(2).
            Some(
                libc::EPROTO
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
                | libc::EPERM,
            ) => Action::Retry,
            // EMFILE, ENFILE, ENOBUFS, ENOMEM and anything unknown.
            _ => Action::Backoff,
        },
    }
}

pub(super) fn next_backoff(current: Duration) -> Duration {
    (current * 2).clamp(MIN_BACKOFF, MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_errors_back_off_and_connection_errors_retry() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert_eq!(
                classify(&io::Error::from_raw_os_error(errno)),
                Action::Backoff
            );
        }
        for errno in [
            libc::ECONNABORTED,
            libc::ECONNRESET,
            libc::EPROTO,
            libc::EINTR,
        ] {
            assert_eq!(
                classify(&io::Error::from_raw_os_error(errno)),
                Action::Retry
            );
        }
    }

    #[test]
    fn backoff_doubles_within_bounds() {
        assert_eq!(next_backoff(Duration::ZERO), MIN_BACKOFF);
        assert_eq!(next_backoff(MIN_BACKOFF), MIN_BACKOFF * 2);
        assert_eq!(next_backoff(MAX_BACKOFF), MAX_BACKOFF);
    }
}
