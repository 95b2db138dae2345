//! WebSockets over HTTP/2 (RFC 8441): the server offers extended `CONNECT`, and hands a
//! `CONNECT` with `:protocol websocket` to the service behind as the HTTP/1.1 upgrade request
//! every stage already carries (`ws::Serve`, `ws::Relay`, the reverse proxy, `Mitm`'s inner
//! service), then turns the service's `101` back into the `200` that opens the stream.
//!
//! The WebSocket frames are the same on both, so only the handshake is translated: the
//! request becomes `GET` with `Connection: upgrade`, `Upgrade: websocket` and a fresh
//! `Sec-WebSocket-Key` (RFC 8441 drops the key and the accept: the stream is the proof), and
//! keeps its other fields (`Sec-WebSocket-Version`, `-Protocol`, `-Extensions`, `Origin`);
//! hyper's `OnUpgrade` is already in it, fulfilled with the stream once the `200` is sent.

use crate::BoxError;
use ::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::ext::Protocol;
use hyper_tungstenite::tungstenite::handshake::client::generate_key;
use std::fmt;

/// An extended `CONNECT` for a protocol other than `websocket`.
#[derive(Debug)]
pub(super) struct Unsupported(String);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "extended CONNECT for {:?} is not supported", self.0)
    }
}

impl std::error::Error for Unsupported {}

/// What an RFC 8441 extended `CONNECT` is to the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Extended {
    /// Not one: any other request.
    No,
    /// A WebSocket, now an HTTP/1.1 upgrade request.
    WebSocket,
    /// Another protocol: reset without a call ([`refusal`]).
    Other,
}

/// Turns an RFC 8441 WebSocket `CONNECT` into an HTTP/1.1 upgrade request, and tells what the
/// request was (any other request stays untouched).
pub(super) fn as_upgrade<B>(request: &mut Request<B>) -> Extended {
    if request.method() != Method::CONNECT {
        return Extended::No;
    }
    let Some(protocol) = request.extensions().get::<Protocol>() else {
        return Extended::No;
    };
    if !protocol.as_str().eq_ignore_ascii_case("websocket") {
        return Extended::Other;
    }
    let key = HeaderValue::from_str(&generate_key()).expect("base64 is a header value");
    request.extensions_mut().remove::<Protocol>();
    *request.method_mut() = Method::GET;
    let headers = request.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_KEY, key);
    Extended::WebSocket
}

/// The error that resets the stream of an [`Extended::Other`] request.
pub(super) fn refusal<B>(request: &Request<B>) -> BoxError {
    let protocol = request.extensions().get::<Protocol>();
    Unsupported(protocol.map_or_else(String::new, |p| p.as_str().to_owned())).into()
}

/// The answer to a translated request as HTTP/2 says it: a `101` becomes the `200` that opens
/// the stream (without the fields only HTTP/1.1's handshake has); any other success means the
/// service served the request without switching, which a `2xx` would misreport as an open
/// WebSocket: `501`. Refusals pass as they are.
pub(super) fn answer<B>(response: &mut Response<B>) {
    let status = response.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        *response.status_mut() = StatusCode::OK;
        let headers = response.headers_mut();
        for name in [
            header::CONNECTION,
            header::UPGRADE,
            header::SEC_WEBSOCKET_ACCEPT,
            header::CONTENT_LENGTH,
        ] {
            headers.remove(name);
        }
    } else if status.is_success() {
        *response.status_mut() = StatusCode::NOT_IMPLEMENTED;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(protocol: Option<&'static str>) -> Request<()> {
        let mut request = Request::builder()
            .method(Method::CONNECT)
            .uri("http://example.test/chat")
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .header(header::SEC_WEBSOCKET_PROTOCOL, "chat")
            .body(())
            .unwrap();
        if let Some(protocol) = protocol {
            request
                .extensions_mut()
                .insert(Protocol::from_static(protocol));
        }
        request
    }

    #[test]
    fn a_websocket_connect_becomes_an_upgrade_and_others_stay() {
        let mut request = connect(Some("websocket"));
        assert_eq!(as_upgrade(&mut request), Extended::WebSocket);
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri(), "http://example.test/chat");
        let headers = request.headers();
        assert_eq!(headers[header::UPGRADE], "websocket");
        assert_eq!(headers[header::CONNECTION], "upgrade");
        assert_eq!(headers[header::SEC_WEBSOCKET_KEY].len(), 24);
        assert_eq!(headers[header::SEC_WEBSOCKET_PROTOCOL], "chat");
        assert!(request.extensions().get::<Protocol>().is_none());

        // A plain CONNECT (a tunnel) and a GET are not this module's.
        let mut tunnel = connect(None);
        assert_eq!(as_upgrade(&mut tunnel), Extended::No);
        assert_eq!(tunnel.method(), Method::CONNECT);
        let mut get = Request::get("http://example.test/").body(()).unwrap();
        assert_eq!(as_upgrade(&mut get), Extended::No);

        let mut udp = connect(Some("connect-udp"));
        assert_eq!(as_upgrade(&mut udp), Extended::Other);
        assert_eq!(udp.method(), Method::CONNECT);
        let error = refusal(&udp);
        assert!(error.to_string().contains("connect-udp"), "{error}");
    }

    #[test]
    fn a_switch_opens_the_stream_and_a_plain_success_does_not() {
        let mut switched = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_ACCEPT, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            .header(header::SEC_WEBSOCKET_PROTOCOL, "chat")
            .body(())
            .unwrap();
        answer(&mut switched);
        assert_eq!(switched.status(), StatusCode::OK);
        assert_eq!(switched.headers().len(), 1, "{:?}", switched.headers());
        assert_eq!(switched.headers()[header::SEC_WEBSOCKET_PROTOCOL], "chat");

        let mut served = Response::new(());
        answer(&mut served);
        assert_eq!(served.status(), StatusCode::NOT_IMPLEMENTED);
        let mut refused = Response::new(());
        *refused.status_mut() = StatusCode::FORBIDDEN;
        answer(&mut refused);
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    }
}
