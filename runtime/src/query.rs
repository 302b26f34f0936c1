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

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use mongodb::bson::{Bson, Document, doc};
use serde::Serialize;

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

fn encode<V: Serialize>(path: &str, value: &V) -> Result<Bson, EncodeProblem> {
    mongodb::bson::to_bson(value).map_err(|e| EncodeProblem {
        what: format!("the value for `{path}`"),
        reason: e.to_string(),
    })
}

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

/// The field types that [`Field::unset`] accepts: `Option<T>`, so that a document read back
/// after the field was removed still decodes.
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

/// A filter on model `M`, or something that converts into one (a raw `bson::Document`).
///
/// Implemented for every such type; it exists so that a filter built from another model's
/// paths is reported as such rather than as a missing `From` implementation.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a filter on `{M}`",
    label = "expected a filter on `{M}`",
    note = "a typed path belongs to the model it comes from: build this filter from `{M}::fields()`, or pass a raw `bson::Document`"
)]
pub trait IntoFilter<M>: Into<Filter<M>> {}

#[diagnostic::do_not_recommend]
impl<M, F: Into<Filter<M>>> IntoFilter<M> for F {}

/// The numbers `$inc` and `$mul` add and multiply by.
pub trait Number: Serialize {}

/// The values `$min` and `$max` compare: numbers and dates.
pub trait Ordered: Serialize {}

/// The field types [`Field::inc`] and [`Field::mul`] apply to: numbers, and `Option`s of them.
#[diagnostic::on_unimplemented(
    message = "`inc` and `mul` change numbers, but this field holds a `{Self}`",
    label = "not a numeric field",
    note = "`inc` and `mul` apply to fields of type `i32`, `i64`, `u32`, `f32`, `f64` or an `Option` of one; to replace the value, use `set(..)`"
)]
pub trait Numeric {
    /// The number the operator takes (the field's type without `Option`).
    type Number: Number;
}

/// The field types [`Field::min`] and [`Field::max`] apply to: numbers and dates, and `Option`s
/// of them.
#[diagnostic::on_unimplemented(
    message = "`min` and `max` compare numbers and dates, but this field holds a `{Self}`",
    label = "not a number or a date",
    note = "`min` and `max` apply to numeric fields, `bson::DateTime` fields and `Option`s of them; to replace the value, use `set(..)`"
)]
pub trait Comparable {
    /// The value the operator takes (the field's type without `Option`).
    type Value: Ordered;
}

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

impl<T: Number> Numeric for Option<T> {
    type Number = T;
}

impl<T: Ordered> Comparable for Option<T> {
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
    type Element: Serialize;
}

impl<T: Serialize> Array for Vec<T> {
    type Element = T;
}

/// The field types [`Field::matches`] applies to: `String` and `Option<String>`.
#[diagnostic::on_unimplemented(
    message = "`matches` tests strings, but this field holds a `{Self}`",
    label = "not a string field",
    note = "`matches` applies to `String` and `Option<String>` fields; to compare other values, use `eq(..)`"
)]
pub trait Text {}

impl Text for String {}
impl Text for Option<String> {}

/// A typed path to a field of model `M` whose Rust type is `T`.
pub struct Field<M, T> {
    path: Cow<'static, str>,
    marker: PhantomData<fn() -> (M, T)>,
}

/// The path to `_id`: it filters and sorts, but cannot be updated.
pub struct IdField<M, T> {
    path: Cow<'static, str>,
    marker: PhantomData<fn() -> (M, T)>,
}

/// The path to the version field of a versioned model (`#[model(version = "...")]`): it filters
/// and sorts, but typed updates cannot change it, because the repository increments it on every
/// write.
pub struct VersionField<M, T> {
    path: Cow<'static, str>,
    marker: PhantomData<fn() -> (M, T)>,
}

