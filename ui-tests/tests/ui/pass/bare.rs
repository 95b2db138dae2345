//! Bare forms: `tcp::Server` listens on `RAMA_LISTEN`, `target` dials what was asked for.

use rama::{proxy, tcp};

fn main() {
    // SAFETY: no other thread runs yet.
    unsafe { std::env::set_var("RAMA_LISTEN", "127.0.0.1:0") };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = proxy! { tcp::Server => target };
        let addr = server.local_addr().expect("bound");
        assert!(addr.ip().is_loopback());
        assert_ne!(addr.port(), 8080);
    });
}
