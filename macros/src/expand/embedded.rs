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
    let (decls, inits): (Vec<_>, Vec<_>) = model
        .fields
        .iter()
        .filter_map(|f| path_member(f, &private, &root, None))
        .unzip();
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
        #vis struct #fields_ident<M> {
            #(#decls,)*
            __root: ::std::marker::PhantomData<fn() -> M>,
        }

        const _: () = {
            use #private as __m;

            impl __m::Embedded for #ident {
                type Fields<M> = #fields_ident<M>;

                fn __fields_at<M>(prefix: &str) -> #fields_ident<M> {
                    #literal_ident { #(#inits,)* __root: ::std::marker::PhantomData }
                }

                #field_failures
            }
        };
    }
}
