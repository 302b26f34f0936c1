//! The paths an application cannot write to: [`IdField`] (`_id`, fixed when the document is
//! inserted) and [`VersionField`] (kept by the repository). They filter and sort like a
//! `Field` (`path_basics!`, from `field.rs`); their update operators exist only to fail to
//! compile with a message that says what to write instead (the messages are in `bounds.rs`).
//! The two are together because they are one idea applied to two fields.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use mongodb::bson::{Bson, Document};
use serde::Serialize;

use super::bounds::{FieldValue, UpdatableId, UpdatableVersion};
use super::field::path_basics;
use super::filter::{Filter, ListOp};
use super::sort::Sort;
use super::update::Update;
use super::{encode, encode_all};

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

path_basics!(IdField);
path_basics!(VersionField);

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
