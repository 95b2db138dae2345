//! Egress rules judge tunnel requests, but a TCP server hands on byte streams.
use rama::{
    egress::{EgressLayer, Rules},
    proxy, tcp,
};

fn main() {
    let _ = proxy! { tcp::Server::bind("127.0.0.1:0") => EgressLayer::new(Rules::public_only()) => target };
}
