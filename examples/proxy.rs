//! The main rama proxy: for now a SOCKS5 proxy (CONNECT and UDP ASSOCIATE) on 127.0.0.1:8080,
//! one server per core; it grows into the all-in-one local proxy (SOCKS5 and HTTP on one
//! port) in later issues.
//!
//! ```text
//! cargo run --release --example proxy
//! curl --socks5-hostname 127.0.0.1:8080 http://example.com/
//! ```

use rama::{
    BoxError,
    egress::{EgressLayer, Rules},
    graceful, proxy,
    socks5::{self, auth::Users},
    tcp,
};
use rama_examples::{Args, init_tracing};
use std::{net::SocketAddr, time::Duration};

const USAGE: &str = "\
proxy: the main rama proxy (for now: SOCKS5)

usage: proxy [--listen ADDR] [--user NAME:PASSWORD]...

  --listen ADDR          where to accept connections (default 127.0.0.1:8080)
  --user NAME:PASSWORD   require this user (repeatable); without any, no authentication

Listening beyond loopback denies loopback, private, link-local and metadata destinations.";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    init_tracing();
    let args = Args::parse(USAGE, &[]);
    let listen: SocketAddr = args.get("listen", "127.0.0.1:8080");
    let user_args = users();
    let users = Users::parse(user_args.iter().map(String::as_str))?;
    let rules = if listen.ip().is_loopback() {
        Rules::allow_by_default()
    } else {
        Rules::public_only()
    };

    let servers = tcp::PerCore::bind(listen)?;
    let addr = servers.local_addr();
    println!("listening on {addr}");
    let credentials = user_args
        .first()
        .map(|user| format!("{user}@"))
        .unwrap_or_default();
    println!("try: curl --socks5-hostname {credentials}{addr} http://example.com/");

    let servers = servers.with_graceful_shutdown(graceful::ctrl_c_or_sigterm());
    let stage = socks5::Server::new().udp(true).rules(rules.clone());
    if users.is_empty() {
        servers
            .run(move |server| {
                proxy! { server => stage.clone() => EgressLayer::new(rules.clone()) => target }
                    .idle_timeout(Duration::from_secs(300))
                    .drain_timeout(Duration::from_secs(30))
            })
            .await
    } else {
        servers
            .run(move |server| {
                proxy! {
                    server
                        => stage.clone().with_auth(users.clone())
                        => EgressLayer::new(rules.clone())
                        => target
                }
                .idle_timeout(Duration::from_secs(300))
                .drain_timeout(Duration::from_secs(30))
            })
            .await
    }
}

/// Every `--user` value (the option is repeatable).
fn users() -> Vec<String> {
    let mut values = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--user" {
            values.extend(args.next());
        } else if let Some(value) = arg.strip_prefix("--user=") {
            values.push(value.to_owned());
        }
    }
    values
}
