//! [`Relay`]: WebSocket upgrades relayed message by message to an upstream WebSocket server,
//! through a [`Hook`]; every other request goes to the inner service.

use super::{
    Config,
    error::{BadUpstream, UpstreamError},
    future::ResponseFuture,
    hook::{Hook, PassThrough, Session},
    protocol_header, session, text,
};
use crate::{
    Address, Host,
    error::Chain,
    http::{Body, ConnFacts, ConnectTo, DialOnly, forward::Peer, headers, reverse, server},
    io::ResetSignal,
    tcp, tls,
};
use ::http::{
    HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, header,
    uri::{Authority, PathAndQuery},
};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_tungstenite::{
    HyperWebsocketStream, WebSocketStream,
    tungstenite::{
        handshake::{client::generate_key, derive_accept_key},
        protocol::Role,
    },
};
use hyper_util::rt::TokioIo;
use std::{
    fmt,
    net::SocketAddr,
    pin::pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tower::{Layer, Service};

/// How long opening the upstream (dial, TLS, handshake) may take by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of an upstream's refusal body (a `403`, say) passed on to the client.
const MAX_REFUSAL_BODY: usize = 64 * 1024;

/// The client's handshake headers that are not passed upstream: the relay makes its own
/// handshake (key, version), offers no extension (it relays messages, and tungstenite has no
/// permessage-deflate), and sets `Host` from the upstream.
const NOT_FORWARDED: [HeaderName; 6] = [
    header::HOST,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_EXTENSIONS,
    header::SEC_WEBSOCKET_ACCEPT,
    header::CONTENT_LENGTH,
];

/// A layer over an HTTP service (`Stage`: `HttpRequest` → `HttpRequest`) that relays WebSocket
/// upgrades to an upstream WebSocket server message by message, through a [`Hook`]; every
/// other request goes to the inner service unchanged. See the [module docs](super).
///
/// The upstream is fixed ([`Relay::to`]) or each request's own ([`Relay::requested`]: its
/// absolute URI, `https://host/path` becoming `wss://host/path`, as `http::Mitm` hands them
/// on). `wss://` upstreams are opened with the [`tls`](Relay::tls) connector, which verifies
/// them (webpki roots by default). A fixed upstream's handshake carries the forwarding headers
/// [`ReverseProxy`](crate::http::ReverseProxy) adds (`X-Forwarded-For`, `-Proto`, `-Host`,
/// `Forwarded`, `Via`).
pub struct Relay<H = PassThrough> {
    upstream: Upstream,
    tls: tls::Connector,
    hook: Arc<H>,
    config: Config,
    connect_timeout: Duration,
}

/// The service of [`Relay`]: WebSocket upgrades are relayed, other requests go to `S`.
///
/// Ready when `S` is (an upgrade does not use `S`, so a readiness it reserved is held until
/// the next plain request). The error is `S`'s: a relay that cannot open its upstream
/// answers `502`/`504` instead.
pub struct RelayService<S, H = PassThrough> {
    inner: S,
    relay: Relay<H>,
}

#[derive(Debug, Clone)]
enum Upstream {
    /// Every session to this server; the base path goes in front of the request's.
    Fixed {
        secure: bool,
        authority: Authority,
        base: String,
    },
    /// Each session to the request's own URI (or `Host`), dialed where its
    /// [`ConnectTo`] says when it has one, and only to its [`DialOnly`] addresses when it
    /// has those.
    Requested,
}

/// Where one session goes.
struct Destination {
    /// `ws://` or `wss://` with the path and query, for hooks and logs.
    uri: Uri,
    address: Address,
    /// The only addresses to dial instead of resolving `address`'s host: what egress rules
    /// judged (a requested upstream's [`DialOnly`]).
    only: Option<DialOnly>,
    /// Never this one: the address the client reached this proxy on. An upgrade relayed to
    /// the relay itself would come back as a new one, each trip a connection (and a line of
    /// forwarding headers) more.
    own: Option<SocketAddr>,
    /// What TLS names (SNI and the certificate's check).
    server_name: Host,
    secure: bool,
    authority: Authority,
    path_and_query: PathAndQuery,
}

/// What the upstream said to the upgrade.
#[allow(
    clippy::large_enum_variant,
    reason = "one lives per handshake, briefly, and the large variant is the usual one"
)]
enum Opened {
    /// `101`: the session's stream and its response headers.
    Accepted(HyperWebsocketStream, HeaderMap),
    /// Anything else, passed on to the client.
    Refused(Response<Body>),
}

