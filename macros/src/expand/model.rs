//! `impl Model` for a struct with a collection: ids, versions, timestamps, indexes, hooks.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::*;

pub(super) fn expand_model(model: &Container) -> TokenStream {
    let ident = model.ident;
    let vis = model.vis;
    let fields_ident = format_ident!("{}Fields", ident);
    let literal_ident = literal_ident(model, &fields_ident);
    let root = quote!(#ident);
    let private = private_path(model);
    let version_field = model
        .attrs
        .version
        .as_ref()
        .and_then(|lit| model.fields.iter().find(|f| f.rust_name() == lit.value()));
    let (decls, inits): (Vec<_>, Vec<_>) = model
        .fields
        .iter()
        .filter_map(|f| path_member(f, &private, &root, version_field, None))
        .unzip();
    let fields_doc = format!(
        "Typed field paths of [`{ident}`], from [`{ident}::fields()`]: build filters, updates and sorts \
         that the compiler checks against the struct."
    );
    let collection = model
        .attrs
        .collection
        .as_ref()
        .map(|lit| lit.value())
        .unwrap_or_else(|| default_collection_name(&ident.to_string()));

    let id_field = model.fields.iter().find(|f| f.is_id());
    let (id_ty, id_get, id_set) = match id_field {
        Some(field) => {
            let member = field.ident;
            match option_inner(field.ty) {
                Some(inner) => (
                    quote!(#inner),
                    quote!(::std::clone::Clone::clone(&self.#member)),
                    quote!(self.#member = ::std::option::Option::Some(id); true),
                ),
                None => {
                    let ty = field.ty;
                    (
                        quote!(#ty),
                        quote!(::std::option::Option::Some(::std::clone::Clone::clone(&self.#member))),
                        quote!(self.#member = id; true),
                    )
                }
            }
        }
        None => (
            quote!(__m::ObjectId),
            quote!(::std::option::Option::None),
            quote!(let _ = id; false),
        ),
    };

    let versioned = version_field.map(|_| quote!(impl __m::Versioned for #ident {}));
    let (version_const, version_get, version_set) = match version_field {
        Some(field) => {
            let member = field.ident;
            let stored = &field.stored;
            let ty = field.ty;
            (
                quote!(::std::option::Option::Some(#stored)),
                quote!(::std::option::Option::Some(__m::version_to_i64(self.#member))),
                quote!(self.#member = version as #ty;),
            )
        }
        None => (
            quote!(::std::option::Option::None),
            quote!(::std::option::Option::None),
            quote!(let _ = version;),
        ),
    };

    let (timestamps_const, touch) = match &model.attrs.timestamps {
        Some(ts) => {
            let created = model
                .fields
                .iter()
                .find(|f| f.rust_name() == ts.created.value());
            let updated = model
                .fields
                .iter()
                .find(|f| f.rust_name() == ts.updated.value());
            match (created, updated) {
                (Some(created), Some(updated)) => {
                    let (c_member, c_stored) = (created.ident, &created.stored);
                    let (u_member, u_stored) = (updated.ident, &updated.stored);
                    (
                        quote!(::std::option::Option::Some(__m::TimestampFields {
                            created: #c_stored,
                            updated: #u_stored,
                        })),
                        quote! {
                            if created {
                                self.#c_member = ::std::convert::From::from(now);
                            }
                            self.#u_member = ::std::convert::From::from(now);
                        },
                    )
                }
                _ => (
                    quote!(::std::option::Option::None),
                    quote!(let _ = (created, now);),
                ),
            }
        }
        None => (
            quote!(::std::option::Option::None),
            quote!(let _ = (created, now);),
        ),
    };

    let indexes = model.attrs.indexes.iter().map(|index| {
        let keys: Vec<(String, IndexKind)> = index
            .keys
            .iter()
            .map(|key| {
                let path = match &key.target {
                    KeyTarget::Field(ident) => model
                        .fields
                        .iter()
                        .find(|f| *ident == f.rust_name())
                        .map(|f| f.stored.clone())
                        .unwrap_or_default(),
                    KeyTarget::Path(lit) => lit.value(),
                };
                (path, key.kind.clone())
            })
            .collect();
        let name = index
            .name
            .as_ref()
            .map(|lit| lit.value())
            .unwrap_or_else(|| default_index_name(&keys));
        let key_tokens = keys.iter().map(|(path, kind)| {
            let kind = match kind {
                IndexKind::Ascending => quote!(__m::IndexKey::Ascending),
                IndexKind::Descending => quote!(__m::IndexKey::Descending),
                IndexKind::Special(kind) => quote!(__m::IndexKey::Special(#kind)),
            };
            quote!((#path, #kind))
        });
        let unique = index.unique;
        let sparse = index.sparse;
        let expire = match index.expire_after {
            Some(secs) => quote!(::std::option::Option::Some(#secs)),
            None => quote!(::std::option::Option::None),
        };
        let partial = match &index.partial {
            // Spanned at the path, so a function of another type is reported there.
            Some(path) => quote_spanned!(path.span()=> ::std::option::Option::Some({
                let partial: fn() -> __m::Document = #path;
                partial
            })),
            None => quote!(::std::option::Option::None),
        };
        quote! {
            __m::IndexSpec::__new(#name, &[#(#key_tokens),*], #unique, #sparse, #expire, #partial)
        }
    });

    let hooks = if let Some(span) = model.attrs.hooks {
        // Every runner comes from one call spanned at `hooks`: a missing `impl Hooks` is then
        // reported once, on the attribute that asks for it.
        let fns = quote_spanned!(span=> __m::hooks_of::<Self>());
        quote! {
            const HAS_HOOKS: bool = true;

            fn __hook<'a>(
                &'a mut self,
                point: __m::HookPoint,
                ctx: &'a mut __m::HookContext<'_>,
            ) -> __m::BoxFuture<'a, __m::HookResult> {
                (#fns.hook)(self, point, ctx)
            }

            fn __hook_ref<'a>(
                &'a self,
                point: __m::HookPoint,
                ctx: &'a mut __m::HookContext<'_>,
            ) -> __m::BoxFuture<'a, __m::HookResult> {
                (#fns.hook_ref)(self, point, ctx)
            }

            fn __validate_hook<'a>(
                &'a self,
                ctx: &'a mut __m::HookContext<'_>,
            ) -> __m::BoxFuture<'a, ::std::vec::Vec<__m::FieldFailure>> {
                (#fns.validate)(self, ctx)
            }

            fn __before_update<'a>(
                ctx: &'a mut __m::HookContext<'_>,
                spec: __m::UpdateSpec<'a>,
            ) -> __m::BoxFuture<'a, __m::HookResult> {
                (#fns.before_update)(ctx, spec)
            }

            fn __after_update<'a>(ctx: &'a mut __m::HookContext<'_>) -> __m::BoxFuture<'a, __m::HookResult> {
                (#fns.after_update)(ctx)
            }
        }
    } else {
        TokenStream::new()
    };
    let field_failures = expand_rules(model).map(|checks| {
        quote! {
            fn __field_failures(&self) -> ::std::vec::Vec<__m::FieldFailure> {
                let prefix = "";
                let mut list = ::std::vec::Vec::new();
                let failures = &mut list;
                #checks
                list
            }
        }
    });

    let check_set = expand_set_checks(model).map(|checks| {
        quote! {
            fn __check_set(
                path: &str,
                value: &__m::Bson,
                failures: &mut ::std::vec::Vec<__m::FieldFailure>,
            ) {
                let (full, rest) = (path, path);
                #checks
            }
        }
    });

    quote! {
        #[doc = #fields_doc]
        #vis struct #fields_ident {
            #(#decls,)*
        }

        impl #ident {
            /// Typed field paths for filters, updates, sorts and projections.
            #vis fn fields() -> #literal_ident {
                <Self as #private::Model>::fields()
            }
        }

        const _: () = {
            use #private as __m;

            impl __m::Model for #ident {
                type Id = #id_ty;
                type Fields = #fields_ident;
                const COLLECTION: &'static str = #collection;
                const VERSION_FIELD: ::std::option::Option<&'static str> = #version_const;
                const TIMESTAMPS: ::std::option::Option<__m::TimestampFields> = #timestamps_const;

                fn fields() -> #fields_ident {
                    let prefix = "";
                    #literal_ident { #(#inits,)* }
                }

                fn id(&self) -> ::std::option::Option<Self::Id> {
                    #id_get
                }

                fn __set_id(&mut self, id: Self::Id) -> bool {
                    #id_set
                }

                fn version(&self) -> ::std::option::Option<i64> {
                    #version_get
                }

                fn __set_version(&mut self, version: i64) {
                    #version_set
                }

                fn __touch(&mut self, created: bool, now: __m::DateTime) {
                    #touch
                }

                fn indexes() -> ::std::vec::Vec<__m::IndexSpec> {
                    ::std::vec![#(#indexes),*]
                }

                #hooks

                #field_failures

                #check_set

                fn __derived() -> __m::Derived {
                    __m::Derived
                }
            }

            #versioned
        };
    }
}
