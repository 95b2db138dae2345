use rama::proxy;

struct Listener;

fn main() {
    let _ = proxy! { Listener => target("127.0.0.1:1") };
}