// ===== impl Relay =====

impl Relay {
    /// Relays each upgrade to the request's own destination: its absolute URI (`https`/`wss`
    /// → `wss://`, `http`/`ws` → `ws://`), else its `Host` (`wss://` when the client's
    /// connection is TLS). What a relay behind `http::Mitm` or `http::ForwardProxy` wants.
    ///
    /// A request's [`ConnectTo`] and [`DialOnly`] are dialed as
    /// [`http::Client`](crate::http::Client) dials them: the route's address and TLS name,
    /// and only the addresses the egress rules judged, never another lookup of the host.
    pub fn requested() -> Self {
        Self::with_upstream(Upstream::Requested)
    }

    /// Relays every upgrade to `upstream`, a `ws://host[:port][/path]` or `wss://` URL; the
    /// request's path and query are appended to its path.
    pub fn to(upstream: &str) -> Result<Self, BadUpstream> {
        let uri: Uri = upstream
            .parse()
            .map_err(|_| BadUpstream::new(upstream, "not a valid URL"))?;
        let secure = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => {
                return Err(BadUpstream::new(
                    upstream,
                    "the URL must start with ws:// or wss://",
                ));
            }
        };
        let Some(authority) = uri.authority().cloned() else {
            return Err(BadUpstream::new(upstream, "the URL has no host"));
        };
        if uri.query().is_some() {
            return Err(BadUpstream::new(upstream, "the URL cannot have a query"));
        }
        Ok(Self::with_upstream(Upstream::Fixed {
            secure,
            authority,
            base: uri.path().trim_end_matches('/').to_owned(),
        }))
    }

    fn with_upstream(upstream: Upstream) -> Self {
        Self {
            upstream,
            tls: tls::Connector::webpki_roots(),
            hook: Arc::new(PassThrough),
            config: Config::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

impl<H> Relay<H> {
    /// Passes every message through `hook` (see [`Hook`]).
    pub fn hook<H2: Hook>(self, hook: H2) -> Relay<H2> {
        Relay {
            upstream: self.upstream,
            tls: self.tls,
            hook: Arc::new(hook),
            config: self.config,
            connect_timeout: self.connect_timeout,
        }
    }

    /// Opens `wss://` upstreams with `connector` (its roots verify the upstream; its ALPN must
    /// offer `http/1.1` or nothing, since the handshake is HTTP/1.1).
    pub fn tls(mut self, connector: tls::Connector) -> Self {
        self.tls = connector;
        self
    }

    /// The largest message (and frame) either side may send, in bytes (default 16 MiB); a
    /// larger one ends the session with close `1009` to its sender.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config = self.config.max_message_size(bytes);
        self
    }

    /// How long opening the upstream (dial, TLS, handshake) may take (default 10 s; `504`).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the close handshake on both legs may take once a session ends (default 5 s),
    /// also the one that follows the `1001` a graceful shutdown sends.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.linger = timeout;
        self
    }
}

impl Default for Relay {
    fn default() -> Self {
        Self::requested()
    }
}

impl<S, H> Layer<S> for Relay<H> {
    type Service = RelayService<S, H>;

    fn layer(&self, inner: S) -> Self::Service {
        RelayService {
            inner,
            relay: self.clone(),
        }
    }
}

// By hand: the hook is shared, so it need not be `Clone`.
impl<H> Clone for Relay<H> {
    fn clone(&self) -> Self {
        Self {
            upstream: self.upstream.clone(),
            tls: self.tls.clone(),
            hook: self.hook.clone(),
            config: self.config,
            connect_timeout: self.connect_timeout,
        }
    }
}

impl<H> fmt::Debug for Relay<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("upstream", &self.upstream)
            .field("config", &self.config)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

// ===== impl RelayService =====

impl<S, H, B> Service<Request<B>> for RelayService<S, H>
where
    S: Service<Request<B>, Response = Response<Body>>,
    H: Hook + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if !hyper_tungstenite::is_upgrade_request(&request) {
            return ResponseFuture::inner(self.inner.call(request));
        }
        // The body of a GET upgrade is empty; dropping it frees the future from `B`.
        let request = request.map(|_| ());
        ResponseFuture::upgrade(Box::pin(self.relay.clone().upgrade(request)))
    }
}

