//! [`Nested`]: the path to an embedded struct (`#[model(nested)]`), leading to the sub-paths
//! of its fields, with the operators it refuses so that a comparison of the whole value fails
//! with a message that says to go through `.field()`.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::ops::Deref;

use mongodb::bson::Document;

use super::bounds::WholeNested;
use super::field::Field;
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
