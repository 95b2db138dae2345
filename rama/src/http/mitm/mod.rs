//! [`Mitm`]: TLS interception behind [`http::Server`](super::Server), so that the services
//! after it see (and may change, answer or forward) the requests inside HTTPS `CONNECT`s.
//!
//! For each `CONNECT host:port` the stage
//!
//! 1. answers `200` at once and takes the client's stream when hyper hands it over;
//! 2. peeks at the first bytes: a TLS handshake goes on; anything else is closed, or relayed
//!    to `host:port` as plain bytes with [`NotTls::Relay`];
//! 3. terminates the client's TLS with a certificate for the name it asked for (its SNI, else
//!    the `CONNECT`'s host, as for IP addresses), minted by the
//!    [interception CA](crate::tls::intercept::Authority), offering ALPN `h2` and
//!    `http/1.1`;
//! 4. serves the HTTP inside with rama's [`http::Server`](super::Server), on the outer
//!    connection's own task set ([`spawn`](super::server::spawn)), and hands each request to
//!    the service behind the stage in absolute form, `https://authority/path` with the
//!    authority the client said (`Host`, `:authority`), and a [`ConnectTo`](super::ConnectTo)
//!    that keeps its connections to the `CONNECT`'s destination, their TLS naming the
//!    client's SNI: the same service that gets the plain requests.
//!
//! A `CONNECT` whose target [`ForwardProxy`] refuses (not authority-form `host:port`, port 0)
//! gets the forward proxy's `400`.
//!
//! A `CONNECT` whose target [`ForwardProxy`] refuses (not authority-form `host:port`, port 0)
//! gets the forward proxy's `400`.
//!
//! Requests that are not `CONNECT` (absolute-form `http://`) pass through unchanged. Hosts on
//! the [pass-through](Mitm::pass_through) list, or that a [predicate](Mitm::pass_through_if)
//! picks, are tunnelled untouched through the tunnel service ([`Target`] by default, or any
//! tunnel stack such as [`egress`](crate::egress)): the client keeps the origin's own
//! certificate.
//!
//! The service behind forwards with an [`http::Client`](super::Client) whose
//! [`tls::Connector`] verifies the origin (the webpki roots, or a CA
//! of your own); an origin that does not verify is answered `502`.
//!
//! ```no_run
//! use rama::{http, proxy, tcp, tls};
//! use std::sync::Arc;
//!
//! # async fn run() -> Result<(), rama::BoxError> {
//! let authority = Arc::new(tls::intercept::Authority::load_or_create("ca".as_ref())?);
//! let mitm = http::Mitm::new(authority)?.pass_through(["bank.example"]);
//! let client = http::Client::builder().tls(tls::Connector::webpki_roots()).build();
//! // curl --proxy-cacert ca/ca.pem --cacert ca/ca.pem -x http://127.0.0.1:8080 https://example.com/
//! proxy! { tcp::Server::bind("127.0.0.1:8080") => http::Server::new() => mitm => client }
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Readiness
//!
//! The service behind is called for every request of every intercepted connection, and is
//! never cloned: it sits in a ready-aware shared cell (as behind `http::Server`), and each
//! request waits there for its readiness. `Mitm` itself is therefore always ready; a limit
//! belongs before it.

pub mod error;
mod intercept;

pub use self::error::Error;
pub use self::intercept::{AlreadyOpen, Tunnel};

use self::intercept::Intercept;
use super::{Body, ConnFacts, DialOnly, ForwardProxy, ForwardProxyService, forward};
use crate::{
    Address, BoxError, Host, Target,
    egress::Rules,
    error::Chain,
    shared::{Call, Shared},
    tls::{self, intercept::Authority},
    tunnel,
};
use ::http::{Method, Request, Response, StatusCode};
use rustls::ServerConfig;
use std::{
    fmt,
    future::{Future, poll_fn},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tower::{Layer, Service, ServiceExt};

/// How long a client may take, after the `200`, to send its first bytes and finish its TLS
/// handshake, unless told otherwise.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The interception stage (`HttpRequest` → `HttpRequest`): see the [module docs](self).
///
/// Cheap to clone (one per core with [`tcp::PerCore`](crate::tcp::PerCore)); clones share
/// the CA and its certificate cache.
#[derive(Clone)]
pub struct Mitm<T = Target> {
    config: Arc<Config>,
    tunnel: T,
}

/// What a client that does not speak TLS inside an intercepted tunnel gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotTls {
    /// The tunnel is closed (the default): nothing uninspected goes out.
    #[default]
    Close,
    /// The bytes are relayed to the `CONNECT`'s destination untouched, through the tunnel
    /// service.
    Relay,
}

