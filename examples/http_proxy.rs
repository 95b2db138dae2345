//! An HTTP forward proxy (absolute-form and `CONNECT`), one server per core, optionally with
//! users: what `curl -x` and browsers speak. HTTP/1.1 and HTTP/2 (prior knowledge on plain
//! text); with `--tls-cert`/`--tls-key` an HTTPS proxy (clients speak TLS to the proxy), which
//! offers `h2` and `http/1.1` by ALPN. `tls` stands in the diagram behind
//! `tower::util::option_layer`, whose two arms must agree on their error type too: the `tls`
//! arm's is a `BoxError`, so `MapErrLayer` makes the plain arm's (`http::Error`) one as well.
//!
//! ```text
//! cargo run --release --example http_proxy -- --listen 127.0.0.1:3128 --user alice:s3cret
//! curl -x http://alice:s3cret@127.0.0.1:3128 http://example.com/
//! curl -x http://alice:s3cret@127.0.0.1:3128 https://example.com/
//! ```

use rama::{
    BoxError, Target,
    egress::EgressLayer,
    http::{self, Client},
    proxy,
    socks5::auth::Users,
    tls,
};
use rama_examples::{
    Args, DRAIN_TIMEOUT, Failure, IDLE_TIMEOUT, bind, curl_credentials, egress_rules, init_tracing,
};
use std::net::SocketAddr;
use tower::util::{MapErrLayer, option_layer};

const USAGE: &str = "\
http_proxy: an HTTP forward proxy (absolute-form and CONNECT), optionally with users

usage: http_proxy [--listen ADDR] [--user NAME:PASSWORD]... [options]

  --listen ADDR               where to accept connections (default 127.0.0.1:3128)
  --user NAME:PASSWORD        require this user (repeatable); without any, no authentication
  --threads N                 servers, one per thread (default: one per core)
  --sched-batch               run the server threads under SCHED_BATCH (Linux; see
                              tcp::PerCore::batch_scheduling)
  --deny-port PORT            refuse destinations on this port (repeatable; answered 403)
  --header-read-timeout SECS  how long a client may take to send its headers (default 30; 408)
  --connect-timeout SECS      how long dialing an upstream may take (default 10; 504)
  --upstream-timeout SECS     how long an upstream may take to answer (default 60; 504)
  --allow-private             dial loopback/private destinations even when listening beyond loopback
  --loopback-only             dial loopback destinations only (other names refused unresolved)
  --tls-cert FILE, --tls-key FILE
                              serve the proxy over TLS with this certificate chain and key (PEM),
                              offering h2 and http/1.1 by ALPN (curl --proxy https://...)";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Failure> {
    init_tracing();
    let args = Args::parse(USAGE, &["allow-private", "sched-batch", "loopback-only"]);
    let listen: SocketAddr = args.get("listen", "127.0.0.1:3128");
    let threads: usize = args.get("threads", "0");
    let header_read_timeout = args.seconds("header-read-timeout", "30");
    let connect_timeout = args.seconds("connect-timeout", "10");
    let upstream_timeout = args.seconds("upstream-timeout", "60");
    let user_args = args.all("user");
    let users = Users::parse(user_args.iter().map(String::as_str))?;
    let rules = egress_rules(&args, listen)?;
    let tls_cert: String = args.get("tls-cert", "");
    let tls_key: String = args.get("tls-key", "");
    let acceptor = match (tls_cert.is_empty(), tls_key.is_empty()) {
        (true, true) => None,
        (false, false) => Some(
            tls::Acceptor::builder()
                .cert_pem_files(&tls_cert, &tls_key)?
                .alpn(["h2", "http/1.1"])
                .build()?,
        ),
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };

    let credentials = curl_credentials(&user_args);
    let servers = bind(listen, threads, |addr| {
        vec![match acceptor {
            None => format!("try: curl -x http://{credentials}{addr} http://example.com/"),
            Some(_) => format!(
                "try: curl --proxy-cacert CA.pem -x https://{credentials}{addr} http://example.com/"
            ),
        }]
    })?
    .batch_scheduling(args.flag("sched-batch"));
    let server = http::Server::new().header_read_timeout(header_read_timeout);
    let forward = http::ForwardProxy::new().rules(rules.clone()).client(
        Client::builder()
            .connect_timeout(connect_timeout)
            .response_timeout(upstream_timeout)
            .build(),
    );
    let dial = Target::requested().connect_timeout(connect_timeout);
    let served = if users.is_empty() {
        servers
            .run(move |listener| {
                proxy! {
                    listener
                        => option_layer(acceptor.clone())
                        => MapErrLayer::new(BoxError::from)
                        => server.clone()
                        => forward.clone()
                        => EgressLayer::new(rules.clone())
                        => dial.clone()
                }
                .idle_timeout(IDLE_TIMEOUT)
                .drain_timeout(DRAIN_TIMEOUT)
            })
            .await
    } else {
        servers
            .run(move |listener| {
                proxy! {
                    listener
                        => option_layer(acceptor.clone())
                        => MapErrLayer::new(BoxError::from)
                        => server.clone()
                        => forward.clone().with_auth(users.clone())
                        => EgressLayer::new(rules.clone())
                        => dial.clone()
                }
                .idle_timeout(IDLE_TIMEOUT)
                .drain_timeout(DRAIN_TIMEOUT)
            })
            .await
    };
    Ok(served?)
}
