//! Typed field paths and the filters, updates and sorts built from them.
//!
//! A path knows the model it belongs to (`M`) and the Rust type of its field (`T`), so a filter
//! for one collection cannot be used on another and a value of the wrong type does not compile.
//! Raw `Document`s convert into [`Filter`] and [`Update`] as an escape hatch.

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
            /// Field equals `value`.
            pub fn eq(&self, value: impl FieldValue<T>) -> Filter<M> {
                let value = encode(self.path(), &value.into());
                Filter::field(self.path(), value)
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

            /// Field equals one of `values`.
            pub fn in_<V: Into<T>>(&self, values: impl IntoIterator<Item = V>) -> Filter<M> {
                self.compare_many("$in", values)
            }

            /// Field equals none of `values`.
            pub fn nin<V: Into<T>>(&self, values: impl IntoIterator<Item = V>) -> Filter<M> {
                self.compare_many("$nin", values)
            }

            fn compare(&self, op: &str, value: T) -> Filter<M> {
                Filter::op(self.path(), op, encode(self.path(), &value))
            }

            fn compare_many<V: Into<T>>(
                &self,
                op: &str,
                values: impl IntoIterator<Item = V>,
            ) -> Filter<M> {
                let values: Result<Vec<Bson>, _> = values
                    .into_iter()
                    .map(|v| encode(self.path(), &v.into()))
                    .collect();
                Filter::op(self.path(), op, values.map(Bson::Array))
            }
        }
    };
}

path_basics!(Field);
path_basics!(IdField);

impl<M, T: Serialize> Field<M, T> {
    /// `$set`: replace the field's value.
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

impl<M, T> Field<M, Option<T>> {
    /// Field is absent or null.
    pub fn is_none(&self) -> Filter<M> {
        Filter::field(self.path(), Ok(Bson::Null))
    }
}

/// Numeric types that `$inc`, `$mul`, `$min` and `$max` accept.
pub trait Numeric: Serialize {}

macro_rules! numeric {
    ($($ty:ty),*) => { $(impl Numeric for $ty {})* };
}
numeric!(i32, i64, u32, f32, f64);

impl<M, T: Numeric> Field<M, T> {
    /// `$inc`: add `by` atomically on the server.
    pub fn inc(&self, by: T) -> Update<M> {
        Update::op("$inc", self.path(), encode(self.path(), &by))
    }

    /// `$mul`: multiply by `by` atomically on the server.
    pub fn mul(&self, by: T) -> Update<M> {
        Update::op("$mul", self.path(), encode(self.path(), &by))
    }

    /// `$min`: lower the field to `value` when `value` is smaller.
    pub fn min(&self, value: T) -> Update<M> {
        Update::op("$min", self.path(), encode(self.path(), &value))
    }

    /// `$max`: raise the field to `value` when `value` is larger.
    pub fn max(&self, value: T) -> Update<M> {
        Update::op("$max", self.path(), encode(self.path(), &value))
    }
}

impl<M, T: Numeric> Field<M, Option<T>> {
    /// `$inc` on an optional number (a missing field counts as 0).
    pub fn inc(&self, by: T) -> Update<M> {
        Update::op("$inc", self.path(), encode(self.path(), &by))
    }
}

impl<M, T: Serialize> Field<M, Vec<T>> {
    /// `$push`: append one element.
    pub fn push(&self, value: impl FieldValue<T>) -> Update<M> {
        Update::op("$push", self.path(), encode(self.path(), &value.into()))
    }

    /// `$push` with `$each`: append several elements.
    pub fn push_each<V: Into<T>>(&self, values: impl IntoIterator<Item = V>) -> Update<M> {
        let values = encode_all(self.path(), values);
        Update::op(
            "$push",
            self.path(),
            values.map(|v| Bson::Document(doc! { "$each": v })),
        )
    }

    /// `$addToSet`: append the element unless it is already there.
    pub fn add_to_set(&self, value: impl FieldValue<T>) -> Update<M> {
        Update::op("$addToSet", self.path(), encode(self.path(), &value.into()))
    }

    /// `$pull`: remove every element equal to `value`.
    pub fn pull(&self, value: impl FieldValue<T>) -> Update<M> {
        Update::op("$pull", self.path(), encode(self.path(), &value.into()))
    }

    /// `$pullAll`: remove every element equal to one of `values`.
    pub fn pull_all<V: Into<T>>(&self, values: impl IntoIterator<Item = V>) -> Update<M> {
        Update::op("$pullAll", self.path(), encode_all(self.path(), values))
    }

    /// `$pop`: remove the last element (`first = false`) or the first one.
    pub fn pop(&self, first: bool) -> Update<M> {
        Update::op(
            "$pop",
            self.path(),
            Ok(Bson::Int32(if first { -1 } else { 1 })),
        )
    }

    /// The array contains an element equal to `value`.
    pub fn contains(&self, value: impl FieldValue<T>) -> Filter<M> {
        Filter::field(self.path(), encode(self.path(), &value.into()))
    }

    /// The array contains every one of `values`.
    pub fn contains_all<V: Into<T>>(&self, values: impl IntoIterator<Item = V>) -> Filter<M> {
        Filter::op(self.path(), "$all", encode_all(self.path(), values))
    }

    /// The array has exactly `len` elements.
    pub fn len_eq(&self, len: u32) -> Filter<M> {
        Filter::op(self.path(), "$size", Ok(Bson::Int64(i64::from(len))))
    }
}

fn encode_all<T: Serialize, V: Into<T>>(
    path: &str,
    values: impl IntoIterator<Item = V>,
) -> Result<Bson, EncodeProblem> {
    values
        .into_iter()
        .map(|v| encode(path, &v.into()))
        .collect::<Result<Vec<_>, _>>()
        .map(Bson::Array)
}

impl<M> Field<M, String> {
    /// The string matches the regular expression `pattern` (with `options` such as `"i"`).
    pub fn matches(&self, pattern: &str, options: &str) -> Filter<M> {
        let regex = mongodb::bson::Regex {
            pattern: pattern.to_owned(),
            options: options.to_owned(),
        };
        Filter::field(self.path(), Ok(Bson::RegularExpression(regex)))
    }
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

    /// Applies both updates in one write.
    pub fn and(mut self, other: Update<M>) -> Self {
        if self.problem.is_none() {
            self.problem = other.problem;
        }
        for (op, fields) in other.doc {
            match (self.doc.get_mut(&op), fields) {
                (Some(Bson::Document(existing)), Bson::Document(more)) => existing.extend(more),
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
        assert_eq!(filter.document(), &doc! { "price": 1.0, "tags": "a" });
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
            &doc! { "$inc": { "price": 2.0 }, "$push": { "tags": "x" }, "$max": { "price": 9.0 }, "$addToSet": { "tags": "y" } }
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
