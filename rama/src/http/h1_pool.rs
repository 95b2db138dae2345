//! The [`Client`](super::Client)'s path for plain `http://` HTTP/1.1 upstreams: rama's own
//! connections ([`h1`](super::h1)), one idle list per thread, client and upstream, instead of
//! hyper-util's legacy pool (its shared map keyed by `(Scheme, Authority)`, its checkout
//! future raced against a lazy connect, its `Pooled` wrapper) on every request.
//!
//! An idle connection is nobody's task: nothing reads it, so the upstream closing it shows only
//! as read readiness the runtime records. A checkout looks at that before it hands a connection
//! out, and a sweeper task per thread and client looks at every idle connection once a second,
//! so that those the upstream closed (and those idle longer than the idle timeout) are closed
//! on this side too, instead of lingering in `CLOSE_WAIT`.

use super::{
    Body, Error,
    connect::{Connector, Dial, Stream},
    h1::{Connection, ExchangeError, codec},
};
use crate::timer::ConnTimer;
use ::http::{HeaderValue, Method, Response, Uri, header, request, uri::PathAndQuery};
use std::{
    borrow::Cow,
    cell::RefCell,
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex, PoisonError, Weak},
    time::{Duration, Instant},
};
use tokio::net::TcpStream;
use tower::ServiceExt;

/// How often the sweeper looks at the idle connections.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// An idle connection and when it went idle.
struct Idle {
    conn: Connection,
    since: Instant,
}

/// One client's idle connections on one thread, by upstream authority (shared with the
/// thread's sweeper for that client, which may run on another thread of a multi-threaded
/// runtime).
type Idles = Mutex<Lists<Idle>>;

/// Idle connections by upstream authority. The authority used last is kept apart with its
/// list: a reverse proxy's one upstream, and a forward proxy's run of requests to one host,
/// find theirs without hashing (`SipHash` of the authority at the checkout and again at the
/// park was 2% of the reverse proxy's instructions per request). A switch to another
/// authority hashes twice, as the two lookups did.
struct Lists<T> {
    last: Option<(Box<str>, Vec<T>)>,
    others: HashMap<Box<str>, Vec<T>>,
}

impl<T> Default for Lists<T> {
    fn default() -> Self {
        Self {
            last: None,
            others: HashMap::new(),
        }
    }
}

impl<T> Lists<T> {
    /// The list of `authority`, if it has one.
    fn get_mut(&mut self, authority: &str) -> Option<&mut Vec<T>> {
        if self.is_last(authority) {
            return self.last.as_mut().map(|(_, list)| list);
        }
        let (key, list) = self.others.remove_entry(authority)?;
        Some(self.make_last(key, list))
    }

    /// The list of `authority`, a new one if it has none (the key is copied only then).
    fn get_or_default(&mut self, authority: &str) -> &mut Vec<T> {
        if self.is_last(authority) {
            return &mut self.last.as_mut().expect("the last list").1;
        }
        let (key, list) = self
            .others
            .remove_entry(authority)
            .unwrap_or_else(|| (authority.into(), Vec::new()));
        self.make_last(key, list)
    }

    fn is_last(&self, authority: &str) -> bool {
        self.last
            .as_ref()
            .is_some_and(|(key, _)| **key == *authority)
    }

    /// Makes `list` the last one used; the one before goes with the others, unless empty.
    fn make_last(&mut self, key: Box<str>, list: Vec<T>) -> &mut Vec<T> {
        if let Some((key, list)) = self.last.replace((key, list))
            && !list.is_empty()
        {
            self.others.insert(key, list);
        }
        &mut self.last.as_mut().expect("just set").1
    }

    /// Keeps the connections `keep` says, and the lists that still hold any (and the last,
    /// which is in use).
    fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.others.retain(|_, list| {
            list.retain(&mut keep);
            !list.is_empty()
        });
        if let Some((_, list)) = self.last.as_mut() {
            list.retain(keep);
        }
    }

    fn clear(&mut self) {
        self.last = None;
        self.others.clear();
    }
}

thread_local! {
    /// This thread's idle HTTP/1.1 upstream connections, per live client (a short list: a
    /// program has a client or two; a dead client's list goes when another one arrives).
    static IDLE: RefCell<Vec<(Weak<Settings>, Arc<Idles>)>> = const { RefCell::new(Vec::new()) };
}

