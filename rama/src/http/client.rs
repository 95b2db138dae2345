//! [`Client`]: the pooled HTTP client behind the forward and reverse proxies, usable on its own.

use super::{
    Body, Error,
    body_timeout::{ReadTimeout, Tracked, Upload, Verdict},
    connect::{self, Connector, Dial},
    h1_pool,
    headers::{self, TransferCoding},
};
use crate::{Address, Host};
use ::http::{
    HeaderValue, Request, Response, StatusCode, Uri, Version, header,
    uri::{self, Authority, Scheme},
};
use hyper_util::{
    client::legacy,
    rt::{TokioExecutor, TokioTimer},
};
use std::{
    cell::RefCell,
    error::Error as StdError,
    fmt,
    future::Future,
    net::SocketAddr,
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

/// How many times a request an HTTP/2 upstream refused unprocessed is sent again.
const RETRIES: u8 = 10;

/// A pooled HTTP/1.1 (or, with [`http2_only`](ClientBuilder::http2_only), HTTP/2) client:
/// a tower `Service<http::Request<Body>>`, streaming bodies both ways. `https://` URIs need a
/// [`tls::Connector`](crate::tls::Connector) ([`ClientBuilder::tls`]); without one they fail
/// as a connect error.
///
/// Per request: hop-by-hop headers are removed (an upgrade request keeps `Upgrade` and
/// `Connection: upgrade`), and responses come back without theirs (a `101` keeps the same
/// two); a request without an authority in its URI takes it from `Host`.
/// `Host` and HTTP/2: `:authority` (the URI's) says it there, and some servers (nginx) answer
/// `400` to both. With `http2_only`, `Host` is dropped (one that names somewhere else than
/// the URI cannot be said: the URI is also where the connection goes); for `https://`, where
/// ALPN decides, a `Host` naming the URI's authority is dropped and hyper-util puts it back
/// from the URI when the connection turns out to be HTTP/1.1 (one naming somewhere else stays,
/// which an HTTP/2 origin may refuse). A request an HTTP/2 upstream did not
/// process (it was above the last stream id of the upstream's `GOAWAY`, or refused with
/// `REFUSED_STREAM`) is sent again, up to 10 times, when it can be: an idempotent method or
/// no body, and a body that is not a stream.
///
/// An upgrade (WebSocket) to an `https://` upstream goes on HTTP/1.1, which alone can carry
/// it: where the TLS connector offers `h2`, its connection is dialed offering the rest.
///
/// Plain `http://` without `http2_only` (HTTP/1.1 for sure) and without an upgrade goes
/// through a lean path of its own: rama's own HTTP/1.1 connections, a list of idle ones per
/// thread and upstream (closed within a second when the upstream closes them or they idle past
/// [`pool_idle_timeout`](ClientBuilder::pool_idle_timeout)); everything else through
/// hyper-util's legacy pool (one per thread).
///
/// New connections go where the request's URI says, unless it carries a [`DialOnly`] (the
/// addresses egress rules judged): then only there, on every path. A request with the
/// [`ConnFacts`](super::ConnFacts) of a proxy's client never dials the address that client
/// reached the proxy on (a proxy whose upstream is itself gets a connect error, not a loop).
///
/// Cheap to clone: clones share one pool **per thread**. Always ready. hyper-util's
/// connections run as tasks on the tokio runtime of the thread that opened them (they hold
/// only `Send` parts: sockets and bodies); rama's own are driven by the request and then its
/// response body. A pool per thread keeps each request on the thread that runs its
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
    /// For upgrades to `https://` upstreams when the TLS connector offers `h2`: the same,
    /// offering HTTP/1.1 only, since an upgrade sent on a connection that chose HTTP/2
    /// reaches the upstream as a plain request.
    upgrade_connector: Option<Connector>,
    /// The plain HTTP/1.1 path's settings.
    h1: Arc<h1_pool::Settings>,
}

/// One thread's pool of a [`Client`].
type Pool = legacy::Client<Connector, Body>;

