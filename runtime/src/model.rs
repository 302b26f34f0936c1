//! The traits `#[derive(Model)]` implements, and the index declarations it produces.

use std::fmt::Debug;

use mongodb::bson::{Bson, DateTime, Document, doc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use futures_util::future::BoxFuture;

use crate::error::FieldFailure;
use crate::hook_context::{HookContext, HookPoint, HookResult, UpdateSpec};
use crate::query::PathKind;

/// A struct stored as the documents of one collection. Implemented by `#[derive(Model)]` only.
///
/// Besides this trait the derive generates `Self::fields()`, the typed paths used to build
/// filters, updates and sorts.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a mongrove model",
    label = "needs `#[derive(Model)]`",
    note = "add `#[derive(Serialize, Deserialize, Model)]` to the struct"
)]
pub trait Model: Serialize + DeserializeOwned + Send + Sync + Unpin + 'static {
    /// The type of `_id`: the id field's type (without `Option`), or `ObjectId` when the struct
    /// has no id field and the server or driver generates it.
    type Id: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static;
    /// The generated typed paths, `<Name>Fields`.
    type Fields;
    /// The collection name: `#[model(collection = "...")]`, or the struct name in snake_case,
    /// pluralised.
    const COLLECTION: &'static str;
    /// The stored name of the version field, from `#[model(version = "...")]`.
    const VERSION_FIELD: Option<&'static str>;
    /// The stored names of the timestamp fields, from `#[model(timestamps)]`.
    const TIMESTAMPS: Option<TimestampFields>;

    /// The typed field paths (also reachable as the inherent `Self::fields()`).
    fn fields() -> Self::Fields;
    /// The document's id, or `None` before it has one.
    fn id(&self) -> Option<Self::Id>;
    #[doc(hidden)]
    fn __set_id(&mut self, id: Self::Id) -> bool;
    /// The version the document was loaded or saved at, for versioned models.
    fn version(&self) -> Option<i64>;
    #[doc(hidden)]
    fn __set_version(&mut self, version: i64);
    #[doc(hidden)]
    fn __touch(&mut self, created: bool, now: DateTime);
    /// The indexes declared with `#[model(index(...))]`.
    fn indexes() -> Vec<IndexSpec>;
    /// Whether the model implements [`Hooks`](crate::Hooks) (`#[model(hooks)]`).
    #[doc(hidden)]
    const HAS_HOOKS: bool = false;
    #[doc(hidden)]
    fn __hook<'a>(
        &'a mut self,
        point: HookPoint,
        ctx: &'a mut HookContext<'_>,
    ) -> BoxFuture<'a, HookResult> {
        let _ = (point, ctx);
        Box::pin(std::future::ready(Ok(())))
    }
    #[doc(hidden)]
    fn __hook_ref<'a>(
        &'a self,
        point: HookPoint,
        ctx: &'a mut HookContext<'_>,
    ) -> BoxFuture<'a, HookResult> {
        let _ = (point, ctx);
        Box::pin(std::future::ready(Ok(())))
    }
    #[doc(hidden)]
    fn __validate_hook<'a>(
        &'a self,
        ctx: &'a mut HookContext<'_>,
    ) -> BoxFuture<'a, Vec<FieldFailure>> {
        let _ = ctx;
        Box::pin(std::future::ready(Vec::new()))
    }
    #[doc(hidden)]
    fn __before_update<'a>(
        ctx: &'a mut HookContext<'_>,
        spec: UpdateSpec<'a>,
    ) -> BoxFuture<'a, HookResult> {
        let _ = (ctx, spec);
        Box::pin(std::future::ready(Ok(())))
    }
    #[doc(hidden)]
    fn __after_update<'a>(ctx: &'a mut HookContext<'_>) -> BoxFuture<'a, HookResult> {
        let _ = ctx;
        Box::pin(std::future::ready(Ok(())))
    }
    /// The failures of the declarative field rules (`#[model(validate(...))]`).
    #[doc(hidden)]
    fn __field_failures(&self) -> Vec<FieldFailure> {
        Vec::new()
    }
    /// The failures of the declarative rules of the field at stored `path` (as an update sends
    /// it: `price`, `lines.$.qty`, `lines.$[l].origin`) for the value `value` that an update
    /// sets there. Paths without rules, and values that do not decode into the field, pass.
    #[doc(hidden)]
    fn __check_set(path: &str, value: &Bson, failures: &mut Vec<FieldFailure>) {
        let _ = (path, value, failures);
    }
    #[doc(hidden)]
    fn __derived() -> Derived;
}

