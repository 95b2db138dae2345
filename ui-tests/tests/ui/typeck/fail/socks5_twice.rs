//! `socks5::Server` takes a byte stream, but a `socks5::Server` before it hands on tunnel
//! requests.
use rama::{proxy, socks5, tcp};

fn main() {
    let _ = proxy! { tcp::Server::bind("127.0.0.1:0") => socks5::Server::new() => socks5::Server::new() => target };
}
