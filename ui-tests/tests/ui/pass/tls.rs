//! The TLS stage in its three forms: bare (a development certificate), `tls(acceptor)` and
//! `tls(rustls::ServerConfig)`, in front of `limit` and `target`.

use rama::{proxy, tcp, tls};
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let bare = proxy! { tcp::Server::bind("127.0.0.1:0") => tls => target("127.0.0.1:1") };
    bare.local_addr().expect("bound");

    let acceptor = tls::Acceptor::dev()
        .expect("development certificate")
        .handshake_timeout(Duration::from_secs(5));
    let built = proxy! {
        tcp::Server::bind("127.0.0.1:0") => limit(8) => tls(acceptor) => timeout(Duration::from_secs(60)) => target("127.0.0.1:1")
    };
    built.local_addr().expect("bound");

    let config: tls::rustls::ServerConfig = (**tls::Acceptor::dev().unwrap().config()).clone();
    let from_config = proxy! { tcp::Server::bind("127.0.0.1:0") => tls(config) => target };
    from_config.local_addr().expect("bound");
}
