//! When leases expire: the leader's business, in memory (etcd's lessor).
//!
//! The replicated state says which leases exist and their TTLs (kv::lease);
//! the leader keeps a deadline for each, renewed by keepalives, and
//! proposes a revoke for a lease whose deadline passed, so that every
//! replica deletes its keys at the same index. A node that becomes leader
//! gives every lease a full TTL again (it cannot know how long its
//! predecessor's keepalives had left), so a client never loses a lease
//! because the cluster failed over; a client that stops renewing loses it
//! within a TTL plus an election.
//!
//! Caveats: keepalives and the list go to the leader (a follower forwards
//! them); a lease is revoked at most one check interval late.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt as _;

use serde_json::json;

use super::handle::{NodeHandle, Target};
use crate::kv::lease::{keys_of, lease_text, list};
use crate::kv::{Command, Reply};

/// How often the leader looks for expired leases.
pub const LEASE_CHECK_INTERVAL: Duration = Duration::from_millis(100);

impl NodeHandle {
    /// The leases in the state: (id, TTL in ms).
    fn leases_in_state(&self) -> Vec<(u64, u64)> {
        list(&self.state().begin_read()).unwrap_or_default()
    }

    /// Renews lease `id` to its full TTL, on the leader (forwarded there);
    /// 404 once it expired or was revoked.
    pub(super) async fn lease_keepalive(
        &self,
        id: u64,
        body: &[u8],
        forwarded: bool,
        deadline: Instant,
    ) -> Reply {
        if let Some(reply) = self.forward_unless_leader(body, forwarded, deadline).await {
            return reply;
        }
        // A grant this node answered must be found, committed or not yet.
        let leases = match self.answered_state(deadline).await {
            Ok(txn) => list(&txn).unwrap_or_default(),
            Err(reply) => return reply,
        };
        let Some(&(_, ttl_ms)) = leases.iter().find(|(lease, _)| *lease == id) else {
            return Reply::not_found("", "lease");
        };
        let mut clock = self.lease_clock().lock();
        // Its expiry is decided (the revoke is being proposed): too late.
        if clock.revoking.contains(&id) {
            return Reply::not_found("", "lease");
        }
        clock.at.insert(id, Instant::now() + Duration::from_millis(ttl_ms));
        Reply { status: 200, body: json!({"lease": lease_text(id), "ttl_ms": ttl_ms}) }
    }

    /// Every lease with its TTL, remaining time and keys, on the leader.
    pub(super) async fn leases_list(
        &self,
        body: &[u8],
        forwarded: bool,
        deadline: Instant,
    ) -> Reply {
        if let Some(reply) = self.forward_unless_leader(body, forwarded, deadline).await {
            return reply;
        }
        let txn = match self.answered_state(deadline).await {
            Ok(txn) => txn,
            Err(reply) => return reply,
        };
        let now = Instant::now();
        let clock = self.lease_clock().lock();
        let leases: Vec<serde_json::Value> = list(&txn)
            .unwrap_or_default()
            .into_iter()
            .map(|(id, ttl_ms)| {
                let remaining = clock.at.get(&id).map_or(ttl_ms, |at| {
                    u64::try_from(at.saturating_duration_since(now).as_millis()).unwrap_or(0)
                });
                let keys: Vec<serde_json::Value> = keys_of(&txn, id, 100)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(collection, key)| json!({"collection": collection, "key": key}))
                    .collect();
                json!({"lease": lease_text(id), "ttl_ms": ttl_ms, "remaining_ms": remaining,
                       "keys": keys})
            })
            .collect();
        Reply { status: 200, body: json!({"leases": leases}) }
    }

    /// None on the leader; else the leader's answer to `body` (or why
    /// there is none).
    async fn forward_unless_leader(
        &self,
        body: &[u8],
        forwarded: bool,
        deadline: Instant,
    ) -> Option<Reply> {
        let status = self.status();
        if status.role == "leader" {
            return None;
        }
        if forwarded || status.leader == 0 {
            return Some(Reply::unavailable("no leader to keep leases; retry"));
        }
        Some(self.forward(status.leader, Target::Command, body, deadline).await)
    }
}

/// Runs until the process ends: while this node leads, keeps a deadline for
/// every lease and proposes the revoke of each that passes it.
pub async fn expire_leases(node: NodeHandle) {
    loop {
        async_std::task::sleep(LEASE_CHECK_INTERVAL).await;
        let status = node.status();
        if status.role != "leader" {
            let mut clock = node.lease_clock().lock();
            clock.at.clear();
            clock.term = 0;
            continue;
        }
        let leases = node.leases_in_state();
        let expired = {
            let now = Instant::now();
            let mut clock = node.lease_clock().lock();
            if clock.term != status.term {
                // A new leader: every lease gets a full TTL again.
                clock.at.clear();
                clock.term = status.term;
            }
            let live: HashSet<u64> = leases.iter().map(|(id, _)| *id).collect();
            clock.at.retain(|id, _| live.contains(id));
            clock.revoking.retain(|id| live.contains(id));
            for (id, ttl_ms) in &leases {
                clock.at.entry(*id).or_insert(now + Duration::from_millis(*ttl_ms));
            }
            let expired: Vec<u64> = clock
                .at
                .iter()
                .filter(|(id, at)| **at <= now && !clock.revoking.contains(id))
                .map(|(id, _)| *id)
                .collect();
            clock.revoking.extend(expired.iter().copied());
            expired
        };
        // Proposed together (Raft batches them), so that many leases
        // expiring at once do not delay each other by a commit each.
        let revoke = |id: u64| {
            let node = node.clone();
            async move {
                let reply = node.propose_internal(&Command::LeaseRevoke { id }).await;
                if reply.status != 200 {
                    node.lease_clock().lock().revoking.remove(&id);
                }
            }
        };
        futures::stream::iter(expired)
            .map(revoke)
            .buffer_unordered(REVOKES_IN_FLIGHT_MAX)
            .for_each(|()| std::future::ready(()))
            .await;
    }
}

/// Revokes of expired leases the leader has proposed and not yet seen
/// applied, at most.
const REVOKES_IN_FLIGHT_MAX: usize = 256;
