//! Graceful shutdown: the signal a server watches, and the one its connections watch.
//!
//! A server started with [`Serve::with_graceful_shutdown`](crate::tcp::Serve::with_graceful_shutdown)
//! stops accepting when its signal future completes, then triggers the [`Signal`] that every
//! connection carries in its [`ConnInfo`](crate::ConnInfo), and resolves only once every
//! connection has ended (or a drain deadline has passed).

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// The shutdown signal a connection observes. Cloning is cheap (one reference count).
#[derive(Debug, Clone, Default)]
pub struct Signal {
    token: CancellationToken,
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
        self.token.cancel();
    }

    /// Whether the server is shutting down.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes once the server is shutting down.
    pub fn triggered(&self) -> Triggered {
        self.token.clone().cancelled_owned()
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
