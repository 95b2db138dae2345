//! Header work shared by the proxies: hop-by-hop removal, `Via`, `Host` checks, Basic
//! credentials.

use ::http::{HeaderMap, HeaderName, HeaderValue, Version, header, uri::Authority};

/// How many names [`HOP_BY_HOP`] has.
const HOP_BY_HOP_COUNT: usize = 8;

/// The hop-by-hop headers (RFC 9110 7.6.1) besides those `Connection` names; `Connection`
/// first, `Upgrade` last. Not `Trailer` (RFC 2616's list had it, RFC 9110's has not): it
/// announces the trailer fields, which pass on with the message, and hyper's HTTP/1.1 side
/// writes only the trailer fields a message's `Trailer` announced.
static HOP_BY_HOP: [HeaderName; HOP_BY_HOP_COUNT] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Where `TE` is in [`HOP_BY_HOP`].
const TE_AT: usize = 5;

/// Where `Transfer-Encoding` is in [`HOP_BY_HOP`].
const TRANSFER_ENCODING_AT: usize = 6;

/// Where `name` is in [`HOP_BY_HOP`], if it is one. Names are lowercase, so one `match` on the
/// text (a jump on the length, then one comparison) does what comparing the name with all eight
/// entries did at several times the cost; it runs on every header of every proxied message.
pub(crate) fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "connection" => 0,
        "proxy-connection" => 1,
        "proxy-authorization" => 2,
        "proxy-authenticate" => 3,
        "keep-alive" => 4,
        "te" => TE_AT,
        "transfer-encoding" => TRANSFER_ENCODING_AT,
        "upgrade" => 7,
        _ => return None,
    })
}

/// Whether a trailer field named `name` may be passed on (RFC 9110 6.5.1). A field that must be
/// acted on before the content (framing, routing, authentication, request modifiers, response
/// controls, the content's format) has no meaning in a trailer section, and one that arrives
/// there anyway must not reach a next hop that merges trailers into the head (HTTP/2 gateways,
/// applications): `Content-Length` or `Host` in a trailer would change the message after a
/// proxy judged it. The list is RFC 7230 4.1.2's examples (Go's `badTrailer` holds the same),
/// the forwarding fields a proxy sets in the head, and every hop-by-hop name. Fields the
/// head's `Connection` named are this hop's too; the caller that knows them drops them.
pub(crate) fn allowed_in_trailers(name: &HeaderName) -> bool {
    if hop_by_hop_index(name).is_some() {
        return false;
    }
    !matches!(
        name.as_str(),
        // framing and content format
        "content-length"
            | "trailer"
            | "content-encoding"
            | "content-type"
            | "content-range"
            // routing
            | "host"
            | "forwarded"
            | "x-forwarded-for"
            | "x-forwarded-host"
            | "x-forwarded-proto"
            | "via"
            // authentication and state
            | "authorization"
            | "www-authenticate"
            | "cookie"
            | "set-cookie"
            // request modifiers and controls
            | "cache-control"
            | "expect"
            | "max-forwards"
            | "pragma"
            | "range"
            | "if-match"
            | "if-none-match"
            | "if-modified-since"
            | "if-unmodified-since"
            | "if-range"
            // response controls
            | "age"
            | "date"
            | "expires"
            | "location"
            | "retry-after"
            | "vary"
            | "warning"
    )
}

/// Whether a field value in `headers` starts or ends with a space or a tab. HTTP/1.1's parsers
/// strip such white space (httparse, hyper's and rama's own, a next hop's), HTTP/2 carries it
/// (RFC 9113 8.2.1 calls the message malformed; `h2` checks only for CR, LF and NUL), so two
/// hops could read one value two ways: a check made here on the bytes, another on the trimmed
/// value there.
pub(crate) fn any_value_padded(headers: &HeaderMap) -> bool {
    let padded = |byte: Option<&u8>| matches!(byte, Some(b' ' | b'\t'));
    headers.values().any(|value| {
        let value = value.as_bytes();
        padded(value.first()) || padded(value.last())
    })
}

/// Removes the hop-by-hop headers (RFC 9110 7.6.1): `Connection` and every header it names,
/// `Proxy-Connection`, `Proxy-Authorization`, `Proxy-Authenticate`, `Keep-Alive`, `TE`,
/// `Transfer-Encoding`, `Upgrade`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let _ = remove_hop_by_hop_noting(headers);
}

