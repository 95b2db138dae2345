use rama::proxy;

fn main() {
    let _ = proxy! { rama::tcp::Server::bind("127.0.0.1:0") => tls(a, b) => target };
}
