//! [`ReverseProxy`]: every request to one HTTP upstream, what `target("http://host:port")`
//! does behind [`http::Server`](super::Server).
//!
//! - The request goes to the upstream's scheme and authority, with the upstream's path (if it
//!   has one) in front of the request's path and query; behind such a base path the request
//!   path's dot segments are resolved first, and one that climbs above the root is answered
//!   `400` (the base is a boundary).
//! - `Host`: the upstream's (the client's goes in `X-Forwarded-Host`), or the client's with
//!   [`preserve_host`](ReverseProxy::preserve_host).
//! - `X-Forwarded-For` gets the client's address appended (to every earlier line, joined),
//!   `X-Forwarded-Proto` (`https` when the client's connection is TLS,
//!   [`ConnFacts::is_tls`]) and `X-Forwarded-Host` are set, and a `Forwarded` element (RFC
//!   7239: `for`, `host`, `proto`) is appended; `Via` is appended both ways and hop-by-hop
//!   headers are removed both ways.
//! - Bodies stream both ways through the pooled [`Client`] (HTTP/1.1 upstream by default; an
//!   HTTP/2 upstream with [`Client::builder`]`().http2_only(true)`), whatever version the
//!   client spoke.
//! - Upgrades (WebSocket, HTTP/1.1 `Upgrade`): the `Upgrade` header is passed on, and when the
//!   upstream answers `101` both upgraded connections are joined and relayed as bytes on the
//!   connection's own task ([`http::server::spawn`](super::server::spawn)), so the server's
//!   graceful drain waits for them.
//! - An upstream that cannot be reached answers `502`, one that takes too long `504`, each with
//!   a one-line text body that says what failed but not where (the upstream's address, and the
//!   system's reasons, go to the log only, as nginx and HAProxy keep them); a request in origin-form with more than one `Host`, a `Host`
//!   that is not `host[:port]`, or (HTTP/1.1) none, `400` (RFC 9112 3.2; with an authority
//!   in the target, `Host` is ignored and replaced).
//!
//! ```no_run
//! use rama::{http, proxy, tcp};
//!
//! # async fn run() -> Result<(), rama::BoxError> {
//! proxy! { tcp::Server::bind("127.0.0.1:8080") => http::Server::new() => target("http://127.0.0.1:8000") }
//!     .await?;
//! # Ok(())
//! # }
//! ```

use super::{Body, Client, ConnFacts, forward, headers, upgrade::ClientUpgrade};
use ::http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, header,
    uri::{Authority, PathAndQuery, Scheme},
};
use bytes::Bytes;
use std::{
    cell::RefCell,
    convert::Infallible,
    error::Error as StdError,
    fmt::{self, Write as _},
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};
use tower::Service;

/// `X-Forwarded-For`.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// A reverse proxy to one HTTP upstream: a tower `Service<http::Request<B>>` that never fails
/// (upstream failures are answered `502`/`504`). See the [module docs](self).
///
/// Cheap to clone (one reference count; clones share the client's pools). Always ready. Its
/// futures are `!Send` only when they relay an upgrade, which needs
/// [`http::Server`](super::Server)'s task set.
#[derive(Debug, Clone)]
pub struct ReverseProxy {
    /// Shared, not copied: every request takes a clone into its future.
    inner: Arc<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    scheme: Scheme,
    authority: Authority,
    /// The upstream's path without its trailing `/` (empty for none).
    base: String,
    client: Client,
    preserve_host: bool,
    /// The `Host` sent upstream: the URL's authority without user info, made once (left to
    /// hyper-util, it is formatted anew for every HTTP/1.1 request).
    host: HeaderValue,
}

/// `ReverseProxy::new` was given something that is not an `http(s)://host[:port][/path]` URL.
#[derive(Debug)]
pub struct UpstreamError {
    upstream: String,
    reason: &'static str,
    source: Option<::http::uri::InvalidUri>,
}

/// The response future of [`ReverseProxy`].
pub type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>>>>;

