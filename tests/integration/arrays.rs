//! Updates of array elements as typed paths (the positional `$`, all elements `$[]`, filtered
//! elements `$[name]` with `arrayFilters`, `pull_where`), updates checked against the fields'
//! validation rules, and insert-only values (`set_on_insert`) in versioned upserts.

use mongrove::bson::{DateTime, doc};
use mongrove::{Error, Filter, Model, Update};
use serde::{Deserialize, Serialize};

use crate::common;

// ANCHOR: cart
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Model)]
#[model(embedded)]
pub struct Line {
    pub sku: String,
    #[model(validate(range(min = 1, max = 100)))]
    pub quantity: i32,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Model)]
#[model(collection = "carts", version = "version", timestamps)]
pub struct Cart {
    #[serde(rename = "_id")]
    pub id: i32,
    #[model(validate(length(min = 1, max = 20)))]
    pub owner: String,
    #[model(nested)]
    pub items: Vec<Line>,
    pub tags: Vec<String>,
    pub version: i64,
    pub created_at: Option<DateTime>,
    pub updated_at: Option<DateTime>,
}
// ANCHOR_END: cart

fn line(sku: &str, quantity: i32) -> Line {
    Line {
        sku: sku.to_owned(),
        quantity,
        status: "open".to_owned(),
    }
}

fn cart(id: i32) -> Cart {
    Cart {
        id,
        owner: "ada".to_owned(),
        items: vec![line("A-1", 1), line("B-2", 2), line("C-3", 3)],
        tags: vec!["new".to_owned(), "gift".to_owned()],
        version: 0,
        created_at: None,
        updated_at: None,
    }
}

/// `(sku, quantity, status)` of each line, for short assertions.
fn lines(cart: &Cart) -> Vec<(&str, i32, &str)> {
    cart.items
        .iter()
        .map(|l| (l.sku.as_str(), l.quantity, l.status.as_str()))
        .collect()
}

/// The failing stored paths of a validation error.
fn failing_paths<T: std::fmt::Debug>(result: mongrove::Result<T>) -> Vec<String> {
    match result {
        Err(Error::Validation { failures, .. }) => failures.into_iter().map(|f| f.field).collect(),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(embedded)]
pub struct Part {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(embedded)]
pub struct Place {
    pub city: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(embedded)]
pub struct Parcel {
    #[model(nested)]
    pub parts: Vec<Part>,
    #[model(nested)]
    pub origin: Option<Place>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "deliveries")]
pub struct Delivery {
    #[serde(rename = "_id")]
    pub id: i32,
    #[model(nested)]
    pub parcels: Vec<Parcel>,
}

#[test]
fn arrays_inside_array_elements() {
    let f = Delivery::fields();
    // Below an element named by a positional form, paths update again, arrays included.
    assert_eq!(
        f.parcels.all().parts.matched().name.set("x").document(),
        &doc! { "$set": { "parcels.$[].parts.$.name": "x" } }
    );
    assert_eq!(
        f.parcels.matched().origin.field().set(None).document(),
        &doc! { "$set": { "parcels.$.origin": null } }
    );
    assert_eq!(
        f.parcels.matched().parts.field().set(Vec::new()).document(),
        &doc! { "$set": { "parcels.$.parts": [] } }
    );
    // Through the array, every path filters (any element).
    assert_eq!(
        f.parcels.origin.city.eq("Oslo").document(),
        &doc! { "parcels.origin.city": { "$eq": "Oslo" } }
    );
    assert_eq!(
        f.parcels.parts.name.eq("bolt").document(),
        &doc! { "parcels.parts.name": { "$eq": "bolt" } }
    );
    assert_eq!(
        f.parcels.origin.field().exists(true).document(),
        &doc! { "parcels.origin": { "$exists": true } }
    );
}

#[test]
fn positional_paths_are_the_paths_the_server_takes() {
    let f = Cart::fields();
    assert_eq!(
        f.items.matched().status.set("x").document(),
        &doc! { "$set": { "items.$.status": "x" } }
    );
    assert_eq!(
        f.items.all().quantity.inc(1).document(),
        &doc! { "$inc": { "items.$[].quantity": 1 } }
    );
    let line = f.items.filtered("line");
    assert_eq!(line.name(), "line");
    assert_eq!(
        line.status.set("x").document(),
        &doc! { "$set": { "items.$[line].status": "x" } }
    );
    assert_eq!(
        line.when(|l| l.sku.eq("A-1")).document(),
        &doc! { "line.sku": { "$eq": "A-1" } }
    );
    assert_eq!(
        f.items.pull_where(|l| l.quantity.lte(0)).document(),
        &doc! { "$pull": { "items": { "quantity": { "$lte": 0 } } } }
    );
    assert_eq!(
        f.tags.matched().set("x").document(),
        &doc! { "$set": { "tags.$": "x" } }
    );
    // Filters through the array keep their plain path: any element matches.
    assert_eq!(
        f.items.sku.eq("A-1").document(),
        &doc! { "items.sku": { "$eq": "A-1" } }
    );
}

