//! A SOCKS5 proxy (CONNECT and UDP ASSOCIATE), one server per core, optionally with users.
//!
//! Listening beyond loopback turns on the public-only egress rules (no loopback, private,
//! link-local or metadata destinations) unless `--allow-private` says otherwise.
//!
//! ```text
//! cargo run --release --example socks5_proxy -- --listen 127.0.0.1:1080 --user alice:s3cret
//! curl --socks5-hostname alice:s3cret@127.0.0.1:1080 http://example.com/
//! ```

use rama::{
    egress::EgressLayer,
    proxy,
    socks5::{self, auth::Users},
};
use rama_examples::{
    Args, DRAIN_TIMEOUT, Failure, bind, curl_credentials, egress_rules, init_tracing,
};
use std::net::SocketAddr;

const USAGE: &str = "\
socks5_proxy: a SOCKS5 proxy (CONNECT, UDP ASSOCIATE), optionally with username/password

usage: socks5_proxy [--listen ADDR] [--user NAME:PASSWORD]... [--threads N] [--allow-private]
                    [--loopback-only] [--deny-port PORT]... [--idle-timeout SECS]

  --listen ADDR          where to accept connections (default 127.0.0.1:1080)
  --user NAME:PASSWORD   require this user (repeatable); without any, no authentication
  --threads N            servers, one per thread (default: one per core)
  --allow-private        dial loopback/private destinations even when listening beyond loopback
  --loopback-only        dial loopback destinations only (other names refused unresolved)
  --deny-port PORT       refuse tunnels to this destination port (repeatable; answered 0x02)
  --idle-timeout SECS    close connections idle that long, tunnels too (default 0 = never)";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Failure> {
    init_tracing();
    let args = Args::parse(USAGE, &["allow-private", "loopback-only"]);
    let listen: SocketAddr = args.get("listen", "127.0.0.1:1080");
    let threads: usize = args.get("threads", "0");
    let users = Users::parse(args.all("user").iter().map(String::as_str))?;
    let rules = egress_rules(&args, listen)?;
    let idle = Some(args.seconds("idle-timeout", "0")).filter(|idle| !idle.is_zero());

    let credentials = curl_credentials(&args.all("user"));
    let servers = bind(listen, threads, |addr| {
        vec![format!(
            "try: curl --socks5-hostname {credentials}{addr} http://example.com/"
        )]
    })?;
    let stage = socks5::Server::new().udp(true).rules(rules.clone());
    let served = if users.is_empty() {
        servers
            .run(move |server| {
                let serve =
                    proxy! { server => stage.clone() => EgressLayer::new(rules.clone()) => target }
                        .drain_timeout(DRAIN_TIMEOUT);
                match idle {
                    Some(idle) => serve.idle_timeout(idle),
                    None => serve,
                }
            })
            .await
    } else {
        servers
            .run(move |server| {
                let serve = proxy! {
                    server
                        => stage.clone().with_auth(users.clone())
                        => EgressLayer::new(rules.clone())
                        => target
                }
                .drain_timeout(DRAIN_TIMEOUT);
                match idle {
                    Some(idle) => serve.idle_timeout(idle),
                    None => serve,
                }
            })
            .await
    };
    Ok(served?)
}
