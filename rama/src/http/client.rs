//! [`Client`]: the pooled HTTP client behind the forward and reverse proxies, usable on its own.

use super::{Body, Error, connect::Connector};
use ::http::{Request, Response, Version};
use hyper_util::{
    client::legacy::{self, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tokio::time::Sleep;
use tower::Service;

/// How long dialing an upstream may take unless told otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an upstream may take to answer (its response head) unless told otherwise.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// A pooled HTTP/1.1 (or, with [`http2_only`](ClientBuilder::http2_only), HTTP/2) client:
/// a tower `Service<http::Request<Body>>`, streaming bodies both ways. `https://` URIs need a
/// [`tls::Connector`](crate::tls::Connector) ([`ClientBuilder::tls`]); without one they fail
/// as a connect error.
///
/// Cheap to clone: clones share one pool. Always ready. Its connections run as tasks on the
/// tokio runtime (they hold only `Send` parts: sockets and bodies).
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
    inner: legacy::Client<Connector, Body>,
    response_timeout: Option<Duration>,
    http2_only: bool,
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
            pool_max_idle_per_host: 64,
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

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("response_timeout", &self.response_timeout)
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
        *request.version_mut() = if self.http2_only {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        ResponseFuture {
            inner: self.inner.request(request),
            deadline: self
                .response_timeout
                .map(|d| Box::pin(tokio::time::sleep(d))),
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

    /// How many idle connections are kept per upstream (default 64).
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
    pub fn build(self) -> Client {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(self.connect_timeout));
        connector.set_nodelay(true);
        let inner = legacy::Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .http2_only(self.http2_only)
            .build(Connector::new(connector, self.tls));
        Client {
            inner,
            response_timeout: self.response_timeout,
            http2_only: self.http2_only,
        }
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
