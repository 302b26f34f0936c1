//! Lifecycle hooks, opted into with `#[model(hooks)]`.
//!
//! The order, for each operation:
//!
//! | operation | hooks, in order |
//! |---|---|
//! | `insert`, `insert_many` (per document) | `before_insert`, validation (rules, then `validate`), write, `after_insert` |
//! | `save`, `replace` | `before_save`, validation, write, `after_save` |
//! | `update_one`, `update_many`, `find_one_and_update` | `before_update`, write, `after_update` (then `after_load` on the returned document) |
//! | `delete` | `before_delete`, write, `after_delete` |
//! | every read that returns a model | `after_load` |
//!
//! A failing `before_*` hook (or validation) stops the operation before anything is written and
//! returns [`Error::Hook`] (or [`Error::Validation`]). A failing `after_*` hook returns
//! `Error::Hook` although the write happened; inside a transaction that aborts it. `bulk_write` and
//! `delete_many` run no hooks, as in Mongoose.

use futures_util::future::BoxFuture;

use crate::error::{Error, FieldFailure};
pub use crate::hook_context::{HookContext, HookPoint, HookResult, UpdateSpec};
use crate::model::Model;

/// Lifecycle hooks of a model declared with `#[model(hooks)]`. Every method has a no-op default;
/// override the ones you need.
///
/// The order, for each operation:
///
/// | operation | hooks, in order |
/// |---|---|
/// | `insert`, `insert_many` (per document) | `before_insert`, validation (rules, then `validate`), write, `after_insert` |
/// | `save`, `replace` | `before_save`, validation, write, `after_save` |
/// | `update_one`, `update_many`, `find_one_and_update` | `before_update`, write, `after_update` (then `after_load` on the returned document) |
/// | `delete` | `before_delete`, write, `after_delete` |
/// | every read that returns a model | `after_load` |
///
/// A failing `before_*` hook (or validation) stops the operation before anything is written
/// and returns [`Error::Hook`](crate::Error::Hook) (or
/// [`Error::Validation`](crate::Error::Validation)). A failing `after_*` hook returns
/// `Error::Hook` although the write happened; inside a transaction that aborts it. `bulk_write`
/// and `delete_many` run no hooks, as in Mongoose.
#[diagnostic::on_unimplemented(
    message = "`{Self}` declares `#[model(hooks)]` but does not implement `mongrove::Hooks`",
    label = "missing `impl Hooks for {Self}`",
    note = "add `#[mongrove::async_trait] impl mongrove::Hooks for {Self} {{}}` and override the hooks you need, or remove `hooks` from `#[model(...)]`"
)]
#[async_trait::async_trait]
pub trait Hooks: Model {
    /// Checks the whole document, after the declarative field rules; return every failure.
    async fn validate(&self, _ctx: &mut HookContext<'_>) -> Vec<FieldFailure> {
        Vec::new()
    }

    /// Before an insert; may change the document.
    async fn before_insert(&mut self, _ctx: &mut HookContext<'_>) -> HookResult {
        Ok(())
    }

    /// After an insert succeeded (the id is set).
    async fn after_insert(&self, _ctx: &mut HookContext<'_>) -> HookResult {
        Ok(())
    }

    /// Before `save` or `replace` writes the whole document; may change it.
    async fn before_save(&mut self, _ctx: &mut HookContext<'_>) -> HookResult {
        Ok(())
    }

    /// After `save` or `replace` succeeded (the version is the new one).
    async fn after_save(&self, _ctx: &mut HookContext<'_>) -> HookResult {
        Ok(())
    }

    /// Before an update by filter; may change the filter and the update.
    async fn before_update(_ctx: &mut HookContext<'_>, _spec: UpdateSpec<'_>) -> HookResult {
        Ok(())
    }

    /// After an update by filter succeeded.
    async fn after_update(_ctx: &mut HookContext<'_>) -> HookResult {
        Ok(())
    }

    /// Before `delete` of a loaded document.
    async fn before_delete(&self, _ctx: &mut HookContext<'_>) -> HookResult {
        Ok(())
    }

    /// After `delete` succeeded.
    async fn after_delete(&self, _ctx: &mut HookContext<'_>) -> HookResult {
        Ok(())
    }

