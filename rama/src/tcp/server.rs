use super::{
    accept::{self, Action},
    balance,
    future::ConnectionFuture,
    stream::{Activity, Stream},
};
use crate::{BoxError, Conn, ConnInfo, error::Chain, graceful};
use futures_util::{StreamExt, stream::FuturesUnordered};
use pin_project_lite::pin_project;
use socket2::{Domain, Protocol, Socket, Type};
use std::{
    fmt,
    future::{Future, Pending, pending},
    io,
    net::{SocketAddr, TcpListener as StdListener, ToSocketAddrs},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tokio::{net::TcpListener, task::JoinSet, time::Sleep};
use tower::Service;

/// How many connections one poll of the server accepts before it yields, so that a flood of
/// new connections cannot starve the ones already open.
const ACCEPT_BUDGET: usize = 64;
/// The listen backlog: connections the kernel queues while the service is not ready.
const BACKLOG: i32 = 1024;

/// A bound TCP listener, the source of every proxy. [`serve`](Server::serve) turns it into a
/// running [`Serve`] future.
///
/// Binding happens at once; a failure to bind is kept and returned when the server is awaited,
/// so a whole proxy can be written as one expression and end in one `.await?`.
pub struct Server {
    listener: io::Result<StdListener>,
}

pin_project! {
    /// The future of a running server: accepts connections and drives them through one
    /// service.
    ///
    /// Created by [`Server::serve`]; configure it with its builder methods, then `.await` it.
    /// It resolves with an error when binding failed or the service failed in `poll_ready`,
    /// and with `Ok(())` after a graceful shutdown. See the [module docs](super) for the
    /// contract.
    pub struct Serve<S, M = Local, G = Pending<()>>
    where
        S: Service<Conn<Stream>>,
        M: Mode,
    {
        core: Core<S>,
        connections: M::Connections<ConnectionFuture<S::Future>>,
        #[pin]
        signal: G,
    }
}

/// Everything of a [`Serve`] that does not depend on its mode or signal.
struct Core<S> {
    bind: Option<io::Result<StdListener>>,
    listener: Option<TcpListener>,
    service: S,
    idle_timeout: Option<Duration>,
    connection_timeout: Option<Duration>,
    drain_timeout: Option<Duration>,
    shutdown: graceful::Signal,
    // Accept back-off while running, the drain deadline once shutting down.
    timer: Option<Pin<Box<Sleep>>>,
    backoff: Duration,
    // Set when the server is one of a `PerCore` group.
    balance: Option<balance::Member>,
}

/// Where a [`Serve`] runs its connections: [`Local`] or [`Spawn`].
pub trait Mode: sealed::Sealed {
    /// The set of running connections.
    #[doc(hidden)]
    type Connections<F>: Default;
}

/// The default [`Mode`]: connections are futures inside the server's own future, on its task.
/// Neither the service nor its futures need to be `Send`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local(());

/// The [`Mode`] set by [`Serve::spawn_connections`]: each connection is a tokio task, so a
/// multi-threaded runtime spreads them over its workers. Needs `Send + 'static` futures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spawn(());

/// A set of running connections, as driven by one [`Mode`].
pub trait Connections<F>: sealed::Sealed {
    #[doc(hidden)]
    fn push(&mut self, connection: F);
    /// Polls the connections; ready once none is left.
    #[doc(hidden)]
    fn poll_all(&mut self, cx: &mut Context<'_>) -> Poll<()>;
    #[doc(hidden)]
    fn count(&self) -> usize;
    #[doc(hidden)]
    fn drop_all(&mut self);
}

mod sealed {
    pub trait Sealed {}
}

// ===== impl Server =====

impl Server {
    /// Binds a listener on the first address of `addr` that binds (with `SO_REUSEADDR`, so a
    /// restart does not wait for old connections in `TIME_WAIT`).
    pub fn bind(addr: impl ToSocketAddrs) -> Self {
        let listener = addr.to_socket_addrs().and_then(|addrs| {
            let mut last = None;
            for addr in addrs {
                match bind_listener(addr, false) {
                    Ok(listener) => return Ok(listener),
                    Err(error) => last = Some(error),
                }
            }
            Err(last.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing")
            }))
        });
        Self { listener }
    }

    /// Serves on a listener bound elsewhere (it is switched to non-blocking mode).
    pub fn from_std(listener: StdListener) -> Self {
        let listener = listener.set_nonblocking(true).map(|()| listener);
        Self { listener }
    }

    /// The address the server listens on, or the error that binding met.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.listener {
            Ok(listener) => listener.local_addr(),
            Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
        }
    }

    /// Serves every accepted connection with `service`, which is called once per connection
    /// and never cloned.
    pub fn serve<S>(self, service: S) -> Serve<S>
    where
        S: Service<Conn<Stream>>,
    {
        Serve {
            core: Core {
                bind: Some(self.listener),
                listener: None,
                service,
                idle_timeout: None,
                connection_timeout: None,
                drain_timeout: None,
                shutdown: graceful::Signal::new(),
                timer: None,
                backoff: Duration::ZERO,
                balance: None,
            },
            connections: Default::default(),
            signal: pending(),
        }
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

/// Binds a non-blocking listener, optionally with `SO_REUSEPORT` (one listener per core).
pub(super) fn bind_listener(addr: SocketAddr, reuse_port: bool) -> io::Result<StdListener> {
    let socket = bound(addr, reuse_port)?;
    socket.set_nonblocking(true)?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Fails (`AddrInUse`) when a socket listens on `addr`: a bind without `SO_REUSEPORT`,
/// never listening (a connection arriving meanwhile is not taken and reset).
pub(super) fn check_free(addr: SocketAddr) -> io::Result<()> {
    bound(addr, false).map(drop)
}

fn bound(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket)
}

// ===== impl Serve =====

impl<S, M, G> Serve<S, M, G>
where
    S: Service<Conn<Stream>>,
    M: Mode,
{
    /// The address the server listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match (&self.core.listener, &self.core.bind) {
            (Some(listener), _) => listener.local_addr(),
            (None, Some(Ok(listener))) => listener.local_addr(),
            (None, Some(Err(error))) => Err(io::Error::new(error.kind(), error.to_string())),
            (None, None) => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Closes a connection after `timeout` without a byte moving in either direction.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.core.idle_timeout = Some(timeout);
        self
    }

    /// Closes a connection `timeout` after it was accepted, whatever it is doing.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.core.connection_timeout = Some(timeout);
        self
    }

    /// After a shutdown signal, drops the connections still open after `timeout` and resolves.
    /// Without it, the server waits for every connection to end on its own.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.core.drain_timeout = Some(timeout);
        self
    }

    /// Shuts down gracefully once `signal` completes: stops accepting, triggers the
    /// [`graceful::Signal`] every connection carries, and resolves when every connection has
    /// ended (or the [drain timeout](Self::drain_timeout) has passed).
    pub fn with_graceful_shutdown<G2>(self, signal: G2) -> Serve<S, M, G2>
    where
        G2: Future<Output = ()>,
    {
        Serve {
            core: self.core,
            connections: self.connections,
            signal,
        }
    }

    /// Runs each connection as its own tokio task instead of inside this future, so that a
    /// multi-threaded runtime spreads connections over its workers. The connection futures
    /// must then be `Send + 'static`. Call it before the server is first polled.
    pub fn spawn_connections(self) -> Serve<S, Spawn, G> {
        Serve {
            core: self.core,
            connections: Default::default(),
            signal: self.signal,
        }
    }

    /// The service, for inspection.
    pub fn get_ref(&self) -> &S {
        &self.core.service
    }

    /// Makes this server `member` of a `PerCore` group, which keeps connection counts even.
    pub(super) fn in_group(mut self, member: balance::Member) -> Self {
        self.core.balance = Some(member);
        self
    }
}

