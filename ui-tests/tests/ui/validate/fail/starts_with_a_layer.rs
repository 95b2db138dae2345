use rama::proxy;

fn main() {
    let _ = proxy! { timeout(std::time::Duration::from_secs(5)) => target("127.0.0.1:1") };
}
