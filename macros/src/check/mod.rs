//! Rules a model must follow, each reported with the span of the offending token.

use std::collections::HashMap;

use syn::Type;

use crate::ast::{Container, Field};
use crate::ctxt::Ctxt;

pub const VERSION_TYPES: &[&str] = &["i32", "i64", "u32", "u64"];

mod index;

use index::check_indexes;
pub use index::default_index_name;

pub fn check(cx: &mut Ctxt, model: &Container) {
    check_generics(cx, model);
    if model.attrs.embedded.is_some() {
        check_embedded(cx, model);
    } else {
        check_collection(cx, model);
        check_id(cx, model);
        check_version(cx, model);
        check_timestamps(cx, model);
        check_indexes(cx, model);
    }
    check_fields(cx, model);
}

fn check_generics(cx: &mut Ctxt, model: &Container) {
    let generics = &model.input.generics;
    if !generics.params.is_empty() {
        cx.error_spanned_by(
            generics,
            "a model cannot be generic: it maps to one collection with one document shape; \
             define a concrete struct, or keep the generic data in a field of a concrete model",
        );
    }
}

fn check_embedded(cx: &mut Ctxt, model: &Container) {
    let attrs = &model.attrs;
    let misplaced = [
        (attrs.collection.as_ref().map(|l| l.span()), "collection"),
        (attrs.version.as_ref().map(|l| l.span()), "version"),
        (attrs.timestamps.as_ref().map(|t| t.span), "timestamps"),
        (attrs.hooks, "hooks"),
        (attrs.indexes.first().map(|i| i.span), "index"),
    ];
    for (span, name) in misplaced {
        if let Some(span) = span {
            cx.syn_error(syn::Error::new(
                span,
                format!(
                    "`{name}` does not apply to an embedded struct: it is stored inside another \
                     model's document; put `{name}` on that model instead"
                ),
            ));
        }
    }
    for field in &model.fields {
        if let Some(span) = field.attrs.id {
            cx.syn_error(syn::Error::new(
                span,
                "an embedded struct has no id of its own; remove `#[model(id)]`",
            ));
        }
    }
}

fn check_collection(cx: &mut Ctxt, model: &Container) {
    let Some(lit) = &model.attrs.collection else {
        return;
    };
    let name = lit.value();
    let problem = if name.is_empty() {
        Some("a collection name cannot be empty")
    } else if name.contains('$') {
        Some("a collection name cannot contain `$`")
    } else if name.contains('\0') {
        Some("a collection name cannot contain a NUL character")
    } else if name.starts_with("system.") {
        Some("collection names starting with `system.` are reserved by MongoDB")
    } else if name.len() > 200 {
        Some("a collection name must be shorter than 200 bytes")
    } else {
        None
    };
    if let Some(problem) = problem {
        cx.error_spanned_by(
            lit,
            format!("{problem}; write a name like `collection = \"orders\"`"),
        );
    }
}

fn check_id(cx: &mut Ctxt, model: &Container) {
    let mut ids = model.fields.iter().filter(|f| f.is_id());
    let first = ids.next();
    let extras: Vec<&Field> = ids.collect();
    if let Some(first) = first {
        for extra in &extras {
            let fix = match (extra.attrs.id.is_some(), extra.stored == "_id") {
                (true, true) => "`#[model(id)]` and the `_id` rename",
                (true, false) => "`#[model(id)]`",
                (false, _) => "the `_id` rename",
            };
            let message = format!(
                "a model has exactly one id, and `{}` is already it (stored as `_id`); \
                 remove {fix} from `{}`",
                first.rust_name(),
                extra.rust_name()
            );
            match extra.attrs.id {
                Some(span) => cx.syn_error(syn::Error::new(span, message)),
                None => cx.error_spanned_by(extra.ident, message),
            }
        }
    }
    for field in &model.fields {
        // A second id is reported above; telling it to rename to `_id` as well would contradict.
        if extras.iter().any(|extra| std::ptr::eq(*extra, field)) {
            continue;
        }
        if let Some(span) = field.attrs.id {
            if field.attrs.skip {
                cx.syn_error(syn::Error::new(
                    span,
                    "the id field cannot be skipped by serde: it is the document's `_id`; remove `skip` from its `#[serde(...)]`",
                ));
            } else if field.stored != "_id" {
                cx.syn_error(syn::Error::new(
                    span,
                    format!(
                        "the id field is stored as `{}`, but MongoDB keys documents by `_id`; \
                         add `#[serde(rename = \"_id\")]` to `{}`",
                        field.stored,
                        field.rust_name()
                    ),
                ));
            }
        }
        if field.is_id() && field.attrs.flatten {
            cx.error_spanned_by(
                field.ident,
                "the id field cannot be `#[serde(flatten)]`: `_id` is one value; remove `flatten` \
                 to store the struct as the `_id` document",
            );
        }
    }
}

fn find_field<'a>(model: &'a Container, name: &str) -> Option<&'a Field<'a>> {
    model.fields.iter().find(|f| f.rust_name() == name)
}

