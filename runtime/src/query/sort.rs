//! [`Sort`]: a sort order on one model. The keys come from the paths (`asc`, `desc`, which the
//! three path types share, in `field.rs`); this file keeps their order.

use std::fmt;
use std::marker::PhantomData;

use mongodb::bson::{Document, doc};

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
    pub(super) fn by(path: &str, direction: i32) -> Self {
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
    use super::super::fixtures::{price, tags};

    #[test]
    fn sorts_keep_order() {
        let sort = price().desc().then(tags().asc());
        let keys: Vec<_> = sort.document().keys().cloned().collect();
        assert_eq!(keys, ["price", "tags"]);
    }
}
