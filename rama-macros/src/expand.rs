//! Code generation only: turns a checked [`Plan`] into the typed stack and its checks. Reports
//! no user errors of its own; the type checks it emits are rustc's to report.

use crate::{
    kw::Status,
    validate::{Form, Item, Plan, root_mut},
};
use proc_macro2::{Delimiter, Group, Ident, Literal, Punct, Spacing, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::{Expr, parse_quote};

/// The whole expansion: bind every item in order, check each arrow against the stage
/// contracts, nest the layers around the service, and hand the stack to the server.
pub(crate) fn expand(plan: Plan) -> TokenStream {
    let Plan {
        source,
        stages,
        terminal,
    } = plan;

    let source_var = var("__rama_source");
    let service_var = var("__rama_service");
    let stage_vars: Vec<Ident> = (1..=stages.len())
        .map(|i| var(&format!("__rama_stage_{i}")))
        .collect();
    let flow = var("__rama_flow");

    let mut out = TokenStream::new();
    out.extend(quote! {
        #[allow(unused_imports)]
        use ::rama::stage::check::{ViaContract as _, ViaTower as _};
    });

    // The items, in the order they are written.
    let (source_first, source_last) = ends(&source.expr);
    let source_expr = resolve(source);
    out.extend(quote_spanned! {source_first=>
        let #source_var = ::rama::stage::check::source(#source_expr);
    });
    let mut spans = Vec::with_capacity(stages.len());
    for (var, stage) in stage_vars.iter().zip(stages) {
        spans.push(ends(&stage.expr));
        let expr = resolve(stage);
        out.extend(quote! { let #var = #expr; });
    }
    let (terminal_first, terminal_last) = ends(&terminal.expr);
    let terminal_expr = resolve(terminal);
    out.extend(quote! { let #service_var = #terminal_expr; });

    // The contract of every arrow, spanned on the stage it points at.
    let source_ref = spanned_ref(&source_var, source_first, source_last);
    out.extend(quote_spanned! {source_first=>
        let #flow = ::rama::stage::check::flow(#source_ref);
    });
    let terminal_ends = (terminal_first, terminal_last);
    let arrows = stage_vars
        .iter()
        .zip(&spans)
        .chain([(&service_var, &terminal_ends)]);
    for (var, &(first, last)) in arrows {
        let stage_ref = spanned_ref(var, first, last);
        out.extend(quote_spanned! {first=>
            let #flow = (&::rama::stage::check::Probe::new(#flow, &#var)).role().then(#stage_ref);
        });
    }
    out.extend(quote! { let _ = #flow; });

    // The stack, as `ServiceBuilder::new().layer(a).layer(b).service(s)` builds it:
    // `a.layer(b.layer(s))`.
    let mut stack = service_var.to_token_stream();
    for (var, &(first, last)) in stage_vars.iter().zip(&spans).rev() {
        let stage_ref = spanned_ref(var, first, last);
        stack = quote_spanned! {first=> ::rama::stage::check::layer(#stage_ref, #stack) };
    }
    let stack_var = var("__rama_stack");
    out.extend(quote! { let #stack_var = #stack; });
    // The arguments span the source and the terminal, and the calls the terminal, so that a
    // failed bound underlines the item at fault; the same failure at the same place is
    // reported once.
    let source_arg = spanned_ref(&source_var, source_first, source_last);
    let stack_arg = spanned_move("__rama_stack", terminal_first, terminal_last);
    let mut args = Group::new(Delimiter::Parenthesis, quote!(#source_arg, #stack_arg));
    args.set_span(terminal_last);
    out.extend(quote_spanned! {terminal_first=>
        let #stack_var = ::rama::stage::check::stack #args;
    });
    let source_arg = spanned_move("__rama_source", source_first, source_last);
    let stack_arg = spanned_move("__rama_stack", terminal_first, terminal_last);
    let mut args = Group::new(Delimiter::Parenthesis, quote!(#source_arg, #stack_arg));
    args.set_span(terminal_last);
    out.extend(quote_spanned! {terminal_first=> ::rama::stage::check::serve #args });

    quote! { { #out } }
}

/// An item's expression with its shorthand or bare form resolved to rama's items.
fn resolve(item: Item) -> Expr {
    let Item { mut expr, form } = item;
    match form {
        // `(name)` is how a user writes their own lower-case item that looks like a
        // shorthand: the parentheses did their job in the diagram, and kept in the expansion
        // they would draw an `unused_parens` warning on the user's code.
        Form::Plain => {
            if let Expr::Paren(paren) = expr {
                expr = *paren.expr;
            }
        }
        Form::Shorthand {
            shorthand,
            ident,
            args,
        } => {
            let Status::Available { bare, call } = shorthand.status else {
                unreachable!("reserved shorthands are rejected by validate");
            };
            let path = match &args {
                Some(_) => call,
                None => bare.expect("bare use of a shorthand without one is rejected"),
            };
            let path: syn::Path = syn::parse_str(path).expect("shorthand paths are valid");
            let path = respan(path.to_token_stream(), ident.span());
            // The parentheses keep the user's span, so the call spans what the user wrote.
            let parens = match root_mut(&mut expr) {
                Expr::Call(call) => call.paren_token.span.join(),
                _ => ident.span(),
            };
            let mut args = Group::new(Delimiter::Parenthesis, args.to_token_stream());
            args.set_span(parens);
            *root_mut(&mut expr) = parse_quote!(#path #args);
        }
        Form::Bare(path) => {
            // `<tcp::Server as Bare>::bare()`, spanned from the first segment to the last.
            let (first, last) = ends_of(&path);
            let mut lt = Punct::new('<', Spacing::Alone);
            lt.set_span(first);
            let mut call = Group::new(Delimiter::Parenthesis, TokenStream::new());
            call.set_span(last);
            let tail = quote_spanned!(last=> as ::rama::stage::Bare>::bare);
            *root_mut(&mut expr) = parse_quote!(#lt #path #tail #call);
        }
    }
    expr
}

/// A local of the expansion. Its name is prefixed to stay clear of the user's; it is not
/// `mixed_site`, because rustc cannot join a macro-hygiene span with the user's spans, and the
/// checks below rely on that join to underline a whole stage.
fn var(name: &str) -> Ident {
    Ident::new(name, Span::call_site())
}

/// `&var`, with `&` located at `first` and `var` at `last`: rustc spans the expression over
/// the user's whole stage, so a failed bound underlines all of it.
fn spanned_ref(var: &Ident, first: Span, last: Span) -> TokenStream {
    let mut amp = Punct::new('&', Spacing::Alone);
    amp.set_span(first);
    let var = Ident::new(&var.to_string(), last);
    quote! { #amp #var }
}

/// `(var,).0`: moves `var`, and rustc spans the expression from `first` to `last`.
fn spanned_move(var: &str, first: Span, last: Span) -> TokenStream {
    let var = Ident::new(var, first);
    let mut tuple = Group::new(Delimiter::Parenthesis, quote_spanned!(first=> #var,));
    tuple.set_span(first);
    let mut field = Literal::usize_unsuffixed(0);
    field.set_span(last);
    let mut dot = Punct::new('.', Spacing::Alone);
    dot.set_span(last);
    quote! { #tuple #dot #field }
}

/// The spans of the first and last token of `expr`.
fn ends(expr: &Expr) -> (Span, Span) {
    ends_of(expr)
}

/// The spans of the first and last token of `tokens`.
fn ends_of(tokens: &impl ToTokens) -> (Span, Span) {
    let tokens: Vec<TokenTree> = tokens.to_token_stream().into_iter().collect();
    let first = tokens.first().map_or_else(Span::call_site, span_open);
    let last = tokens.last().map_or(first, span_close);
    (first, last)
}

fn span_open(token: &TokenTree) -> Span {
    match token {
        TokenTree::Group(group) => group.span_open(),
        token => token.span(),
    }
}

fn span_close(token: &TokenTree) -> Span {
    match token {
        TokenTree::Group(group) => group.span_close(),
        token => token.span(),
    }
}

/// `tokens`, every one of them located at `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut new = Group::new(group.delimiter(), respan(group.stream(), span));
                new.set_span(span);
                token = TokenTree::Group(new);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}
