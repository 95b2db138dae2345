//! An HTTP reverse proxy: every request to `--listen` goes to `--upstream`, one server per core.
//!
//! HTTP/1.1 and HTTP/2 (prior knowledge) from clients; a pooled HTTP/1.1 (or, with
//! `--http2-upstream`, HTTP/2) upstream, plain or TLS (`https://`, `--upstream-ca`); `X-Forwarded-For`/`-Proto`/`-Host` and `Forwarded`
//! added; bodies streamed both ways; WebSocket and other upgrades passed through. tower-http's
//! `TraceLayer` (`--trace`: request spans and events, `RUST_LOG=tower_http=debug`) and
//! `CompressionLayer` (`--gzip`: gzip for clients that accept it) stand in the diagram
//! unchanged, each behind `tower::util::option_layer`; both are off by default, so the proxy
//! runs bare like the peers in `bench/http.sh`. Each layer changes the response body type, and
//! the two arms of an optional layer must answer one type: `MapResponseLayer` with
//! `Body::map_response` makes the layer's arm answer `http::Body` like the bare arm.
//!
//! ```text
//! cargo run --release --example reverse_proxy -- --upstream http://127.0.0.1:8000 --gzip
//! curl http://127.0.0.1:8081/
//! curl --http2-prior-knowledge http://127.0.0.1:8081/
//! ```

use ::http::{HeaderValue, Response, header};
use rama::{
    Target,
    http::{self, Body, Client, ReverseProxy},
    proxy, tls,
};
use rama_examples::{Args, DRAIN_TIMEOUT, Failure, IDLE_TIMEOUT, bind, init_tracing};
use std::net::SocketAddr;
use tower::util::{MapResponseLayer, option_layer};
use tower_http::{compression::CompressionLayer, trace::TraceLayer};

const USAGE: &str = "\
reverse_proxy: an HTTP reverse proxy to one upstream

usage: reverse_proxy --upstream http://HOST:PORT[/PATH] [--listen ADDR] [options]

  --upstream URL              where every request goes (http:// or https://)
  --upstream-ca FILE          verify an https:// upstream against this CA (default: webpki roots)
  --upstream-alpn LIST        protocols offered to an https:// upstream, e.g. h2,http/1.1
                              (default: none, HTTP/1.1; upgrades offer http/1.1 alone)
  --listen ADDR               where to accept connections (default 127.0.0.1:8081)
  --threads N                 servers, one per thread (default: one per core)
  --sched-batch               run the server threads under SCHED_BATCH (Linux; see
                              tcp::PerCore::batch_scheduling)
  --http2-upstream            speak HTTP/2 (prior knowledge) to the upstream
  --preserve-host             send the client's Host upstream (default: the upstream's)
  --trace                     tower-http's TraceLayer (RUST_LOG=tower_http=debug shows it)
  --gzip                      tower-http's CompressionLayer (gzip for clients that accept it)
  --upstream-timeout SECS     how long the upstream may take to answer (default 60; 504)";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Failure> {
    init_tracing();
    let args = Args::parse(
        USAGE,
        &[
            "http2-upstream",
            "preserve-host",
            "trace",
            "gzip",
            "sched-batch",
        ],
    );
    let trace = args.flag("trace");
    let gzip = args.flag("gzip");
    let listen: SocketAddr = args.get("listen", "127.0.0.1:8081");
    let threads: usize = args.get("threads", "0");
    let upstream: String = args.required("upstream");
    let upstream_timeout = args.seconds("upstream-timeout", "60");
    let ca: String = args.get("upstream-ca", "");
    let alpn: String = args.get("upstream-alpn", "");
    let connector = tls::Connector::builder().alpn(alpn.split(',').filter(|p| !p.is_empty()));
    let connector = match ca.as_str() {
        "" => connector,
        path => connector.ca_pem_file(path)?,
    }
    .build()?;
    let client = Client::builder()
        .http2_only(args.flag("http2-upstream"))
        .response_timeout(upstream_timeout)
        .tls(connector)
        .build();
    let upstream = ReverseProxy::new(&upstream)?
        .client(client)
        .preserve_host(args.flag("preserve-host"));
    let reverse = Target::reverse_proxy(upstream);

    let servers = bind(listen, threads, |addr| {
        vec![
            format!("try: curl http://{addr}/"),
            format!("try: curl --http2-prior-knowledge http://{addr}/"),
        ]
    })?
    .batch_scheduling(args.flag("sched-batch"));
    servers
        .run(move |listener| {
            proxy! {
                listener
                    => http::Server::new()
                    => option_layer(trace.then(|| (
                        MapResponseLayer::new(Body::map_response),
                        TraceLayer::new_for_http(),
                    )))
                    => option_layer(gzip.then(|| (
                        MapResponseLayer::new(Body::map_response),
                        MapResponseLayer::new(weak_etag_if_compressed),
                        CompressionLayer::new(),
                        MapResponseLayer::new(mark_identity),
                    )))
                    => reverse.clone()
            }
            .idle_timeout(IDLE_TIMEOUT)
            .drain_timeout(DRAIN_TIMEOUT)
        })
        .await?;
    Ok(())
}

/// Marks a response the upstream sent without a content coding, for
/// [`weak_etag_if_compressed`].
#[derive(Clone, Copy)]
struct SentIdentity;

fn mark_identity<B>(mut response: Response<B>) -> Response<B> {
    if !response.headers().contains_key(header::CONTENT_ENCODING) {
        response.extensions_mut().insert(SentIdentity);
    }
    response
}

/// A response the compression layer encoded is another representation than the upstream's:
/// its ETag cannot stay the identity one's strong ETag (RFC 9110 8.8.3), or a resumed
/// download (`If-Range`) would put identity bytes behind gzip ones. Weak, as nginx's gzip
/// filter makes it; the upstream's own encodings keep theirs.
fn weak_etag_if_compressed<B>(mut response: Response<B>) -> Response<B> {
    let compressed = response.extensions().get::<SentIdentity>().is_some()
        && response.headers().contains_key(header::CONTENT_ENCODING);
    let headers = response.headers_mut();
    if let (true, Some(etag)) = (compressed, headers.get(header::ETAG))
        && !etag.as_bytes().starts_with(b"W/")
        && let Ok(weak) = HeaderValue::from_bytes(&[b"W/", etag.as_bytes()].concat())
    {
        headers.insert(header::ETAG, weak);
    }
    response
}
