//! UDP ASSOCIATE: a relay socket next to the connection's local address, serving datagrams
//! from the client's address only, until the control connection closes.

use super::handshake::Write;
use crate::{
    Address, ConnInfo, Host,
    egress::{Rules, Verdict},
    socks5::{error::Error, proto::UdpHeader},
    tcp::{self, Lookup},
};
use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    pin::Pin,
    task::{Context, Poll, ready},
    vec,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::UdpSocket,
};

/// Datagrams handled per direction in one poll before yielding.
const BUDGET: usize = 32;
/// Room in front of a datagram for the longest IP header (IPv6: 22 bytes).
const HEADROOM: usize = 22;
/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// One UDP association.
pub(super) struct Association<IO> {
    reply: Option<Write<IO>>,
    control: Option<IO>,
    client_socket: UdpSocket,
    outbound: UdpSocket,
    /// The control connection's peer: datagrams come from its address only.
    peer: SocketAddr,
    /// The client's UDP address: announced in the request, or learned from its first datagram.
    client: Option<SocketAddr>,
    announced_port: Option<u16>,
    rules: Option<Rules>,
    buf: Box<[u8]>,
    resolving: Option<(Lookup, Box<str>, u16, Vec<u8>)>,
    moved: Moved,
}

/// What an association carried, for its access line.
#[derive(Debug, Default)]
struct Moved {
    sent: u64,
    sent_bytes: u64,
    received: u64,
    received_bytes: u64,
    /// Datagrams the egress rules refused (the first one logged as a warning).
    denied: u64,
    /// Datagrams dropped for anything else: from strangers, malformed, fragmented.
    dropped: u64,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Association<IO> {
    /// Binds the sockets and queues the success reply.
    pub(super) fn start(
        io: IO,
        info: &ConnInfo,
        requested: &Address,
        rules: Option<Rules>,
    ) -> Result<Self, (IO, io::Error)> {
        let bind = || -> io::Result<(UdpSocket, UdpSocket)> {
            let local = SocketAddr::new(info.local_addr().ip(), 0);
            let client_socket = std::net::UdpSocket::bind(local)?;
            client_socket.set_nonblocking(true)?;
            // One dual-stack socket reaches IPv4 and IPv6 destinations.
            let outbound = std::net::UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0))
                .or_else(|_| std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))?;
            outbound.set_nonblocking(true)?;
            Ok((
                UdpSocket::from_std(client_socket)?,
                UdpSocket::from_std(outbound)?,
            ))
        };
        let (client_socket, outbound) = match bind() {
            Ok(sockets) => sockets,
            Err(error) => return Err((io, error)),
        };
        let bound = match client_socket.local_addr() {
            Ok(bound) => bound,
            Err(error) => return Err((io, error)),
        };
        // A client that names its UDP port is held to it; 0 means "learn it".
        let announced_port = Some(requested.port()).filter(|&port| port != 0);
        tracing::debug!(peer = %info.peer_addr(), %bound, "socks5 udp association open");
        let peer = info.peer_addr();
        Ok(Self {
            reply: Some(Write::reply(io, 0, bound, false)),
            control: None,
            client_socket,
            outbound,
            peer,
            client: None,
            announced_port,
            rules,
            buf: vec![0; HEADROOM + MAX_DATAGRAM].into_boxed_slice(),
            resolving: None,
            moved: Moved::default(),
        })
    }

    /// Relays until the control connection closes.
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if let Some(reply) = self.reply.as_mut() {
            let io = ready!(reply.poll_write(cx)).map_err(Error::udp)?;
            self.reply = None;
            self.control = Some(io);
        }
        // The control connection: the association lives as long as it does.
        let control = self.control.as_mut().expect("control after the reply");
        let mut discard = [0u8; 64];
        loop {
            let mut read = ReadBuf::new(&mut discard);
            match Pin::new(&mut *control).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    tracing::debug!(peer = %self.peer, "socks5 udp association closed");
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => break,
            }
        }
        let mut busy = false;
        if let Some((lookup, ..)) = self.resolving.as_mut()
            && let Poll::Ready(resolved) = Pin::new(lookup).poll(cx)
        {
            let (_, name, port, payload) = self.resolving.take().expect("checked");
            match resolved {
                Ok(addrs) => {
                    let allowed = addrs
                        .into_iter()
                        .find(|addr| self.allows(Some(&name), *addr));
                    match allowed {
                        Some(dest) => self.send_out(dest, &payload),
                        None => self.denied(format_args!("{name}:{port}")),
                    }
                }
                Err(error) => {
                    self.moved.dropped += 1;
                    tracing::debug!(peer = %self.peer, %name, port, %error, "socks5 udp: cannot resolve destination");
                }
            }
        }
        if self.resolving.is_none() {
            busy |= self.relay_outbound(cx);
        }
        busy |= self.relay_inbound(cx);
        if busy {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    /// Client to destinations; true when the budget ran out.
    fn relay_outbound(&mut self, cx: &mut Context<'_>) -> bool {
        for _ in 0..BUDGET {
            let mut read = ReadBuf::new(&mut self.buf[..MAX_DATAGRAM]);
            let src = match self.client_socket.poll_recv_from(cx, &mut read) {
                Poll::Ready(Ok(src)) => src,
                Poll::Ready(Err(error)) => {
                    tracing::debug!(peer = %self.peer, %error, "socks5 udp: receive failed");
                    continue;
                }
                Poll::Pending => return false,
            };
            let n = read.filled().len();
            if src.ip().to_canonical() != self.peer.ip().to_canonical() {
                self.moved.dropped += 1;
                tracing::debug!(peer = %self.peer, %src, "socks5 udp: datagram from a stranger dropped");
                continue;
            }
            match self.client {
                Some(client) if client != src => {
                    self.moved.dropped += 1;
                    tracing::debug!(peer = %self.peer, %src, "socks5 udp: datagram from another port dropped");
                    continue;
                }
                Some(_) => {}
                None if self.announced_port.is_some_and(|port| port != src.port()) => {
                    self.moved.dropped += 1;
                    tracing::debug!(peer = %self.peer, %src, "socks5 udp: datagram from an unannounced port dropped");
                    continue;
                }
                None => self.client = Some(src),
            }
            let mut input = &self.buf[..n];
            let header = match UdpHeader::parse(&mut input) {
                Ok(header) => header,
                Err(error) => {
                    self.moved.dropped += 1;
                    tracing::debug!(peer = %self.peer, %src, %error, "socks5 udp: bad datagram header, dropped");
                    continue;
                }
            };
            if header.frag != 0 {
                self.moved.dropped += 1;
                tracing::info!(peer = %self.peer, %src, frag = header.frag, "socks5 udp: fragmented datagram dropped");
                continue;
            }
            let start = n - input.len();
            match header.address.host() {
                Host::Ip(ip) => {
                    let dest = SocketAddr::new(*ip, header.address.port());
                    if self.allows(None, dest) {
                        let payload = self.buf[start..n].to_vec();
                        self.send_out(dest, &payload);
                    } else {
                        self.denied(format_args!("{dest}"));
                    }
                }
                Host::Name(name) => {
                    let lookup = tcp::lookup(name, header.address.port());
                    let payload = self.buf[start..n].to_vec();
                    self.resolving = Some((lookup, name.clone(), header.address.port(), payload));
                    // The next poll looks at the lookup (and registers for its end).
                    cx.waker().wake_by_ref();
                    return false;
                }
            }
        }
        true
    }

    /// Destinations to the client; true when the budget ran out.
    fn relay_inbound(&mut self, cx: &mut Context<'_>) -> bool {
        for _ in 0..BUDGET {
            let mut read = ReadBuf::new(&mut self.buf[HEADROOM..]);
            let src = match self.outbound.poll_recv_from(cx, &mut read) {
                Poll::Ready(Ok(src)) => src,
                Poll::Ready(Err(_)) => continue,
                Poll::Pending => return false,
            };
            let n = read.filled().len();
            let Some(client) = self.client else { continue };
            let src = SocketAddr::new(src.ip().to_canonical(), src.port());
            let mut header = Vec::with_capacity(HEADROOM);
            UdpHeader {
                frag: 0,
                address: src.into(),
            }
            .encode(&mut header)
            .expect("an IP address always fits");
            let start = HEADROOM - header.len();
            self.buf[start..HEADROOM].copy_from_slice(&header);
            // UDP may drop: a full socket buffer drops the datagram.
            if self
                .client_socket
                .try_send_to(&self.buf[start..HEADROOM + n], client)
                .is_ok()
            {
                self.moved.received += 1;
                self.moved.received_bytes += n as u64;
            }
        }
        true
    }

    fn allows(&self, name: Option<&str>, dest: SocketAddr) -> bool {
        self.rules
            .as_ref()
            .is_none_or(|rules| rules.verdict(name, Some(dest.ip()), dest.port()) == Verdict::Allow)
    }

    /// Counts a datagram the rules refused; the first of the association is a warning, as a
    /// refused tunnel is (the rest are counted in the access line, not logged one by one).
    fn denied(&mut self, dest: std::fmt::Arguments<'_>) {
        if self.moved.denied == 0 {
            tracing::warn!(peer = %self.peer, %dest, "socks5 udp: datagram denied by egress rules, dropped (the association's others are counted at its end)");
        }
        self.moved.denied += 1;
    }

    fn send_out(&mut self, dest: SocketAddr, payload: &[u8]) {
        let dest = match (self.outbound.local_addr(), dest) {
            (Ok(SocketAddr::V6(_)), SocketAddr::V4(v4)) => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            (_, dest) => dest,
        };
        match self.outbound.try_send_to(payload, dest) {
            Ok(_) => {
                self.moved.sent += 1;
                self.moved.sent_bytes += payload.len() as u64;
            }
            Err(error) => {
                self.moved.dropped += 1;
                tracing::debug!(peer = %self.peer, %dest, %error, "socks5 udp: send failed, datagram dropped");
            }
        }
    }
}

/// The association's access line, however it ended (its control connection closed, the
/// server's drain deadline, a timeout), as a tunnel has one.
impl<IO> Drop for Association<IO> {
    fn drop(&mut self) {
        let Moved {
            sent,
            sent_bytes,
            received,
            received_bytes,
            denied,
            dropped,
        } = self.moved;
        tracing::info!(
            target: crate::access::TARGET,
            peer = %self.peer,
            sent, sent_bytes, received, received_bytes, denied, dropped,
            "udp association finished"
        );
    }
}
