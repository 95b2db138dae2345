//! Graceful shutdown: the signal a server watches, and the one its connections watch.
//!
//! A server started with [`Serve::with_graceful_shutdown`](crate::tcp::Serve::with_graceful_shutdown)
//! stops accepting when its signal future completes, then triggers the [`Signal`] that every
//! connection carries in its [`ConnInfo`](crate::ConnInfo), and resolves only once every
//! connection has ended (or a drain deadline has passed).

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// The shutdown signal a connection observes. Cloning is cheap (one reference count).
#[derive(Debug, Clone, Default)]
pub struct Signal {
    inner: Arc<Inner>,
}

/// The token's waiters wake the connections waiting on the signal; the flag answers those that
/// only look. `CancellationToken::is_cancelled` locks the token's mutex, and its clone and drop
/// too: the HTTP/1.1 path looks once per request, the tcp server twice per pass.
#[derive(Debug, Default)]
struct Inner {
    token: CancellationToken,
    fired: AtomicBool,
}

/// The future returned by [`Signal::triggered`].
pub type Triggered = WaitForCancellationFutureOwned;

// ===== impl Signal =====

impl Signal {
    /// A signal that nothing has triggered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Triggers the signal for every clone of it.
    pub fn trigger(&self) {
        // Before the waiters wake: one that looks then sees it.
        self.inner.fired.store(true, Ordering::Release);
        self.inner.token.cancel();
    }

    /// Whether the server is shutting down.
    pub fn is_triggered(&self) -> bool {
        self.inner.fired.load(Ordering::Acquire)
    }

    /// Completes once the server is shutting down.
    pub fn triggered(&self) -> Triggered {
        self.inner.token.clone().cancelled_owned()
    }
}

/// Completes on the first Ctrl-C (SIGINT) or, on Unix, SIGTERM: the usual shutdown signal of a
/// proxy under a terminal or a service manager.
///
/// ```no_run
/// # async fn run() -> Result<(), rama::BoxError> {
/// use rama::{graceful, tcp, target};
///
/// tcp::Server::bind("127.0.0.1:8080")
///     .serve(target("127.0.0.1:5201"))
///     .with_graceful_shutdown(graceful::ctrl_c_or_sigterm())
///     .await?;
/// # Ok(())
/// # }
/// ```
pub async fn ctrl_c_or_sigterm() {
    {
        let ctrl_c = async {
            if let Err(error) = tokio::signal::ctrl_c().await {
                tracing::error!(%error, "cannot listen for ctrl-c");
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        let term = async {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    term.recv().await;
                }
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => tracing::info!("ctrl-c received, shutting down"),
            () = term => tracing::info!("SIGTERM received, shutting down"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_trigger_reaches_every_clone_and_every_waiter() {
        let signal = Signal::new();
        let clone = signal.clone();
        let before = clone.triggered();
        assert!(!clone.is_triggered());
        signal.trigger();
        assert!(clone.is_triggered() && signal.is_triggered());
        let after = clone.triggered();
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            before.await;
            after.await;
        })
        .await
        .expect("both waiters complete");
    }
}
