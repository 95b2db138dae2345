//! The checks that tokens can answer: order, shorthands, argument counts. Produces the plan
//! [`expand`](crate::expand) turns into code.

use crate::{
    Ctxt,
    kw::{self, Known, Role, Shorthand, Status},
    parse::Diagram,
};
use syn::{Expr, ExprCall, ExprPath, Ident, Path, punctuated::Punctuated, token::Comma};

/// A diagram that passed every token check.
pub(crate) struct Plan {
    /// The server.
    pub(crate) source: Item,
    /// The layers, outermost first.
    pub(crate) stages: Vec<Item>,
    /// The service.
    pub(crate) terminal: Item,
}

/// One item of a diagram and how its root is written.
pub(crate) struct Item {
    pub(crate) expr: Expr,
    pub(crate) form: Form,
}

/// How the root of an item's method chain (`root.a().b()`) is written.
pub(crate) enum Form {
    /// A rama shorthand: `target`, `timeout(d)`, ...; `args` is `None` when written bare.
    Shorthand {
        shorthand: &'static Shorthand,
        ident: Ident,
        args: Option<Punctuated<Expr, Comma>>,
    },
    /// A rama type named alone (`tcp::Server`), meaning its bare form.
    Bare(Path),
    /// Anything else: the user's own expression, kept as written.
    Plain,
}

/// Checks the diagram; `None` when something was reported to `cx`.
pub(crate) fn validate(diagram: Diagram, cx: &mut Ctxt) -> Option<Plan> {
    let count = diagram.items.len();
    let mut items = Vec::with_capacity(count);
    for (position, expr) in diagram.items.into_iter().enumerate() {
        let Some(expr) = expr else {
            items.push(None);
            continue;
        };
        let (form, role) = classify(&expr, cx);
        check_position(&expr, &form, role, position, count, cx);
        items.push(Some(Item { expr, form }));
    }
    if let (1, Some(Some(item))) = (count, items.first())
        && !matches!(
            role_of(&item.form, &item.expr),
            Some(Role::Layer | Role::Terminal)
        )
    {
        cx.error_spanned(
            &item.expr,
            "a diagram needs a service after its server, such as `=> target(\"host:port\")`",
        );
    }
    if cx.has_errors() {
        return None;
    }
    let mut items = items
        .into_iter()
        .map(|item| item.expect("no error, every item parsed"));
    let source = items.next()?;
    let mut stages: Vec<Item> = items.collect();
    let terminal = stages.pop()?;
    Some(Plan {
        source,
        stages,
        terminal,
    })
}

/// Reads the root of `expr` and checks what can be checked of a shorthand.
fn classify(expr: &Expr, cx: &mut Ctxt) -> (Form, Option<Role>) {
    let form = match root(expr) {
        Expr::Path(path) if word(path).is_some() => {
            let ident = word(path).expect("checked");
            shorthand_form(ident, None, expr, cx)
        }
        Expr::Call(ExprCall { func, args, .. }) => match &**func {
            Expr::Path(path) if word(path).is_some() => {
                let ident = word(path).expect("checked");
                shorthand_form(ident, Some(args.clone()), expr, cx)
            }
            _ => Form::Plain,
        },
        Expr::Path(ExprPath {
            qself: None, path, ..
        }) if known_type(path).is_some_and(|k| k.bare) => Form::Bare(path.clone()),
        _ => Form::Plain,
    };
    let role = role_of(&form, expr);
    (form, role)
}

/// What an item is, when the tokens tell.
fn role_of(form: &Form, expr: &Expr) -> Option<Role> {
    match form {
        Form::Shorthand { shorthand, .. } => Some(shorthand.role),
        Form::Bare(path) => known(path).map(|k| k.role),
        Form::Plain => match root(expr) {
            Expr::Path(ExprPath { path, .. }) => known(path).map(|k| k.role),
            Expr::Call(ExprCall { func, .. }) => match &**func {
                Expr::Path(ExprPath { path, .. }) => known(path).map(|k| k.role),
                _ => None,
            },
            _ => None,
        },
    }
}