/// What the path needs of the client's settings (shared by the client's clones: its address
/// keys their idle lists).
pub(crate) struct Settings {
    pub(crate) connector: Connector,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_idle: usize,
}

/// Sends a request (`parts` with an absolute `http://` URI and no upgrade asked, and `body`)
/// on an idle connection of this thread, or a new one. When a pooled connection turns out
/// closed by the upstream before it answered, the request goes again on another if it can: it
/// was not written at all, or it is idempotent, and its body is not a stream (a fresh
/// connection is not retried: its failure is the upstream's answer). Dialing and waiting for
/// the response head share `timeout`.
///
/// The request comes in parts and the URI stays in them: a value an `async fn` takes apart
/// keeps a slot of its own beside its pieces, and this future is allocated for every request.
/// Not an `async fn` either: one keeps its parameters' slots beside the locals it moves them
/// into, where an `async` block uses what it captured in place. That was 288 of the future's
/// 1168 bytes, and past glibc's per-thread cache (1032 bytes) its `malloc` and `free` took the
/// slow path, 800 instructions per request.
#[allow(clippy::manual_async_fn)]
pub(crate) fn send(
    settings: Arc<Settings>,
    mut parts: request::Parts,
    mut body: Body,
    timeout: Option<Duration>,
) -> impl Future<Output = Result<Response<Body>, Error>> + Send {
    async move {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let Some(authority) = parts.uri.authority() else {
            return Err(Error::upstream("the request URI has no host".into()));
        };
        if !parts.headers.contains_key(header::HOST) {
            let host = HeaderValue::from_str(super::headers::host_port(authority))
                .map_err(|e| Error::upstream(e.into()))?;
            parts.headers.insert(header::HOST, host);
        }
        let uri = &parts.uri;
        let key = authority.as_str();
        let target = request_target(&parts.method, uri);
        loop {
            let (mut conn, reused) = match checkout(&settings, key) {
                Some(conn) => (conn, true),
                None => {
                    // The dial's timer stays the connection's, for its response heads.
                    let timer = ConnTimer::new();
                    let dial = connect(&settings, uri.clone(), &parts.extensions);
                    let stream = timer
                        .bound(deadline, dial)
                        .await
                        .map_err(|()| Error::timeout())??;
                    (Connection::new(stream, timer), false)
                }
            };
            let again = if reused { body.try_clone() } else { None };
            // A response that did not come in time leaves the connection mid-exchange: it goes.
            let answer = conn
                .exchange(&parts, &target, body, deadline, timeout)
                .await;
            let error = match answer {
                Ok(answer) => {
                    let home = || {
                        let settings = settings.clone();
                        let key: Box<str> = key.into();
                        let home: super::h1::Home =
                            Box::new(move |conn| park(&settings, &key, conn));
                        home
                    };
                    let (response, free) = conn.into_response(answer, home, timeout);
                    if let Some(conn) = free {
                        park(&settings, key, conn);
                    }
                    codec::recycle_map(parts.headers);
                    codec::recycle_extensions(parts.extensions);
                    return Ok(response);
                }
                Err(error) => error,
            };
            let retry = match error {
                ExchangeError::Timeout => return Err(Error::timeout()),
                ExchangeError::RequestBody(error) => return Err(Error::request_body(error)),
                ExchangeError::Unsent(_) => true,
                ExchangeError::Closed(_) => parts.method.is_idempotent(),
                _ => false,
            };
            match again {
                Some(again) if retry => {
                    tracing::debug!(upstream = %key, error = %crate::error::Chain(&error), "http client: a pooled connection was closed, sending the request again");
                    body = again;
                }
                _ => return Err(Error::upstream(error.into())),
            }
        }
    }
}

/// The request target for an HTTP/1.1 origin: the path and query of `uri`; `*` as it is for
/// an `OPTIONS *` (asterisk-form, RFC 9112 3.2.4: about the server, not a resource `/*`).
fn request_target<'a>(method: &Method, uri: &'a Uri) -> Cow<'a, str> {
    match uri.path_and_query().map(PathAndQuery::as_str) {
        Some(path) if path.starts_with('/') => Cow::Borrowed(path),
        Some("*") if method == Method::OPTIONS => Cow::Borrowed("*"),
        // `http://host?query`: the path is empty, which origin-form says as `/`.
        Some(query) => Cow::Owned(format!("/{query}")),
        None => Cow::Borrowed("/"),
    }
}

