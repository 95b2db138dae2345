use rama::proxy;

fn main() {
    let _ = proxy! {};
}
