//! A raw WebSocket client: frames written as told, valid or not, and read back without a
//! WebSocket library, for tests that send what a polite client never would (unmasked or
//! reserved-opcode frames, oversized messages), that count control frames, and for the load
//! generator of `bench/ws.sh`. Every wait is bounded by [`PATIENCE`].

use crate::PATIENCE;
use bytes::Bytes;
use http_body_util::Empty;
use hyper::{client::conn::http2::SendRequest, upgrade::Upgraded};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};

/// The text opcode.
pub const TEXT: u8 = 0x1;
/// The close opcode.
pub const CLOSE: u8 = 0x8;
/// The ping opcode.
pub const PING: u8 = 0x9;
/// The pong opcode.
pub const PONG: u8 = 0xA;
/// The FIN bit of a frame's first byte.
pub const FIN: u8 = 0x80;

/// The mask of every masked frame (the server must unmask whatever it is).
const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

/// A WebSocket client over a plain TCP stream, or an HTTP/2 stream ([`RawWs::h2`]).
#[derive(Debug)]
pub struct RawWs<S = TcpStream> {
    stream: S,
}

/// One frame: `first` is the FIN/RSV/opcode byte; `masked` as a client's frames must be.
pub fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut frame = vec![first];
    match payload.len() {
        len @ 0..=125 => frame.push(mask_bit | len as u8),
        len @ 126..=0xFFFF => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    if masked {
        frame.extend_from_slice(&MASK);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    } else {
        frame.extend_from_slice(payload);
    }
    frame
}

impl RawWs {
    /// Connects and runs the opening handshake; panics unless the answer is `101`.
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::open(addr, "/raw", &addr.to_string(), &[]).await
    }

    /// Connects and runs the opening handshake with `headers` (`Name: value` lines) besides
    /// its own; panics unless the answer is `101`.
    pub async fn connect_with(addr: SocketAddr, headers: &[&str]) -> Self {
        Self::open(addr, "/raw", &addr.to_string(), headers).await
    }

    /// Connects to the HTTP forward proxy at `proxy` and runs the opening handshake with
    /// `origin` through it, the upgrade request in absolute-form (`GET http://ORIGIN/raw`);
    /// panics unless the answer is `101`.
    pub async fn through_proxy(proxy: SocketAddr, origin: SocketAddr) -> Self {
        Self::open(
            proxy,
            &format!("http://{origin}/raw"),
            &origin.to_string(),
            &[],
        )
        .await
    }

    /// Connects to `addr` and runs the opening handshake for `target` with `Host: host` and
    /// `extra` header lines; panics unless the answer is `101`.
    async fn open(addr: SocketAddr, target: &str, host: &str, extra: &[&str]) -> Self {
        let (stream, head) = upgrade(addr, target, host, extra).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        Self { stream }
    }
}

/// The opening handshake's request for `target` with `Host: host` and `extra` header lines.
pub fn upgrade_request(target: &str, host: &str, extra: &[&str]) -> String {
    let extra: String = extra.iter().map(|line| format!("{line}\r\n")).collect();
    format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Connects to `addr` and sends the upgrade request for `target` with `Host: host` and `extra`
/// header lines ([`upgrade_request`]); returns the connection and the answer's head, whatever
/// its status (nothing after the head is read).
pub async fn upgrade(
    addr: SocketAddr,
    target: &str,
    host: &str,
    extra: &[&str],
) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = upgrade_request(target, host, extra);
    stream.write_all(request.as_bytes()).await.unwrap();
    // Byte by byte, so that nothing after the head is consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 8192, "response head too long");
        let byte = timeout(PATIENCE, stream.read_u8())
            .await
            .expect("no handshake answer")
            .expect("read the handshake answer");
        head.push(byte);
    }
    (stream, String::from_utf8_lossy(&head).into_owned())
}

