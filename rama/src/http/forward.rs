//! [`ForwardProxy`]: what curl's `-x` and browsers speak to a proxy.
//!
//! - `CONNECT host:port` (authority-form only, RFC 9112 3.2.3, with a port 1-65535; any other
//!   target is `400`) becomes a [`tunnel::Request`] for the service behind the stage
//!   ([`Target`](crate::Target) by default, with any tunnel layer in between, such as
//!   [`egress`](crate::egress)): its [`ConnectHandshake`] answers `200` once the upstream is
//!   dialed and the connection becomes a byte tunnel (HTTP/1.1 and HTTP/2), or answers the
//!   dial's [`Refusal`]: `403` denied, `504` timed out, `502` otherwise. Any answer but a
//!   `2xx` or `407` ends an HTTP/1 connection (`Connection: close`, as squid does): the bytes
//!   the client sent behind the `CONNECT` were meant for the tunnel, not for this proxy.
//! - Absolute-form requests (`GET http://host/path`) are forwarded through a pooled
//!   [`Client`], bodies streaming both ways, hop-by-hop headers removed (an upgrade's
//!   `Upgrade` and `Connection: upgrade` kept: on the upstream's `101` both upgraded connections
//!   are relayed, as the [`ReverseProxy`](super::ReverseProxy) does), `Via` added, and
//!   `Host` the target's (RFC 9112 3.2.2; a request with two, or one that is not
//!   `host[:port]`, gets `400`). `OPTIONS http://host:port` (no path) goes as `OPTIONS *`
//!   (RFC 9112 3.2.4). The upstream's failures become `502` (cannot connect, closed) and `504`
//!   (timed out).
//! - With [`with_auth`](ForwardProxy::with_auth), `Proxy-Authorization: Basic` is checked
//!   first (the same checks as SOCKS5's: [`Users`](crate::socks5::auth::Users), a closure, any
//!   async service); a client without valid credentials gets `407` with `Proxy-Authenticate`.
//!   The [`User`] is recorded in the tunnel request's facts.
//!
//! Every answer rama writes itself has a short plain-text body that says what failed.

use super::{Body, Client, ConnFacts, DialOnly, headers, server, upgrade::ClientUpgrade};
use crate::{
    Address, AddressError, BoxError,
    egress::{Rules, Verdict},
    error::Chain,
    io::ResetSignal,
    socks5::auth::{Authenticator, Credentials, NoAuth, User},
    tcp,
    tunnel::{self, Handshake, Refusal},
};
use ::http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use std::{
    fmt,
    future::{Future, Ready, ready},
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tokio::sync::oneshot;
use tower::{Layer, Service, ServiceExt, util::Oneshot};

/// How long resolving a name for the egress rules may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The forward-proxy stage: takes HTTP requests, hands `CONNECT`s on as tunnel requests.
/// See the [module docs](self).
///
/// ```no_run
/// use rama::{http, proxy, socks5::auth::Users, tcp};
///
/// # async fn run() -> Result<(), rama::BoxError> {
/// let users = Users::parse(["alice:s3cret"])?;
/// proxy! {
///     tcp::Server::bind("127.0.0.1:8080")
///         => http::Server::new()
///         => http::ForwardProxy::new().with_auth(users)
///         => target
/// }
/// .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ForwardProxy<A = NoAuth> {
    client: Client,
    auth: A,
    rules: Option<Rules>,
}

/// The service of [`ForwardProxy`] over the tunnel service `S`.
///
/// `poll_ready` is the tunnel service's. `call` takes the readied tunnel service and leaves a
/// clone in its place (the `CONNECT` may first wait for its credentials to be checked), so
/// `S` must be `Clone`, as [`Target`](crate::Target) and [`Egress`](crate::egress::Egress)
/// are. Its futures are `!Send` (it runs on the connection's task, see
/// [`http::Server`](super::Server)).
#[derive(Debug, Clone)]
pub struct ForwardProxyService<S, A = NoAuth> {
    inner: S,
    client: Client,
    auth: A,
    rules: Option<Rules>,
}