impl<S, M, G> Future for Serve<S, M, G>
where
    S: Service<Conn<Stream>>,
    S::Error: Into<BoxError>,
    S::Future: Future<Output = Result<S::Response, S::Error>>,
    M: Mode,
    M::Connections<ConnectionFuture<S::Future>>: Connections<ConnectionFuture<S::Future>>,
    G: Future<Output = ()>,
{
    type Output = Result<(), BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let core = this.core;
        if let Some(bind) = core.bind.take() {
            let listener = bind.and_then(TcpListener::from_std)?;
            if let Ok(addr) = listener.local_addr() {
                tracing::debug!(%addr, "accepting connections");
            }
            core.listener = Some(listener);
        }
        if !core.shutdown.is_triggered() {
            if this.signal.as_mut().poll(cx).is_ready() {
                core.begin_shutdown(this.connections.count());
            } else if core.poll_accept(cx, this.connections)?.is_ready() {
                // The accept budget ran out with connections still waiting: come back soon,
                // after the rest of the runtime had its turn.
                cx.waker().wake_by_ref();
            }
        }
        // Polled after accepting, so that new connections make their first progress now.
        let drained = this.connections.poll_all(cx).is_ready();
        core.publish(this.connections.count());
        if core.shutdown.is_triggered() {
            if drained {
                tracing::info!("every connection ended, server stopped");
                return Poll::Ready(Ok(()));
            }
            if core
                .timer
                .as_mut()
                .is_some_and(|t| t.as_mut().poll(cx).is_ready())
            {
                core.timer = None;
                tracing::warn!(
                    connections = this.connections.count(),
                    "drain timeout reached, dropping the connections left"
                );
                this.connections.drop_all();
                // Spawned tasks end at their next poll after the abort: resolve only once
                // they have, so nothing outlives the server.
                if this.connections.poll_all(cx).is_ready() {
                    tracing::info!("server stopped");
                    return Poll::Ready(Ok(()));
                }
            }
        }
        Poll::Pending
    }
}

