//! The stage contracts: what each stage of a [`proxy!`](crate::proxy) diagram takes and hands
//! on, and the shorthands a diagram may use.
//!
//! A diagram is `SOURCE => STAGE => ... => TERMINAL`. The macro turns it into the stack a person
//! would write by hand with [`ServiceBuilder`](tower::ServiceBuilder): every stage is a tower
//! [`Layer`], the terminal is a tower [`Service`], and the source (a [`Source`], such as
//! [`tcp::Server`]) serves the result. Before it builds the stack, the expansion checks each
//! arrow against this module's contract table, so that a stage in the wrong place is reported as
//! "`Target` takes `ByteStream`, but `Server` hands on `HttpRequest`" on the stage the user
//! wrote, not as a page of tower bounds.
//!
//! # The contract table
//!
//! What flows along an arrow is described by a [`Kind`]: a [byte
//! stream](kind::ByteStream) after a TCP server, and whatever later protocol stages hand on.
//!
//! | item                        | role     | takes                          | hands on                    |
//! |-----------------------------|----------|--------------------------------|-----------------------------|
//! | [`tcp::Server`]             | source   |                                | [`ByteStream`]              |
//! | [`Target`] (`target`)       | terminal | [`ByteStreamTunnelOrHttp`]     | [`Nothing`]                 |
//! | [`tls::Acceptor`] (`tls`)   | layer    | [`ByteStream`]                 | [`ByteStream`] (TLS)        |
//! | [`tls::Detect`]             | terminal | [`ByteStream`]                 | [`Nothing`]                 |
//! | [`detect::FirstByte`]       | terminal | [`ByteStream`]                 | [`Nothing`]                 |
//! | [`detect::Detect`]          | terminal | [`ByteStream`]                 | [`Nothing`]                 |
//! | [`socks5::Server`]          | layer    | [`ByteStream`]                 | [`TunnelRequest`]           |
//! | [`socks5::Client`]          | terminal | [`TunnelRequest`]              | [`Nothing`]                 |
//! | [`egress::EgressLayer`]     | layer    | [`TunnelRequest`]              | [`TunnelRequest`]           |
//! | [`http::Server`]            | layer    | [`ByteStream`]                 | [`HttpRequest`]             |
//! | [`http::ForwardProxy`]      | layer    | [`HttpRequest`]                | [`TunnelRequest`] (CONNECT) |
//! | [`http::Mitm`]              | layer    | [`HttpRequest`]                | [`HttpRequest`] (inside TLS) |
//! | [`ws::Relay`]               | layer    | [`HttpRequest`]                | [`HttpRequest`] (not upgrades) |
//! | [`ws::Serve`]               | terminal | [`HttpRequest`]                | [`Nothing`]                 |
//! | `timeout(d)`, `limit(n)`    | layer    | anything                       | what it took                |
//! | any other tower `Layer`     | layer    | anything                       | what it took                |
//! | any other tower `Service`   | terminal | (checked by tower's bounds)    |                             |
//!
//! A layer that is not in the table passes on what it took: that is what every generic tower
//! middleware does (`tower::timeout::TimeoutLayer`, `tower::limit::ConcurrencyLimitLayer`,
//! tower-http's layers), so they stand in a diagram unchanged.
//!
//! # Registering a stage
//!
//! A stage that changes what flows (a TLS acceptor, a SOCKS5 handshake, an HTTP server)
//! registers with the table by implementing [`Stage`] next to its `Layer` impl:
//!
//! ```
//! use rama::stage::{Stage, kind::{self, Kind}};
//!
//! /// What my stage hands on: one kind per protocol the diagram should tell apart.
//! pub enum Frames {}
//! impl Kind for Frames {}
//!
//! /// A layer that turns a byte stream into frames.
//! pub struct Framing;
//! impl Stage for Framing {
//!     type Takes = kind::ByteStream;
//!     type HandsOn = Frames;
//! }
//! ```
//!
//! A rama stage then also gets
//!
//! 1. a bare form, if it has one, by implementing [`Bare`] (`socks5::Server` without auth), and
//!    a line in `BARE_PATHS` in `rama-macros/src/kw.rs` (the last two path segments);
//! 2. a lower-case shorthand, if it has one (`tls(cfg)`), by moving its entry in `SHORTHANDS` in
//!    `rama-macros/src/kw.rs` from `Reserved` to `Layer`/`Terminal` with the rama path it
//!    expands to;
//! 3. a pass case and a compile-fail case in `ui-tests/tests/ui/`.
//!
//! A new server registers as a [`Source`].
//!
//! [`ByteStream`]: kind::ByteStream
//! [`tls::Acceptor`]: crate::tls::Acceptor
//! [`tls::Detect`]: crate::tls::Detect
//! [`detect::FirstByte`]: crate::detect::FirstByte
//! [`detect::Detect`]: crate::detect::Detect
//! [`Nothing`]: kind::Nothing
//! [`TunnelRequest`]: kind::TunnelRequest
//! [`HttpRequest`]: kind::HttpRequest
//! [`http::Server`]: crate::http::Server
//! [`http::ForwardProxy`]: crate::http::ForwardProxy
//! [`http::Mitm`]: crate::http::Mitm
//! [`ws::Relay`]: crate::ws::Relay
//! [`ws::Serve`]: crate::ws::Serve
//! [`ByteStreamOrTunnel`]: kind::ByteStreamOrTunnel
//! [`ByteStreamTunnelOrHttp`]: kind::ByteStreamTunnelOrHttp
//! [`socks5::Server`]: crate::socks5::Server
//! [`socks5::Client`]: crate::socks5::Client
//! [`egress::EgressLayer`]: crate::egress::EgressLayer
//! [`Layer`]: tower::Layer
//! [`Service`]: tower::Service

