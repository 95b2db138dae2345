//! `target("http://..")` after `http::Server` is a reverse proxy; a plain `target("host:port")`
//! stays a TCP forwarder; both are `Target`.

use rama::{Target, http, proxy, tcp};

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let reverse = proxy! {
            tcp::Server::bind("127.0.0.1:0") => http::Server::new() => target("http://127.0.0.1:1/base")
        };
        let upstream = http::ReverseProxy::new("http://localhost:1")
            .unwrap()
            .preserve_host(true);
        let built = proxy! {
            tcp::Server::bind("127.0.0.1:0") => limit(8) => http::Server::new() => Target::reverse_proxy(upstream)
        };
        let plain = proxy! { tcp::Server::bind("127.0.0.1:0") => target("127.0.0.1:1") };
        for server in [reverse.local_addr(), built.local_addr(), plain.local_addr()] {
            assert!(server.expect("bound").ip().is_loopback());
        }
    });
}