// One definition for the three path types, which share every filter and sort; a generic
// wrapper would put the difference (which updates exist) in a type parameter that every
// signature and error message would then show.
macro_rules! path_basics {
    ($name:ident) => {
        impl<M, T> $name<M, T> {
            #[doc(hidden)]
            pub fn __new(path: Cow<'static, str>) -> Self {
                $name {
                    path,
                    marker: PhantomData,
                }
            }

            /// The stored path, as the server sees it (`address.city`).
            pub fn path(&self) -> &str {
                &self.path
            }

            /// Sort ascending by this field.
            pub fn asc(&self) -> Sort<M> {
                Sort::by(self.path(), 1)
            }

            /// Sort descending by this field.
            pub fn desc(&self) -> Sort<M> {
                Sort::by(self.path(), -1)
            }

            /// Matches documents that have (`true`) or lack (`false`) this field.
            pub fn exists(&self, exists: bool) -> Filter<M> {
                Filter::op(self.path(), "$exists", Ok(Bson::Boolean(exists)))
            }
        }

        impl<M, T> Clone for $name<M, T> {
            fn clone(&self) -> Self {
                Self::__new(self.path.clone())
            }
        }

        impl<M, T> fmt::Debug for $name<M, T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.path).finish()
            }
        }

        impl<M, T: Serialize> $name<M, T> {
            /// Field equals `value`, compared literally (`$eq`): a value that looks like an
            /// operator, such as `{"$ne": 1}`, matches only a stored `{"$ne": 1}`.
            pub fn eq(&self, value: impl FieldValue<T>) -> Filter<M> {
                self.compare("$eq", value.into())
            }

            /// Field does not equal `value`.
            pub fn ne(&self, value: impl FieldValue<T>) -> Filter<M> {
                self.compare("$ne", value.into())
            }

            /// Field is greater than `value`.
            pub fn gt(&self, value: impl FieldValue<T>) -> Filter<M> {
                self.compare("$gt", value.into())
            }

            /// Field is greater than or equal to `value`.
            pub fn gte(&self, value: impl FieldValue<T>) -> Filter<M> {
                self.compare("$gte", value.into())
            }

            /// Field is less than `value`.
            pub fn lt(&self, value: impl FieldValue<T>) -> Filter<M> {
                self.compare("$lt", value.into())
            }

            /// Field is less than or equal to `value`.
            pub fn lte(&self, value: impl FieldValue<T>) -> Filter<M> {
                self.compare("$lte", value.into())
            }

            /// Field equals one of `values` (each compared literally).
            pub fn in_<V: FieldValue<T>>(&self, values: impl IntoIterator<Item = V>) -> Filter<M> {
                Filter::list(
                    self.path(),
                    ListOp::In,
                    encode_all::<T, V>(self.path(), values),
                )
            }

            /// Field equals none of `values` (each compared literally).
            pub fn nin<V: FieldValue<T>>(&self, values: impl IntoIterator<Item = V>) -> Filter<M> {
                Filter::list(
                    self.path(),
                    ListOp::Nin,
                    encode_all::<T, V>(self.path(), values),
                )
            }

            fn compare(&self, op: &str, value: T) -> Filter<M> {
                Filter::op(self.path(), op, encode(self.path(), &value))
            }
        }
    };
}

path_basics!(Field);
path_basics!(IdField);
path_basics!(VersionField);

impl<M, T: Serialize> Field<M, T> {
    /// `$set`: replace the field's value. The value is stored as it is, even when it holds
    /// keys starting with `$` (MongoDB 5.0 and later store them).
    pub fn set(&self, value: impl FieldValue<T>) -> Update<M> {
        Update::op("$set", self.path(), encode(self.path(), &value.into()))
    }

    /// `$setOnInsert`: set the field only when an upsert inserts the document.
    pub fn set_on_insert(&self, value: impl FieldValue<T>) -> Update<M> {
        Update::op(
            "$setOnInsert",
            self.path(),
            encode(self.path(), &value.into()),
        )
    }
}

impl<M, T> Field<M, T> {
    /// `$unset`: remove the field. Only optional fields can be unset, so that a document read
    /// back still decodes.
    pub fn unset(&self) -> Update<M>
    where
        T: Optional,
    {
        Update::op("$unset", self.path(), Ok(Bson::String(String::new())))
    }

    /// Field is absent or null.
    pub fn is_none(&self) -> Filter<M>
    where
        T: Optional,
    {
        Filter::op(self.path(), "$eq", Ok(Bson::Null))
    }

    /// `$inc`: add `by` atomically on the server (on an `Option` field, a missing field counts
    /// as 0).
    pub fn inc(&self, by: impl FieldValue<T::Number>) -> Update<M>
    where
        T: Numeric,
    {
        Update::op("$inc", self.path(), encode(self.path(), &by.into()))
    }

