//! `repo.aggregate()`: a pipeline built from typed stages (`match_`, `sort`, `skip`, `limit`,
//! `unwind`, `lookup` along a `Ref`, `group_by` with typed accumulators, `project`), with
//! [`Aggregate::stage`] as the escape hatch, decoded into the caller's output struct.
//!
//! The stages before the first `group_by`/`project` see the model's documents, so they take the
//! model's typed paths; the output of the pipeline is whatever its last stage makes, so it is
//! decoded into `Out: Deserialize` whose serde names are the output fields. A document that does
//! not fit `Out` is an [`Error::Decode`](crate::Error::Decode), like a model that does not fit.

use std::future::IntoFuture;
use std::marker::PhantomData;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt};
use mongodb::ClientSession;
use mongodb::bson::{Bson, Document, RawDocumentBuf, doc};
use serde::de::DeserializeOwned;

use super::find::{CursorState, advance, current};
use crate::decode::decode;
use crate::error::Result;
use crate::model::Model;
use crate::projection::Projection;
use crate::query::{Array, Comparable, EncodeProblem, Field, IntoFilter, Numeric, Sort};
use crate::repo::Repo;
use crate::session::SessionSlot;

/// A field type whose values `sum` and `avg` add up: numbers, and `Option`s of them.
#[diagnostic::on_unimplemented(
    message = "`sum` and `avg` add numbers, but this field holds a `{Self}`",
    label = "not a numeric field",
    note = "`sum` and `avg` apply to fields of type `i32`, `i64`, `u32`, `f32`, `f64` or an `Option` of one; to count documents use `Acc::count`, to collect the values use `Acc::push` or `Acc::add_to_set`"
)]
pub trait Summable {}

#[diagnostic::do_not_recommend]
impl<T: Numeric> Summable for T {}

/// A reference field (`Ref<T>`, `Option<Ref<T>>`, `Vec<Ref<T>>`) that points at model `T`.
#[diagnostic::on_unimplemented(
    message = "`lookup` joins the model a field refers to, but a `{Self}` field does not refer to `{T}`",
    label = "not a reference to `{T}`",
    note = "`lookup::<T>(path, ..)` needs a field of type `Ref<T>`, `Option<Ref<T>>` or `Vec<Ref<T>>`; name the model the field refers to, or declare the field as a `Ref`"
)]
pub trait RefersTo<T> {}

impl<T: Model> RefersTo<T> for crate::relation::Ref<T> {}
impl<T: Model> RefersTo<T> for Option<crate::relation::Ref<T>> {}
impl<T: Model> RefersTo<T> for Vec<crate::relation::Ref<T>> {}

/// One accumulator of a `$group` stage: the output field `name` and how it is computed from the
/// documents of a group.
pub struct Acc<M> {
    name: String,
    expr: Bson,
    marker: PhantomData<fn() -> M>,
}

impl<M> Acc<M> {
    fn new(name: &str, op: &str, value: Bson) -> Self {
        Acc {
            name: name.to_owned(),
            expr: Bson::Document(doc! { op: value }),
            marker: PhantomData,
        }
    }

    fn of<T>(name: &str, op: &str, field: &Field<M, T>) -> Self {
        Acc::new(name, op, Bson::String(format!("${}", field.path())))
    }

    /// `name`: the sum of `field` over the group.
    pub fn sum<T: Summable>(name: &str, field: &Field<M, T>) -> Self {
        Acc::of(name, "$sum", field)
    }

    /// `name`: the average of `field` over the group.
    pub fn avg<T: Summable>(name: &str, field: &Field<M, T>) -> Self {
        Acc::of(name, "$avg", field)
    }

    /// `name`: the smallest value of `field` (numbers and dates).
    pub fn min<T: Comparable>(name: &str, field: &Field<M, T>) -> Self {
        Acc::of(name, "$min", field)
    }

    /// `name`: the largest value of `field` (numbers and dates).
    pub fn max<T: Comparable>(name: &str, field: &Field<M, T>) -> Self {
        Acc::of(name, "$max", field)
    }

