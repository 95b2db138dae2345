//! WebSocket in diagrams: `ws::Relay` (bare, and to a fixed upstream with a hook) between
//! `http::Server` and the HTTP service behind it, and `ws::Serve` as a terminal.

use rama::{http, proxy, tcp, ws};

async fn echo(mut socket: ws::Socket) {
    while let Some(message) = socket.recv().await {
        if message.is_text() && socket.send(message).await.is_err() {
            break;
        }
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let bare = proxy! {
            tcp::Server::bind("127.0.0.1:0") => http::Server => ws::Relay => target("http://127.0.0.1:9")
        };
        let relay = ws::Relay::to("ws://127.0.0.1:9/chat")
            .unwrap()
            .max_message_size(1 << 20)
            .hook(|_: &ws::Session, _: ws::Direction, message: ws::Message| Some(message));
        let hooked = proxy! {
            tcp::Server::bind("127.0.0.1:0")
                => http::Server::new()
                => relay
                => limit(8)
                => target("http://127.0.0.1:9")
        };
        let endpoint = proxy! {
            tcp::Server::bind("127.0.0.1:0") => http::Server::new() => ws::Serve::new(echo)
        };
        for server in [bare.local_addr(), hooked.local_addr(), endpoint.local_addr()] {
            assert!(server.expect("bound").ip().is_loopback());
        }
    });
}
