//! From tokens to a list of item expressions: splits the diagram at its top-level `=>`, reads
//! each item as an expression, and recovers from arrows written some other way.

use crate::Ctxt;
use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::{BinOp, Expr};

/// A diagram as written: its items in order. An item that does not parse is `None`, so the
/// positions of the others stay right for the checks that follow.
pub(crate) struct Diagram {
    pub(crate) items: Vec<Option<Expr>>,
}

impl Diagram {
    /// Reads `input`, reporting what is wrong with its shape to `cx`.
    pub(crate) fn parse(input: TokenStream, cx: &mut Ctxt) -> Diagram {
        let tokens: Vec<TokenTree> = input.into_iter().collect();
        if tokens.is_empty() {
            cx.error_at(
                proc_macro2::Span::call_site(),
                "empty diagram: write a server, its stages and a service, such as \
                 `proxy! { tcp::Server::bind(\"127.0.0.1:8080\") => target(\"127.0.0.1:5201\") }`",
            );
            return Diagram { items: Vec::new() };
        }

        let (segments, arrows) = split(&tokens, is_fat_arrow);
        let mut items = Vec::new();
        let last = segments.len() - 1;
        for (i, segment) in segments.into_iter().enumerate() {
            if segment.is_empty() {
                if i == 0 {
                    cx.error_spanned(&arrows[0], "a diagram starts with a server, not with `=>`");
                } else if i == last {
                    cx.error_spanned(
                        &arrows[i - 1],
                        "dangling `=>`: a service must follow it, such as `target`",
                    );
                } else {
                    cx.error_spanned(
                        &arrows[i],
                        "doubled `=>`: a stage is missing between these arrows",
                    );
                }
                continue;
            }
            parse_item(segment, cx, &mut items);
        }
        Diagram { items }
    }
}

/// Reads one item, or several if they were joined by an arrow that is not `=>`.
fn parse_item(segment: Vec<TokenTree>, cx: &mut Ctxt, items: &mut Vec<Option<Expr>>) {
    let stream: TokenStream = segment.iter().cloned().collect();
    match syn::parse2::<Expr>(stream) {
        Ok(expr) => flatten(expr, cx, items),
        Err(error) => {
            // `a -> b` or `a, b` does not parse as an expression: read the pieces and say
            // which arrow to use. Anything else is reported as syn found it.
            let (pieces, arrows) = split(&segment, is_wrong_arrow);
            let parsed: Option<Vec<Expr>> = (pieces.len() > 1)
                .then(|| {
                    pieces
                        .into_iter()
                        .map(|p| syn::parse2::<Expr>(p.into_iter().collect()).ok())
                        .collect()
                })
                .flatten();
            match parsed {
                Some(exprs) => {
                    for arrow in &arrows {
                        cx.error_spanned(arrow, wrong_arrow(&arrow.to_string().replace(' ', "")));
                    }
                    for expr in exprs {
                        flatten(expr, cx, items);
                    }
                }
                None => {
                    // syn places "unexpected end of input" at the whole macro call: point at
                    // the item's last token instead.
                    let error = match segment.last() {
                        Some(last) if error.to_string().contains("end of input") => {
                            syn::Error::new(last.span(), error)
                        }
                        _ => error,
                    };
                    cx.push(error);
                    items.push(None);
                }
            }
        }
    }
}

/// Splits `a >> b`, `a > b` and `a = b` (which parse as expressions) into their items.
fn flatten(expr: Expr, cx: &mut Ctxt, items: &mut Vec<Option<Expr>>) {
    match expr {
        Expr::Binary(binary) if matches!(binary.op, BinOp::Shr(_) | BinOp::Gt(_)) => {
            let op = match binary.op {
                BinOp::Shr(_) => ">>",
                _ => ">",
            };
            flatten(*binary.left, cx, items);
            cx.error_spanned(binary.op, wrong_arrow(op));
            flatten(*binary.right, cx, items);
        }
        Expr::Assign(assign) => {
            flatten(*assign.left, cx, items);
            cx.error_spanned(assign.eq_token, wrong_arrow("="));
            flatten(*assign.right, cx, items);
        }
        expr => items.push(Some(expr)),
    }
}

fn wrong_arrow(arrow: &str) -> String {
    format!("`{arrow}` is not an arrow of a diagram: use `=>`")
}

/// Splits `tokens` at every top-level arrow that `is_arrow` recognises (returning how many
/// tokens it spans), keeping the arrows' tokens for error spans.
fn split(
    tokens: &[TokenTree],
    is_arrow: fn(&[TokenTree]) -> usize,
) -> (Vec<Vec<TokenTree>>, Vec<TokenStream>) {
    let mut segments = vec![Vec::new()];
    let mut arrows = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let len = is_arrow(&tokens[i..]);
        if len > 0 {
            arrows.push(tokens[i..i + len].iter().cloned().collect());
            segments.push(Vec::new());
            i += len;
        } else {
            segments
                .last_mut()
                .expect("never empty")
                .push(tokens[i].clone());
            i += 1;
        }
    }
    (segments, arrows)
}

/// `=>`
fn is_fat_arrow(tokens: &[TokenTree]) -> usize {
    if is_pair(tokens, '=', '>') { 2 } else { 0 }
}

/// `->`, `,` or `;` between two items.
fn is_wrong_arrow(tokens: &[TokenTree]) -> usize {
    match tokens {
        _ if is_pair(tokens, '-', '>') => 2,
        [TokenTree::Punct(p), ..] if matches!(p.as_char(), ',' | ';') => 1,
        _ => 0,
    }
}

fn is_pair(tokens: &[TokenTree], first: char, second: char) -> bool {
    match tokens {
        [TokenTree::Punct(a), TokenTree::Punct(b), ..] => {
            a.as_char() == first && a.spacing() == Spacing::Joint && b.as_char() == second
        }
        _ => false,
    }
}
