//! One operation per file, each a builder that runs when awaited.

pub(crate) mod bulk;
pub(crate) mod delete;
pub(crate) mod insert;
pub(crate) mod replace;
pub(crate) mod update;