    /// `$mul`: multiply by `by` atomically on the server.
    pub fn mul(&self, by: impl FieldValue<T::Number>) -> Update<M>
    where
        T: Numeric,
    {
        Update::op("$mul", self.path(), encode(self.path(), &by.into()))
    }

    /// `$min`: lower the field to `value` when `value` is smaller (numbers and dates).
    pub fn min(&self, value: impl FieldValue<T::Value>) -> Update<M>
    where
        T: Comparable,
    {
        Update::op("$min", self.path(), encode(self.path(), &value.into()))
    }

    /// `$max`: raise the field to `value` when `value` is larger (numbers and dates).
    pub fn max(&self, value: impl FieldValue<T::Value>) -> Update<M>
    where
        T: Comparable,
    {
        Update::op("$max", self.path(), encode(self.path(), &value.into()))
    }

    /// `$push`: append one element, as it is (a value such as `{"$each": [..]}` is appended as
    /// one document, not read as a list).
    pub fn push(&self, value: impl FieldValue<T::Element>) -> Update<M>
    where
        T: Array,
    {
        self.push_each([value])
    }

    /// `$push` with `$each`: append several elements.
    pub fn push_each<V: FieldValue<T::Element>>(
        &self,
        values: impl IntoIterator<Item = V>,
    ) -> Update<M>
    where
        T: Array,
    {
        Update::op(
            "$push",
            self.path(),
            each::<T::Element, V>(self.path(), values),
        )
    }

    /// `$addToSet`: append the element unless it is already there (compared literally).
    pub fn add_to_set(&self, value: impl FieldValue<T::Element>) -> Update<M>
    where
        T: Array,
    {
        // `$each` with one element: the server reads a bare value whose first key is `$each`
        // as the list of elements to add.
        Update::op(
            "$addToSet",
            self.path(),
            each::<T::Element, _>(self.path(), [value]),
        )
    }

    /// `$pull`: remove every element equal to `value`.
    pub fn pull(&self, value: impl FieldValue<T::Element>) -> Update<M>
    where
        T: Array,
    {
        // A bare document is a condition on the elements (`{"$ne": 1}` would remove all but
        // 1s); under `$eq` it is the value to remove, for scalar and document elements alike.
        let value = encode(self.path(), &value.into());
        Update::op("$pull", self.path(), value.map(literal))
    }

    /// `$pullAll`: remove every element equal to one of `values`.
    pub fn pull_all<V: FieldValue<T::Element>>(
        &self,
        values: impl IntoIterator<Item = V>,
    ) -> Update<M>
    where
        T: Array,
    {
        // `$pullAll` compares whole elements and never reads operators: literal as it is.
        Update::op(
            "$pullAll",
            self.path(),
            encode_all::<T::Element, V>(self.path(), values).map(Bson::Array),
        )
    }

    /// `$pop`: remove the last element (`first = false`) or the first one.
    pub fn pop(&self, first: bool) -> Update<M>
    where
        T: Array,
    {
        Update::op(
            "$pop",
            self.path(),
            Ok(Bson::Int32(if first { -1 } else { 1 })),
        )
    }

    /// The array contains an element equal to `value` (compared literally).
    pub fn contains(&self, value: impl FieldValue<T::Element>) -> Filter<M>
    where
        T: Array,
    {
        Filter::op(self.path(), "$eq", encode(self.path(), &value.into()))
    }

    /// The array contains every one of `values` (each compared literally).
    pub fn contains_all<V: FieldValue<T::Element>>(
        &self,
        values: impl IntoIterator<Item = V>,
    ) -> Filter<M>
    where
        T: Array,
    {
        Filter::list(
            self.path(),
            ListOp::All,
            encode_all::<T::Element, V>(self.path(), values),
        )
    }

    /// The array has exactly `len` elements.
    pub fn len_eq(&self, len: u32) -> Filter<M>
    where
        T: Array,
    {
        Filter::op(self.path(), "$size", Ok(Bson::Int64(i64::from(len))))
    }

