//! Integration tests against a real `mongod` (see `mongrove::testkit`), one module per topic,
//! built into one binary so the driver is linked once.

mod app_testing;
mod arrays;
mod batching;
mod chunks;
mod common;
mod consumers;
mod coordinate;
mod embedded_validation;
mod failover;
mod hooks;
mod hostile_values;
mod indexes;
mod integrity;
mod live_orders;
mod locking;
mod manual_tx;
mod mongoose;
mod observability;
mod quickstart;
mod reexport;
mod relations;
mod repo;
mod retry_ops;
mod service;
mod testkit;
mod transactions;
mod tx_guarantees;
mod typed_paths;
mod versioning;
mod watch;
mod watch_runner;