/// `Proxy-Authorization: Basic` checked by `C`, a tower `Service<Credentials, Response =
/// bool>`, as [`ForwardProxy::with_auth`] sets it up.
#[derive(Clone)]
pub struct Basic<C> {
    check: C,
}

pin_project! {
    /// A pending [`Basic`] check.
    pub struct BasicCheck<C>
    where
        C: Service<Credentials>,
    {
        #[pin]
        inner: Oneshot<C, Credentials>,
    }
}

/// How an HTTP `CONNECT` is answered: `200` and a tunnel, or an error status.
pub struct ConnectHandshake {
    respond: oneshot::Sender<Response<Body>>,
    upgrade: OnUpgrade,
    destination: Address,
    /// Raised when the tunnel's HTTP/2 stream is reset or its connection goes, or watching
    /// the HTTP/1.1 client's socket (see `io::ResetSignal`; `http::Server` puts it in the
    /// request).
    reset: Option<ResetSignal>,
}

/// The accepted `CONNECT`: waits for hyper to hand over the client's stream after the `200`.
pub struct Accept {
    upgrade: Option<OnUpgrade>,
}

/// The response future of [`ForwardProxyService`].
pub type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>>>>;

// ===== impl ForwardProxy =====

impl ForwardProxy {
    /// A forward proxy without authentication or rules, with a default [`Client`].
    pub fn new() -> Self {
        Self {
            client: Client::new(),
            auth: NoAuth,
            rules: None,
        }
    }
}

impl Default for ForwardProxy {
    fn default() -> Self {
        Self::new()
    }
}

impl<A> ForwardProxy<A> {
    /// Requires `Proxy-Authorization: Basic` credentials that `check` accepts.
    pub fn with_auth<C>(self, check: C) -> ForwardProxy<Basic<C>>
    where
        C: Service<Credentials, Response = bool> + Clone,
        C::Error: Into<BoxError>,
    {
        ForwardProxy {
            client: self.client,
            auth: Basic { check },
            rules: self.rules,
        }
    }

    /// Applies egress `rules` to absolute-form requests (`403` when denied). A name that needs
    /// an address to be judged is resolved, every address must pass, and the client dials only
    /// those ([`DialOnly`]), not what another lookup would answer. `CONNECT`s are judged by an
    /// [`EgressLayer`](crate::egress::EgressLayer) behind this stage.
    pub fn rules(mut self, rules: Rules) -> Self {
        self.rules = Some(rules);
        self
    }

    /// Forwards absolute-form requests through `client`.
    pub fn client(mut self, client: Client) -> Self {
        self.client = client;
        self
    }
}

impl<S, A: Clone> Layer<S> for ForwardProxy<A> {
    type Service = ForwardProxyService<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        ForwardProxyService {
            inner,
            client: self.client.clone(),
            auth: self.auth.clone(),
            rules: self.rules.clone(),
        }
    }
}

// ===== impl ForwardProxyService =====

impl<S, A> Service<Request<Body>> for ForwardProxyService<S, A>
where
    S: Service<tunnel::Request<ConnectHandshake>> + Clone + 'static,
    S::Error: Into<BoxError>,
    S::Future: 'static,
    A: Authenticator + 'static,
    A::Future: 'static,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<Body>) -> ResponseFuture {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let client = self.client.clone();
        let auth = self.auth.clone();
        let rules = self.rules.clone();
        Box::pin(async move {
            let mut access = crate::access::Exchange::start(&request, false);
            let failed_connect_closes =
                request.method() == Method::CONNECT && request.version() < Version::HTTP_2;
            let mut response =
                handle(request, inner, client, auth, rules, access.as_deref_mut()).await;
            if failed_connect_closes && !opens_or_asks_again(response.status()) {
                // What the client sent right behind its `CONNECT` was meant for the tunnel (a
                // TLS `ClientHello`, a request): read as requests of their own, those bytes
                // would be answered and even forwarded. squid closes too. Over HTTP/2 only the
                // `CONNECT`'s stream ends.
                response = closing(response);
            }
            if let Some(mut access) = access {
                access.answered(response.status());
            }
            Ok(response)
        })
    }
}

