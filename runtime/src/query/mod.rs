//! Typed field paths and the filters, updates and sorts built from them.
//!
//! A path knows the model it belongs to (`M`) and the Rust type of its field (`T`), so a filter
//! for one collection cannot be used on another and a value of the wrong type does not compile.
//! Raw `Document`s convert into [`Filter`] and [`Update`] as an escape hatch.
//!
//! Typed comparisons are literal: a value is only ever compared with, stored as or removed as
//! itself, whatever it holds. The server reads a document whose first key starts with `$` as an
//! operator (`{"$ne": 1}`), a regular expression as a pattern and `{"$each": [..]}` as a list of
//! elements, so every constructor here puts values where the server takes them as data: behind
//! `$eq`, inside `$each`, or in an explicit list of `$eq` tests.
//
// One file per concept. `field.rs`: `Field` and every operator it has (see there why the
// operators are not in `filter.rs` and `update.rs`), with the `path_basics!` the three path
// types share; `readonly.rs`: `IdField` and `VersionField`; `nested.rs`: `Nested`; `bounds.rs`:
// the traits that say which field types an operator applies to, with the compiler's messages;
// `array.rs`: paths into arrays (positional forms, element conditions, `AnyElement`);
// `filter.rs`, `update.rs`, `sort.rs`: the three documents the paths build. This file holds what
// they all use: the path join and the encoding of values, with its `EncodeProblem`. The module
// depends on nothing else in the crate.

use std::borrow::Cow;

use mongodb::bson::{Bson, doc};
use serde::Serialize;

mod array;
mod bounds;
mod field;
mod filter;
mod nested;
mod readonly;
mod sort;
mod update;

pub use array::{
    Addressable, AnyElement, ArrayFilter, Direct, Elements, Filtered, InArray, PathKind, SubPaths,
};
pub use bounds::{
    Array, Comparable, FieldValue, Number, Numeric, Optional, Ordered, Positional, Text,
    ThroughArray, UpdatableId, UpdatableVersion, WholeNested,
};
pub use field::Field;
pub use filter::{Filter, IntoFilter};
pub use nested::Nested;
pub use readonly::{IdField, VersionField};
pub use sort::Sort;
pub use update::Update;

/// Joins a path prefix and a stored field name: `("address", "city")` -> `address.city`.
#[doc(hidden)]
pub fn join_path(prefix: &str, name: &'static str) -> Cow<'static, str> {
    if prefix.is_empty() {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(format!("{prefix}.{name}"))
    }
}

/// A value that could not be encoded; reported when the operation runs, before anything is sent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EncodeProblem {
    pub(crate) what: String,
    pub(crate) reason: String,
}

fn encode<V: Serialize + 'static>(path: &str, value: &V) -> Result<Bson, EncodeProblem> {
    crate::value::to_bson(value).map_err(|e| EncodeProblem {
        what: format!("the value for `{path}`"),
        reason: e.to_string(),
    })
}

fn encode_all<T: Serialize + 'static, V: Into<T>>(
    path: &str,
    values: impl IntoIterator<Item = V>,
) -> Result<Vec<Bson>, EncodeProblem> {
    values
        .into_iter()
        .map(|v| encode(path, &v.into()))
        .collect()
}

/// `{"$eq": value}`: the operand of `$eq` is always data, never an operator.
fn literal(value: Bson) -> Bson {
    Bson::Document(doc! { "$eq": value })
}

/// Paths of a model used only by the unit tests, shared by every concept's tests.
#[cfg(test)]
mod fixtures {
    use std::borrow::Cow;

    use mongodb::bson::{Bson, doc};

    use super::Field;

    pub(super) struct Doc;

    pub(super) fn price() -> Field<Doc, f64> {
        Field::__new(Cow::Borrowed("price"))
    }

    pub(super) fn tags() -> Field<Doc, Vec<String>> {
        Field::__new(Cow::Borrowed("tags"))
    }

    pub(super) fn extra() -> Field<Doc, Bson> {
        Field::__new(Cow::Borrowed("extra"))
    }

    pub(super) fn items() -> Field<Doc, Vec<Bson>> {
        Field::__new(Cow::Borrowed("items"))
    }

    /// Sub-paths that are nothing, for a `Nested` whose own path is all a test needs.
    impl super::SubPaths for () {
        type Kind = super::Direct;
        type At<R, K: super::PathKind> = ();
        fn __at<R, K: super::PathKind>(_prefix: &str) {}
    }

    pub(super) fn hostile() -> Bson {
        Bson::Document(doc! { "$ne": 1 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_paths_join() {
        assert_eq!(join_path("", "a"), "a");
        assert_eq!(join_path("address", "city"), "address.city");
    }
}
