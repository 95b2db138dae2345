use super::{
    Serve, Server, Stream, balance,
    future::ConnectionFuture,
    server::{Connections, Mode, bind_listener, check_free},
};
use crate::{BoxError, Conn};
use std::{
    fmt,
    future::{Future, Pending},
    io,
    net::{SocketAddr, TcpListener as StdListener, ToSocketAddrs},
    num::NonZeroUsize,
    pin::Pin,
    sync::Arc,
    thread,
};
use tokio::sync::{oneshot, watch};
use tower::Service;

/// One server per core: `SO_REUSEPORT` listeners on one address, each served on its own thread
/// by a current-thread runtime, with its own service built by a factory. The kernel spreads
/// new connections over the listeners by a hash of their addresses; a server that then holds
/// two connections more than the least loaded of the others hands each new one over to it
/// (as haproxy does between its threads), so that no thread serves much more than its share.
///
/// Services are built on their own thread and never cross threads, so they need not be
/// `Send`; only the factory must be shareable.
///
/// ```no_run
/// use rama::{graceful, tcp, target};
///
/// # async fn run() -> Result<(), rama::BoxError> {
/// let servers = tcp::PerCore::bind("127.0.0.1:8080")?;
/// println!("listening on {}", servers.local_addr());
/// servers
///     .with_graceful_shutdown(graceful::ctrl_c_or_sigterm())
///     .run(|server| server.serve(target("127.0.0.1:5201")))
///     .await?;
/// # Ok(())
/// # }
/// ```
pub struct PerCore {
    listeners: Vec<StdListener>,
    local_addr: SocketAddr,
    signal: Pin<Box<dyn Future<Output = ()> + Send>>,
    batch_scheduling: bool,
}

impl PerCore {
    /// Binds one listener per available core on `addr`.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Self::bind_threads(addr, 0)
    }

    /// Binds `threads` listeners on `addr`; `0` means one per available core (what a
    /// `--threads` option left at its default wants).
    ///
    /// An address something already listens on is an error (`AddrInUse`), as it is for a
    /// plain listener, even when that is another `PerCore` group: `SO_REUSEPORT` would let
    /// the kernel split the connections between the two (a second instance of a proxy,
    /// started with other settings, taking part of the first one's clients).
    pub fn bind_threads(addr: impl ToSocketAddrs, threads: usize) -> io::Result<Self> {
        let threads = match threads {
            0 => thread::available_parallelism().map_or(1, NonZeroUsize::get),
            n => n,
        };
        let mut addr = addr.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing")
        })?;
        if addr.port() != 0 {
            check_free(addr)?;
        }
        let mut listeners = Vec::with_capacity(threads);
        for _ in 0..threads {
            let listener = bind_listener(addr, true)?;
            // With port 0 the first bind picks the port; the others must share it.
            addr = listener.local_addr()?;
            listeners.push(listener);
        }
        Ok(Self {
            listeners,
            local_addr: addr,
            signal: Box::pin(std::future::pending()),
            batch_scheduling: false,
        })
    }

    /// The address every listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// How many servers (threads) will run.
    pub fn threads(&self) -> usize {
        self.listeners.len()
    }

    /// Shuts every server down gracefully once `signal` completes; each drains as
    /// [`Serve::with_graceful_shutdown`] describes, with the drain timeout its factory set.
    pub fn with_graceful_shutdown(
        mut self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        self.signal = Box::pin(signal);
        self
    }

    /// Runs the server threads under Linux's `SCHED_BATCH` policy (elsewhere it does nothing):
    /// a server thread woken by new bytes then waits for its turn instead of preempting the
    /// task running on its core, and serves all that arrived meanwhile in one go.
    ///
    /// It matters when the servers share their cores with busy peers, say a load generator
    /// and an origin on the same machine. There, the default policy can settle into a state
    /// where every event wakes a server thread on its own (one context switch and one
    /// `epoll_wait` per read, about 30% more CPU per request in `bench/http.sh`). The price is
    /// latency when the cores are oversubscribed: a request may wait a scheduler slice (a few
    /// milliseconds at most) for its thread. On cores of their own the servers see no change.
    ///
    /// ```no_run
    /// use rama::{tcp, target};
    ///
    /// # async fn run() -> Result<(), rama::BoxError> {
    /// tcp::PerCore::bind("127.0.0.1:8080")?
    ///     .batch_scheduling(true)
    ///     .run(|server| server.serve(target("127.0.0.1:5201")))
    ///     .await
    /// # }
    /// ```
    pub fn batch_scheduling(mut self, enabled: bool) -> Self {
        self.batch_scheduling = enabled;
        self
    }

    /// Starts the servers: on each thread, `factory` gets a [`Server`] and returns it serving
    /// (configured as it likes). Resolves once every server has stopped; the first error of
    /// any server is returned.
    pub async fn run<F, S, M>(self, factory: F) -> Result<(), BoxError>
    where
        F: Fn(Server) -> Serve<S, M, Pending<()>> + Send + Sync + 'static,
        S: Service<Conn<Stream>> + 'static,
        S::Error: Into<BoxError>,
        M: Mode + 'static,
        M::Connections<ConnectionFuture<S::Future>>: Connections<ConnectionFuture<S::Future>>,
    {
        let factory = Arc::new(factory);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut done = Vec::with_capacity(self.listeners.len());
        let members = balance::Group::members(self.listeners.len());
        for ((index, listener), member) in self.listeners.into_iter().enumerate().zip(members) {
            let factory = factory.clone();
            let mut stop = stop_rx.clone();
            let (done_tx, done_rx) = oneshot::channel();
            done.push(done_rx);
            let batch_scheduling = self.batch_scheduling;
            thread::Builder::new()
                .name(format!("rama-server-{index}"))
                .spawn(move || {
                    if batch_scheduling && let Err(error) = schedule_batch() {
                        tracing::warn!(%error, "could not switch a server thread to SCHED_BATCH");
                    }
                    let result = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(BoxError::from)
                        .and_then(|runtime| {
                            let stopped = async move {
                                // A dropped sender (the run future dropped) also stops.
                                let _ = stop.wait_for(|stop| *stop).await;
                            };
                            let serve = factory(Server::from_std(listener))
                                .in_group(member)
                                .with_graceful_shutdown(stopped);
                            runtime.block_on(serve)
                        });
                    let _ = done_tx.send(result);
                })?;
        }
        let mut signal = self.signal;
        let mut all_done = Box::pin(async move {
            let mut first_error = Ok(());
            for done in done {
                let result = done
                    .await
                    .unwrap_or_else(|_| Err("server thread panicked".into()));
                if let Err(error) = result {
                    first_error = first_error.and(Err(error));
                }
            }
            first_error
        });
        tokio::select! {
            result = &mut all_done => return result,
            () = &mut signal => {}
        }
        let _ = stop_tx.send(true);
        all_done.await
    }
}

/// Puts the calling thread under `SCHED_BATCH`.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn schedule_batch() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid `sched_param` for the call; pid 0 is the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn schedule_batch() -> io::Result<()> {
    Ok(())
}

impl fmt::Debug for PerCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerCore")
            .field("local_addr", &self.local_addr)
            .field("threads", &self.listeners.len())
            .field("batch_scheduling", &self.batch_scheduling)
            .finish_non_exhaustive()
    }
}