    /// `name`: how many documents the group has.
    pub fn count(name: &str) -> Self {
        Acc::new(name, "$sum", Bson::Int32(1))
    }

    /// `name`: every value of `field` in the group, as an array.
    pub fn push<T>(name: &str, field: &Field<M, T>) -> Self {
        Acc::of(name, "$push", field)
    }

    /// `name`: the distinct values of `field` in the group, as an array.
    pub fn add_to_set<T>(name: &str, field: &Field<M, T>) -> Self {
        Acc::of(name, "$addToSet", field)
    }
}

/// An aggregation pipeline on the collection of `M`. Created by [`Repo::aggregate`]; await it
/// for the raw documents, or call [`Aggregate::decode`] for typed ones.
#[must_use = "an operation does nothing until it is awaited"]
pub struct Aggregate<'a, M: Model> {
    repo: &'a Repo<M>,
    stages: Vec<std::result::Result<Document, EncodeProblem>>,
    session: SessionSlot<'a>,
}

impl<'a, M: Model> Aggregate<'a, M> {
    pub(crate) fn new(repo: &'a Repo<M>) -> Self {
        Aggregate {
            session: repo.session_slot(),
            repo,
            stages: Vec::new(),
        }
    }

    fn push(mut self, stage: Document) -> Self {
        self.stages.push(Ok(stage));
        self
    }

    /// `$match`: keeps the documents matching `filter`.
    pub fn match_(mut self, filter: impl IntoFilter<M>) -> Self {
        let stage = filter.into().into_parts().map(|f| doc! { "$match": f });
        self.stages.push(stage);
        self
    }

    /// `$sort` by the model's paths.
    pub fn sort(self, sort: Sort<M>) -> Self {
        self.push(doc! { "$sort": sort.into_document() })
    }

    /// `$skip`.
    pub fn skip(self, skip: u64) -> Self {
        self.push(doc! { "$skip": i64::try_from(skip).unwrap_or(i64::MAX) })
    }

    /// `$limit`.
    pub fn limit(self, limit: u32) -> Self {
        self.push(doc! { "$limit": i64::from(limit) })
    }

    /// `$unwind`: one document per element of the array `field` (documents with an empty or
    /// missing array are dropped, as the server does).
    pub fn unwind<T: Array>(self, field: &Field<M, T>) -> Self {
        self.push(doc! { "$unwind": format!("${}", field.path()) })
    }

    /// `$lookup` along a reference: adds the array `as_` holding the documents of `T` whose
    /// `_id` the reference field `field` stores. The model is named (`lookup::<Customer>(..)`)
    /// and checked against the field's `Ref` type.
    pub fn lookup<T: Model, R: RefersTo<T>>(self, field: Field<M, R>, as_: &str) -> Self {
        self.push(doc! { "$lookup": {
            "from": T::COLLECTION,
            "localField": field.path(),
            "foreignField": "_id",
            "as": as_,
        } })
    }

    /// `$group` by `key`: one output document per value of `key`, which becomes its `_id`,
    /// with the accumulators' fields.
    pub fn group_by<T>(self, key: &Field<M, T>, accs: impl IntoIterator<Item = Acc<M>>) -> Self {
        self.group(Bson::String(format!("${}", key.path())), accs)
    }

    /// `$group` of every document into one (its `_id` is null).
    pub fn group_all(self, accs: impl IntoIterator<Item = Acc<M>>) -> Self {
        self.group(Bson::Null, accs)
    }

    fn group(self, key: Bson, accs: impl IntoIterator<Item = Acc<M>>) -> Self {
        let mut group = doc! { "_id": key };
        for acc in accs {
            group.insert(acc.name, acc.expr);
        }
        self.push(doc! { "$group": group })
    }

    /// `$project` onto the fields of projection `P` (a `#[derive(Projection)]` of `M`).
    pub fn project<P: Projection<Model = M>>(self) -> Self {
        self.push(doc! { "$project": P::projection() })
    }

