//! The macro's stack is the stack `ServiceBuilder` builds by hand, type for type.

use rama::{proxy, target, tcp};
use std::time::Duration;
use tower::ServiceBuilder;

fn same_type<T>(_: &T, _: &T) {}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let by_macro = proxy! {
        tcp::Server::bind("127.0.0.1:0") => limit(2) => timeout(Duration::from_secs(5)) => target("127.0.0.1:1")
    };
    let by_hand = tcp::Server::bind("127.0.0.1:0").serve(
        ServiceBuilder::new()
            .concurrency_limit(2)
            .timeout(Duration::from_secs(5))
            .service(target("127.0.0.1:1")),
    );
    same_type(&by_macro, &by_hand);
}
