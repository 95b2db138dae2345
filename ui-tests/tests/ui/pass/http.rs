//! HTTP in diagrams: the server and the forward proxy, bare and with arguments, with auth,
//! egress rules and a limit.

use rama::{
    egress::{EgressLayer, Rules},
    http, proxy, socks5, tcp,
};

fn main() {
    // SAFETY: no other thread runs yet.
    unsafe { std::env::set_var("RAMA_LISTEN", "127.0.0.1:0") };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let bare = proxy! { tcp::Server => http::Server => http::ForwardProxy => target };
        let users = socks5::auth::Users::new([("alice", "s3cret")]);
        let full = proxy! {
            tcp::Server::bind("127.0.0.1:0")
                => limit(64)
                => http::Server::new().max_headers(50)
                => http::ForwardProxy::new().with_auth(users).rules(Rules::public_only())
                => EgressLayer::new(Rules::public_only())
                => target
        };
        for server in [bare.local_addr(), full.local_addr()] {
            assert!(server.expect("bound").ip().is_loopback());
        }
    });
}
