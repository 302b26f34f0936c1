//! A crate that re-exports mongrove points the derive at its own path with
//! `#[model(crate = "...")]`: the generated code then names nothing through `::mongrove`.

use serde::{Deserialize, Serialize};

use crate::common;

/// What a framework built on mongrove would expose, under a name of its own.
pub mod facade {
    pub use mongrove as orm;
}

// ANCHOR: crate_path
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, facade::orm::Model)]
#[model(
    crate = "crate::reexport::facade::orm",
    collection = "gadgets",
    version = "version"
)]
pub struct Gadget {
    #[serde(rename = "_id")]
    pub id: i32,
    pub name: String,
    pub version: i64,
}
// ANCHOR_END: crate_path

#[tokio::test]
async fn a_model_derived_through_a_re_export_works_like_any_other() {
    let db = common::db().await;
    let gadgets = db.repo::<Gadget>();
    let mut gadget = Gadget {
        id: 1,
        name: "lever".into(),
        version: 0,
    };
    gadgets.insert(&mut gadget).await.unwrap();
    gadget.name = "pulley".into();
    gadgets.save(&mut gadget).await.unwrap();
    let stored = gadgets.find_by_id(1).await.unwrap().unwrap();
    assert_eq!(stored, gadget);
    assert_eq!(stored.version, 1);
    let f = Gadget::fields();
    assert_eq!(gadgets.count(f.name.eq("pulley")).await.unwrap(), 1);
}