use crate::{Conn, Target, tcp};
use std::{net::ToSocketAddrs, time::Duration};
use tower::{Service, limit::ConcurrencyLimitLayer, timeout::TimeoutLayer};

/// The environment variable a bare `tcp::Server` in a diagram reads its address from.
pub const LISTEN_ENV: &str = "RAMA_LISTEN";

/// Where a bare `tcp::Server` listens when [`LISTEN_ENV`] is not set.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// What flows along an arrow of a diagram, as the contract checks see it.
pub mod kind {
    /// A kind of thing that flows along an arrow. Implement it for an uninhabited marker type
    /// whose name says what the stage hands on: the name appears in compile errors.
    pub trait Kind {}

    /// A connection's byte stream, wrapped in a [`Conn`](crate::Conn) with its facts: what a
    /// TCP server hands on, and what TLS hands on after the handshake.
    #[derive(Debug)]
    pub enum ByteStream {}

    /// What a terminal hands on: nothing, it ends the diagram.
    #[derive(Debug)]
    pub enum Nothing {}

    /// A client waiting to be connected somewhere, as a [`tunnel::Request`](crate::tunnel::Request):
    /// what `socks5::Server` (and HTTP `CONNECT`) hand on.
    #[derive(Debug)]
    pub enum TunnelRequest {}

    /// An `http::Request`, as [`http::Server`](crate::http::Server) hands on: one per
    /// request, many per connection.
    #[derive(Debug)]
    pub enum HttpRequest {}

    /// A [`ByteStream`] or a [`TunnelRequest`].
    #[derive(Debug)]
    pub enum ByteStreamOrTunnel {}

    /// What [`Target`](crate::Target) takes: a [`ByteStream`], a [`TunnelRequest`] (it dials
    /// and relays), or an [`HttpRequest`] (`target("http://..")` forwards it).
    #[derive(Debug)]
    pub enum ByteStreamTunnelOrHttp {}

    impl Kind for ByteStream {}
    impl Kind for Nothing {}
    impl Kind for TunnelRequest {}
    impl Kind for ByteStreamOrTunnel {}
    impl Kind for ByteStreamTunnelOrHttp {}
    impl Kind for HttpRequest {}

