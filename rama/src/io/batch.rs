//! Writes held to the end of the server's pass over its ready connections, then made in one
//! burst.
//!
//! Why: a proxy that shares its cores with its peers (the load generator, the origin) wakes a
//! peer with every write. Written the moment each is ready, one answer at a time between the
//! reads of the next requests, every write finds its peer asleep and pays a wake-up, and the
//! peer pays a sleep and a wake-up per message. haproxy reads all that one `epoll_wait` gave it
//! before it writes anything, and its peers find several messages per wake-up (wrk and the
//! origin of `bench/http.sh` slept 0.4 times per request behind haproxy, 0.7 times behind
//! rama before this; `bench/README.md`, stop 12).
//!
//! A local [`Serve`](crate::tcp::Serve) polls its ready connections inside a [`Pass`]. A
//! [`Stream`] written during a pass keeps the bytes (up to [`HOLD`]; a bulk write with nothing
//! held goes at once) and puts itself on this thread's list; when the pass ends the list is
//! written out, each stream in one `send`.
//! Outside a pass (a spawned connection, a client on its own) a [`Stream`] writes at once.
//!
//! What a pass could not write whole (a peer that does not read) is the stream's own again: the
//! socket wakes the stream's writer when it has room, and the stream's next read, write, flush
//! or shutdown writes it first; until then writes wait, as on a full socket. A stream dropped
//! with bytes held is closed once the pass wrote them, or, when its socket had no room for
//! them, with them: a peer that does not read keeps nothing alive.

use crate::{
    io::Rewind,
    tcp::{self, Activity},
};
use std::{
    any::Any,
    cell::RefCell,
    io,
    net::Shutdown,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
};

/// The most a stream holds for the end of a pass; a write that would go past it sends what is
/// held at once, then itself.
const HOLD: usize = 64 * 1024;

/// A write this long, with nothing held before it, is not held: batching is for messages, and
/// a bulk body gains nothing by a copy.
const BULK: usize = 16 * 1024;

thread_local! {
    static LIST: RefCell<List> = const { RefCell::new(List { open: false, held: Vec::new() }) };
}

/// This thread's streams with bytes held in the open pass.
struct List {
    /// Whether a pass is open: writes are held only inside one.
    open: bool,
    held: Vec<Arc<Shared>>,
}

/// A server's pass over its ready connections; see the [module](self). It ends when dropped
/// (a panic in the pass included).
pub(crate) struct Pass(());

impl Pass {
    /// Opens a pass on this thread.
    pub(crate) fn open() -> Self {
        LIST.with(|list| list.borrow_mut().open = true);
        Self(())
    }

    /// Ends the pass: writes what the streams hold.
    pub(crate) fn finish(self) {
        drop(self);
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut held = LIST.with(|list| {
            let mut list = list.borrow_mut();
            list.open = false;
            std::mem::take(&mut list.held)
        });
        // Written apart from the list: no borrow of it is held over the socket calls and the
        // drops of streams whose owners are gone.
        for shared in held.drain(..) {
            shared.write_held();
        }
        // The emptied vector goes back, to keep its room for the next pass.
        LIST.with(|list| {
            let mut list = list.borrow_mut();
            if list.held.is_empty() {
                list.held = held;
            }
        });
    }
}

/// A server's stream, batched where it can be: see [`batched`].
pub(crate) enum Batched<IO> {
    /// An accepted [`tcp::Stream`].
    Plain(Stream),
    /// An accepted [`tcp::Stream`] behind the bytes a detector peeked.
    Rewound(Rewind<Stream>),
    /// Anything else (a TLS stream, say), as it was.
    Other(IO),
}