thread_local! {
    /// This thread's pools, one per live [`Client`] (and its clones) used on the thread.
    static POOLS: RefCell<Vec<(Weak<Config>, Pool)>> = const { RefCell::new(Vec::new()) };

    /// This thread's pools for requests whose [`ConnectTo`] differs from their URI, per
    /// client and route, the one used last at the end. hyper-util keys its pool by the
    /// URI's scheme and authority alone: in the client's one pool, a connection dialed for
    /// one route would serve the next request for that URI, wherever that one must go.
    static ROUTES: RefCell<Vec<(Weak<Config>, ConnectTo, Pool)>> = const { RefCell::new(Vec::new()) };
}

/// The only addresses a request's new upstream connection may be dialed on, instead of a
/// lookup of its URI's host: a request extension that [`Client`] honours on every path, and
/// [`ws::Relay::requested`](crate::ws::Relay::requested) for the WebSockets it relays. The
/// egress rules of [`ForwardProxy`](super::ForwardProxy) and [`Mitm`](super::Mitm) attach
/// one when they resolved a name to judge it, since a second lookup could answer with an
/// address they deny (a name with a short TTL that first resolves somewhere public, then to a
/// loopback or private address: DNS rebinding). The addresses are tried in turn; the URI's
/// host is still what TLS names (SNI, the certificate's check) and what `Host` says. A pooled
/// connection to the URI's authority is reused as usual.
///
/// ```
/// use rama::http::{Body, DialOnly};
///
/// let mut request = http::Request::get("https://origin.test/").body(Body::empty()).unwrap();
/// request
///     .extensions_mut()
///     .insert(DialOnly::new(["127.0.0.1:443".parse().unwrap()]));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialOnly(Arc<[SocketAddr]>);

impl DialOnly {
    /// Dial only `addresses`, in this order.
    pub fn new(addresses: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self(addresses.into_iter().collect())
    }

    /// The addresses, in the order they are tried.
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.0
    }
}

// ===== impl ConnectTo =====

impl ConnectTo {
    /// Connections to `address`, whose host is also the TLS name unless
    /// [`server_name`](Self::server_name) says another.
    pub fn new(address: Address) -> Self {
        Self {
            server_name: address.host().clone(),
            address,
        }
    }

    /// Names `name` in TLS (SNI, unless it is an IP address, and the certificate's check).
    pub fn server_name(mut self, name: Host) -> Self {
        self.server_name = name;
        self
    }

    /// Where connections are dialed.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// What TLS names.
    pub fn name(&self) -> &Host {
        &self.server_name
    }

    /// Whether `uri` says the same: its host is both the address's and the TLS name, and its
    /// port (the scheme's default when it has none) the address's.
    pub(crate) fn is_uri(&self, uri: &Uri) -> bool {
        let default_port = if uri.scheme() == Some(&Scheme::HTTPS) {
            443
        } else {
            80
        };
        connect::host_of(uri).is_some_and(|host| {
            same_host(&host, self.address.host()) && same_host(&host, &self.server_name)
        }) && uri.port_u16().unwrap_or(default_port) == self.address.port()
    }
}

/// Whether two hosts are the same: names in any case, addresses equal.
fn same_host(a: &Host, b: &Host) -> bool {
    match (a, b) {
        (Host::Name(a), Host::Name(b)) => a.eq_ignore_ascii_case(b),
        (Host::Ip(a), Host::Ip(b)) => a == b,
        _ => false,
    }
}

