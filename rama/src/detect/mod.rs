//! Protocol detection: one port, several protocols, told apart by the client's first bytes.
//!
//! [`Detect`] is the one peek-and-branch stage: it reads the first bytes of each connection
//! until its [classifier](Classify) decides, then calls one of two branches with a [`Conn`] of
//! a [`Rewind`] that replays what was peeked, so the branch sees the connection from its first
//! byte. The classifiers rama ships, and the names users write:
//!
//! | write                                       | classifier            | matched branch when     |
//! |---------------------------------------------|-----------------------|-------------------------|
//! | [`FirstByte::new(byte, matched, other)`](FirstByte) | [`ByteIs`]   | the first byte is `byte` |
//! | [`socks5_or_http(socks5, http)`](socks5_or_http) | [`ByteIs`]`(0x05)` | a SOCKS5 greeting      |
//! | [`tls::Detect::new(tls, plain)`](crate::tls::Detect) | [`TlsHandshake`](crate::tls::detect::TlsHandshake) | a TLS handshake record |
//! | [`Detect::with_classifier(c, matched, other)`](Detect::with_classifier) | yours | `c` says so |
//!
//! A SOCKS5 greeting starts with `0x05`, an HTTP request with a method's letter, so
//! [`socks5_or_http`] is the all-in-one proxy's split:
//!
//! ```no_run
//! use rama::{detect, http, proxy, socks5, tcp, Target};
//! use tower::ServiceBuilder;
//!
//! # async fn run() -> Result<(), rama::BoxError> {
//! // curl --socks5-hostname 127.0.0.1:8080 ... and curl -x http://127.0.0.1:8080 ... alike.
//! let socks5 = ServiceBuilder::new()
//!     .layer(socks5::Server::new())
//!     .service(Target::requested());
//! let http = ServiceBuilder::new()
//!     .layer(http::Server::new())
//!     .layer(http::ForwardProxy::new())
//!     .service(Target::requested());
//! proxy! { tcp::Server::bind("127.0.0.1:8080") => detect::socks5_or_http(socks5, http) }
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Readiness and endings
//!
//! Which branch a connection takes is known only once its first bytes arrived, so `Detect` is
//! always ready, and each connection waits for its branch to be ready after the peek (each
//! branch sits in a shared, ready-aware cell; neither is cloned). To stop accepting at a
//! limit, put the limit before `Detect`.
//!
//! A client that closes before sending anything ends quietly, without a branch; one that
//! closes while the classifier is still undecided goes to the other branch with what it sent;
//! one that sends too little within the [timeout](Detect::timeout) ends with a
//! [`DetectError`]. The response is `()`, so the branches may answer different types.

pub mod error;
pub mod future;

pub use self::error::DetectError;
pub use crate::io::Rewind;

use self::future::ResponseFuture;
use crate::{BoxError, Conn, shared::Shared, stage};
use std::{
    fmt,
    task::{Context, Poll},
    time::Duration,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tower::Service;

/// How long [`Detect`] waits for enough bytes to decide unless told otherwise.
pub const DEFAULT_DETECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The first byte of every SOCKS5 greeting (the protocol version).
pub const SOCKS5_VERSION: u8 = 0x05;

/// The most [`Detect`] reads before it decides (all of it is replayed): a classifier still
/// undecided after this many bytes sends the connection to the other branch.
pub const MAX_PEEK: usize = 512;

/// The peek-and-branch terminal: routes each connection by its first bytes, as the
/// classifier `C` decides, to `matched` or to `other`. See the [module docs](self).
pub struct Detect<C, M, O> {
    classifier: C,
    matched: Shared<M>,
    other: Shared<O>,
    timeout: Duration,
}

/// Tells from a connection's first bytes which branch of a [`Detect`] it takes.
pub trait Classify {
    /// `Some(true)` for the matched branch, `Some(false)` for the other, `None` while
    /// `peeked` is too short to tell (then [`Detect`] reads more).
    fn classify(&self, peeked: &[u8]) -> Option<bool>;
}

/// The classifier of [`FirstByte`]: matches when the first byte is this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteIs(pub u8);

/// [`Detect`] by the first byte: `FirstByte::new(byte, matched, other)`.
pub type FirstByte<M, O> = Detect<ByteIs, M, O>;

/// SOCKS5 (first byte `0x05`) to `socks5`, anything else (HTTP) to `http`: the split of the
/// all-in-one proxy, [`FirstByte::new`](Detect::new) with [`SOCKS5_VERSION`].
pub fn socks5_or_http<S, H>(socks5: S, http: H) -> FirstByte<S, H> {
    FirstByte::new(SOCKS5_VERSION, socks5, http)
}

// ===== impl Detect =====

impl<C, M, O> Detect<C, M, O> {
    /// Connections `classifier` matches to `matched`, the others to `other`.
    pub fn with_classifier(classifier: C, matched: M, other: O) -> Self {
        Self {
            classifier,
            matched: Shared::new(matched),
            other: Shared::new(other),
            timeout: DEFAULT_DETECT_TIMEOUT,
        }
    }

    /// Bounds the wait for enough bytes to decide (default [`DEFAULT_DETECT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl<M, O> Detect<ByteIs, M, O> {
    /// Connections whose first byte is `byte` to `matched`, the others to `other`.
    pub fn new(byte: u8, matched: M, other: O) -> Self {
        Self::with_classifier(ByteIs(byte), matched, other)
    }
}

impl<C, M, O, S> Service<Conn<S>> for Detect<C, M, O>
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: Classify + Clone,
    M: Service<Conn<Rewind<S>>>,
    M::Error: Into<BoxError>,
    O: Service<Conn<Rewind<S>>>,
    O::Error: Into<BoxError>,
{
    type Response = ();
    type Error = BoxError;
    type Future = ResponseFuture<S, C, M, O>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, conn: Conn<S>) -> Self::Future {
        ResponseFuture::new(
            conn,
            self.classifier.clone(),
            self.matched.clone(),
            self.other.clone(),
            self.timeout,
        )
    }
}