// ===== impl ReverseProxy =====

impl ReverseProxy {
    /// A reverse proxy to `upstream`, an `http://host[:port][/path]` URL (or `https://`, over
    /// TLS verified against the webpki roots), with a default [`Client`].
    pub fn new(upstream: &str) -> Result<Self, UpstreamError> {
        let error = |reason, source| UpstreamError {
            upstream: upstream.to_owned(),
            reason,
            source,
        };
        let uri: Uri = upstream
            .parse()
            .map_err(|e| error("not a valid URL", Some(e)))?;
        let (scheme, client) = match uri.scheme_str() {
            Some("http") => (Scheme::HTTP, Client::new()),
            Some("https") => (
                Scheme::HTTPS,
                Client::builder()
                    .tls(crate::tls::Connector::webpki_roots())
                    .build(),
            ),
            _ => return Err(error("the URL must start with http:// or https://", None)),
        };
        let Some(authority) = uri.authority().cloned() else {
            return Err(error("the URL has no host", None));
        };
        if uri.query().is_some() {
            return Err(error("the upstream URL cannot have a query", None));
        }
        let base = uri.path().trim_end_matches('/').to_owned();
        let host = headers::host_port(&authority);
        let host = HeaderValue::from_str(host)
            .map_err(|_| error("the URL's host is not a valid Host", None))?;
        Ok(Self {
            inner: Arc::new(Inner {
                scheme,
                authority,
                base,
                client,
                preserve_host: false,
                host,
            }),
        })
    }

    /// Forwards through `client` (its timeouts, pool, `http2_only` for an HTTP/2 upstream, its
    /// [`tls`](super::ClientBuilder::tls) connector for an `https://` upstream).
    pub fn client(mut self, client: Client) -> Self {
        Arc::make_mut(&mut self.inner).client = client;
        self
    }

    /// Sends the client's `Host` to the upstream instead of the upstream's own (default
    /// `false`).
    pub fn preserve_host(mut self, enabled: bool) -> Self {
        Arc::make_mut(&mut self.inner).preserve_host = enabled;
        self
    }

    /// The upstream's authority (`host:port`).
    pub fn authority(&self) -> &Authority {
        &self.inner.authority
    }

    /// The upstream's port when its URL names none: 443 for `https://`, else 80.
    pub fn default_port(&self) -> u16 {
        if self.inner.scheme == Scheme::HTTPS {
            443
        } else {
            80
        }
    }
}

impl Inner {
    /// The URI of the upstream request for `uri`, the client's request target (taken apart:
    /// without a base path, its path and query move over uncopied), or why it has none.
    fn upstream_uri(&self, uri: Uri, method: &Method) -> Result<Uri, &'static str> {
        let path_and_query = uri.into_parts().path_and_query;
        if path_and_query.as_ref().is_some_and(|p| p == "*") && method != Method::OPTIONS {
            // Asterisk-form asks about the server, and only `OPTIONS` may (RFC 9112 3.2.4);
            // any other would reach the upstream as the resource `/*`.
            return Err("the asterisk-form request target is for OPTIONS only");
        }
        let path_and_query = match (path_and_query, self.base.is_empty()) {
            (Some(path_and_query), true) => path_and_query,
            // `OPTIONS *` asks about the server, whatever the base path.
            (Some(asterisk), false) if asterisk == "*" => asterisk,
            (None, true) => PathAndQuery::from_static("/"),
            (path_and_query, false) => {
                let rest = path_and_query.as_ref().map_or("/", PathAndQuery::as_str);
                let (path, query) = rest.split_at(rest.find('?').unwrap_or(rest.len()));
                // The base path is a boundary: the request's dot segments are resolved before
                // it is put in front (an origin would resolve `/base/../admin` to `/admin`),
                // and one that climbs above the root is refused, as nginx refuses it.
                let path = resolve_dots(path)
                    .ok_or("the request path climbs above the root with dot segments")?;
                PathAndQuery::try_from(format!("{}{path}{query}", self.base))
                    .map_err(|_| "bad request target")?
            }
        };
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|_| "bad request target")
    }
}

