//! The main rama proxy. For now it is the TCP forwarder of `tcp_forward` on 127.0.0.1:8080;
//! it grows into the all-in-one local proxy (SOCKS5 and HTTP on one port) in later issues.
//!
//! ```text
//! cargo run --release --example proxy -- --upstream 127.0.0.1:8000
//! ```

use rama::{Address, BoxError, graceful, proxy, tcp};
use rama_examples::{Args, init_tracing};
use std::time::Duration;

const USAGE: &str = "\
proxy: the main rama proxy (for now: a TCP forwarder)

usage: proxy [--listen ADDR] [--upstream ADDR]

  --listen ADDR     where to accept connections (default 127.0.0.1:8080)
  --upstream ADDR   where to relay them (default 127.0.0.1:8000)";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    init_tracing();
    let args = Args::parse(USAGE, &[]);
    let listen: String = args.get("listen", "127.0.0.1:8080");
    let upstream: Address = args.get("upstream", "127.0.0.1:8000");

    let servers = tcp::PerCore::bind(&listen)?;
    let addr = servers.local_addr();
    println!("listening on {addr}");
    println!("relaying to {upstream}; try: python3 -m http.server 8000 & curl http://{addr}/");

    servers
        .with_graceful_shutdown(graceful::ctrl_c_or_sigterm())
        .run(move |server| {
            proxy! { server => target(upstream.clone()) }
                .idle_timeout(Duration::from_secs(300))
                .drain_timeout(Duration::from_secs(30))
        })
        .await
}