/// `io` batched when it is an accepted [`tcp::Stream`] (a server's plain connection), bare or
/// behind a [`Rewind`] (a branch of `detect`).
pub(crate) fn batched<IO: 'static>(io: IO) -> Batched<IO> {
    let io = match downcast::<tcp::Stream, _>(io) {
        Ok(accepted) => return Batched::Plain(Stream::accepted(accepted)),
        Err(io) => io,
    };
    match downcast::<Rewind<tcp::Stream>, _>(io) {
        Ok(rewound) => {
            let (prefix, accepted) = rewound.into_parts();
            Batched::Rewound(Rewind::new(prefix, Stream::accepted(accepted)))
        }
        Err(io) => Batched::Other(io),
    }
}

/// `io` as a `T`, when that is its type.
fn downcast<T: 'static, IO: 'static>(io: IO) -> Result<T, IO> {
    let mut io = Some(io);
    match (&mut io as &mut dyn Any)
        .downcast_mut::<Option<T>>()
        .and_then(Option::take)
    {
        Some(t) => Ok(t),
        None => Err(io.expect("only a matching type is taken out")),
    }
}

/// A TCP stream whose writes inside a [`Pass`] are held to its end.
#[derive(Debug)]
pub(crate) struct Stream {
    read: OwnedReadHalf,
    shared: Arc<Shared>,
    /// The idle clock of an accepted stream (see [`tcp::Stream`]).
    activity: Option<Arc<Activity>>,
}

#[derive(Debug)]
struct Shared {
    write: OwnedWriteHalf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The bytes held: for the end of the pass when `listed`, else what a pass could not write.
    out: Vec<u8>,
    /// On this thread's list: `out` is written at the end of the pass.
    listed: bool,
    /// Why a write at the end of a pass failed, for the writer's next call.
    error: Option<io::Error>,
    /// The task that wrote last: woken when the socket has room for what a pass left.
    writer: Option<Waker>,
}

impl Stream {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self::with_activity(stream, None)
    }

    fn with_activity(stream: TcpStream, activity: Option<Arc<Activity>>) -> Self {
        let (read, write) = stream.into_split();
        Self {
            read,
            shared: Arc::new(Shared {
                write,
                state: Mutex::new(State::default()),
            }),
            activity,
        }
    }

    /// A server's accepted stream, batched.
    fn accepted(accepted: tcp::Stream) -> Self {
        let (stream, activity) = accepted.into_parts();
        Self::with_activity(stream, activity)
    }

    /// The socket, for what needs no `&mut` (addresses, readiness).
    pub(crate) fn get_ref(&self) -> &TcpStream {
        self.read.as_ref()
    }

    /// The two directions apart, to read and write at once.
    pub(crate) fn split(&mut self) -> (&mut OwnedReadHalf, WriteHalf<'_>) {
        (&mut self.read, WriteHalf(&self.shared))
    }
}

