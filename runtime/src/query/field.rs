//! [`Field`], the typed path to a field of a model, with every operator it has: the filters and
//! sorts the three path types share (`path_basics!`, used by `readonly.rs` too) and the filters
//! and updates only a `Field` has (`set`, `inc`, `push`, `is_none`, `contains`, `matches`, ...).
//!
//! The operators build [`Filter`]s and [`Update`]s but live here, in the module that defines
//! the type, and not in `filter.rs` and `update.rs`: the compiler names a method after its type
//! only when the impl is in the type's module. A value of the wrong type is then reported as
//! "required by a bound in `Field::<M, T>::push_each`"; from `update.rs` it would be
//! "`query::update::<impl Field<M, T>>::push_each`", a private path that tells a user nothing.
//! How the documents themselves are built and combined is in `filter.rs` and `update.rs`.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use mongodb::bson::{Bson, doc};
use serde::Serialize;

use super::bounds::{Array, Comparable, FieldValue, Numeric, Optional, Positional, Text};
use super::filter::{Filter, ListOp};
use super::sort::Sort;
use super::update::Update;
use super::{EncodeProblem, encode, encode_all, literal};

/// A typed path to a field of model `M` whose Rust type is `T`.
pub struct Field<M, T> {
    path: Cow<'static, str>,
    marker: PhantomData<fn() -> (M, T)>,
}

// One definition for the three path types, which share every filter and sort; a generic
// wrapper would put the difference (which updates exist) in a type parameter that every
// signature and error message would then show. Defined here, where `Field` uses it, so that
// an error quoting one of its lines shows the definition and `path_basics!(Field)` together;
// `readonly.rs` imports it, and its names resolve where it is invoked.
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

        impl<M, T: Serialize + 'static> $name<M, T> {
            /// Field equals `value`, compared literally (`$eq`): a value that looks like an
            /// operator, such as `{"$ne": 1}`, matches only a stored `{"$ne": 1}`. An `_id`
            /// compared with a scalar is sent as `{_id: value}`, the same test in the shape
            /// the server answers fastest.
            pub fn eq(&self, value: impl FieldValue<T>) -> Filter<M> {
                let value: T = value.into();
                Filter::equal(self.path(), encode(self.path(), &value))
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

pub(super) use path_basics;

path_basics!(Field);

impl<M, T: Serialize + 'static> Field<M, T> {
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

    /// The element the update's filter matched: `tags.$` (the filter must test the array).
    pub fn matched(&self) -> Field<M, T::Element>
    where
        T: Positional,
    {
        Field::__new(Cow::Owned(format!("{}.$", self.path)))
    }

    /// Every element: `tags.$[]`.
    pub fn all(&self) -> Field<M, T::Element>
    where
        T: Positional,
    {
        Field::__new(Cow::Owned(format!("{}.$[]", self.path)))
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

/// `{"$each": [values]}`: elements to append, each taken as it is.
fn each<T: Serialize + 'static, V: Into<T>>(
    path: &str,
    values: impl IntoIterator<Item = V>,
) -> Result<Bson, EncodeProblem> {
    encode_all::<T, V>(path, values).map(|v| Bson::Document(doc! { "$each": v }))
}