/// `path` (absolute, without its query) with its dot segments resolved (RFC 3986 5.2.4),
/// `%2E` read as the `.` an origin decodes it to; `None` for one that climbs above the root,
/// or a segment that an origin decoding `%2F` or `%5C` into separators, or cutting `;`
/// parameters off a segment, would find a dot segment in (an escape this proxy cannot
/// resolve the way every origin does: `/..;/admin` is `/admin` to Tomcat).
fn resolve_dots(path: &str) -> Option<std::borrow::Cow<'_, str>> {
    use std::borrow::Cow;
    if !path.contains(['.', '%']) {
        return Some(Cow::Borrowed(path));
    }
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.strip_prefix('/').unwrap_or(path).split('/') {
        match dot_segment(segment) {
            Some(up) => {
                if up && kept.pop().is_none() {
                    return None;
                }
                trailing_slash = true;
            }
            None => {
                // Rare enough to look at with a copy: separators an origin may decode, and
                // path parameters it may cut (Tomcat, Jetty and Spring read `..;x` as `..`).
                if segment.contains(['%', '\\', ';']) {
                    let decoded = segment
                        .to_ascii_lowercase()
                        .replace("%2f", "/")
                        .replace("%5c", "/");
                    if decoded
                        .split(['/', '\\'])
                        .map(|part| part.split(';').next().unwrap_or_default())
                        .any(|part| dot_segment(part).is_some())
                    {
                        return None;
                    }
                }
                kept.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut resolved = String::with_capacity(path.len());
    for segment in &kept {
        resolved.push('/');
        resolved.push_str(segment);
    }
    if trailing_slash || resolved.is_empty() {
        resolved.push('/');
    }
    Some(Cow::Owned(resolved))
}

/// Whether `segment` is a dot segment, `%2E` (any case) read as a dot: `Some(true)` for `..`,
/// `Some(false)` for `.`.
fn dot_segment(mut segment: &str) -> Option<bool> {
    let mut dots = 0;
    while !segment.is_empty() {
        segment = match segment.strip_prefix('.') {
            Some(rest) => rest,
            // `%2e` is three ASCII bytes: index 3 is a character boundary.
            None if segment.as_bytes().get(..3)?.eq_ignore_ascii_case(b"%2e") => &segment[3..],
            None => return None,
        };
        dots += 1;
    }
    match dots {
        1 => Some(false),
        2 => Some(true),
        _ => None,
    }
}

impl<B> Service<Request<B>> for ReverseProxy
where
    B: Into<Body>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> ResponseFuture {
        let request = request.map(Into::into);
        let inner = self.inner.clone();
        Box::pin(async move {
            let access = crate::access::Exchange::start(&request, true);
            let response = inner.forward(request).await;
            if let Some(mut access) = access {
                access.answered(response.status());
            }
            Ok(response)
        })
    }
}

impl Inner {
    /// Not an `async fn`: one keeps the request's slot (264 bytes) beside the local it moves
    /// it into, where an `async` block uses it in place; the proxy's future, allocated for
    /// every request, then fits glibc's per-thread cache (1032 bytes) and its fast path.
    #[allow(clippy::manual_async_fn)]
    fn forward(&self, mut request: Request<Body>) -> impl Future<Output = Response<Body>> + '_ {
        async move {
            let facts = request.extensions().get::<ConnFacts>();
            let peer = facts.map(ConnFacts::peer_addr);
            let log_peer = forward::Peer(peer);
            if request.method() == Method::CONNECT {
                // A tunnel is a forward proxy's business; forwarded, it would reach the upstream
                // as `CONNECT /`, and its answer could not go back to the client as one.
                tracing::debug!(peer = %log_peer, "reverse proxy: CONNECT, answering 405");
                let mut response = forward::text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "this is a reverse proxy: CONNECT opens no tunnel here",
                );
                response.headers_mut().insert(
                    header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH"),
                );
                return response;
            }
            let secure = is_secure(facts);
            let host = match original_host(&request) {
                Ok(host) => host,
                Err(bad) => {
                    tracing::debug!(peer = %log_peer, reason = bad.message(), "reverse proxy: bad Host, answering 400");
                    return forward::bad_request_closing(request.version(), bad.message());
                }
            };
            let version = request.version();
            let target = std::mem::take(request.uri_mut());
            let uri = match self.upstream_uri(target, request.method()) {
                Ok(uri) => uri,
                Err(why) => {
                    tracing::debug!(peer = %log_peer, why, "reverse proxy: bad request target, answering 400");
                    return forward::text(StatusCode::BAD_REQUEST, why);
                }
            };

            // An upgrade keeps the headers that ask for it; everything else hop-by-hop goes before
            // the forwarding headers are added (a client's `Connection` must not name them away).
            let client_upgrade = ClientUpgrade::take(&mut request);
            let headers = request.headers_mut();
            let destination = self.authority.as_str();
            let removed = headers::remove_hop_by_hop_but_upgrade(headers);
            if let Err(error) = removed.pass_on(headers) {
                return forward::upstream_failed(&error, destination, false, log_peer);
            }
            add_forwarding(headers, peer, host.as_ref(), secure, version);
            // The upstream's `Host`, made once; the client drops it for an HTTP/2 upstream, where
            // `:authority` (the URI's) says the same.
            let host = match host {
                Some(host) if self.preserve_host => host,
                _ => self.host.clone(),
            };
            headers.insert(header::HOST, host);
            *request.uri_mut() = uri;
            tracing::debug!(peer = %log_peer, method = %request.method(), uri = %request.uri(), "reverse proxy: forwarding");

            // `Client` is always ready; its `call` wants `&mut` only because `Service` does.
            let mut client = self.client.clone();
            let mut response = match client.call(request).await {
                Ok(response) => response,
                Err(error) => {
                    return forward::upstream_failed(&error, destination, false, log_peer);
                }
            };
            // The client hands responses on without their hop-by-hop headers. `Via` names the
            // version the response came in (RFC 9110 7.6.3), not the client's.
            let response_version = response.version();
            headers::append_via(response.headers_mut(), response_version);
            client_upgrade.relay(response, log_peer, destination, "reverse proxy")
        }
    }
}