/// The writing side of a [`Stream`], from [`Stream::split`].
#[derive(Debug)]
pub(crate) struct WriteHalf<'a>(&'a Arc<Shared>);

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock left plain bytes and flags behind, nothing half-made.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Holds `buf` for the end of the open pass; `None` to write it at once instead.
    fn hold(self: &Arc<Self>, state: &mut State, cx: &Context<'_>, buf: &[u8]) -> Option<usize> {
        if !state.listed {
            if buf.len() >= BULK {
                return None;
            }
            let listed = LIST.with(|list| {
                let mut list = list.borrow_mut();
                if list.open {
                    list.held.push(self.clone());
                }
                list.open
            });
            if !listed {
                return None;
            }
            state.listed = true;
        }
        if state.out.len() + buf.len() > HOLD {
            return None;
        }
        if !state
            .writer
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.writer = Some(cx.waker().clone());
        }
        state.out.extend_from_slice(buf);
        Some(buf.len())
    }

    fn poll_write(self: &Arc<Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut state = self.state();
        std::task::ready!(self.poll_out(&mut state, cx))?;
        if let Some(n) = self.hold(&mut state, cx, buf) {
            return Poll::Ready(Ok(n));
        }
        // Too much to hold: what the pass holds goes first, then `buf`, at once.
        std::task::ready!(self.poll_write_out(&mut state, cx))?;
        drop(state);
        let socket = self.write.as_ref();
        loop {
            std::task::ready!(socket.poll_write_ready(cx))?;
            match socket.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                written => return Poll::Ready(written),
            }
        }
    }

    /// Ready once nothing is left from a pass: the error of its write, or the bytes it could
    /// not write (written now, or the socket wakes `cx` when it has room).
    fn poll_out(&self, state: &mut State, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(error) = state.error.take() {
            return Poll::Ready(Err(error));
        }
        if state.listed {
            return Poll::Ready(Ok(()));
        }
        self.poll_write_out(state, cx)
    }

    /// Writes `out` whole, or the socket wakes `cx` when it has room.
    fn poll_write_out(&self, state: &mut State, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let socket = self.write.as_ref();
        let mut written = 0;
        let result = loop {
            if written == state.out.len() {
                break Poll::Ready(Ok(()));
            }
            match socket.try_write(&state.out[written..]) {
                Ok(0) => break Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match socket.poll_write_ready(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(error)) => break Poll::Ready(Err(error)),
                        Poll::Pending => break Poll::Pending,
                    }
                }
                Err(error) => break Poll::Ready(Err(error)),
            }
        };
        state.out.drain(..written);
        if result.is_ready() {
            state.out.clear();
            state.listed = false;
            // Room for one bulk write's worth stays; what a stalled peer made grow does not.
            if state.out.capacity() > BULK {
                state.out = Vec::new();
            }
        }
        result
    }

    /// The end of the pass for this stream: writes what it holds. What the socket has no room
    /// for stays, and the last writer is woken when there is.
    fn write_held(&self) {
        let mut state = self.state();
        state.listed = false;
        let writer = state.writer.take();
        let mut cx = Context::from_waker(writer.as_ref().unwrap_or(Waker::noop()));
        if let Poll::Ready(Err(error)) = self.poll_write_out(&mut state, &mut cx) {
            state.error = Some(error);
        }
        state.writer = writer;
    }

    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // What the pass holds is written before the thread waits for more events: as good as
        // flushed, as long as the socket takes it.
        self.poll_out(&mut self.state(), cx)
    }

    fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.state();
        if let Some(error) = state.error.take() {
            return Poll::Ready(Err(error));
        }
        // The end goes behind the held bytes: they go now, not at the end of the pass.
        std::task::ready!(self.poll_write_out(&mut state, cx))?;
        Poll::Ready(
            match socket2::SockRef::from(self.write.as_ref()).shutdown(Shutdown::Write) {
                // The peer reset the connection already: its sending side is shut as surely.
                // As an error it would take the place of the reason the connection ends for
                // (hyper's parse error behind its `400`, shutting down after it).
                Err(error) if error.kind() == io::ErrorKind::NotConnected => Ok(()),
                shut => shut,
            },
        )
    }

    /// Before a read: what a pass left goes first if the socket has room (else the socket
    /// wakes `cx` when it has; the read goes on either way).
    fn write_left(&self, cx: &mut Context<'_>) {
        let mut state = self.state();
        if !state.listed
            && !state.out.is_empty()
            && let Poll::Ready(Err(error)) = self.poll_write_out(&mut state, cx)
        {
            state.error = Some(error);
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.shared.write_left(cx);
        let Self { read, activity, .. } = &mut *self;
        tcp::note_read(activity.as_deref(), buf, |buf| {
            Pin::new(read).poll_read(cx, buf)
        })
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = self.shared.poll_write(cx, buf);
        tcp::note_write(self.activity.as_deref(), poll)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared.poll_shutdown(cx)
    }
}

