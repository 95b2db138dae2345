use rama::{proxy, tcp};
use std::{
    convert::Infallible,
    future::{Ready, ready},
    task::{Context, Poll},
    time::Duration,
};

/// A service of `String`s, not of connections.
struct Lines;

impl tower::Service<String> for Lines {
    type Response = ();
    type Error = Infallible;
    type Future = Ready<Result<(), Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: String) -> Self::Future {
        ready(Ok(()))
    }
}

fn main() {
    let _ = proxy! { tcp::Server::bind("127.0.0.1:0") => timeout(Duration::from_secs(1)) => Lines };
}
