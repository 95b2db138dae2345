//! `http::Mitm` takes HTTP requests (the `CONNECT`s among them), but `tcp::Server` hands on a
//! byte stream: the `http::Server` stage is missing.
use rama::{http, proxy, tcp, tls};
use std::sync::Arc;

fn main() {
    let authority = Arc::new(tls::intercept::Authority::generate("ui CA").unwrap());
    let mitm = http::Mitm::new(authority).unwrap();
    let client = http::Client::new();
    let _ = proxy! { tcp::Server::bind("127.0.0.1:0") => mitm => client };
}
