//! What `h2` lets through of an HTTP/2 request that must not reach the service: RFC 9113 calls
//! it malformed, and a proxy must not forward it (8.1.1). The bridge resets the stream with
//! `PROTOCOL_ERROR` before any call, as `h2` resets the malformed requests it catches itself
//! (a missing `:path`, a connection-specific field). A few comparisons per request.

use ::http::{Method, Request, Version, uri::Scheme};
use std::fmt;

/// Why an HTTP/2 request was refused.
#[derive(Debug)]
pub(super) struct Malformed {
    what: &'static str,
    /// `PROTOCOL_ERROR`: hyper resets the stream with the reason it finds among the causes.
    reason: h2::Error,
}

impl Malformed {
    fn new(what: &'static str) -> Self {
        Self {
            what,
            reason: h2::Reason::PROTOCOL_ERROR.into(),
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed HTTP/2 request: {}", self.what)
    }
}

impl std::error::Error for Malformed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.reason)
    }
}

/// Refuses an HTTP/2 `request` (any other passes) whose `:authority` has userinfo
/// (`user@host`, RFC 9113 8.3.1: a next hop may take the host from another part of it),
/// whose `:scheme` is neither `http` nor `https` (for any method but `CONNECT`, which has
/// none): RFC 9113 leaves other schemes to a gateway that translates them, and rama translates
/// none; forwarded, the request went out as plain HTTP all the same; or with a field value
/// that starts or ends with a space or a tab (RFC 9113 8.2.1: HTTP/1.1 strips such
/// whitespace, so two hops could read the value two ways; `h2` checks only for CR, LF and
/// NUL).
pub(super) fn check<B>(request: &Request<B>) -> Result<(), Malformed> {
    if request.version() != Version::HTTP_2 {
        return Ok(());
    }
    let uri = request.uri();
    if uri
        .authority()
        .is_some_and(|authority| authority.as_str().contains('@'))
    {
        return Err(Malformed::new("userinfo in :authority"));
    }
    let scheme = uri.scheme();
    if scheme != Some(&Scheme::HTTP)
        && scheme != Some(&Scheme::HTTPS)
        && request.method() != Method::CONNECT
    {
        return Err(Malformed::new(":scheme is not http or https"));
    }
    if crate::http::headers::any_value_padded(request.headers()) {
        return Err(Malformed::new(
            "a field value starts or ends with whitespace",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, uri: &str, version: Version) -> Request<()> {
        let mut request = Request::new(());
        *request.method_mut() = method;
        *request.uri_mut() = uri.parse().unwrap();
        *request.version_mut() = version;
        request
    }

    #[test]
    fn userinfo_and_other_schemes_are_malformed_over_http2_only() {
        const HTTP_11: Version = Version::HTTP_11;
        const HTTP_2: Version = Version::HTTP_2;
        for (method, uri, version, refused) in [
            (Method::GET, "https://a.test/p", HTTP_2, None),
            (Method::GET, "http://a.test:8080/", HTTP_2, None),
            (Method::CONNECT, "a.test:443", HTTP_2, None),
            (
                Method::GET,
                "https://user@a.test/",
                HTTP_2,
                Some("userinfo in :authority"),
            ),
            (
                Method::CONNECT,
                "u:p@a.test:443",
                HTTP_2,
                Some("userinfo in :authority"),
            ),
            (
                Method::GET,
                "ftp://a.test/",
                HTTP_2,
                Some(":scheme is not http or https"),
            ),
            (Method::GET, "http://user@a.test/", HTTP_11, None),
        ] {
            let verdict = check(&request(method, uri, version)).err().map(|e| e.what);
            assert_eq!(verdict, refused, "{uri} {version:?}");
        }
        const PADDED: Option<&str> = Some("a field value starts or ends with whitespace");
        for (value, version, refused) in [
            (&b"v"[..], HTTP_2, None),
            (b"a b", HTTP_2, None),
            (b"", HTTP_2, None),
            (b" v", HTTP_2, PADDED),
            (b"v ", HTTP_2, PADDED),
            (b"\tv", HTTP_2, PADDED),
            (b"v\t", HTTP_2, PADDED),
            (b" ", HTTP_2, PADDED),
            (b" v", HTTP_11, None),
        ] {
            let mut padded = request(Method::GET, "https://a.test/", version);
            let field = ::http::HeaderValue::from_bytes(value).unwrap();
            padded.headers_mut().insert("x-value", field);
            let verdict = check(&padded).err().map(|e| e.what);
            assert_eq!(verdict, refused, "{value:?} {version:?}");
        }
        let error = check(&request(Method::GET, "ftp://a.test/", HTTP_2)).unwrap_err();
        let reason = std::error::Error::source(&error)
            .and_then(|source| source.downcast_ref::<h2::Error>())
            .and_then(h2::Error::reason);
        assert_eq!(reason, Some(h2::Reason::PROTOCOL_ERROR));
    }
}