    /// Any stage, as a document (`{"$addFields": {...}}`): the escape hatch for what the typed
    /// stages do not cover.
    pub fn stage(self, stage: Document) -> Self {
        self.push(stage)
    }

    /// Runs the pipeline in `session` (for example inside a transaction you manage).
    pub fn session(mut self, session: &'a mut ClientSession) -> Self {
        self.session = SessionSlot::Borrowed(session);
        self
    }

    /// Decodes each output document into `Out`, whose serde names are the output fields.
    pub fn decode<Out: DeserializeOwned + Send + 'a>(self) -> AggregateAs<'a, M, Out> {
        AggregateAs {
            pipeline: self,
            marker: PhantomData,
        }
    }

    /// Sends the pipeline and returns its cursor with the session it must be advanced in.
    async fn open(self) -> Result<CursorState<'a>> {
        let repo = self.repo;
        let pipeline = self
            .stages
            .into_iter()
            .map(|stage| repo.checked_part(stage, "a pipeline stage"))
            .collect::<Result<Vec<Document>>>()?;
        let aggregate = repo.raw.aggregate(pipeline);
        let mut slot = self.session;
        // Decides the session now (joining the task's transaction, if any), as `find` does.
        drop(slot.lock().await?);
        Ok(match slot {
            SessionSlot::None | SessionSlot::Ambient(..) => {
                let cursor = aggregate.await.map_err(|e| repo.driver_error(e))?;
                CursorState::Plain(cursor.with_type::<RawDocumentBuf>())
            }
            SessionSlot::Borrowed(session) => {
                let cursor = aggregate
                    .session(&mut *session)
                    .await
                    .map_err(|e| repo.driver_error(e))?;
                CursorState::Borrowed(cursor.with_type::<RawDocumentBuf>(), session)
            }
            SessionSlot::Shared(bound) => {
                let cursor = {
                    let mut session = bound.shared.session.lock().await;
                    let opened = aggregate.session(&mut *session).await;
                    if let Err(error) = &opened {
                        bound.shared.note_failure(error);
                    }
                    opened.map_err(|e| repo.driver_error(e))?
                };
                CursorState::Shared(cursor.with_type::<RawDocumentBuf>(), bound.shared)
            }
        })
    }
}

/// An aggregation whose output documents decode into `Out`. Created by [`Aggregate::decode`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct AggregateAs<'a, M: Model, Out> {
    pipeline: Aggregate<'a, M>,
    marker: PhantomData<fn() -> Out>,
}

impl<'a, M: Model, Out: DeserializeOwned + Send + 'a> AggregateAs<'a, M, Out> {
    /// Streams the output instead of collecting it.
    pub async fn stream(self) -> Result<BoxStream<'a, Result<Out>>> {
        let repo = self.pipeline.repo;
        let state = self.pipeline.open().await?;
        Ok(stream::unfold(state, move |mut state| async move {
            let item = match advance(repo, &mut state).await? {
                Err(e) => Err(e),
                Ok(()) => decode::<Out>(M::COLLECTION, current(&state)),
            };
            Some((item, state))
        })
        .boxed())
    }

    async fn run(self) -> Result<Vec<Out>> {
        let mut results = self.stream().await?;
        let mut all = Vec::new();
        while let Some(item) = results.next().await {
            all.push(item?);
        }
        Ok(all)
    }
}

impl<'a, M: Model, Out: DeserializeOwned + Send + 'a> IntoFuture for AggregateAs<'a, M, Out> {
    type Output = Result<Vec<Out>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let database = self.pipeline.repo.db().name().to_owned();
        super::trace::traced(
            &database,
            M::COLLECTION,
            "aggregate",
            super::trace::rows,
            self.run(),
        )
    }
}

impl<'a, M: Model> IntoFuture for Aggregate<'a, M> {
    type Output = Result<Vec<Document>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        self.decode::<Document>().into_future()
    }
}
