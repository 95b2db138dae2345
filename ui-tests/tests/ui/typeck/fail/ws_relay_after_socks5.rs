//! `ws::Relay` takes HTTP requests, but `socks5::Server` hands on tunnel requests.
use rama::{proxy, socks5, tcp, ws};

fn main() {
    let _ = proxy! { tcp::Server::bind("127.0.0.1:0") => socks5::Server::new() => ws::Relay::requested() => target };
}
