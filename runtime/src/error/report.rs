//! What an operation that wrote in part reports: a batch (`insert_many`, `bulk_write`), a
//! transaction tree, a saga. Plain data, so that [`Error`] can carry it.

use std::fmt;

use mongodb::bson::Bson;

use super::Error;

/// What [`Error::PartialWrite`] reports.
#[derive(Debug)]
#[non_exhaustive]
pub struct PartialWrite {
    /// The collection written to.
    pub collection: String,
    /// The operation: `insert_many` or `bulk_write`.
    pub operation: &'static str,
    /// How many positions the batch had.
    pub total: usize,
    /// The positions that were written, in order.
    pub written: Vec<usize>,
    /// The positions that failed, each with its cause (`DuplicateKey`, `VersionConflict`,
    /// `WriteFailed`, `NotFound`, ...).
    pub failed: Vec<FailedWrite>,
    /// The positions never sent, because an ordered batch stops at its first failure.
    pub not_attempted: Vec<usize>,
    /// The positions in flight when the batch was cut off by an error about no one write (a
    /// lost connection): the server may or may not have applied them. The error is the
    /// `failed` entry at the first of them. Read these back before sending them again.
    pub uncertain: Vec<usize>,
    /// What the written positions did: counts, and the ids of inserted documents.
    pub outcome: BulkOutcome,
}

/// One failed position of a [`PartialWrite`].
#[derive(Debug)]
pub struct FailedWrite {
    /// The position in the batch.
    pub index: usize,
    /// Why it failed.
    pub error: Error,
}

/// What a bulk write did, summed over the batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BulkOutcome {
    /// Documents inserted.
    pub inserted: u64,
    /// Documents matched by updates and replacements.
    pub matched: u64,
    /// Documents changed by updates and replacements.
    pub modified: u64,
    /// Documents deleted.
    pub deleted: u64,
    /// `(position in the batch, _id)` of every inserted or upserted document.
    pub ids: Vec<(usize, Bson)>,
}

impl fmt::Display for PartialWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` on `{}` wrote {} of {} positions",
            self.operation,
            self.collection,
            self.written.len(),
            self.total
        )?;
        if !self.written.is_empty() {
            write!(f, " ({})", show_positions(&self.written))?;
        }
        for failure in &self.failed {
            write!(f, "; position {} failed: {}", failure.index, failure.error)?;
        }
        if !self.uncertain.is_empty() {
            write!(
                f,
                "; outcome unknown (they may have been written): {}",
                show_positions(&self.uncertain)
            )?;
        }
        if !self.not_attempted.is_empty() {
            write!(
                f,
                "; not attempted: {}",
                show_positions(&self.not_attempted)
            )?;
        }
        Ok(())
    }
}

/// `0, 1, 2, 5` with long runs shortened to `0..=999`.
fn show_positions(positions: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < positions.len() {
        let start = positions[i];
        let mut end = start;
        while i + 1 < positions.len() && positions[i + 1] == end + 1 {
            end += 1;
            i += 1;
        }
        parts.push(if end > start + 1 {
            format!("{start}..={end}")
        } else if end == start + 1 {
            format!("{start}, {end}")
        } else {
            start.to_string()
        });
        i += 1;
    }
    parts.join(", ")
}

/// Where a failure happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stage {
    /// The node's action (or saga step) failed.
    Action,
    /// The node's commit failed.
    Commit,
    /// The node's compensation failed: what it committed stays.
    Compensation,
}

/// One failure in a [`Report`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Failure {
    /// The node or step.
    pub node: String,
    /// What it was doing.
    pub stage: Stage,
    /// The error.
    pub error: Error,
}

/// What a transaction tree or a saga did before it failed, in [`Error::PartiallyCommitted`](super::Error::PartiallyCommitted) and
/// [`Error::SagaFailed`](super::Error::SagaFailed).
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Report {
    /// Nodes (or steps) whose writes were committed, in commit order.
    pub committed: Vec<String>,
    /// Committed nodes whose compensation ran successfully, in the order it ran.
    pub compensated: Vec<String>,
    /// Nodes whose transaction was aborted: nothing of theirs was written.
    pub aborted: Vec<String>,
    /// Nodes whose commit outcome is unknown (the commit may or may not have happened).
    pub uncertain: Vec<String>,
    /// What failed: the action or commit that started it all, then any compensation that failed.
    pub failures: Vec<Failure>,
}

impl Report {
    /// Committed nodes that were not compensated: their writes stay, and need attention.
    pub fn not_compensated(&self) -> Vec<&str> {
        self.committed
            .iter()
            .filter(|name| !self.compensated.contains(name))
            .map(String::as_str)
            .collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "committed {:?}, compensated {:?}, aborted {:?}",
            self.committed, self.compensated, self.aborted
        )?;
        if !self.uncertain.is_empty() {
            write!(f, ", commit outcome unknown {:?}", self.uncertain)?;
        }
        for failure in &self.failures {
            let stage = match failure.stage {
                Stage::Action => "action",
                Stage::Commit => "commit",
                Stage::Compensation => "compensation",
            };
            write!(f, "; {} {stage} failed: {}", failure.node, failure.error)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_shown_in_runs() {
        assert_eq!(show_positions(&[0, 1, 2, 3, 5, 7, 8]), "0..=3, 5, 7, 8");
        assert_eq!(show_positions(&[]), "");
    }
}
