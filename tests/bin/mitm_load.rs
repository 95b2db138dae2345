//! Load generator for `bench/mitm.sh`: clients of an intercepting HTTP proxy.
//!
//! ```text
//! mitm-load requests --proxy ADDR --ca FILE --target HOST:PORT [--conns 32] [--secs 10]
//! mitm-load hosts --proxy ADDR --ca FILE --port PORT --prefix P [--conns 32] [--secs 10]
//! ```
//!
//! `requests`: each connection opens one `CONNECT` tunnel, does TLS with the proxy (trusting
//! only `--ca`, the proxy's CA), then sends keep-alive `GET /` requests over HTTP/1.1 until
//! the time is up; prints the `200`s per second. `hosts`: each connection repeatedly opens a
//! tunnel to a name never asked for before (`N.P.test`), completes the TLS handshake
//! (verifying the minted certificate for that name) and closes; prints new hosts per second.

use rama::{Host, tls};
use rama_e2e::load::{Error, num, required, runtime};
use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

fn main() -> Result<(), Error> {
    let runtime = runtime()?;
    let mode = std::env::args().nth(1).unwrap_or_default();
    runtime.block_on(async {
        match mode.as_str() {
            "requests" => requests().await,
            "hosts" => hosts().await,
            _ => Err("usage: mitm-load requests|hosts ...".into()),
        }
    })
}

struct Setup {
    proxy: SocketAddr,
    connector: tls::Connector,
    conns: u64,
    secs: Duration,
}

fn setup(alpn: &[&str]) -> Result<Setup, Error> {
    Ok(Setup {
        proxy: required("--proxy").parse()?,
        connector: tls::Connector::builder()
            .ca_pem_file(required("--ca"))?
            .alpn(alpn)
            .build()?,
        conns: num("--conns", 32),
        secs: Duration::from_secs(num("--secs", 10)),
    })
}

/// A `CONNECT` tunnel to `destination` through `proxy`, then TLS for `host`.
async fn tunnel(
    proxy: SocketAddr,
    destination: &str,
    host: &Host,
    connector: &tls::Connector,
) -> Result<tls::ClientStream<TcpStream>, Error> {
    let mut stream = TcpStream::connect(proxy).await?;
    stream.set_nodelay(true)?;
    let head = format!("CONNECT {destination} HTTP/1.1\r\nHost: {destination}\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut answer = Vec::with_capacity(128);
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 || answer.len() > 8192 {
            return Err("the proxy closed during CONNECT".into());
        }
        answer.push(byte[0]);
    }
    if !answer.starts_with(b"HTTP/1.1 200") && !answer.starts_with(b"HTTP/1.0 200") {
        return Err(format!("CONNECT refused: {}", String::from_utf8_lossy(&answer)).into());
    }
    Ok(connector.connect(host, stream).await?)
}

/// Reads one HTTP/1.1 response with a `Content-Length` body; returns its status. `buf`
/// carries bytes read past the previous response.
async fn response<R: AsyncRead + Unpin>(io: &mut R, buf: &mut Vec<u8>) -> Result<u16, Error> {
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Err("closed mid-response".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or("no content-length")?;
    while buf.len() < head_end + length {
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Err("closed mid-body".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    buf.drain(..head_end + length);
    Ok(status)
}

/// What the workers count.
#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// Runs `conns` copies of `worker` (given the shared setup, the counts and the deadline) to
/// the end, then prints `LABEL OK failed N secs S RATE_NAME PER_SECOND`.
async fn measure<W, F>(label: &str, rate_name: &str, setup: Setup, worker: W) -> Result<(), Error>
where
    W: Fn(Arc<Setup>, Arc<Counts>, Instant) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let setup = Arc::new(setup);
    let counts = Arc::new(Counts::default());
    let start = Instant::now();
    let deadline = start + setup.secs;
    let workers: Vec<_> = (0..setup.conns)
        .map(|_| tokio::spawn(worker(setup.clone(), counts.clone(), deadline)))
        .collect();
    for worker in workers {
        worker.await?;
    }
    let secs = start.elapsed().as_secs_f64();
    let ok = counts.ok.load(Ordering::Relaxed);
    println!(
        "{label} {ok} failed {} secs {secs:.2} {rate_name} {:.0}",
        counts.failed.load(Ordering::Relaxed),
        ok as f64 / secs
    );
    Ok(())
}

async fn requests() -> Result<(), Error> {
    let target = required("--target");
    let host = target.rsplit_once(':').map_or(&*target, |(h, _)| h);
    let host = Host::Name(host.into());
    measure(
        "requests",
        "rps",
        setup(&["http/1.1"])?,
        |setup, counts, deadline| {
            let (target, host) = (target.clone(), host.clone());
            async move {
                let request = format!("GET / HTTP/1.1\r\nHost: {target}\r\n\r\n");
                while Instant::now() < deadline {
                    let Ok(mut tls) = tunnel(setup.proxy, &target, &host, &setup.connector).await
                    else {
                        counts.failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let mut buf = Vec::new();
                    while Instant::now() < deadline {
                        if tls.write_all(request.as_bytes()).await.is_err() {
                            break;
                        }
                        match response(&mut tls, &mut buf).await {
                            Ok(200) => counts.ok.fetch_add(1, Ordering::Relaxed),
                            _ => {
                                counts.failed.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        };
                    }
                }
            }
        },
    )
    .await
}

async fn hosts() -> Result<(), Error> {
    let port = num("--port", 443);
    let prefix = required("--prefix");
    let next = Arc::new(AtomicU64::new(0));
    measure(
        "hosts",
        "per_sec",
        setup(&["http/1.1"])?,
        |setup, counts, deadline| {
            let (prefix, next) = (prefix.clone(), next.clone());
            async move {
                while Instant::now() < deadline {
                    let name = format!("h{}.{prefix}.test", next.fetch_add(1, Ordering::Relaxed));
                    let host = Host::Name(name.clone().into());
                    let destination = format!("{name}:{port}");
                    match tunnel(setup.proxy, &destination, &host, &setup.connector).await {
                        Ok(mut tls) => {
                            let _ = tls.shutdown().await;
                            counts.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            counts.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        },
    )
    .await
}
