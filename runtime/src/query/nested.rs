//! [`Nested`]: the path to an embedded struct (`#[model(nested)]`), leading to the sub-paths
//! of its fields, with the operators it refuses so that a comparison of the whole value fails
//! with a message that says to go through `.field()`.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::ops::Deref;

use mongodb::bson::Document;

use super::array::{Addressable, Direct, Filtered, PathKind, SubPaths, pull_where};
use super::bounds::{Positional, WholeNested};
use super::filter::Filter;
use super::update::Update;

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

    /// The path of the whole embedded value, for operators on it (`set`, `push`, `eq`, ...):
    /// a [`Field`](super::Field), or below the elements of an array an
    /// [`AnyElement`](super::AnyElement), which only filters.
    pub fn field(&self) -> <F::Kind as PathKind>::Whole<M, T>
    where
        F: SubPaths,
    {
        <F::Kind as PathKind>::__whole(self.path.clone())
    }

    /// The stored path.
    pub fn path(&self) -> &str {
        &self.path
    }
}

// The positional forms of an array of embedded structs. Each names elements for an update;
// the sub-paths reached through `Deref` (`items.status`) only filter.
impl<M, T, F> Nested<M, T, F> {
    /// The element the update's filter matched: `items.$`. The filter must test the array
    /// (such as `items.sku.eq(..)`); when no document matches, nothing is updated.
    pub fn matched(&self) -> F::At<M, Direct>
    where
        T: Positional,
        F: SubPaths,
        F::Kind: Addressable,
    {
        F::__at::<M, Direct>(&format!("{}.$", self.path))
    }

    /// Every element: `items.$[]`.
    pub fn all(&self) -> F::At<M, Direct>
    where
        T: Positional,
        F: SubPaths,
        F::Kind: Addressable,
    {
        F::__at::<M, Direct>(&format!("{}.$[]", self.path))
    }

    /// The elements meeting a condition: `items.$[name]`. Build the condition with
    /// [`Filtered::when`] and give it to the update with `.array_filter(..)`. `name` must start
    /// with a lowercase letter and hold only letters and digits (the server's rule).
    pub fn filtered(&self, name: &str) -> Filtered<M, T::Element, F>
    where
        T: Positional,
        F: SubPaths,
        F::Kind: Addressable,
    {
        Filtered::new(&self.path, name)
    }

    /// `$pull` of every element meeting `condition`, written with the element's paths:
    /// `items.pull_where(|line| line.qty.lte(0))` is `{"$pull": {"items": {"qty": {"$lte": 0}}}}`.
    pub fn pull_where(
        &self,
        condition: impl FnOnce(F::At<T::Element, Direct>) -> Filter<T::Element>,
    ) -> Update<M>
    where
        T: Positional,
        F: SubPaths,
        F::Kind: Addressable,
    {
        pull_where(&self.path, condition(F::__at::<T::Element, Direct>("")))
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
