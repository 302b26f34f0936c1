//! Projections: structs that hold some of a model's fields (`#[derive(Projection)]`), read with
//! `repo.find(..).project::<Summary>()` without fetching or decoding the rest of the document.
//!
//! The derive checks each field against the model at compile time (the model must have a field
//! of that name, and its type must fit the projection's) through [`ProjectedPath`] and
//! [`ProjectInto`], and generates the projection document from the model's stored paths, so the
//! model's serde renames and the projection's own are both honoured.

use mongodb::bson::{Bson, Document};
use serde::de::DeserializeOwned;

use crate::model::Model;
use crate::query::{Field, IdField, Nested, VersionField};

/// A struct that holds some fields of model [`Projection::Model`]. Implemented by
/// `#[derive(Projection)]` with `#[projection(of = Model)]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a projection",
    label = "needs `#[derive(Projection)]`",
    note = "add `#[derive(Deserialize, Projection)]` and `#[projection(of = TheModel)]` to `{Self}`"
)]
pub trait Projection: DeserializeOwned + Send + Unpin + 'static {
    /// The model the fields are read from.
    type Model: Model;

    /// The projection document sent with the query: each field of the projection under its own
    /// serde name, taken from the model's stored path.
    fn projection() -> Document;
}

/// A model field of type `Self` can be read into a projection field of type `Out`: the same
/// type, or an `Option` of it.
#[diagnostic::on_unimplemented(
    message = "the model's field holds a `{Self}`, which a projection field of type `{Out}` cannot hold",
    label = "declared here with another type than the model's field",
    note = "declare the projection field with the model field's type `{Self}` (or `Option<{Self}>`)"
)]
pub trait ProjectInto<Out> {}

impl<T> ProjectInto<T> for T {}
impl<T> ProjectInto<Option<T>> for T {}

/// A typed path whose field a projection field of type `Out` can hold; gives its stored path.
#[doc(hidden)]
pub trait ProjectedPath<Out> {
    fn __stored_path(&self) -> &str;
}

impl<M, T: ProjectInto<Out>, Out> ProjectedPath<Out> for Field<M, T> {
    fn __stored_path(&self) -> &str {
        self.path()
    }
}

impl<M, T: ProjectInto<Out>, Out> ProjectedPath<Out> for IdField<M, T> {
    fn __stored_path(&self) -> &str {
        self.path()
    }
}

impl<M, T: ProjectInto<Out>, Out> ProjectedPath<Out> for VersionField<M, T> {
    fn __stored_path(&self) -> &str {
        self.path()
    }
}

impl<M, T: ProjectInto<Out>, F, Out> ProjectedPath<Out> for Nested<M, T, F> {
    fn __stored_path(&self) -> &str {
        self.path()
    }
}

/// Adds one projection field to `doc`: `name: 1` when it is stored under the same name in the
/// model, otherwise `name: "$path"` (an aggregation expression, which `find` accepts since
/// MongoDB 4.4), so that the result decodes under the projection's own names.
#[doc(hidden)]
pub fn project_field<Out, P: ProjectedPath<Out>>(doc: &mut Document, name: &str, path: &P) {
    let path = path.__stored_path();
    let value = if path == name {
        Bson::Int32(1)
    } else {
        Bson::String(format!("${path}"))
    };
    doc.insert(name, value);
}
