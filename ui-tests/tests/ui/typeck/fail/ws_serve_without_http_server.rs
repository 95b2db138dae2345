//! `ws::Serve` takes HTTP requests (the upgrades), but `tcp::Server` hands on a byte stream:
//! the `http::Server` stage is missing.
use rama::{proxy, tcp, ws};

async fn echo(_socket: ws::Socket) {}

fn main() {
    let _ = proxy! { tcp::Server::bind("127.0.0.1:0") => ws::Serve::new(echo) };
}