    /// `Self`, what a stage takes, accepts `K`, what arrives: every kind accepts itself, and a
    /// kind that stands for several (such as [`ByteStreamOrTunnel`]) accepts each of them.
    pub trait Accepts<K> {}

    impl<K: Kind> Accepts<K> for K {}
    impl Accepts<ByteStream> for ByteStreamOrTunnel {}
    impl Accepts<TunnelRequest> for ByteStreamOrTunnel {}
    impl Accepts<ByteStream> for ByteStreamTunnelOrHttp {}
    impl Accepts<TunnelRequest> for ByteStreamTunnelOrHttp {}
    impl Accepts<HttpRequest> for ByteStreamTunnelOrHttp {}
}

use self::kind::Kind;

/// A registered stage: what it takes from the stage before it and what it hands on to the
/// next. See the [module docs](self) for the table and how to register.
///
/// A tower `Layer` that does not implement `Stage` passes on what it took.
pub trait Stage {
    /// What the stage takes.
    type Takes: Kind;
    /// What the stage hands on to the next one ([`kind::Nothing`] for a terminal).
    type HandsOn: Kind;
}

/// A server at the start of a diagram: it accepts connections and serves each one with the
/// stack the rest of the diagram builds.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a server, but a diagram starts with one",
    label = "not a server",
    note = "start the diagram with a server, such as `tcp::Server::bind(\"127.0.0.1:8080\")`"
)]
pub trait Source {
    /// What the server hands the stack for each connection.
    type Request;
    /// The [`Kind`] of [`Request`](Source::Request), for the contract checks.
    type HandsOn: Kind;
    /// The running server, configured by its builder methods and then awaited.
    type Serve<S>
    where
        S: Service<Self::Request>;

    /// Serves every connection with `service`.
    fn serve<S>(self, service: S) -> Self::Serve<S>
    where
        S: Service<Self::Request>;
}

/// The bare form of a stage: what a diagram means when it names the stage's type alone, such as
/// `tcp::Server` or (later) `socks5::Server`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no bare form",
    label = "cannot be written without arguments",
    note = "write it with one of its constructors instead"
)]
pub trait Bare {
    /// The stage with its documented defaults.
    fn bare() -> Self;
}

/// The layer behind the `timeout(d)` shorthand: fails a connection's service call that takes
/// longer than `duration` (tower's [`TimeoutLayer`]).
pub fn timeout(duration: Duration) -> TimeoutLayer {
    TimeoutLayer::new(duration)
}

/// The layer behind the `limit(n)` shorthand: at most `max` connections in the stack at once;
/// the server stops accepting while the limit is reached (tower's [`ConcurrencyLimitLayer`]).
pub fn limit(max: usize) -> ConcurrencyLimitLayer {
    ConcurrencyLimitLayer::new(max)
}

// ===== the contract table =====

impl Source for tcp::Server {
    type Request = Conn<tcp::Stream>;
    type HandsOn = kind::ByteStream;
    type Serve<S>
        = tcp::Serve<S>
    where
        S: Service<Conn<tcp::Stream>>;

    fn serve<S>(self, service: S) -> tcp::Serve<S>
    where
        S: Service<Conn<tcp::Stream>>,
    {
        tcp::Server::serve(self, service)
    }
}

/// A bare `tcp::Server` listens on the address in [`LISTEN_ENV`] (`RAMA_LISTEN`), or on
/// [`DEFAULT_LISTEN`] (`127.0.0.1:8080`) when it is not set. A bad address is reported when the
/// server is awaited, like any binding error.
impl Bare for tcp::Server {
    fn bare() -> Self {
        listen_from_env()
    }
}

impl Stage for Target {
    type Takes = kind::ByteStreamTunnelOrHttp;
    type HandsOn = kind::Nothing;
}

impl Stage for crate::http::Server {
    type Takes = kind::ByteStream;
    type HandsOn = kind::HttpRequest;
}

