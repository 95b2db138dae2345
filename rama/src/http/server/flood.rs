//! HTTP/2 floods of frames that ask for nothing: `PRIORITY`, `SETTINGS`, `PING`, tiny
//! `WINDOW_UPDATE`s, sent as fast as a client can write them. The `h2` crate answers or
//! ignores each one (a `PRIORITY` flood kept a core busy: 5 s of CPU in 6 s for one
//! connection), and bounds none of them. nginx's measure, taken here: over the connection's
//! life, the bytes read may be at most eight times what its requests carry (header blocks and
//! bodies), plus 1 MiB; past that the connection is closed.
//!
//! [`Scan`] reads the frame headers out of the bytes as they come (no I/O; a frame may span
//! reads), so the check costs a few instructions per frame and no copy.

/// Bytes read beyond eight times the content that are let pass (nginx's figure).
const SLACK: u64 = 1024 * 1024;

/// A `WINDOW_UPDATE` granting this much or more is a client taking data, not a flood.
const REAL_WINDOW_UPDATE: u32 = 1024;

const PREFACE_LEN: usize = 24;
const HEADER_LEN: usize = 9;

// Frame types (RFC 9113 6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

/// The byte counts of an HTTP/2 connection's incoming side.
#[derive(Debug)]
pub(super) struct Scan {
    /// Bytes of the preface still to pass over.
    preface: usize,
    /// The frame header being read, and how much of it has come.
    header: [u8; HEADER_LEN],
    have: usize,
    /// What is left of the current frame's payload, and whether it is content.
    left: usize,
    content: bool,
    /// For a `WINDOW_UPDATE`: the increment as its bytes come, and how many came.
    increment: Option<(u32, u8)>,
    total: u64,
    payload: u64,
}

impl Scan {
    pub(super) fn new() -> Self {
        Self {
            preface: PREFACE_LEN,
            header: [0; HEADER_LEN],
            have: 0,
            left: 0,
            content: false,
            increment: None,
            total: 0,
            payload: 0,
        }
    }

    /// Takes in the next bytes read; whether the connection is now a flood.
    pub(super) fn read(&mut self, mut bytes: &[u8]) -> bool {
        self.total += bytes.len() as u64;
        let preface = self.preface.min(bytes.len());
        self.preface -= preface;
        bytes = &bytes[preface..];
        while !bytes.is_empty() {
            if self.left > 0 {
                let n = self.left.min(bytes.len());
                if self.content {
                    self.payload += n as u64;
                }
                if let Some((increment, have)) = self.increment.as_mut() {
                    for &byte in bytes[..n].iter().take(usize::from(4 - *have)) {
                        *increment = *increment << 8 | u32::from(byte);
                        *have += 1;
                    }
                    if *have == 4 {
                        if *increment & 0x7fff_ffff >= REAL_WINDOW_UPDATE {
                            self.payload += (HEADER_LEN + 4) as u64;
                        }
                        self.increment = None;
                    }
                }
                self.left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEADER_LEN - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < HEADER_LEN {
                break;
            }
            self.have = 0;
            let [a, b, c, kind, ..] = self.header;
            self.left = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
            self.content = matches!(kind, DATA | HEADERS | CONTINUATION);
            // A `WINDOW_UPDATE` counts once its increment is read (its four bytes).
            self.increment = (kind == WINDOW_UPDATE && self.left == 4).then_some((0, 0));
            if self.content {
                self.payload += HEADER_LEN as u64;
            }
        }
        self.total / 8 > self.payload + SLACK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut bytes = vec![len[1], len[2], len[3], kind, 0, 0, 0, 0, 1];
        bytes.extend_from_slice(payload);
        bytes
    }

    /// Feeds `bytes` in reads of `chunk` bytes; whether a flood was seen.
    fn flood(bytes: &[u8], chunk: usize) -> bool {
        let mut scan = Scan::new();
        bytes.chunks(chunk).any(|read| scan.read(read))
    }

    fn connection(frames: impl Iterator<Item = Vec<u8>>) -> Vec<u8> {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frames.flatten());
        bytes
    }

    #[test]
    fn requests_bodies_and_window_updates_that_take_data_are_no_flood() {
        // 200,000 small requests, their bodies, and the window updates of a long download.
        let bytes = connection((0..200_000).flat_map(|_| {
            [
                frame(HEADERS, &[0x82; 20]),
                frame(DATA, b"hello"),
                frame(WINDOW_UPDATE, &32_768u32.to_be_bytes()),
                frame(2, &[0; 5]),
            ]
        }));
        for chunk in [1, 7, 1000, 16_384] {
            assert!(!flood(&bytes, chunk), "read {chunk} at a time");
        }
    }

    #[test]
    fn frames_that_ask_for_nothing_are_a_flood_past_eight_times_the_content_and_the_slack() {
        for (kind, payload) in [
            (2u8, vec![0; 5]),               // PRIORITY
            (6, vec![0; 8]),                 // PING
            (4, vec![0, 4, 0, 0, 255, 255]), // SETTINGS
            (WINDOW_UPDATE, 1u32.to_be_bytes().to_vec()),
        ] {
            let each = HEADER_LEN + payload.len();
            let threshold = (SLACK as usize * 8) / each;
            let bytes = connection((0..threshold * 11 / 10).map(|_| frame(kind, &payload)));
            for chunk in [4096, 1000, 3] {
                assert!(flood(&bytes, chunk), "kind {kind}, read {chunk} at a time");
            }
            let fewer = connection((0..threshold * 9 / 10).map(|_| frame(kind, &payload)));
            assert!(!flood(&fewer, 4096), "kind {kind}, fewer");
        }
    }
}
