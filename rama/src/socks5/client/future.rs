//! Futures of [`Client`](super::Client).

use crate::{
    Address,
    socks5::{
        error::ClientError,
        proto::{
            AuthRequest,
            client::{Machine, Next},
        },
    },
    tcp,
};
use pin_project_lite::pin_project;
use std::{
    fmt,
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::Sleep,
};

/// The longest answer: a reply with a 255-byte name.
const MAX_ANSWER: usize = 4 + 1 + 255 + 2;

pin_project! {
    /// Dials the proxy and runs the client handshake; resolves with the stream and the
    /// address the proxy reported as bound.
    pub struct Connect {
        #[pin]
        deadline: Sleep,
        #[pin]
        dial: Option<tcp::Connect>,
        stream: Option<TcpStream>,
        machine: Option<Machine>,
        out: Vec<u8>,
        written: usize,
        answer: [u8; MAX_ANSWER],
        filled: usize,
        failed: Option<ClientError>,
    }
}

impl Connect {
    pub(super) fn new(
        proxy: &Address,
        destination: &Address,
        credentials: Option<AuthRequest>,
        timeout: Duration,
    ) -> Self {
        let (machine, out, failed) = match Machine::new(destination, credentials) {
            Ok((machine, greeting)) => (Some(machine), greeting, None),
            Err(failure) => (None, Vec::new(), Some(ClientError::handshake(failure))),
        };
        Self {
            deadline: tokio::time::sleep(timeout),
            dial: Some(tcp::connect(proxy, timeout)),
            stream: None,
            machine,
            out,
            written: 0,
            answer: [0; MAX_ANSWER],
            filled: 0,
            failed,
        }
    }
}

impl Future for Connect {
    type Output = Result<(TcpStream, Address), ClientError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(error) = this.failed.take() {
            return Poll::Ready(Err(error));
        }
        if let Some(dial) = this.dial.as_mut().as_pin_mut() {
            let stream = ready!(dial.poll(cx)).map_err(ClientError::dial)?;
            this.dial.set(None);
            *this.stream = Some(stream);
        }
        match poll_handshake(
            cx,
            this.stream.as_mut().expect("dialed"),
            this.machine.as_mut().expect("a machine"),
            this.out,
            this.written,
            this.answer,
            this.filled,
        ) {
            Poll::Ready(Ok(bound)) => Poll::Ready(Ok((this.stream.take().expect("dialed"), bound))),
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                ready!(this.deadline.poll(cx));
                Poll::Ready(Err(ClientError::timeout()))
            }
        }
    }
}

/// Writes what is queued, reads the answer the machine expects (never more), feeds it.
fn poll_handshake(
    cx: &mut Context<'_>,
    stream: &mut TcpStream,
    machine: &mut Machine,
    out: &mut Vec<u8>,
    written: &mut usize,
    answer: &mut [u8; MAX_ANSWER],
    filled: &mut usize,
) -> Poll<Result<Address, ClientError>> {
    loop {
        while *written < out.len() {
            let n = ready!(Pin::new(&mut *stream).poll_write(cx, &out[*written..]))
                .map_err(ClientError::io)?;
            if n == 0 {
                return Poll::Ready(Err(ClientError::io(io::ErrorKind::WriteZero.into())));
            }
            *written += n;
        }
        let wanted = machine.wants(&answer[..*filled]).min(MAX_ANSWER);
        if *filled < wanted {
            let mut read = ReadBuf::new(&mut answer[*filled..wanted]);
            ready!(Pin::new(&mut *stream).poll_read(cx, &mut read)).map_err(ClientError::io)?;
            let n = read.filled().len();
            if n == 0 {
                return Poll::Ready(Err(ClientError::io(io::ErrorKind::UnexpectedEof.into())));
            }
            *filled += n;
            continue;
        }
        // The reply's full length is known only after its first five bytes.
        if machine.wants(&answer[..*filled]) > *filled {
            continue;
        }
        let next = machine
            .on_message(&answer[..*filled])
            .map_err(ClientError::handshake)?;
        *filled = 0;
        match next {
            Next::Send(bytes) => {
                *out = bytes;
                *written = 0;
            }
            Next::Done(bound) => return Poll::Ready(Ok(bound)),
        }
    }
}

impl fmt::Debug for Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect").finish_non_exhaustive()
    }
}

/// The future of a tunnel through [`Client`](super::Client): opens it through the upstream
/// proxy, answers the client, then relays.
pub type TunnelFuture<H> = crate::tunnel::Open<H, Dial, ClientError>;

/// The client's dial for a tunnel: the upstream proxy's stream, its bound address dropped.
pub type Dial = futures_util::future::MapOk<Connect, fn((TcpStream, Address)) -> TcpStream>;

impl crate::tunnel::OpenError for ClientError {
    fn refusal(&self) -> crate::tunnel::Refusal {
        ClientError::refusal(self)
    }

    fn answer(error: io::Error) -> Self {
        ClientError::answer(error)
    }

    fn relay(_upstream: Address, error: io::Error) -> Self {
        ClientError::relay(error)
    }
}
