//! Paths into arrays: what a sub-path through an array means for filters (any element) and for
//! updates (nothing: the server needs to know which element), and the three positional forms
//! that name elements for an update: [`Nested::matched`](super::Nested::matched) (`items.$`),
//! [`Nested::all`](super::Nested::all) (`items.$[]`) and
//! [`Nested::filtered`](super::Nested::filtered) (`items.$[line]`, with an [`ArrayFilter`]).
//!
//! The generated paths of an embedded struct take a kind, [`Direct`], [`Elements`] or
//! [`InArray`], that picks the type of their leaves: a [`Field`] where a path names one place, an
//! [`AnyElement`] where it goes through an array. The kind is a type parameter (not a flag) so
//! that `Order::fields().items.status.set(..)` is a compile error and not a server error.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use mongodb::bson::{Bson, Document};
use serde::Serialize;

use super::bounds::{FieldValue, ThroughArray};
use super::field::{Field, path_basics};
use super::filter::{Filter, ListOp};
use super::sort::Sort;
use super::update::Update;
use super::{EncodeProblem, encode, encode_all};

/// What the paths of an embedded struct can do where it is stored: [`Direct`], [`Elements`] or
/// [`InArray`].
#[doc(hidden)]
pub trait PathKind {
    /// The path to a field of type `T` of model `M` in this kind.
    type Field<M, T>;
    /// The path to the whole value of the nested field whose sub-paths have this kind (what
    /// `Nested::field` returns).
    type Whole<M, T>;
    /// The kind of the paths of an embedded struct held by one field of this kind.
    type Inside: PathKind;
    /// The kind of the paths of the elements of a `Vec` held by one field of this kind.
    type Elements: PathKind;
    #[doc(hidden)]
    fn __field<M, T>(path: Cow<'static, str>) -> Self::Field<M, T>;
    #[doc(hidden)]
    fn __whole<M, T>(path: Cow<'static, str>) -> Self::Whole<M, T>;
}

/// Paths that name one place in a document: they filter and update ([`Field`]).
#[doc(hidden)]
#[derive(Debug)]
pub struct Direct;

/// The sub-paths of the elements of an array whose own path names one place: they filter only
/// ([`AnyElement`]), and the array has its positional forms (`matched`, `all`, `filtered`).
#[doc(hidden)]
#[derive(Debug)]
pub struct Elements;

/// Paths below the elements of an array, which say neither which element nor which place: they
/// filter only, and an array among them has no positional forms of its own.
#[doc(hidden)]
#[derive(Debug)]
pub struct InArray;

impl PathKind for Direct {
    type Field<M, T> = Field<M, T>;
    type Whole<M, T> = Field<M, T>;
    type Inside = Direct;
    type Elements = Elements;
    fn __field<M, T>(path: Cow<'static, str>) -> Field<M, T> {
        Field::__new(path)
    }
    fn __whole<M, T>(path: Cow<'static, str>) -> Field<M, T> {
        Field::__new(path)
    }
}

impl PathKind for Elements {
    type Field<M, T> = AnyElement<M, T>;
    // The whole array (`items`) names one place.
    type Whole<M, T> = Field<M, T>;
    type Inside = InArray;
    type Elements = InArray;
    fn __field<M, T>(path: Cow<'static, str>) -> AnyElement<M, T> {
        AnyElement::__new(path)
    }
    fn __whole<M, T>(path: Cow<'static, str>) -> Field<M, T> {
        Field::__new(path)
    }
}

impl PathKind for InArray {
    type Field<M, T> = AnyElement<M, T>;
    type Whole<M, T> = AnyElement<M, T>;
    type Inside = InArray;
    type Elements = InArray;
    fn __field<M, T>(path: Cow<'static, str>) -> AnyElement<M, T> {
        AnyElement::__new(path)
    }
    fn __whole<M, T>(path: Cow<'static, str>) -> AnyElement<M, T> {
        AnyElement::__new(path)
    }
}

/// The kinds whose arrays have positional forms: an array whose own path names one place.
/// Not implemented for [`InArray`], where the array sits inside the elements of another one.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "this array is inside the elements of another array, so its positional forms have no single array to address",
    label = "an array reached through an outer array",
    note = "say which elements of the outer array first, then of this one, as in `Order::fields().items.all().parts.matched()` (`items.$[].parts.$`)"
)]
pub trait Addressable {}

impl Addressable for Direct {}
impl Addressable for Elements {}

/// The generated paths of an embedded struct, which can be rebuilt at another prefix, root and
/// kind: how a positional path (`items.$`) or an element condition (`line.sku`) gets its paths.
#[doc(hidden)]
pub trait SubPaths {
    /// The kind of these paths.
    type Kind: PathKind;
    /// The same struct's paths rooted at `R`, of kind `K`.
    type At<R, K: PathKind>;
    #[doc(hidden)]
    fn __at<R, K: PathKind>(prefix: &str) -> Self::At<R, K>;
}