async fn handle<S, A>(
    mut request: Request<Body>,
    inner: S,
    client: Client,
    auth: A,
    rules: Option<Rules>,
    access: Option<&mut crate::access::Exchange>,
) -> Response<Body>
where
    S: Service<tunnel::Request<ConnectHandshake>> + 'static,
    S::Error: Into<BoxError>,
    S::Future: 'static,
    A: Authenticator,
{
    let facts = request.extensions().get::<ConnFacts>().cloned();
    let peer = Peer(facts.as_ref().map(ConnFacts::peer_addr));
    let mut user = None;
    if auth.required() {
        let presented = request
            .headers()
            .get(header::PROXY_AUTHORIZATION)
            .and_then(headers::basic_credentials);
        let Some((name, password)) = presented else {
            tracing::debug!(%peer, "http proxy: no credentials, answering 407");
            return proxy_auth_required();
        };
        match auth.check(Credentials::new(name.as_str(), password)).await {
            Ok(true) => {
                let authenticated = User::new(&name);
                if let Some(access) = access {
                    access.user(authenticated.clone());
                }
                user = Some(authenticated);
            }
            Ok(false) => {
                tracing::warn!(%peer, user = %name, "http proxy: authentication failed");
                return proxy_auth_required();
            }
            Err(error) => {
                tracing::error!(%peer, error = %Chain(&*error), "http proxy: the credentials check failed");
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the credentials check failed",
                );
            }
        }
    }
    request.headers_mut().remove(header::PROXY_AUTHORIZATION);
    if request.method() == Method::CONNECT {
        connect(request, inner, facts, user).await
    } else {
        forward(request, client, rules, peer).await
    }
}

async fn connect<S>(
    mut request: Request<Body>,
    mut inner: S,
    facts: Option<ConnFacts>,
    user: Option<User>,
) -> Response<Body>
where
    S: Service<tunnel::Request<ConnectHandshake>> + 'static,
    S::Error: Into<BoxError>,
    S::Future: 'static,
{
    let Some(facts) = facts else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "CONNECT needs http::Server in front of http::ForwardProxy",
        );
    };
    let peer = facts.peer_addr();
    let destination = match connect_destination(&request) {
        Ok(destination) => destination,
        Err(error) => {
            tracing::warn!(%peer, %error, target = %request.uri(), "http proxy: bad CONNECT");
            return text(StatusCode::BAD_REQUEST, error.to_string());
        }
    };
    let mut info = facts.to_info();
    if let Some(user) = user {
        info.extensions_mut().insert(user);
    }
    let (respond, answer) = oneshot::channel();
    // A tunnel's client end may come where the relay does not look (an HTTP/2 stream's
    // reset; an HTTP/1.1 client's TCP `RST` while the relay waits on the upstream both
    // ways): `http::Server` put the `io::ResetSignal` that tells it in the request.
    let reset = request.extensions().get::<ResetSignal>().cloned();
    let handshake = ConnectHandshake {
        respond,
        upgrade: hyper::upgrade::on(&mut request),
        destination: destination.clone(),
        reset,
    };
    tracing::debug!(%peer, %destination, "http proxy: CONNECT");
    let tunnel = inner.call(tunnel::Request::new(destination.clone(), handshake, info));
    let log_destination = destination.clone();
    let spawned = server::spawn(async move {
        match tunnel.await {
            Ok(_) => {
                tracing::debug!(%peer, destination = %log_destination, "http proxy: tunnel closed")
            }
            Err(error) => {
                let error: BoxError = error.into();
                if crate::error::is_peer_reset(&*error) {
                    // A peer's reset (it has its access line): nothing failed here.
                    tracing::debug!(%peer, destination = %log_destination, error = %Chain(&*error), "http proxy: tunnel reset");
                } else {
                    tracing::warn!(%peer, destination = %log_destination, error = %Chain(&*error), "http proxy: tunnel failed");
                }
            }
        }
    });
    if spawned.is_err() {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "CONNECT needs http::Server in front of http::ForwardProxy",
        );
    }
    match answer.await {
        Ok(response) => response,
        Err(_) => text(
            StatusCode::BAD_GATEWAY,
            format!("the tunnel to {destination} failed before it opened"),
        ),
    }
}

