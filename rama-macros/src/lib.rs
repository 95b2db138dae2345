//! The `proxy!` macro of rama: an arrow diagram in, the typed tower stack a person would
//! write by hand out. Use it as `rama::proxy!`; this crate is its implementation.
//!
//! ```no_run
//! use rama::{proxy, tcp};
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), rama::BoxError> {
//! proxy! {
//!     tcp::Server::bind("127.0.0.1:8080")
//!         => limit(1024)
//!         => timeout(Duration::from_secs(30))
//!         => target("127.0.0.1:5201")
//! }
//! .with_graceful_shutdown(rama::graceful::ctrl_c_or_sigterm())
//! .await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Grammar
//!
//! ```text
//! diagram   = source , { "=>" , stage } , "=>" , terminal ;
//! source    = expr ;                      (* a server: tcp::Server::bind(addr), tcp::Server *)
//! stage     = shorthand | expr ;          (* a tower Layer *)
//! terminal  = shorthand | expr ;          (* a tower Service *)
//! shorthand = "timeout" , "(" , expr , ")"
//!           | "limit" , "(" , expr , ")"
//!           | "target" , [ "(" , expr , ")" ] ;
//! expr      = (* any Rust expression without a top-level "=>", and any method calls on a
//!                shorthand: target.connect_timeout(d) *) ;
//! ```
//!
//! - **Shorthands** resolve to rama's items without an import: `timeout(d)` is
//!   `rama::stage::timeout(d)` (tower's `TimeoutLayer`), `limit(n)` is `rama::stage::limit(n)`
//!   (tower's `ConcurrencyLimitLayer`), `target` is `rama::Target::requested()` (dial what the
//!   client asked for) and `target(addr)` is `rama::target(addr)`. `tls(cfg)` is
//!   `rama::tls::acceptor(cfg)` (anything that converts into a `rama::tls::Acceptor`), and a
//!   bare `tls` serves a development certificate for `localhost` (`rama::tls::Acceptor::dev`).
//! - **Paths** resolve through the user's imports: `tcp::Server::bind(addr)` needs
//!   `use rama::tcp;`, any third-party layer is used as written.
//! - **Bare forms**: `tcp::Server` alone listens on the address in `RAMA_LISTEN`, or on
//!   `127.0.0.1:8080` (see `rama::stage::Bare`).
//! - A lower-case word one or two typos away from a shorthand (`tsl`, `timout`) is an error
//!   with a "did you mean"; to use a variable of such a name, write it in parentheses:
//!   `(limits)`. Any other variable or function call is the user's own expression.
//!
//! # What the macro checks
//!
//! From the tokens, each error on the offending token, all reported together: an empty
//! diagram; a diagram that does not start with a server, or has a second one; `target` before
//! the end, or a layer shorthand at the end; a missing service; a dangling, leading or doubled
//! `=>`; `->`, `=`, `>>`, `>`, `,` or `;` used as an arrow; an unknown shorthand close to a known
//! one; a shorthand with the wrong number of arguments; a shorthand not available yet.
//!
//! From the types, through the contract table in `rama::stage` (one error per mistake,
//! underlining the stage): a source that is not a server; an item before the end that is not a
//! tower `Layer`; a stack that does not take what the server hands on (a layer at the end, a
//! service of something else); a registered stage after one that hands on what it cannot take
//! ("`Target` takes `ByteStream`, but `Framing` before it hands on `Frames`").
//!
//! # What it expands to
//!
//! The diagram above becomes (`RAMA_MACROS_DEBUG=1` prints every expansion while compiling):
//!
//! ```text
//! {
//!     use ::rama::stage::check::{ViaContract as _, ViaTower as _};
//!     // The items, evaluated in the order they are written.
//!     let __rama_source = ::rama::stage::check::source(tcp::Server::bind("127.0.0.1:8080"));
//!     let __rama_stage_1 = ::rama::stage::limit(1024);
//!     let __rama_stage_2 = ::rama::stage::timeout(Duration::from_secs(30));
//!     let __rama_service = ::rama::target("127.0.0.1:5201");
//!     // The contract of each arrow: zero-sized markers, no code at run time.
//!     let __rama_flow = ::rama::stage::check::flow(&__rama_source);
//!     let __rama_flow = (&::rama::stage::check::Probe::new(__rama_flow, &__rama_stage_1))
//!         .role().then(&__rama_stage_1);
//!     let __rama_flow = (&::rama::stage::check::Probe::new(__rama_flow, &__rama_stage_2))
//!         .role().then(&__rama_stage_2);
//!     let __rama_flow = (&::rama::stage::check::Probe::new(__rama_flow, &__rama_service))
//!         .role().then(&__rama_service);
//!     let _ = __rama_flow;
//!     // `check::layer(l, s)` is `l.layer(s)`: what `ServiceBuilder::new().layer(..).service(..)`
//!     // does, with a readable error when `l` is not a layer.
//!     let __rama_stack = ::rama::stage::check::layer(
//!         &__rama_stage_1,
//!         ::rama::stage::check::layer(&__rama_stage_2, __rama_service),
//!     );
//!     let __rama_stack = ::rama::stage::check::stack(&__rama_source, (__rama_stack,).0);
//!     // `Source::serve`, which for `tcp::Server` is `tcp::Server::serve`.
//!     ::rama::stage::check::serve((__rama_source,).0, (__rama_stack,).0)
//! }
//! ```
//!
//! Its type is `rama::tcp::Serve<ConcurrencyLimit<Timeout<Target>>>`, exactly the type of
//! `tcp::Server::bind(..).serve(ServiceBuilder::new().concurrency_limit(1024).timeout(..)
//! .service(target(..)))` (the `ui-tests` crate asserts it). No boxing, no `dyn`, no runtime.
//!
//! On errors, the expansion is the errors plus a placeholder of type `tcp::Serve<Target>`, so
//! that `.await` and the builder methods after the macro raise no follow-on errors.
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![forbid(unsafe_code)]

mod expand;
mod kw;
mod parse;
mod validate;

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use std::fmt::Display;

/// Turns an arrow diagram, `SOURCE => STAGE => ... => TERMINAL`, into the server that serves
/// the typed tower stack it describes: awaitable, with the server's builder methods. See the
/// [crate docs](crate) for the grammar, the checks and the expansion.
#[proc_macro]
pub fn proxy(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    let output = diagram(input.into());
    if std::env::var_os("RAMA_MACROS_DEBUG").is_some() {
        eprintln!("proxy! expands to:\n{}", pretty(&output));
    }
    output.into()
}

/// parse → validate → expand; on errors, every error plus a placeholder of the right type.
fn diagram(input: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let diagram = parse::Diagram::parse(input, &mut cx);
    let plan = validate::validate(diagram, &mut cx);
    match (cx.check(), plan) {
        (Ok(()), Some(plan)) => expand::expand(plan),
        (Err(error), _) => {
            let error = error.into_compile_error();
            quote! {{ #error ::rama::stage::check::placeholder() }}
        }
        (Ok(()), None) => unreachable!("validate reports why it made no plan"),
    }
}

/// Collects every error of a diagram, to report them together.
#[derive(Default)]
pub(crate) struct Ctxt {
    errors: Vec<syn::Error>,
}

impl Ctxt {
    /// An error over `tokens`.
    pub(crate) fn error_spanned(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.errors.push(syn::Error::new_spanned(tokens, message));
    }

    /// An error at `span`.
    pub(crate) fn error_at(&mut self, span: Span, message: impl Display) {
        self.errors.push(syn::Error::new(span, message));
    }

    /// An error syn reported.
    pub(crate) fn push(&mut self, error: syn::Error) {
        self.errors.push(error);
    }

    pub(crate) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Every error, combined.
    pub(crate) fn check(self) -> Result<(), syn::Error> {
        let mut errors = self.errors.into_iter();
        let Some(mut first) = errors.next() else {
            return Ok(());
        };
        for error in errors {
            first.combine(error);
        }
        Err(first)
    }
}

/// The expansion, roughly one statement a line.
fn pretty(tokens: &TokenStream) -> String {
    let flat = tokens
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    flat.replace(" :: ", "::")
        .replace(":: ", "::")
        .replace(" (", "(")
        .replace("& ", "&")
        .replace(" . ", ".")
        .replace("; ", ";\n    ")
}
