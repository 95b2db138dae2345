//! Shorthands take builder calls: `target.connect_timeout(..)`.

use rama::{proxy, tcp};
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = proxy! {
        tcp::Server::bind("127.0.0.1:0") => target.connect_timeout(Duration::from_secs(1))
    };
    let b = proxy! {
        tcp::Server::bind("127.0.0.1:0")
            => timeout(Duration::from_secs(1))
            => target("127.0.0.1:1").connect_timeout(Duration::from_secs(1)).buffer_size(4096)
    };
    a.local_addr().expect("bound");
    b.local_addr().expect("bound");
}
