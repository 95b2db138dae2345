//! Error plumbing shared by every stage.
//!
//! Service boundaries return [`BoxError`]; leaf errors are typed, carry their cause in
//! [`std::error::Error::source`], and can be found again with [`cause_ref`].

use std::{error::Error as StdError, fmt};

/// The error type at service boundaries: any error that is `Send + Sync`.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Walks the [`source`](StdError::source) chain of `error` (itself included) and returns the
/// first cause of type `E`.
///
/// ```
/// use rama::error::cause_ref;
/// use std::io;
///
/// let err: rama::BoxError = Box::new(io::Error::from(io::ErrorKind::TimedOut));
/// assert!(cause_ref::<io::Error>(&*err).is_some());
/// ```
pub fn cause_ref<'a, E: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut next = Some(error);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        next = err.source();
    }
    None
}

/// Whether `error` says a peer reset its connection, or the connection went under it: an I/O
/// error `ConnectionReset`, `ConnectionAborted`, `BrokenPipe` or `NotConnected` in its chain,
/// or a client's reset a relay's [`ResetSignal`](crate::io::ResetSignal) caught. Browsers and
/// scanners do it all the time; the servers log it at `debug` (a relay's access line says
/// so), not as a failure, as nginx logs it at `info`.
///
/// ```
/// use rama::error::is_peer_reset;
/// use std::io;
///
/// let reset: rama::BoxError = Box::new(io::Error::from(io::ErrorKind::ConnectionReset));
/// assert!(is_peer_reset(&*reset));
/// let refused: rama::BoxError = Box::new(io::Error::from(io::ErrorKind::ConnectionRefused));
/// assert!(!is_peer_reset(&*refused));
/// ```
pub fn is_peer_reset(error: &(dyn StdError + 'static)) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, NotConnected};
    cause_ref::<std::io::Error>(error).is_some_and(|io| {
        crate::io::is_reset(io)
            || matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected
            )
    })
}

/// Displays an error with all its causes, separated by `: `, the way log lines want it.
///
/// ```
/// use rama::error::Chain;
/// use std::io;
///
/// let err = io::Error::new(io::ErrorKind::Other, "outer");
/// assert_eq!(Chain(&err).to_string(), "outer");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(err) = next {
            write!(f, ": {err}")?;
            next = err.source();
        }
        Ok(())
    }
}
