//! What every example shares: its command-line face and its logging.
//!
//! Each example takes `--listen ADDR` (a default on 127.0.0.1), the options it documents,
//! logs through `RUST_LOG`, prints `listening on ADDR` once it accepts connections, and shuts
//! down gracefully on SIGINT or SIGTERM.

use rama::egress::{Match, Rules};
use std::{collections::HashMap, fmt, process, str::FromStr};

/// Parsed command-line options: `--name value` pairs (repeatable) and `--flag`s.
#[derive(Debug)]
pub struct Args {
    usage: &'static str,
    values: HashMap<String, Vec<String>>,
}

impl Args {
    /// Parses `std::env::args`, exiting with `usage` on `--help` or a malformed line.
    /// `flags` are the options that take no value.
    pub fn parse(usage: &'static str, flags: &[&str]) -> Self {
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                println!("{usage}");
                process::exit(0);
            }
            let Some(name) = arg.strip_prefix("--") else {
                fail(usage, format_args!("unexpected argument `{arg}`"));
            };
            let (name, value) = match name.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None if flags.contains(&name) => (name.to_owned(), String::new()),
                None => match args.next() {
                    Some(value) => (name.to_owned(), value),
                    None => fail(usage, format_args!("`--{name}` needs a value")),
                },
            };
            values.entry(name).or_default().push(value);
        }
        Self { usage, values }
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

fn fail(usage: &str, message: fmt::Arguments<'_>) -> ! {
    eprintln!("error: {message}\n\n{usage}");
    process::exit(2)
}

/// The egress rules of the proxies: a proxy on loopback (or with `--allow-private`) may reach
/// anything, one listening beyond it only public addresses; `--deny-port PORT` (repeatable)
/// denies ports on top.
pub fn egress_rules(args: &Args, listen: std::net::SocketAddr) -> Result<Rules, String> {
    let mut rules = if listen.ip().is_loopback() || args.flag("allow-private") {
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

/// `NAME:PASSWORD@` of the first `--user`, for the curl lines an example prints.
pub fn curl_credentials(users: &[String]) -> String {
    users
        .first()
        .map(|user| format!("{user}@"))
        .unwrap_or_default()
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