/// What a reverse proxy adds to a request it passes on, once its hop-by-hop headers are gone
/// (so that a client's `Connection` cannot name these away): `X-Forwarded-For` (the client's
/// address `peer` appended), `X-Forwarded-Proto` (`https` when `secure`, [`is_secure`]),
/// `X-Forwarded-Host` (`host`, the client's: [`original_host`]), a `Forwarded` element and
/// `Via` (the client's `version`). Shared with `ws::Relay`, whose upstream handshake is such a
/// request.
pub(crate) fn add_forwarding(
    headers: &mut HeaderMap,
    peer: Option<SocketAddr>,
    host: Option<&HeaderValue>,
    secure: bool,
    version: ::http::Version,
) {
    add_forwarded(headers, peer, host, secure);
    headers::append_via(headers, version);
}

/// Whether the client reached us over TLS: the connection's facts say so, as nginx's `$scheme`
/// and haproxy's `ssl_fc` do. Not the request's own scheme (an `https://` target, HTTP/2's
/// `:scheme`): over plain text a client could claim `X-Forwarded-Proto: https` with it, which
/// applications trust for secure cookies and redirects.
pub(crate) fn is_secure(facts: Option<&ConnFacts>) -> bool {
    facts.is_some_and(ConnFacts::is_tls)
}