impl<S: Clone, H> Clone for RelayService<S, H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            relay: self.relay.clone(),
        }
    }
}

impl<S: fmt::Debug, H> fmt::Debug for RelayService<S, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayService")
            .field("inner", &self.inner)
            .field("relay", &self.relay)
            .finish()
    }
}

impl<H: Hook + 'static> Relay<H> {
    /// Answers one upgrade: opens the upstream, then (on its `101`) answers the client `101`
    /// and runs the session on the connection's task set.
    async fn upgrade(self, mut request: Request<()>) -> Response<Body> {
        let facts = request.extensions().get::<ConnFacts>().cloned();
        // On an HTTP/2 stream (RFC 8441): its reset, which the session may not see otherwise.
        let stream_end = request.extensions().get::<ResetSignal>().cloned();
        let peer = Peer(facts.as_ref().map(ConnFacts::peer_addr));
        let destination = match self.upstream.destination(&request, facts.as_ref()) {
            Ok(destination) => destination,
            Err(reason) => {
                tracing::debug!(%peer, reason, "ws relay: no upstream for the request");
                return text(StatusCode::BAD_REQUEST, reason);
            }
        };
        let (response, client) =
            match hyper_tungstenite::upgrade(&mut request, Some(self.config.tungstenite())) {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(%peer, %error, "ws relay: bad upgrade request");
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!("bad websocket upgrade: {error}"),
                    );
                }
            };
        let forwarded = self.upstream_headers(&request, facts.as_ref());
        let opening = self.open(&destination, forwarded);
        let opened = match tokio::time::timeout(self.connect_timeout, opening).await {
            Ok(opened) => opened,
            Err(_) => Err(UpstreamError::timeout()),
        };
        let (upstream, upstream_headers) = match opened {
            Ok(Opened::Accepted(upstream, headers)) => (upstream, headers),
            Ok(Opened::Refused(response)) => {
                tracing::debug!(%peer, upstream = %destination.uri, status = %response.status(), "ws relay: the upstream refused the upgrade");
                return response;
            }
            Err(error) => {
                tracing::warn!(%peer, upstream = %destination.uri, error = %Chain(&error), "ws relay: cannot open the upstream");
                let status = if error.is_timeout() {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::BAD_GATEWAY
                };
                return text(status, format!("{}: {error}", destination.uri));
            }
        };

        let mut response = response.map(|_| Body::empty());
        let protocol = upstream_headers
            .get(header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        pass_response_headers(&upstream_headers, response.headers_mut());
        if let Some(value) = protocol.as_deref().and_then(protocol_header) {
            response
                .headers_mut()
                .insert(header::SEC_WEBSOCKET_PROTOCOL, value);
        }
        tracing::debug!(%peer, upstream = %destination.uri, ?protocol, "ws relay: session open");
        let session = Session::new(peer.0, destination.uri, protocol);
        let hook = self.hook;
        let linger = self.config.linger;
        // Outside `http::Server` there are no facts, but then `spawn` refuses the session too.
        let shutdown = facts.map(|f| f.shutdown().clone()).unwrap_or_default();
        let run = async move {
            match client.await {
                Ok(client) => {
                    let ends = session::Ends {
                        linger,
                        shutdown: &shutdown,
                        stream_end,
                    };
                    session::relay(client, upstream, &*hook, session, ends).await
                }
                Err(error) => {
                    tracing::debug!(%peer, %error, "ws relay: the client's upgrade failed")
                }
            }
        };
        match server::spawn(run) {
            Ok(()) => response,
            Err(error) => {
                tracing::error!(%peer, %error, "ws relay: cannot run the session");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ws::Relay runs only behind http::Server",
                )
            }
        }
    }

    /// The client's handshake headers as the upstream gets them: the end-to-end ones but
    /// [`NOT_FORWARDED`] and, to a fixed upstream, what the reverse proxy adds to every
    /// request it passes on (`X-Forwarded-For`/`-Proto`/`-Host`, `Forwarded`, `Via`), which
    /// an origin behind `ws_proxy` reads for WebSockets as for its plain requests. Not to a
    /// [requested](Relay::requested) one: that relay stands for a forward proxy or `Mitm`,
    /// whose plain requests tell the origin nothing of the client either.
    fn upstream_headers(&self, request: &Request<()>, facts: Option<&ConnFacts>) -> HeaderMap {
        let mut forwarded = request.headers().clone();
        // Before the forwarding headers are added: a client's `Connection` must not name them
        // away.
        headers::remove_hop_by_hop(&mut forwarded);
        for name in NOT_FORWARDED {
            forwarded.remove(name);
        }
        if let Upstream::Fixed { .. } = self.upstream {
            // A `Host` the reverse proxy would refuse (repeated, not `host[:port]`) names no
            // host here: the upstream is fixed, so only `X-Forwarded-Host` is left out.
            let host = reverse::original_host(request).ok().flatten();
            reverse::add_forwarding(
                &mut forwarded,
                facts.map(ConnFacts::peer_addr),
                host.as_ref(),
                reverse::is_secure(facts),
                request.version(),
            );
        }
        forwarded
    }

    /// Dials the upstream (and TLS for `wss://`) and runs the handshake with `forwarded`
    /// ([`Relay::upstream_headers`]).
    async fn open(
        &self,
        destination: &Destination,
        forwarded: HeaderMap,
    ) -> Result<Opened, UpstreamError> {
        let mut dial = match &destination.only {
            Some(only) => tcp::connect_any(only.addresses().to_vec(), self.connect_timeout),
            None => tcp::connect(&destination.address, self.connect_timeout),
        };
        if let Some(own) = destination.own {
            dial = dial.refusing(own);
        }
        let stream = dial.await.map_err(UpstreamError::connect)?;
        if !destination.secure {
            return handshake(stream, destination, forwarded, self.config).await;
        }
        let stream = self
            .tls
            .connect(&destination.server_name, stream)
            .await
            .map_err(UpstreamError::tls)?;
        if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
            return Err(UpstreamError::handshake(
                "the upstream chose h2 by ALPN; give ws::Relay a tls::Connector without h2",
            ));
        }
        handshake(stream, destination, forwarded, self.config).await
    }
}

