//! tower's own layers, a closure layer and the user's variables stand between rama's stages.

use rama::{Conn, proxy, tcp};
use std::time::Duration;
use tower::{limit::ConcurrencyLimitLayer, timeout::TimeoutLayer, util::MapRequestLayer};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let limits = ConcurrencyLimitLayer::new(64);
    let server = proxy! {
        tcp::Server::bind("127.0.0.1:0")
            => TimeoutLayer::new(Duration::from_secs(30))
            => (limits)
            => MapRequestLayer::new(|conn: Conn<tcp::Stream>| conn)
            => limit(8)
            => target("127.0.0.1:1")
    };
    server.local_addr().expect("bound");
}