/// A shorthand's form, after checking its name and arguments.
fn shorthand_form(
    ident: &Ident,
    args: Option<Punctuated<Expr, Comma>>,
    expr: &Expr,
    cx: &mut Ctxt,
) -> Form {
    let name = ident.to_string();
    let Some(shorthand) = kw::shorthand(&name) else {
        if let Some(likely) = kw::did_you_mean(&name) {
            cx.error_spanned(
                ident,
                format!(
                    "unknown shorthand `{name}`: did you mean `{}`?\n\
                     (to use your own `{name}`, write it in parentheses: `({name})`)",
                    likely.name
                ),
            );
        }
        return Form::Plain;
    };
    if let Status::Reserved(why) = shorthand.status {
        cx.error_spanned(ident, format!("`{name}` is not available yet: {why}"));
        return Form::Plain;
    }
    let given = args.as_ref().map_or(0, Punctuated::len);
    let (min, max) = shorthand.args;
    let bare_allowed = matches!(shorthand.status, Status::Available { bare: Some(_), .. });
    if args.is_none() && !bare_allowed {
        cx.error_spanned(
            ident,
            format!(
                "`{name}` needs an argument: write it as {}",
                shorthand.usage
            ),
        );
    } else if given < min || given > max {
        let takes = match (min, max) {
            (1, 1) => "one argument".to_owned(),
            (0, 1) => "at most one argument".to_owned(),
            (min, max) if min == max => format!("{min} arguments"),
            (min, max) => format!("{min} to {max} arguments"),
        };
        let spanned: &dyn quote::ToTokens = match root(expr) {
            Expr::Call(call) => call,
            _ => ident,
        };
        cx.error_spanned(
            spanned,
            format!(
                "`{name}` takes {takes}, but {given} {} given: write it as {}",
                if given == 1 { "was" } else { "were" },
                shorthand.usage
            ),
        );
    }
    Form::Shorthand {
        shorthand,
        ident: ident.clone(),
        args,
    }
}

/// The checks of where an item stands.
fn check_position(
    expr: &Expr,
    form: &Form,
    role: Option<Role>,
    position: usize,
    count: usize,
    cx: &mut Ctxt,
) {
    let name = match form {
        Form::Shorthand { shorthand, .. } => format!("`{}`", shorthand.name),
        _ => "this".to_owned(),
    };
    let first = position == 0;
    let last = position + 1 == count;
    match role {
        Some(Role::Layer | Role::Terminal) if first => {
            let what = if role == Some(Role::Layer) {
                "a layer"
            } else {
                "a service"
            };
            cx.error_spanned(
                expr,
                format!(
                    "a diagram starts with a server, such as \
                     `tcp::Server::bind(\"127.0.0.1:8080\")`, but {name} is {what}"
                ),
            );
        }
        Some(Role::Source) if !first => {
            cx.error_spanned(
                expr,
                "a second server: a diagram has one server, at its start",
            );
        }
        Some(Role::Terminal) if !last => {
            cx.error_spanned(expr, format!("{name} ends a diagram, so it must come last"));
        }
        Some(Role::Layer) if last && count > 1 => {
            cx.error_spanned(
                expr,
                format!("{name} is a layer, but a diagram ends with a service, such as `target`"),
            );
        }
        _ => {}
    }
}

/// The innermost receiver of a method chain.
pub(crate) fn root(expr: &Expr) -> &Expr {
    match expr {
        Expr::MethodCall(call) => root(&call.receiver),
        expr => expr,
    }
}

/// The innermost receiver of a method chain, mutably.
pub(crate) fn root_mut(expr: &mut Expr) -> &mut Expr {
    match expr {
        Expr::MethodCall(call) => root_mut(&mut call.receiver),
        expr => expr,
    }
}

/// A single lower-case word without generics: a shorthand candidate.
fn word(path: &ExprPath) -> Option<&Ident> {
    if path.qself.is_some() || !path.attrs.is_empty() {
        return None;
    }
    let ident = path.path.get_ident()?;
    let name = ident.to_string();
    name.starts_with(|c: char| c.is_ascii_lowercase())
        .then_some(ident)
}

/// The rama type a path names, by its segments (`tcp::Server`, `tcp::Server::bind`).
fn known(path: &Path) -> Option<&'static Known> {
    known_at(path).map(|(known, _)| known)
}

/// The rama type a path names, if the path ends with it (`tcp::Server`, not
/// `tcp::Server::bind`).
fn known_type(path: &Path) -> Option<&'static Known> {
    known_at(path).and_then(|(known, last)| last.then_some(known))
}

fn known_at(path: &Path) -> Option<(&'static Known, bool)> {
    let idents: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    kw::KNOWN.iter().find_map(|known| {
        idents.iter().enumerate().find_map(|(i, ident)| {
            let module_fits = known.module.is_empty() || (i > 0 && idents[i - 1] == known.module);
            (ident == known.ty && module_fits).then_some((known, i + 1 == idents.len()))
        })
    })
}
