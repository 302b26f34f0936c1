//! `#[model(validate(...))]` on the fields of `#[model(embedded)]` structs runs when the model
//! holding them is inserted, saved or replaced, and reports each failure by its stored path.

use mongrove::bson::oid::ObjectId;
use mongrove::{Error, Filter, Model};
use serde::{Deserialize, Serialize};

use crate::common;

// ANCHOR: shipment
#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(embedded)]
pub struct Address {
    #[model(validate(non_empty))]
    pub city: String,
    #[serde(rename = "postCode")]
    #[model(validate(pattern = "^[0-9]{5}$"))]
    pub zip: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(embedded)]
pub struct Line {
    #[model(validate(range(min = 1)))]
    pub qty: i32,
    #[model(nested)]
    pub origin: Option<Address>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[model(collection = "shipments")]
pub struct Shipment {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    #[model(validate(length(min = 1, max = 40)))]
    pub name: String,
    #[model(nested)]
    pub address: Address,
    #[model(nested)]
    pub billing: Option<Address>,
    #[model(nested)]
    pub lines: Vec<Line>,
}
// ANCHOR_END: shipment

fn address(city: &str, zip: &str) -> Address {
    Address {
        city: city.to_owned(),
        zip: zip.to_owned(),
    }
}

fn valid() -> Shipment {
    Shipment {
        id: None,
        name: "parts".to_owned(),
        address: address("Lyon", "69001"),
        billing: None,
        lines: vec![
            Line {
                qty: 1,
                origin: None,
            },
            Line {
                qty: 2,
                origin: Some(address("Oslo", "01500")),
            },
        ],
    }
}

/// The failing stored paths of a validation error, in order.
fn failing_paths<T: std::fmt::Debug>(result: mongrove::Result<T>) -> Vec<String> {
    match result {
        Err(Error::Validation { failures, .. }) => failures.into_iter().map(|f| f.field).collect(),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[tokio::test]
async fn rules_of_embedded_fields_run_on_insert_save_and_replace() {
    let db = common::db().await;
    let shipments = db.repo::<Shipment>();

    // ANCHOR: failures
    let mut shipment = valid();
    shipment.name.clear();
    shipment.address.zip = "6900".to_owned();
    shipment.billing = Some(address("", "75001"));
    shipment.lines[1].qty = 0;
    shipment.lines[1].origin = Some(address("", "x"));
    let error = shipments.insert(&mut shipment).await;
    assert_eq!(
        failing_paths(error),
        [
            "name",
            "address.postCode",
            "billing.city",
            "lines.1.qty",
            "lines.1.origin.city",
            "lines.1.origin.postCode",
        ]
    );
    // ANCHOR_END: failures
    assert_eq!(shipments.count(Filter::all()).await.unwrap(), 0);

    let mut shipment = valid();
    shipments.insert(&mut shipment).await.unwrap();
    shipment.lines[0].qty = -3;
    assert_eq!(
        failing_paths(shipments.save(&mut shipment).await),
        ["lines.0.qty"]
    );
    let id = shipment.id.unwrap();
    shipment.lines[0].qty = 3;
    shipment.billing = Some(address("Paris", "750"));
    assert_eq!(
        failing_paths(
            shipments
                .replace(Shipment::fields().id.eq(id), &mut shipment)
                .await
        ),
        ["billing.postCode"]
    );
    // Nothing invalid was written.
    let stored = shipments.find_by_id(id).await.unwrap().unwrap();
    assert_eq!((stored.lines[0].qty, stored.billing.is_none()), (1, true));

    shipment.billing = None;
    shipments.save(&mut shipment).await.unwrap();
}
