//! `detect::socks5_or_http`, `detect::FirstByte` and `tls::Detect` end a diagram: several
//! protocols on one port, each branch a stack of its own.

use rama::{Target, detect, http, proxy, socks5, target, tcp, tls};
use tower::{Layer, ServiceBuilder};

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let socks5 = ServiceBuilder::new()
            .layer(socks5::Server::new())
            .service(Target::requested());
        let http = ServiceBuilder::new()
            .layer(http::Server::new())
            .layer(http::ForwardProxy::new())
            .service(Target::requested());
        let server = proxy! {
            tcp::Server::bind("127.0.0.1:0") => limit(64) => detect::socks5_or_http(socks5, http)
        };
        let by_byte = proxy! {
            tcp::Server::bind("127.0.0.1:0")
                => detect::FirstByte::new(0x04, target("127.0.0.1:1"), target("127.0.0.1:2"))
        };
        let acceptor = tls::Acceptor::dev().expect("a development certificate");
        let tls_or_plain = proxy! {
            tcp::Server::bind("127.0.0.1:0")
                => tls::Detect::new(acceptor.layer(target("127.0.0.1:1")), target("127.0.0.1:1"))
        };
        for addr in [
            server.local_addr(),
            by_byte.local_addr(),
            tls_or_plain.local_addr(),
        ] {
            assert!(addr.expect("bound").ip().is_loopback());
        }
    });
}
