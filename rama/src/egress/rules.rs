//! The rule set: ordered allow/deny rules by CIDR, port and domain suffix.

use std::{
    error::Error as StdError, fmt, net::IpAddr, ops::RangeInclusive, str::FromStr, sync::Arc,
};

/// An ordered list of rules and a default: the first rule that matches a destination decides.
///
/// Cheap to clone (one reference count).
///
/// ```
/// use rama::egress::{Match, Rules, Verdict};
///
/// let rules = Rules::allow_by_default()
///     .deny(Match::port(25))                       // no mail
///     .allow(Match::domain_suffix("intranet.test")) // this one even on a private address
///     .deny(Match::cidr("10.0.0.0/8".parse().unwrap()));
///
/// assert_eq!(rules.verdict(None, Some([10, 1, 2, 3].into()), 443), Verdict::Deny);
/// assert_eq!(rules.verdict(Some("wiki.intranet.test"), None, 443), Verdict::Allow);
/// // A name the rules cannot judge before it is resolved:
/// assert_eq!(rules.verdict(Some("example.test"), None, 443), Verdict::NeedsAddress);
/// assert_eq!(rules.verdict(Some("example.test"), Some([93, 184, 216, 34].into()), 443), Verdict::Allow);
/// ```
#[derive(Debug, Clone)]
pub struct Rules {
    inner: Arc<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    rules: Vec<(Action, Match)>,
    default: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Allow,
    Deny,
}

/// What the rules say about a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// Refuse (SOCKS5 0x02, HTTP 403).
    Deny,
    /// A rule on addresses comes before any decision: resolve the name, then ask again with
    /// each address, and dial only an address that was allowed.
    NeedsAddress,
}

/// What a rule matches: every condition given must hold (a `Match` with none matches all).
#[derive(Debug, Clone, Default)]
pub struct Match {
    cidr: Option<Cidr>,
    ports: Option<RangeInclusive<u16>>,
    suffix: Option<Box<str>>,
    named: bool,
}

/// An IP network: an address and a prefix length, such as `10.0.0.0/8` or `fe80::/10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a string is not a [`Cidr`].
#[derive(Debug, Clone)]
pub struct CidrError {
    input: Box<str>,
}

// ===== impl Rules =====

impl Rules {
    /// No rules yet; what no rule matches is allowed.
    pub fn allow_by_default() -> Self {
        Self::with_default(Action::Allow)
    }

    /// No rules yet; what no rule matches is denied.
    pub fn deny_by_default() -> Self {
        Self::with_default(Action::Deny)
    }

    fn with_default(default: Action) -> Self {
        Self {
            inner: Arc::new(Inner {
                rules: Vec::new(),
                default,
            }),
        }
    }

    /// Adds a rule that allows what `m` matches.
    pub fn allow(self, m: Match) -> Self {
        self.push(Action::Allow, m)
    }

    /// Adds a rule that denies what `m` matches.
    pub fn deny(self, m: Match) -> Self {
        self.push(Action::Deny, m)
    }

    fn push(mut self, action: Action, m: Match) -> Self {
        Arc::make_mut(&mut self.inner).rules.push((action, m));
        self
    }

    /// For proxies exposed beyond localhost: denies loopback, private (RFC 1918, unique
    /// local), shared (CGNAT), link-local (which holds the cloud metadata services at
    /// 169.254.169.254), unspecified, multicast, benchmarking and reserved addresses, and the
    /// name `localhost`; allows the rest. Add rules after it to narrow it further.
    ///
    /// Names are resolved before the address rules apply, and the address that passed is the
    /// one dialed, so a name that resolves to a private address (DNS rebinding) is denied.
    pub fn public_only() -> Self {
        let mut rules = Self::allow_by_default().deny(Match::domain_suffix("localhost"));
        for net in [
            "0.0.0.0/8",
            "10.0.0.0/8",
            "100.64.0.0/10",
            "127.0.0.0/8",
            "169.254.0.0/16",
            "172.16.0.0/12",
            "192.0.0.0/24",
            "192.168.0.0/16",
            "198.18.0.0/15",
            "224.0.0.0/4",
            "240.0.0.0/4",
            "::/96",
            "64:ff9b:1::/48",
            "fc00::/7",
            "fe80::/10",
            "fec0::/10",
            "ff00::/8",
        ] {
            rules = rules.deny(Match::cidr(net.parse().expect("valid built-in network")));
        }
        rules
    }