/// Removes the hop-by-hop headers as [`remove_hop_by_hop`] does, and says what of them the
/// forwarding needs to know.
pub(crate) fn remove_hop_by_hop_noting(headers: &mut HeaderMap) -> Removed {
    let present = hop_by_hop_present(headers);
    remove_present(headers, present)
}

/// What the hop-by-hop fields a message came with said, of what matters past this hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a body in a coding besides chunked must not be forwarded as if it were plain"]
pub(crate) struct Removed {
    /// What `Transfer-Encoding` said: a proxy that forwards a body it decoded of its chunks
    /// alone must not forward one that was in another coding too.
    pub(crate) coding: TransferCoding,
    /// `TE` named `trailers`: the sender takes trailers, which an HTTP/2 upstream is told
    /// again (`te: trailers` is the one `TE` HTTP/2 allows, RFC 9113 8.2.2, and gRPC servers
    /// look for it).
    pub(crate) te_trailers: bool,
}

impl Removed {
    /// What a proxy does once a request's hop-by-hop fields are gone, before the client takes
    /// it: a body in a coding besides chunked goes no further (the error the proxies answer
    /// `501`), and `te: trailers` is put back for the client, which tells an HTTP/2 upstream.
    pub(crate) fn pass_on(self, headers: &mut HeaderMap) -> Result<(), super::Error> {
        if self.coding == TransferCoding::Unsupported {
            return Err(super::Error::request_transfer_coding());
        }
        self.restore_te_trailers(headers);
        Ok(())
    }

    /// `te: trailers`, for whoever takes the message on when it said so.
    pub(crate) fn restore_te_trailers(self, headers: &mut HeaderMap) {
        if self.te_trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    }
}

/// What a message's `Transfer-Encoding` field lines say of its body (RFC 9112 6.1), all of
/// them together: `Transfer-Encoding: gzip` then `Transfer-Encoding: chunked` is the list
/// `gzip, chunked`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum TransferCoding {
    /// No `Transfer-Encoding`.
    #[default]
    Absent,
    /// `chunked` alone: the one transfer coding rama decodes, and the only one a client may
    /// send without asking (`TE`, which a proxy removes).
    Chunked,
    /// Anything else: a coding besides `chunked` (`gzip, chunked`), `chunked` twice or not
    /// last, a field line with no coding in it. Decoding the chunks alone would hand the next
    /// hop bytes still in a coding nobody told it of.
    Unsupported,
}

impl TransferCoding {
    /// The verdict once `field`, one more `Transfer-Encoding` field line, is taken in.
    pub(crate) fn and(self, field: &[u8]) -> Self {
        // An empty list element is refused, though RFC 9110 5.6.1 lets a recipient skip it:
        // hyper, which parses what the own paths leave to it, takes the last element for
        // the coding, so `chunked,` is a request's `400` there and a response read until the
        // close with its chunks left in. Read as `chunked` here, such a message was framed
        // one way or the other by its size (the own path takes small bodies only) and by the
        // upstream's path. nginx answers anything but `chunked` alone `501`.
        field
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .fold(self, |verdict, coding| match verdict {
                Self::Absent if coding.eq_ignore_ascii_case(b"chunked") => Self::Chunked,
                _ => Self::Unsupported,
            })
    }

    /// Removes the `Content-Length` of a message whose `Transfer-Encoding` said this, when
    /// that is chunked: beside the chunks it is not the body's length, and an intermediary
    /// must remove it before forwarding (RFC 9112 6.3): an HTTP/1.1 client would read too
    /// little or wait for more, an HTTP/2 one resets the stream. Both of the client's paths
    /// take this rule (rama's own reads the coding while parsing, hyper-util's in the
    /// hop-by-hop removal).
    pub(crate) fn drop_length_beside_chunks(self, headers: &mut HeaderMap) {
        if self == Self::Chunked {
            headers.remove(header::CONTENT_LENGTH);
        }
    }

    /// The verdict over every `Transfer-Encoding` field line of `headers`.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .fold(Self::Absent, |verdict, field| verdict.and(field.as_bytes()))
    }
}

