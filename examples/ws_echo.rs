//! A WebSocket echo server built on `ws::Serve`: every text and binary message comes back as
//! it came, one server per core.
//!
//! A text message `/close CODE REASON` makes the server close the session with that code and
//! reason instead, to try close handling through a proxy. Other HTTP requests are answered
//! `426 Upgrade Required`. On SIGTERM (or Ctrl-C) open sessions are closed with `1001`.
//!
//! ```text
//! cargo run --example ws_echo -- --listen 127.0.0.1:9001
//! python3 -m websockets ws://127.0.0.1:9001/
//! ```

use rama::{http, proxy, ws};
use rama_examples::{Args, DRAIN_TIMEOUT, Failure, bind, init_tracing};
use std::net::SocketAddr;

const USAGE: &str = "\
ws_echo: a WebSocket echo server

usage: ws_echo [--listen ADDR] [options]

  --listen ADDR             where to accept connections (default 127.0.0.1:9001)
  --threads N               servers, one per thread (default: one per core)
  --max-message-size BYTES  the largest message a client may send (default 16777216; close 1009)";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Failure> {
    init_tracing();
    let args = Args::parse(USAGE, &[]);
    let listen: SocketAddr = args.get("listen", "127.0.0.1:9001");
    let threads: usize = args.get("threads", "0");
    let max_message_size: usize = args.get("max-message-size", "16777216");

    let servers = bind(listen, threads, |addr| {
        vec![format!("try: python3 -m websockets ws://{addr}/")]
    })?;
    servers
        .run(move |listener| {
            proxy! {
                listener
                    => http::Server::new()
                    => ws::Serve::new(echo).max_message_size(max_message_size)
            }
            .drain_timeout(DRAIN_TIMEOUT)
        })
        .await?;
    Ok(())
}

/// One session: echo until the client closes, or close when asked to.
async fn echo(mut socket: ws::Socket) {
    let peer = socket.peer_addr();
    tracing::info!(?peer, "ws echo: session open");
    while let Some(message) = socket.recv().await {
        let reply = match message {
            ws::Message::Text(text) => {
                if let Some(close) = close_request(&text) {
                    tracing::info!(?peer, code = u16::from(close.code), reason = %close.reason, "ws echo: closing as asked");
                    let _ = socket.close(Some(close)).await;
                    return;
                }
                ws::Message::Text(text)
            }
            ws::Message::Binary(data) => ws::Message::Binary(data),
            ws::Message::Close(close) => {
                let (code, reason) = close
                    .map(|c| (u16::from(c.code), c.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                tracing::info!(?peer, code, reason, "ws echo: closed by the client");
                continue;
            }
            // tungstenite answers pings itself.
            ws::Message::Ping(_) | ws::Message::Pong(_) | ws::Message::Frame(_) => continue,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
    // `recv` and `send` close the session with 1001 once the server shuts down.
    let shutdown = socket.shutdown().is_triggered();
    tracing::info!(?peer, shutdown, "ws echo: session ended");
}

/// `/close CODE REASON` as a close frame.
fn close_request(text: &str) -> Option<ws::CloseFrame> {
    let rest = text.strip_prefix("/close ")?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    Some(ws::CloseFrame {
        code: ws::CloseCode::from(code.parse::<u16>().ok()?),
        reason: reason.to_owned().into(),
    })
}
