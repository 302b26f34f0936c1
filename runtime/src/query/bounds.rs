//! The traits that decide which field types an operator applies to (`FieldValue`, `Optional`,
//! `Numeric`, `Comparable`, `Array`, `Text`) and the never-implemented ones behind the refused
//! operators (`UpdatableId`, `UpdatableVersion`, `WholeNested`).
//!
//! They are together because they are the compiler's side of the typed paths: each carries the
//! `#[diagnostic::on_unimplemented]` message a user sees when an operator does not fit the field,
//! and side by side those messages can be kept consistent. The operators that use them are with
//! the path types (`field.rs`, `readonly.rs`, `nested.rs`).

use serde::Serialize;

/// A value that a path to a field of type `T` accepts: a `T`, or anything that converts into one
/// with [`Into`] (`&str` for a `String` field, `i32` for an `f64` field, ...).
///
/// Implemented for every such type; it exists so that a value of the wrong type is reported as
/// such rather than as a missing `From` implementation.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a value for a field of type `{T}`",
    label = "expected a `{T}`",
    note = "a typed path compares and sets values of its field's Rust type `{T}`, or of a type that converts into it with `Into`"
)]
pub trait FieldValue<T>: Into<T> {}

#[diagnostic::do_not_recommend]
impl<T, V: Into<T>> FieldValue<T> for V {}

mod sealed {
    pub trait Sealed {}

    impl<T> Sealed for Option<T> {}
}

/// The field types that [`Field::unset`](super::Field::unset) accepts: `Option<T>`, so that a
/// document read back after the field was removed still decodes.
#[diagnostic::on_unimplemented(
    message = "`unset` removes the field, but a `{Self}` field must always be present",
    label = "this field is not an `Option`",
    note = "to allow removing it, declare the field as `Option<{Self}>`; to change its value, use `set`"
)]
pub trait Optional: sealed::Sealed {}

impl<T> Optional for Option<T> {}

/// Never implemented: a stored document's `_id` cannot change. It only makes `set` on an
/// [`IdField`] fail with a message that says so.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "the id field cannot be updated: MongoDB never changes a stored document's `_id`",
    label = "`_id` is fixed when the document is inserted",
    note = "to give a document another id, insert a copy with the new id and delete the old one; to find a document by id, use `eq` or `Repo::find_by_id`"
)]
pub trait UpdatableId: sealed::Sealed {}

/// Never implemented: the version field of a versioned model is kept by the repository. It only
/// makes the update operators of a [`VersionField`] fail with a message that says so.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "the version field cannot be changed by a typed update: the repository increments it on every write",
    label = "the version is kept by the repository",
    note = "every update of a versioned model already adds `$inc` of the version, so updating it again would conflict; to write only while the document is at a known version, use `.expect_version(v)`; the version path filters and sorts (`eq`, `gt`, `asc`, ...)"
)]
pub trait UpdatableVersion: sealed::Sealed {}

/// Never implemented: a `#[model(nested)]` path leads into an embedded struct and has no
/// operators of its own. It only makes them fail with a message that says what to write.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "a `#[model(nested)]` path has no operators of its own",
    label = "this path leads into an embedded `{Self}`",
    note = "to compare or set the whole value, go through `.field()`, as in `Order::fields().address.field().eq(..)`; to test one of its fields, use that sub-path, as in `Order::fields().address.city.eq(..)`"
)]
pub trait WholeNested: sealed::Sealed {}

/// Never implemented: a sub-path through an array (`items.status`) matches any element in a
/// filter but names no single element to write. It only makes the update operators of an
/// [`AnyElement`](super::AnyElement) fail with a message that says which positional form to use.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "this path goes through an array, so it names no single element to update",
    label = "a sub-path of an array's elements: it can filter (any element matches) but not update",
    note = "say which elements to update: `.matched()` for the element the filter matched (`items.$`), as in `Order::fields().items.matched().status.set(..)`; `.all()` for every element (`items.$[]`); `.filtered(\"name\")` for the elements meeting a condition (`items.$[name]`, with `.array_filter(..)` on the update); to replace the whole array, use `.field().set(..)`"
)]
pub trait ThroughArray: sealed::Sealed {}

