//! A service that is neither `Send` nor `Clone`, served on a current-thread runtime.

use rama::{Conn, proxy, tcp};
use std::{
    cell::Cell,
    convert::Infallible,
    future::{Ready, ready},
    rc::Rc,
    task::{Context, Poll},
};

/// Counts connections in an `Rc`: `!Send`, and not `Clone`.
struct Counter(Rc<Cell<usize>>);

impl tower::Service<Conn<tcp::Stream>> for Counter {
    type Response = ();
    type Error = Infallible;
    type Future = Ready<Result<(), Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Conn<tcp::Stream>) -> Self::Future {
        self.0.set(self.0.get() + 1);
        ready(Ok(()))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let count = Rc::new(Cell::new(0));
    let server = proxy! {
        tcp::Server::bind("127.0.0.1:0") => limit(1) => Counter(count.clone())
    };
    let addr = server.local_addr().expect("bound");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serve = server.with_graceful_shutdown(async {
        let _ = stopped.await;
    });
    let client = async move {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        drop(stream);
        while count.get() == 0 {
            tokio::task::yield_now().await;
        }
        stop.send(()).unwrap();
    };
    let (served, ()) = tokio::join!(serve, client);
    served.expect("served");
}