/// A path to a field of the elements of an array of embedded structs, such as
/// `Order::fields().items.sku` (`items.sku`). It filters: a condition on it matches a document
/// when **any** element matches. It has no updates: to write to elements, say which with
/// `items.matched()`, `items.all()` or `items.filtered("name")`.
pub struct AnyElement<M, T> {
    path: Cow<'static, str>,
    marker: PhantomData<fn() -> (M, T)>,
}

path_basics!(AnyElement);

// Each of these does not compile: a path through an array names no single place to write.
// Present only to say which positional form to write (the message is in `bounds.rs`).
impl<M, T> AnyElement<M, T> {
    #[doc(hidden)]
    pub fn set<V>(&self, value: V) -> Update<M>
    where
        T: ThroughArray,
    {
        let _ = value;
        Update::raw(Document::new())
    }

    #[doc(hidden)]
    pub fn set_on_insert<V>(&self, value: V) -> Update<M>
    where
        T: ThroughArray,
    {
        let _ = value;
        Update::raw(Document::new())
    }

    #[doc(hidden)]
    pub fn unset(&self) -> Update<M>
    where
        T: ThroughArray,
    {
        Update::raw(Document::new())
    }

    #[doc(hidden)]
    pub fn inc<V>(&self, by: V) -> Update<M>
    where
        T: ThroughArray,
    {
        let _ = by;
        Update::raw(Document::new())
    }

    #[doc(hidden)]
    pub fn mul<V>(&self, by: V) -> Update<M>
    where
        T: ThroughArray,
    {
        let _ = by;
        Update::raw(Document::new())
    }

    #[doc(hidden)]
    pub fn min<V>(&self, value: V) -> Update<M>
    where
        T: ThroughArray,
    {
        let _ = value;
        Update::raw(Document::new())
    }

    #[doc(hidden)]
    pub fn max<V>(&self, value: V) -> Update<M>
    where
        T: ThroughArray,
    {
        let _ = value;
        Update::raw(Document::new())
    }

    #[doc(hidden)]
    pub fn push<V>(&self, value: V) -> Update<M>
    where
        T: ThroughArray,
    {
        let _ = value;
        Update::raw(Document::new())
    }
}

/// The elements of an array picked by a named condition: `items.$[line]`. Its sub-paths
/// (through `Deref`) update those elements; [`Filtered::when`] builds the condition, given to
/// the update with `.array_filter(..)`.
pub struct Filtered<M, E, F: SubPaths> {
    name: String,
    paths: F::At<M, Direct>,
    marker: PhantomData<fn() -> E>,
}

impl<M, E, F: SubPaths> Filtered<M, E, F> {
    pub(super) fn new(array: &str, name: &str) -> Self {
        Filtered {
            name: name.to_owned(),
            paths: F::__at::<M, Direct>(&format!("{array}.$[{name}]")),
            marker: PhantomData,
        }
    }

    /// The identifier, as it appears in the path (`line` in `items.$[line]`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The condition an element must meet to be updated, written with the element's paths:
    /// `line.when(|l| l.sku.eq("A-1"))` is the array filter `{"line.sku": {"$eq": "A-1"}}`.
    pub fn when(&self, condition: impl FnOnce(F::At<E, Direct>) -> Filter<E>) -> ArrayFilter<M> {
        let filter = condition(F::__at::<E, Direct>(&self.name));
        ArrayFilter::from_parts(filter.into_parts())
    }
}

impl<M, E, F: SubPaths> Deref for Filtered<M, E, F> {
    type Target = F::At<M, Direct>;

    fn deref(&self) -> &Self::Target {
        &self.paths
    }
}

/// One entry of an update's `arrayFilters`: the condition on the elements that a
/// `$[name]` path updates. Built by [`Filtered::when`], or by hand with [`ArrayFilter::raw`].
pub struct ArrayFilter<M> {
    doc: Document,
    problem: Option<EncodeProblem>,
    marker: PhantomData<fn() -> M>,
}

impl<M> Clone for ArrayFilter<M> {
    fn clone(&self) -> Self {
        ArrayFilter {
            doc: self.doc.clone(),
            problem: self.problem.clone(),
            marker: PhantomData,
        }
    }
}

impl<M> fmt::Debug for ArrayFilter<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ArrayFilter").field(&self.doc).finish()
    }
}

impl<M> ArrayFilter<M> {
    /// An array filter written by hand, such as `doc! { "line.qty": { "$gt": 0 } }`.
    pub fn raw(doc: Document) -> Self {
        ArrayFilter {
            doc,
            problem: None,
            marker: PhantomData,
        }
    }

    fn from_parts(parts: Result<Document, EncodeProblem>) -> Self {
        match parts {
            Ok(doc) => Self::raw(doc),
            Err(problem) => ArrayFilter {
                doc: Document::new(),
                problem: Some(problem),
                marker: PhantomData,
            },
        }
    }

    /// The document the server receives in `arrayFilters`.
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

/// `$pull` of the elements meeting `condition`, a filter written at the element's root.
pub(super) fn pull_where<M, E>(path: &str, condition: Filter<E>) -> Update<M> {
    Update::op("$pull", path, condition.into_parts().map(Bson::Document))
}
