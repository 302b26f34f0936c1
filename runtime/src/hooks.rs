//! Lifecycle hooks, opted into with `#[model(hooks)]`.

use crate::model::Model;

/// Lifecycle hooks of a model declared with `#[model(hooks)]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` declares `#[model(hooks)]` but does not implement `mongrove::Hooks`",
    label = "missing `impl Hooks for {Self}`",
    note = "add `#[mongrove::async_trait] impl mongrove::Hooks for {Self} {{}}` and override the hooks you need, or remove `hooks` from `#[model(...)]`"
)]
pub trait Hooks: Model {}

/// Object-safe view of [`Hooks`], so a repository can call them without knowing whether a
/// model has any.
#[doc(hidden)]
pub trait DynHooks: Send {}

impl<T: Hooks> DynHooks for T {}

#[doc(hidden)]
pub fn hooks_of<T: Hooks>(model: &mut T) -> &mut dyn DynHooks {
    model
}
