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
    let mut checks = Vec::new();
    for field in model.fields.iter().filter(|f| !f.attrs.skip) {
        let member = field.ident;
        let stored = &field.stored;
        let value = quote!(&self.#member);
        checks.extend(rule_checks(
            field,
            &value,
            &quote!(&__m::join_path(prefix, #stored)),
        ));
        if field.attrs.nested.is_some() && field.has_path() {
            let path = if field.attrs.flatten {
                quote!(::std::borrow::Cow::<str>::Borrowed(prefix))
            } else {
                quote!(__m::join_path(prefix, #stored))
            };
            checks.push(nested_rules(field, &value, &path));
        }
    }
    if checks.is_empty() {
        return None;
    }
    let checks = checks.into_iter().map(|check| quote!({ #check }));
    Some(quote!(#(#checks)*))
}

/// The checks of one field's own rules on `value` (an expression of type `&T`), reported at
/// `path` (an expression of type `&str`), with `failures` in scope.
fn rule_checks(field: &Field, value: &TokenStream, path: &TokenStream) -> Vec<TokenStream> {
    use crate::attr::Rule;
    let opt = |v: Option<TokenStream>| match v {
        Some(v) => quote!(::std::option::Option::Some(#v)),
        None => quote!(::std::option::Option::None),
    };
    field
        .attrs
        .rules
        .iter()
        .map(|rule| match rule {
            Rule::Range { min, max, .. } => {
                let (min, max) = (opt(min.map(|v| quote!(#v))), opt(max.map(|v| quote!(#v))));
                quote!(__m::check_range(failures, #path, #value, #min, #max);)
            }
            Rule::Length { min, max, .. } => {
                let (min, max) = (opt(min.map(|v| quote!(#v))), opt(max.map(|v| quote!(#v))));
                quote!(__m::check_length(failures, #path, #value, #min, #max);)
            }
            Rule::NonEmpty => quote!(__m::check_non_empty(failures, #path, #value);),
            Rule::Pattern(lit) => quote! {
                static PATTERN: ::std::sync::OnceLock<::std::option::Option<__m::Regex>> =
                    ::std::sync::OnceLock::new();
                if let ::std::option::Option::Some(regex) = __m::compiled(&PATTERN, #lit) {
                    __m::check_pattern(failures, #path, #value, regex);
                }
            },
            Rule::Custom(fn_path) => {
                let name = quote!(#fn_path).to_string().replace(' ', "");
                quote!(__m::check_custom(failures, #path, #value, #name, #fn_path);)
            }
        })
        .map(|check| quote!({ #check }))
        .collect()
}

/// The checks of the values an update sets (`Model::__check_set`, `Embedded::__check_set_at`):
/// for each field with rules or embedded rules, a value set at the field itself is decoded into
/// the field's type and checked whole; a value set below a `#[model(nested)]` field is handed to
/// the embedded struct, past the element (`0`, `$`, `$[]`, `$[name]`) for a `Vec`. The code runs
/// with `full` (the path as sent, where failures are reported), `rest` (the part still to
/// match), `value: &Bson` and `failures` in scope. `None` when no field has rules to check.
pub(super) fn expand_set_checks(model: &Container) -> Option<TokenStream> {
    let mut checks = Vec::new();
    for field in model.fields.iter() {
        if !field.has_path() || field.attrs.flatten {
            continue;
        }
        let nested = field.attrs.nested.is_some();
        if field.attrs.rules.is_empty() && !nested {
            continue;
        }
        let stored = &field.stored;
        let ty = field.ty;
        let value = quote!(&value);
        let mut whole = rule_checks(field, &value, &quote!(full));
        if nested {
            whole.push(nested_rules(field, &value, &quote!(full)));
        }
        let below = nested.then(|| {
            let inner = embedded_type(ty);
            let below = format!("{stored}.");
            let hand_over = if generic_inner(ty, "Vec").is_some() {
                quote! {
                    match sub.split_once('.') {
                        ::std::option::Option::None => {
                            if let ::std::result::Result::Ok(element) =
                                __m::from_bson::<#inner>(::std::clone::Clone::clone(value))
                            {
                                <#inner as __m::Embedded>::__field_failures_at(&element, full, failures);
                            }
                        }
                        ::std::option::Option::Some((_, tail)) => {
                            <#inner as __m::Embedded>::__check_set_at(full, tail, value, failures);
                        }
                    }
                }
            } else {
                quote!(<#inner as __m::Embedded>::__check_set_at(full, sub, value, failures);)
            };
            quote! {
                if let ::std::option::Option::Some(sub) = rest.strip_prefix(#below) {
                    #hand_over
                }
            }
        });
        checks.push(quote! {
            if rest == #stored {
                if let ::std::result::Result::Ok(value) =
                    __m::from_bson::<#ty>(::std::clone::Clone::clone(value))
                {
                    #(#whole)*
                }
            }
            #below
        });
    }
    if checks.is_empty() {
        return None;
    }
    Some(quote!(#(#checks)*))
}

/// Runs the rules of the embedded struct in a `#[model(nested)]` field, which holds a `T`, an
/// `Option<T>` (checked when `Some`) or a `Vec<T>` (every element, at `path.<index>`).
/// `value` is an expression of type `&T` for the field's type, `path` one that derefs to `str`.
pub(super) fn nested_rules(field: &Field, value: &TokenStream, path: &TokenStream) -> TokenStream {
    let inner = embedded_type(field.ty);
    // Spanned at the embedded type, where a type that is not `#[model(embedded)]` is reported.
    let check = quote_spanned!(inner.span()=> <#inner as __m::Embedded>::__field_failures_at);
    let walk = if option_inner(field.ty).is_some() {
        quote! {
            if let ::std::option::Option::Some(value) = #value {
                #check(value, &path, failures);
            }
        }
    } else if generic_inner(field.ty, "Vec").is_some() {
        quote! {
            for (index, value) in (#value).iter().enumerate() {
                #check(value, &::std::format!("{path}.{index}"), failures);
            }
        }
    } else {
        quote!(#check(#value, &path, failures);)
    };
    quote! {
        let path = #path;
        #walk
    }
}