/// Where a request's new upstream connections go, and the name their TLS gives, when that is
/// not what its URI's authority says (as curl's `--connect-to`): a request extension that
/// [`Client`] honours on every path. The URI's authority is still what the request says
/// (`Host`, HTTP/2's `:authority`); connections are dialed to [`address`](Self::address)
/// (only to a [`DialOnly`]'s addresses when it has one too), and TLS sends
/// [`server_name`](Self::server_name) as SNI and verifies the certificate against it.
/// [`Mitm`](super::Mitm) puts one on every intercepted request: the `CONNECT`'s destination,
/// and the name the client's TLS asked for.
///
/// A request whose `ConnectTo` names other than its URI does gets connections of their own,
/// pooled apart per route (per thread, the 64 routes used last): a request for
/// the same URI with no route, or with another one, never reuses them.
///
/// ```
/// use rama::{Address, Host, http::{Body, ConnectTo}};
///
/// let mut request = http::Request::get("https://front.test/").body(Body::empty()).unwrap();
/// let address: Address = "127.0.0.1:443".parse().unwrap();
/// request
///     .extensions_mut()
///     .insert(ConnectTo::new(address).server_name(Host::Name("origin.test".into())));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConnectTo {
    address: Address,
    server_name: Host,
}

/// How many routes ([`ConnectTo`]s that differ from their URIs) each thread keeps a pool for.
const ROUTE_POOLS: usize = 64;

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
    /// Whether `request` goes out on the client's own HTTP/1.1 path (`h1_pool`): a plain
    /// `http://` request asking for no upgrade, from a client not set to HTTP/2 only. The rest
    /// goes through hyper-util's pool (an upgrade there, whose connections hand upgrades
    /// over), which dials by the URI alone.
    pub(crate) fn takes_own_http1_path<B>(&self, request: &Request<B>) -> bool {
        !self.config.builder.http2_only
            && request.uri().scheme() == Some(&Scheme::HTTP)
            && headers::upgrade_of(request.headers()).is_none()
            // Its idle lists are keyed by the URI's authority as well.
            && route(request).is_none()
    }

    /// Sends `request` through this thread's pool (built on the thread's first request); an
    /// upgrade that must stay HTTP/1.1 through a pool of its own (rare, and its connection
    /// leaves any pool once upgraded).
    fn send(&self, request: Request<Body>) -> legacy::ResponseFuture {
        if let Some(connector) = &self.config.upgrade_connector
            && headers::upgrade_of(request.headers()).is_some()
        {
            return self.config.pool_over(connector.clone()).request(request);
        }
        if let Some(route) = route(&request) {
            let route = route.clone();
            return self.route_pool(route).request(request);
        }
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

    /// This thread's pool for `route` (built on its first request; the route used longest
    /// ago leaves when there are [`ROUTE_POOLS`], its idle connections with it).
    fn route_pool(&self, route: ConnectTo) -> Pool {
        ROUTES
            .try_with(|routes| {
                let mut routes = routes.borrow_mut();
                let key = Arc::as_ptr(&self.config);
                if let Some(at) = routes
                    .iter()
                    .position(|(k, r, _)| k.as_ptr() == key && *r == route)
                {
                    let used = routes.remove(at);
                    let pool = used.2.clone();
                    routes.push(used);
                    return pool;
                }
                routes.retain(|(k, _, _)| k.strong_count() > 0);
                if routes.len() >= ROUTE_POOLS {
                    routes.remove(0);
                }
                let pool = self.config.pool();
                routes.push((Arc::downgrade(&self.config), route, pool.clone()));
                pool
            })
            .unwrap_or_else(|_| self.config.pool())
    }
}

