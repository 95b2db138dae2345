//! `http::Mitm` stands between `http::Server` and the HTTP service behind it (here an
//! `http::Client`, the terminal that forwards), with tower layers after it.

use rama::{http, proxy, tcp, tls};
use std::sync::Arc;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let authority = Arc::new(tls::intercept::Authority::generate("ui CA").unwrap());
        let mitm = http::Mitm::new(authority).unwrap().pass_through(["bank.test"]);
        let client = http::Client::builder()
            .tls(tls::Connector::webpki_roots())
            .build();
        let server = proxy! {
            tcp::Server::bind("127.0.0.1:0")
                => http::Server::new()
                => mitm
                => limit(8)
                => client
        };
        assert!(server.local_addr().expect("bound").ip().is_loopback());
    });
}