#[tokio::test]
async fn positional_all_and_filtered_updates_reach_the_right_elements() -> mongrove::Result<()> {
    let db = common::db().await;
    let carts = db.repo::<Cart>();
    carts.insert(&mut cart(1)).await.unwrap();
    carts.insert(&mut cart(2)).await.unwrap();

    // ANCHOR: matched
    let f = Cart::fields();
    // `$`: the element the filter matched, in the document it matched.
    let outcome = carts
        .update_one(
            f.id.eq(1).and(f.items.sku.eq("B-2")),
            f.items.matched().status.set("packed"),
        )
        .await?;
    assert_eq!(outcome.modified, 1);
    // ANCHOR_END: matched

    let one = carts.find_by_id(1).await.unwrap().unwrap();
    assert_eq!(
        lines(&one),
        [("A-1", 1, "open"), ("B-2", 2, "packed"), ("C-3", 3, "open")]
    );
    assert_eq!(one.version, 1);

    // A positional update whose filter matches no document changes nothing.
    let outcome = carts
        .update_one(f.items.sku.eq("Z-9"), f.items.matched().status.set("lost"))
        .await
        .unwrap();
    assert_eq!((outcome.matched, outcome.modified), (0, 0));

    // ANCHOR: all
    // `$[]`: every element of every matching document.
    carts
        .update_many(Filter::all(), f.items.all().quantity.inc(10))
        .await?;
    // ANCHOR_END: all
    for id in [1, 2] {
        let quantities: Vec<i32> = carts
            .find_by_id(id)
            .await
            .unwrap()
            .unwrap()
            .items
            .iter()
            .map(|l| l.quantity)
            .collect();
        assert_eq!(quantities, [11, 12, 13]);
    }

    // ANCHOR: filtered
    // `$[line]`: the elements meeting the condition given with `array_filter`.
    let line = f.items.filtered("line");
    carts
        .update_many(Filter::all(), line.status.set("held"))
        .array_filter(line.when(|l| l.quantity.gte(12).and(l.sku.ne("C-3"))))
        .await?;
    // ANCHOR_END: filtered
    let two = carts.find_by_id(2).await.unwrap().unwrap();
    assert_eq!(
        lines(&two),
        [
            ("A-1", 11, "open"),
            ("B-2", 12, "held"),
            ("C-3", 13, "open")
        ]
    );

    // The same through `update_one` and `find_one_and_update`.
    let line = f.items.filtered("l");
    carts
        .update_one(f.id.eq(1), line.status.set("gone"))
        .array_filter(line.when(|l| l.sku.eq("A-1")))
        .await
        .unwrap();
    let after = carts
        .find_one_and_update(f.id.eq(1), line.quantity.set(50))
        .array_filter(line.when(|l| l.status.eq("gone")))
        .return_after()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        lines(&after),
        [
            ("A-1", 50, "gone"),
            ("B-2", 12, "held"),
            ("C-3", 13, "open")
        ]
    );
    // An element condition that matches no element changes no element (the version of the
    // matched document still rises: it was written).
    let outcome = carts
        .update_one(f.id.eq(2), line.status.set("x"))
        .array_filter(line.when(|l| l.sku.eq("Z-9")))
        .await
        .unwrap();
    assert_eq!(outcome.matched, 1);
    assert_eq!(lines(&carts.find_by_id(2).await?.unwrap()), lines(&two));

    // ANCHOR: pull_where
    // `$pull` of the elements meeting a condition written with the element's paths.
    carts
        .update_many(
            Filter::all(),
            f.items
                .pull_where(|l| l.status.eq("held").or(l.sku.eq("C-3"))),
        )
        .await?;
    // ANCHOR_END: pull_where
    let two = carts.find_by_id(2).await.unwrap().unwrap();
    assert_eq!(lines(&two), [("A-1", 11, "open")]);
    let one = carts.find_by_id(1).await.unwrap().unwrap();
    assert_eq!(lines(&one), [("A-1", 50, "gone")]);

    // Arrays of plain values have `matched` and `all` too.
    carts
        .update_one(
            f.id.eq(1).and(f.tags.contains("new")),
            f.tags.matched().set("seen"),
        )
        .await
        .unwrap();
    let one = carts.find_by_id(1).await.unwrap().unwrap();
    assert_eq!(one.tags, ["seen", "gift"]);

    // A `$[name]` path without its array filter is refused by the server.
    let error = carts
        .update_one(f.id.eq(1), f.items.filtered("nope").status.set("x"))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Driver(_)), "{error:?}");
    Ok(())
}