    /// After a document was read and decoded; may fill in derived fields.
    async fn after_load(&mut self, _ctx: &mut HookContext<'_>) -> HookResult {
        Ok(())
    }
}

/// Runs a hook that may change the document.
#[doc(hidden)]
pub fn run_hook<'a, T: Hooks>(
    model: &'a mut T,
    point: HookPoint,
    ctx: &'a mut HookContext<'_>,
) -> BoxFuture<'a, HookResult> {
    match point {
        HookPoint::BeforeInsert => model.before_insert(ctx),
        HookPoint::BeforeSave => model.before_save(ctx),
        HookPoint::AfterLoad => model.after_load(ctx),
        _ => run_hook_ref(model, point, ctx),
    }
}

/// Runs a hook that only reads the document.
#[doc(hidden)]
pub fn run_hook_ref<'a, T: Hooks>(
    model: &'a T,
    point: HookPoint,
    ctx: &'a mut HookContext<'_>,
) -> BoxFuture<'a, HookResult> {
    match point {
        HookPoint::AfterInsert => model.after_insert(ctx),
        HookPoint::AfterSave => model.after_save(ctx),
        HookPoint::BeforeDelete => model.before_delete(ctx),
        HookPoint::AfterDelete => model.after_delete(ctx),
        // The mutable hooks are reached through `run_hook`.
        HookPoint::BeforeInsert | HookPoint::BeforeSave | HookPoint::AfterLoad => {
            Box::pin(std::future::ready(Ok(())))
        }
    }
}

#[doc(hidden)]
pub fn run_validate<'a, T: Hooks>(
    model: &'a T,
    ctx: &'a mut HookContext<'_>,
) -> BoxFuture<'a, Vec<FieldFailure>> {
    model.validate(ctx)
}

#[doc(hidden)]
pub fn run_before_update<'a, T: Hooks>(
    ctx: &'a mut HookContext<'_>,
    spec: UpdateSpec<'a>,
) -> BoxFuture<'a, HookResult> {
    T::before_update(ctx, spec)
}

#[doc(hidden)]
pub fn run_after_update<'a, T: Hooks>(ctx: &'a mut HookContext<'_>) -> BoxFuture<'a, HookResult> {
    T::after_update(ctx)
}

/// The hook runners of `T`, as the derive calls them. `T: Hooks` is required here only, so a
/// model that declares `#[model(hooks)]` without implementing [`Hooks`] gets one error rather than
/// one per hook point.
#[doc(hidden)]
#[allow(clippy::type_complexity)]
pub struct HookFns<T> {
    pub hook:
        for<'a, 'b> fn(&'a mut T, HookPoint, &'a mut HookContext<'b>) -> BoxFuture<'a, HookResult>,
    pub hook_ref:
        for<'a, 'b> fn(&'a T, HookPoint, &'a mut HookContext<'b>) -> BoxFuture<'a, HookResult>,
    pub validate:
        for<'a, 'b> fn(&'a T, &'a mut HookContext<'b>) -> BoxFuture<'a, Vec<FieldFailure>>,
    pub before_update:
        for<'a, 'b> fn(&'a mut HookContext<'b>, UpdateSpec<'a>) -> BoxFuture<'a, HookResult>,
    pub after_update: for<'a, 'b> fn(&'a mut HookContext<'b>) -> BoxFuture<'a, HookResult>,
}

#[doc(hidden)]
pub fn hooks_of<T: Hooks>() -> HookFns<T> {
    HookFns {
        hook: run_hook::<T>,
        hook_ref: run_hook_ref::<T>,
        validate: run_validate::<T>,
        before_update: run_before_update::<T>,
        after_update: run_after_update::<T>,
    }
}

/// Wraps what a hook returned.
pub(crate) fn hook_error<M: Model>(
    hook: &'static str,
    source: Box<dyn std::error::Error + Send + Sync>,
) -> Error {
    Error::Hook {
        model: model_name::<M>(),
        hook,
        source,
    }
}

/// The model's type name without its module path.
pub(crate) fn model_name<M>() -> &'static str {
    let name = std::any::type_name::<M>();
    name.rsplit("::").next().unwrap_or(name)
}
