//! Raising the cluster version (etcd's cluster version, for the same
//! reason): a command whose meaning a member's binary does not know would be
//! skipped by that member and applied by the others, and the replicas would
//! differ. So what needs version N (item revisions, cas on a revision,
//! range deletes: 2) is used only once the state records N, and the leader
//! records it, with a log entry, only once every member reports a binary
//! that supports it. Every state starts at version 1, so that a node that
//! replays the log from the start applies each entry as the others did.
//!
//! Caveats: a member that cannot be reached holds the upgrade back (as it
//! should: it might run an old binary); a member added later with an older
//! binary than the cluster's version cannot apply what it receives. The
//! version is never lowered (no downgrades).

use std::time::Duration;

use serde_json::Value;

use super::handle::NodeHandle;
use crate::kv::{Command, CLUSTER_VERSION};

/// How often a leader checks whether it can raise the version.
pub const UPGRADE_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// The variable with which a test makes a node report an older binary's
/// highest cluster version (to rehearse a rolling upgrade); never set in
/// production.
pub const CLUSTER_VERSION_MAX_VAR: &str = "RDB_TEST_CLUSTER_VERSION_MAX";

/// The highest cluster version this node supports: this binary's, or less
/// when [`CLUSTER_VERSION_MAX_VAR`] says so.
pub fn cluster_version_max() -> u64 {
    static MAX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| {
        let pretend = std::env::var(CLUSTER_VERSION_MAX_VAR).ok().and_then(|v| v.parse().ok());
        pretend.map_or(CLUSTER_VERSION, |max: u64| max.clamp(1, CLUSTER_VERSION))
    })
}

/// Runs on every node until the cluster's version is this binary's: while
/// this node leads, asks every member for its status and, once each
/// supports the version, proposes it.
pub async fn raise_cluster_version(node: NodeHandle) {
    let target = cluster_version_max();
    loop {
        let status = node.status();
        if status.cluster_version >= target {
            return;
        }
        if status.role == "leader" {
            match members_ready(&node.cluster_status().await, target) {
                Ok(()) => {
                    let command = Command::SetClusterVersion { version: target };
                    let reply = node.propose_internal(&command).await;
                    if reply.status == 200 {
                        log::info!("cluster version raised to {target}");
                    }
                }
                Err(why) => log::debug!("cluster version stays below {target}: {why}"),
            }
        }
        async_std::task::sleep(UPGRADE_CHECK_INTERVAL).await;
    }
}

/// Ok when every member of `cluster` (a `/cluster` answer) was reached and
/// supports `version`; else which one holds it back.
pub fn members_ready(cluster: &Value, version: u64) -> Result<(), String> {
    let members = cluster["members"].as_array().ok_or("no members")?;
    if members.is_empty() {
        return Err("no members".into());
    }
    for member in members {
        let id = &member["id"];
        if member["reachable"] != true {
            return Err(format!("member {id} cannot be reached"));
        }
        let supported = member["status"]["cluster_version_max"].as_u64().unwrap_or(1);
        if supported < version {
            return Err(format!("member {id} supports cluster version {supported} only"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_member_must_be_reached_and_support_the_version() {
        let member = |id: u64, max: Option<u64>| match max {
            Some(max) => {
                json!({"id": id, "reachable": true, "status": {"cluster_version_max": max}})
            }
            None => json!({"id": id, "reachable": true, "status": {"version": "0.1.0"}}),
        };
        let ready = json!({"members": [member(1, Some(2)), member(2, Some(3))]});
        assert_eq!(members_ready(&ready, 2), Ok(()));
        let old = json!({"members": [member(1, Some(2)), member(2, None)]});
        assert_eq!(members_ready(&old, 2).unwrap_err(), "member 2 supports cluster version 1 only");
        let away = json!({"members": [member(1, Some(2)),
                                      {"id": 3, "reachable": false, "status": null}]});
        assert!(members_ready(&away, 2).unwrap_err().contains("member 3 cannot be reached"));
        assert!(members_ready(&json!({"members": []}), 2).is_err());
    }
}
