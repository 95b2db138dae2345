//! WebSocket on hyper-tungstenite: [`Serve`], an endpoint that hands a handler each session's
//! messages, and [`Relay`], a layer that relays upgrades message by message to an upstream
//! WebSocket server through a [`Hook`].
//!
//! Both stand behind [`http::Server`](crate::http::Server) (`Stage`: they take
//! `HttpRequest`s) and run their sessions on the HTTP connection's own task set
//! ([`http::server::spawn`](crate::http::server::spawn)), so a graceful shutdown waits for
//! open sessions, and nothing needs to be `Send`. They do not wait for sessions to end on
//! their own: when the connection's shutdown signal fires
//! ([`ConnFacts::shutdown`](crate::http::ConnFacts::shutdown)), every session is closed with
//! `1001` ("going away"; to both legs of a relay) and ends once the close handshake is done,
//! within the close timeout, well before the server's drain deadline.
//!
//! ```no_run
//! use rama::{http, proxy, tcp, ws};
//!
//! # async fn run() -> Result<(), rama::BoxError> {
//! // WebSocket sessions to ws://127.0.0.1:9000 with every text message tagged; other
//! // requests to the same origin over HTTP.
//! let relay = ws::Relay::to("ws://127.0.0.1:9000")?.hook(
//!     |_: &ws::Session, direction: ws::Direction, message: ws::Message| match message {
//!         ws::Message::Text(text) if direction == ws::Direction::UpstreamToClient => {
//!             Some(ws::Message::text(format!("[proxied] {text}")))
//!         }
//!         other => Some(other),
//!     },
//! );
//! proxy! {
//!     tcp::Server::bind("127.0.0.1:8080") => http::Server::new() => relay => target("http://127.0.0.1:9000")
//! }
//! .await?;
//! # Ok(())
//! # }
//! ```
//!
//! # `Relay`
//!
//! - **Upstream.** [`Relay::to`]`("ws://host:port[/base]")` (or `wss://`) sends every session
//!   there, with the request's path and query after the base. [`Relay::requested`] (also the
//!   bare `ws::Relay` in a diagram) sends each to the request's own destination: an absolute
//!   URI `https://host/path` becomes `wss://host/path` and `http://` becomes `ws://`, which is
//!   what the inner requests of a TLS interception carry; a relative one goes to its `Host`.
//!   Such a request's [`ConnectTo`](crate::http::ConnectTo) and
//!   [`DialOnly`](crate::http::DialOnly) are dialed as
//!   [`http::Client`](crate::http::Client) dials them: the egress rules' pinned addresses
//!   only, never another lookup of the host.
//!   `wss://` upstreams are opened with [`Relay::tls`]'s [`tls::Connector`](crate::tls::Connector)
//!   (webpki roots unless given one), which verifies the upstream's certificate.
//!   Behind TLS interception the diagram is `http::Server => mitm => relay => client`, with
//!   `relay = ws::Relay::requested().tls(connector)` and the same `tls::Connector` (without
//!   `h2` in its ALPN) the interception uses to verify origins.
//! - **Handshake.** The client's handshake is checked (hyper-tungstenite), the upstream is
//!   dialed and sent its own handshake with the client's headers that matter
//!   (`Sec-WebSocket-Protocol`, `Cookie`, `Authorization`, `Origin`, ...) but not its key,
//!   version or extensions (no permessage-deflate), and only on the upstream's `101` is the
//!   client answered `101`, with the subprotocol the upstream selected. Any other answer
//!   (a `403`, say) is passed on; an upstream that cannot be reached is `502`, one that takes
//!   longer than [`Relay::connect_timeout`] `504`. The address the client reached the relay
//!   on is never dialed (`502`): an upgrade relayed to the relay itself would come back,
//!   again and again.
//! - **Messages** go through the [`Hook`] in order, per direction: observe, change or drop.
//! - **Ping/pong.** tungstenite answers every ping it reads, on each leg. A ping is relayed to
//!   the other side too (so the far end sees it), and the pong that comes back from there is
//!   recognised by its payload and dropped: each side gets exactly one pong per ping.
//! - **Close.** A close (code and reason) is relayed to the other side; each leg's
//!   tungstenite replies to the close it received, and the relay waits (up to
//!   [`Relay::close_timeout`]) for the other side's reply. Messages the other side sends
//!   after a close has passed are dropped (the closing side has stopped listening).
//! - **Bad input.** An invalid frame (reserved opcode or bits, unmasked client frame, bad
//!   close payload, ...) is answered with close `1002`, invalid UTF-8 with `1007`, a message
//!   or frame over [`Relay::max_message_size`] with `1009`; the other side gets `1001`, and a
//!   warning names the peer. Nothing panics and no other session is touched.
//!
//! - **Shutdown.** When the server shuts down gracefully, both legs get close `1001` with the
//!   reason `the server is shutting down` (what was already relayed is written out first),
//!   and the relay waits up to [`Relay::close_timeout`] for their replies. The hook does not
//!   see these closes.
//! - **A WebSocket on an HTTP/2 stream** (RFC 8441) whose client resets the stream, or whose
//!   connection goes, ends the session at once, even one waiting on an upstream that reads
//!   nothing: the upstream gets close `1001` (within [`Relay::close_timeout`]).
//!
//! # `Serve`
//!
//! [`Serve::new`]`(handler)` accepts each upgrade (`426` for other requests) and runs
//! `handler(socket)`; [`Socket::recv`] answers bad input the same way as the relay. On
//! shutdown the [`Socket`] closes the session with `1001`: `recv` returns `None` and `send`
//! an error whose [`is_shutdown`](SessionError::is_shutdown) is true, and
//! [`Socket::shutdown`] tells the handler why (see [`Socket`]'s docs).

