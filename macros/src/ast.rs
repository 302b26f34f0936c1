//! The model description: what the derive knows about a struct once its attributes are read.

use syn::{Data, DeriveInput, Fields, Ident, Type, Visibility};

use crate::attr::{self, ContainerAttrs, FieldAttrs};
use crate::ctxt::Ctxt;

pub struct Container<'a> {
    pub ident: &'a Ident,
    pub vis: &'a Visibility,
    pub input: &'a DeriveInput,
    pub attrs: ContainerAttrs,
    pub fields: Vec<Field<'a>>,
}

pub struct Field<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    pub attrs: FieldAttrs,
    /// The name serde writes to the database (after `rename` and `rename_all`).
    pub stored: String,
}

impl Field<'_> {
    /// The field has a path in the database: serde writes it and it is not flattened away.
    pub fn has_path(&self) -> bool {
        !(self.attrs.skip || (self.attrs.flatten && self.attrs.nested.is_none()))
    }

    pub fn is_id(&self) -> bool {
        !self.attrs.skip && (self.stored == "_id" || self.attrs.id.is_some())
    }

    pub fn rust_name(&self) -> String {
        let name = self.ident.to_string();
        name.strip_prefix("r#").map(str::to_owned).unwrap_or(name)
    }
}

/// Reads the struct; `None` when its shape cannot be a model (the error is in `cx`).
pub fn from_input<'a>(cx: &mut Ctxt, input: &'a DeriveInput) -> Option<Container<'a>> {
    let named = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => named,
            Fields::Unnamed(_) => {
                cx.error_spanned_by(
                    &input.ident,
                    "a model must be a struct with named fields: each field becomes a document key; \
                     write `struct Name { field: Type }` instead of a tuple struct",
                );
                return None;
            }
            Fields::Unit => {
                cx.error_spanned_by(
                    &input.ident,
                    "a model needs named fields to store: write `struct Name { field: Type }`",
                );
                return None;
            }
        },
        Data::Enum(data) => {
            cx.error_spanned_by(
                data.enum_token,
                "`Model` can only be derived for a struct with named fields; keep the enum as a field \
                 of a model struct instead",
            );
            return None;
        }
        Data::Union(data) => {
            cx.error_spanned_by(
                data.union_token,
                "`Model` cannot be derived for a union: use a struct with named fields",
            );
            return None;
        }
    };
    let attrs = attr::container(cx, &input.attrs);
    let fields = named
        .named
        .iter()
        .filter_map(|field| {
            let ident = field.ident.as_ref()?;
            let field_attrs = attr::field(cx, ident, &field.attrs);
            let rust_name = ident.to_string();
            let rust_name = rust_name.strip_prefix("r#").unwrap_or(&rust_name);
            let stored = match (&field_attrs.rename, attrs.rename_all) {
                (Some(rename), _) => rename.clone(),
                (None, Some(rule)) => rule.apply_to_field(rust_name),
                (None, None) => rust_name.to_owned(),
            };
            Some(Field {
                ident,
                ty: &field.ty,
                attrs: field_attrs,
                stored,
            })
        })
        .collect();
    Some(Container {
        ident: &input.ident,
        vis: &input.vis,
        input,
        attrs,
        fields,
    })
}
