//! `tcp::Server`, `target` and the `tcp_forward` example over real sockets on 127.0.0.1.

use rama::{Address, BoxError, Conn, target::Target, tcp};
use rama_e2e::{
    EchoOrigin, PATIENCE, Running, accepted, closed_port, digest_origin, echo_line, exchange,
    payload, sha256, until,
};
use std::{
    cell::Cell,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::oneshot,
    time::timeout,
};
use tower::{Service, ServiceBuilder, ServiceExt, limit::ConcurrencyLimitLayer};

const MIB: usize = 1024 * 1024;

/// A server on 127.0.0.1 relaying to `upstream`, run on the current runtime.
fn forward_to(upstream: SocketAddr) -> tcp::Serve<Target> {
    tcp::Server::bind("127.0.0.1:0").serve(Target::fixed(upstream.into()))
}

/// The `tcp_forward` example on 127.0.0.1 towards `upstream`, with `extra` options.
fn tcp_forward(upstream: SocketAddr, extra: &[&str]) -> Running {
    let upstream = upstream.to_string();
    let args = ["--listen", "127.0.0.1:0", "--upstream", upstream.as_str()];
    Running::start("tcp_forward", &[&args[..], extra].concat())
}

#[tokio::test]
async fn relays_64_mib_each_way_through_tcp_forward() {
    let origin = EchoOrigin::start().await;
    let proxy = tcp_forward(origin.addr, &[]);
    let data = payload(64 * MIB, 1);
    let echoed = exchange(proxy.addr, &data).await.unwrap();
    assert_eq!(echoed.len(), data.len());
    assert_eq!(sha256(&echoed), sha256(&data));
}

#[tokio::test]
async fn client_half_close_first_then_64_mib_back() {
    let origin = digest_origin(64 * MIB).await;
    let proxy = tcp_forward(origin, &[]);
    let data = payload(64 * MIB, 2);
    // `exchange` shuts the write half after sending; the origin answers only after that EOF.
    let answer = exchange(proxy.addr, &data).await.unwrap();
    assert_eq!(&answer[..32], &sha256(&data));
    assert_eq!(answer.len() - 32, 64 * MIB);
    assert_eq!(sha256(&answer[32..]), sha256(&payload(64 * MIB, 7)));
}

/// Echoes every connection itself and counts them in an `Rc`: neither `Send` nor `Clone`.
struct RcEcho {
    served: Rc<Cell<usize>>,
}

impl Service<Conn<tcp::Stream>> for RcEcho {
    type Response = ();
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<()>>>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, conn: Conn<tcp::Stream>) -> Self::Future {
        let served = self.served.clone();
        Box::pin(async move {
            let (stream, _) = conn.into_parts();
            let (mut r, mut w) = tokio::io::split(stream);
            tokio::io::copy(&mut r, &mut w).await?;
            served.set(served.get() + 1);
            w.shutdown().await
        })
    }
}

#[test]
fn non_send_non_clone_service_serves_many_on_current_thread() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let served = Rc::new(Cell::new(0));
        let server = tcp::Server::bind("127.0.0.1:0").serve(RcEcho {
            served: served.clone(),
        });
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = server.with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        let clients = async {
            let mut all = Vec::new();
            for i in 0..200u64 {
                all.push(async move {
                    let data = payload(4096, i);
                    assert_eq!(exchange(addr, &data).await.unwrap(), data);
                });
            }
            futures_join_all(all).await;
            stop.send(()).unwrap();
        };
        let (result, ()) = tokio::join!(server, clients);
        result.unwrap();
        assert_eq!(served.get(), 200);
    });
}