/// Where a `CONNECT` goes: its target authority-form `host:port` only (RFC 9112 3.2.3; an
/// HTTP/2 `CONNECT` has only `:authority`, which reads the same), with a port a connection
/// can go to, and no content announced ([`BadConnect::Content`]). [`Mitm`](super::Mitm) asks
/// the same of the `CONNECT`s it intercepts.
pub(crate) fn connect_destination<B>(request: &Request<B>) -> Result<Address, BadConnect> {
    let headers = request.headers();
    // `0` announces nothing, and takes nothing from the tunnel.
    if headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|length| length.as_bytes().trim_ascii() != b"0")
    {
        return Err(BadConnect::Content);
    }
    let target = request.uri();
    let authority = match target.authority() {
        Some(authority) if target.scheme().is_none() && target.path_and_query().is_none() => {
            authority
        }
        _ => return Err(BadConnect::NotAuthorityForm),
    };
    let destination: Address = authority.as_str().parse().map_err(BadConnect::Address)?;
    if destination.port() == 0 {
        return Err(BadConnect::PortZero);
    }
    Ok(destination)
}

async fn forward(
    mut request: Request<Body>,
    mut client: Client,
    rules: Option<Rules>,
    peer: Peer,
) -> Response<Body> {
    let uri = request.uri();
    let (host, port) = match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(host)) => (host.to_owned(), uri.port_u16().unwrap_or(80)),
        (Some("https"), _) => {
            return text(
                StatusCode::BAD_REQUEST,
                "https:// URLs go through CONNECT, not absolute-form",
            );
        }
        _ => {
            return text(
                StatusCode::BAD_REQUEST,
                "this is a proxy: send absolute-form requests (GET http://host/path) or CONNECT",
            );
        }
    };
    let destination = format!("{host}:{port}");
    if let Err(bad) = headers::single_host(request.headers()) {
        tracing::debug!(%peer, %destination, reason = bad.message(), "http proxy: bad Host, answering 400");
        return bad_request_closing(request.version(), bad.message());
    }
    if let Some(answer) = max_forwards(&mut request) {
        tracing::debug!(%peer, %destination, method = %request.method(), "http proxy: Max-Forwards reached 0, answering for the target");
        return answer;
    }
    // The target names the host, and the origin gets that one as `Host` (RFC 9112 3.2.2: the
    // client's is replaced; the client writes the target's): forwarded as it came, a `Host`
    // for another site on the same address would reach what the egress rules never judged.
    request.headers_mut().remove(header::HOST);
    if let Some(rules) = rules {
        match judge(&rules, &host, port).await {
            Ok(Some(judged)) => {
                tracing::debug!(%peer, %destination, judged = ?judged.addresses(), "http proxy: dialing only the addresses the rules judged");
                request.extensions_mut().insert(judged);
            }
            Ok(None) => {}
            Err(response) => {
                tracing::warn!(%peer, %destination, "http proxy: denied by the egress rules");
                return response;
            }
        }
    }
    let version = request.version();
    // An upgrade (WebSocket) keeps the headers that ask for it, and the client's side of it is
    // taken before the request goes, to be joined with the upstream's on its `101`.
    let client_upgrade = ClientUpgrade::take(&mut request);
    let removed = headers::remove_hop_by_hop_but_upgrade(request.headers_mut());
    if let Err(error) = removed.pass_on(request.headers_mut()) {
        return upstream_failed(&error, &destination, true, peer);
    }
    headers::append_via(request.headers_mut(), version);
    tracing::debug!(%peer, method = %request.method(), uri = %request.uri(), "http proxy: forwarding");
    match ServiceExt::<Request<Body>>::ready(&mut client).await {
        Ok(_) => {}
        Err(error) => return upstream_failed(&error, &destination, true, peer),
    }
    match client.call(request).await {
        // The client hands responses on without their hop-by-hop headers; `Via` names the
        // version the response came in (RFC 9110 7.6.3).
        Ok(mut response) => {
            let version = response.version();
            headers::append_via(response.headers_mut(), version);
            client_upgrade.relay(response, peer, &destination, "http proxy")
        }
        Err(error) => upstream_failed(&error, &destination, true, peer),
    }
}

