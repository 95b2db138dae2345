//! [`Body`]: the one body type rama's HTTP stages hand around.

use crate::BoxError;
use ::http::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

/// A streaming HTTP body: what a client sent (hyper's [`Incoming`], passed through frame by
/// frame, never buffered whole), a short message rama wrote itself, or any other body.
///
/// The common cases are variants, not boxes: forwarding a request or a response costs no
/// allocation for its body.
pub struct Body {
    kind: Kind,
}

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Incoming(Incoming),
    /// A response from one of the client's own HTTP/1.1 connections, streaming (boxed: it
    /// holds the connection, and a body that came whole with its head is `Full`).
    H1(Box<super::h1::ResponseBody>),
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
}

// ===== impl Body =====

impl Body {
    /// No bytes at all.
    pub const fn empty() -> Self {
        Self { kind: Kind::Empty }
    }

    /// All of `bytes`, as one frame.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Self::empty();
        }
        Self {
            kind: Kind::Full(Some(bytes)),
        }
    }

    /// All of `bytes`, then `trailers` (a chunked request the server's own HTTP/1.1 path
    /// took whole with its trailer section; boxed: rare).
    pub(crate) fn full_with_trailers(bytes: Bytes, trailers: ::http::HeaderMap) -> Self {
        Self::new(Trailed {
            data: Some(bytes).filter(|b| !b.is_empty()),
            trailers: Some(trailers),
        })
    }

    /// Any other body (boxed once).
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self {
            kind: Kind::Boxed(body.map_err(Into::into).boxed_unsync()),
        }
    }

    /// `response` with its body made a `Body` ([`Body::new`]): for
    /// `tower::util::MapResponseLayer`, so that a layer that changes the body type (tower-http's
    /// `TraceLayer`, `CompressionLayer`) and a path without it answer one type, as the two arms
    /// of `tower::util::option_layer` must.
    pub fn map_response<B>(response: Response<B>) -> Response<Self>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        response.map(Self::new)
    }
}

impl Body {
    /// A copy of this body if it can be sent again: no bytes (an empty body, or a client's
    /// body that has already ended) or rama's own short bytes; `None` for a stream.
    pub(crate) fn try_clone(&self) -> Option<Self> {
        match &self.kind {
            Kind::Empty => Some(Self::empty()),
            Kind::Full(Some(bytes)) => Some(Self::full(bytes.clone())),
            Kind::Full(None) => Some(Self::empty()),
            Kind::Incoming(body) if http_body::Body::is_end_stream(body) => Some(Self::empty()),
            Kind::H1(body) if http_body::Body::is_end_stream(&**body) => Some(Self::empty()),
            Kind::Incoming(_) | Kind::H1(_) | Kind::Boxed(_) => None,
        }
    }

    /// All of its bytes when they are here already (rama's own, or none left); otherwise the
    /// body back.
    pub(crate) fn into_bytes(self) -> Result<Bytes, Self> {
        match self.kind {
            Kind::Full(bytes) => Ok(bytes.unwrap_or_default()),
            _ if http_body::Body::is_end_stream(&self) => Ok(Bytes::new()),
            _ => Err(self),
        }
    }

    pub(crate) fn h1(body: super::h1::ResponseBody) -> Self {
        Self {
            kind: Kind::H1(Box::new(body)),
        }
    }

    /// Whether it carries no bytes at all.
    pub(crate) fn is_empty(&self) -> bool {
        http_body::Body::size_hint(self).upper() == Some(0)
    }
}

impl From<Incoming> for Body {
    fn from(body: Incoming) -> Self {
        Self {
            kind: Kind::Incoming(body),
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Self::full(bytes)
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Self::full(text)
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Self::full(Bytes::from_static(text.as_bytes()))
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Incoming(body) => match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame)))
                    if frame
                        .trailers_ref()
                        .is_some_and(super::headers::any_value_padded) =>
                {
                    Poll::Ready(Some(Err(PaddedTrailer.into())))
                }
                polled => polled.map_err(Into::into),
            },
            Kind::H1(body) => Pin::new(&mut **body).poll_frame(cx),
            Kind::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Incoming(body) => body.is_end_stream(),
            Kind::H1(body) => http_body::Body::is_end_stream(&**body),
            Kind::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Incoming(body) => body.size_hint(),
            Kind::H1(body) => http_body::Body::size_hint(&**body),
            Kind::Boxed(body) => body.size_hint(),
        }
    }
}

/// Bytes that are all here, then a trailer section ([`Body::full_with_trailers`]). Its size is
/// not told as exact: on HTTP/1.1 a message with trailers goes chunked, and the clients frame a
/// body of exact size by its length, which has no place for them.
struct Trailed {
    data: Option<Bytes>,
    trailers: Option<::http::HeaderMap>,
}

impl http_body::Body for Trailed {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let frame = match this.data.take() {
            Some(data) => Frame::data(data),
            None => match this.trailers.take() {
                Some(trailers) => Frame::trailers(trailers),
                None => return Poll::Ready(None),
            },
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = SizeHint::new();
        hint.set_lower(self.data.as_ref().map_or(0, |b| b.len() as u64));
        hint
    }
}

/// A trailer section with a field value that starts or ends with a space or a tab: `h2` lets
/// it through (it refuses only CR, LF and NUL; the server's bridge checks a request's head,
/// but trailers come after the call), RFC 9113 8.2.1 calls the message malformed, and a proxy
/// must not pass it on (8.1.1). The body fails there, before the section is handed on: the
/// proxies answer a request's with `400`, and cut a response's short. HTTP/1.1's parsers
/// strip the white space, so it comes from HTTP/2 alone.
#[derive(Debug)]
struct PaddedTrailer;

impl fmt::Display for PaddedTrailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("malformed trailers: a field value starts or ends with whitespace")
    }
}

impl std::error::Error for PaddedTrailer {}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Empty => "empty",
            Kind::Full(_) => "full",
            Kind::Incoming(_) => "incoming",
            Kind::H1(_) => "upstream",
            Kind::Boxed(_) => "boxed",
        };
        f.debug_tuple("Body").field(&kind).finish()
    }
}
