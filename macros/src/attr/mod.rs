//! Parsing of `#[model(...)]` and of the parts of `#[serde(...)]` that decide stored field names:
//! the struct's and the fields' attributes here, `index(...)` in `index`, `validate(...)` rules
//! in `rule`.

mod index;
pub mod projection;
mod rule;

use index::parse_index;
pub use index::{IndexAttr, IndexKind, KeyTarget};
pub use rule::Rule;
use rule::parse_rule;

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, Ident, LitStr, Path, Token};

use crate::case::RenameRule;
use crate::ctxt::Ctxt;

const CONTAINER_KEYS: &str = "`collection = \"...\"`, `version = \"field\"`, `timestamps`, `hooks`, `index(...)`, `embedded`, `crate = \"path\"`";
const FIELD_KEYS: &str = "`id`, `nested`, `validate(...)`";
const RULES: &str = "`range(min = .., max = ..)`, `length(min = .., max = ..)`, `pattern = \"regex\"`, `non_empty`, `custom = path::to_fn`";
const INDEX_KEYS: &str = "`keys(field = 1, ...)`, `unique`, `sparse`, `expire_after = <seconds>`, `partial = path::to_fn`, `name = \"...\"`";

/// `#[model(...)]` on the struct.
#[derive(Default)]
pub struct ContainerAttrs {
    pub collection: Option<LitStr>,
    pub embedded: Option<Span>,
    pub version: Option<LitStr>,
    pub timestamps: Option<Timestamps>,
    pub hooks: Option<Span>,
    pub indexes: Vec<IndexAttr>,
    /// From `#[serde(rename_all = "...")]`: the rule for stored names.
    pub rename_all: Option<RenameRule>,
    /// `crate = "path"`: where generated code finds the runtime (default `::mongrove`), for
    /// crates that re-export mongrove.
    pub krate: Option<Path>,
}

pub struct Timestamps {
    pub span: Span,
    pub created: LitStr,
    pub updated: LitStr,
}

/// `#[model(...)]` and `#[serde(...)]` on a field.
#[derive(Default)]
pub struct FieldAttrs {
    pub id: Option<Span>,
    pub nested: Option<Span>,
    pub rules: Vec<Rule>,
    pub rename: Option<String>,
    pub skip: bool,
    pub flatten: bool,
}

fn is_model(attr: &Attribute) -> bool {
    attr.path().is_ident("model")
}

fn is_serde(attr: &Attribute) -> bool {
    attr.path().is_ident("serde")
}

fn set_once<T>(cx: &mut Ctxt, slot: &mut Option<T>, value: T, key: &syn::Path, what: &str) {
    if slot.is_some() {
        cx.error_spanned_by(key, format!("duplicate `{what}` attribute: keep only one"));
    } else {
        *slot = Some(value);
    }
}

pub fn container(cx: &mut Ctxt, attrs: &[Attribute]) -> ContainerAttrs {
    let mut out = ContainerAttrs::default();
    for attr in attrs {
        if is_model(attr) {
            let result = attr.parse_nested_meta(|meta| {
                let path = meta.path.clone();
                if path.is_ident("collection") {
                    let lit: LitStr = meta.value()?.parse()?;
                    set_once(cx, &mut out.collection, lit, &path, "collection");
                } else if path.is_ident("version") {
                    let lit: LitStr = meta.value().map_err(|_| {
                        syn::Error::new(
                            path.span(),
                            "`version` names the integer field that holds the version: write `version = \"version\"`",
                        )
                    })?.parse()?;
                    set_once(cx, &mut out.version, lit, &path, "version");
                } else if path.is_ident("crate") {
                    let lit: LitStr = meta.value().map_err(|_| {
                        syn::Error::new(
                            path.span(),
                            "`crate` names the path of the mongrove crate as re-exported: write `crate = \"my_crate::mongrove\"`",
                        )
                    })?.parse()?;
                    let krate: Path = lit.parse().map_err(|_| {
                        syn::Error::new(
                            lit.span(),
                            format!(
                                "`{}` is not a path: write the path the mongrove crate is reachable at, such as `crate = \"my_crate::mongrove\"`",
                                lit.value()
                            ),
                        )
                    })?;
                    set_once(cx, &mut out.krate, krate, &path, "crate");
                } else if path.is_ident("embedded") {
                    set_once(cx, &mut out.embedded, path.span(), &path, "embedded");
                } else if path.is_ident("hooks") {
                    set_once(cx, &mut out.hooks, path.span(), &path, "hooks");
                } else if path.is_ident("timestamps") {
                    let ts = parse_timestamps(&meta)?;
                    set_once(cx, &mut out.timestamps, ts, &path, "timestamps");
                } else if path.is_ident("index") {
                    out.indexes.push(parse_index(&meta)?);
                } else if path.is_ident("id") || path.is_ident("nested") {
                    return Err(meta.error(format!(
                        "`{}` belongs on a field, not on the struct: write `#[model({})]` above the field",
                        path_name(&path),
                        path_name(&path),
                    )));
                } else {
                    return Err(meta.error(format!(
                        "unknown model attribute `{}`; expected one of {CONTAINER_KEYS}",
                        path_name(&path)
                    )));
                }
                Ok(())
            });
            if let Err(error) = result {
                cx.syn_error(error);
            }
        } else if is_serde(attr) {
            let result = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("rename_all") {
                    let lit = parse_serialize_name(&meta)?;
                    if let Some(lit) = lit {
                        match RenameRule::from_str(&lit.value()) {
                            Some(rule) => out.rename_all = Some(rule),
                            // serde reports an unknown rule itself; say nothing twice.
                            None => out.rename_all = None,
                        }
                    }
                    Ok(())
                } else {
                    skip_meta_value(&meta)
                }
            });
            // serde_derive reports malformed serde attributes with better context.
            drop(result);
        }
    }
    out
}

