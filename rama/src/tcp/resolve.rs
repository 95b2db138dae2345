//! Resolving names, for every stage that dials or judges one.

use std::{
    future::Future,
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs},
    pin::Pin,
    task::{Context, Poll},
    vec,
};
use tokio::task::JoinHandle;

/// Resolves `name` on tokio's blocking pool, as `tokio::net::lookup_host` does, unless RFC 6761
/// reserves it: those are answered at once, as [`reserved`] says.
pub(crate) fn lookup(name: &str, port: u16) -> Lookup {
    let state = match reserved(name, port) {
        Some(answer) => State::Answered(Some(answer)),
        None => {
            let query = (name.to_owned(), port);
            State::Asking(tokio::task::spawn_blocking(move || query.to_socket_addrs()))
        }
    };
    Lookup { state }
}

/// A name being resolved: by the system resolver on tokio's blocking pool (it blocks), or
/// answered already.
#[derive(Debug)]
pub(crate) struct Lookup {
    state: State,
}

#[derive(Debug)]
enum State {
    Asking(JoinHandle<io::Result<vec::IntoIter<SocketAddr>>>),
    Answered(Option<io::Result<vec::IntoIter<SocketAddr>>>),
}

impl Future for Lookup {
    type Output = io::Result<vec::IntoIter<SocketAddr>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            // The task fails to join only when the runtime is going away.
            State::Asking(task) => Pin::new(task)
                .poll(cx)
                .map(|joined| joined.unwrap_or_else(|join| Err(io::Error::other(join)))),
            State::Answered(answer) => {
                Poll::Ready(answer.take().expect("Lookup polled after completion"))
            }
        }
    }
}

/// [`lookup`] as the resolver of hyper-util's `HttpConnector`, so that the client's dials by
/// URI read the reserved names as every other dial does (its own resolver asks the system).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Resolver;

impl tower::Service<hyper_util::client::legacy::connect::dns::Name> for Resolver {
    type Response = vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Lookup;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Lookup {
        // The connector puts the URI's port on each address.
        lookup(name.as_str(), 0)
    }
}

/// The answer to `name` when RFC 6761 reserves it, which no query to the system resolver gets
/// (as curl and browsers treat them): `localhost` and every name under it are the loopback
/// addresses (section 6.3: no name server, and no `/etc/hosts` entry, may send them
/// elsewhere), and every name under `invalid` does not exist (section 6.4: the query would only
/// leave the machine to be answered so). Compared without regard to ASCII case, the root's dot
/// allowed (`LocalHost.` is `localhost`).
fn reserved(name: &str, port: u16) -> Option<io::Result<vec::IntoIter<SocketAddr>>> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    let top = bare.rsplit('.').next().unwrap_or(bare);
    if top.eq_ignore_ascii_case("localhost") {
        Some(Ok(vec![
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
        ]
        .into_iter()))
    } else if top.eq_ignore_ascii_case("invalid") {
        Some(Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{name} is under .invalid, which never resolves (RFC 6761)"),
        )))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn localhost_names_are_the_loopback_addresses() {
        for name in ["localhost", "LocalHost.", "app.localhost", "a.b.LOCALHOST"] {
            let addrs: Vec<_> = lookup(name, 8080).await.unwrap().collect();
            assert_eq!(
                addrs,
                [
                    "127.0.0.1:8080".parse::<SocketAddr>().unwrap(),
                    "[::1]:8080".parse().unwrap(),
                ],
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn invalid_names_do_not_exist() {
        for name in ["invalid", "no-such-host.invalid", "127.0.0.1.nip.INVALID."] {
            let error = lookup(name, 80).await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::NotFound, "{name}");
            assert!(error.to_string().contains("RFC 6761"), "{error}");
        }
    }

    #[tokio::test]
    async fn other_names_are_left_to_the_system() {
        for name in [
            "localhost.example",
            "notlocalhost",
            "invalid.example",
            "xinvalid",
            "example.test",
            "",
            ".",
        ] {
            assert!(reserved(name, 80).is_none(), "{name}");
        }
        // An address literal, which the system resolves without a query.
        let addrs: Vec<_> = lookup("127.0.0.1", 1).await.unwrap().collect();
        assert_eq!(addrs, ["127.0.0.1:1".parse::<SocketAddr>().unwrap()]);
    }
}