impl RawWs<TokioIo<Upgraded>> {
    /// Opens a WebSocket on a stream of `send`'s HTTP/2 connection (RFC 8441): an extended
    /// `CONNECT` with `:protocol websocket` to `url` (`http://` or `https://`, as the
    /// connection is); panics unless the answer is `200`. A `GET` of `url` goes first, answered
    /// as the server likes: hyper's client sends an extended `CONNECT` only once the server's
    /// settings, which must offer it, are in.
    pub async fn h2(send: &mut SendRequest<Empty<Bytes>>, url: &str) -> Self {
        let get = http::Request::get(url).body(Empty::new()).unwrap();
        timeout(PATIENCE, send.send_request(get))
            .await
            .expect("an answer to the GET in time")
            .expect("an answer to the GET");
        let mut request = http::Request::connect(url)
            .version(http::Version::HTTP_2)
            .header("sec-websocket-version", "13")
            .body(Empty::new())
            .unwrap();
        request
            .extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        let response = timeout(PATIENCE, send.send_request(request))
            .await
            .expect("an answer to the extended CONNECT in time")
            .expect("an answer to the extended CONNECT");
        assert_eq!(response.status(), 200, "{response:?}");
        let upgraded = timeout(PATIENCE, hyper::upgrade::on(response))
            .await
            .expect("the stream in time")
            .expect("the stream");
        Self {
            stream: TokioIo::new(upgraded),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawWs<S> {
    /// Sends one frame: `first` is the FIN/RSV/opcode byte. A write error is ignored: the
    /// server may close before it has read everything (an oversized message, say), and what it
    /// answered is still there to read.
    pub async fn send(&mut self, first: u8, payload: &[u8], masked: bool) {
        self.send_raw(&frame(first, payload, masked)).await;
    }

    /// Sends bytes as they are (frames built with [`frame`], say).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// The next frame from the server (never masked): its opcode and payload.
    pub async fn recv(&mut self) -> (u8, Vec<u8>) {
        timeout(PATIENCE, async {
            let first = self.stream.read_u8().await?;
            let len = match self.stream.read_u8().await? & 0x7F {
                126 => u64::from(self.stream.read_u16().await?),
                127 => self.stream.read_u64().await?,
                len => u64::from(len),
            };
            let mut payload = vec![0; usize::try_from(len).unwrap()];
            self.stream.read_exact(&mut payload).await?;
            std::io::Result::Ok((first & 0x0F, payload))
        })
        .await
        .expect("no frame from the server")
        .expect("read a frame")
    }

    /// Waits (bounded) until the server closes the connection; panics if it sends anything
    /// first.
    pub async fn closed(&mut self) {
        let mut byte = [0; 1];
        let read = timeout(PATIENCE, self.stream.read(&mut byte))
            .await
            .expect("the server never closed the connection")
            .expect("read to the end");
        assert_eq!(read, 0, "more from the server: {byte:?}");
    }

    /// Reads until the server's close frame and returns its code.
    pub async fn close_code(&mut self) -> u16 {
        for _ in 0..100 {
            let (opcode, payload) = self.recv().await;
            if opcode == CLOSE {
                assert!(payload.len() >= 2, "close without a code");
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
        panic!("no close frame in 100 frames");
    }

    /// Sends a text message and returns the text that comes back.
    pub async fn echo(&mut self, text: &str) -> String {
        self.send(FIN | TEXT, text.as_bytes(), true).await;
        let (opcode, payload) = self.recv().await;
        assert_eq!(opcode, TEXT);
        String::from_utf8(payload).unwrap()
    }
}

/// A WebSocket echo origin in Python's `websockets`: prints `listening on ADDR` when ready
/// (see [`PythonServer`](crate::python::PythonServer)), then for each session the path it was
/// asked for and, when it ends, the close code and reason it received. `--cert FILE --key
/// FILE` serve `wss://`; `--headers` makes it require and select the `superchat` subprotocol
/// and print, after the path, the handshake headers a relay must pass on or drop (`cookie`,
/// `authorization`, `extensions`) and the subprotocol. `--page` also serves, at `/`, a page
/// whose script sends `hello from the page` on a WebSocket to `/ws` of the same origin, shows
/// what comes back as `got:TEXT` (`error` if the WebSocket failed) and closes with 4003; the
/// page's image (`/hold`) is answered once a session closed (10 s at most), so that its load
/// event, which a headless browser's `--dump-dom` waits for, comes after the echo.
pub const ECHO_ORIGIN: &str = r#"
import argparse, asyncio, ssl
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

options = argparse.ArgumentParser()
options.add_argument("--cert")
options.add_argument("--key")
options.add_argument("--headers", action="store_true")
options.add_argument("--page", action="store_true")
options = options.parse_args()

PAGE = b'''<!doctype html><p id="out">waiting</p><script>
const ws = new WebSocket((location.protocol == "https:" ? "wss://" : "ws://") + location.host + "/ws");
const out = document.getElementById("out");
ws.onopen = () => ws.send("hello from the page");
ws.onmessage = (event) => { out.textContent = "got:" + event.data; ws.close(4003, "page done"); };
ws.onerror = () => { out.textContent = "error"; };
</script><img src="/hold">'''

closed = asyncio.Event()

async def page(connection, request):
    if not options.page or request.path not in ("/", "/hold"):
        return None
    body = PAGE
    if request.path == "/hold":
        try:
            await asyncio.wait_for(closed.wait(), 10)
        except asyncio.TimeoutError:
            pass
        body = b""
    headers = Headers([("Content-Type", "text/html"), ("Content-Length", str(len(body)))])
    return Response(200, "OK", headers, body)

async def echo(ws):
    print("path", ws.request.path, flush=True)
    if options.headers:
        h = ws.request.headers
        print("cookie", h.get("Cookie"), flush=True)
        print("authorization", h.get("Authorization"), flush=True)
        print("extensions", h.get("Sec-WebSocket-Extensions"), flush=True)
        print("subprotocol", ws.subprotocol, flush=True)
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass  # a close code other than 1000 or 1001; printed below
    print("closed", ws.close_code, ws.close_reason, flush=True)
    closed.set()

async def main():
    tls = None
    if options.cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(options.cert, options.key)
    subprotocols = ["superchat"] if options.headers else None
    async with serve(echo, "127.0.0.1", 0, max_size=None, subprotocols=subprotocols,
                     ssl=tls, process_request=page) as server:
        host, port = server.sockets[0].getsockname()[:2]
        print(f"listening on {host}:{port}", flush=True)
        await asyncio.get_running_loop().create_future()

asyncio.run(main())
"#;

/// A WebSocket client session in Python's `websockets` against `URL`: a text message, a 1 MiB
/// binary one (checksummed), a ping, then a close with code 4001 and a reason; prints a line
/// for each. `--proxy URL` goes through an HTTP proxy, `--ca FILE` trusts only that CA for
/// `wss://`, and `--server-close` adds a second session that asks the echo server (`ws_echo`'s
/// `/close CODE REASON`) to close with 4002.
pub const SESSION_CLIENT: &str = r#"
import argparse, asyncio, hashlib, ssl
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

options = argparse.ArgumentParser()
options.add_argument("url")
options.add_argument("--proxy")
options.add_argument("--ca")
options.add_argument("--server-close", action="store_true")
options = options.parse_args()

async def main():
    settings = {"max_size": None}
    if options.proxy:
        settings["proxy"] = options.proxy
    if options.ca:
        settings["ssl"] = ssl.create_default_context(cafile=options.ca)
    ws = await connect(options.url, **settings)
    await ws.send("hello \u2713")
    print("text", repr(await ws.recv()), flush=True)
    data = bytes(range(256)) * 4096
    await ws.send(data)
    got = await ws.recv()
    print("binary", isinstance(got, bytes), len(got),
          hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), flush=True)
    pong = await ws.ping(b"are you there")
    await asyncio.wait_for(pong, 10)
    print("pong", flush=True)
    await ws.close(4001, "done here")
    print("close", ws.close_code, ws.close_reason, flush=True)

    if options.server_close:
        ws = await connect(options.url, **settings)
        await ws.send("/close 4002 bye now")
        try:
            await ws.recv()
        except ConnectionClosed:
            pass
        print("closed by server", ws.close_code, ws.close_reason, flush=True)

asyncio.run(asyncio.wait_for(main(), 20))
"#;
