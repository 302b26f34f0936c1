use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
#[model(embedded)]
struct Address {
    city: String,
}

#[derive(Serialize, Deserialize, Model)]
struct Order {
    #[model(nested)]
    address: Address,
}

fn main() {
    let _ = Order::fields().address.eq(Address {
        city: "Lyon".to_owned(),
    });
}