/// Runs the futures concurrently on this task (the test must not need `Send`).
async fn futures_join_all<F: Future<Output = ()>>(futures: Vec<F>) {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for slot in futures.iter_mut() {
            if let Some(future) = slot {
                if future.as_mut().poll(cx).is_ready() {
                    *slot = None;
                } else {
                    pending = true;
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_mode_serves_on_every_worker_and_drains() {
    let origin = EchoOrigin::start().await;
    let server = forward_to(origin.addr)
        .spawn_connections()
        .drain_timeout(Duration::from_millis(200));
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(server.with_graceful_shutdown(async {
        let _ = stopped.await;
    }));
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..100u64 {
        clients.spawn(async move {
            let data = payload(64 * 1024, i);
            assert_eq!(exchange(addr, &data).await.unwrap(), data);
        });
    }
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
    // A connection left open is aborted at the drain deadline.
    let mut lingering = TcpStream::connect(addr).await.unwrap();
    assert_eq!(echo_line(&mut lingering, "x\n").await.unwrap(), "x\n");
    stop.send(()).unwrap();
    timeout(PATIENCE, server).await.unwrap().unwrap().unwrap();
    let mut rest = Vec::new();
    let end = timeout(PATIENCE, lingering.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(end.is_err() || rest.is_empty());
    assert_eq!(origin.accepted(), 101);
}

#[tokio::test]
async fn concurrency_limit_holds_back_the_third_connection() {
    let origin = EchoOrigin::start().await;
    let server = tcp::Server::bind("127.0.0.1:0").serve(
        ServiceBuilder::new()
            .layer(ConcurrencyLimitLayer::new(2))
            .service(Target::fixed(origin.addr.into())),
    );
    let addr = server.local_addr().unwrap();
    tokio::spawn(server);

    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    assert_eq!(echo_line(&mut first, "one\n").await.unwrap(), "one\n");
    assert_eq!(echo_line(&mut second, "two\n").await.unwrap(), "two\n");

    // The third completes the TCP handshake in the kernel's backlog, but the server does not
    // accept it, so nothing reaches the origin.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(b"three\n").await.unwrap();
    let mut buf = [0u8; 6];
    let held = timeout(Duration::from_millis(500), third.read_exact(&mut buf)).await;
    assert!(
        held.is_err(),
        "the third connection was served while two were open"
    );
    assert_eq!(origin.accepted(), 2);

    drop(first);
    timeout(PATIENCE, third.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"three\n");
    assert_eq!(origin.accepted(), 3);
    assert_eq!(echo_line(&mut second, "still\n").await.unwrap(), "still\n");
}

#[tokio::test]
async fn graceful_shutdown_lets_transfers_finish_then_resolves() {
    let origin = EchoOrigin::start().await;
    let server = forward_to(origin.addr);
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let mut server = tokio::spawn(server.with_graceful_shutdown(async {
        let _ = stopped.await;
    }));

    // Three transfers, each halfway through when the signal comes.
    let data = payload(8 * MIB, 3);
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(&data[..4 * MIB]).await.unwrap();
        let mut echoed = vec![0u8; 4 * MIB];
        stream.read_exact(&mut echoed).await.unwrap();
        open.push(stream);
    }
    stop.send(()).unwrap();

    // New connections are refused once the listener is closed.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still accepting after the signal"
        );
        tokio::task::yield_now().await;
    }
    // The server waits for the open transfers.
    assert!(
        timeout(Duration::from_millis(300), &mut server)
            .await
            .is_err(),
        "resolved early"
    );

    for mut stream in open {
        stream.write_all(&data[4 * MIB..]).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        assert_eq!(sha256(&rest), sha256(&data[4 * MIB..]));
    }
    timeout(PATIENCE, server)
        .await
        .expect("server resolves after its connections")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn drain_timeout_resolves_at_the_deadline() {
    let origin = EchoOrigin::start().await;
    let server = forward_to(origin.addr).drain_timeout(Duration::from_millis(300));
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(server.with_graceful_shutdown(async {
        let _ = stopped.await;
    }));
    let mut lingering = TcpStream::connect(addr).await.unwrap();
    assert_eq!(echo_line(&mut lingering, "hi\n").await.unwrap(), "hi\n");

    let started = tokio::time::Instant::now();
    stop.send(()).unwrap();
    timeout(PATIENCE, server).await.unwrap().unwrap().unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "resolved before the deadline: {took:?}"
    );
    // The dropped connection is closed: the client reads EOF (or a reset).
    let mut rest = Vec::new();
    let end = timeout(PATIENCE, lingering.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(end.is_err() || rest.is_empty());
}

#[tokio::test]
async fn idle_and_total_timeouts_close_connections() {
    let origin = EchoOrigin::start().await;
    let server = forward_to(origin.addr).idle_timeout(Duration::from_millis(300));
    let addr = server.local_addr().unwrap();
    tokio::spawn(server);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // Activity keeps it open past the idle period...
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(echo_line(&mut stream, "tick\n").await.unwrap(), "tick\n");
    }
    // ...silence closes it.
    let started = tokio::time::Instant::now();
    let mut rest = Vec::new();
    let _ = timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));

    let server = forward_to(origin.addr).connection_timeout(Duration::from_millis(300));
    let addr = server.local_addr().unwrap();
    tokio::spawn(server);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut closed = false;
    while started.elapsed() < PATIENCE {
        // Busy the whole time, yet closed at the total deadline.
        if echo_line(&mut stream, "busy\n").await.is_err() {
            closed = true;
            break;
        }
    }
    assert!(closed && started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn survives_file_descriptor_exhaustion() {
    let origin = EchoOrigin::start().await;
    // Each relayed connection holds two descriptors, so whether `accept` itself (rather than
    // the dial after it) meets EMFILE depends on the parity of the free descriptors: run with
    // two neighbouring limits so that one of them exhausts at `accept`.
    let mut accept_failed = false;
    for limit in [40, 41] {
        let mut proxy = Running::start_with_fd_limit(
            "tcp_forward",
            limit,
            &[
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                &origin.addr.to_string(),
                "--threads",
                "1",
                "--drain-timeout",
                "5",
            ],
        );
        let mut burst = Vec::new();
        for _ in 0..100 {
            burst.push(TcpStream::connect(proxy.addr).await.unwrap());
        }
        proxy.wait_for_log("Too many open files").await;
        drop(burst);

        // Once the descriptors are released it serves again (its back-off is at most 1 s).
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let attempt = async {
                let mut stream = TcpStream::connect(proxy.addr).await?;
                echo_line(&mut stream, "back\n").await
            };
            match timeout(Duration::from_secs(2), attempt).await {
                Ok(Ok(line)) if line == "back\n" => break,
                _ => assert!(
                    tokio::time::Instant::now() < deadline,
                    "never served again:\n{}",
                    proxy.stderr()
                ),
            }
        }
        assert!(proxy.is_running());
        assert!(proxy.terminate().await, "did not exit cleanly on SIGTERM");
        accept_failed |= proxy.stderr().contains("accept failed, pausing");
    }
    assert!(accept_failed, "no run exhausted descriptors at accept");
}

#[tokio::test]
async fn dial_failure_is_logged_with_the_peer() {
    // A port nobody listens on: bind one, note it, close it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = tcp_forward(closed, &[]);
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let me = stream.local_addr().unwrap();
    let mut rest = Vec::new();
    let _ = timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty());
    let log = proxy.wait_for_log("connection failed").await;
    let line = log
        .lines()
        .find(|l| l.contains("connection failed"))
        .unwrap();
    assert!(line.contains(&me.to_string()), "no peer address in: {line}");
    assert!(
        line.contains(&format!("cannot connect to {closed}")),
        "{line}"
    );
}

