//! A SOCKS5 client as the terminal needs a stage that parses CONNECTs before it.
use rama::{proxy, socks5, tcp};

fn main() {
    let _ = proxy! { tcp::Server::bind("127.0.0.1:0") => socks5::Client::new("127.0.0.1:1080".parse().unwrap()) };
}
