//! The invocation is the server: its builder methods are there before it is awaited.

use rama::{proxy, tcp};
use std::time::Duration;

#[tokio::main]
async fn main() {
    let server = proxy! { tcp::Server::bind("127.0.0.1:0") => target("127.0.0.1:1") }
        .idle_timeout(Duration::from_secs(300))
        .connection_timeout(Duration::from_secs(3600))
        .drain_timeout(Duration::from_secs(1))
        .with_graceful_shutdown(async {})
        .spawn_connections();
    server.local_addr().expect("bound");
    server.await.expect("shuts down at once");
}