#[tokio::test]
async fn typed_sets_are_checked_against_the_field_rules() -> mongrove::Result<()> {
    let db = common::db().await;
    let carts = db.repo::<Cart>();
    carts.insert(&mut cart(1)).await.unwrap();
    let f = Cart::fields();

    // ANCHOR: validated
    // `owner` has `length(min = 1, max = 20)`, a line's `quantity` `range(min = 1, max = 100)`.
    let refused = carts
        .update_one(
            f.id.eq(1),
            f.owner.set("").and(f.items.all().quantity.set(500)),
        )
        .await;
    assert_eq!(failing_paths(refused), ["owner", "items.$[].quantity"]);
    // ANCHOR_END: validated

    // Nothing was sent.
    let stored = carts.find_by_id(1).await.unwrap().unwrap();
    assert_eq!((stored.owner.as_str(), stored.version), ("ada", 0));

    // Whole values are checked too: an embedded element, or the whole array.
    let line_at = f.items.filtered("l");
    assert_eq!(
        failing_paths(
            carts
                .update_many(
                    Filter::all(),
                    f.items.field().set(vec![line("A", 1), line("B", 0)])
                )
                .await
        ),
        ["items.1.quantity"]
    );
    assert_eq!(
        failing_paths(
            carts
                .find_one_and_update(f.id.eq(1), line_at.quantity.set(0))
                .array_filter(line_at.when(|l| l.sku.eq("A-1")))
                .await
        ),
        ["items.$[l].quantity"]
    );
    assert_eq!(
        failing_paths(
            carts
                .update_one(f.id.eq(9), f.owner.set_on_insert("x".repeat(21)))
                .upsert(true)
                .await
        ),
        ["owner"]
    );
    assert_eq!(carts.count(Filter::all()).await.unwrap(), 1);

    // ANCHOR: unchecked
    // A valid value goes through.
    carts
        .update_one(
            f.id.eq(1).and(f.items.sku.eq("A-1")),
            f.items.matched().quantity.set(100),
        )
        .await?;
    carts.update_one(f.id.eq(1), f.owner.set("grace")).await?;
    // `skip_validation` sends the value unchecked; so does a raw update, always.
    carts
        .update_one(f.id.eq(1), f.items.all().quantity.set(0))
        .skip_validation()
        .await?;
    carts
        .update_one(f.id.eq(1), Update::raw(doc! { "$set": { "owner": "" } }))
        .await?;
    // ANCHOR_END: unchecked
    let stored = carts.find_by_id(1).await.unwrap().unwrap();
    assert_eq!(stored.owner, "");
    assert!(stored.items.iter().all(|l| l.quantity == 0));
    assert_eq!(stored.version, 4);
    Ok(())
}

#[tokio::test]
async fn set_on_insert_in_a_versioned_upsert() -> mongrove::Result<()> {
    let db = common::db().await;
    let carts = db.repo::<Cart>();
    let f = Cart::fields();

    // ANCHOR: set_on_insert
    // The owner is set only by the upsert that inserts; the tag is pushed every time.
    let visit = |owner: &str| {
        f.owner
            .set_on_insert(owner)
            .and(f.items.field().set_on_insert(Vec::<Line>::new()))
            .and(f.tags.push("visit"))
    };
    let first = carts
        .update_one(f.id.eq(7), visit("ada"))
        .upsert(true)
        .await?;
    let second = carts
        .update_one(f.id.eq(7), visit("bob"))
        .upsert(true)
        .await?;
    // ANCHOR_END: set_on_insert
    assert!(first.upserted_id.is_some());
    assert_eq!((second.matched, second.upserted_id), (1, None));

    let stored = carts.find_by_id(7).await.unwrap().unwrap();
    assert_eq!(stored.owner, "ada");
    assert_eq!(stored.tags, ["visit", "visit"]);
    // Inserted at version 0, then raised by the second write.
    assert_eq!(stored.version, 1);
    let (created, updated) = (stored.created_at.unwrap(), stored.updated_at.unwrap());
    assert!(updated >= created);

    // An insert-only value of the `updated` timestamp is the inserted document's; a later
    // write of an existing document still stamps it.
    let long_ago = DateTime::from_millis(0);
    let stamped = || visit("dee").and(f.updated_at.set_on_insert(Some(long_ago)));
    carts.update_one(f.id.eq(9), stamped()).upsert(true).await?;
    let inserted = carts.find_by_id(9).await?.unwrap();
    assert_eq!((inserted.updated_at, inserted.version), (Some(long_ago), 0));
    carts.update_one(f.id.eq(9), stamped()).upsert(true).await?;
    let updated = carts.find_by_id(9).await?.unwrap();
    assert!(updated.updated_at.unwrap() > long_ago);
    assert_eq!((updated.owner.as_str(), updated.version), ("dee", 1));

    // Through `find_one_and_update` too, returning what was inserted.
    let inserted = carts
        .find_one_and_update(f.id.eq(8), visit("cy"))
        .upsert(true)
        .return_after()
        .await?
        .unwrap();
    assert_eq!(
        (
            inserted.owner.as_str(),
            inserted.version,
            inserted.tags.len()
        ),
        ("cy", 0, 1)
    );
    assert!(inserted.created_at.is_some());
    Ok(())
}
