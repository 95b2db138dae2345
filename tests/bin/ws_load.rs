//! Load generator for `bench/ws.sh`: WebSocket echo round trips over raw frames (no WebSocket
//! library on the client side, so the client costs little next to what it measures).
//!
//! ```text
//! ws-load --target ADDR [--conns 32] [--secs 5] [--size 128] [--window 8]
//! ws-load --target ADDR --hold N     # prints `ready` once N sessions echoed, holds until stdin closes
//! ```
//!
//! Each connection keeps `window` text messages of `size` bytes in flight and sends the next
//! one whenever an echo comes back. Prints `messages_per_sec`, and the median and 99th
//! percentile round trip in microseconds. With `--hold`, the sessions stay open and idle, for
//! measuring what an idle session costs the server.

use rama_e2e::{
    load::{Error, arg, num, runtime},
    ws::{FIN, RawWs, TEXT, frame},
};
use std::{
    collections::VecDeque,
    net::SocketAddr,
    time::{Duration, Instant},
};

fn main() -> Result<(), Error> {
    let target: SocketAddr = arg("--target")
        .ok_or("--target ADDR is required")?
        .parse()?;
    let conns = num("--conns", 32);
    let secs = num("--secs", 5);
    let size = usize::try_from(num("--size", 128))?;
    let window = num("--window", 8).max(1);
    let runtime = runtime()?;
    if let Some(sessions) = arg("--hold") {
        return runtime.block_on(hold(target, sessions.parse()?));
    }
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let message = frame(FIN | TEXT, &vec![b'x'; size], true);
        let sessions: Vec<_> = (0..conns)
            .map(|_| {
                let message = message.clone();
                tokio::spawn(session(target, message, window, deadline))
            })
            .collect();
        let started = Instant::now();
        let mut rtts = Vec::new();
        for session in sessions {
            rtts.extend(session.await?);
        }
        let elapsed = started.elapsed().as_secs_f64();
        rtts.sort_unstable();
        let at = |q: f64| rtts.get(((rtts.len() as f64 - 1.0) * q) as usize).copied();
        println!("messages_per_sec {:.0}", rtts.len() as f64 / elapsed);
        println!("p50_us {}", at(0.5).unwrap_or_default());
        println!("p99_us {}", at(0.99).unwrap_or_default());
        Ok(())
    })
}

/// Opens `count` sessions, each proven by one echo, then holds them until stdin closes.
async fn hold(target: SocketAddr, count: usize) -> Result<(), Error> {
    use tokio::io::AsyncReadExt;

    let mut sessions = Vec::with_capacity(count);
    for _ in 0..count {
        let mut ws = RawWs::connect(target).await;
        ws.echo("hold").await;
        sessions.push(ws);
    }
    println!("ready");
    let mut stdin = tokio::io::stdin();
    let mut sink = [0; 64];
    while stdin.read(&mut sink).await? > 0 {}
    drop(sessions);
    Ok(())
}

/// One connection until `deadline`: the round trips it saw, in microseconds.
async fn session(target: SocketAddr, message: Vec<u8>, window: u64, deadline: Instant) -> Vec<u64> {
    let mut ws = RawWs::connect(target).await;
    let mut sent = VecDeque::new();
    let mut rtts = Vec::new();
    for _ in 0..window {
        sent.push_back(Instant::now());
        ws.send_raw(&message).await;
    }
    // Echoes come back in order, so the oldest send time is the one answered.
    while let Some(at) = sent.pop_front() {
        let (opcode, _) = ws.recv().await;
        assert_eq!(opcode, TEXT, "the echo server answered something else");
        rtts.push(u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX));
        if Instant::now() < deadline {
            sent.push_back(Instant::now());
            ws.send_raw(&message).await;
        }
    }
    rtts
}