/// The host the client asked for (RFC 9112 3.2.2): the request target's authority (HTTP/2,
/// absolute-form) without user information, else `Host` (a shared copy of the header's
/// bytes); `None` for an empty `Host` or an HTTP/1.0 request without one.
///
/// `Host` is checked only when it is what names the host: with an authority in the target it
/// is ignored and then replaced, so no hop can read another host out of it, and the lookup is
/// left out of every HTTP/2 request.
pub(crate) fn original_host<B>(
    request: &Request<B>,
) -> Result<Option<HeaderValue>, headers::BadHost> {
    if let Some(authority) = request.uri().authority() {
        return Ok(HeaderValue::from_str(headers::host_port(authority)).ok());
    }
    match headers::single_host(request.headers())? {
        None if request.version() == ::http::Version::HTTP_11 => Err(headers::BadHost::Missing),
        host => Ok(host.filter(|host| !host.is_empty()).cloned()),
    }
}

/// Appends `ip` to `out`. IPv4 by hand: `Display` (with its padding support) cost more than
/// the rest of the forwarding headers together, once per request.
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(ip) => {
            for (i, octet) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        // Writing into a `String` cannot fail.
        IpAddr::V6(ip) => drop(write!(out, "{ip}")),
    }
}

/// The scheme the client used, as the forwarding headers say it.
fn proto(secure: bool) -> &'static str {
    if secure { "https" } else { "http" }
}

/// A header value of `text`, without copying it.
fn header_value(text: String) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(Bytes::from(text)).ok()
}

/// `X-Forwarded-For` (appended), `X-Forwarded-Proto`, `X-Forwarded-Host`, and a `Forwarded`
/// element (appended).
fn add_forwarded(
    headers: &mut HeaderMap,
    peer: Option<SocketAddr>,
    host: Option<&HeaderValue>,
    secure: bool,
) {
    let ip = peer.map(|peer| peer.ip().to_canonical());
    // Room for the four headers added here and the `Via` and `Host` that follow: the map
    // hyper parsed is sized for the client's headers, and growing it rehashes them all.
    headers.reserve(6);
    let (alone, element) = Forwarding::of(ip, host, secure);
    if let Some(ip) = ip {
        // Every earlier line, joined as one list (RFC 9110 5.3): a hop in front that appended
        // a line of its own (haproxy's `option forwardfor`) must not lose the client's.
        let mut earlier = headers.get_all(X_FORWARDED_FOR).iter();
        let value = match earlier.next() {
            Some(first) => {
                let mut joined = first.as_bytes().to_vec();
                for line in earlier {
                    joined.extend_from_slice(b", ");
                    joined.extend_from_slice(line.as_bytes());
                }
                let mut own = String::with_capacity(2 + 39);
                own.push_str(", ");
                push_ip(&mut own, ip);
                joined.extend_from_slice(own.as_bytes());
                HeaderValue::from_maybe_shared(Bytes::from(joined)).ok()
            }
            None => alone,
        };
        if let Some(value) = value {
            headers.insert(X_FORWARDED_FOR, value);
        }
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto(secure)));
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
    if let Some(element) = element {
        headers.append(header::FORWARDED, element);
    }
}

thread_local! {
    /// The forwarding values of the last request this thread forwarded.
    static LAST_FORWARDING: RefCell<Option<Forwarding>> = const { RefCell::new(None) };
}

/// What the forwarding headers say of a client at `ip` that asked for `host`: a function of
/// the three, which a thread's requests mostly repeat from one to the next (keep-alive
/// connections, a load balancer in front), so the last ones are kept. Made anew for each
/// request, they were two allocations apiece and half of [`add_forwarded`].
struct Forwarding {
    ip: Option<IpAddr>,
    host: Option<HeaderValue>,
    secure: bool,
    /// `X-Forwarded-For` when the request has none: the client's address.
    alone: Option<HeaderValue>,
    /// The `Forwarded` element (RFC 7239: `for`, `host`, `proto`).
    element: Option<HeaderValue>,
}

