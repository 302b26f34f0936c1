//! Turns a checked model description into `impl Model` (or `impl Embedded`) and its field paths:
//! the shared pieces here, the model's impl in `model`, an embedded struct's in `embedded`, the
//! declarative validation rules in `rules`.

mod embedded;
mod model;
pub mod projection;
mod rules;

use embedded::expand_embedded;
use model::expand_model;
use rules::{expand_rules, expand_set_checks};

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, GenericArgument, Ident, PathArguments, Type};

use crate::ast::{self, Container, Field};
use crate::attr::{IndexKind, KeyTarget};
use crate::case::default_collection_name;
use crate::check::{self, default_index_name};
use crate::ctxt::Ctxt;

pub fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    let mut cx = Ctxt::default();
    let Some(model) = ast::from_input(&mut cx, input) else {
        cx.check()?;
        return Ok(TokenStream::new());
    };
    check::check(&mut cx, &model);
    cx.check()?;
    Ok(if model.attrs.embedded.is_some() {
        expand_embedded(&model)
    } else {
        expand_model(&model)
    })
}

/// `Option<T>` -> `Some(T)` (the inner type), anything else -> `None`.
pub(super) fn option_inner(ty: &Type) -> Option<&Type> {
    generic_inner(ty, "Option")
}

pub(super) fn generic_inner<'a>(ty: &'a Type, wrapper: &str) -> Option<&'a Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != wrapper {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first() {
        Some(GenericArgument::Type(inner)) if args.args.len() == 1 => Some(inner),
        _ => None,
    }
}

/// The struct a `#[model(nested)]` field embeds: `T`, `Option<T>` or `Vec<T>` all embed `T`.
pub(super) fn embedded_type(ty: &Type) -> &Type {
    option_inner(ty)
        .or_else(|| generic_inner(ty, "Vec"))
        .unwrap_or(ty)
}

/// One field of the generated paths struct: its declaration and its initialiser. The version
/// field gets a path without update operators: the repository owns its value. `kind` is the
/// path kind parameter of an embedded struct's paths (`K`: a leaf is a `Field` or, through an
/// array, an `AnyElement`); a model's paths are always direct (`None`).
pub(super) fn path_member(
    field: &Field,
    private: &TokenStream,
    root: &TokenStream,
    version: Option<&Field>,
    kind: Option<&TokenStream>,
) -> Option<(TokenStream, TokenStream)> {
    if !field.has_path() {
        return None;
    }
    let ident = field.ident;
    let ty = field.ty;
    let stored = &field.stored;
    let doc = format!("Path `{stored}`.");
    let path = if field.attrs.flatten {
        quote!(::std::borrow::Cow::Owned(
            ::std::string::ToString::to_string(prefix)
        ))
    } else {
        quote!(__m::join_path(prefix, #stored))
    };
    if field.attrs.nested.is_some() {
        let inner = embedded_type(ty);
        // Spanned at the field's type, so a type that is not `#[model(embedded)]` is reported there.
        let span = inner.span();
        let mut member = ident.clone();
        member.set_span(span);
        let private = respanned(private, span);
        // The elements of a `Vec` are reached through the array: their paths filter only, and
        // below an array nothing names one place (`PathKind` says which kind comes next).
        let vec = generic_inner(ty, "Vec").is_some();
        let (sub_kind, init_kind) = match (kind, vec) {
            (Some(kind), true) => (
                quote!(<#kind as #private::PathKind>::Elements),
                quote!(<#kind as __m::PathKind>::Elements),
            ),
            (Some(kind), false) => (
                quote!(<#kind as #private::PathKind>::Inside),
                quote!(<#kind as __m::PathKind>::Inside),
            ),
            (None, true) => (quote!(#private::Elements), quote!(__m::Elements)),
            (None, false) => (quote!(#private::Direct), quote!(__m::Direct)),
        };
        let sub = quote_spanned!(span=> <#inner as #private::Embedded>::Fields<#root, #sub_kind>);
        Some((
            quote_spanned!(span=> #[doc = #doc] pub #ident: #private::Nested<#root, #ty, #sub>),
            quote_spanned!(span=> #member: {
                let path = #path;
                let sub = <#inner as __m::Embedded>::__fields_at::<#root, #init_kind>(&path);
                __m::Nested::__new(path, sub)
            }),
        ))
    } else if field.is_id() {
        let id_ty = option_inner(ty).unwrap_or(ty);
        Some((
            quote!(#[doc = #doc] pub #ident: #private::IdField<#root, #id_ty>),
            quote!(#ident: __m::IdField::__new(#path)),
        ))
    } else if version.is_some_and(|v| std::ptr::eq(v, field)) {
        Some((
            quote!(#[doc = #doc] pub #ident: #private::VersionField<#root, #ty>),
            quote!(#ident: __m::VersionField::__new(#path)),
        ))
    } else if let Some(kind) = kind {
        Some((
            quote!(#[doc = #doc] pub #ident: <#kind as #private::PathKind>::Field<#root, #ty>),
            quote!(#ident: <#kind as __m::PathKind>::__field(#path)),
        ))
    } else {
        Some((
            quote!(#[doc = #doc] pub #ident: #private::Field<#root, #ty>),
            quote!(#ident: __m::Field::__new(#path)),
        ))
    }
}

/// The name of the paths struct where the derive builds or returns it. Both check the type of every
/// `#[model(nested)]` field again, so with a single such field the name is spanned at that field's
/// type: the error "not an embedded model" is then reported once, on the type to fix, instead of on
/// the struct name as well.
pub(super) fn literal_ident(model: &Container, fields_ident: &Ident) -> Ident {
    let mut nested = model
        .fields
        .iter()
        .filter(|f| f.has_path() && f.attrs.nested.is_some());
    let mut ident = fields_ident.clone();
    ident.set_span(match (nested.next(), nested.next()) {
        (Some(only), None) => embedded_type(only.ty).span(),
        _ => fields_ident.span(),
    });
    ident
}

/// `tokens` with every span set to `span`, so that an error about them points there.
pub(super) fn respanned(tokens: &TokenStream, span: proc_macro2::Span) -> TokenStream {
    tokens
        .clone()
        .into_iter()
        .map(|mut token| {
            token.set_span(span);
            token
        })
        .collect()
}

/// The one path through which generated code names the runtime: `::mongrove::__private_v1`,
/// or `<crate>::__private_v1` with `#[model(crate = "...")]`. The version in the name makes a
/// derive and a runtime of incompatible versions fail to compile rather than misbehave.
pub(super) fn private_path(model: &Container) -> TokenStream {
    match &model.attrs.krate {
        Some(krate) => quote!(#krate::__private_v1),
        None => quote!(::mongrove::__private_v1),
    }
}