    /// The string matches the regular expression `pattern` (with `options` such as `"i"`); on
    /// an `Option<String>` field a missing value does not match.
    pub fn matches(&self, pattern: &str, options: &str) -> Filter<M>
    where
        T: Text,
    {
        // The one typed filter whose value is read as a pattern, on purpose.
        let regex = mongodb::bson::Regex {
            pattern: pattern.to_owned(),
            options: options.to_owned(),
        };
        Filter::field(self.path(), Ok(Bson::RegularExpression(regex)))
    }
}

impl<M, T> IdField<M, T> {
    /// Does not compile: `_id` cannot be updated. Present only to say so.
    #[doc(hidden)]
    pub fn set<V>(&self, value: V) -> Update<M>
    where
        T: UpdatableId,
    {
        let _ = value;
        Update::raw(Document::new())
    }
}

// Each of these does not compile: the repository owns the version. Present only to say so.
impl<M, T> VersionField<M, T> {
    #[doc(hidden)]
    pub fn set<V>(&self, value: V) -> Update<M>
    where
        T: UpdatableVersion,
    {
        let _ = value;
        Update::raw(Document::new())
    }

    #[doc(hidden)]
    pub fn set_on_insert<V>(&self, value: V) -> Update<M>
    where
        T: UpdatableVersion,
    {
        let _ = value;
        Update::raw(Document::new())
    }

    #[doc(hidden)]
    pub fn inc<V>(&self, by: V) -> Update<M>
    where
        T: UpdatableVersion,
    {
        let _ = by;
        Update::raw(Document::new())
    }

    #[doc(hidden)]
    pub fn mul<V>(&self, by: V) -> Update<M>
    where
        T: UpdatableVersion,
    {
        let _ = by;
        Update::raw(Document::new())
    }

    #[doc(hidden)]
    pub fn min<V>(&self, value: V) -> Update<M>
    where
        T: UpdatableVersion,
    {
        let _ = value;
        Update::raw(Document::new())
    }

    #[doc(hidden)]
    pub fn max<V>(&self, value: V) -> Update<M>
    where
        T: UpdatableVersion,
    {
        let _ = value;
        Update::raw(Document::new())
    }

    #[doc(hidden)]
    pub fn unset(&self) -> Update<M>
    where
        T: UpdatableVersion,
    {
        Update::raw(Document::new())
    }
}

/// `{"$eq": value}`: the operand of `$eq` is always data, never an operator.
fn literal(value: Bson) -> Bson {
    Bson::Document(doc! { "$eq": value })
}

/// `{"$each": [values]}`: elements to append, each taken as it is.
fn each<T: Serialize, V: Into<T>>(
    path: &str,
    values: impl IntoIterator<Item = V>,
) -> Result<Bson, EncodeProblem> {
    encode_all::<T, V>(path, values).map(|v| Bson::Document(doc! { "$each": v }))
}

fn encode_all<T: Serialize, V: Into<T>>(
    path: &str,
    values: impl IntoIterator<Item = V>,
) -> Result<Vec<Bson>, EncodeProblem> {
    values
        .into_iter()
        .map(|v| encode(path, &v.into()))
        .collect()
}

/// A field holding an embedded struct (`#[model(nested)]`): its sub-paths are reached through
/// `Deref` (`Order::fields().address.city`), the whole value through [`Nested::field`].
pub struct Nested<M, T, F> {
    path: Cow<'static, str>,
    sub: F,
    marker: PhantomData<fn() -> (M, T)>,
}

impl<M, T, F> Nested<M, T, F> {
    #[doc(hidden)]
    pub fn __new(path: Cow<'static, str>, sub: F) -> Self {
        Nested {
            path,
            sub,
            marker: PhantomData,
        }
    }

    /// The path of the whole embedded value, for operators on it (`set`, `push`, `eq`, ...).
    pub fn field(&self) -> Field<M, T> {
        Field::__new(self.path.clone())
    }

    /// The stored path.
    pub fn path(&self) -> &str {
        &self.path
    }
}

// Each of these does not compile: a nested path is either a sub-path or, through `field()`, the
// whole value. Present only to say which to write.
impl<M, T, F> Nested<M, T, F> {
    #[doc(hidden)]
    pub fn eq<V>(&self, value: V) -> Filter<M>
    where
        T: WholeNested,
    {
        let _ = value;
        Filter::all()
    }