/// Applies the egress rules to a destination. When they had to resolve a name to judge it
/// (every address must pass), its addresses: the only ones to dial ([`DialOnly`]).
pub(crate) async fn judge(
    rules: &Rules,
    host: &str,
    port: u16,
) -> Result<Option<DialOnly>, Response<Body>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let (name, ip) = match bare.parse::<IpAddr>() {
        Ok(ip) => (None, Some(ip)),
        Err(_) => (Some(bare), None),
    };
    let denied = || {
        text(
            StatusCode::FORBIDDEN,
            format!("{host}:{port} is denied by the proxy's rules"),
        )
    };
    match rules.verdict(name, ip, port) {
        Verdict::Allow => Ok(None),
        Verdict::Deny => Err(denied()),
        Verdict::NeedsAddress => {
            let resolved = tokio::time::timeout(RESOLVE_TIMEOUT, tcp::lookup(bare, port)).await;
            let addrs: Vec<SocketAddr> = match resolved {
                Ok(Ok(addrs)) => addrs.collect(),
                Ok(Err(error)) => {
                    return Err(text(
                        StatusCode::BAD_GATEWAY,
                        format!("cannot resolve {host}: {error}"),
                    ));
                }
                Err(_) => {
                    return Err(text(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!("resolving {host} timed out"),
                    ));
                }
            };
            // Every address the client's dial may use must pass.
            let all_allowed = !addrs.is_empty()
                && addrs
                    .iter()
                    .all(|a| rules.verdict(name, Some(a.ip()), port) == Verdict::Allow);
            if all_allowed {
                Ok(Some(DialOnly::new(addrs)))
            } else {
                Err(denied())
            }
        }
    }
}

/// The answer to a request the client could not complete: `400` when the request's own body
/// failed, `501` for a transfer coding it does not forward, `504` when the upstream timed out,
/// `502` otherwise. The log names `destination`; the answer names it only when `disclose`
/// (a forward proxy's client named it itself; a reverse proxy's upstream is the operator's
/// business, its address and the system's reasons for not reaching it included, as nginx and
/// HAProxy keep them to their logs).
pub(crate) fn upstream_failed(
    error: &super::Error,
    destination: &str,
    disclose: bool,
    peer: Peer,
) -> Response<Body> {
    if error.is_request_transfer_coding() {
        tracing::debug!(%peer, %destination, "http proxy: a request in a transfer coding other than chunked, answering 501");
        // The body is still coming, in a framing the next request cannot be told from.
        return closing(text(StatusCode::NOT_IMPLEMENTED, error.to_string()));
    }
    if error.is_request_body() {
        // The client's fault, not the upstream's: answered as a malformed request is, or, when
        // the client stopped sending it, as a slow one is.
        let status = if error.is_timeout() {
            StatusCode::REQUEST_TIMEOUT
        } else {
            StatusCode::BAD_REQUEST
        };
        tracing::debug!(%peer, %destination, error = %Chain(error), "http proxy: the request body failed, answering {}", status.as_u16());
        // An HTTP/1 connection ends with it (what is left of the body cannot be told from a
        // next request), and the answer says so.
        return closing(text(
            status,
            format!("the request body failed: {}", Causes(error)),
        ));
    }
    tracing::warn!(%peer, %destination, error = %Chain(error), "http proxy: upstream failed");
    match (error.is_timeout(), error.is_connect(), disclose) {
        (true, _, true) => text(
            StatusCode::GATEWAY_TIMEOUT,
            format!("the upstream {destination} timed out"),
        ),
        (true, _, false) => text(StatusCode::GATEWAY_TIMEOUT, "the upstream timed out"),
        (false, true, true) => text(
            StatusCode::BAD_GATEWAY,
            format!("cannot connect to {destination}: {}", Causes(error)),
        ),
        (false, true, false) => text(StatusCode::BAD_GATEWAY, "cannot connect to the upstream"),
        // What was wrong with the answer (no address in it): the client may act on it.
        (false, false, true) => text(
            StatusCode::BAD_GATEWAY,
            format!("the upstream {destination} failed: {}", Causes(error)),
        ),
        (false, false, false) => text(
            StatusCode::BAD_GATEWAY,
            format!("the upstream failed: {}", Causes(error)),
        ),
    }
}