impl<S, M, G> fmt::Debug for Serve<S, M, G>
where
    S: Service<Conn<Stream>>,
    M: Mode,
    M::Connections<ConnectionFuture<S::Future>>: Connections<ConnectionFuture<S::Future>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("local_addr", &self.local_addr().ok())
            .field("connections", &self.connections.count())
            .field("shutting_down", &self.core.shutdown.is_triggered())
            .finish_non_exhaustive()
    }
}

// ===== impl Core =====

impl<S> Core<S>
where
    S: Service<Conn<Stream>>,
    S::Error: Into<BoxError>,
{
    /// Accepts into `connections` while the service is ready, up to the budget. Pending when
    /// the service is not ready or no connection waits (a wake-up is registered); ready when
    /// the budget ran out.
    fn poll_accept<C>(
        &mut self,
        cx: &mut Context<'_>,
        connections: &mut C,
    ) -> Poll<Result<(), BoxError>>
    where
        C: Connections<ConnectionFuture<S::Future>>,
    {
        for _ in 0..ACCEPT_BUDGET {
            if let Some(timer) = self.timer.as_mut() {
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.timer = None;
            }
            // Readiness before accepting: a service at capacity leaves connections in the
            // kernel's backlog. An error here means the service is broken for good.
            match self.service.poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(error)) => {
                    let error = error.into();
                    tracing::error!(error = %Chain(&*error), "service failed, server stopping");
                    return Poll::Ready(Err(error));
                }
                Poll::Pending => return Poll::Pending,
            }
            // Connections a sibling handed over go first: they have waited longest.
            if let Some(Poll::Ready((stream, peer))) =
                self.balance.as_mut().map(|member| member.poll_handed(cx))
            {
                match stream {
                    Ok(stream) => self.run(connections, stream, peer),
                    Err(error) => tracing::debug!(%peer, %error, "cannot take a connection over"),
                }
                continue;
            }
            let listener = self
                .listener
                .as_ref()
                .expect("listener bound before accepting");
            match listener.poll_accept(cx) {
                Poll::Ready(Ok((stream, peer))) => {
                    self.backoff = Duration::ZERO;
                    let kept = match &self.balance {
                        Some(member) => member.hand_over(connections.count(), stream, peer),
                        None => Some((stream, peer)),
                    };
                    if let Some((stream, peer)) = kept {
                        self.run(connections, stream, peer);
                    }
                }
                Poll::Ready(Err(error)) => match accept::classify(&error) {
                    Action::Retry => tracing::debug!(%error, "accept failed, retrying"),
                    Action::Backoff => {
                        self.backoff = accept::next_backoff(self.backoff);
                        tracing::error!(%error, backoff = ?self.backoff, "accept failed, pausing");
                        self.timer = Some(Box::pin(tokio::time::sleep(self.backoff)));
                    }
                },
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Starts a connection among `connections`, and publishes their new count to the group.
    fn run<C>(&mut self, connections: &mut C, stream: tokio::net::TcpStream, peer: SocketAddr)
    where
        C: Connections<ConnectionFuture<S::Future>>,
    {
        connections.push(self.start(stream, peer));
        self.publish(connections.count());
    }

    /// Tells the group, if any, how many connections this server runs.
    fn publish(&self, open: usize) {
        if let Some(member) = &self.balance {
            member.publish(open);
        }
    }

    /// Hands a fresh connection to the service.
    fn start(
        &mut self,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
    ) -> ConnectionFuture<S::Future> {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        let local = stream
            .local_addr()
            .or_else(|_| {
                self.listener
                    .as_ref()
                    .map_or(Err(io::ErrorKind::NotConnected.into()), |l| l.local_addr())
            })
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let activity = self
            .idle_timeout
            .map(|idle| (idle, Arc::new(Activity::new())));
        let stream = Stream::new(stream, activity.as_ref().map(|(_, a)| a.clone()));
        let info = ConnInfo::new(peer, local, self.shutdown.clone());
        tracing::debug!(%peer, %local, "connection accepted");
        let future = self.service.call(Conn::new(stream, info));
        ConnectionFuture::new(future, peer, self.connection_timeout, activity)
    }

    fn begin_shutdown(&mut self, open: usize) {
        tracing::info!(
            connections = open,
            "shutting down: no new connections, draining"
        );
        self.listener = None;
        // Out of the group: connections handed over and not yet taken are closed with it.
        self.balance = None;
        self.shutdown.trigger();
        self.timer = self
            .drain_timeout
            .map(|timeout| Box::pin(tokio::time::sleep(timeout)));
    }
}

// ===== impl Mode =====

impl sealed::Sealed for Local {}
impl sealed::Sealed for Spawn {}

impl Mode for Local {
    type Connections<F> = FuturesUnordered<F>;
}

impl Mode for Spawn {
    type Connections<F> = JoinSet<()>;
}

impl<F> sealed::Sealed for FuturesUnordered<F> {}
impl sealed::Sealed for JoinSet<()> {}

impl<F: Future<Output = ()>> Connections<F> for FuturesUnordered<F> {
    fn push(&mut self, connection: F) {
        FuturesUnordered::push(self, connection);
    }

    fn poll_all(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // The connections' writes wait for the end of the pass, and go out in one burst.
        let pass = crate::io::batch::Pass::open();
        let polled = loop {
            match self.poll_next_unpin(cx) {
                Poll::Ready(Some(())) => {}
                Poll::Ready(None) => break Poll::Ready(()),
                Poll::Pending => break Poll::Pending,
            }
        };
        pass.finish();
        polled
    }

    fn count(&self) -> usize {
        FuturesUnordered::len(self)
    }

    fn drop_all(&mut self) {
        self.clear();
    }
}

impl<F: Future<Output = ()> + Send + 'static> Connections<F> for JoinSet<()> {
    fn push(&mut self, connection: F) {
        self.spawn(connection);
    }

    fn poll_all(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match self.poll_join_next(cx) {
                Poll::Ready(Some(Err(error))) if error.is_panic() => {
                    tracing::error!(%error, "a connection task panicked");
                }
                Poll::Ready(Some(_)) => {}
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn count(&self) -> usize {
        JoinSet::len(self)
    }

    fn drop_all(&mut self) {
        self.abort_all();
    }
}