/// The service of [`Mitm`] over `S` (the service for the requests) and `T` (the tunnel
/// service for pass-through hosts and plain relays).
pub struct MitmService<S, T = Target> {
    inner: Shared<S>,
    config: Arc<Config>,
    tunnel: T,
    pass_through: ForwardProxyService<T>,
}

/// The response future of [`MitmService`] (boxed and `!Send`: it runs on the connection's
/// task, like [`ForwardProxy`]'s).
pub type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>>>>;

type Predicate = Arc<dyn Fn(&Address) -> bool + Send + Sync>;

/// What every clone of the stage shares.
pub(crate) struct Config {
    pub(crate) authority: Arc<Authority>,
    /// The base TLS configuration: each tunnel's copy names its `CONNECT` host as the
    /// fallback for clients without SNI.
    pub(crate) tls: Arc<ServerConfig>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) not_tls: NotTls,
    pub(crate) server: super::Server,
    rules: Option<Rules>,
    hosts: Vec<Box<str>>,
    predicate: Option<Predicate>,
}

// ===== impl Mitm =====

impl Mitm {
    /// Intercepts with certificates minted by `authority`; pass-through hosts and plain
    /// relays go through [`Target::requested`].
    pub fn new(authority: Arc<Authority>) -> Result<Self, tls::Error> {
        Ok(Self {
            config: Arc::new(Config {
                tls: Arc::new(authority.server_config(None)?),
                authority,
                handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
                not_tls: NotTls::Close,
                server: super::Server::new(),
                rules: None,
                hosts: Vec::new(),
                predicate: None,
            }),
            tunnel: Target::requested(),
        })
    }
}

impl<T> Mitm<T> {
    fn config_mut(&mut self) -> &mut Config {
        // Configured before the stage is cloned into servers; a shared one is copied.
        if Arc::get_mut(&mut self.config).is_none() {
            self.config = Arc::new(self.config.duplicate());
        }
        Arc::get_mut(&mut self.config).expect("just made unique")
    }

    /// Tunnels these hosts untouched (exact names or addresses, any case; a leading `*.`
    /// matches every subdomain): their clients keep the origin's own certificate.
    pub fn pass_through<I, H>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = H>,
        H: AsRef<str>,
    {
        let config = self.config_mut();
        config.hosts.extend(
            hosts
                .into_iter()
                .map(|h| h.as_ref().to_ascii_lowercase().into_boxed_str()),
        );
        self
    }

    /// Tunnels untouched every destination `predicate` picks (besides the
    /// [`pass_through`](Self::pass_through) list).
    pub fn pass_through_if<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&Address) -> bool + Send + Sync + 'static,
    {
        self.config_mut().predicate = Some(Arc::new(predicate));
        self
    }

    /// What a client that does not speak TLS in the tunnel gets (default [`NotTls::Close`]).
    pub fn not_tls(mut self, policy: NotTls) -> Self {
        self.config_mut().not_tls = policy;
        self
    }

    /// Bounds the wait for the client's first bytes and then its TLS handshake (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config_mut().handshake_timeout = timeout;
        self
    }

    /// The HTTP server settings for the intercepted connections (limits, timeouts); default
    /// [`http::Server::new`](super::Server::new).
    pub fn server(mut self, server: super::Server) -> Self {
        self.config_mut().server = server;
        self
    }

    /// Applies egress `rules` to the destinations of intercepted `CONNECT`s and of
    /// absolute-form requests (`403` when denied), before anything is answered or forwarded:
    /// the service behind dials them itself. Pass-through hosts and plain relays are judged
    /// by the [tunnel](Self::tunnel) service (an [`EgressLayer`](crate::egress::EgressLayer)
    /// there). As with [`ForwardProxy::rules`], a name that needs an address to be judged is
    /// resolved, every address must pass, and the requests carry those addresses as a
    /// [`DialOnly`], which [`http::Client`](super::Client) dials instead of
    /// resolving the name again (a service of your own behind the stage should honour it).
    pub fn rules(mut self, rules: Rules) -> Self {
        self.config_mut().rules = Some(rules);
        self
    }

    /// Tunnels pass-through hosts and plain relays through `tunnel` (a tunnel terminal or
    /// stack, such as `EgressLayer::new(rules).layer(Target::requested())`).
    pub fn tunnel<U>(self, tunnel: U) -> Mitm<U> {
        Mitm {
            config: self.config,
            tunnel,
        }
    }

    /// The interception CA.
    pub fn authority(&self) -> &Arc<Authority> {
        &self.config.authority
    }
}

