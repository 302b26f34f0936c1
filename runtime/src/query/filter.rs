//! [`Filter`]: a query filter on one model, the conversions into it ([`IntoFilter`]) and how
//! filters combine (`and`, `or`, `!`), with the rule that keeps list tests literal. The
//! operators that build filters from paths are with the path types (`field.rs` says why).

use std::fmt;
use std::marker::PhantomData;

use mongodb::bson::{Bson, Document, doc};

use super::{EncodeProblem, literal};

/// A filter on model `M`, or something that converts into one (a raw `bson::Document`).
///
/// Implemented for every such type; it exists so that a filter built from another model's
/// paths is reported as such rather than as a missing `From` implementation.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a filter on `{M}`",
    label = "expected a filter on `{M}`",
    note = "a typed path belongs to the model it comes from: build this filter from `{M}::fields()`, or pass a raw `bson::Document`"
)]
pub trait IntoFilter<M>: Into<Filter<M>> {}

#[diagnostic::do_not_recommend]
impl<M, F: Into<Filter<M>>> IntoFilter<M> for F {}

/// A query filter on model `M`.
///
/// Built from the typed paths of `M::fields()`, combined with `and` / `or`; a raw
/// `bson::Document` converts into one as an escape hatch (its names are not checked).
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
/// use mongrove::Filter;
/// use mongrove::bson::doc;
///
/// let o = Order::fields();
/// let filter: Filter<Order> = o
///     .customer
///     .eq("ada")
///     .and(o.total.gte(1000).or(o.tags.contains("vip")));
/// let big = db.repo::<Order>().find(filter).await?;
/// let raw = db.repo::<Order>().count(doc! { "status": { "$in": ["new", "open"] } }).await?;
/// # Ok(()) }
/// ```
pub struct Filter<M> {
    doc: Document,
    problem: Option<EncodeProblem>,
    marker: PhantomData<fn() -> M>,
}

impl<M> Clone for Filter<M> {
    fn clone(&self) -> Self {
        Filter {
            doc: self.doc.clone(),
            problem: self.problem.clone(),
            marker: PhantomData,
        }
    }
}

impl<M> fmt::Debug for Filter<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Filter").field(&self.doc).finish()
    }
}

impl<M> Default for Filter<M> {
    fn default() -> Self {
        Self::all()
    }
}

impl<M> From<Document> for Filter<M> {
    fn from(doc: Document) -> Self {
        Self::raw(doc)
    }
}

impl<M> Filter<M> {
    /// Matches every document.
    pub fn all() -> Self {
        Self::raw(Document::new())
    }

    /// A filter written by hand, as the server takes it. The compiler checks nothing in it.
    pub fn raw(doc: Document) -> Self {
        Filter {
            doc,
            problem: None,
            marker: PhantomData,
        }
    }

    pub(super) fn field(path: &str, value: Result<Bson, EncodeProblem>) -> Self {
        match value {
            Ok(value) => Self::raw(doc! { path: value }),
            Err(problem) => Self::failed(problem),
        }
    }

    pub(super) fn op(path: &str, op: &str, value: Result<Bson, EncodeProblem>) -> Self {
        Self::field(path, value.map(|v| Bson::Document(doc! { op: v })))
    }

    /// `path` equals `value`, literally: `{path: {$eq: value}}`. The one exception is an `_id`
    /// compared with a scalar, written `{_id: value}`: the same test (a scalar is never read as
    /// an operator or a pattern), and the only shape the server answers without planning the
    /// query (its "IDHACK" path; `{_id: {$eq: ..}}` costs a plan: `$inc` by `_id` ran at
    /// 0.84× the driver's throughput with it, at parity without).
    pub(super) fn equal(path: &str, value: Result<Bson, EncodeProblem>) -> Self {
        match value {
            Ok(value) if path == "_id" && is_scalar(&value) => Self::field(path, Ok(value)),
            value => Self::op(path, "$eq", value),
        }
    }