    #[doc(hidden)]
    pub fn ne<V>(&self, value: V) -> Filter<M>
    where
        T: WholeNested,
    {
        let _ = value;
        Filter::all()
    }

    #[doc(hidden)]
    pub fn set<V>(&self, value: V) -> Update<M>
    where
        T: WholeNested,
    {
        let _ = value;
        Update::raw(Document::new())
    }

    #[doc(hidden)]
    pub fn push<V>(&self, value: V) -> Update<M>
    where
        T: WholeNested,
    {
        let _ = value;
        Update::raw(Document::new())
    }
}

impl<M, T, F> Deref for Nested<M, T, F> {
    type Target = F;

    fn deref(&self) -> &F {
        &self.sub
    }
}

/// A query filter on model `M`.
pub struct Filter<M> {
    doc: Document,
    problem: Option<EncodeProblem>,
    marker: PhantomData<fn() -> M>,
}

impl<M> Clone for Filter<M> {
    fn clone(&self) -> Self {
        Filter {
            doc: self.doc.clone(),
            problem: self.problem.clone(),
            marker: PhantomData,
        }
    }
}

impl<M> fmt::Debug for Filter<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Filter").field(&self.doc).finish()
    }
}

impl<M> Default for Filter<M> {
    fn default() -> Self {
        Self::all()
    }
}

impl<M> From<Document> for Filter<M> {
    fn from(doc: Document) -> Self {
        Self::raw(doc)
    }
}

impl<M> Filter<M> {
    /// Matches every document.
    pub fn all() -> Self {
        Self::raw(Document::new())
    }

    /// A filter written by hand, as the server takes it. The compiler checks nothing in it.
    pub fn raw(doc: Document) -> Self {
        Filter {
            doc,
            problem: None,
            marker: PhantomData,
        }
    }

    fn field(path: &str, value: Result<Bson, EncodeProblem>) -> Self {
        match value {
            Ok(value) => Self::raw(doc! { path: value }),
            Err(problem) => Self::failed(problem),
        }
    }

    fn op(path: &str, op: &str, value: Result<Bson, EncodeProblem>) -> Self {
        Self::field(path, value.map(|v| Bson::Document(doc! { op: v })))
    }

    /// `$in`, `$nin` or `$all` over `values`. Those operators read a regular expression in the
    /// list as a pattern and refuse a document whose first key starts with `$`; when the list
    /// holds such a value, the same test is written as `$or` / `$nor` / `$and` of `$eq`, which
    /// takes each value literally.
    fn list(path: &str, op: ListOp, values: Result<Vec<Bson>, EncodeProblem>) -> Self {
        let values = match values {
            Ok(values) => values,
            Err(problem) => return Self::failed(problem),
        };
        let (op, spelled_out) = match op {
            ListOp::In => ("$in", "$or"),
            ListOp::Nin => ("$nin", "$nor"),
            ListOp::All => ("$all", "$and"),
        };
        if !values.iter().any(read_as_operator) {
            return Self::raw(doc! { path: { op: values } });
        }
        let tests: Vec<Bson> = values
            .into_iter()
            .map(|value| Bson::Document(doc! { path: literal(value) }))
            .collect();
        Self::raw(doc! { spelled_out: tests })
    }

    fn failed(problem: EncodeProblem) -> Self {
        Filter {
            doc: Document::new(),
            problem: Some(problem),
            marker: PhantomData,
        }
    }

    /// Both filters match.
    pub fn and(self, other: Filter<M>) -> Self {
        if let Some(problem) = self.problem.or(other.problem) {
            return Self::failed(problem);
        }
        Self::raw(combine_and(self.doc, other.doc))
    }

    /// Either filter matches.
    pub fn or(self, other: Filter<M>) -> Self {
        if let Some(problem) = self.problem.or(other.problem) {
            return Self::failed(problem);
        }
        Self::raw(doc! { "$or": [self.doc, other.doc] })
    }

    /// The document the server receives.
    pub fn document(&self) -> &Document {
        &self.doc
    }

    pub(crate) fn into_parts(self) -> Result<Document, EncodeProblem> {
        match self.problem {
            Some(problem) => Err(problem),
            None => Ok(self.doc),
        }
    }
}

