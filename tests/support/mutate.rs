//! Mutations of well-formed protocol bytes, for the fuzzing tests: rama's unit tests that
//! hold its own HTTP/1.1 parsing against hyper's (`rama/src/http/h1/differential.rs`, which
//! includes this file by path, as `rama::mutate`) and the end-to-end ones that throw mutated
//! traffic at a running proxy (`tests/proxy.rs`); the generator makes the tests' payloads
//! too. No dependencies, so that both crates can compile it.

/// A xorshift generator: the cases are the same on every run.
pub struct Rng(pub u64);

impl Rng {
    /// The generator of case (or payload) `seed`: seeds next to each other start far apart.
    pub fn seeded(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// One of `seeds` with one or two mutations (more leave little that parses), which put in
/// `pieces` among other things.
pub fn mutated(rng: &mut Rng, seeds: &[&[u8]], pieces: &[&[u8]]) -> Vec<u8> {
    let mut bytes = seeds[rng.below(seeds.len())].to_vec();
    for _ in 0..=rng.below(2) {
        mutate(rng, &mut bytes, pieces);
    }
    bytes
}

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, pieces: &[&[u8]]) {
    let at = rng.below(bytes.len() + 1);
    match rng.below(7) {
        // A byte replaced, by a piece's first byte or by any byte.
        0 if at < bytes.len() => {
            bytes[at] = match rng.below(2) {
                0 => pieces[rng.below(pieces.len())][0],
                _ => rng.next_u64() as u8,
            };
        }
        // A piece put in.
        1 | 2 => {
            let piece = pieces[rng.below(pieces.len())];
            bytes.splice(at..at, piece.iter().copied());
        }
        // One to three bytes dropped.
        3 if at < bytes.len() => {
            let end = (at + 1 + rng.below(3)).min(bytes.len());
            bytes.drain(at..end);
        }
        // A line doubled.
        4 => {
            let start = bytes[..at]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let end = bytes[at..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |i| at + i + 1);
            let line = bytes[start..end].to_vec();
            bytes.splice(start..start, line);
        }
        // A CRLF made a bare LF.
        5 => {
            let crlfs: Vec<usize> = (1..bytes.len())
                .filter(|&i| bytes[i - 1..=i] == *b"\r\n")
                .collect();
            if !crlfs.is_empty() {
                bytes.remove(crlfs[rng.below(crlfs.len())] - 1);
            }
        }
        // The input cut short.
        _ => bytes.truncate(at),
    }
}