/// The HTTP/1.1 upgrade over `io`: the `forwarded` headers (the client's that matter:
/// subprotocols, cookies, authorization, origin, ...; the forwarding ones), a fresh key, and
/// the checks RFC 6455 asks of a client.
async fn handshake<IO>(
    io: IO,
    destination: &Destination,
    forwarded: HeaderMap,
    config: Config,
) -> Result<Opened, UpstreamError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(UpstreamError::http)?;
    let key = generate_key();
    let mut request = Request::new(Empty::<Bytes>::new());
    *request.uri_mut() = Uri::from(destination.path_and_query.clone());
    let offered = offered_protocols(&forwarded);
    let headers = request.headers_mut();
    *headers = forwarded;
    let host = HeaderValue::from_str(destination.authority.as_str())
        .map_err(|_| UpstreamError::handshake("the upstream's host is not a valid header"))?;
    headers.insert(header::HOST, host);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    );
    let key_value = HeaderValue::from_str(&key)
        .map_err(|_| UpstreamError::handshake("the generated key is not a valid header"))?;
    headers.insert(header::SEC_WEBSOCKET_KEY, key_value);

    // The connection must be driven until the upgrade (or, for a refusal, its body). With
    // upgrades it resolves as soon as it hands the stream over, which can be in the same poll
    // that delivers the `101`: then the response is waiting in `sent`.
    let mut sent = pin!(sender.send_request(request));
    let mut conn = pin!(conn.with_upgrades());
    let (mut response, conn_done) = tokio::select! {
        response = &mut sent => (response.map_err(UpstreamError::http)?, false),
        result = &mut conn => {
            result.map_err(UpstreamError::http)?;
            (sent.await.map_err(UpstreamError::http)?, true)
        }
    };
    let drive = async move {
        if !conn_done {
            // Its error, if any, shows as the body's or the upgrade's.
            let _ = conn.await;
        }
    };

    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Pass the refusal on; the connection must be driven while its body is read, and
        // ends once it is (the sender is gone, so nothing else is asked).
        drop(sender);
        let (parts, body) = response.into_parts();
        let (body, ()) = tokio::join!(Limited::new(body, MAX_REFUSAL_BODY).collect(), drive);
        let body = body.map(|b| b.to_bytes()).unwrap_or_default();
        let mut refusal = Response::from_parts(parts, Body::full(body));
        headers::remove_hop_by_hop(refusal.headers_mut());
        return Ok(Opened::Refused(refusal));
    }
    let headers = response.headers();
    let header_is = |name: HeaderName, want: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
    };
    if !header_is(header::UPGRADE, "websocket") {
        return Err(UpstreamError::handshake("no `Upgrade: websocket`"));
    }
    if !header_is(
        header::SEC_WEBSOCKET_ACCEPT,
        &derive_accept_key(key.as_bytes()),
    ) {
        return Err(UpstreamError::handshake("wrong `Sec-WebSocket-Accept`"));
    }
    if headers.contains_key(header::SEC_WEBSOCKET_EXTENSIONS) {
        return Err(UpstreamError::handshake(
            "an extension the relay did not offer",
        ));
    }
    if let Some(selected) = headers.get(header::SEC_WEBSOCKET_PROTOCOL) {
        let selected = selected.to_str().unwrap_or_default().trim();
        if !offered.iter().any(|p| p == selected) {
            return Err(UpstreamError::handshake(
                "a subprotocol the client did not offer",
            ));
        }
    }
    let response_headers = response.headers().clone();
    let (upgraded, ()) = tokio::join!(hyper::upgrade::on(&mut response), drive);
    let upgraded = upgraded.map_err(UpstreamError::http)?;
    let ws = WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        Role::Client,
        Some(config.tungstenite()),
    )
    .await;
    Ok(Opened::Accepted(ws, response_headers))
}