impl Forwarding {
    /// `X-Forwarded-For` alone and the `Forwarded` element: this thread's last ones when they
    /// are for the same client, host and scheme, else new ones (which become the last).
    fn of(
        ip: Option<IpAddr>,
        host: Option<&HeaderValue>,
        secure: bool,
    ) -> (Option<HeaderValue>, Option<HeaderValue>) {
        let same =
            |last: &Self| last.ip == ip && last.secure == secure && last.host.as_ref() == host;
        let values = |made: &Self| (made.alone.clone(), made.element.clone());
        LAST_FORWARDING
            .try_with(|last| {
                let mut last = last.borrow_mut();
                match last.as_ref() {
                    Some(last) if same(last) => values(last),
                    _ => values(last.insert(Self::new(ip, host, secure))),
                }
            })
            // The thread is going away: make them without keeping.
            .unwrap_or_else(|_| values(&Self::new(ip, host, secure)))
    }

    fn new(ip: Option<IpAddr>, host: Option<&HeaderValue>, secure: bool) -> Self {
        let alone = ip.and_then(|ip| {
            let mut text = String::with_capacity(39);
            push_ip(&mut text, ip);
            header_value(text)
        });
        let mut element = String::with_capacity(64);
        match ip {
            Some(ip @ IpAddr::V4(_)) => {
                element.push_str("for=");
                push_ip(&mut element, ip);
                element.push(';');
            }
            Some(ip @ IpAddr::V6(_)) => {
                element.push_str("for=\"[");
                push_ip(&mut element, ip);
                element.push_str("]\";");
            }
            None => {}
        }
        let quotable = host
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.contains(['"', '\\']));
        if let Some(host) = quotable {
            element.push_str("host=\"");
            element.push_str(host);
            element.push_str("\";");
        }
        element.push_str("proto=");
        element.push_str(proto(secure));
        Self {
            ip,
            host: host.cloned(),
            secure,
            alone,
            element: header_value(element),
        }
    }
}

// ===== impl UpstreamError =====

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad upstream `{}`: {}", self.upstream, self.reason)
    }
}