/// The field types whose elements the positional paths (`matched`, `all`, `filtered`) and
/// `pull_where` address: `Vec<T>`, whose elements are `T`.
#[diagnostic::on_unimplemented(
    message = "positional paths and `pull_where` address the elements of an array, but this field holds a `{Self}`",
    label = "not a `Vec` field",
    note = "`matched()`, `all()`, `filtered(..)` and `pull_where(..)` apply to `Vec` fields; this field holds one value: update it through its own path, as in `Order::fields().address.city.set(..)`"
)]
pub trait Positional {
    /// The type of one element.
    type Element;
}

impl<T> Positional for Vec<T> {
    type Element = T;
}

/// The numbers `$inc` and `$mul` add and multiply by.
pub trait Number: Serialize {}

/// The values `$min` and `$max` compare: numbers and dates.
pub trait Ordered: Serialize {}

/// The field types [`Field::inc`](super::Field::inc) and [`Field::mul`](super::Field::mul)
/// apply to: numbers, and `Option`s of them.
#[diagnostic::on_unimplemented(
    message = "`inc` and `mul` change numbers, but this field holds a `{Self}`",
    label = "not a numeric field",
    note = "`inc` and `mul` apply to fields of type `i32`, `i64`, `u32`, `f32`, `f64` or an `Option` of one; to replace the value, use `set(..)`"
)]
pub trait Numeric {
    /// The number the operator takes (the field's type without `Option`).
    type Number: Number + 'static;
}

/// The field types [`Field::min`](super::Field::min) and [`Field::max`](super::Field::max)
/// apply to: numbers and dates, and `Option`s of them.
#[diagnostic::on_unimplemented(
    message = "`min` and `max` compare numbers and dates, but this field holds a `{Self}`",
    label = "not a number or a date",
    note = "`min` and `max` apply to numeric fields, `bson::DateTime` fields and `Option`s of them; to replace the value, use `set(..)`"
)]
pub trait Comparable {
    /// The value the operator takes (the field's type without `Option`).
    type Value: Ordered + 'static;
}

// A macro because each number needs the same four one-line impls; a blanket impl cannot name a
// closed list of types, and a helper trait would only add a name to every error message.
macro_rules! numbers {
    ($($ty:ty),*) => {$(
        impl Number for $ty {}
        impl Ordered for $ty {}
        impl Numeric for $ty { type Number = $ty; }
        impl Comparable for $ty { type Value = $ty; }
    )*};
}
numbers!(i32, i64, u32, f32, f64);

impl Ordered for mongodb::bson::DateTime {}

impl Comparable for mongodb::bson::DateTime {
    type Value = mongodb::bson::DateTime;
}

impl<T: Number + 'static> Numeric for Option<T> {
    type Number = T;
}

impl<T: Ordered + 'static> Comparable for Option<T> {
    type Value = T;
}

/// The field types the array operators apply to: `Vec<T>`, whose elements are `T`.
#[diagnostic::on_unimplemented(
    message = "this operator works on arrays, but this field holds a `{Self}`",
    label = "not a `Vec` field",
    note = "`push`, `push_each`, `add_to_set`, `pull`, `pull_all`, `pop`, `contains`, `contains_all` and `len_eq` apply to `Vec<T>` fields; to replace the value, use `set(..)`; to compare it, use `eq(..)`"
)]
pub trait Array {
    /// The type of one element.
    type Element: Serialize + 'static;
}

impl<T: Serialize + 'static> Array for Vec<T> {
    type Element = T;
}

/// The field types [`Field::matches`](super::Field::matches) applies to: `String` and
/// `Option<String>`.
#[diagnostic::on_unimplemented(
    message = "`matches` tests strings, but this field holds a `{Self}`",
    label = "not a string field",
    note = "`matches` applies to `String` and `Option<String>` fields; to compare other values, use `eq(..)`"
)]
pub trait Text {}

impl Text for String {}
impl Text for Option<String> {}