/// `Detect` in a diagram: the terminal of a byte stream (each branch is a stack of its own).
impl<C, M, O> stage::Stage for Detect<C, M, O> {
    type Takes = stage::kind::ByteStream;
    type HandsOn = stage::kind::Nothing;
}

impl<C: fmt::Debug, M, O> fmt::Debug for Detect<C, M, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detect")
            .field("classifier", &self.classifier)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

// ===== impl ByteIs =====

impl Classify for ByteIs {
    fn classify(&self, peeked: &[u8]) -> Option<bool> {
        peeked.first().map(|first| *first == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConnInfo, graceful};
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};
    use tower::{ServiceExt, service_fn};

    type Branch = tower::util::BoxService<Conn<Rewind<tokio::io::DuplexStream>>, (), BoxError>;

    /// A branch that reads everything and answers its name and what it read.
    fn branch(name: &'static str) -> Branch {
        tower::util::BoxService::new(service_fn(
            move |conn: Conn<Rewind<tokio::io::DuplexStream>>| async move {
                let (mut io, _) = conn.into_parts();
                let mut got = Vec::new();
                io.read_to_end(&mut got).await?;
                io.write_all(name.as_bytes()).await?;
                io.write_all(&got).await?;
                io.shutdown().await?;
                Ok::<_, BoxError>(())
            },
        ))
    }

    fn info() -> ConnInfo {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        ConnInfo::new(addr, addr, graceful::Signal::new())
    }

    /// What the client of `detect` reads back after sending `chunks`, one write each (with
    /// a yield between them, so the stage sees them apart), then closing its side.
    async fn route_with<C: Classify + Clone>(
        detect: Detect<C, Branch, Branch>,
        chunks: &[&[u8]],
    ) -> Vec<u8> {
        let mut detect = detect;
        let (mut client, server) = duplex(1024);
        let conn = detect
            .ready()
            .await
            .unwrap()
            .call(Conn::new(server, info()));
        let talk = async {
            for chunk in chunks {
                client.write_all(chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
            client.shutdown().await.unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        };
        let (done, got) = tokio::join!(conn, talk);
        done.unwrap();
        got
    }

    async fn route(sent: &[u8]) -> Vec<u8> {
        route_with(socks5_or_http(branch("socks5:"), branch("http:")), &[sent]).await
    }

    #[tokio::test]
    async fn routes_by_the_first_byte_and_replays_it() {
        assert_eq!(route(b"\x05\x01\x00").await, b"socks5:\x05\x01\x00");
        assert_eq!(
            route(b"GET / HTTP/1.1\r\n").await,
            b"http:GET / HTTP/1.1\r\n"
        );
    }

    #[tokio::test]
    async fn waits_for_as_many_bytes_as_the_classifier_needs() {
        let tls = || crate::tls::Detect::new(branch("tls:"), branch("plain:"));
        assert_eq!(
            route_with(tls(), &[b"\x16", b"\x03\x01"]).await,
            b"tls:\x16\x03\x01"
        );
        assert_eq!(
            route_with(tls(), &[b"\x16", b"GET"]).await,
            b"plain:\x16GET"
        );
        // Closed while undecided: the plain branch gets the byte.
        assert_eq!(route_with(tls(), &[b"\x16"]).await, b"plain:\x16");
    }

    #[tokio::test]
    async fn a_client_that_sends_nothing_reaches_no_branch() {
        assert_eq!(route(b"").await, b"");
    }

    #[tokio::test]
    async fn a_silent_client_times_out() {
        let mut detect =
            socks5_or_http(branch("socks5:"), branch("http:")).timeout(Duration::from_millis(20));
        let (_client, server) = duplex(1024);
        let error = detect
            .ready()
            .await
            .unwrap()
            .call(Conn::new(server, info()))
            .await
            .unwrap_err();
        assert!(error.downcast_ref::<DetectError>().unwrap().is_timeout());
    }
}
