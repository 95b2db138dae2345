//! The main rama proxy: SOCKS5 and HTTP proxying on one port (127.0.0.1:8080 by default), told
//! apart by the client's first byte (`0x05` is SOCKS5, anything else HTTP), one server per core.
//!
//! - SOCKS5: CONNECT and UDP ASSOCIATE;
//! - HTTP: `CONNECT` tunnels (`https://` through `curl -x`) and absolute-form requests
//!   (`http://` through `curl -x`), HTTP/1.1 and HTTP/2;
//! - `--user NAME:PASSWORD` (repeatable) requires a login on both: RFC 1929 for SOCKS5,
//!   `Proxy-Authorization: Basic` for HTTP (`407` without it);
//! - egress rules: listening beyond loopback denies loopback, private, link-local and metadata
//!   destinations unless `--allow-private`; `--deny-port` refuses ports (SOCKS5 0x02, HTTP 403).
//!
//! ```text
//! cargo run --release --example proxy
//! curl -x http://127.0.0.1:8080 http://example.com/
//! curl -x http://127.0.0.1:8080 https://example.com/
//! curl --socks5-hostname 127.0.0.1:8080 https://example.com/
//! ```

use rama::{
    Target, detect,
    egress::EgressLayer,
    http, proxy,
    socks5::{self, auth::Users},
};
use rama_examples::{
    Args, DRAIN_TIMEOUT, Failure, IDLE_TIMEOUT, bind, curl_credentials, egress_rules, init_tracing,
};
use std::net::SocketAddr;
use tower::ServiceBuilder;

const USAGE: &str = "\
proxy: the main rama proxy: SOCKS5 and HTTP (CONNECT and absolute-form) on one port

usage: proxy [--listen ADDR] [--user NAME:PASSWORD]... [options]

  --listen ADDR          where to accept connections (default 127.0.0.1:8080)
  --user NAME:PASSWORD   require this user (repeatable; SOCKS5 and HTTP); without any, no login
  --threads N            servers, one per thread (default: one per core)
  --allow-private        dial loopback/private destinations even when listening beyond loopback
  --loopback-only        dial loopback destinations only (other names refused unresolved)
  --deny-port PORT       refuse destinations on this port (repeatable; SOCKS5 0x02, HTTP 403)
  --connect-timeout SECS how long dialing an upstream may take (default 10)

Listening beyond loopback denies loopback, private, link-local and metadata destinations.";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Failure> {
    init_tracing();
    let args = Args::parse(USAGE, &["allow-private", "loopback-only"]);
    let listen: SocketAddr = args.get("listen", "127.0.0.1:8080");
    let threads: usize = args.get("threads", "0");
    let connect_timeout = args.seconds("connect-timeout", "10");
    let user_args = args.all("user");
    let users = Users::parse(user_args.iter().map(String::as_str))?;
    let rules = egress_rules(&args, listen)?;

    let credentials = curl_credentials(&user_args);
    let servers = bind(listen, threads, |addr| {
        vec![
            format!("try: curl -x http://{credentials}{addr} http://example.com/"),
            format!("try: curl -x http://{credentials}{addr} https://example.com/"),
            format!("try: curl --socks5-hostname {credentials}{addr} https://example.com/"),
        ]
    })?;
    let socks5 = socks5::Server::new().udp(true).rules(rules.clone());
    let forward = http::ForwardProxy::new().rules(rules.clone()).client(
        http::Client::builder()
            .connect_timeout(connect_timeout)
            .build(),
    );
    let dial = Target::requested().connect_timeout(connect_timeout);
    let egress = EgressLayer::new(rules);
    let served = if users.is_empty() {
        servers
            .run(move |server| {
                let socks5 = ServiceBuilder::new()
                    .layer(socks5.clone())
                    .layer(egress.clone())
                    .service(dial.clone());
                let http = ServiceBuilder::new()
                    .layer(http::Server::new())
                    .layer(forward.clone())
                    .layer(egress.clone())
                    .service(dial.clone());
                proxy! { server => detect::socks5_or_http(socks5, http) }
                    .idle_timeout(IDLE_TIMEOUT)
                    .drain_timeout(DRAIN_TIMEOUT)
            })
            .await
    } else {
        servers
            .run(move |server| {
                let socks5 = ServiceBuilder::new()
                    .layer(socks5.clone().with_auth(users.clone()))
                    .layer(egress.clone())
                    .service(dial.clone());
                let http = ServiceBuilder::new()
                    .layer(http::Server::new())
                    .layer(forward.clone().with_auth(users.clone()))
                    .layer(egress.clone())
                    .service(dial.clone());
                proxy! { server => detect::socks5_or_http(socks5, http) }
                    .idle_timeout(IDLE_TIMEOUT)
                    .drain_timeout(DRAIN_TIMEOUT)
            })
            .await
    };
    Ok(served?)
}
