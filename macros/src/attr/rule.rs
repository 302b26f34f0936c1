//! `validate(...)` rules on a field.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ExprUnary, Lit, LitStr, Path, UnOp};

use super::*;

/// A declarative validation rule on a field.
pub enum Rule {
    Range {
        span: Span,
        min: Option<f64>,
        max: Option<f64>,
    },
    Length {
        span: Span,
        min: Option<usize>,
        max: Option<usize>,
    },
    Pattern(LitStr),
    NonEmpty,
    Custom(Path),
}

pub(super) fn parse_rule(meta: &syn::meta::ParseNestedMeta) -> syn::Result<Rule> {
    let path = &meta.path;
    if path.is_ident("range") {
        let (mut min, mut max) = (None, None);
        meta.parse_nested_meta(|bound| {
            let value: Expr = bound.value()?.parse()?;
            let number = number(&value).ok_or_else(|| {
                syn::Error::new_spanned(
                    &value,
                    "a `range` bound is a number: `range(min = 0, max = 100)`",
                )
            })?;
            if bound.path.is_ident("min") {
                min = Some(number);
            } else if bound.path.is_ident("max") {
                max = Some(number);
            } else {
                return Err(
                    bound.error("`range` takes `min` and `max`: `range(min = 0, max = 100)`")
                );
            }
            Ok(())
        })?;
        Ok(Rule::Range {
            span: path.span(),
            min,
            max,
        })
    } else if path.is_ident("length") {
        let (mut min, mut max) = (None, None);
        meta.parse_nested_meta(|bound| {
            let lit: syn::LitInt = bound.value()?.parse().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    "a `length` bound is a whole number: `length(min = 1, max = 80)`",
                )
            })?;
            let value = lit.base10_parse::<usize>()?;
            if bound.path.is_ident("min") {
                min = Some(value);
            } else if bound.path.is_ident("max") {
                max = Some(value);
            } else {
                return Err(
                    bound.error("`length` takes `min` and `max`: `length(min = 1, max = 80)`")
                );
            }
            Ok(())
        })?;
        Ok(Rule::Length {
            span: path.span(),
            min,
            max,
        })
    } else if path.is_ident("pattern") {
        Ok(Rule::Pattern(meta.value()?.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "`pattern` takes a regular expression string: `pattern = \"^[a-z0-9-]+$\"`",
            )
        })?))
    } else if path.is_ident("non_empty") {
        Ok(Rule::NonEmpty)
    } else if path.is_ident("custom") {
        Ok(Rule::Custom(meta.value()?.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "`custom` takes the path of a `fn(&FieldType) -> Result<(), String>`",
            )
        })?))
    } else {
        Err(meta.error(format!(
            "unknown validation rule `{}`; expected one of {RULES}",
            path_name(path)
        )))
    }
}

fn number(value: &Expr) -> Option<f64> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => int.base10_parse().ok(),
        Expr::Lit(ExprLit {
            lit: Lit::Float(float),
            ..
        }) => float.base10_parse().ok(),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr,
            ..
        }) => number(expr).map(|n| -n),
        _ => None,
    }
}
