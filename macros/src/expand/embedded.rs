//! `impl Embedded` for a struct stored inside other models: paths rooted at the model that holds it.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::*;

pub(super) fn expand_embedded(model: &Container) -> TokenStream {
    let ident = model.ident;
    let vis = model.vis;
    let fields_ident = format_ident!("{}Fields", ident);
    let literal_ident = literal_ident(model, &fields_ident);
    let root = quote!(M);
    let private = private_path(model);
    let kind = quote!(K);
    let (decls, inits): (Vec<_>, Vec<_>) = model
        .fields
        .iter()
        .filter_map(|f| path_member(f, &private, &root, None, Some(&kind)))
        .unzip();
    let check_set = expand_set_checks(model).map(|checks| {
        quote! {
            fn __check_set_at(
                full: &str,
                rest: &str,
                value: &__m::Bson,
                failures: &mut ::std::vec::Vec<__m::FieldFailure>,
            ) {
                #checks
            }
        }
    });
    let field_failures = expand_rules(model).map(|checks| {
        quote! {
            fn __field_failures_at(
                &self,
                prefix: &str,
                failures: &mut ::std::vec::Vec<__m::FieldFailure>,
            ) {
                #checks
            }
        }
    });
    let doc = format!(
        "Typed field paths inside an embedded [`{ident}`], reached from the paths of the model that stores it."
    );
    quote! {
        #[doc = #doc]
        #vis struct #fields_ident<M, K: #private::PathKind = #private::Direct> {
            #(#decls,)*
            __root: ::std::marker::PhantomData<fn() -> (M, K)>,
        }

        const _: () = {
            use #private as __m;

            impl __m::Embedded for #ident {
                type Fields<M, K: __m::PathKind> = #fields_ident<M, K>;

                fn __fields_at<M, K: __m::PathKind>(prefix: &str) -> #fields_ident<M, K> {
                    #literal_ident { #(#inits,)* __root: ::std::marker::PhantomData }
                }

                #field_failures

                #check_set
            }

            impl<M, K: __m::PathKind> __m::SubPaths for #fields_ident<M, K> {
                type Kind = K;
                type At<R, K2: __m::PathKind> = #fields_ident<R, K2>;

                fn __at<R, K2: __m::PathKind>(prefix: &str) -> #fields_ident<R, K2> {
                    <#ident as __m::Embedded>::__fields_at::<R, K2>(prefix)
                }
            }
        };
    }
}
