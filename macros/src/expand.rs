//! Turns a checked model description into `impl Model` (or `impl Embedded`) and its field paths.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
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
fn option_inner(ty: &Type) -> Option<&Type> {
    generic_inner(ty, "Option")
}

fn generic_inner<'a>(ty: &'a Type, wrapper: &str) -> Option<&'a Type> {
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
fn embedded_type(ty: &Type) -> &Type {
    option_inner(ty)
        .or_else(|| generic_inner(ty, "Vec"))
        .unwrap_or(ty)
}

/// One field of the generated paths struct: its declaration and its initialiser. The version
/// field gets a path without update operators: the repository owns its value.
fn path_member(
    field: &Field,
    private: &TokenStream,
    root: &TokenStream,
    version: Option<&Field>,
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
        let sub = quote_spanned!(span=> <#inner as #private::Embedded>::Fields<#root>);
        Some((
            quote_spanned!(span=> #[doc = #doc] pub #ident: #private::Nested<#root, #ty, #sub>),
            quote_spanned!(span=> #member: {
                let path = #path;
                let sub = <#inner as __m::Embedded>::__fields_at::<#root>(&path);
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
fn literal_ident(model: &Container, fields_ident: &Ident) -> Ident {
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
fn respanned(tokens: &TokenStream, span: proc_macro2::Span) -> TokenStream {
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
fn private_path(model: &Container) -> TokenStream {
    match &model.attrs.krate {
        Some(krate) => quote!(#krate::__private_v1),
        None => quote!(::mongrove::__private_v1),
    }
}

fn expand_model(model: &Container) -> TokenStream {
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
        .filter_map(|f| path_member(f, &private, &root, version_field))
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

                fn __derived() -> __m::Derived {
                    __m::Derived
                }
            }

            #versioned
        };
    }
}

/// The checks of the declarative rules (`#[model(validate(...))]`), each run so every failure is
/// reported, then those of the embedded structs held by `#[model(nested)]` fields. The code runs
/// with `prefix: &str` (the stored path of the value, `""` for a model) and
/// `failures: &mut Vec<FieldFailure>` in scope. `None` when there is nothing to check.
///
/// Failures are reported by stored path, in MongoDB's dotted form: `address.postCode`, and for
/// an element of a `Vec`, `lines.2.qty`.
fn expand_rules(model: &Container) -> Option<TokenStream> {
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
fn nested_rules(field: &Field) -> TokenStream {
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

fn expand_embedded(model: &Container) -> TokenStream {
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