    /// `$in`, `$nin` or `$all` over `values`. Those operators read a regular expression in the
    /// list as a pattern and refuse a document whose first key starts with `$`; when the list
    /// holds such a value, the same test is written as `$or` / `$nor` / `$and` of `$eq`, which
    /// takes each value literally.
    pub(super) fn list(path: &str, op: ListOp, values: Result<Vec<Bson>, EncodeProblem>) -> Self {
        let values = match values {
            Ok(values) => values,
            Err(problem) => return Self::failed(problem),
        };
        let (op, spelled_out) = match op {
            ListOp::In => ("$in", "$or"),
            ListOp::Nin => ("$nin", "$nor"),
            ListOp::All => ("$all", "$and"),
        };
        if !values.iter().any(read_as_operator) {
            return Self::raw(doc! { path: { op: values } });
        }
        let tests: Vec<Bson> = values
            .into_iter()
            .map(|value| Bson::Document(doc! { path: literal(value) }))
            .collect();
        Self::raw(doc! { spelled_out: tests })
    }

    fn failed(problem: EncodeProblem) -> Self {
        Filter {
            doc: Document::new(),
            problem: Some(problem),
            marker: PhantomData,
        }
    }

    /// Both filters match.
    pub fn and(self, other: Filter<M>) -> Self {
        if let Some(problem) = self.problem.or(other.problem) {
            return Self::failed(problem);
        }
        Self::raw(combine_and(self.doc, other.doc))
    }

    /// Either filter matches.
    pub fn or(self, other: Filter<M>) -> Self {
        if let Some(problem) = self.problem.or(other.problem) {
            return Self::failed(problem);
        }
        Self::raw(doc! { "$or": [self.doc, other.doc] })
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
}

/// The list operators of [`Filter::list`].
#[derive(Clone, Copy)]
pub(super) enum ListOp {
    In,
    Nin,
    All,
}

/// A value a list operator would not take as data: a pattern, or an operator document.
/// A value that `{path: value}` compares by equality, exactly as `$eq` does: not a document or
/// array (which could hold operators), a pattern or code.
fn is_scalar(value: &Bson) -> bool {
    matches!(
        value,
        Bson::ObjectId(_)
            | Bson::String(_)
            | Bson::Int32(_)
            | Bson::Int64(_)
            | Bson::Double(_)
            | Bson::Boolean(_)
            | Bson::DateTime(_)
            | Bson::Decimal128(_)
            | Bson::Binary(_)
            | Bson::Timestamp(_)
    )
}

fn read_as_operator(value: &Bson) -> bool {
    match value {
        Bson::RegularExpression(_) => true,
        Bson::Document(doc) => doc.keys().next().is_some_and(|k| k.starts_with('$')),
        _ => false,
    }
}

/// `!filter`: matches what `filter` does not (`$nor`).
impl<M> std::ops::Not for Filter<M> {
    type Output = Filter<M>;