/// Routes each connection to the `host:port` on its first line: a minimal dynamic proxy.
async fn route_by_first_line(conn: Conn<tcp::Stream>) -> Result<rama::io::Relayed, BoxError> {
    let (mut stream, mut info) = conn.into_parts();
    // Byte by byte, so that nothing after the line is read ahead and lost.
    let mut line = Vec::new();
    while line.last() != Some(&b'\n') {
        line.push(stream.read_u8().await?);
    }
    let destination: Address = String::from_utf8(line)?.trim().parse()?;
    info.extensions_mut().insert(destination);
    let conn = Conn::new(stream, info);
    let target = Target::requested().connect_timeout(Duration::from_secs(3));
    Ok(target.oneshot(conn).await?)
}

#[tokio::test]
async fn failed_dials_touch_no_other_connection() {
    let origin = EchoOrigin::start().await;
    let server = tcp::Server::bind("127.0.0.1:0").serve(tower::service_fn(route_by_first_line));
    let addr = server.local_addr().unwrap();
    tokio::spawn(server);

    let mut good = TcpStream::connect(addr).await.unwrap();
    good.write_all(format!("{}\n", origin.addr).as_bytes())
        .await
        .unwrap();
    assert_eq!(echo_line(&mut good, "before\n").await.unwrap(), "before\n");

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for bad in [
        closed.to_string(),
        "nonexistent.invalid:80".to_owned(),
        "not an address".to_owned(),
    ] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(format!("{bad}\n").as_bytes())
            .await
            .unwrap();
        let mut rest = Vec::new();
        let _ = timeout(PATIENCE, stream.read_to_end(&mut rest))
            .await
            .unwrap();
        assert!(rest.is_empty(), "{bad}: got bytes from a failed dial");
    }
    assert_eq!(echo_line(&mut good, "after\n").await.unwrap(), "after\n");
}

