//! What every example shares: its command-line face and its logging.
//!
//! Each example takes `--listen ADDR` (a default on 127.0.0.1), the options it documents,
//! logs through `RUST_LOG`, prints `listening on ADDR` once it accepts connections, and shuts
//! down gracefully on SIGINT or SIGTERM.

use rama::{
    egress::{Match, Rules},
    graceful, tcp, ws,
};
use std::{
    collections::HashMap,
    fmt, io,
    net::{SocketAddr, ToSocketAddrs},
    process,
    str::FromStr,
    time::Duration,
};

/// Parsed command-line options: `--name value` pairs (repeatable) and `--flag`s.
#[derive(Debug)]
pub struct Args {
    usage: &'static str,
    values: HashMap<String, Vec<String>>,
}

impl Args {
    /// Parses `std::env::args`, exiting with `usage` on `--help` or a malformed line.
    /// `flags` are the options that take no value; an option `usage` does not name is an
    /// error (a mistyped `--user` or `--deny-port` must not leave a proxy open).
    pub fn parse(usage: &'static str, flags: &[&str]) -> Self {
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                println!("{usage}");
                process::exit(0);
            }
            let Some(option) = arg.strip_prefix("--") else {
                fail(usage, format_args!("unexpected argument `{arg}`"));
            };
            let (name, inline) = match option.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (option, None),
            };
            if !options(usage).any(|known| known == name) {
                fail(usage, format_args!("unknown option `--{name}`"));
            }
            let value = match inline {
                Some(value) => value.to_owned(),
                None if flags.contains(&name) => String::new(),
                None => args
                    .next()
                    .unwrap_or_else(|| fail(usage, format_args!("`--{name}` needs a value"))),
            };
            values.entry(name.to_owned()).or_default().push(value);
        }
        Self { usage, values }
    }

    /// The last value of `--name` as a duration in seconds (fractions allowed), or
    /// `default`'s; exits with the usage on a negative, infinite or too large value.
    pub fn seconds(&self, name: &str, default: &str) -> Duration {
        let seconds: f64 = self.get(name, default);
        Duration::try_from_secs_f64(seconds)
            .unwrap_or_else(|error| fail(self.usage, format_args!("--{name} {seconds}: {error}")))
    }

    /// The last value of `--name`, parsed, or `default`.
    pub fn get<T>(&self, name: &str, default: &str) -> T
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let raw = self.raw(name).unwrap_or(default);
        self.parse_value(name, raw)
    }

    /// The last value of `--name`, parsed; exits with the usage when it is missing.
    pub fn required<T>(&self, name: &str) -> T
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.raw(name) {
            Some(raw) => self.parse_value(name, raw),
            None => fail(self.usage, format_args!("`--{name}` is required")),
        }
    }

    /// Every value of the repeatable option `--name`, in the order given.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }

    /// Whether the flag `--name` was given.
    pub fn flag(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    fn raw(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    fn parse_value<T>(&self, name: &str, raw: &str) -> T
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        raw.parse()
            .unwrap_or_else(|error| fail(self.usage, format_args!("--{name} {raw}: {error}")))
    }
}

/// The options `usage` names: its words that start with `--`.
fn options(usage: &str) -> impl Iterator<Item = &str> {
    usage
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter_map(|word| word.strip_prefix("--"))
        .filter(|name| !name.is_empty())
}

/// What an example's `main` fails with: printed as the error and its causes, one line
/// (`main` prints its error with `Debug`, which for a boxed error is a struct dump or a
/// quoted string).
pub struct Failure(rama::BoxError);

impl<E: Into<rama::BoxError>> From<E> for Failure {
    fn from(error: E) -> Self {
        Self(error.into())
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", rama::error::Chain(&*self.0))
    }
}

fn fail(usage: &str, message: fmt::Arguments<'_>) -> ! {
    eprintln!("error: {message}\n\n{usage}");
    process::exit(2)
}

/// The egress rules of the proxies: a proxy on loopback (or with `--allow-private`) may reach
/// anything, one listening beyond it only public addresses, one with `--loopback-only` only
/// loopback (other names refused without a lookup: the tests' browsers); `--deny-port PORT`
/// (repeatable) denies ports on top.
pub fn egress_rules(args: &Args, listen: std::net::SocketAddr) -> Result<Rules, String> {
    let mut rules = if args.flag("loopback-only") {
        Rules::loopback_only()
    } else if listen.ip().is_loopback() || args.flag("allow-private") {
        Rules::allow_by_default()
    } else {
        Rules::public_only()
    };
    for port in args.all("deny-port") {
        let port: u16 = port
            .parse()
            .map_err(|e| format!("--deny-port {port}: {e}"))?;
        rules = rules.deny(Match::port(port));
    }
    Ok(rules)
}

/// `NAME:PASSWORD@` of the first `--user`, for the curl lines an example prints: each
/// percent-encoded but for RFC 3986's unreserved characters, so that a `:`, `@` or `%` in
/// either reads as itself in the proxy URL, and nothing in the line means anything to a shell.
pub fn curl_credentials(users: &[String]) -> String {
    let Some((name, password)) = users.first().and_then(|user| user.split_once(':')) else {
        return String::new();
    };
    format!("{}:{}@", percent_encoded(name), percent_encoded(password))
}

fn percent_encoded(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Logs to stderr at the level `RUST_LOG` sets (default `info`).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// How long each server may take to finish its open connections after SIGINT or SIGTERM.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Binds `threads` servers on `listen` (`0`: one per core) that shut down gracefully on SIGINT
/// or SIGTERM, then prints `listening on ADDR` (the line the tests wait for) and the lines
/// `hints` gives for the bound address (how to try the example).
pub fn bind(
    listen: impl ToSocketAddrs,
    threads: usize,
    hints: impl FnOnce(SocketAddr) -> Vec<String>,
) -> io::Result<tcp::PerCore> {
    let servers = tcp::PerCore::bind_threads(listen, threads)?
        .with_graceful_shutdown(graceful::ctrl_c_or_sigterm());
    let addr = servers.local_addr();
    println!("listening on {addr}");
    for hint in hints(addr) {
        println!("{hint}");
    }
    Ok(servers)
}

/// The WebSocket hook of the relaying examples: logs every message (client, upstream,
/// direction, opcode, size) and puts `tag` in front of each text message the upstream sends,
/// which shows a client that its messages went through rama rather than a byte tunnel.
#[derive(Debug, Clone)]
pub struct TagTexts {
    tag: String,
}

impl TagTexts {
    /// Tags upstream texts with `tag`; an empty tag only logs.
    pub fn new(tag: String) -> Self {
        Self { tag }
    }
}

impl ws::Hook for TagTexts {
    fn on_message(
        &self,
        session: &ws::Session,
        direction: ws::Direction,
        message: ws::Message,
    ) -> Option<ws::Message> {
        // `-` where the request did not come through `http::Server` (as the access log has).
        let peer = session
            .peer_addr()
            .map_or_else(|| "-".to_owned(), |peer| peer.to_string());
        let upstream = session.upstream();
        tracing::info!(%peer, %upstream, %direction, opcode = ws::opcode(&message), size = message.len(), "ws message");
        match message {
            ws::Message::Text(text)
                if !self.tag.is_empty() && direction == ws::Direction::UpstreamToClient =>
            {
                Some(ws::Message::text(format!("{}{text}", self.tag)))
            }
            other => Some(other),
        }
    }
}

/// How long a connection may stay idle (no byte either way) before it is closed: what keeps
/// clients that open connections and never use them from holding descriptors for good
/// (an idle HTTP/2 connection has no header-read timeout to end it).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