/// The attributes of the field named `name` (used in suggestions).
pub fn field(cx: &mut Ctxt, name: &Ident, attrs: &[Attribute]) -> FieldAttrs {
    let mut out = FieldAttrs::default();
    for attr in attrs {
        if is_model(attr) {
            let result = attr.parse_nested_meta(|meta| {
                let path = meta.path.clone();
                if path.is_ident("id") {
                    set_once(cx, &mut out.id, path.span(), &path, "id");
                } else if path.is_ident("nested") {
                    set_once(cx, &mut out.nested, path.span(), &path, "nested");
                } else if path.is_ident("validate") {
                    meta.parse_nested_meta(|rule| {
                        out.rules.push(parse_rule(&rule)?);
                        Ok(())
                    })?;
                } else if let Some(example) = struct_key_example(&path, name) {
                    return Err(meta.error(format!(
                        "`{}` belongs on the struct, not on a field: write `{example}` above `struct`",
                        path_name(&path),
                    )));
                } else {
                    return Err(meta.error(format!(
                        "unknown field attribute `{}`; expected one of {FIELD_KEYS}",
                        path_name(&path)
                    )));
                }
                Ok(())
            });
            if let Err(error) = result {
                cx.syn_error(error);
            }
        } else if is_serde(attr) {
            let result = attr.parse_nested_meta(|meta| {
                let path = &meta.path;
                if path.is_ident("rename") {
                    if let Some(lit) = parse_serialize_name(&meta)? {
                        out.rename = Some(lit.value());
                    }
                    Ok(())
                } else if path.is_ident("skip") || path.is_ident("skip_serializing") {
                    out.skip = true;
                    Ok(())
                } else if path.is_ident("flatten") {
                    out.flatten = true;
                    Ok(())
                } else {
                    skip_meta_value(&meta)
                }
            });
            drop(result);
        }
    }
    out
}

/// For a struct-level key written on the field `field`: the attribute to write on the struct instead.
fn struct_key_example(key: &Path, field: &Ident) -> Option<String> {
    let field = field.to_string();
    let field = field.strip_prefix("r#").unwrap_or(&field);
    let example = match key.get_ident()?.to_string().as_str() {
        "version" => format!("#[model(version = \"{field}\")]"),
        "timestamps" => {
            format!("#[model(timestamps(created = \"{field}\", updated = \"...\"))]")
        }
        "index" => format!("#[model(index(keys({field} = 1)))]"),
        "collection" => "#[model(collection = \"...\")]".to_owned(),
        "hooks" => "#[model(hooks)]".to_owned(),
        "embedded" => "#[model(embedded)]".to_owned(),
        _ => return None,
    };
    Some(example)
}

/// `name = "x"` or `name(serialize = "x", deserialize = "y")`: the stored name is the serialize one.
fn parse_serialize_name(meta: &syn::meta::ParseNestedMeta) -> syn::Result<Option<LitStr>> {
    if meta.input.peek(Token![=]) {
        return Ok(Some(meta.value()?.parse()?));
    }
    let mut found = None;
    meta.parse_nested_meta(|inner| {
        if inner.path.is_ident("serialize") {
            found = Some(inner.value()?.parse()?);
            Ok(())
        } else {
            skip_meta_value(&inner)
        }
    })?;
    Ok(found)
}

/// Consumes `= expr` or `(...)` after a key this macro does not care about.
fn skip_meta_value(meta: &syn::meta::ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        let _: Expr = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        let _: proc_macro2::TokenStream = content.parse()?;
    }
    Ok(())
}

fn parse_timestamps(meta: &syn::meta::ParseNestedMeta) -> syn::Result<Timestamps> {
    let span = meta.path.span();
    let mut created = LitStr::new("created_at", span);
    let mut updated = LitStr::new("updated_at", span);
    if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|inner| {
            if inner.path.is_ident("created") {
                created = inner.value()?.parse()?;
            } else if inner.path.is_ident("updated") {
                updated = inner.value()?.parse()?;
            } else {
                return Err(inner.error(format!(
                    "unknown timestamps option `{}`; expected `created = \"field\"` or `updated = \"field\"`",
                    path_name(&inner.path)
                )));
            }
            Ok(())
        })?;
    } else if meta.input.peek(Token![=]) {
        return Err(meta.error(
            "write `timestamps` or `timestamps(created = \"field\", updated = \"field\")`",
        ));
    }
    Ok(Timestamps {
        span,
        created,
        updated,
    })
}

fn path_name(path: &syn::Path) -> String {
    quote::ToTokens::to_token_stream(path)
        .to_string()
        .replace(' ', "")
}