/// `Max-Forwards` on a `TRACE` or `OPTIONS` (RFC 9110 7.6.2), which is how a client finds
/// out what a chain of proxies does: at 0 the proxy answers as the final recipient (an
/// `OPTIONS` with the methods it forwards, a `TRACE` with the request it received, its
/// credentials and cookies left out, RFC 9110 9.3.8), above 0 the request goes on with one hop
/// less. A value that is not a number sets no limit.
fn max_forwards(request: &mut Request<Body>) -> Option<Response<Body>> {
    let method = request.method();
    if method != Method::TRACE && method != Method::OPTIONS {
        return None;
    }
    let hops = request.headers().get(header::MAX_FORWARDS)?;
    let hops = std::str::from_utf8(hops.as_bytes())
        .ok()
        .filter(|hops| !hops.is_empty() && hops.bytes().all(|b| b.is_ascii_digit()))?
        .parse::<u64>()
        // More hops than a u64 holds: as good as no limit.
        .unwrap_or(u64::MAX);
    if let Some(left) = hops.checked_sub(1) {
        request
            .headers_mut()
            .insert(header::MAX_FORWARDS, HeaderValue::from(left));
        return None;
    }
    let mut response = if method == Method::OPTIONS {
        let mut response = Response::new(Body::empty());
        response.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static(
                "GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH",
            ),
        );
        response
    } else {
        let mut message = format!(
            "{} {} {:?}\r\n",
            request.method(),
            request.uri(),
            request.version()
        )
        .into_bytes();
        for (name, value) in request.headers() {
            if name == header::AUTHORIZATION
                || name == header::PROXY_AUTHORIZATION
                || name == header::COOKIE
            {
                continue;
            }
            message.extend_from_slice(name.as_str().as_bytes());
            message.extend_from_slice(b": ");
            message.extend_from_slice(value.as_bytes());
            message.extend_from_slice(b"\r\n");
        }
        message.extend_from_slice(b"\r\n");
        let mut response = Response::new(Body::full(bytes::Bytes::from(message)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("message/http"),
        );
        response
    };
    headers::append_via(response.headers_mut(), request.version());
    *response.status_mut() = StatusCode::OK;
    Some(response)
}

/// The client's address in logs (`-` when the request did not come through `http::Server`).
#[derive(Clone, Copy)]
pub(crate) struct Peer(pub(crate) Option<SocketAddr>);

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(peer) => peer.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// What is wrong with a `CONNECT`: the `400`'s text.
#[derive(Debug)]
pub(crate) enum BadConnect {
    /// `Content-Length` (but `0`) or `Transfer-Encoding`: a `CONNECT` has no content (RFC 9110
    /// 9.3.6), and what follows its head is the tunnel's; hyper read that many of those bytes
    /// as a body, which went nowhere.
    Content,
    /// Not authority-form: an absolute URL (`http://host:port/`), or no authority at all.
    NotAuthorityForm,
    /// Authority-form, but not a `host:port`.
    Address(AddressError),
    /// Port 0, which no connection goes to.
    PortZero,
}

impl fmt::Display for BadConnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Content => {
                f.write_str("a CONNECT has no content: no Content-Length or Transfer-Encoding")
            }
            Self::NotAuthorityForm => {
                f.write_str("a CONNECT target is authority-form host:port, not a URL")
            }
            Self::Address(error) => write!(f, "bad CONNECT target: {error}"),
            Self::PortZero => f.write_str("a CONNECT target's port is 1-65535, not port 0"),
        }
    }
}