/// The request's [`ConnectTo`], when it names other than the URI does.
fn route<B>(request: &Request<B>) -> Option<&ConnectTo> {
    request
        .extensions()
        .get::<ConnectTo>()
        .filter(|to| !to.is_uri(request.uri()))
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
        let config = &self.config.builder;
        // The upstream's version is the client's, whatever the downstream spoke.
        *request.version_mut() = if config.http2_only {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        let removed = headers::remove_hop_by_hop_but_upgrade(request.headers_mut());
        let may_be_http2 = config.http2_only || request.uri().scheme() == Some(&Scheme::HTTPS);
        if may_be_http2 {
            // Trailers pass on hyper's paths. An `https://` upstream turns out HTTP/2 or not
            // at the handshake (ALPN), after the request is made, so one that chose HTTP/1.1
            // is told too: harmless, as hyper's HTTP/1.1 path passes trailers back. Plain
            // HTTP/1.1 upstreams are not told (`TE` there is the connection's, to be named in
            // `Connection` too); the trailers they send anyway pass on rama's own path.
            removed.restore_te_trailers(request.headers_mut());
        }
        let refused = if removed.coding == TransferCoding::Unsupported {
            Some(Error::request_transfer_coding())
        } else if request.uri().authority().is_none() {
            authority_from_host(&mut request).err()
        } else {
            None
        };
        if let Some(error) = refused {
            return ResponseFuture {
                inner: Inner::Failed(Some(error)),
                deadline: None,
                upload: None,
                read_timeout: None,
                retry: None,
                dial: None,
            };
        }
        if self.takes_own_http1_path(&request) {
            let (parts, body) = request.into_parts();
            return ResponseFuture {
                inner: Inner::Http1(Box::pin(h1_pool::send(
                    self.config.h1.clone(),
                    parts,
                    body,
                    config.response_timeout,
                ))),
                deadline: None,
                upload: None,
                read_timeout: None,
                retry: None,
                dial: None,
            };
        }
        // hyper's HTTP/1.1 writes each line of a name apart: the cookies an HTTP/2 request
        // split over several go on one, as rama's own path writes them (`codec`); an
        // `https://` upstream that turns out HTTP/2 by ALPN takes the one line as well. And
        // it reads `1xx` heads past, telling only a callback the request carries.
        if !config.http2_only {
            headers::join_cookies(request.headers_mut());
            super::server::interim::relay_through_hyper(&mut request);
        }
        let retry = if may_be_http2 {
            if config.http2_only {
                // `:authority` is the URI's, and a `Host` that differs makes the request
                // malformed (RFC 9113 8.3.1): it cannot be said over HTTP/2 here.
                request.headers_mut().remove(header::HOST);
            } else {
                drop_matching_host(&mut request);
            }
            replay(&request).map(|request| {
                Box::new(Retry {
                    client: self.clone(),
                    request,
                    left: RETRIES,
                })
            })
        } else {
            None
        };
        // A body that streams (one that cannot be copied) is bounded from its last move, not
        // from the start (`body_timeout.rs`), and when it fails, the request failed by the
        // client's doing, not the upstream's. (Without a response timeout no deadline asks
        // the upload when it moved.)
        let upload = if request.body().try_clone().is_none() {
            let upload = Arc::new(Upload::new(config.response_timeout.unwrap_or_default()));
            let body = std::mem::take(request.body_mut());
            *request.body_mut() = Body::new(Tracked::new(body, upload.clone()));
            Some(upload)
        } else {
            None
        };
        let dial = Some(Dial::of(request.extensions())).filter(|dial| !dial.is_free());
        ResponseFuture {
            inner: Inner::Pool(self.send(request)),
            deadline: config
                .response_timeout
                .map(|d| Box::pin(tokio::time::sleep(d))),
            upload,
            read_timeout: config.response_timeout,
            retry,
            dial,
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
    /// [`DEFAULT_RESPONSE_TIMEOUT`]; `None` waits forever). A request body that streams
    /// moves the bound: it runs from the upload's last move (a piece from the client, or taken
    /// by the upstream) and from its end, so an upload may take any time while it moves; a
    /// client that sends no more of it for the timeout fails the request with
    /// [`Error::is_request_body`] and [`Error::is_timeout`]. A response body fails when it
    /// waits that long for the upstream's next bytes (as nginx's `proxy_read_timeout`: an
    /// event stream that is silent longer needs a longer timeout, or none).
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
        let tls = self.tls.take();
        let upgrade_connector = tls
            .as_ref()
            .and_then(crate::tls::Connector::without_h2)
            .map(|tls| Connector::new(Some(tls), self.connect_timeout));
        let connector = Connector::new(tls, self.connect_timeout);
        let h1 = Arc::new(h1_pool::Settings {
            connector: connector.clone(),
            idle_timeout: self.pool_idle_timeout,
            max_idle: self.pool_max_idle_per_host,
        });
        Client {
            config: Arc::new(Config {
                builder: self,
                connector,
                upgrade_connector,
                h1,
            }),
        }
    }
}

// ===== impl Config =====

impl Config {
    /// A fresh pool with these settings.
    fn pool(&self) -> Pool {
        self.pool_over(self.connector.clone())
    }

    /// A fresh pool with these settings that dials through `connector`.
    fn pool_over(&self, connector: Connector) -> Pool {
        let builder = &self.builder;
        legacy::Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(builder.pool_idle_timeout)
            .pool_max_idle_per_host(builder.pool_max_idle_per_host)
            .http2_only(builder.http2_only)
            // Each stream's window bounds what one client that stops reading leaves buffered
            // here; the connection's is as large as HTTP/2 allows, so that such streams never
            // use up the window that every other stream on the connection shares (with
            // hyper's 5 MiB, three stalled downloads froze all traffic to the upstream).
            // Go's HTTP/2 client does the same (4 MiB and 1 GiB).
            .http2_initial_stream_window_size(H2_STREAM_WINDOW)
            .http2_initial_connection_window_size(H2_CONNECTION_WINDOW)
            .build(connector)
    }
}

/// The flow-control window of each HTTP/2 stream to an upstream (hyper's default is 2 MiB).
const H2_STREAM_WINDOW: u32 = 1024 * 1024;

/// The flow-control window of an HTTP/2 connection to an upstream: the protocol's largest.
const H2_CONNECTION_WINDOW: u32 = (1 << 31) - 1;

/// Gives a request whose URI has no authority (origin-form, `/path`) the one its `Host`
/// names, over `http`.
fn authority_from_host(request: &mut Request<Body>) -> Result<(), Error> {
    let no_host =
        || Error::upstream("the request names no host: no authority in its URI, no Host".into());
    let host = request.headers().get(header::HOST).ok_or_else(no_host)?;
    let authority = Authority::try_from(host.as_bytes()).map_err(|e| Error::upstream(e.into()))?;
    let mut parts = std::mem::take(request.uri_mut()).into_parts();
    parts.scheme = Some(parts.scheme.unwrap_or(Scheme::HTTP));
    parts.authority = Some(authority);
    parts.path_and_query = Some(
        parts
            .path_and_query
            .unwrap_or(uri::PathAndQuery::from_static("/")),
    );
    *request.uri_mut() = Uri::from_parts(parts).map_err(|e| Error::upstream(e.into()))?;
    Ok(())
}

/// Drops `Host` when it names the URI's authority (the same host, any case, and the same
/// port, the scheme's default when either has none). A `Host` for somewhere else stays.
fn drop_matching_host(request: &mut Request<Body>) {
    let uri = request.uri();
    let Some(authority) = uri.authority() else {
        return;
    };
    let default_port = if uri.scheme() == Some(&Scheme::HTTPS) {
        443
    } else {
        80
    };
    let matches = |host: &HeaderValue| {
        Authority::try_from(host.as_bytes()).is_ok_and(|host| {
            host.host().eq_ignore_ascii_case(authority.host())
                && host.port_u16().unwrap_or(default_port)
                    == authority.port_u16().unwrap_or(default_port)
        })
    };
    if request.headers().get(header::HOST).is_some_and(matches) {
        request.headers_mut().remove(header::HOST);
    }
}

/// A copy of `request` to send again if the upstream refuses it unprocessed: only for an
/// idempotent method or no body, and a body that can be sent twice (not a stream).
fn replay(request: &Request<Body>) -> Option<Request<Body>> {
    let body = request.body().try_clone()?;
    if !request.method().is_idempotent() && !body.is_empty() {
        return None;
    }
    let mut copy = Request::new(body);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    Some(copy)
}

/// Whether an HTTP/2 upstream said it did not process the request: its stream was above the
/// last stream id of a graceful `GOAWAY` (`NO_ERROR`: the streams at or below it are served
/// to the end, so only the unprocessed ones fail this way), or was refused (`REFUSED_STREAM`).
fn unprocessed(error: &legacy::Error) -> bool {
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(h2) = cause.downcast_ref::<h2::Error>() {
            return h2.is_remote()
                && match h2.reason() {
                    Some(h2::Reason::NO_ERROR) => h2.is_go_away(),
                    Some(h2::Reason::REFUSED_STREAM) => h2.is_reset(),
                    _ => false,
                };
        }
        source = cause.source();
    }
    false
}

