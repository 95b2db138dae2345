//! `http::ForwardProxy` takes HTTP requests, but `tcp::Server` hands on a byte stream: the
//! `http::Server` stage is missing.
use rama::{http, proxy, tcp};

fn main() {
    let _ = proxy! { tcp::Server::bind("127.0.0.1:0") => http::ForwardProxy::new() => target };
}
