//! A WebSocket reverse proxy built on `ws::Relay`: upgrades are relayed message by message to
//! `--upstream` (every message logged with its direction, peer, opcode and size), other HTTP
//! requests are forwarded to the same upstream over HTTP. One server per core.
//!
//! With `--prefix TEXT`, text messages from the upstream reach the client with `TEXT` in front:
//! a visible change made by the hook.
//!
//! ```text
//! cargo run --example ws_echo -- --listen 127.0.0.1:9001
//! cargo run --example ws_proxy -- --listen 127.0.0.1:8082 --upstream 127.0.0.1:9001 --prefix '[rama] '
//! python3 -m websockets ws://127.0.0.1:8082/
//! ```

use rama::{Target, http, http::Client, proxy, tls, ws};
use rama_examples::{Args, DRAIN_TIMEOUT, Failure, TagTexts, bind, init_tracing};
use std::net::SocketAddr;

const USAGE: &str = "\
ws_proxy: a WebSocket reverse proxy that logs every message

usage: ws_proxy --upstream ADDR|ws://HOST:PORT[/PATH]|wss://... [--listen ADDR] [options]

  --upstream ADDR           the WebSocket server (HOST:PORT means ws://HOST:PORT)
  --upstream-ca FILE        verify a wss:// upstream (WebSockets and plain requests alike)
                            against this CA (default: webpki roots)
  --listen ADDR             where to accept connections (default 127.0.0.1:8082)
  --threads N               servers, one per thread (default: one per core)
  --prefix TEXT             put TEXT in front of every text message from the upstream
  --max-message-size BYTES  the largest message either side may send (default 16777216; close 1009)
  --close-timeout SECS      how long a side's close waits for the other side's, and the
                            close handshake after it, before both connections are dropped
                            (default 5)";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Failure> {
    init_tracing();
    let args = Args::parse(USAGE, &[]);
    let listen: SocketAddr = args.get("listen", "127.0.0.1:8082");
    let threads: usize = args.get("threads", "0");
    let max_message_size: usize = args.get("max-message-size", "16777216");
    let close_timeout = args.seconds("close-timeout", "5");
    let prefix: String = args.get("prefix", "");
    let upstream: String = args.required("upstream");
    let upstream = if upstream.contains("://") {
        upstream
    } else {
        format!("ws://{upstream}")
    };
    // Plain HTTP requests go to the same server.
    let http_upstream = upstream.replacen("ws", "http", 1);
    let ca: String = args.get("upstream-ca", "");
    let connector = match ca.as_str() {
        "" => tls::Connector::webpki_roots(),
        path => tls::Connector::with_ca_pem_file(path)?,
    };

    let relay = ws::Relay::to(&upstream)?
        .tls(connector.clone())
        .max_message_size(max_message_size)
        .close_timeout(close_timeout)
        .hook(TagTexts::new(prefix));
    // The same connector for plain requests: a `wss://` upstream verified against
    // `--upstream-ca` is that CA's for HTTP too (the fallback's default trusts webpki roots).
    let client = Client::builder().tls(connector).build();
    let origin = Target::reverse_proxy(http::ReverseProxy::new(&http_upstream)?.client(client));

    let servers = bind(listen, threads, |addr| {
        vec![format!("try: python3 -m websockets ws://{addr}/")]
    })?;
    servers
        .run(move |listener| {
            proxy! {
                listener
                    => http::Server::new()
                    => relay.clone()
                    => origin.clone()
            }
            .drain_timeout(DRAIN_TIMEOUT)
        })
        .await?;
    Ok(())
}