/// A bare `http::Server` has the documented defaults.
impl Bare for crate::http::Server {
    fn bare() -> Self {
        Self::new()
    }
}

impl<A> Stage for crate::http::ForwardProxy<A> {
    type Takes = kind::HttpRequest;
    type HandsOn = kind::TunnelRequest;
}

/// A bare `http::ForwardProxy` has no authentication and no rules.
impl Bare for crate::http::ForwardProxy {
    fn bare() -> Self {
        Self::new()
    }
}

impl<T> Stage for crate::http::Mitm<T> {
    type Takes = kind::HttpRequest;
    type HandsOn = kind::HttpRequest;
}

impl<H> Stage for crate::ws::Relay<H> {
    type Takes = kind::HttpRequest;
    type HandsOn = kind::HttpRequest;
}

/// A bare `ws::Relay` relays each upgrade to the request's own destination
/// ([`ws::Relay::requested`](crate::ws::Relay::requested)).
impl Bare for crate::ws::Relay {
    fn bare() -> Self {
        Self::requested()
    }
}

impl<F> Stage for crate::ws::Serve<F> {
    type Takes = kind::HttpRequest;
    type HandsOn = kind::Nothing;
}

/// A [`tcp::Server`] bound to [`LISTEN_ENV`] or [`DEFAULT_LISTEN`]: the bare `tcp::Server` of a
/// diagram.
#[doc(hidden)]
pub fn listen_from_env() -> tcp::Server {
    match std::env::var(LISTEN_ENV) {
        Ok(addr) => {
            if let Err(error) = addr.to_socket_addrs() {
                // Binding fails the same way when the server is awaited; say where it came from.
                tracing::error!(%error, %addr, "{LISTEN_ENV} is not a valid address");
            }
            tcp::Server::bind(addr.as_str())
        }
        Err(_) => tcp::Server::bind(DEFAULT_LISTEN),
    }
}

/// The checks the expansion of `proxy!` runs: zero-sized markers and identity-like functions
/// whose bounds carry the human messages. Not meant to be used by hand.
#[doc(hidden)]
pub mod check {
    use super::{Source, Stage};
    use crate::{Target, tcp};
    use std::marker::PhantomData;
    use tower::{Layer, Service};

    /// A zero-sized type-level marker, `Send + Sync` whatever `T` is.
    type Marker<T> = PhantomData<fn() -> T>;

    /// The state after an arrow: `P` is the last stage with a contract (or the source), `K`
    /// what it handed on.
    #[derive(Debug)]
    pub struct Flow<P, K>(Marker<(P, K)>);

    /// Looks at a stage's type `T`, arriving after `flow`, to pick its role.
    #[derive(Debug)]
    pub struct Probe<T, P, K>(Marker<(T, P, K)>);

    /// A stage registered in the contract table, arriving after `Flow<P, K>`.
    #[derive(Debug)]
    pub struct Registered<T, P, K>(Marker<(T, P, K)>);

    /// A stage without a contract, arriving after `Flow<P, K>`: it passes on what it took.
    #[derive(Debug)]
    pub struct PassThrough<P, K>(Marker<(P, K)>);

