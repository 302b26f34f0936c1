use mongrove::Model;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Model)]
struct Point(f64, f64);

fn main() {}