/// What caused an error, without the error's own words (the answer already says them).
struct Causes<'a>(&'a super::Error);

impl fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use std::error::Error as _;
        match self.0.source() {
            Some(source) => Chain(source).fmt(f),
            None => self.0.fmt(f),
        }
    }
}

/// A short plain-text answer.
pub(crate) fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut message = message.into();
    message.push('\n');
    let mut response = Response::new(Body::from(message));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A `400` for bad input, which also ends an HTTP/1 connection (as the server's own `400`s
/// do): what else the client sent on it is not to be trusted either.
pub(crate) fn bad_request_closing(version: Version, message: &str) -> Response<Body> {
    let response = text(StatusCode::BAD_REQUEST, message);
    if version < Version::HTTP_2 {
        closing(response)
    } else {
        response
    }
}

/// `response` with `Connection: close`: the server ends an HTTP/1 connection once it is
/// written (hyper drops the field from an HTTP/2 response).
fn closing(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Whether a `CONNECT` answered `status` keeps its HTTP/1 connection: a `2xx` opened the
/// tunnel, and after a `407` the client asks again on the same connection (curl's
/// `--proxy-anyauth` does).
fn opens_or_asks_again(status: StatusCode) -> bool {
    status.is_success() || status == StatusCode::PROXY_AUTHENTICATION_REQUIRED
}

fn proxy_auth_required() -> Response<Body> {
    let mut response = text(
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        "proxy authentication required",
    );
    response.headers_mut().insert(
        header::PROXY_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"rama\""),
    );
    response
}

// ===== impl Basic =====

impl<C> Authenticator for Basic<C>
where
    C: Service<Credentials, Response = bool> + Clone,
    C::Error: Into<BoxError>,
{
    type Future = BasicCheck<C>;

    fn required(&self) -> bool {
        true
    }

    fn check(self, credentials: Credentials) -> Self::Future {
        BasicCheck {
            inner: self.check.oneshot(credentials),
        }
    }
}

impl<C> fmt::Debug for Basic<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Basic").finish_non_exhaustive()
    }
}

impl<C> Future for BasicCheck<C>
where
    C: Service<Credentials, Response = bool>,
    C::Error: Into<BoxError>,
{
    type Output = Result<bool, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map_err(Into::into)
    }
}

impl<C: Service<Credentials>> fmt::Debug for BasicCheck<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicCheck").finish_non_exhaustive()
    }
}

// ===== impl ConnectHandshake =====

impl ConnectHandshake {
    /// Where the client asked to go.
    pub fn destination(&self) -> &Address {
        &self.destination
    }
}

impl Handshake for ConnectHandshake {
    type Stream = TokioIo<hyper::upgrade::Upgraded>;
    type Accept = Accept;
    type Reject = Ready<io::Result<()>>;

    fn accept(self, _bound: SocketAddr) -> Accept {
        let sent = self.respond.send(Response::new(Body::empty())).is_ok();
        Accept {
            upgrade: sent.then_some(self.upgrade),
        }
    }

    fn reset_signal(&self) -> Option<ResetSignal> {
        self.reset.clone()
    }

    fn reject(self, refusal: Refusal) -> Self::Reject {
        let status = match refusal {
            Refusal::Denied => StatusCode::FORBIDDEN,
            Refusal::TimedOut => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        };
        let response = text(status, format!("{}: {refusal}", self.destination));
        // The client may be gone already; nothing is left to tell it then.
        let _ = self.respond.send(response);
        ready(Ok(()))
    }
}

impl fmt::Debug for ConnectHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectHandshake")
            .field("destination", &self.destination)
            .finish_non_exhaustive()
    }
}

impl Future for Accept {
    type Output = io::Result<TokioIo<hyper::upgrade::Upgraded>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.upgrade.as_mut() {
            None => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the client went away before the tunnel opened",
            ))),
            Some(upgrade) => Pin::new(upgrade)
                .poll(cx)
                .map(|result| result.map(TokioIo::new).map_err(io::Error::other)),
        }
    }
}

impl fmt::Debug for Accept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accept").finish_non_exhaustive()
    }
}
