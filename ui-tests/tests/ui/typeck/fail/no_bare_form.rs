//! A user's own `tcp::Server` has no bare form.
use rama::proxy;

mod tcp {
    pub struct Server;
}

fn main() {
    let _ = proxy! { tcp::Server => target("127.0.0.1:1") };
}
