//! Hooks and validation around the repository's operations (see `crate::hooks` for the order).

use mongodb::bson::Document;

use super::Repo;
use crate::error::{Error, Result};
use crate::hooks::{HookContext, HookPoint, UpdateSpec, hook_error, model_name};
use crate::model::Model;
use crate::session::SessionSlot;

/// Runs a hook that may change the document.
pub(super) async fn hook_mut<M: Model>(
    repo: &Repo<M>,
    slot: &mut SessionSlot<'_>,
    doc: &mut M,
    point: HookPoint,
    operation: &'static str,
) -> Result<()> {
    if !M::HAS_HOOKS {
        return Ok(());
    }
    slot.resolve().await?;
    let mut ctx = HookContext::new(repo.db(), slot, operation);
    doc.__hook(point, &mut ctx)
        .await
        .map_err(|e| hook_error::<M>(point.name(), e))
}

/// Runs a hook that only reads the document.
pub(super) async fn hook_ref<M: Model>(
    repo: &Repo<M>,
    slot: &mut SessionSlot<'_>,
    doc: &M,
    point: HookPoint,
    operation: &'static str,
) -> Result<()> {
    if !M::HAS_HOOKS {
        return Ok(());
    }
    slot.resolve().await?;
    let mut ctx = HookContext::new(repo.db(), slot, operation);
    doc.__hook_ref(point, &mut ctx)
        .await
        .map_err(|e| hook_error::<M>(point.name(), e))
}

/// The declarative field rules, then the `validate` hook; every failure is reported.
pub(super) async fn validate<M: Model>(
    repo: &Repo<M>,
    slot: &mut SessionSlot<'_>,
    doc: &M,
    operation: &'static str,
) -> Result<()> {
    let mut failures = doc.__field_failures();
    if M::HAS_HOOKS {
        slot.resolve().await?;
        let mut ctx = HookContext::new(repo.db(), slot, operation);
        failures.extend(doc.__validate_hook(&mut ctx).await);
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation {
            model: model_name::<M>(),
            failures,
        })
    }
}

/// `before_update`, which may rewrite the filter and the update.
pub(super) async fn before_update<M: Model>(
    repo: &Repo<M>,
    slot: &mut SessionSlot<'_>,
    filter: &mut Document,
    update: &mut Document,
    operation: &'static str,
) -> Result<()> {
    if !M::HAS_HOOKS {
        return Ok(());
    }
    slot.resolve().await?;
    let mut ctx = HookContext::new(repo.db(), slot, operation);
    M::__before_update(&mut ctx, UpdateSpec { filter, update })
        .await
        .map_err(|e| hook_error::<M>("before_update", e))
}

/// `after_update`.
pub(super) async fn after_update<M: Model>(
    repo: &Repo<M>,
    slot: &mut SessionSlot<'_>,
    operation: &'static str,
) -> Result<()> {
    if !M::HAS_HOOKS {
        return Ok(());
    }
    slot.resolve().await?;
    let mut ctx = HookContext::new(repo.db(), slot, operation);
    M::__after_update(&mut ctx)
        .await
        .map_err(|e| hook_error::<M>("after_update", e))
}
