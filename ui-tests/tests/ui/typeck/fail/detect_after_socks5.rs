//! `detect::FirstByte` peeks at a byte stream, but `socks5::Server` hands on tunnel requests.
use rama::{detect, proxy, socks5, tcp};

fn main() {
    let _ = proxy! {
        tcp::Server::bind("127.0.0.1:0") => socks5::Server::new() => detect::FirstByte::new(0x05, rama::target("127.0.0.1:1"), rama::target("127.0.0.1:2"))
    };
}