/// Echoes what comes; a connection that sends `panic` makes its future panic (a bug in a
/// service, as far as the server can tell).
async fn echo_or_panic(conn: Conn<tcp::Stream>) -> Result<(), BoxError> {
    let (mut stream, _) = conn.into_parts();
    let mut buf = [0u8; 64];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        assert!(!buf[..n].starts_with(b"panic"), "a bug in the service");
        stream.write_all(&buf[..n]).await?;
    }
}

#[tokio::test]
async fn a_connection_that_panics_is_dropped_and_no_other_is_touched() {
    let server = tcp::Server::bind("127.0.0.1:0").serve(tower::service_fn(echo_or_panic));
    let addr = server.local_addr().unwrap();
    tokio::spawn(server);
    let mut before = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        echo_line(&mut before, "before\n").await.unwrap(),
        "before\n"
    );

    let mut bad = TcpStream::connect(addr).await.unwrap();
    bad.write_all(b"panic\n").await.unwrap();
    let mut rest = Vec::new();
    let closed = timeout(PATIENCE, bad.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the panicking connection was never closed");
    assert!(rest.is_empty());

    // The connection open beside it is served on, and the server takes new ones.
    assert_eq!(echo_line(&mut before, "after\n").await.unwrap(), "after\n");
    let mut after = TcpStream::connect(addr).await.unwrap();
    assert_eq!(echo_line(&mut after, "new\n").await.unwrap(), "new\n");
}

#[tokio::test]
async fn a_relay_to_its_own_address_refuses_instead_of_looping() {
    // A free port, then a forwarder told to relay to the address it listens on: each
    // connection it made to itself would be relayed again, until no file descriptor is left.
    let port = closed_port().port();
    let own = format!("127.0.0.1:{port}");
    let forward = Running::start(
        "tcp_forward",
        &["--listen", &own, "--upstream", &own, "--threads", "1"],
    );
    // Closed without a byte (reset, when the close finds "hello" unread).
    match exchange(forward.addr, b"hello").await {
        Ok(got) => assert!(got.is_empty(), "{got:?}"),
        Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset),
    }
    forward.wait_for_log("it is this proxy's own address").await;
    until("no connection to the forwarder left", || {
        accepted(port) == 0
    })
    .await;
}

#[test]
fn per_core_listeners_do_not_share_an_address_something_listens_on() {
    // `SO_REUSEPORT` would let a second group join the first and split its connections.
    let first = tcp::PerCore::bind_threads("127.0.0.1:0", 2).unwrap();
    let addr = first.local_addr();
    let second = tcp::PerCore::bind_threads(addr, 2).map(|servers| servers.local_addr());
    assert_eq!(
        second.map_err(|error| error.kind()),
        Err(std::io::ErrorKind::AddrInUse)
    );
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = tcp::PerCore::bind_threads(plain.local_addr().unwrap(), 2);
    assert_eq!(
        taken
            .map(|servers| servers.local_addr())
            .map_err(|error| error.kind()),
        Err(std::io::ErrorKind::AddrInUse)
    );
    // Free again once the first group is gone; and its own listeners share it.
    drop(first);
    let again = tcp::PerCore::bind_threads(addr, 2).unwrap();
    assert_eq!(again.threads(), 2);
}