/// A struct stored inside another model's documents, declared with `#[model(embedded)]`; its
/// typed paths continue the paths of the field that holds it (`#[model(nested)]`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is used with `#[model(nested)]` but is not an embedded model",
    label = "not embedded",
    note = "add `#[derive(Model)]` and `#[model(embedded)]` to `{Self}`, or remove `#[model(nested)]` from the field"
)]
pub trait Embedded: Serialize + DeserializeOwned {
    /// The generated typed paths, `<Name>Fields<M, K>`, rooted at model `M`; `K` is
    /// [`Direct`](crate::query::Direct) where the path names one place and
    /// [`InArray`](crate::query::InArray) where it goes through an array (filters only).
    type Fields<M, K: PathKind>;
    #[doc(hidden)]
    fn __fields_at<M, K: PathKind>(prefix: &str) -> Self::Fields<M, K>;
    /// [`Model::__check_set`] for the part `rest` of the path `full`, inside a value stored here.
    #[doc(hidden)]
    fn __check_set_at(full: &str, rest: &str, value: &Bson, failures: &mut Vec<FieldFailure>) {
        let _ = (full, rest, value, failures);
    }
    /// The failures of the declarative field rules of a value stored at `prefix`
    /// (`address`, `lines.2`), reported with their full stored path (`address.zip`).
    #[doc(hidden)]
    fn __field_failures_at(&self, prefix: &str, failures: &mut Vec<FieldFailure>) {
        let _ = (prefix, failures);
    }
}

/// A model with a version field (`#[model(version = "...")]`): the operations that check or
/// order by versions need one. Implemented by `#[derive(Model)]` only.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no version field, and this operation works with document versions",
    label = "needs a model with `#[model(version = \"...\")]`",
    note = "add an integer field such as `version: i64` to `{Self}` and name it on the struct: `#[model(version = \"version\")]`"
)]
pub trait Versioned: Model {}

/// Marks implementations that come from the derive.
#[doc(hidden)]
#[derive(Debug)]
pub struct Derived;

/// Stored names of the timestamp fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampFields {
    /// Set once, on insert.
    pub created: &'static str,
    /// Set on insert and on every write.
    pub updated: &'static str,
}

/// One key of an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKey {
    /// `1`
    Ascending,
    /// `-1`
    Descending,
    /// `"text"`, `"hashed"`, `"2d"` or `"2dsphere"`.
    Special(&'static str),
}

/// An index declared on a model with `#[model(index(...))]`.
#[derive(Debug, Clone)]
pub struct IndexSpec {
    /// The index name (MongoDB's default `field_1_other_-1` unless `name` was given).
    pub name: &'static str,
    /// Stored field paths with their direction, in order.
    pub keys: &'static [(&'static str, IndexKey)],
    /// Rejects a second document with the same key.
    pub unique: bool,
    /// Skips documents without the key.
    pub sparse: bool,
    /// TTL: documents expire this many seconds after the date in the key.
    pub expire_after_secs: Option<u64>,
    /// Only documents matching this filter are indexed.
    pub partial_filter: Option<fn() -> Document>,
}

impl IndexSpec {
    #[doc(hidden)]
    pub const fn __new(
        name: &'static str,
        keys: &'static [(&'static str, IndexKey)],
        unique: bool,
        sparse: bool,
        expire_after_secs: Option<u64>,
        partial_filter: Option<fn() -> Document>,
    ) -> Self {
        IndexSpec {
            name,
            keys,
            unique,
            sparse,
            expire_after_secs,
            partial_filter,
        }
    }

    /// The key document, as `createIndexes` takes it.
    pub fn key_document(&self) -> Document {
        let mut keys = Document::new();
        for (path, key) in self.keys {
            match key {
                IndexKey::Ascending => keys.insert(*path, 1),
                IndexKey::Descending => keys.insert(*path, -1),
                IndexKey::Special(kind) => keys.insert(*path, *kind),
            };
        }
        keys
    }

    /// The full index document for `createIndexes`, options included.
    pub fn to_document(&self) -> Document {
        let mut index = doc! { "key": self.key_document(), "name": self.name };
        if self.unique {
            index.insert("unique", true);
        }
        if self.sparse {
            index.insert("sparse", true);
        }
        if let Some(secs) = self.expire_after_secs {
            index.insert(
                "expireAfterSeconds",
                i64::try_from(secs).unwrap_or(i64::MAX),
            );
        }
        if let Some(partial) = self.partial_filter {
            index.insert("partialFilterExpression", partial());
        }
        index
    }
}

/// Widens a version field of any supported integer type.
#[doc(hidden)]
pub fn version_to_i64<T: TryInto<i64>>(version: T) -> i64 {
    version.try_into().unwrap_or(i64::MAX)
}
