//! The safety properties the simulator checks after every step, against
//! what it has seen across the whole run (Raft paper Figure 3).

use super::violation::Violation;
use std::collections::BTreeMap;

use super::super::message::{Entry, Index, NodeId, Term};

/// A hash of an entry's payload.
pub fn data_hash(entry: &Entry) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for &byte in &entry.data {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash ^ entry.term.rotate_left(17) ^ u64::from(entry.kind == super::super::EntryKind::Noop)
}

/// What the run has established so far.
#[derive(Debug, Default)]
pub struct Checker {
    /// Election Safety: the leader of each term.
    leaders: BTreeMap<Term, NodeId>,
    /// Log Matching: each `(index, term)` ever persisted, with its payload
    /// hash and the term of the entry before it.
    entries: BTreeMap<(Index, Term), (u64, Term)>,
    /// Committed entries: at each index, the entry's term and the earliest
    /// term in which a node knew it committed.
    committed: BTreeMap<Index, (Term, Term)>,
    /// State Machine Safety: what was applied at each index.
    applied: BTreeMap<Index, (Term, u64)>,
    /// The highest commit index any node has reached.
    pub commit_max: Index,
}

impl Checker {
    /// `id` is leader of `term`; true the first time this is seen.
    pub fn leader(&mut self, term: Term, id: NodeId) -> Result<bool, Violation> {
        match self.leaders.insert(term, id) {
            Some(other) if other != id => {
                Err(format!("election safety: nodes {other} and {id} both led term {term}").into())
            }
            Some(_) => Ok(false),
            None => Ok(true),
        }
    }

    /// A node persisted `entry` after an entry of `prev_term`.
    pub fn persisted(
        &mut self,
        id: NodeId,
        entry: &Entry,
        prev_term: Term,
    ) -> Result<(), Violation> {
        let seen = (data_hash(entry), prev_term);
        match self.entries.insert((entry.index, entry.term), seen) {
            Some(other) if other != seen => Err(format!(
                "log matching: node {id} holds entry {} of term {} unlike another node's \
                 (payload/previous term {:?} vs {:?})",
                entry.index, entry.term, seen, other
            )
            .into()),
            _ => Ok(()),
        }
    }

    /// A node in `now` committed `index`, holding `term` there.
    pub fn committed(
        &mut self,
        id: NodeId,
        index: Index,
        term: Term,
        now: Term,
    ) -> Result<(), Violation> {
        self.commit_max = self.commit_max.max(index);
        let seen = self.committed.entry(index).or_insert((term, now));
        if seen.0 != term {
            return Err(format!(
                "node {id} committed term {term} at {index} where term {} was committed",
                seen.0
            )
            .into());
        }
        seen.1 = seen.1.min(now);
        Ok(())
    }

    /// Leader Completeness (§5.4): the leader of `leader_term` holds every
    /// entry committed in an earlier term. `term_at` answers its term at an
    /// index, or None when its snapshot covers the index.
    pub fn leader_complete(
        &self,
        id: NodeId,
        leader_term: Term,
        last_index: Index,
        term_at: impl Fn(Index) -> Option<Term>,
    ) -> Result<(), Violation> {
        for (&index, &(term, committed_in)) in &self.committed {
            if committed_in >= leader_term {
                continue;
            }
            if index > last_index {
                return Err(format!(
                    "leader completeness: leader {id} ends at {last_index}, {index} was committed"
                )
                .into());
            }
            if let Some(held) = term_at(index) {
                if held != term {
                    return Err(format!(
                        "leader completeness: leader {id} has term {held} at committed {index} \
                         (term {term})"
                    )
                    .into());
                }
            }
        }
        Ok(())
    }

    /// A node applied `entry`.
    pub fn applied(&mut self, id: NodeId, entry: &Entry) -> Result<(), Violation> {
        let seen = (entry.term, data_hash(entry));
        match self.applied.insert(entry.index, seen) {
            Some(other) if other != seen => Err(format!(
                "state machine safety: node {id} applied {seen:?} at {} where {other:?} was applied",
                entry.index
            ).into()),
            _ => Ok(()),
        }
    }
}
