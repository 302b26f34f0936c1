//! The rules for `index(...)` declarations: keys of known fields, no duplicates, valid names.

use std::collections::HashSet;

use syn::LitStr;

use super::*;
use crate::attr::{IndexKind, KeyTarget};

pub(super) fn check_indexes(cx: &mut Ctxt, model: &Container) {
    let mut names = HashSet::new();
    for index in &model.attrs.indexes {
        let mut keys = Vec::new();
        let mut seen_keys = HashSet::new();
        for key in &index.keys {
            let stored = match &key.target {
                KeyTarget::Field(ident) => {
                    let name = ident.to_string();
                    match find_field(model, &name) {
                        Some(field) if field.has_path() => field.stored.clone(),
                        Some(_) => {
                            cx.error_spanned_by(
                                ident,
                                format!("`{name}` is not stored (serde skips or flattens it), so it cannot be indexed"),
                            );
                            continue;
                        }
                        None => {
                            cx.error_spanned_by(
                                ident,
                                format!(
                                    "no field named `{name}` to index; the fields are {}. For a nested path write it as a string: `\"address.city\" = 1`",
                                    field_names(model)
                                ),
                            );
                            continue;
                        }
                    }
                }
                KeyTarget::Path(lit) => {
                    let path = lit.value();
                    if path.is_empty()
                        || path.starts_with('$')
                        || path.split('.').any(str::is_empty)
                    {
                        cx.error_spanned_by(
                            lit,
                            "an index key path must be a dotted field path like \"address.city\", with no empty part and no leading `$`",
                        );
                        continue;
                    }
                    path
                }
            };
            if !seen_keys.insert(stored.clone()) {
                cx.syn_error(syn::Error::new(
                    key.target.span(),
                    format!("`{stored}` appears twice in this index's keys; keep one of them"),
                ));
            }
            keys.push((stored, key.kind.clone()));
        }
        let name = match &index.name {
            Some(lit) if lit.value().is_empty() => {
                cx.error_spanned_by(
                    lit,
                    "an index name cannot be empty; remove `name` to use MongoDB's default",
                );
                continue;
            }
            Some(lit) => lit.value(),
            None => default_index_name(&keys),
        };
        if name == "_id_" {
            cx.syn_error(syn::Error::new(
                index.name.as_ref().map_or(index.span, LitStr::span),
                "`_id_` is the name of MongoDB's own index on `_id`, which every collection has; \
                 choose another `name`",
            ));
        }
        if !names.insert(name.clone()) {
            match &index.name {
                Some(lit) => cx.error_spanned_by(
                    lit,
                    format!(
                        "another index is already named `{name}`; give this one a different `name`"
                    ),
                ),
                None => cx.syn_error(syn::Error::new(
                    index.span,
                    format!(
                        "another index on the same keys already has the default name `{name}`; \
                         remove this one, or give it `name = \"...\"`"
                    ),
                )),
            }
        }
        if let (Some(secs), Some(span)) = (index.expire_after, index.expire_after_span)
            && keys.len() != 1
        {
            cx.syn_error(syn::Error::new(
                span,
                format!(
                    "`expire_after` makes a TTL index, which has exactly one key, a date field; \
                     declare it as an index of its own: `index(keys(<date field> = 1), expire_after = {secs})`"
                ),
            ));
        }
    }
}

/// MongoDB's default index name: `field_1_other_-1`.
pub fn default_index_name(keys: &[(String, IndexKind)]) -> String {
    keys.iter()
        .map(|(path, kind)| match kind {
            IndexKind::Ascending => format!("{path}_1"),
            IndexKind::Descending => format!("{path}_-1"),
            IndexKind::Special(kind) => format!("{path}_{kind}"),
        })
        .collect::<Vec<_>>()
        .join("_")
}