    fn not(self) -> Filter<M> {
        if let Some(problem) = self.problem {
            return Filter::failed(problem);
        }
        Filter::raw(doc! { "$nor": [self.doc] })
    }
}

/// Merges two conditions: side by side when their keys differ, under `$and` when they overlap.
fn combine_and(left: Document, right: Document) -> Document {
    if left.is_empty() {
        return right;
    }
    if right.is_empty() {
        return left;
    }
    if right.keys().any(|k| left.contains_key(k)) {
        doc! { "$and": [left, right] }
    } else {
        let mut merged = left;
        merged.extend(right);
        merged
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use mongodb::bson::{Bson, doc};

    use super::super::fixtures::{Doc, extra, hostile, items, price, tags};
    use crate::query::{Field, Nested};

    #[test]
    fn filters_combine() {
        let filter = price().gte(10).and(price().lt(20.0));
        assert_eq!(
            filter.document(),
            &doc! { "$and": [{ "price": { "$gte": 10.0 } }, { "price": { "$lt": 20.0 } }] }
        );
        let filter = price().eq(1).and(tags().contains("a"));
        assert_eq!(
            filter.document(),
            &doc! { "price": { "$eq": 1.0 }, "tags": { "$eq": "a" } }
        );
    }
    #[test]
    fn an_id_compared_with_a_scalar_is_the_servers_fast_shape() {
        let id: Field<Doc, mongodb::bson::oid::ObjectId> = Field::__new(Cow::Borrowed("_id"));
        let oid = mongodb::bson::oid::ObjectId::new();
        assert_eq!(id.eq(oid).document(), &doc! { "_id": oid });
        let key: Field<Doc, String> = Field::__new(Cow::Borrowed("_id"));
        assert_eq!(key.eq("k").document(), &doc! { "_id": "k" });
        // A document id may hold `$` keys: it stays literal.
        let any: Field<Doc, Bson> = Field::__new(Cow::Borrowed("_id"));
        assert_eq!(
            any.eq(hostile()).document(),
            &doc! { "_id": { "$eq": { "$ne": 1 } } }
        );
        // Any other path keeps `$eq`.
        assert_eq!(
            tags().contains("a").document(),
            &doc! { "tags": { "$eq": "a" } }
        );
    }

    #[test]
    fn comparisons_are_literal() {
        assert_eq!(
            extra().eq(hostile()).document(),
            &doc! { "extra": { "$eq": { "$ne": 1 } } }
        );
        assert_eq!(
            items().contains(hostile()).document(),
            &doc! { "items": { "$eq": { "$ne": 1 } } }
        );
        let optional: Field<Doc, Option<String>> = Field::__new(Cow::Borrowed("nick"));
        assert_eq!(
            optional.is_none().document(),
            &doc! { "nick": { "$eq": null } }
        );
        // A nested path's whole value is an ordinary field path.
        let nested: Nested<Doc, Bson, ()> = Nested::__new(Cow::Borrowed("address"), ());
        assert_eq!(
            nested.field().eq(hostile()).document(),
            &doc! { "address": { "$eq": { "$ne": 1 } } }
        );
        // Combining keeps every condition whole.
        let both = extra().eq(hostile()).and(extra().ne(hostile()));
        assert_eq!(
            both.document(),
            &doc! { "$and": [{ "extra": { "$eq": { "$ne": 1 } } }, { "extra": { "$ne": { "$ne": 1 } } }] }
        );
    }

    #[test]
    fn lists_of_plain_values_use_list_operators() {
        assert_eq!(
            price().in_([1, 2]).document(),
            &doc! { "price": { "$in": [1.0, 2.0] } }
        );
        assert_eq!(
            price().nin([1]).document(),
            &doc! { "price": { "$nin": [1.0] } }
        );
        assert_eq!(
            tags().contains_all(["a", "b"]).document(),
            &doc! { "tags": { "$all": ["a", "b"] } }
        );
    }

    #[test]
    fn lists_holding_operators_or_patterns_are_spelled_out_with_eq() {
        let pattern = Bson::RegularExpression(mongodb::bson::Regex {
            pattern: ".*".into(),
            options: String::new(),
        });
        assert_eq!(
            extra().in_([Bson::Int32(1), hostile()]).document(),
            &doc! { "$or": [{ "extra": { "$eq": 1 } }, { "extra": { "$eq": { "$ne": 1 } } }] }
        );
        assert_eq!(
            extra().nin([pattern.clone()]).document(),
            &doc! { "$nor": [{ "extra": { "$eq": pattern.clone() } }] }
        );
        assert_eq!(
            items().contains_all([hostile()]).document(),
            &doc! { "$and": [{ "items": { "$eq": { "$ne": 1 } } }] }
        );
        // A `$` key that is not the first one is not read as an operator.
        let later = Bson::Document(doc! { "a": 1, "$b": 2 });
        assert_eq!(
            extra().in_([later.clone()]).document(),
            &doc! { "extra": { "$in": [later] } }
        );
    }
    #[test]
    fn unencodable_values_surface_as_problems() {
        let huge: Field<Doc, u64> = Field::__new(Cow::Borrowed("n"));
        let problem = huge
            .eq(u64::MAX)
            .and(price().eq(1))
            .into_parts()
            .unwrap_err();
        assert_eq!(problem.what, "the value for `n`");
    }

    #[test]
    fn matches_reads_a_pattern() {
        let nick: Field<Doc, Option<String>> = Field::__new(Cow::Borrowed("nick"));
        let filter = nick.matches("^a", "i");
        let Some(Bson::RegularExpression(regex)) = filter.document().get("nick") else {
            panic!("a regex filter");
        };
        assert_eq!(
            (regex.pattern.as_str(), regex.options.as_str()),
            ("^a", "i")
        );
    }
}
