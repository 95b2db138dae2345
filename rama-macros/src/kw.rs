//! The words a diagram knows: lower-case shorthands and the rama types it recognises by path.
//!
//! A stage that lands later flips its entry here (see `rama::stage`, "Registering a stage").

/// What an item does in a diagram, as far as the tokens tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A server: the first item.
    Source,
    /// A layer: between the server and the last item.
    Layer,
    /// A service: the last item.
    Terminal,
}

/// Whether a shorthand can be used yet.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Status {
    /// Expands to `bare()` without arguments and to `call(args)` with them.
    Available {
        /// The path a bare use calls with no arguments (when the bare form is allowed).
        bare: Option<&'static str>,
        /// The path a use with arguments calls.
        call: &'static str,
    },
    /// A word kept for a stage that has not landed; the text says so.
    #[allow(
        dead_code,
        reason = "no word is reserved right now; a stage announced before it lands uses it"
    )]
    Reserved(&'static str),
}

/// A lower-case word that stands for a rama stage, without any import.
#[derive(Debug)]
pub(crate) struct Shorthand {
    pub(crate) name: &'static str,
    pub(crate) role: Role,
    /// How many arguments it takes, inclusive.
    pub(crate) args: (usize, usize),
    /// How to write it, for messages.
    pub(crate) usage: &'static str,
    pub(crate) status: Status,
}

/// Every shorthand. Keep `rama::stage`'s module docs and the crate docs in step.
pub(crate) const SHORTHANDS: &[Shorthand] = &[
    Shorthand {
        name: "target",
        role: Role::Terminal,
        args: (0, 1),
        usage: "`target` (the destination the client asked for) or `target(\"host:port\")`",
        status: Status::Available {
            bare: Some("::rama::Target::requested"),
            call: "::rama::target",
        },
    },
    Shorthand {
        name: "timeout",
        role: Role::Layer,
        args: (1, 1),
        usage: "`timeout(Duration::from_secs(30))`",
        status: Status::Available {
            bare: None,
            call: "::rama::stage::timeout",
        },
    },
    Shorthand {
        name: "limit",
        role: Role::Layer,
        args: (1, 1),
        usage: "`limit(1024)` (connections at once)",
        status: Status::Available {
            bare: None,
            call: "::rama::stage::limit",
        },
    },
    Shorthand {
        name: "tls",
        role: Role::Layer,
        args: (0, 1),
        usage: "`tls` (a development certificate) or `tls(server_config)`",
        status: Status::Available {
            bare: Some("::rama::tls::dev_acceptor"),
            call: "::rama::tls::acceptor",
        },
    },
];

/// A rama type the macro recognises by the last two segments of a path (`tcp::Server`,
/// `rama::tcp::Server`), resolved through the user's imports.
#[derive(Debug)]
pub(crate) struct Known {
    /// The module segment before the type (empty: any or none).
    pub(crate) module: &'static str,
    pub(crate) ty: &'static str,
    pub(crate) role: Role,
    /// Whether the type alone means its bare form (`<T as rama::stage::Bare>::bare()`).
    pub(crate) bare: bool,
}

/// Every rama type the macro recognises.
pub(crate) const KNOWN: &[Known] = &[
    Known {
        module: "tcp",
        ty: "Server",
        role: Role::Source,
        bare: true,
    },
    Known {
        module: "",
        ty: "Target",
        role: Role::Terminal,
        bare: false,
    },
    Known {
        module: "socks5",
        ty: "Server",
        role: Role::Layer,
        bare: true,
    },
    Known {
        module: "socks5",
        ty: "Client",
        role: Role::Terminal,
        bare: false,
    },
    Known {
        module: "http",
        ty: "Server",
        role: Role::Layer,
        bare: true,
    },
    Known {
        module: "http",
        ty: "ForwardProxy",
        role: Role::Layer,
        bare: true,
    },
    Known {
        module: "ws",
        ty: "Relay",
        role: Role::Layer,
        bare: true,
    },
    Known {
        module: "ws",
        ty: "Serve",
        role: Role::Terminal,
        bare: false,
    },
    Known {
        module: "detect",
        ty: "FirstByte",
        role: Role::Terminal,
        bare: false,
    },
    Known {
        module: "detect",
        ty: "socks5_or_http",
        role: Role::Terminal,
        bare: false,
    },
    Known {
        module: "detect",
        ty: "Detect",
        role: Role::Terminal,
        bare: false,
    },
    Known {
        module: "tls",
        ty: "Detect",
        role: Role::Terminal,
        bare: false,
    },
];

/// The shorthand called `name`.
pub(crate) fn shorthand(name: &str) -> Option<&'static Shorthand> {
    SHORTHANDS.iter().find(|s| s.name == name)
}

/// The shorthand `name` is probably a typo of.
pub(crate) fn did_you_mean(name: &str) -> Option<&'static Shorthand> {
    let limit = match name.chars().count() {
        0..=2 => return None,
        3..=4 => 1,
        _ => 2,
    };
    SHORTHANDS
        .iter()
        .map(|s| (distance(name, s.name), s))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, s)| s)
}

/// Edit distance with adjacent transpositions (optimal string alignment): `tsl` is one edit
/// away from `tls`.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_shorthand() {
        assert_eq!(did_you_mean("tsl").map(|s| s.name), Some("tls"));
        assert_eq!(did_you_mean("timout").map(|s| s.name), Some("timeout"));
        assert_eq!(did_you_mean("targte").map(|s| s.name), Some("target"));
        assert_eq!(did_you_mean("upstream").map(|s| s.name), None);
        assert_eq!(did_you_mean("x").map(|s| s.name), None);
    }
}
