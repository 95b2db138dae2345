//! SOCKS5 in diagrams: with arguments, bare, with auth, egress rules and a chaining client.

use rama::{
    egress::{EgressLayer, Rules},
    proxy, socks5, tcp,
};

fn main() {
    // SAFETY: no other thread runs yet.
    unsafe { std::env::set_var("RAMA_LISTEN", "127.0.0.1:0") };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let plain = proxy! { tcp::Server::bind("127.0.0.1:0") => socks5::Server::new() => target };
        let bare = proxy! { tcp::Server => socks5::Server => target };
        let users = socks5::auth::Users::new([("alice", "s3cret")]);
        let upstream = socks5::Client::new("127.0.0.1:1".parse().unwrap()).with_auth("bob", "pw");
        let chained = proxy! {
            tcp::Server::bind("127.0.0.1:0")
                => socks5::Server::new().with_auth(users).udp(true)
                => EgressLayer::new(Rules::public_only())
                => limit(8)
                => upstream
        };
        for server in [plain.local_addr(), bare.local_addr()] {
            assert!(server.expect("bound").ip().is_loopback());
        }
        chained.local_addr().expect("bound");
    });
}