impl StdError for UpstreamError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_ref().map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstreams() {
        let proxy = ReverseProxy::new("http://127.0.0.1:8000").unwrap();
        assert_eq!(proxy.authority().as_str(), "127.0.0.1:8000");
        assert_eq!(proxy.inner.host, "127.0.0.1:8000");
        let named = ReverseProxy::new("https://user@example.com/base").unwrap();
        assert_eq!(named.inner.host, "example.com");
        let uri: Uri = "/a/b?c=d".parse().unwrap();
        assert_eq!(
            proxy.inner.upstream_uri(uri.clone(), &Method::GET).unwrap(),
            "http://127.0.0.1:8000/a/b?c=d"
        );
        let secure = ReverseProxy::new("https://example.com").unwrap();
        assert_eq!(
            secure.inner.upstream_uri(uri, &Method::GET).unwrap(),
            "https://example.com/a/b?c=d"
        );
        assert_eq!(secure.default_port(), 443);
        let based = ReverseProxy::new("http://origin/base/").unwrap();
        let absolute: Uri = "http://front.example/x?y".parse().unwrap();
        assert_eq!(
            based.inner.upstream_uri(absolute, &Method::GET).unwrap(),
            "http://origin/base/x?y"
        );
        for bad in ["127.0.0.1:80", "ftp://x", "http://x/?q", "http://"] {
            assert!(ReverseProxy::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ips_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "127.0.0.1",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = String::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string());
        }
    }

    #[test]
    fn forwarded_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        add_forwarded(
            &mut headers,
            Some("[::ffff:192.0.2.7]:5000".parse().unwrap()),
            Some(&HeaderValue::from_static("front.example:8080")),
            false,
        );
        assert_eq!(headers[X_FORWARDED_FOR], "10.0.0.1, 192.0.2.7");
        assert_eq!(headers[X_FORWARDED_PROTO], "http");
        assert_eq!(headers[X_FORWARDED_HOST], "front.example:8080");
        assert_eq!(
            headers[header::FORWARDED],
            "for=192.0.2.7;host=\"front.example:8080\";proto=http"
        );
        let mut headers = HeaderMap::new();
        add_forwarded(&mut headers, Some("[::1]:1".parse().unwrap()), None, true);
        assert_eq!(headers[header::FORWARDED], "for=\"[::1]\";proto=https");
    }

    #[test]
    fn dot_segments_are_resolved_and_may_not_climb_above_the_root() {
        for (path, resolved) in [
            ("/", Some("/")),
            ("/a/b", Some("/a/b")),
            ("/a/./b", Some("/a/b")),
            ("/a/../b", Some("/b")),
            ("/a/b/..", Some("/a/")),
            ("/a/.", Some("/a/")),
            ("/a/%2e%2E/b", Some("/b")),
            ("/a/.hidden/x.y", Some("/a/.hidden/x.y")),
            ("//a/../b", Some("//b")),
            ("/a%2fb", Some("/a%2fb")),
            ("/..", None),
            ("/../admin", None),
            ("/a/../../admin", None),
            ("/%2e%2e/admin", None),
            ("/..%2fadmin", None),
            ("/x%2F..%2Fadmin", None),
            ("/..%5cadmin", None),
            ("/..\\admin", None),
            ("/..;/admin", None),
            ("/a/..;x=1/b", None),
            ("/%2e%2e;/admin", None),
            ("/a%2f..;%2fb", None),
            ("/a;b/c;d", Some("/a;b/c;d")),
        ] {
            assert_eq!(resolve_dots(path).as_deref(), resolved, "{path}");
        }
    }

    /// The path an origin resolves `path` to, reading it as the most lenient ones do: `%2E`,
    /// `%2F` and `%5C` decoded, a backslash a separator, each segment's `;` parameters cut
    /// (Tomcat, Jetty and Spring read `..;x` as `..`), then dot segments removed (RFC 3986
    /// 5.2.4), `..` at the root staying there.
    fn as_a_lenient_origin_reads(path: &str) -> String {
        let mut decoded = String::new();
        let mut rest = path;
        while let Some(c) = rest.chars().next() {
            let escape = rest.get(..3).map(str::to_ascii_lowercase);
            match escape.as_deref() {
                Some("%2e") => decoded.push('.'),
                Some("%2f" | "%5c") => decoded.push('/'),
                _ => {
                    decoded.push(if c == '\\' { '/' } else { c });
                    rest = &rest[c.len_utf8()..];
                    continue;
                }
            }
            rest = &rest[3..];
        }
        let mut kept: Vec<&str> = Vec::new();
        for segment in decoded.split('/').skip(1) {
            match segment.split(';').next().unwrap_or_default() {
                "." => {}
                ".." => {
                    kept.pop();
                }
                _ => kept.push(segment),
            }
        }
        format!("/{}", kept.join("/"))
    }

    /// Random request paths of segments a traversal is made of: whatever the proxy forwards
    /// under its base path stays under it however leniently the origin reads it.
    #[test]
    fn no_request_path_reaches_above_the_base_path_at_a_lenient_origin() {
        const PIECES: &[&str] = &[
            "a", "b", ".", "..", "%2e", "%2E", "%2e%2e", ".%2e", "%2f", "%2F", "%5c", "%5C", ";",
            ";x", "..;", ".;", "..;x=1", "%2e%2e;", "%25", "x.y", "", "\\",
        ];
        let proxy = ReverseProxy::new("http://127.0.0.1:1/base").unwrap();
        let mut rng = crate::mutate::Rng::seeded(1);
        let mut forwarded = 0;
        for _ in 0..50_000 {
            let mut path = String::new();
            for _ in 0..=rng.below(5) {
                path.push('/');
                for _ in 0..=rng.below(2) {
                    path.push_str(PIECES[rng.below(PIECES.len())]);
                }
            }
            let Ok(target) = path.parse::<Uri>() else {
                continue;
            };
            let Ok(uri) = proxy.inner.upstream_uri(target, &Method::GET) else {
                continue;
            };
            forwarded += 1;
            let reached = as_a_lenient_origin_reads(uri.path());
            assert!(
                reached == "/base" || reached.starts_with("/base/"),
                "{path} went upstream as {} and reaches {reached}",
                uri.path()
            );
        }
        // Most paths are forwarded: the test is not one of refusals alone.
        assert!(forwarded > 10_000, "only {forwarded} paths were forwarded");
    }

    #[test]
    fn the_upstream_uri_keeps_the_base_path_a_boundary() {
        let proxy = ReverseProxy::new("http://127.0.0.1:1/base").unwrap();
        let uri = |target: &str, method: Method| {
            proxy
                .inner
                .upstream_uri(target.parse().unwrap(), &method)
                .map(|uri| uri.to_string())
        };
        assert_eq!(
            uri("/a/../b?x=../y", Method::GET).unwrap(),
            "http://127.0.0.1:1/base/b?x=../y"
        );
        assert!(uri("/../admin", Method::GET).is_err());
        assert_eq!(uri("*", Method::OPTIONS).unwrap(), "http://127.0.0.1:1*");
        assert!(uri("*", Method::DELETE).is_err());
        let bare = ReverseProxy::new("http://127.0.0.1:1").unwrap();
        assert!(
            bare.inner
                .upstream_uri("*".parse().unwrap(), &Method::GET)
                .is_err()
        );
    }

    /// Every earlier `X-Forwarded-For` line is kept, in order, whatever bytes it holds.
    #[test]
    fn earlier_forwarded_for_lines_are_joined() {
        let mut headers = HeaderMap::new();
        headers.append(X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        headers.append(
            X_FORWARDED_FOR,
            HeaderValue::from_static("192.0.2.9, 10.0.0.2"),
        );
        headers.append(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"obs\xe9").unwrap(),
        );
        add_forwarded(
            &mut headers,
            Some("127.0.0.1:1".parse().unwrap()),
            None,
            false,
        );
        let lines: Vec<_> = headers.get_all(X_FORWARDED_FOR).iter().collect();
        assert_eq!(lines.len(), 1);
        assert_eq!(
            lines[0].as_bytes(),
            b"6.6.6.6, 192.0.2.9, 10.0.0.2, obs\xe9, 127.0.0.1"
        );
    }

    /// The kept values are only handed out for the same client, host and scheme.
    #[test]
    fn forwarding_values_follow_client_host_and_scheme() {
        let forwarded = |peer: &str, host: Option<&'static str>, secure| {
            let mut headers = HeaderMap::new();
            let host = host.map(HeaderValue::from_static);
            add_forwarded(
                &mut headers,
                Some(peer.parse().unwrap()),
                host.as_ref(),
                secure,
            );
            let field = |name| {
                headers
                    .get(name)
                    .map(|v: &HeaderValue| v.to_str().unwrap().to_owned())
            };
            (field(X_FORWARDED_FOR), field(header::FORWARDED))
        };
        let values = |xff: &str, element: &str| (Some(xff.to_owned()), Some(element.to_owned()));
        let a = values("192.0.2.1", "for=192.0.2.1;host=\"a.example\";proto=http");
        assert_eq!(forwarded("192.0.2.1:1", Some("a.example"), false), a);
        assert_eq!(forwarded("192.0.2.1:2", Some("a.example"), false), a);
        assert_eq!(
            forwarded("192.0.2.1:2", Some("b.example"), false),
            values("192.0.2.1", "for=192.0.2.1;host=\"b.example\";proto=http")
        );
        assert_eq!(
            forwarded("192.0.2.1:2", Some("b.example"), true),
            values("192.0.2.1", "for=192.0.2.1;host=\"b.example\";proto=https")
        );
        assert_eq!(
            forwarded("192.0.2.9:2", Some("b.example"), true),
            values("192.0.2.9", "for=192.0.2.9;host=\"b.example\";proto=https")
        );
        assert_eq!(
            forwarded("192.0.2.9:2", None, true),
            values("192.0.2.9", "for=192.0.2.9;proto=https")
        );
    }
}
