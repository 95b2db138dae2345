//! The example diagram: a limit, a timeout, a fixed upstream; the value is the server.

use rama::{proxy, tcp};
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let server = proxy! {
        tcp::Server::bind("127.0.0.1:0") => limit(2) => timeout(Duration::from_secs(5)) => target("127.0.0.1:1")
    };
    let addr = server.local_addr().expect("bound");
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0);
}
