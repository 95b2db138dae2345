use std::{
    error::Error as StdError,
    fmt,
    net::{IpAddr, SocketAddr},
    str::FromStr,
};

/// A destination: a host (a name or an IP address) and a port.
///
/// Parsed from `host:port`, `1.2.3.4:port` or `[::1]:port`.
///
/// ```
/// use rama::{Address, Host};
///
/// let addr: Address = "example.test:443".parse().unwrap();
/// assert_eq!(addr.port(), 443);
/// assert!(matches!(addr.host(), Host::Name(name) if &**name == "example.test"));
///
/// let v6: Address = "[::1]:8080".parse().unwrap();
/// assert_eq!(v6.to_string(), "[::1]:8080");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    host: Host,
    port: u16,
}

/// The host part of an [`Address`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name, resolved when dialed.
    Name(Box<str>),
    /// An IP address.
    Ip(IpAddr),
}

/// Why a string is not an [`Address`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressError {
    input: Box<str>,
    reason: &'static str,
}

// ===== impl Address =====

impl Address {
    /// An address from its parts.
    pub fn new(host: Host, port: u16) -> Self {
        Self { host, port }
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket address, when the host is an IP address (no resolution needed).
    pub fn as_socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            Host::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            Host::Name(_) => None,
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Self {
        Self::new(Host::Ip(addr.ip()), addr.port())
    }
}

impl TryFrom<&str> for Address {
    type Error = AddressError;

    fn try_from(input: &str) -> Result<Self, Self::Error> {
        input.parse()
    }
}

impl TryFrom<String> for Address {
    type Error = AddressError;

    fn try_from(input: String) -> Result<Self, Self::Error> {
        input.parse()
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = |reason| AddressError {
            input: input.into(),
            reason,
        };
        let (host, port) = input
            .rsplit_once(':')
            .ok_or_else(|| error("missing `:port`"))?;
        let port = port.parse().map_err(|_| error("invalid port"))?;
        let host = if let Some(v6) = host.strip_prefix('[') {
            let v6 = v6.strip_suffix(']').ok_or_else(|| error("unclosed `[`"))?;
            Host::Ip(IpAddr::V6(
                v6.parse().map_err(|_| error("invalid IPv6 address"))?,
            ))
        } else if let Ok(ip) = host.parse() {
            Host::Ip(IpAddr::V4(ip))
        } else if host.is_empty() || host.len() > 253 {
            return Err(error("invalid host name length"));
        } else if host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            Host::Name(host.into())
        } else {
            return Err(error("invalid character in host name"));
        };
        Ok(Self::new(host, port))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{}", self.port),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

// ===== impl AddressError =====

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid address `{}`: {}", self.input, self.reason)
    }
}

impl StdError for AddressError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_host_kind() {
        let cases = [
            ("127.0.0.1:80", "127.0.0.1:80"),
            ("[::1]:443", "[::1]:443"),
            ("localhost:8080", "localhost:8080"),
            ("a-b.c_d.test:1", "a-b.c_d.test:1"),
        ];
        for (input, shown) in cases {
            let addr: Address = input.parse().unwrap();
            assert_eq!(addr.to_string(), shown);
        }
        assert!(
            "127.0.0.1:80"
                .parse::<Address>()
                .unwrap()
                .as_socket_addr()
                .is_some()
        );
        assert!(
            "localhost:80"
                .parse::<Address>()
                .unwrap()
                .as_socket_addr()
                .is_none()
        );
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "host",
            ":80",
            "host:",
            "host:65536",
            "host:-1",
            "[::1:80",
            "[zz]:80",
            "a b:80",
            "a/b:80",
            "::1:80",
        ] {
            let err = bad.parse::<Address>().unwrap_err();
            assert!(
                err.to_string().starts_with("invalid address"),
                "{bad}: {err}"
            );
        }
    }
}
