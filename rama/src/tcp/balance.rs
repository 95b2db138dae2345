//! Even connection counts across the servers of a [`PerCore`](super::PerCore) group.
//!
//! The kernel spreads connections over `SO_REUSEPORT` listeners by a hash of their addresses,
//! not by load: 64 connections from one client land 27/37 or 28/36 on two listeners as often
//! as 32/32. The thread holding 37 then serves a seventh more streams than its share, and its
//! clients' latency is the group's tail (the p99 of `bench/http.sh`'s h2c load moved with the
//! split, run to run). haproxy avoids this by handing each accepted connection to its least
//! loaded thread; so does a group member here, when it holds [`SLACK`] connections more than
//! the least loaded sibling. The common case, a balanced group, stays on the accepting thread
//! and costs two atomic loads per sibling.

use std::{
    io,
    net::{SocketAddr, TcpStream as StdStream},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};
use tokio::{net::TcpStream, sync::mpsc};

/// How many connections more than its least loaded sibling a server holds before it hands a
/// new one over. Two, not one: with a margin of one, a group serving a connection per request
/// would hand over every other connection as counts flicker between 0 and 1.
const SLACK: usize = 2;

/// A connection accepted by one member and handed to another.
type Handed = (StdStream, SocketAddr);

/// What the members of a group share: each one's load, and a way to hand it connections.
#[derive(Debug)]
pub(super) struct Group {
    loads: Box<[Load]>,
    inboxes: Box<[mpsc::UnboundedSender<Handed>]>,
}

/// One member's load, on a cache line of its own: its owner writes `open` at every accept
/// and every pass over its connections, and the other threads should not pay for that.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Load {
    /// The connections the member runs, as it last published them.
    open: AtomicUsize,
    /// Connections handed to the member and not yet taken from its inbox.
    incoming: AtomicUsize,
}

/// One server's place in a [`Group`].
#[derive(Debug)]
pub(super) struct Member {
    index: usize,
    group: Arc<Group>,
    inbox: mpsc::UnboundedReceiver<Handed>,
}

/// Published as the load of a member that has stopped, so that no sibling picks it.
const GONE: usize = usize::MAX / 2;

impl Group {
    /// The members of a new group of `size` servers, one for each.
    pub(super) fn members(size: usize) -> Vec<Member> {
        let (inboxes, receivers): (Vec<_>, Vec<_>) =
            (0..size).map(|_| mpsc::unbounded_channel()).unzip();
        let group = Arc::new(Self {
            loads: (0..size).map(|_| Load::default()).collect(),
            inboxes: inboxes.into(),
        });
        receivers
            .into_iter()
            .enumerate()
            .map(|(index, inbox)| Member {
                index,
                group: group.clone(),
                inbox,
            })
            .collect()
    }
}

impl Load {
    fn get(&self) -> usize {
        self.open
            .load(Ordering::Relaxed)
            .saturating_add(self.incoming.load(Ordering::Relaxed))
    }
}

impl Member {
    /// Publishes how many connections this member runs.
    pub(super) fn publish(&self, open: usize) {
        self.group.loads[self.index]
            .open
            .store(open, Ordering::Relaxed);
    }

    /// A connection a sibling handed over, registered with this thread's runtime.
    pub(super) fn poll_handed(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<(io::Result<TcpStream>, SocketAddr)> {
        match self.inbox.poll_recv(cx) {
            Poll::Ready(Some((stream, peer))) => {
                self.group.loads[self.index]
                    .incoming
                    .fetch_sub(1, Ordering::Relaxed);
                Poll::Ready((TcpStream::from_std(stream), peer))
            }
            // Every sender lives in the group this member holds: the inbox never closes.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }

    /// Hands `stream` to the least loaded sibling when this member, running `open`
    /// connections, holds [`SLACK`] more than it; gives the stream back to be served here
    /// otherwise.
    pub(super) fn hand_over(
        &self,
        open: usize,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Option<(TcpStream, SocketAddr)> {
        let loads = &self.group.loads;
        let mine = open.saturating_add(loads[self.index].incoming.load(Ordering::Relaxed));
        let siblings = (loads.iter().enumerate())
            .filter(|(index, _)| *index != self.index)
            .map(|(index, load)| (index, load.get()));
        let Some(sibling) = relieving(mine, siblings) else {
            return Some((stream, peer));
        };
        // Out of this thread's reactor, into the sibling's when it takes it.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%peer, %error, "cannot hand the connection over, dropped");
                return None;
            }
        };
        let target = &self.group.loads[sibling];
        target.incoming.fetch_add(1, Ordering::Relaxed);
        match self.group.inboxes[sibling].send((stream, peer)) {
            Ok(()) => {
                tracing::trace!(%peer, from = self.index, to = sibling, "connection handed over");
                None
            }
            // The sibling stopped between the look at its load and the send: serve it here.
            Err(mpsc::error::SendError((stream, peer))) => {
                target.incoming.fetch_sub(1, Ordering::Relaxed);
                match TcpStream::from_std(stream) {
                    Ok(stream) => Some((stream, peer)),
                    Err(error) => {
                        tracing::debug!(%peer, %error, "cannot take the connection back, dropped");
                        None
                    }
                }
            }
        }
    }
}

/// The sibling, of `(index, load)`, that should take a new connection from a member holding
/// `mine`: the least loaded, when it holds at least [`SLACK`] fewer.
fn relieving(mine: usize, siblings: impl Iterator<Item = (usize, usize)>) -> Option<usize> {
    let (sibling, load) = siblings.min_by_key(|(_, load)| *load)?;
    (mine >= load.saturating_add(SLACK)).then_some(sibling)
}

impl Drop for Member {
    fn drop(&mut self) {
        // The inbox closes with this member; siblings must not pick it from now on.
        self.publish(GONE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_loaded_sibling_takes_over_beyond_the_slack() {
        let loads = [(0, 31), (2, 29), (3, 30)];
        assert_eq!(relieving(31, loads.into_iter()), Some(2));
        assert_eq!(relieving(30, loads.into_iter()), None);
        assert_eq!(relieving(0, [(1, 0)].into_iter()), None);
        assert_eq!(relieving(1, [(1, 0)].into_iter()), None);
        assert_eq!(relieving(2, [(1, 0)].into_iter()), Some(1));
    }

    #[test]
    fn a_lone_server_and_stopped_siblings_take_nothing() {
        assert_eq!(relieving(100, std::iter::empty()), None);
        assert_eq!(relieving(1000, [(1, GONE)].into_iter()), None);
        assert_eq!(relieving(1000, [(1, GONE), (2, 5)].into_iter()), Some(2));
    }

    #[tokio::test]
    async fn a_member_publishes_its_load_and_leaves_as_gone() {
        let mut members = Group::members(2);
        let second = members.pop().unwrap();
        let first = members.pop().unwrap();
        first.publish(7);
        assert_eq!(second.group.loads[0].get(), 7);
        drop(first);
        assert_eq!(second.group.loads[0].get(), GONE);
    }
}