impl AsyncWrite for WriteHalf<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{future::poll_fn, time::Duration};
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    /// A connected pair on loopback: the batched side and its peer.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ours, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (ours.unwrap(), accepted.unwrap().0)
    }

    fn write(stream: &mut Stream, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(stream).poll_write(cx, bytes)
    }

    /// Bytes with an order to check: byte `i` is `i % 251`.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// Checks that nothing came to `peer` yet: what was written is held until the pass ends.
    fn assert_nothing_came(peer: &TcpStream) {
        let mut byte = [0; 1];
        let early = peer.try_read(&mut byte).unwrap_err();
        assert_eq!(
            early.kind(),
            io::ErrorKind::WouldBlock,
            "held until the pass ends"
        );
    }

    /// Reads `peer` to its end, bounded in time.
    async fn read_to_end(peer: &mut TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), peer.read_to_end(&mut got))
            .await
            .expect("the peer saw the end in time")
            .expect("reading the peer");
        got
    }

    #[tokio::test]
    async fn writes_in_a_pass_go_out_together_at_its_end() {
        let (ours, mut peer) = pair().await;
        let mut stream = Stream::new(ours);
        poll_fn(|cx| {
            let pass = Pass::open();
            for piece in [&b"one "[..], b"two ", b"three"] {
                let written = write(&mut stream, cx, piece);
                assert!(matches!(written, Poll::Ready(Ok(n)) if n == piece.len()));
            }
            assert!(Pin::new(&mut stream).poll_flush(cx).is_ready());
            assert_nothing_came(&peer);
            pass.finish();
            Poll::Ready(())
        })
        .await;
        let mut got = [0; 64];
        let n = peer.read(&mut got).await.unwrap();
        assert_eq!(
            &got[..n],
            b"one two three",
            "one send at the end of the pass"
        );
    }

    #[tokio::test]
    async fn outside_a_pass_writes_go_at_once() {
        let (ours, mut peer) = pair().await;
        let mut stream = Stream::new(ours);
        stream.write_all(b"now").await.unwrap();
        let mut got = [0; 3];
        let read = tokio::time::timeout(Duration::from_secs(10), peer.read_exact(&mut got));
        read.await.expect("written without a pass").unwrap();
        assert_eq!(&got, b"now");
    }

    /// Drives `stream` as a local server would: each poll one pass, in which as much of
    /// `bytes` is written as is taken, in pieces small enough to be held; ready once all is
    /// written and the stream shut down. `stalled` is told when a pass could not write all
    /// it held.
    async fn serve_pattern(
        stream: &mut Stream,
        bytes: &[u8],
        stalled: &mut Option<tokio::sync::oneshot::Sender<()>>,
    ) {
        let mut written = 0;
        let serving = poll_fn(|cx| {
            let pass = Pass::open();
            while written < bytes.len() {
                let piece = &bytes[written..bytes.len().min(written + 4096)];
                match write(stream, cx, piece) {
                    Poll::Ready(Ok(n)) => written += n,
                    Poll::Ready(Err(error)) => panic!("writing: {error}"),
                    Poll::Pending => break,
                }
            }
            let done = if written == bytes.len() {
                Pin::new(&mut *stream).poll_shutdown(cx)
            } else {
                Poll::Pending
            };
            pass.finish();
            let left = stream.shared.state().out.len();
            if left > 0
                && let Some(tell) = stalled.take()
            {
                let _ = tell.send(());
            }
            done
        });
        tokio::time::timeout(Duration::from_secs(20), serving)
            .await
            .expect("written and shut down in time")
            .unwrap();
    }

    #[tokio::test]
    async fn a_stream_whose_peer_does_not_read_waits_and_keeps_the_order() {
        let (ours, mut peer) = pair().await;
        let mut stream = Stream::new(ours);
        // More than loopback's socket buffers take: the peer must read before it all goes.
        let bytes = pattern(16 * 1024 * 1024);
        let (tell, stalled) = tokio::sync::oneshot::channel();
        let reader = tokio::spawn(async move {
            stalled.await.expect("the writer stalled");
            read_to_end(&mut peer).await
        });
        serve_pattern(&mut stream, &bytes, &mut Some(tell)).await;
        let got = reader.await.unwrap();
        assert_eq!(got.len(), bytes.len());
        assert!(got == bytes, "the bytes came in order");
    }

    #[tokio::test]
    async fn a_dropped_stream_that_cannot_be_written_is_closed() {
        let (ours, mut peer) = pair().await;
        let mut stream = Stream::new(ours);
        let bytes = pattern(16 * 1024 * 1024);
        let (tell, stalled) = tokio::sync::oneshot::channel();
        let mut tell = Some(tell);
        let serving = async {
            tokio::select! {
                () = serve_pattern(&mut stream, &bytes, &mut tell) => panic!("written whole"),
                _ = stalled => {}
            }
        };
        serving.await;
        // Nothing else holds the stream: its socket closes with what the pass left.
        drop(stream);
        let got = read_to_end(&mut peer).await;
        assert!(got.len() < bytes.len(), "the held bytes were given up");
        assert!(got == bytes[..got.len()], "what came, came in order");
    }

    #[tokio::test]
    async fn a_shutdown_goes_behind_the_held_bytes() {
        let (ours, mut peer) = pair().await;
        let Batched::Plain(mut stream) = batched(tcp::Stream::new(ours, None)) else {
            panic!("a tcp::Stream is batched");
        };
        poll_fn(|cx| {
            let pass = Pass::open();
            assert!(write(&mut stream, cx, b"held, then the end").is_ready());
            assert!(Pin::new(&mut stream).poll_shutdown(cx).is_ready());
            pass.finish();
            Poll::Ready(())
        })
        .await;
        assert_eq!(read_to_end(&mut peer).await, b"held, then the end");
    }

    #[tokio::test]
    async fn what_a_pass_left_goes_out_while_its_stream_only_reads() {
        let (ours, mut peer) = pair().await;
        let mut stream = Stream::new(ours);
        // The socket full, straight through...
        let chunk = [7u8; 64 * 1024];
        let mut filled = 0;
        loop {
            match stream.get_ref().try_write(&chunk) {
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => panic!("filling the socket: {error}"),
            }
        }
        // ...then a pass that cannot write what it holds.
        poll_fn(|cx| {
            let pass = Pass::open();
            assert!(write(&mut stream, cx, b"tail").is_ready());
            pass.finish();
            Poll::Ready(())
        })
        .await;
        assert_eq!(stream.shared.state().out, b"tail", "left by the pass");
        let reader = tokio::spawn(async move {
            let mut got = vec![0; filled + 4];
            peer.read_exact(&mut got).await.unwrap();
            assert_eq!(&got[filled..], b"tail");
            peer.write_all(b"next").await.unwrap();
            peer
        });
        // The stream only reads now: the room its peer makes must get the tail out.
        let mut next = [0; 4];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut next));
        read.await.expect("the tail went out").unwrap();
        assert_eq!(&next, b"next");
        reader.await.unwrap();
    }

    #[tokio::test]
    async fn a_rewound_stream_is_batched_behind_its_prefix() {
        let (ours, mut peer) = pair().await;
        let rewound = Rewind::new(b"peeked ".to_vec(), tcp::Stream::new(ours, None));
        let Batched::Rewound(mut stream) = batched(rewound) else {
            panic!("a rewound tcp::Stream is batched");
        };
        peer.write_all(b"rest").await.unwrap();
        let mut got = [0; 11];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"peeked rest");
        poll_fn(|cx| {
            let pass = Pass::open();
            assert!(Pin::new(&mut stream).poll_write(cx, b"answer").is_ready());
            assert_nothing_came(&peer);
            pass.finish();
            Poll::Ready(())
        })
        .await;
        let mut answer = [0; 6];
        peer.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"answer");
    }

    #[test]
    fn other_streams_are_not_batched() {
        let (duplex, _other) = tokio::io::duplex(64);
        assert!(matches!(batched(duplex), Batched::Other(_)));
    }
}
