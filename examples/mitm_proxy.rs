//! An intercepting HTTPS proxy: every request (inside `CONNECT` tunnels too) is logged with
//! the client's address, gets an `x-rama-mitm: 1` header, and is forwarded to its origin,
//! whose certificate is verified. WebSocket upgrades (`wss://` through the interception too)
//! are relayed message by message, each message logged. One server per core.
//!
//! The interception CA is loaded from `--ca-dir` (`ca.pem`, `ca.key`) or generated there on
//! first start (the key file owner-only); clients must trust `ca.pem`.
//!
//! ```text
//! cargo run --release --example mitm_proxy -- --ca-dir /tmp/rama-mitm
//! curl -x http://127.0.0.1:8082 --cacert /tmp/rama-mitm/ca.pem https://example.com/
//! ```

use ::http::{HeaderValue, Request, Response};
use rama::{
    Target,
    egress::EgressLayer,
    http::{self, Client, ConnFacts, mitm::NotTls},
    proxy,
    tls::{self, intercept::Authority},
    ws,
};
use rama_examples::{Args, DRAIN_TIMEOUT, Failure, TagTexts, bind, egress_rules, init_tracing};
use std::{
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};
use tower::{Layer, Service};

const USAGE: &str = "\
mitm_proxy: an HTTP proxy that intercepts HTTPS (CONNECT) with certificates of its own CA

usage: mitm_proxy --ca-dir DIR [--listen ADDR] [options]

  --ca-dir DIR                the CA: DIR/ca.pem and DIR/ca.key, generated when missing
  --listen ADDR               where to accept connections (default 127.0.0.1:8082)
  --upstream-ca FILE          verify origins against this CA (default: webpki roots)
  --pass-through HOST         tunnel this host untouched (repeatable; `*.example.com` too)
  --relay-plain               relay tunnels that do not speak TLS as plain bytes (default: close)
  --ws-tag PREFIX             put PREFIX before every text message from a WebSocket origin
  --threads N                 servers, one per thread (default: one per core)
  --deny-port PORT            refuse destinations on this port (repeatable; answered 403)
  --upstream-timeout SECS     how long an origin may take to answer (default 60; 504)
  --allow-private             dial loopback/private destinations even when listening beyond loopback
  --loopback-only             dial loopback destinations only (other names refused unresolved)";

/// The header every request gets on its way to the origin.
const MARK: &str = "x-rama-mitm";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Failure> {
    init_tracing();
    let args = Args::parse(USAGE, &["relay-plain", "allow-private", "loopback-only"]);
    let listen: SocketAddr = args.get("listen", "127.0.0.1:8082");
    let threads: usize = args.get("threads", "0");
    let ca_dir: PathBuf = args.required("ca-dir");
    let upstream_timeout = args.seconds("upstream-timeout", "60");
    let upstream_ca: String = args.get("upstream-ca", "");
    let rules = egress_rules(&args, listen)?;

    let authority = Arc::new(Authority::load_or_create(&ca_dir)?);
    let not_tls = match args.flag("relay-plain") {
        true => NotTls::Relay,
        false => NotTls::Close,
    };
    // The rules judge both what the proxy intercepts (the client dials those) and what it
    // tunnels untouched.
    let pass_through = args
        .all("pass-through")
        .into_iter()
        .map(pass_through_host)
        .collect::<Result<Vec<_>, _>>()?;
    let mitm = http::Mitm::new(authority)?
        .pass_through(pass_through)
        .not_tls(not_tls)
        .rules(rules.clone())
        .tunnel(EgressLayer::new(rules).layer(Target::requested()));
    // Origins are verified against the webpki roots or --upstream-ca; HTTP may be h2,
    // WebSocket handshakes are HTTP/1.1.
    let connector = |alpn: &[&str]| {
        let builder = tls::Connector::builder().alpn(alpn);
        match upstream_ca.as_str() {
            "" => Ok::<_, tls::Error>(builder.webpki_roots()),
            path => builder.ca_pem_file(path),
        }?
        .build()
    };
    let client = Client::builder()
        .response_timeout(upstream_timeout)
        .tls(connector(&["h2", "http/1.1"])?)
        .build();
    let tag: String = args.get("ws-tag", "");
    let relay = ws::Relay::requested()
        .tls(connector(&["http/1.1"])?)
        .hook(TagTexts::new(tag));

    let ca = ca_dir.join("ca.pem");
    let ca = ca.display();
    let servers = bind(listen, threads, |addr| {
        vec![
            format!("interception CA: {ca} (trust it to see through the proxy)"),
            format!("try: curl -x http://{addr} --cacert {ca} https://example.com/"),
            format!("     (an https:// proxy URL would also need --proxy-cacert {ca})"),
            format!(
                "system-wide (Debian): cp {ca} /usr/local/share/ca-certificates/rama-mitm.crt && update-ca-certificates"
            ),
        ]
    })?;
    servers
        .run(move |listener| {
            proxy! {
                listener
                    => http::Server::new()
                    => mitm.clone()
                    => InspectLayer
                    => relay.clone()
                    => client.clone()
            }
            .drain_timeout(DRAIN_TIMEOUT)
        })
        .await?;
    Ok(())
}

/// Logs each request and response line with the client's address and marks the request.
#[derive(Debug, Clone, Copy)]
struct InspectLayer;

#[derive(Debug, Clone)]
struct Inspect<S> {
    inner: S,
}

impl<S> Layer<S> for InspectLayer {
    type Service = Inspect<S>;

    fn layer(&self, inner: S) -> Inspect<S> {
        Inspect { inner }
    }
}

type Answer<R, E> = Pin<Box<dyn Future<Output = Result<R, E>>>>;

impl<S, B> Service<Request<rama::http::Body>> for Inspect<S>
where
    S: Service<Request<rama::http::Body>, Response = Response<B>>,
    S::Future: 'static,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Answer<Response<B>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<rama::http::Body>) -> Self::Future {
        let peer = request
            .extensions()
            .get::<ConnFacts>()
            .map(ConnFacts::peer_addr);
        let peer = peer.map_or_else(|| "-".to_owned(), |p| p.to_string());
        let line = format!(
            "{} {} {:?}",
            request.method(),
            request.uri(),
            request.version()
        );
        tracing::info!(%peer, "request: {line}");
        request
            .headers_mut()
            .insert(MARK, HeaderValue::from_static("1"));
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            tracing::info!(%peer, "response: {line} -> {} {:?}", response.status(), response.version());
            Ok(response)
        })
    }
}

/// A `--pass-through` value: a host name (`*.` for its subdomains) or an address. A port or
/// a scheme (`localhost:443`, `https://localhost`, as mitmproxy's `--ignore-hosts` takes
/// them) would never match, and the host would be intercepted, not passed.
fn pass_through_host(value: String) -> Result<String, String> {
    let name = value.strip_prefix("*.").unwrap_or(&value);
    let is_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if is_name || value.parse::<std::net::IpAddr>().is_ok() {
        Ok(value)
    } else {
        Err(format!(
            "--pass-through {value}: a host name (`*.` for its subdomains) or an address, \
             without a port or scheme: every port of the host passes"
        ))
    }
}
