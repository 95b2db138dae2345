//! [`Client`]: the pooled HTTP client behind the forward and reverse proxies, usable on its own.

use super::{Body, Error, connect::Connector};
use ::http::{Request, Response, Version};
use hyper_util::{
    client::legacy::{self, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use std::{
    cell::RefCell,
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Weak},
    task::{Context, Poll},
    time::Duration,
};
use tokio::time::Sleep;
use tower::Service;

/// How long dialing an upstream may take unless told otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an upstream may take to answer (its response head) unless told otherwise.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// How many idle connections per upstream each thread's pool keeps unless told otherwise.
pub const DEFAULT_POOL_MAX_IDLE_PER_HOST: usize = 1024;

/// A pooled HTTP/1.1 (or, with [`http2_only`](ClientBuilder::http2_only), HTTP/2) client:
/// a tower `Service<http::Request<Body>>`, streaming bodies both ways. `https://` URIs need a
/// [`tls::Connector`](crate::tls::Connector) ([`ClientBuilder::tls`]); without one they fail
/// as a connect error.
///
/// Cheap to clone: clones share one pool **per thread**. Always ready. Its connections run
/// as tasks on the tokio runtime of the thread that opened them (they hold only `Send` parts:
/// sockets and bodies). A pool per thread keeps each request on the thread that runs its
/// connection: with one pool behind [`tcp::PerCore`](crate::tcp::PerCore)'s threads, a
/// request on one core would hand every exchange to a connection task on another core and
/// back, two cross-thread wake-ups per request.
///
/// ```no_run
/// use rama::http::{Body, Client};
/// use tower::ServiceExt;
///
/// # async fn run() -> Result<(), rama::BoxError> {
/// let request = http::Request::get("http://127.0.0.1:8000/").body(Body::empty())?;
/// let response = Client::new().oneshot(request).await?;
/// println!("{}", response.status());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    /// The settings; each thread's pool is keyed by this allocation.
    config: Arc<Config>,
}

/// What every thread's pool of one [`Client`] (and its clones) is built from.
struct Config {
    builder: ClientBuilder,
    connector: Connector,
}

/// One thread's pool of a [`Client`].
type Pool = legacy::Client<Connector, Body>;

thread_local! {
    /// This thread's pools, one per live [`Client`] (and its clones) used on the thread.
    static POOLS: RefCell<Vec<(Weak<Config>, Pool)>> = const { RefCell::new(Vec::new()) };
}

/// Configures a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    connect_timeout: Duration,
    response_timeout: Option<Duration>,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
    http2_only: bool,
    tls: Option<crate::tls::Connector>,
}

// ===== impl Client =====

impl Client {
    /// A client with the documented defaults.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Configures a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Some(DEFAULT_RESPONSE_TIMEOUT),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: DEFAULT_POOL_MAX_IDLE_PER_HOST,
            http2_only: false,
            tls: None,
        }
    }
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    /// Whether it speaks HTTP/2 with prior knowledge to every upstream.
    pub(crate) fn is_http2_only(&self) -> bool {
        self.config.builder.http2_only
    }

    /// Sends `request` through this thread's pool (built on the thread's first request).
    fn send(&self, request: Request<Body>) -> legacy::ResponseFuture {
        let pool = POOLS
            .try_with(|pools| {
                let mut pools = pools.borrow_mut();
                let key = Arc::as_ptr(&self.config);
                if let Some((_, pool)) = pools.iter().find(|(k, _)| k.as_ptr() == key) {
                    return pool.clone();
                }
                // A client new to this thread: first forget the pools of clients that are gone.
                pools.retain(|(k, _)| k.strong_count() > 0);
                let pool = self.config.pool();
                pools.push((Arc::downgrade(&self.config), pool.clone()));
                pool
            })
            // Only in a thread-local destructor: a pool for this one request.
            .unwrap_or_else(|_| self.config.pool());
        pool.request(request)
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("response_timeout", &self.config.builder.response_timeout)
            .field("http2_only", &self.config.builder.http2_only)
            .finish_non_exhaustive()
    }
}

impl<B> Service<Request<B>> for Client
where
    B: Into<Body>,
{
    type Response = Response<Body>;
    type Error = Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> ResponseFuture {
        let mut request = request.map(Into::into);
        // The upstream's version is the client's, whatever the downstream spoke.
        let config = &self.config.builder;
        *request.version_mut() = if config.http2_only {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        let deadline = config
            .response_timeout
            .map(|d| Box::pin(tokio::time::sleep(d)));
        ResponseFuture {
            inner: self.send(request),
            deadline,
        }
    }
}

// ===== impl ClientBuilder =====

impl ClientBuilder {
    /// Bounds resolving plus connecting (default [`DEFAULT_CONNECT_TIMEOUT`]); a dial that
    /// takes longer fails with [`Error::is_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Bounds the wait for the response head, dial included (default
    /// [`DEFAULT_RESPONSE_TIMEOUT`]; `None` waits forever). Bodies stream without a bound.
    pub fn response_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.response_timeout = timeout.into();
        self
    }

    /// How long an idle pooled connection is kept (default 90 s).
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// How many idle connections are kept per upstream, in each thread's pool (default
    /// [`DEFAULT_POOL_MAX_IDLE_PER_HOST`]: enough for every stream an HTTP/2 client runs at
    /// once to find a pooled HTTP/1.1 upstream connection instead of dialing a new one).
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = max;
        self
    }

    /// Speaks HTTP/2 with prior knowledge to every upstream (default: HTTP/1.1).
    pub fn http2_only(mut self, enabled: bool) -> Self {
        self.http2_only = enabled;
        self
    }

    /// Speaks TLS to `https://` upstreams with `connector` (its roots, ALPN, client
    /// certificate; SNI from the URI's host). Without one, `https://` requests fail.
    pub fn tls(mut self, connector: crate::tls::Connector) -> Self {
        self.tls = Some(connector);
        self
    }

    /// The client.
    pub fn build(mut self) -> Client {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(self.connect_timeout));
        http.set_nodelay(true);
        let connector = Connector::new(http, self.tls.take());
        Client {
            config: Arc::new(Config {
                builder: self,
                connector,
            }),
        }
    }
}

// ===== impl Config =====

impl Config {
    /// A fresh pool with these settings.
    fn pool(&self) -> Pool {
        let builder = &self.builder;
        legacy::Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(builder.pool_idle_timeout)
            .pool_max_idle_per_host(builder.pool_max_idle_per_host)
            .http2_only(builder.http2_only)
            .build(self.connector.clone())
    }
}

/// The response of a [`Client`] call.
pub struct ResponseFuture {
    inner: legacy::ResponseFuture,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The response first: one that is ready wins over a deadline that passed meanwhile.
        if let Poll::Ready(result) = Pin::new(&mut self.inner).poll(cx) {
            return Poll::Ready(match result {
                Ok(response) => Ok(response.map(Body::from)),
                Err(error) => Err(Error::upstream(error.into())),
            });
        }
        if let Some(deadline) = self.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(Error::timeout()));
        }
        Poll::Pending
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
