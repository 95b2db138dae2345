//! Independent mistakes are reported together.
use rama::proxy;

fn main() {
    let _ = proxy! {
        rama::tcp::Server::bind("127.0.0.1:0") -> timout(std::time::Duration::from_secs(5)) => => limit() => target("127.0.0.1:1", 2)
    };
}