mod hook;
mod relay;
mod serve;
mod session;

pub mod error;
pub mod future;

pub use self::error::{BadUpstream, SessionError, UpstreamError};
pub use self::hook::{Direction, Hook, PassThrough, Session};
pub use self::relay::{DEFAULT_CONNECT_TIMEOUT, Relay, RelayService};
pub use self::serve::{Serve, Socket};
pub use hyper_tungstenite::tungstenite;
pub use hyper_tungstenite::tungstenite::{
    Message,
    protocol::{CloseFrame, frame::coding::CloseCode},
};

use crate::http::Body;
use ::http::{HeaderValue, Response, StatusCode};
use hyper_tungstenite::tungstenite::protocol::WebSocketConfig;
use std::time::Duration;

/// The largest message (and frame) a session accepts by default: 16 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 << 20;

/// How long the close handshake may take by default once a session ends.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The opcode of `message`, for logs: `text`, `binary`, `ping`, `pong` or `close`.
pub fn opcode(message: &Message) -> &'static str {
    match message {
        Message::Text(_) => "text",
        Message::Binary(_) => "binary",
        Message::Ping(_) => "ping",
        Message::Pong(_) => "pong",
        Message::Close(_) => "close",
        Message::Frame(_) => "frame",
    }
}

/// Each read of a leg's stream offers tungstenite this much room. tungstenite zeroes the room
/// before every read, even one that finds nothing, so its default (128 KiB) cost a third of the
/// relay's CPU in `memset` (`perf`, `bench/ws.sh`); and the buffer is allocated per leg when
/// the session opens, so it is most of what an idle session costs. A frame larger than this
/// still arrives whole, over several reads.
const READ_BUFFER_SIZE: usize = 8 * 1024;

/// The limits both stages share.
#[derive(Debug, Clone, Copy)]
struct Config {
    max_message_size: usize,
    /// How long the close handshake may take (and discarding a broken peer's bytes).
    linger: Duration,
}

impl Config {
    fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// tungstenite's configuration: frames are capped like messages, so an oversized single
    /// frame is refused from its header, before its payload is read.
    fn tungstenite(self) -> WebSocketConfig {
        WebSocketConfig::default()
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_message_size))
            .read_buffer_size(READ_BUFFER_SIZE)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            linger: DEFAULT_CLOSE_TIMEOUT,
        }
    }
}

/// `protocol` as a `Sec-WebSocket-Protocol` value.
fn protocol_header(protocol: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(protocol).ok()
}

/// A short plain-text answer.
fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    crate::http::forward::text(status, message)
}
