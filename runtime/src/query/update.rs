//! [`Update`]: an update on one model and how updates combine, with the check that one update
//! does not give the same operator twice for a path. The operators that build updates from
//! paths are with the path types (`field.rs` says why).

use std::fmt;
use std::marker::PhantomData;

use mongodb::bson::{Bson, Document, doc};

use super::EncodeProblem;

/// An update on model `M`: operators grouped as the server expects them.
///
/// Built from the typed paths of `M::fields()` and combined with `and`. The repository adds
/// the version increment and the `updated` timestamp itself.
///
/// ```no_run
/// # use mongrove::{Db, Model};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, Serialize, Deserialize, Model)]
/// # #[model(collection = "orders", version = "version")]
/// # struct Order {
/// #     #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
/// #     id: Option<mongrove::bson::oid::ObjectId>,
/// #     customer: String,
/// #     total: i64,
/// #     status: String,
/// #     tags: Vec<String>,
/// #     version: i64,
/// # }
/// # async fn demo(db: &Db) -> mongrove::Result<()> {
/// use mongrove::Update;
///
/// let o = Order::fields();
/// let update: Update<Order> = o
///     .status
///     .set("paid")
///     .and(o.total.inc(-100))
///     .and(o.tags.add_to_set("discounted"));
/// db.repo::<Order>().update_one(o.customer.eq("ada"), update).await?;
/// # Ok(()) }
/// ```
pub struct Update<M> {
    doc: Document,
    problem: Option<EncodeProblem>,
    /// The `(operator, path)` of each value set by a typed path (`set`, `set_on_insert`): the
    /// values the repository checks against the field's validation rules. A raw update adds none.
    typed: Vec<(&'static str, String)>,
    marker: PhantomData<fn() -> M>,
}

impl<M> Clone for Update<M> {
    fn clone(&self) -> Self {
        Update {
            doc: self.doc.clone(),
            problem: self.problem.clone(),
            typed: self.typed.clone(),
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
            typed: Vec::new(),
            marker: PhantomData,
        }
    }

    pub(super) fn op(op: &'static str, path: &str, value: Result<Bson, EncodeProblem>) -> Self {
        match value {
            Ok(value) => {
                let mut update = Self::raw(doc! { op: { path: value } });
                if matches!(op, "$set" | "$setOnInsert") {
                    update.typed.push((op, path.to_owned()));
                }
                update
            }
            Err(problem) => Update {
                doc: Document::new(),
                problem: Some(problem),
                typed: Vec::new(),
                marker: PhantomData,
            },
        }
    }

    /// Applies both updates in one write. Two updates of the same path by the same operator
    /// are reported when the operation runs (one of them would be lost silently otherwise).
    pub fn and(mut self, other: Update<M>) -> Self {
        if self.problem.is_none() {
            self.problem = other.problem;
        }
        self.typed.extend(other.typed);
        for (op, fields) in other.doc {
            match (self.doc.get_mut(&op), fields) {
                (Some(Bson::Document(existing)), Bson::Document(more)) => {
                    for (path, value) in more {
                        if existing.contains_key(&path) && self.problem.is_none() {
                            self.problem = Some(EncodeProblem {
                                what: format!("the update of `{path}`"),
                                reason: format!(
                                    "`{op}` is given twice for `{path}` in one update; combine the \
                                     values into one (such as `push_each`), or write twice"
                                ),
                            });
                        }
                        existing.insert(path, value);
                    }
                }
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

    /// The document, and the stored path and value of each value a typed path sets (for the
    /// validation rules; a raw part of the update is not among them).
    pub(crate) fn into_typed_parts(self) -> (Result<Document, EncodeProblem>, Vec<(String, Bson)>) {
        let values = self
            .typed
            .iter()
            .filter_map(|(op, path)| {
                let value = self.doc.get_document(op).ok()?.get(path)?;
                Some((path.clone(), value.clone()))
            })
            .collect();
        (self.into_parts(), values)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use mongodb::bson::{Bson, doc};

    use super::super::fixtures::{Doc, extra, hostile, items, price, tags};
    use crate::query::Field;

    #[test]
    fn array_updates_take_values_literally() {
        let each = Bson::Document(doc! { "$each": [1, 2], "$slice": 0 });
        assert_eq!(
            items().push(each.clone()).document(),
            &doc! { "$push": { "items": { "$each": [each.clone()] } } }
        );
        assert_eq!(
            items().add_to_set(each.clone()).document(),
            &doc! { "$addToSet": { "items": { "$each": [each] } } }
        );
        assert_eq!(
            items().pull(hostile()).document(),
            &doc! { "$pull": { "items": { "$eq": { "$ne": 1 } } } }
        );
        assert_eq!(
            items().pull_all([hostile()]).document(),
            &doc! { "$pullAll": { "items": [{ "$ne": 1 }] } }
        );
        assert_eq!(
            extra().set(hostile()).document(),
            &doc! { "$set": { "extra": { "$ne": 1 } } }
        );
    }

    #[test]
    fn only_values_set_by_typed_paths_are_kept_for_validation() {
        let update = price()
            .set(2.0)
            .and(tags().push("x"))
            .and(price().max(9.0))
            .and(extra().set_on_insert(Bson::Int32(1)))
            .and(super::Update::raw(doc! { "$set": { "raw": 1 } }));
        let (doc, values) = update.into_typed_parts();
        assert!(doc.is_ok());
        assert_eq!(
            values,
            [
                ("price".to_owned(), Bson::Double(2.0)),
                ("extra".to_owned(), Bson::Int32(1)),
            ]
        );
    }

    #[test]
    fn the_same_path_twice_under_one_operator_is_a_problem() {
        let twice = tags().push("a").and(tags().push("b"));
        let problem = twice.into_parts().unwrap_err();
        assert_eq!(problem.what, "the update of `tags`");
        let different = tags().push("a").and(price().set(1));
        assert!(different.into_parts().is_ok());
    }
    #[test]
    fn valid_updates_of_every_field_type() {
        // `inc` takes what converts into the field's type, as `eq` does.
        assert_eq!(
            price().inc(1).document(),
            &doc! { "$inc": { "price": 1.0 } }
        );
        let optional_count: Field<Doc, Option<i64>> = Field::__new(Cow::Borrowed("n"));
        assert_eq!(
            optional_count
                .inc(2)
                .and(optional_count.clone().mul(3))
                .document(),
            &doc! { "$inc": { "n": 2_i64 }, "$mul": { "n": 3_i64 } }
        );
        let now = mongodb::bson::DateTime::from_millis(1_000);
        let seen: Field<Doc, mongodb::bson::DateTime> = Field::__new(Cow::Borrowed("seen"));
        let last: Field<Doc, Option<mongodb::bson::DateTime>> = Field::__new(Cow::Borrowed("last"));
        assert_eq!(
            seen.min(now).and(last.max(now)).document(),
            &doc! { "$min": { "seen": now }, "$max": { "last": now } }
        );
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
            &doc! {
                "$inc": { "price": 2.0 },
                "$push": { "tags": { "$each": ["x"] } },
                "$max": { "price": 9.0 },
                "$addToSet": { "tags": { "$each": ["y"] } },
            }
        );
        let both = Field::<Doc, i32>::__new(Cow::Borrowed("a"))
            .set(1)
            .and(Field::<Doc, i32>::__new(Cow::Borrowed("b")).set(2));
        assert_eq!(both.document(), &doc! { "$set": { "a": 1, "b": 2 } });
    }
}
