use rama::{proxy, tcp};
use std::time::Duration;
use tower::timeout::TimeoutLayer;

fn main() {
    let _ = proxy! { tcp::Server::bind("127.0.0.1:0") => TimeoutLayer::new(Duration::from_secs(1)) };
}