/// Which of [`HOP_BY_HOP`] a message has, found in one pass over the names it has (a handful):
/// cheaper than a hashed lookup of each, since most messages carry none or only `Connection`.
fn hop_by_hop_present(headers: &HeaderMap) -> [bool; HOP_BY_HOP_COUNT] {
    let mut present = [false; HOP_BY_HOP_COUNT];
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name) {
            present[i] = true;
        }
    }
    present
}

/// Removes the headers `Connection` names and those of [`HOP_BY_HOP`] marked `present`; what
/// they said ([`Removed`]).
fn remove_present(headers: &mut HeaderMap, present: [bool; HOP_BY_HOP_COUNT]) -> Removed {
    // Only a message that has the fields pays for their lookups.
    let removed = Removed {
        coding: if present[TRANSFER_ENCODING_AT] {
            TransferCoding::of(headers)
        } else {
            TransferCoding::Absent
        },
        te_trailers: present[TE_AT] && asks_trailers(headers),
    };
    if present[0] {
        for name in connection_named(headers) {
            headers.remove(name);
        }
    }
    for (name, present) in HOP_BY_HOP.iter().zip(present) {
        if present {
            headers.remove(name);
        }
    }
    removed
}

/// The fields a message's `Connection` names besides the usual tokens and [`HOP_BY_HOP`]'s
/// names: this hop's, to be removed from the head, and kept out of the trailers. Read as
/// bytes: a byte past ASCII elsewhere in the value (which `to_str` refuses) must not keep
/// the fields it names, as it does not on the own HTTP/1.1 paths (`codec::Hop`).
pub(crate) fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    connection_tokens(headers)
        // The usual tokens (`close`, `keep-alive`) need no header name built: `close`
        // names none and those of the list go anyway.
        .filter(|token| {
            !token.is_empty()
                && !token.eq_ignore_ascii_case(b"close")
                && !HOP_BY_HOP
                    .iter()
                    .any(|hop| token.eq_ignore_ascii_case(hop.as_str().as_bytes()))
        })
        .filter_map(|name| HeaderName::from_bytes(name).ok())
        .collect()
}

/// The tokens of every `Connection` field line, trimmed.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
}

/// Whether a `TE` field names `trailers` (RFC 9110 10.1.4).
fn asks_trailers(headers: &HeaderMap) -> bool {
    headers.get_all(header::TE).iter().any(|value| {
        value.as_bytes().split(|&b| b == b',').any(|item| {
            let coding = item.split(|&b| b == b';').next().unwrap_or_default();
            coding.trim_ascii().eq_ignore_ascii_case(b"trailers")
        })
    })
}

/// The `Upgrade` of an upgrade request (or response) that a proxy passes on: `Connection`
/// names `upgrade` and the protocol is not `h2c` (an upgrade of this hop's own connection to
/// HTTP/2, which the next hop never asked for).
pub(crate) fn upgrade_of(headers: &HeaderMap) -> Option<&HeaderValue> {
    let upgrade = headers.get(header::UPGRADE)?;
    let asked = connection_tokens(headers).any(|token| token.eq_ignore_ascii_case(b"upgrade"));
    let h2c = upgrade
        .to_str()
        .is_ok_and(|value| value.trim().eq_ignore_ascii_case("h2c"));
    (asked && !h2c).then_some(upgrade)
}

/// Removes the hop-by-hop headers as [`remove_hop_by_hop`] does, but keeps an upgrade request's
/// ([`upgrade_of`]) `Upgrade` and `Connection: upgrade`, which the next hop needs to switch.
/// Says what the removed fields said, as [`remove_hop_by_hop_noting`] does.
pub(crate) fn remove_hop_by_hop_but_upgrade(headers: &mut HeaderMap) -> Removed {
    let present = hop_by_hop_present(headers);
    // Without `Upgrade` there is no upgrade to keep, and no lookup to pay for.
    let upgrade = if present[HOP_BY_HOP_COUNT - 1] {
        upgrade_of(headers).cloned()
    } else {
        None
    };
    let removed = remove_present(headers, present);
    if let Some(upgrade) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, upgrade);
    }
    removed
}

