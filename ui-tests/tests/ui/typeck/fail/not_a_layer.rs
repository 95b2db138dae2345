use rama::{proxy, tcp};

/// Neither a layer nor anything else.
struct Auth;

fn main() {
    let _ = proxy! { tcp::Server::bind("127.0.0.1:0") => Auth => target("127.0.0.1:1") };
}
