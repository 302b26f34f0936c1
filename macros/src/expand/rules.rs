//! The declarative validation rules (`#[model(validate(...))]`) as code that checks a document.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::*;

/// The checks of the declarative rules (`#[model(validate(...))]`), each run so every failure is
/// reported, then those of the embedded structs held by `#[model(nested)]` fields. The code runs
/// with `prefix: &str` (the stored path of the value, `""` for a model) and
/// `failures: &mut Vec<FieldFailure>` in scope. `None` when there is nothing to check.
///
/// Failures are reported by stored path, in MongoDB's dotted form: `address.postCode`, and for
/// an element of a `Vec`, `lines.2.qty`.
pub(super) fn expand_rules(model: &Container) -> Option<TokenStream> {
    use crate::attr::Rule;
    let mut checks = Vec::new();
    for field in model.fields.iter().filter(|f| !f.attrs.skip) {
        let member = field.ident;
        let stored = &field.stored;
        let field_path = quote!(&__m::join_path(prefix, #stored));
        for rule in &field.attrs.rules {
            let opt = |v: Option<TokenStream>| match v {
                Some(v) => quote!(::std::option::Option::Some(#v)),
                None => quote!(::std::option::Option::None),
            };
            checks.push(match rule {
                Rule::Range { min, max, .. } => {
                    let (min, max) = (opt(min.map(|v| quote!(#v))), opt(max.map(|v| quote!(#v))));
                    quote!(__m::check_range(failures, #field_path, &self.#member, #min, #max);)
                }
                Rule::Length { min, max, .. } => {
                    let (min, max) = (opt(min.map(|v| quote!(#v))), opt(max.map(|v| quote!(#v))));
                    quote!(__m::check_length(failures, #field_path, &self.#member, #min, #max);)
                }
                Rule::NonEmpty => {
                    quote!(__m::check_non_empty(failures, #field_path, &self.#member);)
                }
                Rule::Pattern(lit) => quote! {
                    static PATTERN: ::std::sync::OnceLock<::std::option::Option<__m::Regex>> =
                        ::std::sync::OnceLock::new();
                    if let ::std::option::Option::Some(regex) = __m::compiled(&PATTERN, #lit) {
                        __m::check_pattern(failures, #field_path, &self.#member, regex);
                    }
                },
                Rule::Custom(path) => {
                    let name = quote!(#path).to_string().replace(' ', "");
                    quote!(__m::check_custom(failures, #field_path, &self.#member, #name, #path);)
                }
            });
        }
        if field.attrs.nested.is_some() && field.has_path() {
            checks.push(nested_rules(field));
        }
    }
    if checks.is_empty() {
        return None;
    }
    let checks = checks.into_iter().map(|check| quote!({ #check }));
    Some(quote!(#(#checks)*))
}

/// Runs the rules of the embedded struct in a `#[model(nested)]` field, which holds a `T`, an
/// `Option<T>` (checked when `Some`) or a `Vec<T>` (every element, at `path.<index>`).
pub(super) fn nested_rules(field: &Field) -> TokenStream {
    let member = field.ident;
    let stored = &field.stored;
    let inner = embedded_type(field.ty);
    let path = if field.attrs.flatten {
        quote!(::std::borrow::Cow::<str>::Borrowed(prefix))
    } else {
        quote!(__m::join_path(prefix, #stored))
    };
    // Spanned at the embedded type, where a type that is not `#[model(embedded)]` is reported.
    let check = quote_spanned!(inner.span()=> <#inner as __m::Embedded>::__field_failures_at);
    let walk = if option_inner(field.ty).is_some() {
        quote! {
            if let ::std::option::Option::Some(value) = &self.#member {
                #check(value, &path, failures);
            }
        }
    } else if generic_inner(field.ty, "Vec").is_some() {
        quote! {
            for (index, value) in self.#member.iter().enumerate() {
                #check(value, &::std::format!("{path}.{index}"), failures);
            }
        }
    } else {
        quote!(#check(&self.#member, &path, failures);)
    };
    quote! {
        let path = #path;
        #walk
    }
}