/// Joins the `Cookie` field lines an HTTP/2 client may split its cookies over (RFC 9113
/// 8.2.3, for HPACK's sake) into the one line HTTP/1.1 has (RFC 6265 5.4), `; ` between
/// them: an HTTP/1.1 origin may read the first line alone. (The client's own HTTP/1.1 path
/// joins them as it writes the head, without this lookup.)
pub(crate) fn join_cookies(headers: &mut HeaderMap) {
    let mut lines = headers.get_all(header::COOKIE).iter();
    let (Some(_), Some(_)) = (lines.next(), lines.next()) else {
        return;
    };
    let mut joined = Vec::new();
    for line in headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(line.as_bytes());
    }
    // Each line was a valid value, and so is `; `.
    if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)) {
        headers.insert(header::COOKIE, value);
    }
}

/// Makes the equal `Content-Length` field lines of a request one: RFC 9110 8.6 lets a
/// recipient take such a list as the one length, and an HTTP/2 upstream must not be sent it
/// (nginx answers `400` to two `content-length` fields). Only for lines the parser already
/// took as one length (rama's own path, hyper and `h2` refuse a request whose lines differ,
/// or that lists a length twice on one line).
pub(crate) fn single_content_length(headers: &mut HeaderMap) {
    let mut lines = headers.get_all(header::CONTENT_LENGTH).iter();
    if let (Some(first), Some(_)) = (lines.next(), lines.next()) {
        let first = first.clone();
        headers.insert(header::CONTENT_LENGTH, first);
    }
}

/// Appends `Via: <version> rama` (RFC 9110 7.6.3).
pub fn append_via(headers: &mut HeaderMap, version: Version) {
    // Constants: `from_static` outside a const context checks every byte again at each call,
    // twice per proxied request.
    const VIA_09: HeaderValue = HeaderValue::from_static("0.9 rama");
    const VIA_10: HeaderValue = HeaderValue::from_static("1.0 rama");
    const VIA_11: HeaderValue = HeaderValue::from_static("1.1 rama");
    const VIA_2: HeaderValue = HeaderValue::from_static("2 rama");
    const VIA_3: HeaderValue = HeaderValue::from_static("3 rama");
    let value = match version {
        Version::HTTP_09 => VIA_09,
        Version::HTTP_10 => VIA_10,
        Version::HTTP_2 => VIA_2,
        Version::HTTP_3 => VIA_3,
        _ => VIA_11,
    };
    headers.append(header::VIA, value);
}

/// What is wrong with a request's `Host`; the proxies answer it with `400` (RFC 9112 3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadHost {
    /// More than one `Host` field line: two hops that each read another one of them would
    /// send the same request to two different hosts.
    Repeated,
    /// A value that is not `host[:port]`.
    Invalid,
    /// An HTTP/1.1 request in origin-form without `Host`: it names no host at all.
    Missing,
}

impl BadHost {
    /// The answer's text.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::Repeated => "the request has more than one Host header",
            Self::Invalid => "the request's Host header is not host[:port]",
            Self::Missing => "an HTTP/1.1 request needs a Host header",
        }
    }
}

/// The bytes a `Host` may hold, as a table: a search of the punctuation list for every byte
/// was 500 instructions per request.
static HOST_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let punctuation = b"-._~%!$&'()*+,;=:[]";
    let mut i = 0;
    while i < punctuation.len() {
        table[punctuation[i] as usize] = true;
        i += 1;
    }
    table
};

/// The request's `Host` field (`None` when it has none), if it has at most one and that one
/// is a `host[:port]`: the bytes of RFC 3986's `reg-name`, IP literals and port, nothing else
/// (no `/`, `@`, `?`, `#` or white space that a later hop could read another host out of).
pub(crate) fn single_host(headers: &HeaderMap) -> Result<Option<&HeaderValue>, BadHost> {
    let mut all = headers.get_all(header::HOST).iter();
    let Some(host) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(BadHost::Repeated);
    }
    if host.as_bytes().iter().all(|&b| HOST_BYTES[usize::from(b)]) {
        Ok(Some(host))
    } else {
        Err(BadHost::Invalid)
    }
}

/// An authority's `host[:port]`, without the `user@` an absolute-form target may carry.
pub(crate) fn host_port(authority: &Authority) -> &str {
    let all = authority.as_str();
    // A plain scan: `rsplit_once`'s `memrchr` costs 150 instructions on a short authority,
    // once per HTTP/2 request.
    match all.bytes().rposition(|b| b == b'@') {
        Some(at) => &all[at + 1..],
        None => all,
    }
}