fn field_names(model: &Container) -> String {
    model
        .fields
        .iter()
        .filter(|f| f.has_path())
        .map(|f| format!("`{}`", f.rust_name()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_version(cx: &mut Ctxt, model: &Container) {
    let Some(lit) = &model.attrs.version else {
        return;
    };
    let name = lit.value();
    let Some(field) = find_field(model, &name) else {
        cx.error_spanned_by(
            lit,
            format!(
                "no field named `{name}` holds the version; add `{name}: i64` to the struct or name \
                 one of its fields: {}",
                field_names(model)
            ),
        );
        return;
    };
    if field.attrs.skip {
        cx.error_spanned_by(
            lit,
            format!("the version field `{name}` is skipped by serde, so it is never stored; remove `#[serde(skip)]`"),
        );
    }
    if field.is_id() {
        cx.error_spanned_by(
            lit,
            "the version field cannot be the id; add a separate `version: i64` field",
        );
    }
    if integer_name(field.ty).is_none() {
        cx.error_spanned_by(
            field.ty,
            format!(
                "the version field `{name}` must be an integer ({}); change its type to `i64`",
                VERSION_TYPES.join(", ")
            ),
        );
    }
}

pub fn integer_name(ty: &Type) -> Option<&'static str> {
    let Type::Path(path) = ty else { return None };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    if !last.arguments.is_empty() {
        return None;
    }
    VERSION_TYPES
        .iter()
        .copied()
        .find(|name| last.ident == name)
}

fn check_timestamps(cx: &mut Ctxt, model: &Container) {
    let Some(ts) = &model.attrs.timestamps else {
        return;
    };
    for lit in [&ts.created, &ts.updated] {
        let name = lit.value();
        match find_field(model, &name) {
            None => cx.syn_error(syn::Error::new(
                lit.span(),
                format!(
                    "`timestamps` needs a field `{name}` (type `mongrove::bson::DateTime`, or an Option of it); \
                     add it, or name another field with `timestamps(created = \"...\", updated = \"...\")`"
                ),
            )),
            Some(field) if field.attrs.skip => cx.error_spanned_by(
                field.ident,
                format!("the timestamp field `{name}` is skipped by serde, so it is never stored; remove `#[serde(skip)]`"),
            ),
            Some(_) => {}
        }
    }
    if ts.created.value() == ts.updated.value() {
        cx.error_spanned_by(
            &ts.updated,
            "`created` and `updated` must be two different fields: name a second field, such as `updated = \"updated_at\"`",
        );
    }
}

fn check_rules(cx: &mut Ctxt, field: &Field) {
    use crate::attr::Rule;
    if field.attrs.skip && !field.attrs.rules.is_empty() {
        cx.error_spanned_by(field.ident, "a field skipped by serde is never stored, so it is not validated; remove `validate(...)`");
    }
    for rule in &field.attrs.rules {
        match rule {
            Rule::Range { span, min, max } => match (min, max) {
                (None, None) => cx.syn_error(syn::Error::new(*span, "`range` needs a bound: `range(min = 0)`, `range(max = 100)` or both")),
                (Some(min), Some(max)) if min > max => cx.syn_error(syn::Error::new(
                    *span,
                    format!("this range is empty: `min` ({min}) is above `max` ({max}); swap them"),
                )),
                _ => {}
            },
            Rule::Length { span, min, max } => match (min, max) {
                (None, None) => cx.syn_error(syn::Error::new(*span, "`length` needs a bound: `length(min = 1)`, `length(max = 80)` or both")),
                (Some(min), Some(max)) if min > max => cx.syn_error(syn::Error::new(
                    *span,
                    format!("this length range is empty: `min` ({min}) is above `max` ({max}); swap them"),
                )),
                _ => {}
            },
            Rule::Pattern(lit) => {
                if let Err(e) = regex_lite::Regex::new(&lit.value()) {
                    cx.error_spanned_by(lit, format!("this pattern is not a valid regular expression: {e}"));
                }
            }
            Rule::NonEmpty | Rule::Custom(_) => {}
        }
    }
}

fn check_fields(cx: &mut Ctxt, model: &Container) {
    // Stored name -> the Rust name of the first field stored under it.
    let mut stored: HashMap<&str, String> = HashMap::new();
    for field in &model.fields {
        check_rules(cx, field);
        if let Some(span) = field.attrs.nested {
            if field.attrs.skip {
                cx.syn_error(syn::Error::new(
                    span,
                    "a skipped field is not stored, so it has no nested paths; remove `nested`",
                ));
            }
            if field.is_id() {
                cx.syn_error(syn::Error::new(span, "the id field cannot be `nested`"));
            }
        }
        if field.has_path() && !field.attrs.flatten {
            match stored.get(field.stored.as_str()) {
                // Two ids are reported by `check_id`.
                Some(_) if field.is_id() && model.attrs.embedded.is_none() => {}
                Some(first) => cx.error_spanned_by(
                    field.ident,
                    format!(
                        "`{}` is stored as `{}`, like `{first}` before it; give one of them another \
                         name with `#[serde(rename = \"...\")]`",
                        field.rust_name(),
                        field.stored,
                    ),
                ),
                None => {
                    stored.insert(&field.stored, field.rust_name());
                }
            }
        }
        if field.has_path() && !field.attrs.flatten && field.stored.starts_with('$') {
            cx.error_spanned_by(
                field.ident,
                format!(
                    "MongoDB field names cannot start with `$` (`{}`); rename it, such as \
                     `#[serde(rename = \"{}\")]`",
                    field.stored,
                    field.stored.trim_start_matches('$'),
                ),
            );
        }
        if field.has_path() && field.stored.contains('.') {
            cx.error_spanned_by(
                field.ident,
                format!(
                    "`{}` contains a dot, which MongoDB reads as a path into a subdocument; rename it, \
                     such as `#[serde(rename = \"{}\")]`, or store a `#[model(embedded)]` struct \
                     with `#[model(nested)]`",
                    field.stored,
                    field.stored.replace('.', "_"),
                ),
            );
        }
    }
}