    /// For tests and local development: allows loopback addresses and the name `localhost`
    /// (and names under it, RFC 6761), and denies everything else, any other name without
    /// looking it up (so that nothing behind the proxy, a browser's background requests say,
    /// makes it send a DNS query).
    pub fn loopback_only() -> Self {
        let mut rules = Self::deny_by_default()
            .allow(Match::domain_suffix("localhost"))
            .deny(Match::any_name());
        for net in ["127.0.0.0/8", "::1/128"] {
            rules = rules.allow(Match::cidr(net.parse().expect("valid built-in network")));
        }
        rules
    }

    /// Judges a destination: its name when the client gave one, its address once known, and
    /// its port.
    pub fn verdict(&self, name: Option<&str>, ip: Option<IpAddr>, port: u16) -> Verdict {
        let ip = ip.map(|ip| ip.to_canonical());
        for (action, m) in &self.inner.rules {
            match m.matches(name, ip, port) {
                Some(true) => return action.verdict(),
                Some(false) => {}
                None => return Verdict::NeedsAddress,
            }
        }
        self.inner.default.verdict()
    }
}

impl Action {
    fn verdict(self) -> Verdict {
        match self {
            Self::Allow => Verdict::Allow,
            Self::Deny => Verdict::Deny,
        }
    }
}

// ===== impl Match =====

impl Match {
    /// Destinations whose address is in `cidr` (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn cidr(cidr: Cidr) -> Self {
        Self {
            cidr: Some(cidr),
            ..Self::default()
        }
    }

    /// Destinations on `port`.
    pub fn port(port: u16) -> Self {
        Self::ports(port..=port)
    }

    /// Destinations on a port in `ports`.
    pub fn ports(ports: RangeInclusive<u16>) -> Self {
        Self {
            ports: Some(ports),
            ..Self::default()
        }
    }

    /// Destinations the client named `suffix` or a subdomain of it (case-insensitive).
    /// Destinations given as addresses never match.
    pub fn domain_suffix(suffix: &str) -> Self {
        Self {
            suffix: Some(suffix.trim_end_matches('.').to_ascii_lowercase().into()),
            ..Self::default()
        }
    }

    /// Destinations the client named, whatever the name; destinations given as addresses
    /// never match. Decided without a lookup.
    pub fn any_name() -> Self {
        Self {
            named: true,
            ..Self::default()
        }
    }

    /// Also requires the port to be in `ports`.
    pub fn and_ports(mut self, ports: RangeInclusive<u16>) -> Self {
        self.ports = Some(ports);
        self
    }

    /// `Some(matches)`, or `None` when the answer depends on an address not known yet.
    fn matches(&self, name: Option<&str>, ip: Option<IpAddr>, port: u16) -> Option<bool> {
        if let Some(ports) = &self.ports
            && !ports.contains(&port)
        {
            return Some(false);
        }
        if self.named && name.is_none() {
            return Some(false);
        }
        if let Some(suffix) = &self.suffix {
            let Some(name) = name else {
                return Some(false);
            };
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let under = name
                .strip_suffix(&**suffix)
                .is_some_and(|head| head.is_empty() || head.ends_with('.'));
            if !under {
                return Some(false);
            }
        }
        match (&self.cidr, ip) {
            (Some(cidr), Some(ip)) => Some(cidr.contains(ip)),
            (Some(_), None) => None,
            (None, _) => Some(true),
        }
    }
}

// ===== impl Cidr =====

impl Cidr {
    /// The network of `addr` with `prefix` bits; `None` when the prefix is too long.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self {
            network: addr,
            prefix,
        })
    }

    /// Whether `ip` is in the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(ip)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let mask = u128::MAX << (128 - u32::from(prefix));
    a & mask == b & mask
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(input: &str) -> Result<Self, CidrError> {
        let error = || CidrError {
            input: input.into(),
        };
        let (addr, prefix) = match input.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (input, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| error())?;
        let prefix = match prefix {
            Some(prefix) => prefix.parse().map_err(|_| error())?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        Self::new(addr, prefix).ok_or_else(error)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid network `{}`: expected ADDRESS/PREFIX",
            self.input
        )
    }
}

