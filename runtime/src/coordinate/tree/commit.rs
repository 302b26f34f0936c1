//! The commits of a transaction tree: one [`Group`] (one transaction) per deployment, opened
//! when its first node runs; the groups commit one after the other, in the order they were
//! opened; when a commit fails after another group committed, the later groups are aborted and
//! the compensations of the committed nodes run ([`Error::PartiallyCommitted`]).

use tracing::Instrument;

use super::{TreeFailure, TxTree};
use crate::coordinate::step;
use crate::coordinate::store::Store;
use crate::db::Db;
use crate::error::report::{Failure, Report, Stage};
use crate::error::{Error, Result};
use crate::retry;
use crate::transaction::{Clock, Commit, Standalone, Tx, TxOptions, TxSession};

impl TxTree<'_> {
    /// Commits `groups` in order, once every action of the attempt succeeded. A failure before
    /// anything committed is classified like an action's; after, it is a partial commit.
    pub(super) async fn commit_all(
        &mut self,
        mut groups: Vec<Group>,
        store: Store,
    ) -> Result<Store, TreeFailure> {
        let policy = self.options.retry_policy().clone();
        let mut clock = Clock::start(&policy);
        let mut report = Report::default();
        let mut committed: Vec<usize> = Vec::new();
        let count = groups.len();
        for position in 0..count {
            let Some(group) = groups.get_mut(position) else {
                continue;
            };
            let first = group
                .nodes
                .first()
                .and_then(|&i| self.nodes.get(i))
                .map(|n| n.name.clone())
                .unwrap_or_default();
            let span = tracing::debug_span!("commit", node = first.as_str());
            let outcome = match group.session.as_mut() {
                Some(session) => session.commit(&policy, &mut clock).instrument(span).await,
                None => Commit::Done,
            };
            let (error, definite) = match outcome {
                Commit::Done => {
                    committed.extend(group.nodes.iter().copied());
                    continue;
                }
                Commit::Rerun(error) => (error, true),
                Commit::Failed(error) => {
                    let definite = !error.has_label(retry::UNKNOWN_TRANSACTION_COMMIT_RESULT);
                    (error, definite)
                }
            };
            let failed_nodes: Vec<usize> = group.nodes.clone();
            let mut rest = groups.split_off(position + 1);
            abort_all(&mut rest).await;
            if committed.is_empty() && definite {
                return Err(TreeFailure::classify(first, error, &self.options));
            }
            // Another deployment already committed: undo what can be undone, and say it all.
            tracing::error!(node = first.as_str(), %error, "commit failed after other commits");
            report.committed = self.names_of(&committed);
            if definite {
                report.aborted = self.names_of(&failed_nodes);
            } else {
                report.uncertain = self.names_of(&failed_nodes);
            }
            let later: Vec<usize> = rest.iter().flat_map(|g| g.nodes.iter().copied()).collect();
            report.aborted.extend(self.names_of(&later));
            report.failures.push(Failure {
                node: first,
                stage: Stage::Commit,
                error,
            });
            step::compensate(
                &mut self.nodes,
                committed.iter().copied(),
                &store,
                &self.options,
                &mut report,
            )
            .await;
            return Err(TreeFailure::Final(Error::PartiallyCommitted(Box::new(
                report,
            ))));
        }
        Ok(store)
    }

    fn names_of(&self, indices: &[usize]) -> Vec<String> {
        indices
            .iter()
            .filter_map(|&i| self.nodes.get(i))
            .map(|n| n.name.clone())
            .collect()
    }
}

/// The transaction of the tree's nodes on one deployment.
pub(super) struct Group {
    pub(super) db: Db,
    /// `None` on a standalone server with [`Standalone::RunWithoutTransaction`].
    pub(super) session: Option<TxSession>,
    pub(super) nodes: Vec<usize>,
}

impl Group {
    pub(super) async fn open(
        db: &Db,
        options: &TxOptions,
        driver_options: &mongodb::options::TransactionOptions,
        attempt: u32,
    ) -> Result<Group> {
        let session = if db.supports_transactions().await? {
            let mut session = TxSession::new(db).await?;
            session.start(attempt, driver_options).await?;
            Some(session)
        } else if options.standalone_mode() == Standalone::RunWithoutTransaction {
            tracing::warn!(
                db = db.name(),
                "the deployment does not support transactions: this tree node runs without one"
            );
            None
        } else {
            return Err(Error::TransactionsUnsupported);
        };
        Ok(Group {
            db: db.clone(),
            session,
            nodes: Vec::new(),
        })
    }

    pub(super) fn tx(&self, attempt: u32) -> Tx {
        match &self.session {
            Some(session) => session.tx(attempt),
            None => Tx::new(self.db.clone(), None),
        }
    }
}

pub(super) async fn abort_all(groups: &mut [Group]) {
    for group in groups {
        if let Some(session) = group.session.as_mut() {
            session.abort().await;
        }
    }
}