impl<S, T: Clone> Layer<S> for Mitm<T> {
    type Service = MitmService<S, T>;

    fn layer(&self, inner: S) -> Self::Service {
        MitmService {
            inner: Shared::new(inner),
            config: self.config.clone(),
            tunnel: self.tunnel.clone(),
            pass_through: ForwardProxy::new().layer(self.tunnel.clone()),
        }
    }
}

impl<T> fmt::Debug for Mitm<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mitm")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

// ===== impl Config =====

impl Config {
    fn duplicate(&self) -> Self {
        Self {
            authority: self.authority.clone(),
            tls: self.tls.clone(),
            handshake_timeout: self.handshake_timeout,
            not_tls: self.not_tls,
            server: self.server.clone(),
            rules: self.rules.clone(),
            hosts: self.hosts.clone(),
            predicate: self.predicate.clone(),
        }
    }

    fn passes_through(&self, destination: &Address) -> bool {
        let listed = match destination.host() {
            Host::Name(name) => {
                let name = name.to_ascii_lowercase();
                self.hosts.iter().any(|host| match host.strip_prefix("*.") {
                    Some(parent) => name
                        .strip_suffix(parent)
                        .is_some_and(|sub| sub.ends_with('.')),
                    None => **host == *name,
                })
            }
            Host::Ip(ip) => {
                let ip = ip.to_string();
                self.hosts
                    .iter()
                    .any(|host| host.trim_start_matches('[').trim_end_matches(']') == ip)
            }
        };
        listed
            || self
                .predicate
                .as_ref()
                .is_some_and(|pick| pick(destination))
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("pass_through", &self.hosts)
            .field("predicate", &self.predicate.is_some())
            .field("not_tls", &self.not_tls)
            .field("rules", &self.rules.is_some())
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

// ===== impl MitmService =====

impl<S, T, B> Service<Request<Body>> for MitmService<S, T>
where
    S: Service<Request<Body>, Response = Response<B>> + 'static,
    S::Error: Into<BoxError>,
    S::Future: 'static,
    B: Into<Body> + 'static,
    T: Service<tunnel::Request<forward::ConnectHandshake>>
        + Service<tunnel::Request<AlreadyOpen<Tunnel>>>
        + Clone
        + 'static,
    <T as Service<tunnel::Request<forward::ConnectHandshake>>>::Error: Into<BoxError>,
    <T as Service<tunnel::Request<forward::ConnectHandshake>>>::Future: 'static,
    <T as Service<tunnel::Request<AlreadyOpen<Tunnel>>>>::Error: Into<BoxError>,
    <T as Service<tunnel::Request<AlreadyOpen<Tunnel>>>>::Future: 'static,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    /// Always ready: each request waits for the service behind in its own future.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> ResponseFuture {
        if request.method() != Method::CONNECT {
            let shared = self.inner.clone();
            let config = self.config.clone();
            return Box::pin(async move {
                let mut request = request;
                let uri = request.uri();
                if let (Some(rules), Some(host)) = (&config.rules, uri.host()) {
                    let port = uri.port_u16().unwrap_or(80);
                    match forward::judge(rules, host, port).await {
                        Ok(judged) => pin(&mut request, judged),
                        Err(denied) => {
                            let peer = request
                                .extensions()
                                .get::<ConnFacts>()
                                .map(ConnFacts::peer_addr);
                            tracing::warn!(peer = %forward::Peer(peer), %uri, "mitm: denied by the egress rules");
                            return Ok(denied);
                        }
                    }
                }
                Ok(call_shared(shared, request).await)
            });
        }
        let facts = request.extensions().get::<ConnFacts>().cloned();
        // The forward proxy's check (an authority-form target with a port 1-65535, no
        // content): what `http_proxy` refuses is not intercepted either.
        let destination = forward::connect_destination(&request);
        let (facts, destination) = match (facts, destination) {
            (Some(facts), Ok(destination)) => (facts, destination),
            (None, _) => return answer(not_behind_server()),
            // A bad `CONNECT` is answered by the forward proxy itself: `400` saying what is
            // wrong, and an HTTP/1 connection closed behind it.
            (Some(_), Err(_)) => return Box::pin(self.pass_through.clone().oneshot(request)),
        };
        if self.config.passes_through(&destination) {
            tracing::debug!(peer = %facts.peer_addr(), %destination, "mitm: passing through");
            return Box::pin(self.pass_through.clone().oneshot(request));
        }
        let mut intercept = Intercept {
            config: self.config.clone(),
            inner: self.inner.clone(),
            tunnel: self.tunnel.clone(),
            destination,
            facts,
            dial_only: None,
        };
        let Some(rules) = self.config.rules.clone() else {
            return answer(intercept.start(request));
        };
        Box::pin(async move {
            let (host, port) = (
                bare_host(&intercept.destination),
                intercept.destination.port(),
            );
            match forward::judge(&rules, &host, port).await {
                Ok(judged) => intercept.dial_only = judged,
                Err(denied) => {
                    tracing::warn!(peer = %intercept.facts.peer_addr(), destination = %intercept.destination, "mitm: denied by the egress rules");
                    return Ok(denied);
                }
            }
            Ok(intercept.start(request))
        })
    }
}

