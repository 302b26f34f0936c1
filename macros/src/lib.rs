//! The derive macro behind [mongrove](https://docs.rs/mongrove). Depend on `mongrove`, which
//! re-exports [`Model`](macro@Model); this crate has no runtime types of its own.
//!
//! The shape follows `serde_derive`: `ast` turns `syn` input into a model description, `attr` parses
//! the `#[model(...)]` and `#[serde(...)]` attributes, `check` validates the description, and `expand`
//! writes the code. Errors are accumulated in a `ctxt::Ctxt` and reported together.

mod ast;
mod attr;
mod case;
mod check;
mod ctxt;
mod expand;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `mongrove::Model` (or `mongrove::Embedded` with `#[model(embedded)]`) for a serde struct.
///
/// See the `mongrove` crate documentation for the attributes it accepts.
#[proc_macro_derive(Model, attributes(model))]
pub fn derive_model(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Derives `mongrove::Projection` for a struct that reads some fields of a model:
/// `#[projection(of = Order)]`. Each field must be named like a field of the model (serde names
/// of the projection are honoured) and have its type or an `Option` of it; both are checked at
/// compile time.
#[proc_macro_derive(Projection, attributes(projection))]
pub fn derive_projection(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::projection::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