/// The username and password of a `Basic` credentials header value, if it is one.
pub(crate) fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let value = value.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(encoded.trim())?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Standard base64 with padding, as `Basic` credentials use it.
fn base64_decode(input: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let input = input.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    for chunk in input.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | value(c)?;
        }
        match chunk.len() {
            4 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]),
            3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
            2 => out.push((acc >> 4) as u8),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_index_matches_the_list() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(i), "{name}");
        }
        assert_eq!(HOP_BY_HOP[HOP_BY_HOP_COUNT - 1], header::UPGRADE);
        assert_eq!(hop_by_hop_index(&header::HOST), None);
        assert_eq!(hop_by_hop_index(&HeaderName::from_static("x-te")), None);
    }

    #[test]
    fn transfer_coding_is_chunked_only_when_chunked_is_all_there_is() {
        use TransferCoding::{Absent, Chunked, Unsupported};
        let verdict = |fields: &[&'static str]| {
            let mut headers = HeaderMap::new();
            for &field in fields {
                headers.append(header::TRANSFER_ENCODING, HeaderValue::from_static(field));
            }
            TransferCoding::of(&headers)
        };
        for (fields, expected) in [
            (&[][..], Absent),
            (&["chunked"][..], Chunked),
            (&["Chunked "][..], Chunked),
            (&[" , chunked"][..], Unsupported),
            (&["chunked,"][..], Unsupported),
            (&["gzip, chunked"][..], Unsupported),
            (&["gzip", "chunked"][..], Unsupported),
            (&["chunked", "gzip"][..], Unsupported),
            (&["chunked, gzip"][..], Unsupported),
            (&["chunked, chunked"][..], Unsupported),
            (&["chunked", "chunked"][..], Unsupported),
            (&["gzip"][..], Unsupported),
            (&["identity"][..], Unsupported),
            (&["chunked;x=1"][..], Unsupported),
            (&[""][..], Unsupported),
            (&[" , "][..], Unsupported),
        ] {
            assert_eq!(verdict(fields), expected, "{fields:?}");
        }
        // Removing the hop-by-hop fields says the same, and pays for no lookup without one.
        let mut headers = HeaderMap::new();
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
        headers.append(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert_eq!(remove_hop_by_hop_noting(&mut headers).coding, Unsupported);
        assert!(headers.is_empty());
        assert_eq!(remove_hop_by_hop_noting(&mut headers).coding, Absent);
    }

    #[test]
    fn te_trailers_is_noted_whatever_else_te_lists() {
        for (te, trailers) in [
            ("trailers", true),
            ("gzip;q=0.5, Trailers", true),
            ("trailers;q=1", true),
            ("gzip", false),
            ("x-trailers", false),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::TE, HeaderValue::from_static(te));
            let removed = remove_hop_by_hop_noting(&mut headers);
            assert_eq!(removed.te_trailers, trailers, "{te}");
            assert!(headers.is_empty(), "{te}");
            removed.restore_te_trailers(&mut headers);
            assert_eq!(headers.get(header::TE).is_some(), trailers, "{te}");
        }
    }

    #[test]
    fn equal_lengths_become_one_field() {
        for lines in [&[][..], &["5"], &["5", "5"], &["5", "5", "5"]] {
            let mut headers = HeaderMap::new();
            for &line in lines {
                headers.append(header::CONTENT_LENGTH, HeaderValue::from_static(line));
            }
            single_content_length(&mut headers);
            let values: Vec<_> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
            assert_eq!(values, &lines[..lines.len().min(1)], "{lines:?}");
        }
    }

    #[test]
    fn cookie_lines_join_into_one() {
        let mut headers = HeaderMap::new();
        join_cookies(&mut headers);
        assert!(headers.is_empty());
        headers.append(header::COOKIE, HeaderValue::from_static("a=1"));
        join_cookies(&mut headers);
        assert_eq!(headers[header::COOKIE], "a=1");
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        headers.append(header::COOKIE, HeaderValue::from_static("c=3; d=4"));
        join_cookies(&mut headers);
        let lines: Vec<_> = headers.get_all(header::COOKIE).iter().collect();
        assert_eq!(lines, ["a=1; b=2; c=3; d=4"]);
    }

    #[test]
    fn host_port_leaves_out_user_information() {
        for (authority, host) in [
            ("example.com:8080", "example.com:8080"),
            ("user:pass@example.com", "example.com"),
            ("a@b@[::1]:80", "[::1]:80"),
        ] {
            assert_eq!(host_port(&Authority::from_static(authority)), host);
        }
    }

    #[test]
    fn single_host_takes_one_host_port_and_nothing_else() {
        let mut headers = HeaderMap::new();
        assert_eq!(single_host(&headers), Ok(None));
        for good in [
            "example.com",
            "example.com:8080",
            "[::1]:80",
            "127.0.0.1",
            "a_b-c.d~e",
            "",
        ] {
            headers.insert(header::HOST, HeaderValue::from_static(good));
            assert_eq!(
                single_host(&headers).map(|h| h.cloned()),
                Ok(Some(HeaderValue::from_static(good))),
                "{good}"
            );
        }
        for bad in [
            "a b",
            "a/b",
            "evil@a",
            "a?b",
            "a#b",
            "a\tb",
            "\u{e9}t\u{e9}",
        ] {
            let value = HeaderValue::from_bytes(bad.as_bytes()).unwrap();
            headers.insert(header::HOST, value);
            assert_eq!(single_host(&headers), Err(BadHost::Invalid), "{bad}");
        }
        headers.insert(header::HOST, HeaderValue::from_static("a"));
        headers.append(header::HOST, HeaderValue::from_static("a"));
        assert_eq!(single_host(&headers), Err(BadHost::Repeated));
    }

    #[test]
    fn basic_credentials_decode() {
        // "alice:s3:cret"
        let value = HeaderValue::from_static("Basic YWxpY2U6czM6Y3JldA==");
        assert_eq!(
            basic_credentials(&value),
            Some(("alice".into(), "s3:cret".into()))
        );
        assert_eq!(
            basic_credentials(&HeaderValue::from_static("Bearer x")),
            None
        );
        assert_eq!(
            basic_credentials(&HeaderValue::from_static("Basic !!!")),
            None
        );
        // "a:b"
        let value = HeaderValue::from_static("basic YTpi");
        assert_eq!(basic_credentials(&value), Some(("a".into(), "b".into())));
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        headers.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic x"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(header::ACCEPT));

        // Several `Connection` fields, tokens in any case, names of the list among them.
        let mut headers = HeaderMap::new();
        headers.append(header::CONNECTION, HeaderValue::from_static("Keep-Alive"));
        headers.append(header::CONNECTION, HeaderValue::from_static(" X-Other ,te"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-other", HeaderValue::from_static("1"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::HOST, HeaderValue::from_static("example.com"));
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.keys().collect::<Vec<_>>(), [header::HOST]);

        // A byte past ASCII in one token keeps none of the others from naming fields (it was
        // read as text, and a value that is not kept them all).
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_bytes(b"cl\xffose, x-secret").unwrap(),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert(header::HOST, HeaderValue::from_static("example.com"));
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.keys().collect::<Vec<_>>(), [header::HOST]);

        // None present: nothing changes.
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("example.com"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 2);
    }

    #[test]
    fn an_upgrade_request_keeps_what_asks_for_it() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        let _ = remove_hop_by_hop_but_upgrade(&mut headers);
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[header::CONNECTION], "upgrade");
        assert_eq!(headers[header::UPGRADE], "websocket");

        // `Upgrade` that `Connection` does not name, and this hop's own `h2c`, go.
        for connection in ["keep-alive", "Upgrade, HTTP2-Settings"] {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONNECTION, HeaderValue::from_static(connection));
            let upgrade = if connection == "keep-alive" {
                "websocket"
            } else {
                "h2c"
            };
            headers.insert(header::UPGRADE, HeaderValue::from_static(upgrade));
            headers.insert(
                "http2-settings",
                HeaderValue::from_static("AAMAAABkAAQAoAAAAAIAAAAA"),
            );
            let _ = remove_hop_by_hop_but_upgrade(&mut headers);
            let left = usize::from(connection == "keep-alive");
            assert_eq!(headers.len(), left, "{connection}");
            assert!(!headers.contains_key(header::UPGRADE), "{connection}");
        }
    }
}