const NEEDS_SERVER: &str = "CONNECT needs http::Server in front of http::Mitm";

/// Makes `request` dial only the addresses the egress rules `judged`, when they had to
/// resolve its host: the service behind ([`http::Client`](super::Client)) would otherwise
/// resolve it again, and might get an address the rules deny (DNS rebinding).
fn pin(request: &mut Request<Body>, judged: Option<DialOnly>) {
    if let Some(judged) = judged {
        request.extensions_mut().insert(judged);
    }
}

/// The host of `address` without brackets: what a certificate and the egress rules name.
pub(crate) fn bare_host(address: &Address) -> String {
    match address.host() {
        Host::Name(name) => name.to_string(),
        Host::Ip(ip) => ip.to_string(),
    }
}

fn answer(response: Response<Body>) -> ResponseFuture {
    Box::pin(std::future::ready(Ok(response)))
}

/// Waits for the shared service's readiness, calls it, and runs the call. A failure of the
/// service behind (an [`http::Client`](super::Client) that cannot reach or verify the
/// origin) is answered here, `504` when it timed out and `502` otherwise, so that the client
/// gets a status rather than a reset stream.
pub(crate) async fn call_shared<S, B>(shared: Shared<S>, request: Request<Body>) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Into<Body>,
{
    let peer = forward::Peer(
        request
            .extensions()
            .get::<ConnFacts>()
            .map(ConnFacts::peer_addr),
    );
    let destination = request
        .uri()
        .authority()
        .map_or_else(String::new, ToString::to_string);
    let mut call = Call::new(shared, request);
    let called = poll_fn(|cx| call.poll(cx)).await;
    drop(call);
    let result = match called {
        Ok(future) => future.await.map_err(Into::into),
        Err(error) => Err(error.into()),
    };
    match result {
        Ok(response) => response.map(Into::into),
        Err(error) => match error.downcast::<super::Error>() {
            Ok(error) => forward::upstream_failed(&error, &destination, true, peer),
            Err(error) => {
                tracing::warn!(%peer, %destination, error = %Chain(&*error), "mitm: the service failed");
                forward::text(
                    StatusCode::BAD_GATEWAY,
                    format!("{destination}: {}", Chain(&*error)),
                )
            }
        },
    }
}

impl<S, T> fmt::Debug for MitmService<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MitmService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// `server::spawn` failed: the stage is not behind `http::Server`.
pub(crate) fn not_behind_server() -> Response<Body> {
    forward::text(StatusCode::INTERNAL_SERVER_ERROR, NEEDS_SERVER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(hosts: &[&str]) -> Mitm {
        let authority = Arc::new(Authority::generate("test CA").unwrap());
        Mitm::new(authority).unwrap().pass_through(hosts)
    }

    #[test]
    fn the_pass_through_list_matches_names_wildcards_and_addresses() {
        let mitm = config(&["bank.test", "*.corp.test", "127.0.0.2", "[::2]"]);
        let passes = |a: &str| mitm.config.passes_through(&a.parse().unwrap());
        assert!(passes("bank.test:443"));
        assert!(passes("BANK.test:443"));
        assert!(!passes("www.bank.test:443"));
        assert!(passes("a.corp.test:443"));
        assert!(!passes("corp.test:443"));
        assert!(!passes("evilcorp.test:443"));
        assert!(passes("127.0.0.2:443"));
        assert!(passes("[::2]:443"));
        assert!(!passes("127.0.0.1:443"));
    }

    #[test]
    fn a_predicate_adds_to_the_list() {
        let mitm = config(&[]).pass_through_if(|a| a.port() == 8443);
        assert!(mitm.config.passes_through(&"x.test:8443".parse().unwrap()));
        assert!(!mitm.config.passes_through(&"x.test:443".parse().unwrap()));
    }
}
