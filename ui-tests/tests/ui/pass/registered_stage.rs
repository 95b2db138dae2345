//! A user's stage registered with the contract table stands in a diagram.

use rama::{
    proxy,
    stage::{Stage, kind},
    tcp,
};

/// Takes a byte stream and hands one on (as a TLS acceptor would).
struct Wrap;

impl Stage for Wrap {
    type Takes = kind::ByteStream;
    type HandsOn = kind::ByteStream;
}

impl<S> tower::Layer<S> for Wrap {
    type Service = S;

    fn layer(&self, inner: S) -> S {
        inner
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let server = proxy! { tcp::Server::bind("127.0.0.1:0") => Wrap => limit(8) => Wrap => target };
    server.local_addr().expect("bound");
}
