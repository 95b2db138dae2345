//! `target` takes a byte stream or a tunnel request, but `http::Server` hands on HTTP
//! requests: a forward proxy (or another HTTP service) must come in between.
use rama::{http, proxy, tcp};

fn main() {
    let _ = proxy! { tcp::Server::bind("127.0.0.1:0") => http::Server::new() => target };
}
