//! `index(keys(...), unique, sparse, expire_after = .., partial = .., name = "..")`.

use proc_macro2::Span;
use syn::parse::ParseStream;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ExprUnary, Ident, Lit, LitStr, Path, Token, UnOp};

use super::*;

pub struct IndexAttr {
    pub span: Span,
    pub keys: Vec<IndexKey>,
    pub unique: bool,
    pub sparse: bool,
    pub expire_after: Option<u64>,
    /// The `expire_after` key, where a misuse of it is reported.
    pub expire_after_span: Option<Span>,
    pub partial: Option<Path>,
    pub name: Option<LitStr>,
}

pub struct IndexKey {
    /// A Rust field name, checked against the struct; or a string path taken as written.
    pub target: KeyTarget,
    pub kind: IndexKind,
}

pub enum KeyTarget {
    Field(Ident),
    Path(LitStr),
}

impl KeyTarget {
    pub fn span(&self) -> Span {
        match self {
            KeyTarget::Field(ident) => ident.span(),
            KeyTarget::Path(lit) => lit.span(),
        }
    }
}

#[derive(Clone)]
pub enum IndexKind {
    Ascending,
    Descending,
    Special(String),
}

pub(super) fn parse_index(meta: &syn::meta::ParseNestedMeta) -> syn::Result<IndexAttr> {
    let span = meta.path.span();
    if !meta.input.peek(syn::token::Paren) {
        return Err(meta.error("write `index(keys(field = 1), ...)`; an index needs its keys"));
    }
    let mut index = IndexAttr {
        span,
        keys: Vec::new(),
        unique: false,
        sparse: false,
        expire_after: None,
        expire_after_span: None,
        partial: None,
        name: None,
    };
    let mut saw_keys = false;
    meta.parse_nested_meta(|inner| {
        let path = &inner.path;
        if path.is_ident("keys") {
            saw_keys = true;
            let content;
            syn::parenthesized!(content in inner.input);
            index.keys = parse_keys(&content)?;
            if index.keys.is_empty() {
                return Err(syn::Error::new(
                    path.span(),
                    "an index needs at least one key: `keys(field = 1)`",
                ));
            }
        } else if path.is_ident("unique") {
            index.unique = true;
        } else if path.is_ident("sparse") {
            index.sparse = true;
        } else if path.is_ident("expire_after") {
            let lit: syn::LitInt = inner.value()?.parse().map_err(|e| {
                syn::Error::new(e.span(), "`expire_after` takes a number of seconds: `expire_after = 3600`")
            })?;
            index.expire_after = Some(lit.base10_parse()?);
            index.expire_after_span = Some(path.span());
        } else if path.is_ident("partial") {
            index.partial = Some(inner.value()?.parse().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    "`partial` takes the path of a `fn() -> Document` giving the partial filter: `partial = active_only`",
                )
            })?);
        } else if path.is_ident("name") {
            index.name = Some(inner.value()?.parse()?);
        } else {
            return Err(inner.error(format!(
                "unknown index option `{}`; expected one of {INDEX_KEYS}",
                path_name(path)
            )));
        }
        Ok(())
    })?;
    if !saw_keys {
        return Err(syn::Error::new(
            span,
            "this index has no keys: add `keys(field = 1)` (1 ascending, -1 descending)",
        ));
    }
    Ok(index)
}

fn parse_keys(input: ParseStream) -> syn::Result<Vec<IndexKey>> {
    let mut keys = Vec::new();
    while !input.is_empty() {
        let target = if input.peek(LitStr) {
            KeyTarget::Path(input.parse()?)
        } else {
            KeyTarget::Field(input.call(Ident::parse_any_ident)?)
        };
        input.parse::<Token![=]>().map_err(|_| {
            syn::Error::new(
                target.span(),
                "each key needs a direction: `field = 1` (ascending) or `field = -1` (descending)",
            )
        })?;
        let value: Expr = input.parse()?;
        let kind = index_kind(&value)?;
        keys.push(IndexKey { target, kind });
        if input.is_empty() {
            break;
        }
        input.parse::<Token![,]>()?;
    }
    Ok(keys)
}

trait ParseAnyIdent {
    fn parse_any_ident(input: ParseStream) -> syn::Result<Ident>;
}

impl ParseAnyIdent for Ident {
    fn parse_any_ident(input: ParseStream) -> syn::Result<Ident> {
        use syn::ext::IdentExt;
        Ident::parse_any(input)
    }
}

fn index_kind(value: &Expr) -> syn::Result<IndexKind> {
    const HINT: &str = "an index direction is `1` (ascending), `-1` (descending), or one of \"text\", \"hashed\", \"2d\", \"2dsphere\"";
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) if int.base10_digits() == "1" => Ok(IndexKind::Ascending),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr,
            ..
        }) => match &**expr {
            Expr::Lit(ExprLit {
                lit: Lit::Int(int), ..
            }) if int.base10_digits() == "1" => Ok(IndexKind::Descending),
            _ => Err(syn::Error::new_spanned(value, HINT)),
        },
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) if ["text", "hashed", "2d", "2dsphere"].contains(&s.value().as_str()) => {
            Ok(IndexKind::Special(s.value()))
        }
        _ => Err(syn::Error::new_spanned(value, HINT)),
    }
}