/// The subprotocols a handshake offers.
fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The upstream's `101` headers the client gets besides the handshake's own (cookies, say).
fn pass_response_headers(upstream: &HeaderMap, to: &mut HeaderMap) {
    let mut passed = upstream.clone();
    headers::remove_hop_by_hop(&mut passed);
    for name in [
        header::SEC_WEBSOCKET_ACCEPT,
        header::SEC_WEBSOCKET_PROTOCOL,
        header::SEC_WEBSOCKET_EXTENSIONS,
        header::CONTENT_LENGTH,
    ] {
        passed.remove(name);
    }
    for (name, value) in &passed {
        to.append(name, value.clone());
    }
}

// ===== impl Upstream =====

impl Upstream {
    /// Where `request` goes.
    fn destination(
        &self,
        request: &Request<()>,
        facts: Option<&ConnFacts>,
    ) -> Result<Destination, &'static str> {
        let path_and_query = request
            .uri()
            .path_and_query()
            .map_or("/", PathAndQuery::as_str);
        let (secure, authority, path_and_query) = match self {
            Self::Fixed {
                secure,
                authority,
                base,
            } => (
                *secure,
                authority.clone(),
                PathAndQuery::try_from(format!("{base}{path_and_query}"))
                    .map_err(|_| "bad request target")?,
            ),
            Self::Requested => {
                let secure = match request.uri().scheme_str() {
                    Some("https" | "wss") => true,
                    Some("http" | "ws") => false,
                    Some(_) => return Err("the request target's scheme is not http(s) or ws(s)"),
                    None => facts.is_some_and(ConnFacts::is_tls),
                };
                let authority = match request.uri().authority() {
                    Some(authority) => authority.clone(),
                    None => request
                        .headers()
                        .get(header::HOST)
                        .and_then(|h| Authority::try_from(h.as_bytes()).ok())
                        .ok_or("the request names no host")?,
                };
                let path_and_query =
                    PathAndQuery::try_from(path_and_query).map_err(|_| "bad request target")?;
                (secure, authority, path_and_query)
            }
        };
        let port = authority
            .port_u16()
            .unwrap_or(if secure { 443 } else { 80 });
        // Drop any `user@` in front of the host.
        let host = authority.host();
        let address: Address = format!("{host}:{port}")
            .parse()
            .map_err(|_| "the upstream's host is not a valid address")?;
        // A requested upstream goes where the request's route says (`http::Mitm`'s: the
        // `CONNECT`'s destination, whatever `Host` the client sent), and only to the addresses
        // egress rules pinned when they resolved its host to judge it (another lookup could
        // answer with one they deny: DNS rebinding), as `http::Client` does. Both speak of the
        // request's own destination, which a fixed upstream does not dial.
        let (route, only) = match self {
            Self::Requested => (
                request.extensions().get::<ConnectTo>(),
                request.extensions().get::<DialOnly>().cloned(),
            ),
            Self::Fixed { .. } => (None, None),
        };
        let (address, server_name) = match route {
            Some(route) => (route.address().clone(), route.name().clone()),
            None => (address.clone(), address.host().clone()),
        };
        let uri = Uri::builder()
            .scheme(if secure { "wss" } else { "ws" })
            .authority(authority.clone())
            .path_and_query(path_and_query.clone())
            .build()
            .map_err(|_| "bad request target")?;
        Ok(Destination {
            uri,
            address,
            only,
            own: facts.map(ConnFacts::local_addr),
            server_name,
            secure,
            authority,
            path_and_query,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, host: Option<&str>) -> Request<()> {
        let mut request = Request::builder().uri(uri);
        if let Some(host) = host {
            request = request.header(header::HOST, host);
        }
        request.body(()).unwrap()
    }

    fn destination(upstream: &Upstream, request: &Request<()>) -> (String, String, bool) {
        let d = upstream.destination(request, None).unwrap();
        (d.uri.to_string(), d.address.to_string(), d.secure)
    }

    #[test]
    fn a_requested_upstream_is_dialed_where_its_route_says() {
        let mut routed = request("https://front.test/chat", None);
        let address: Address = "127.0.0.1:8443".parse().unwrap();
        routed
            .extensions_mut()
            .insert(ConnectTo::new(address).server_name(Host::Name("origin.test".into())));
        let d = Upstream::Requested.destination(&routed, None).unwrap();
        // The handshake still names the request's authority.
        assert_eq!(d.uri.to_string(), "wss://front.test/chat");
        assert_eq!(d.authority.as_str(), "front.test");
        assert_eq!(d.address.to_string(), "127.0.0.1:8443");
        assert_eq!(d.server_name, Host::Name("origin.test".into()));
    }

    #[test]
    fn a_requested_upstream_keeps_to_its_pinned_addresses_and_a_fixed_one_has_none() {
        let only = DialOnly::new(["127.0.0.1:8443".parse().unwrap()]);
        let mut pinned = request("https://rebind.test/chat", None);
        pinned.extensions_mut().insert(only.clone());
        let d = Upstream::Requested.destination(&pinned, None).unwrap();
        assert_eq!(d.only, Some(only));
        // TLS still names the request's host.
        assert_eq!(d.server_name, Host::Name("rebind.test".into()));
        // The pin is for the request's own destination, which a fixed upstream never dials.
        let Ok(fixed) = Relay::to("ws://origin.test") else {
            panic!("a valid upstream")
        };
        let d = fixed.upstream.destination(&pinned, None).unwrap();
        assert_eq!(
            (d.address.to_string(), d.only),
            ("origin.test:80".into(), None)
        );
    }

    #[test]
    fn requested_upstreams_follow_the_request() {
        let requested = Upstream::Requested;
        // What http::Mitm hands on: the origin's https URI becomes wss, port 443.
        assert_eq!(
            destination(&requested, &request("https://example.com/chat?x=1", None)),
            (
                "wss://example.com/chat?x=1".into(),
                "example.com:443".into(),
                true
            )
        );
        assert_eq!(
            destination(&requested, &request("http://127.0.0.1:8000/", None)),
            (
                "ws://127.0.0.1:8000/".into(),
                "127.0.0.1:8000".into(),
                false
            )
        );
        assert_eq!(
            destination(&requested, &request("wss://[::1]:9443/a", None)),
            ("wss://[::1]:9443/a".into(), "[::1]:9443".into(), true)
        );
        // Origin-form: the Host header, plain without TLS facts.
        assert_eq!(
            destination(&requested, &request("/room", Some("chat.test:81"))),
            (
                "ws://chat.test:81/room".into(),
                "chat.test:81".into(),
                false
            )
        );
        assert!(
            requested
                .destination(&request("/room", None), None)
                .is_err()
        );
        assert!(
            requested
                .destination(&request("ftp://x/", None), None)
                .is_err()
        );
    }

    #[test]
    fn fixed_upstreams_put_their_base_in_front() {
        let Ok(relay) = Relay::to("wss://origin.test/base/") else {
            panic!("a valid upstream")
        };
        assert_eq!(
            destination(&relay.upstream, &request("/chat?x", Some("front"))),
            (
                "wss://origin.test/base/chat?x".into(),
                "origin.test:443".into(),
                true
            )
        );
        for bad in ["127.0.0.1:80", "http://x", "ws://x/?q", "ws://"] {
            assert!(Relay::to(bad).is_err(), "{bad}");
        }
    }
}
