use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(embedded)]
struct Part {
    name: String,
}

#[derive(Serialize, Deserialize, Model)]
#[model(embedded)]
struct Place {
    city: String,
}

#[derive(Serialize, Deserialize, Model)]
#[model(embedded)]
struct Parcel {
    #[model(nested)]
    parts: Vec<Part>,
    #[model(nested)]
    origin: Option<Place>,
}

#[derive(Serialize, Deserialize, Model)]
#[model(collection = "deliveries")]
struct Delivery {
    #[serde(rename = "_id")]
    id: i32,
    #[model(nested)]
    parcels: Vec<Parcel>,
}

fn main() {
    let f = Delivery::fields();
    // The whole value of a struct inside the elements: which element's?
    let _ = f.parcels.origin.field().set(None);
    // An array inside the elements: which outer element's?
    let _ = f.parcels.parts.matched();
}
