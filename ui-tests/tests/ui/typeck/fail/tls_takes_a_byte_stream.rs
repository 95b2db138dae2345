//! `tls` after a stage that hands on frames, not a byte stream.
use rama::{
    proxy,
    stage::{Stage, kind},
    tcp,
};

enum Frames {}
impl kind::Kind for Frames {}

struct Framing;

impl Stage for Framing {
    type Takes = kind::ByteStream;
    type HandsOn = Frames;
}

impl<S> tower::Layer<S> for Framing {
    type Service = S;

    fn layer(&self, inner: S) -> S {
        inner
    }
}

fn main() {
    let _ = proxy! { tcp::Server::bind("127.0.0.1:0") => Framing => tls => target("127.0.0.1:1") };
}
