//! References between models: [`Ref<M>`], a field that stores another model's id, and what
//! `.populate(path)` returns ([`Populated`], [`Resolved`]).
//!
//! A reference is stored as the bare id (`customer: ObjectId("…")`), exactly as an application
//! that writes the id by hand would store it, so existing data and other drivers read it as it
//! is. Loading the referenced documents is the repository's job (`repo/op/populate.rs`): one
//! `$in` query per populated path, never one per document.

use std::fmt;
use std::sync::Arc;

use mongodb::bson::Bson;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::Model;

/// A reference to a document of model `M`: stores `M`'s id, serialized as the bare id.
///
/// Use it as a field type: `customer: Ref<Customer>`, `Option<Ref<Customer>>` (a reference
/// that may be absent) or `Vec<Ref<Tag>>` (several). `repo.find(..).populate(Order::fields().customer)`
/// then loads the referenced documents.
pub struct Ref<M: Model> {
    id: M::Id,
}

impl<M: Model> Ref<M> {
    /// A reference to the document with this id.
    pub fn new(id: M::Id) -> Self {
        Ref { id }
    }

    /// A reference to `doc`, or `None` when it has no id yet (insert it first).
    pub fn to(doc: &M) -> Option<Self> {
        doc.id().map(Ref::new)
    }

    /// The referenced id.
    pub fn id(&self) -> &M::Id {
        &self.id
    }

    /// The referenced id, by value.
    pub fn into_id(self) -> M::Id {
        self.id
    }
}

impl<M: Model> Clone for Ref<M> {
    fn clone(&self) -> Self {
        Ref {
            id: self.id.clone(),
        }
    }
}

impl<M: Model> PartialEq for Ref<M>
where
    M::Id: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl<M: Model> fmt::Debug for Ref<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ref<{}>({:?})", M::COLLECTION, self.id)
    }
}

impl<M: Model> Serialize for Ref<M> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.id.serialize(serializer)
    }
}

impl<'de, M: Model> Deserialize<'de> for Ref<M> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        M::Id::deserialize(deserializer).map(Ref::new)
    }
}

mod sealed {
    pub trait Sealed {}

    impl<M: crate::Model> Sealed for super::Ref<M> {}
    impl<M: crate::Model> Sealed for Option<super::Ref<M>> {}
    impl<M: crate::Model> Sealed for Vec<super::Ref<M>> {}
}

/// The field types `.populate(path)` and the `lookup` stage follow: [`Ref<M>`],
/// `Option<Ref<M>>` and `Vec<Ref<M>>`, which all point at documents of `Target`.
#[diagnostic::on_unimplemented(
    message = "`populate` and `lookup` follow references, but this field holds a `{Self}`",
    label = "not a `Ref` field",
    note = "declare the field as `Ref<Target>`, `Option<Ref<Target>>` or `Vec<Ref<Target>>` so that it stores the referenced document's id; to load a document by an id you hold, use `repo.find_by_id(id)`"
)]
pub trait Reference: sealed::Sealed {
    /// The referenced model.
    type Target: Model;
}

impl<M: Model> Reference for Ref<M> {
    type Target = M;
}

impl<M: Model> Reference for Option<Ref<M>> {
    type Target = M;
}

impl<M: Model> Reference for Vec<Ref<M>> {
    type Target = M;
}

/// One reference of a populated document: the referenced document, or the id that names no
/// document (a dangling reference, reported rather than dropped).
///
/// `D` is what a found reference holds: the document `T` itself, or, with a nested populate
/// ([`FindPopulated::then`](crate::FindPopulated::then)), a `Populated<T, U>`.
pub enum Resolved<T: Model, D = T> {
    /// The referenced document. Shared: every document that refers to it holds the same one.
    Found(Arc<D>),
    /// No document has this id.
    Dangling(T::Id),
}

impl<T: Model, D> Resolved<T, D> {
    /// The document, unless the reference is dangling.
    pub fn found(&self) -> Option<&D> {
        match self {
            Resolved::Found(doc) => Some(doc),
            Resolved::Dangling(_) => None,
        }
    }
}

impl<T: Model, D: fmt::Debug> fmt::Debug for Resolved<T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resolved::Found(doc) => f.debug_tuple("Found").field(doc).finish(),
            Resolved::Dangling(id) => f.debug_tuple("Dangling").field(id).finish(),
        }
    }
}

impl<T: Model, D> Clone for Resolved<T, D> {
    fn clone(&self) -> Self {
        match self {
            Resolved::Found(doc) => Resolved::Found(doc.clone()),
            Resolved::Dangling(id) => Resolved::Dangling(id.clone()),
        }
    }
}

/// A document of `M` with the documents of model `T` its populated field refers to, in the
/// order of the stored ids (none for an absent `Option<Ref<T>>`, one for a `Ref<T>`, one per
/// element of a `Vec<Ref<T>>`).
///
/// `D` is what each found reference holds: `T`, or `Populated<T, U>` after a nested populate.
pub struct Populated<M, T: Model, D = T> {
    /// The document itself, with its references still holding ids.
    pub doc: M,
    /// What each stored id resolved to.
    pub refs: Vec<Resolved<T, D>>,
}

impl<M, T: Model, D> Populated<M, T, D> {
    /// The first referenced document, for a `Ref<T>` or `Option<Ref<T>>` field: `None` when the
    /// field is absent or its reference is dangling (see [`Populated::dangling`]).
    pub fn one(&self) -> Option<&D> {
        self.refs.first().and_then(Resolved::found)
    }

    /// Every referenced document that exists, in order.
    pub fn found(&self) -> impl Iterator<Item = &D> {
        self.refs.iter().filter_map(Resolved::found)
    }

    /// The stored ids that name no document.
    pub fn dangling(&self) -> Vec<&T::Id> {
        self.refs
            .iter()
            .filter_map(|r| match r {
                Resolved::Dangling(id) => Some(id),
                Resolved::Found(_) => None,
            })
            .collect()
    }
}

impl<M: fmt::Debug, T: Model, D: fmt::Debug> fmt::Debug for Populated<M, T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Populated")
            .field("doc", &self.doc)
            .field("refs", &self.refs)
            .finish()
    }
}

/// The stored ids at `path` of a serialized document: none for a missing or null value, each
/// element of an array, or the value itself.
pub(crate) fn ids_at(doc: &mongodb::bson::Document, path: &str) -> Vec<Bson> {
    let mut current: Option<&Bson> = None;
    let mut here = doc;
    for (i, part) in path.split('.').enumerate() {
        if i > 0 {
            match current {
                Some(Bson::Document(d)) => here = d,
                _ => return Vec::new(),
            }
        }
        current = here.get(part);
    }
    match current {
        None | Some(Bson::Null) => Vec::new(),
        Some(Bson::Array(items)) => items
            .iter()
            .filter(|b| !matches!(b, Bson::Null))
            .cloned()
            .collect(),
        Some(value) => vec![value.clone()],
    }
}

/// A key under which equal ids compare equal: their BSON bytes (Bson has no `Hash`).
pub(crate) fn id_key(id: &Bson) -> Vec<u8> {
    let mut doc = mongodb::bson::Document::new();
    doc.insert("k", id.clone());
    mongodb::bson::to_vec(&doc).unwrap_or_default()
}