/// The list operators of [`Filter::list`].
#[derive(Clone, Copy)]
enum ListOp {
    In,
    Nin,
    All,
}

/// A value a list operator would not take as data: a pattern, or an operator document.
fn read_as_operator(value: &Bson) -> bool {
    match value {
        Bson::RegularExpression(_) => true,
        Bson::Document(doc) => doc.keys().next().is_some_and(|k| k.starts_with('$')),
        _ => false,
    }
}

/// `!filter`: matches what `filter` does not (`$nor`).
impl<M> std::ops::Not for Filter<M> {
    type Output = Filter<M>;

    fn not(self) -> Filter<M> {
        if let Some(problem) = self.problem {
            return Filter::failed(problem);
        }
        Filter::raw(doc! { "$nor": [self.doc] })
    }
}

/// Merges two conditions: side by side when their keys differ, under `$and` when they overlap.
fn combine_and(left: Document, right: Document) -> Document {
    if left.is_empty() {
        return right;
    }
    if right.is_empty() {
        return left;
    }
    if right.keys().any(|k| left.contains_key(k)) {
        doc! { "$and": [left, right] }
    } else {
        let mut merged = left;
        merged.extend(right);
        merged
    }
}

/// An update on model `M`: operators grouped as the server expects them.
pub struct Update<M> {
    doc: Document,
    problem: Option<EncodeProblem>,
    marker: PhantomData<fn() -> M>,
}

impl<M> Clone for Update<M> {
    fn clone(&self) -> Self {
        Update {
            doc: self.doc.clone(),
            problem: self.problem.clone(),
            marker: PhantomData,
        }
    }
}

impl<M> fmt::Debug for Update<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Update").field(&self.doc).finish()
    }
}

impl<M> From<Document> for Update<M> {
    fn from(doc: Document) -> Self {
        Self::raw(doc)
    }
}

impl<M> Update<M> {
    /// An update written by hand, such as `doc! { "$set": { "a": 1 } }`.
    pub fn raw(doc: Document) -> Self {
        Update {
            doc,
            problem: None,
            marker: PhantomData,
        }
    }

    fn op(op: &str, path: &str, value: Result<Bson, EncodeProblem>) -> Self {
        match value {
            Ok(value) => Self::raw(doc! { op: { path: value } }),
            Err(problem) => Update {
                doc: Document::new(),
                problem: Some(problem),
                marker: PhantomData,
            },
        }
    }

    /// Applies both updates in one write. Two updates of the same path by the same operator
    /// are reported when the operation runs (one of them would be lost silently otherwise).
    pub fn and(mut self, other: Update<M>) -> Self {
        if self.problem.is_none() {
            self.problem = other.problem;
        }
        for (op, fields) in other.doc {
            match (self.doc.get_mut(&op), fields) {
                (Some(Bson::Document(existing)), Bson::Document(more)) => {
                    for (path, value) in more {
                        if existing.contains_key(&path) && self.problem.is_none() {
                            self.problem = Some(EncodeProblem {
                                what: format!("the update of `{path}`"),
                                reason: format!(
                                    "`{op}` is given twice for `{path}` in one update; combine the \
                                     values into one (such as `push_each`), or write twice"
                                ),
                            });
                        }
                        existing.insert(path, value);
                    }
                }
                (_, fields) => {
                    self.doc.insert(op, fields);
                }
            }
        }
        self
    }

    /// The document the server receives.
    pub fn document(&self) -> &Document {
        &self.doc
    }

    pub(crate) fn into_parts(self) -> Result<Document, EncodeProblem> {
        match self.problem {
            Some(problem) => Err(problem),
            None => Ok(self.doc),
        }
    }
}

/// A sort order on model `M`.
pub struct Sort<M> {
    doc: Document,
    marker: PhantomData<fn() -> M>,
}

impl<M> Clone for Sort<M> {
    fn clone(&self) -> Self {
        Sort {
            doc: self.doc.clone(),
            marker: PhantomData,
        }
    }
}

impl<M> fmt::Debug for Sort<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Sort").field(&self.doc).finish()
    }
}

impl<M> From<Document> for Sort<M> {
    fn from(doc: Document) -> Self {
        Sort {
            doc,
            marker: PhantomData,
        }
    }
}

