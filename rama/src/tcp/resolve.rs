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

/// Resolves `name` on tokio's blocking pool, as `tokio::net::lookup_host` does, with the names
/// RFC 6761 reserves answered as [`resolve`] does.
pub(crate) fn lookup(name: &str, port: u16) -> Lookup {
    let name = name.to_owned();
    Lookup {
        task: tokio::task::spawn_blocking(move || resolve(&name, port)),
    }
}

/// A name being resolved on tokio's blocking pool (the system resolver blocks).
#[derive(Debug)]
pub(crate) struct Lookup {
    task: JoinHandle<io::Result<vec::IntoIter<SocketAddr>>>,
}

impl Future for Lookup {
    type Output = io::Result<vec::IntoIter<SocketAddr>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The task fails to join only when the runtime is going away.
        Pin::new(&mut self.task)
            .poll(cx)
            .map(|joined| joined.unwrap_or_else(|join| Err(io::Error::other(join))))
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

/// Resolves `name` with the system resolver, except for the names RFC 6761 reserves, which
/// never reach it (as curl and browsers treat them): `localhost` and every name under it are
/// the loopback addresses (section 6.3: no name server, and no `/etc/hosts` entry, may send
/// them elsewhere), and every name under `invalid` does not exist (section 6.4: the query
/// would only leave the machine to be answered so).
fn resolve(name: &str, port: u16) -> io::Result<vec::IntoIter<SocketAddr>> {
    match reserved(name) {
        Some(Reserved::Localhost) => Ok(vec![
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
        ]
        .into_iter()),
        Some(Reserved::Invalid) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{name} is under .invalid, which never resolves (RFC 6761)"),
        )),
        None => (name, port).to_socket_addrs(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reserved {
    Localhost,
    Invalid,
}

/// The reserved top-level domain `name` is under, if any: compared without regard to ASCII
/// case and with the root's dot allowed (`LocalHost.` is `localhost`).
fn reserved(name: &str) -> Option<Reserved> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let top = name.rsplit('.').next().unwrap_or(name);
    if top.eq_ignore_ascii_case("localhost") {
        Some(Reserved::Localhost)
    } else if top.eq_ignore_ascii_case("invalid") {
        Some(Reserved::Invalid)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_names_are_the_loopback_addresses() {
        for name in ["localhost", "LocalHost.", "app.localhost", "a.b.LOCALHOST"] {
            let addrs: Vec<_> = resolve(name, 8080).unwrap().collect();
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

    #[test]
    fn invalid_names_do_not_exist() {
        for name in ["invalid", "no-such-host.invalid", "127.0.0.1.nip.INVALID."] {
            let error = resolve(name, 80).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::NotFound, "{name}");
            assert!(error.to_string().contains("RFC 6761"), "{error}");
        }
    }

    #[test]
    fn other_names_are_left_to_the_system() {
        for name in [
            "localhost.example",
            "notlocalhost",
            "invalid.example",
            "xinvalid",
            "example.test",
            "",
            ".",
        ] {
            assert_eq!(reserved(name), None, "{name}");
        }
        // An address literal resolves without a query.
        let addrs: Vec<_> = resolve("127.0.0.1", 1).unwrap().collect();
        assert_eq!(addrs, ["127.0.0.1:1".parse::<SocketAddr>().unwrap()]);
    }
}