/// Answers each connection with the name of the thread that serves it, then holds it open
/// until the client closes it.
async fn name_the_thread(conn: Conn<tcp::Stream>) -> Result<(), BoxError> {
    let (mut stream, _) = conn.into_parts();
    let name = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_owned();
    stream.write_all(format!("{name}\n").as_bytes()).await?;
    stream.read_to_end(&mut Vec::new()).await?;
    Ok(())
}

#[tokio::test]
async fn per_core_servers_share_a_burst_of_connections_evenly() {
    // The kernel's `SO_REUSEPORT` hash alone splits 200 connections 100/100 give or take 7
    // (one standard deviation); the servers hand connections over until they are within two.
    const CONNECTIONS: usize = 200;
    let servers = tcp::PerCore::bind_threads("127.0.0.1:0", 2).unwrap();
    let addr = servers.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(
        servers
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .run(|server| server.serve(tower::service_fn(name_the_thread))),
    );
    let mut connects = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        connects.spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let mut name = Vec::new();
            while name.last() != Some(&b'\n') {
                let mut byte = [0];
                assert_eq!(
                    stream.read(&mut byte).await.unwrap(),
                    1,
                    "closed before naming"
                );
                name.push(byte[0]);
            }
            (stream, String::from_utf8(name).unwrap())
        });
    }
    let open = timeout(PATIENCE, connects.join_all()).await.unwrap();
    let mut per_thread = std::collections::BTreeMap::<&str, usize>::new();
    for (_, name) in &open {
        *per_thread.entry(name.trim_end()).or_default() += 1;
    }
    let counts: Vec<usize> = per_thread.values().copied().collect();
    assert_eq!(counts.len(), 2, "served by {per_thread:?}");
    assert_eq!(counts.iter().sum::<usize>(), CONNECTIONS);
    assert!(counts[0].abs_diff(counts[1]) <= 2, "split {per_thread:?}");
    drop(open);
    stop.send(()).unwrap();
    timeout(PATIENCE, run).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn a_relay_dropped_by_the_idle_timeout_has_its_access_line() {
    let origin = EchoOrigin::start().await;
    let proxy = tcp_forward(origin.addr, &["--idle-timeout", "1"]);
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let me = stream.local_addr().unwrap();
    assert_eq!(echo_line(&mut stream, "hi\n").await.unwrap(), "hi\n");
    let mut rest = Vec::new();
    let _ = timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
    let line = proxy.wait_for_line("relay cut before its end").await;
    rama_e2e::assert_access_line(&line, me, origin.addr);
}

/// A client that gives up on a tunnel whose upstream stopped reading (a `RST`, while the relay
/// waits to write to the upstream and to read from it, and so looks at the client no more)
/// has the upstream closed at once, with a `RST` too. Before, the relay learnt of it only
/// when the upstream moved: the tunnel and its upstream connection were held until the idle
/// timeout, and for good without one.
#[tokio::test]
async fn a_client_reset_on_a_stalled_upstream_resets_the_upstream_at_once() {
    let (upstream, accepted) = rama_e2e::deaf_upstream().await;
    let proxy = tcp_forward(upstream, &[]);
    let client = TcpStream::connect(proxy.addr).await.unwrap();
    let me = client.local_addr().unwrap();
    let upstream_side = timeout(PATIENCE, accepted)
        .await
        .expect("the proxy dialed the upstream")
        .unwrap();
    let sent = rama_e2e::write_until_stalled(&client).await;
    client.set_zero_linger().unwrap();
    drop(client);
    rama_e2e::assert_reset_at_once(&upstream_side, &proxy, || {
        format!("the upstream's connection, after {sent} bytes and the client's reset")
    })
    .await;
    let line = proxy.wait_for_line("relay reset by the client").await;
    rama_e2e::assert_access_line(&line, me, upstream);
}

/// The other way round: an upstream that resets its connection while the relay waits to write
/// to a client that stopped reading (and to read from that client, which sends nothing) has
/// the client's connection reset at once, not held until the client moves.
#[tokio::test]
async fn an_upstream_reset_towards_a_stalled_client_resets_the_client_at_once() {
    rama_e2e::assert_upstream_reset_passes_on(|upstream| tcp_forward(upstream, &[]), false).await;
}