impl<M> Sort<M> {
    fn by(path: &str, direction: i32) -> Self {
        Sort::from(doc! { path: direction })
    }

    /// Breaks ties with another sort key.
    pub fn then(mut self, next: Sort<M>) -> Self {
        self.doc.extend(next.doc);
        self
    }

    /// The document the server receives.
    pub fn document(&self) -> &Document {
        &self.doc
    }

    pub(crate) fn into_document(self) -> Document {
        self.doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Doc;

    fn price() -> Field<Doc, f64> {
        Field::__new(Cow::Borrowed("price"))
    }

    fn tags() -> Field<Doc, Vec<String>> {
        Field::__new(Cow::Borrowed("tags"))
    }

    #[test]
    fn filters_combine() {
        let filter = price().gte(10).and(price().lt(20.0));
        assert_eq!(
            filter.document(),
            &doc! { "$and": [{ "price": { "$gte": 10.0 } }, { "price": { "$lt": 20.0 } }] }
        );
        let filter = price().eq(1).and(tags().contains("a"));
        assert_eq!(
            filter.document(),
            &doc! { "price": { "$eq": 1.0 }, "tags": { "$eq": "a" } }
        );
    }

    fn extra() -> Field<Doc, Bson> {
        Field::__new(Cow::Borrowed("extra"))
    }

    fn items() -> Field<Doc, Vec<Bson>> {
        Field::__new(Cow::Borrowed("items"))
    }

    fn hostile() -> Bson {
        Bson::Document(doc! { "$ne": 1 })
    }

    #[test]
    fn comparisons_are_literal() {
        assert_eq!(
            extra().eq(hostile()).document(),
            &doc! { "extra": { "$eq": { "$ne": 1 } } }
        );
        assert_eq!(
            items().contains(hostile()).document(),
            &doc! { "items": { "$eq": { "$ne": 1 } } }
        );
        let optional: Field<Doc, Option<String>> = Field::__new(Cow::Borrowed("nick"));
        assert_eq!(
            optional.is_none().document(),
            &doc! { "nick": { "$eq": null } }
        );
        // A nested path's whole value is an ordinary field path.
        let nested: Nested<Doc, Bson, ()> = Nested::__new(Cow::Borrowed("address"), ());
        assert_eq!(
            nested.field().eq(hostile()).document(),
            &doc! { "address": { "$eq": { "$ne": 1 } } }
        );
        // Combining keeps every condition whole.
        let both = extra().eq(hostile()).and(extra().ne(hostile()));
        assert_eq!(
            both.document(),
            &doc! { "$and": [{ "extra": { "$eq": { "$ne": 1 } } }, { "extra": { "$ne": { "$ne": 1 } } }] }
        );
    }

    #[test]
    fn lists_of_plain_values_use_list_operators() {
        assert_eq!(
            price().in_([1, 2]).document(),
            &doc! { "price": { "$in": [1.0, 2.0] } }
        );
        assert_eq!(
            price().nin([1]).document(),
            &doc! { "price": { "$nin": [1.0] } }
        );
        assert_eq!(
            tags().contains_all(["a", "b"]).document(),
            &doc! { "tags": { "$all": ["a", "b"] } }
        );
    }

    #[test]
    fn lists_holding_operators_or_patterns_are_spelled_out_with_eq() {
        let pattern = Bson::RegularExpression(mongodb::bson::Regex {
            pattern: ".*".into(),
            options: String::new(),
        });
        assert_eq!(
            extra().in_([Bson::Int32(1), hostile()]).document(),
            &doc! { "$or": [{ "extra": { "$eq": 1 } }, { "extra": { "$eq": { "$ne": 1 } } }] }
        );
        assert_eq!(
            extra().nin([pattern.clone()]).document(),
            &doc! { "$nor": [{ "extra": { "$eq": pattern.clone() } }] }
        );
        assert_eq!(
            items().contains_all([hostile()]).document(),
            &doc! { "$and": [{ "items": { "$eq": { "$ne": 1 } } }] }
        );
        // A `$` key that is not the first one is not read as an operator.
        let later = Bson::Document(doc! { "a": 1, "$b": 2 });
        assert_eq!(
            extra().in_([later.clone()]).document(),
            &doc! { "extra": { "$in": [later] } }
        );
    }

    #[test]
    fn array_updates_take_values_literally() {
        let each = Bson::Document(doc! { "$each": [1, 2], "$slice": 0 });
        assert_eq!(
            items().push(each.clone()).document(),
            &doc! { "$push": { "items": { "$each": [each.clone()] } } }
        );
        assert_eq!(
            items().add_to_set(each.clone()).document(),
            &doc! { "$addToSet": { "items": { "$each": [each] } } }
        );
        assert_eq!(
            items().pull(hostile()).document(),
            &doc! { "$pull": { "items": { "$eq": { "$ne": 1 } } } }
        );
        assert_eq!(
            items().pull_all([hostile()]).document(),
            &doc! { "$pullAll": { "items": [{ "$ne": 1 }] } }
        );
        assert_eq!(
            extra().set(hostile()).document(),
            &doc! { "$set": { "extra": { "$ne": 1 } } }
        );
    }

    #[test]
    fn the_same_path_twice_under_one_operator_is_a_problem() {
        let twice = tags().push("a").and(tags().push("b"));
        let problem = twice.into_parts().unwrap_err();
        assert_eq!(problem.what, "the update of `tags`");
        let different = tags().push("a").and(price().set(1));
        assert!(different.into_parts().is_ok());
    }

    #[test]
    fn valid_queries_of_every_field_type() {
        // `inc` takes what converts into the field's type, as `eq` does.
        assert_eq!(
            price().inc(1).document(),
            &doc! { "$inc": { "price": 1.0 } }
        );
        let optional_count: Field<Doc, Option<i64>> = Field::__new(Cow::Borrowed("n"));
        assert_eq!(
            optional_count
                .inc(2)
                .and(optional_count.clone().mul(3))
                .document(),
            &doc! { "$inc": { "n": 2_i64 }, "$mul": { "n": 3_i64 } }
        );
        let now = mongodb::bson::DateTime::from_millis(1_000);
        let seen: Field<Doc, mongodb::bson::DateTime> = Field::__new(Cow::Borrowed("seen"));
        let last: Field<Doc, Option<mongodb::bson::DateTime>> = Field::__new(Cow::Borrowed("last"));
        assert_eq!(
            seen.min(now).and(last.max(now)).document(),
            &doc! { "$min": { "seen": now }, "$max": { "last": now } }
        );
        let nick: Field<Doc, Option<String>> = Field::__new(Cow::Borrowed("nick"));
        let filter = nick.matches("^a", "i");
        let Some(Bson::RegularExpression(regex)) = filter.document().get("nick") else {
            panic!("a regex filter");
        };
        assert_eq!(
            (regex.pattern.as_str(), regex.options.as_str()),
            ("^a", "i")
        );
    }

    #[test]
    fn updates_group_by_operator() {
        let update = price()
            .inc(2.0)
            .and(tags().push("x"))
            .and(price().max(9.0))
            .and(tags().add_to_set("y"));
        assert_eq!(
            update.document(),
            &doc! {
                "$inc": { "price": 2.0 },
                "$push": { "tags": { "$each": ["x"] } },
                "$max": { "price": 9.0 },
                "$addToSet": { "tags": { "$each": ["y"] } },
            }
        );
        let both = Field::<Doc, i32>::__new(Cow::Borrowed("a"))
            .set(1)
            .and(Field::<Doc, i32>::__new(Cow::Borrowed("b")).set(2));
        assert_eq!(both.document(), &doc! { "$set": { "a": 1, "b": 2 } });
    }

    #[test]
    fn unencodable_values_surface_as_problems() {
        let huge: Field<Doc, u64> = Field::__new(Cow::Borrowed("n"));
        let problem = huge
            .eq(u64::MAX)
            .and(price().eq(1))
            .into_parts()
            .unwrap_err();
        assert_eq!(problem.what, "the value for `n`");
    }

    #[test]
    fn nested_paths_join() {
        assert_eq!(join_path("", "a"), "a");
        assert_eq!(join_path("address", "city"), "address.city");
    }

    #[test]
    fn sorts_keep_order() {
        let sort = price().desc().then(tags().asc());
        let keys: Vec<_> = sort.document().keys().cloned().collect();
        assert_eq!(keys, ["price", "tags"]);
    }
}
