//! Lifecycle hooks and validation: their order, failures that stop a write, writes made by hooks
//! joining the caller's transaction.

use std::sync::Mutex;

use mongrove::bson::oid::ObjectId;
use mongrove::{Error, FieldFailure, HookContext, HookResult, Hooks, Model, UpdateSpec};
use serde::{Deserialize, Serialize};

use crate::common;

/// Hook calls, tagged with the note's title so parallel tests can pick out their own.
static CALLS: Mutex<Vec<(String, &'static str)>> = Mutex::new(Vec::new());

fn calls_for(title: &str) -> Vec<&'static str> {
    CALLS
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _)| t == title)
        .map(|(_, hook)| *hook)
        .collect()
}

fn record(title: &str, hook: &'static str) {
    CALLS.lock().unwrap().push((title.to_owned(), hook));
}

// A `custom` rule receives the field as it is stored in the struct: `&String`.
#[allow(clippy::ptr_arg)]
fn is_lowercase(value: &String) -> Result<(), String> {
    if value.chars().all(|c| !c.is_uppercase()) {
        Ok(())
    } else {
        Err("must be lowercase".into())
    }
}

// ANCHOR: note
#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "notes", version = "version", hooks)]
pub struct Note {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    #[model(validate(length(min = 1, max = 40)))]
    pub title: String,
    #[model(validate(pattern = "^[a-z0-9-]+$", custom = is_lowercase))]
    pub slug: String,
    #[model(validate(range(min = 0, max = 5)))]
    pub stars: i32,
    #[model(validate(non_empty))]
    pub tags: Vec<String>,
    pub version: i64,
    /// Filled by `after_load`, never stored.
    #[serde(skip)]
    pub loaded: bool,
}

#[mongrove::async_trait]
impl Hooks for Note {
    async fn before_insert(&mut self, _ctx: &mut HookContext<'_>) -> HookResult {
        record(&self.title, "before_insert");
        if self.slug.is_empty() {
            // A before-hook may fill in derived fields; validation then checks them.
            self.slug = self.title.to_lowercase().replace(' ', "-");
        }
        Ok(())
    }

    async fn validate(&self, _ctx: &mut HookContext<'_>) -> Vec<FieldFailure> {
        record(&self.title, "validate");
        if self.stars == 5 && !self.tags.iter().any(|t| t == "reviewed") {
            return vec![FieldFailure {
                field: "stars".into(),
                rule: "validate hook".into(),
                message: "five stars need the `reviewed` tag".into(),
            }];
        }
        Vec::new()
    }

    async fn after_insert(&self, ctx: &mut HookContext<'_>) -> HookResult {
        record(&self.title, "after_insert");
        // A write made by a hook uses the caller's session, so it joins the caller's transaction.
        let mut audit = Audit {
            id: None,
            note: self.title.clone(),
        };
        let audits = ctx.repo::<Audit>();
        match ctx.session() {
            Some(session) => audits.insert(&mut audit).session(session).await?,
            None => audits.insert(&mut audit).await?,
        };
        Ok(())
    }

    async fn before_save(&mut self, _ctx: &mut HookContext<'_>) -> HookResult {
        record(&self.title, "before_save");
        if self.tags.iter().any(|t| t == "locked") {
            return Err("the note is locked".into());
        }
        Ok(())
    }

    async fn after_save(&self, _ctx: &mut HookContext<'_>) -> HookResult {
        record(&self.title, "after_save");
        Ok(())
    }

    async fn before_update(ctx: &mut HookContext<'_>, spec: UpdateSpec<'_>) -> HookResult {
        // Typed filters compare literally: `{"title": {"$eq": "..."}}`.
        let title = spec
            .filter
            .get_document("title")
            .and_then(|title| title.get_str("$eq"))
            .unwrap_or("")
            .to_owned();
        record(&title, "before_update");
        record(&title, ctx.operation());
        Ok(())
    }

    async fn before_delete(&self, _ctx: &mut HookContext<'_>) -> HookResult {
        record(&self.title, "before_delete");
        Ok(())
    }

    async fn after_delete(&self, _ctx: &mut HookContext<'_>) -> HookResult {
        record(&self.title, "after_delete");
        Ok(())
    }

    async fn after_load(&mut self, _ctx: &mut HookContext<'_>) -> HookResult {
        record(&self.title, "after_load");
        self.loaded = true;
        Ok(())
    }
}
// ANCHOR_END: note

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "audits")]
pub struct Audit {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    pub note: String,
}

pub fn note(title: &str) -> Note {
    Note {
        id: None,
        title: title.into(),
        slug: String::new(),
        stars: 1,
        tags: vec!["x".into()],
        version: 0,
        loaded: false,
    }
}