impl Idle {
    /// Whether it can still be used at `now`: idle for less than `timeout`, and open.
    fn usable(&self, now: Instant, timeout: Duration) -> bool {
        now.duration_since(self.since) < timeout && self.conn.is_open()
    }
}

/// Runs `f` on the idle lists of the client of `settings` on this thread (made, with their
/// sweeper, the first time the client is used here).
fn with_idles<R>(settings: &Arc<Settings>, f: impl FnOnce(&mut Lists<Idle>) -> R) -> Option<R> {
    IDLE.try_with(|idle| {
        let mut idle = idle.borrow_mut();
        let key = Arc::as_ptr(settings);
        let position = idle.iter().position(|(client, _)| client.as_ptr() == key);
        let idles = match position {
            Some(i) => &idle[i].1,
            None => {
                // A client new to this thread: first forget the lists of clients that are gone.
                idle.retain(|(client, _)| client.strong_count() > 0);
                let idles = Arc::new(Idles::default());
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(sweep(Arc::downgrade(settings), Arc::downgrade(&idles)));
                }
                idle.push((Arc::downgrade(settings), idles));
                &idle.last().expect("just pushed").1
            }
        };
        f(&mut idles.lock().unwrap_or_else(PoisonError::into_inner))
    })
    .ok()
}

/// An idle connection to `authority` that is still usable (the others are dropped, which
/// closes them).
fn checkout(settings: &Arc<Settings>, authority: &str) -> Option<Connection> {
    with_idles(settings, |idles| {
        let list = idles.get_mut(authority)?;
        let now = Instant::now();
        while let Some(idle) = list.pop() {
            if idle.usable(now, settings.idle_timeout) {
                return Some(idle.conn);
            }
        }
        None
    })
    .flatten()
}

/// Adds an idle connection to this thread's list for the client of `settings` and
/// `authority`, unless the list holds the client's maximum already.
fn park(settings: &Arc<Settings>, authority: &str, conn: Connection) {
    with_idles(settings, |idles| {
        let list = idles.get_or_default(authority);
        if list.len() < settings.max_idle {
            list.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    });
}

/// Closes, once a second, the idle connections of one client on one thread that the upstream
/// closed or that are idle longer than the idle timeout; all of them once the client is gone.
async fn sweep(settings: Weak<Settings>, idles: Weak<Idles>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(idles) = idles.upgrade() else {
            return;
        };
        let mut idles = idles.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(settings) = settings.upgrade() else {
            idles.clear();
            return;
        };
        let now = Instant::now();
        idles.retain(|idle| idle.usable(now, settings.idle_timeout));
    }
}

/// Dials `uri`'s authority as the request's `extensions` allow ([`Dial::of`]).
async fn connect(
    settings: &Settings,
    uri: Uri,
    extensions: &::http::Extensions,
) -> Result<TcpStream, Error> {
    let mut connector = settings.connector.clone();
    let ready = connector.ready().await.map_err(Error::connect)?;
    match ready.dial(uri, Dial::of(extensions)).await {
        Ok(Stream::Plain(tcp)) => Ok(tcp.into_inner()),
        // The path takes `http://` URIs only.
        Ok(Stream::Tls(_)) => Err(Error::upstream(
            "an http:// upstream was dialed with TLS".into(),
        )),
        Err(error) => Err(Error::connect(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::Lists;

    #[test]
    fn lists_keep_each_authority_apart_whichever_was_last() {
        let mut lists = Lists::default();
        lists.get_or_default("a:80").push(1);
        lists.get_or_default("b:80").push(2);
        lists.get_or_default("a:80").push(3);
        assert!(lists.get_mut("c:80").is_none());
        assert_eq!(lists.get_mut("b:80").map(|l| l.clone()), Some(vec![2]));
        assert_eq!(lists.get_mut("a:80").map(|l| l.clone()), Some(vec![1, 3]));
        // An emptied list that is no longer the last is forgotten.
        lists.get_mut("b:80").unwrap().clear();
        lists.get_or_default("a:80").push(4);
        assert!(lists.get_mut("b:80").is_none());
        lists.retain(|&n| n != 3);
        assert_eq!(lists.get_mut("a:80").map(|l| l.clone()), Some(vec![1, 4]));
        lists.clear();
        assert!(lists.get_mut("a:80").is_none());
    }
}
