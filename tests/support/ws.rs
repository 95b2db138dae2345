//! A raw WebSocket client: frames written as told, valid or not, and read back without a
//! WebSocket library, for tests that send what a polite client never would (unmasked or
//! reserved-opcode frames, oversized messages), that count control frames, and for the load
//! generator of `bench/ws.sh`. Every wait is bounded by [`PATIENCE`].

use crate::PATIENCE;
use std::net::SocketAddr;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
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

/// A WebSocket client over a plain TCP stream.
#[derive(Debug)]
pub struct RawWs {
    stream: TcpStream,
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
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!(
            "GET /raw HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
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
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        Self { stream }
    }

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