    /// `Self` (a stage) takes `W`, but `P` hands on `K`: implemented only when `W` accepts
    /// `K` (it is `K`, or a kind that stands for `K` among others).
    #[diagnostic::on_unimplemented(
        message = "`{Self}` takes `{W}`, but `{P}` before it hands on `{K}`",
        label = "`{Self}` cannot take `{K}`",
        note = "each stage takes what the stage before it hands on; see `rama::stage` for what rama's stages take and hand on"
    )]
    pub trait Fits<P, K, W> {}

    #[diagnostic::do_not_recommend]
    impl<T, P, K, W> Fits<P, K, W> for T where W: super::kind::Accepts<K> {}

    /// `Self` wraps the rest of the diagram, `S`: it is a tower `Layer<S>`.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` is not a layer, so it cannot stand before the end of the diagram",
        label = "not a tower `Layer`",
        note = "every item between the server and the last one must be a tower `Layer`; only the last item is a `Service` (such as `target`)"
    )]
    pub trait IsLayer<S> {
        /// The service the layer makes of the rest.
        type Service;
        /// Wraps the rest.
        fn wrap(&self, inner: S) -> Self::Service;
    }

    #[diagnostic::do_not_recommend]
    impl<L, S> IsLayer<S> for L
    where
        L: Layer<S>,
    {
        type Service = L::Service;

        fn wrap(&self, inner: S) -> L::Service {
            self.layer(inner)
        }
    }

    /// The stack a diagram builds takes `R`, what its source hands on.
    #[diagnostic::on_unimplemented(
        message = "the stack this diagram builds does not take `{R}`, what the server hands on",
        label = "the diagram ends here",
        note = "the last item must be a tower `Service` of what the stages before it hand on (such as `target`); a layer cannot end a diagram"
    )]
    pub trait Serves<R>: Service<R> {}

    #[diagnostic::do_not_recommend]
    impl<S, R> Serves<R> for S where S: Service<R> {}

    /// The role of a registered stage (autoref specialisation: tried first).
    pub trait ViaContract {
        /// The stage's role.
        type Role;
        /// The stage's role.
        fn role(&self) -> Self::Role;
    }

    /// The role of any other stage (tried when [`ViaContract`] does not apply).
    pub trait ViaTower {
        /// The stage's role.
        type Role;
        /// The stage's role.
        fn role(&self) -> Self::Role;
    }

    impl<T: Stage, P, K> ViaContract for Probe<T, P, K> {
        type Role = Registered<T, P, K>;
        fn role(&self) -> Self::Role {
            Registered(PhantomData)
        }
    }

    impl<T, P, K> ViaTower for &Probe<T, P, K> {
        type Role = PassThrough<P, K>;
        fn role(&self) -> Self::Role {
            PassThrough(PhantomData)
        }
    }

    impl<T, P, K> Probe<T, P, K> {
        /// A probe of `stage`'s type, arriving after `flow`.
        pub fn new(_flow: Flow<P, K>, _stage: &T) -> Self {
            Probe(PhantomData)
        }
    }

    impl<T: Stage, P, K> Registered<T, P, K> {
        /// The arrow into `stage`: it must take what arrives.
        pub fn then<U>(self, _stage: &U) -> Flow<T, T::HandsOn>
        where
            U: Fits<P, K, T::Takes>,
        {
            Flow(PhantomData)
        }
    }

    impl<P, K> PassThrough<P, K> {
        /// The arrow into a stage without a contract: what arrives passes on.
        pub fn then<T>(self, _stage: &T) -> Flow<P, K> {
            Flow(PhantomData)
        }
    }

    /// The start of the diagram: `source` must be a server.
    pub fn source<Src: Source>(source: Src) -> Src {
        source
    }

    /// What the server hands on.
    pub fn flow<Src: Source>(_source: &Src) -> Flow<Src, Src::HandsOn> {
        Flow(PhantomData)
    }

    /// `layer` wraps `inner`, as `ServiceBuilder::layer` does.
    pub fn layer<L, S>(layer: &L, inner: S) -> L::Service
    where
        L: IsLayer<S>,
    {
        layer.wrap(inner)
    }

    /// The last arrow: the stack must take what `source` hands on.
    pub fn stack<Src, S>(_source: &Src, stack: S) -> S
    where
        Src: Source,
        S: Serves<Src::Request>,
    {
        stack
    }

    /// The end of the diagram: `source` serves `stack`.
    pub fn serve<Src, S>(source: Src, stack: S) -> Src::Serve<S>
    where
        Src: Source,
        S: Serves<Src::Request>,
    {
        source.serve(stack)
    }

    /// Stands in for a diagram that did not compile, so that no follow-on error hides the
    /// macro's own.
    pub fn placeholder() -> tcp::Serve<Target> {
        unreachable!("a proxy! diagram with errors does not compile")
    }
}