#[tokio::test]
async fn hooks_run_in_the_documented_order() {
    let db = common::db().await;
    let notes = db.repo::<Note>();
    let f = Note::fields();
    let mut n = note("Order Test");
    notes.insert(&mut n).await.unwrap();
    assert_eq!(n.slug, "order-test");
    assert_eq!(
        calls_for("Order Test"),
        ["before_insert", "validate", "after_insert"]
    );

    let mut loaded = notes.find_by_id(n.id.unwrap()).await.unwrap().unwrap();
    assert!(loaded.loaded);
    loaded.stars = 2;
    notes.save(&mut loaded).await.unwrap();
    notes
        .update_one(f.title.eq("Order Test"), f.stars.inc(1))
        .await
        .unwrap();
    let found = notes.find(f.title.eq("Order Test")).await.unwrap();
    assert!(found.iter().all(|n| n.loaded));
    notes.delete(&found[0]).await.unwrap();
    assert_eq!(
        calls_for("Order Test"),
        [
            "before_insert",
            "validate",
            "after_insert",
            "after_load",
            "before_save",
            "validate",
            "after_save",
            "before_update",
            "update_one",
            "after_load",
            "before_delete",
            "after_delete",
        ]
    );
    assert_eq!(
        db.repo::<Audit>()
            .count(Audit::fields().note.eq("Order Test"))
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn a_failing_before_save_hook_leaves_the_document_untouched() {
    let db = common::db().await;
    let notes = db.repo::<Note>();
    let mut n = note("Locked");
    notes.insert(&mut n).await.unwrap();
    n.tags.push("locked".into());
    n.stars = 3;
    match notes.save(&mut n).await {
        Err(Error::Hook {
            model,
            hook,
            source,
        }) => {
            assert_eq!((model, hook), ("Note", "before_save"));
            assert_eq!(source.to_string(), "the note is locked");
        }
        other => panic!("expected Error::Hook, got {other:?}"),
    }
    assert_eq!(n.version, 0);
    let stored = notes.find_by_id(n.id.unwrap()).await.unwrap().unwrap();
    assert_eq!(
        (stored.stars, stored.tags, stored.version),
        (1, vec!["x".to_owned()], 0)
    );
}

#[tokio::test]
async fn validation_reports_every_failing_field_and_writes_nothing() {
    let db = common::db().await;
    let notes = db.repo::<Note>();
    let mut bad = Note {
        id: None,
        title: String::new(),
        slug: "Not A Slug".into(),
        stars: 9,
        tags: vec![],
        version: 0,
        loaded: false,
    };
    match notes.insert(&mut bad).await {
        Err(Error::Validation { model, failures }) => {
            assert_eq!(model, "Note");
            let rules: Vec<(&str, &str)> = failures
                .iter()
                .map(|f| (f.field.as_str(), f.rule.as_str()))
                .collect();
            assert_eq!(
                rules,
                [
                    ("title", "length(min = 1, max = 40)"),
                    ("slug", "pattern = \"^[a-z0-9-]+$\""),
                    ("slug", "custom = is_lowercase"),
                    ("stars", "range(min = 0, max = 5)"),
                    ("tags", "non_empty"),
                ]
            );
        }
        other => panic!("expected Error::Validation, got {other:?}"),
    }
    assert_eq!(bad.id, None);
    assert_eq!(notes.count(mongrove::Filter::all()).await.unwrap(), 0);

    // The validate hook's failures join the rules'; save validates too.
    let mut good = note("Valid");
    notes.insert(&mut good).await.unwrap();
    good.stars = 5;
    let refused = notes.save(&mut good).await;
    assert!(
        matches!(&refused, Err(Error::Validation { failures, .. }) if failures.len() == 1 && failures[0].rule == "validate hook"),
        "{refused:?}"
    );
    assert_eq!(
        notes
            .find_by_id(good.id.unwrap())
            .await
            .unwrap()
            .unwrap()
            .stars,
        1
    );
}

#[tokio::test]
async fn a_hook_writes_in_the_callers_transaction_and_rolls_back_with_it() {
    let db = common::db().await;
    let notes = db.repo::<Note>();
    // Collections must exist before a transaction writes to them on this server version.
    notes.insert(&mut note("Seed")).await.unwrap();

    let mut session = db.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    let mut n = note("In Transaction");
    notes.insert(&mut n).session(&mut session).await.unwrap();
    let audits = db.repo::<Audit>();
    let f = Audit::fields();
    assert_eq!(
        audits
            .count(f.note.eq("In Transaction"))
            .session(&mut session)
            .await
            .unwrap(),
        1
    );
    session.abort_transaction().await.unwrap();

    assert_eq!(
        audits.count(f.note.eq("In Transaction")).await.unwrap(),
        0,
        "the hook's write rolled back"
    );
    assert_eq!(
        notes
            .count(Note::fields().title.eq("In Transaction"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(audits.count(f.note.eq("Seed")).await.unwrap(), 1);
}
