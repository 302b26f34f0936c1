//! `DocId`: a document's `_id` inside an [`Error`](super::Error), boxed so errors stay small.

use std::fmt;
use std::ops::Deref;

use mongodb::bson::Bson;
use mongodb::bson::oid::ObjectId;

/// The `_id` of the document an error is about. A `Bson` is 112 bytes, and every fallible
/// operation returns `Result<_, Error>`; boxed, it costs the error 8. It reads like the `Bson`
/// it holds (`Deref`), compares equal to one, and displays as one:
///
/// ```
/// use mongrove::DocId;
/// use mongrove::bson::Bson;
///
/// let id = DocId::from(Bson::Int32(7));
/// assert_eq!(id, Bson::Int32(7));
/// assert_eq!(id.as_i32(), Some(7));
/// assert_eq!(id.to_string(), "7");
/// ```
#[derive(Clone, PartialEq)]
pub struct DocId(Box<Bson>);

impl DocId {
    /// The `_id` as a `Bson` value.
    pub fn into_bson(self) -> Bson {
        *self.0
    }
}

impl Deref for DocId {
    type Target = Bson;

    fn deref(&self) -> &Bson {
        &self.0
    }
}

impl From<Bson> for DocId {
    fn from(id: Bson) -> Self {
        DocId(Box::new(id))
    }
}

impl From<ObjectId> for DocId {
    fn from(id: ObjectId) -> Self {
        DocId::from(Bson::ObjectId(id))
    }
}

impl From<DocId> for Bson {
    fn from(id: DocId) -> Self {
        id.into_bson()
    }
}

impl PartialEq<Bson> for DocId {
    fn eq(&self, other: &Bson) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<DocId> for Bson {
    fn eq(&self, other: &DocId) -> bool {
        *self == *other.0
    }
}

impl PartialEq<ObjectId> for DocId {
    fn eq(&self, other: &ObjectId) -> bool {
        self.0.as_object_id() == Some(*other)
    }
}

impl fmt::Debug for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}