impl StdError for CidrError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    /// Asserts that `rules` give `verdict` for each of `addresses` (port 80, no name).
    fn assert_verdicts(rules: &Rules, addresses: &[&str], verdict: Verdict) {
        for address in addresses {
            assert_eq!(rules.verdict(None, ip(address), 80), verdict, "{address}");
        }
    }

    #[test]
    fn cidr_contains() {
        let net: Cidr = "172.16.0.0/12".parse().unwrap();
        assert!(net.contains("172.31.255.255".parse().unwrap()));
        assert!(!net.contains("172.32.0.0".parse().unwrap()));
        assert!(net.contains("::ffff:172.16.0.1".parse().unwrap()));
        let v6: Cidr = "fe80::/10".parse().unwrap();
        assert!(v6.contains("fe80::1".parse().unwrap()));
        assert!(!v6.contains("2001:db8::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense/8".parse::<Cidr>().is_err());
        assert_eq!("1.2.3.4".parse::<Cidr>().unwrap().to_string(), "1.2.3.4/32");
    }

    #[test]
    fn loopback_only_allows_loopback_and_denies_other_names_without_a_lookup() {
        let rules = Rules::loopback_only();
        let allowed = ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"];
        assert_verdicts(&rules, &allowed, Verdict::Allow);
        let denied = ["10.0.0.1", "8.8.8.8", "::2", "169.254.169.254"];
        assert_verdicts(&rules, &denied, Verdict::Deny);
        assert_eq!(rules.verdict(Some("localhost"), None, 80), Verdict::Allow);
        assert_eq!(rules.verdict(Some("a.localhost"), None, 80), Verdict::Allow);
        // Not `NeedsAddress`: no lookup for a name that could only be denied.
        assert_eq!(
            rules.verdict(Some("clients2.google.com"), None, 443),
            Verdict::Deny
        );
        assert_eq!(
            Match::any_name().matches(Some("example.test"), None, 80),
            Some(true)
        );
        assert_eq!(
            Match::any_name().matches(None, ip("1.2.3.4"), 80),
            Some(false)
        );
    }

    #[test]
    fn public_only_denies_what_is_not_public() {
        let rules = Rules::public_only();
        let denied = [
            "127.0.0.1",
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "224.0.0.1",
        ];
        assert_verdicts(&rules, &denied, Verdict::Deny);
        let allowed = ["93.184.216.34", "2606:4700::1111", "8.8.8.8"];
        assert_verdicts(&rules, &allowed, Verdict::Allow);
        assert_eq!(rules.verdict(Some("localhost"), None, 80), Verdict::Deny);
        assert_eq!(rules.verdict(Some("LOCALHOST."), None, 80), Verdict::Deny);
        assert_eq!(
            rules.verdict(Some("example.test"), None, 80),
            Verdict::NeedsAddress
        );
        assert_eq!(
            rules.verdict(Some("rebind.test"), ip("127.0.0.1"), 80),
            Verdict::Deny
        );
    }

    #[test]
    fn first_match_wins_and_conditions_combine() {
        let rules = Rules::deny_by_default()
            .allow(Match::domain_suffix("example.test").and_ports(443..=443))
            .allow(Match::cidr("192.0.2.0/24".parse().unwrap()).and_ports(80..=80));
        assert_eq!(
            rules.verdict(Some("a.example.test"), None, 443),
            Verdict::Allow
        );
        assert_eq!(
            rules.verdict(Some("example.test"), None, 443),
            Verdict::Allow
        );
        assert_eq!(
            rules.verdict(Some("badexample.test"), None, 443),
            Verdict::Deny
        );
        assert_eq!(rules.verdict(None, ip("192.0.2.7"), 80), Verdict::Allow);
        assert_eq!(rules.verdict(None, ip("192.0.2.7"), 81), Verdict::Deny);
        assert_eq!(
            rules.verdict(Some("a.example.test"), ip("192.0.2.7"), 22),
            Verdict::Deny
        );
        let ports = Rules::allow_by_default().deny(Match::ports(1..=1023));
        assert_eq!(ports.verdict(Some("x.test"), None, 22), Verdict::Deny);
        assert_eq!(ports.verdict(Some("x.test"), None, 8080), Verdict::Allow);
    }
}
