//! Integration tests against a real `mongod` (see `mongrove::testkit`), one module per topic,
//! built into one binary so the driver is linked once.

mod common;
mod hooks;
mod indexes;
mod quickstart;
mod repo;
mod versioning;
