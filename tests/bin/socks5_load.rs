//! Load generator for `bench/socks5.sh`: local origins, and SOCKS5 clients that measure.
//!
//! ```text
//! socks5-load origin --small ADDR --bulk ADDR --hold ADDR   # HTTP origin, byte source, idle sink
//! socks5-load rate --proxy ADDR --target ADDR [--conns 64] [--count 20000] [--secs 10]
//! socks5-load bulk --proxy ADDR --target ADDR --bytes N
//! socks5-load idle --proxy ADDR --target ADDR --tunnels N   # prints `ready`, holds until stdin closes
//! ```

use rama_e2e::load::{Error, addr, num, runtime};
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

fn main() -> Result<(), Error> {
    let runtime = runtime()?;
    let mode = std::env::args().nth(1).unwrap_or_default();
    runtime.block_on(async {
        match mode.as_str() {
            "origin" => origin().await,
            "rate" => rate().await,
            "bulk" => bulk().await,
            "idle" => idle().await,
            _ => Err("usage: socks5-load origin|rate|bulk|idle ...".into()),
        }
    })
}

async fn origin() -> Result<(), Error> {
    let small = TcpListener::bind(addr("--small")).await?;
    let bulk = TcpListener::bind(addr("--bulk")).await?;
    let hold = TcpListener::bind(addr("--hold")).await?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = small.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\nhello, world\n")
                    .await;
            });
        }
    });
    tokio::spawn(async move {
        while let Ok((mut s, _)) = bulk.accept().await {
            tokio::spawn(async move {
                // The first 8 bytes ask for a length; then that many bytes follow.
                let Ok(len) = s.read_u64().await else { return };
                let chunk = vec![0x5Au8; 256 * 1024];
                let mut left = len;
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    if s.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n as u64;
                }
                let _ = s.shutdown().await;
            });
        }
    });
    println!("ready");
    while let Ok((s, _)) = hold.accept().await {
        tokio::spawn(async move {
            let mut s = s;
            let mut buf = [0u8; 64];
            while matches!(s.read(&mut buf).await, Ok(1..)) {}
        });
    }
    Ok(())
}

/// CONNECT through the proxy without authentication.
async fn socks_connect(proxy: SocketAddr, target: SocketAddr) -> Result<TcpStream, Error> {
    let mut s = TcpStream::connect(proxy).await?;
    s.set_nodelay(true)?;
    s.write_all(&[5, 1, 0]).await?;
    let mut method = [0u8; 2];
    s.read_exact(&mut method).await?;
    if method != [5, 0] {
        return Err("method refused".into());
    }
    let SocketAddr::V4(v4) = target else {
        return Err("IPv4 targets only".into());
    };
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&v4.ip().octets());
    req.extend_from_slice(&v4.port().to_be_bytes());
    s.write_all(&req).await?;
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).await?;
    if reply[1] != 0 {
        return Err(format!("reply {}", reply[1]).into());
    }
    Ok(s)
}

async fn rate() -> Result<(), Error> {
    let proxy = addr("--proxy");
    let target = addr("--target");
    let conns = num("--conns", 64);
    let count = num("--count", 20_000);
    let secs = num("--secs", 10);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let remaining = Arc::new(std::sync::atomic::AtomicU64::new(count));
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..conns {
        let remaining = remaining.clone();
        let failed = failed.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline
                && remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
            {
                let t = Instant::now();
                let exchange = async {
                    let mut s = socks_connect(proxy, target).await?;
                    s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
                        .await?;
                    let mut body = Vec::with_capacity(128);
                    s.read_to_end(&mut body).await?;
                    if !body.ends_with(b"hello, world\n") {
                        return Err::<(), Error>("short answer".into());
                    }
                    Ok(())
                };
                match tokio::time::timeout(Duration::from_secs(10), exchange).await {
                    Ok(Ok(())) => latencies.push(t.elapsed()),
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "ok={} failed={} per_sec={:.0} p50_ms={:.2} p99_ms={:.2}",
        all.len(),
        failed.load(Ordering::Relaxed),
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}

async fn bulk() -> Result<(), Error> {
    let proxy = addr("--proxy");
    let target = addr("--target");
    let bytes = num("--bytes", 4 << 30);
    let mut s = if proxy == target {
        TcpStream::connect(target).await?
    } else {
        socks_connect(proxy, target).await?
    };
    let started = Instant::now();
    s.write_u64(bytes).await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    if got != bytes {
        return Err(format!("got {got} of {bytes} bytes").into());
    }
    let secs = started.elapsed().as_secs_f64();
    println!("gbps={:.2}", got as f64 * 8.0 / secs / 1e9);
    Ok(())
}

async fn idle() -> Result<(), Error> {
    let proxy = addr("--proxy");
    let target = addr("--target");
    let tunnels = num("--tunnels", 5000);
    let mut open = Vec::with_capacity(tunnels as usize);
    for _ in 0..tunnels {
        let mut s = socks_connect(proxy, target).await?;
        // One byte each way proves the tunnel is up; then it stays idle.
        s.write_all(b".").await?;
        open.push(s);
    }
    println!("ready");
    let done = Arc::new(AtomicBool::new(false));
    let _ = tokio::io::stdin().read(&mut [0u8; 1]).await;
    done.store(true, Ordering::Relaxed);
    drop(open);
    Ok(())
}
