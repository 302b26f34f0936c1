//! `#[derive(Projection)]`: `impl Projection` whose projection document takes each field from
//! the model's typed path of the same name, which checks at compile time that the model has the
//! field and that its type fits.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields};

use crate::attr;
use crate::ctxt::Ctxt;

pub fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    let mut cx = Ctxt::default();
    let attrs = attr::projection::projection(&mut cx, &input.attrs);
    let container = attr::container(&mut cx, &input.attrs);
    let named = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => Some(named),
            _ => None,
        },
        _ => None,
    };
    let Some(named) = named else {
        cx.error_spanned_by(
            &input.ident,
            "a projection is a struct with named fields, each named like the model field it reads: write `struct Summary { total: f64 }`",
        );
        return cx.check().map(|()| TokenStream::new());
    };
    let Some(model) = attrs.of.clone() else {
        if !input.attrs.iter().any(|a| a.path().is_ident("projection")) {
            cx.error_spanned_by(
                &input.ident,
                "name the model this struct reads its fields from: add `#[projection(of = Order)]`",
            );
        }
        return cx.check().map(|()| TokenStream::new());
    };
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(
            &input.generics,
            "a projection cannot be generic: declare a struct with concrete field types",
        );
    }
    let private = match &attrs.krate {
        Some(krate) => quote!(#krate::__private_v1),
        None => quote!(::mongrove::__private_v1),
    };
    let mut has_id = false;
    let mut inserts = Vec::new();
    for field in &named.named {
        let Some(ident) = &field.ident else { continue };
        let field_attrs = attr::field(&mut cx, ident, &field.attrs);
        if field_attrs.skip {
            continue;
        }
        if field_attrs.flatten {
            cx.error_spanned_by(
                ident,
                "a projection field cannot be flattened: name each model field it reads",
            );
            continue;
        }
        let rust_name = ident.to_string();
        let rust_name = rust_name
            .strip_prefix("r#")
            .unwrap_or(&rust_name)
            .to_owned();
        let stored = match (&field_attrs.rename, container.rename_all) {
            (Some(rename), _) => rename.clone(),
            (None, Some(rule)) => rule.apply_to_field(&rust_name),
            (None, None) => rust_name,
        };
        has_id |= stored == "_id";
        let ty = &field.ty;
        // Spanned at the field, so a model without this field, or with another type, is
        // reported on the projection's field.
        let span = field.span();
        inserts.push(quote_spanned! {span=>
            __m::project_field::<#ty, _>(&mut doc, #stored, &fields.#ident);
        });
    }
    cx.check()?;
    let ident = &input.ident;
    let exclude_id = (!has_id).then(|| quote!(doc.insert("_id", 0_i32);));
    Ok(quote! {
        const _: () = {
            use #private as __m;
            impl __m::Projection for #ident {
                type Model = #model;

                fn projection() -> __m::Document {
                    let fields = <#model as __m::Model>::fields();
                    let mut doc = __m::Document::new();
                    #(#inserts)*
                    #exclude_id
                    doc
                }
            }
        };
    })
}