/// What a request that may go to HTTP/2 needs to be sent again.
struct Retry {
    client: Client,
    /// The copy to send next.
    request: Request<Body>,
    /// How many more times.
    left: u8,
}

/// What a [`ResponseFuture`] waits for.
enum Inner {
    /// hyper-util's pool (HTTP/2, TLS where ALPN decides, and upgrades).
    Pool(legacy::ResponseFuture),
    /// This thread's plain HTTP/1.1 connections.
    Http1(Pin<Box<dyn Future<Output = Result<Response<Body>, Error>> + Send>>),
    /// A request that could not be sent.
    Failed(Option<Error>),
}

/// The response of a [`Client`] call.
pub struct ResponseFuture {
    inner: Inner,
    deadline: Option<Pin<Box<Sleep>>>,
    /// How the request's body moves, when it streams: it moves the deadline, and when it
    /// failed, the request failed by the client's doing.
    upload: Option<Arc<Upload>>,
    /// How long the response body may wait for the upstream's next bytes.
    read_timeout: Option<Duration>,
    retry: Option<Box<Retry>>,
    /// Where the request's new connections may go on hyper-util's path, whose pool dials
    /// with the URI alone.
    dial: Option<Dial>,
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            let inner = match &mut this.inner {
                Inner::Pool(inner) => inner,
                Inner::Http1(inner) => match inner.as_mut().poll(cx) {
                    Poll::Ready(result) => return Poll::Ready(result),
                    Poll::Pending => break,
                },
                Inner::Failed(error) => {
                    return Poll::Ready(Err(error.take().expect("polled after completion")));
                }
            };
            // The response first: one that is ready wins over a deadline that passed meanwhile.
            let mut inner = Pin::new(inner);
            let polled = match &this.dial {
                Some(dial) => connect::dial_while(dial, || inner.as_mut().poll(cx)),
                None => inner.poll(cx),
            };
            let error = match polled {
                Poll::Ready(Ok(mut response)) => {
                    // As rama's own HTTP/1.1 path does while parsing (there the fields never
                    // reach the map): a `101` keeps what its upgrade needs.
                    let removed = if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                        headers::remove_hop_by_hop_but_upgrade(response.headers_mut())
                    } else {
                        headers::remove_hop_by_hop_noting(response.headers_mut())
                    };
                    if removed.coding == TransferCoding::Unsupported {
                        return Poll::Ready(Err(Error::upstream(Box::new(
                            super::h1::ParseError::TransferCoding,
                        ))));
                    }
                    // hyper reads the chunks and keeps the fields as they came.
                    removed
                        .coding
                        .drop_length_beside_chunks(response.headers_mut());
                    let timeout = this.read_timeout;
                    // A `204` or `304` has no content (RFC 9110 6.4.1): what an HTTP/2
                    // upstream sent after one anyway would reach an HTTP/2 client as a
                    // malformed stream (hyper's HTTP/1.1 client reads none already).
                    let no_content = super::h1::codec::status_has_no_length(response.status())
                        || response.status() == StatusCode::NOT_MODIFIED;
                    return Poll::Ready(Ok(response.map(|body| {
                        if no_content {
                            return Body::empty();
                        }
                        let body = Body::from(body);
                        match timeout {
                            Some(timeout) if !http_body::Body::is_end_stream(&body) => {
                                Body::new(ReadTimeout::new(body, timeout))
                            }
                            _ => body,
                        }
                    })));
                }
                Poll::Ready(Err(error)) => {
                    if let Some(failure) = this.upload.as_deref().and_then(Upload::take_failure) {
                        return Poll::Ready(Err(Error::request_body(failure)));
                    }
                    error
                }
                Poll::Pending => break,
            };
            let retry = match this.retry.as_mut() {
                Some(retry) if retry.left > 0 && unprocessed(&error) => retry,
                _ => return Poll::Ready(Err(Error::upstream(error.into()))),
            };
            retry.left -= 1;
            let Some(next) = replay(&retry.request) else {
                return Poll::Ready(Err(Error::upstream(error.into())));
            };
            let request = std::mem::replace(&mut retry.request, next);
            tracing::debug!(uri = %request.uri(), error = %crate::error::Chain(&error), "http client: the upstream did not process the request, sending it again");
            this.inner = Inner::Pool(retry.client.send(request));
        }
        while let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            let passed = deadline.deadline().into_std();
            match this
                .upload
                .as_ref()
                .map(|upload| (upload, upload.verdict(passed)))
            {
                Some((_, Verdict::Later(next))) => deadline.as_mut().reset(next.into()),
                Some((upload, Verdict::Stalled)) => {
                    return Poll::Ready(Err(Error::request_body(upload.stalled())));
                }
                _ => return Poll::Ready(Err(Error::timeout())),
            }
        }
        Poll::Pending
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, uri: &str, host: &str, body: Body) -> Request<Body> {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, host)
            .body(body)
            .unwrap()
    }

    #[test]
    fn a_host_naming_the_uri_is_dropped_and_another_stays() {
        for (uri, host, dropped) in [
            ("http://Example.com/", "example.com:80", true),
            ("https://example.com/", "EXAMPLE.com", true),
            ("http://127.0.0.1:8080/", "127.0.0.1:8080", true),
            ("http://127.0.0.1:8080/", "127.0.0.1", false),
            ("https://example.com/", "front.example", false),
        ] {
            let mut request = request("GET", uri, host, Body::empty());
            drop_matching_host(&mut request);
            assert_eq!(
                request.headers().contains_key(header::HOST),
                !dropped,
                "{uri} {host}"
            );
        }
    }

    #[test]
    fn a_route_naming_what_the_uri_does_needs_no_pool_of_its_own() {
        let to = |address: &str| ConnectTo::new(address.parse().unwrap());
        let uri: Uri = "https://Localhost/".parse().unwrap();
        assert!(to("localhost:443").is_uri(&uri));
        assert!(!to("127.0.0.1:443").is_uri(&uri));
        assert!(!to("localhost:8443").is_uri(&uri));
        let other = Host::Name("other.test".into());
        assert!(!to("localhost:443").server_name(other).is_uri(&uri));
        assert!(to("[::1]:80").is_uri(&"http://[::1]/".parse().unwrap()));
    }

    #[test]
    fn an_origin_form_request_takes_its_authority_from_host() {
        let mut request = request("GET", "/a?b", "example.com:8080", Body::empty());
        authority_from_host(&mut request).unwrap();
        assert_eq!(request.uri(), "http://example.com:8080/a?b");
        let mut request = Request::new(Body::empty());
        assert!(authority_from_host(&mut request).is_err());
    }

    #[test]
    fn only_a_body_that_can_go_twice_is_kept_for_a_retry() {
        let get = request("GET", "http://a/", "a", Body::full("x"));
        let copy = replay(&get).unwrap();
        assert_eq!(copy.headers()[header::HOST], "a");
        assert!(replay(&request("POST", "http://a/", "a", Body::empty())).is_some());
        // Not idempotent and with a body: the upstream might act twice.
        assert!(replay(&request("POST", "http://a/", "a", Body::full("x"))).is_none());
        // A stream cannot be sent again.
        let stream = Body::new(http_body_util::Full::new(bytes::Bytes::from_static(b"x")));
        assert!(replay(&request("PUT", "http://a/", "a", stream)).is_none());
    }
}
