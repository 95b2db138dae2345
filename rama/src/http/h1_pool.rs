//! The [`Client`](super::Client)'s path for plain `http://` HTTP/1.1 upstreams: one idle list
//! of hyper's own connection senders (`hyper::client::conn::http1`) per thread and upstream,
//! instead of hyper-util's legacy pool (its shared map keyed by `(Scheme, Authority)`, its
//! checkout future raced against a lazy connect, its `Pooled` wrapper) on every request.

use super::{Body, Error, connect::Connector};
use crate::timer::ConnTimer;
use ::http::{HeaderValue, Request, Response, Uri, header, uri::PathAndQuery};
use hyper::{body::Incoming, client::conn::http1};
use std::{
    cell::RefCell,
    collections::HashMap,
    future::poll_fn,
    sync::{Arc, Weak},
    time::{Duration, Instant},
};
use tower::{Service, ServiceExt};

/// A connection's sender and the timer that bounds the wait for each of its responses.
struct Upstream {
    sender: http1::SendRequest<Body>,
    timer: ConnTimer,
}

/// An idle connection and when it went idle.
struct Idle {
    upstream: Upstream,
    since: Instant,
}

/// One client's idle connections on one thread, by upstream authority.
type Idles = HashMap<Box<str>, Vec<Idle>>;

thread_local! {
    /// This thread's idle HTTP/1.1 upstream connections, per live client (a short list: a
    /// program has a client or two; a dead client's list goes when another one arrives).
    static IDLE: RefCell<Vec<(Weak<Settings>, Idles)>> = const { RefCell::new(Vec::new()) };
}

/// What the path needs of the client's settings (shared by the client's clones: its address
/// keys their idle lists).
pub(crate) struct Settings {
    pub(crate) connector: Connector,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_idle: usize,
}

/// Sends `request` (absolute `http://` URI) on an idle connection of this thread, or a new
/// one; a pooled connection the upstream closed before the request was written is left for
/// another (a fresh one is not retried: its failure is the upstream's answer). Dialing and
/// waiting for the response head share `timeout`.
pub(crate) async fn send(
    settings: Arc<Settings>,
    mut request: Request<Body>,
    timeout: Option<Duration>,
) -> Result<Response<Incoming>, Error> {
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    let uri = request.uri().clone();
    let Some(authority) = uri.authority() else {
        return Err(Error::upstream("the request URI has no host".into()));
    };
    let key = authority.as_str();
    if !request.headers().contains_key(header::HOST) {
        let host = HeaderValue::from_str(authority.as_str().rsplit('@').next().unwrap_or_default())
            .map_err(|e| Error::upstream(e.into()))?;
        request.headers_mut().insert(header::HOST, host);
    }
    *request.uri_mut() = origin_form(&uri);
    loop {
        let (mut upstream, reused) = match checkout(&settings, key) {
            Some(upstream) => (upstream, true),
            None => {
                let timer = ConnTimer::new();
                let sender = timer
                    .bound(deadline, connect(&settings, uri.clone()))
                    .await
                    .map_err(|()| Error::timeout())??;
                (Upstream { sender, timer }, false)
            }
        };
        let sent = upstream.sender.try_send_request(request);
        let sent = upstream.timer.bound(deadline, sent).await;
        // A response that did not come in time leaves the connection mid-exchange: it goes.
        match sent.map_err(|()| Error::timeout())? {
            Ok(response) => {
                checkin(&settings, key, upstream);
                return Ok(response);
            }
            Err(mut error) => match error.take_message() {
                Some(unsent) if reused => request = unsent,
                _ => return Err(Error::upstream(error.into_error().into())),
            },
        }
    }
}

/// The request target for an HTTP/1.1 origin: the path and query of `uri`.
fn origin_form(uri: &Uri) -> Uri {
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or(PathAndQuery::from_static("/"));
    Uri::from(path)
}

/// An idle connection to `authority` that is still open and not idle longer than the idle
/// timeout (the others are dropped, which closes them).
fn checkout(settings: &Arc<Settings>, authority: &str) -> Option<Upstream> {
    IDLE.try_with(|idle| {
        let mut idle = idle.borrow_mut();
        let (_, idles) = idle
            .iter_mut()
            .find(|(client, _)| client.as_ptr() == Arc::as_ptr(settings))?;
        let list = idles.get_mut(authority)?;
        let now = Instant::now();
        while let Some(entry) = list.pop() {
            if entry.upstream.sender.is_ready()
                && now.duration_since(entry.since) < settings.idle_timeout
            {
                return Some(entry.upstream);
            }
        }
        None
    })
    .ok()
    .flatten()
}

/// Puts `upstream` back once its connection can take the next request: at once when the
/// response was read whole with its head (small bodies), else from a task that waits for it.
fn checkin(settings: &Arc<Settings>, authority: &str, mut upstream: Upstream) {
    if upstream.sender.is_ready() {
        park(settings, authority, upstream);
        return;
    }
    let client = Arc::downgrade(settings);
    let authority: Box<str> = authority.into();
    tokio::spawn(async move {
        if poll_fn(|cx| upstream.sender.poll_ready(cx)).await.is_ok()
            && let Some(settings) = client.upgrade()
        {
            park(&settings, &authority, upstream);
        }
    });
}

/// Adds an idle connection to this thread's list for the client of `settings` and
/// `authority`, unless the list holds the client's maximum already.
fn park(settings: &Arc<Settings>, authority: &str, upstream: Upstream) {
    let _ = IDLE.try_with(|idle| {
        let mut idle = idle.borrow_mut();
        let position = idle
            .iter()
            .position(|(c, _)| c.as_ptr() == Arc::as_ptr(settings));
        let idles = match position {
            Some(i) => &mut idle[i].1,
            None => {
                // A client new to this thread: first forget the lists of clients that are gone.
                idle.retain(|(c, _)| c.strong_count() > 0);
                idle.push((Arc::downgrade(settings), Idles::new()));
                &mut idle.last_mut().expect("just pushed").1
            }
        };
        // The key is copied only for an authority new to the list, not per request.
        let list = match idles.get_mut(authority) {
            Some(list) => list,
            None => idles.entry(authority.into()).or_default(),
        };
        if list.len() < settings.max_idle {
            list.push(Idle {
                upstream,
                since: Instant::now(),
            });
        }
    });
}

/// Dials `uri`'s authority and runs the HTTP/1.1 connection (with upgrades) as a task.
async fn connect(settings: &Settings, uri: Uri) -> Result<http1::SendRequest<Body>, Error> {
    let mut connector = settings.connector.clone();
    let stream = connector
        .ready()
        .await
        .map_err(Error::connect)?
        .call(uri)
        .await
        .map_err(Error::connect)?;
    let (sender, connection) = http1::handshake(stream)
        .await
        .map_err(|e| Error::connect(e.into()))?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(error = %crate::error::Chain(&error), "http client: upstream connection failed");
        }
    });
    Ok(sender)
}
