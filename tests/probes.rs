//! `GET /livez` and `GET /readyz`, the probes Kubernetes and etcd name so,
//! against a real cluster: every node live and ready; a node that has lost
//! its quorum is still live (restarting it would not help) but not ready
//! (it cannot serve a linearizable read), and ready again once the quorum
//! is back. And before its first round a node already reports what it
//! recovered.

mod common;

use std::time::{Duration, Instant};

use common::TestCluster;

const WAIT: Duration = Duration::from_secs(20);

/// Polls `path` on node `id` until it answers `status` or WAIT passes.
fn wait_for(cluster: &TestCluster, id: u16, path: &str, status: u16) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (got, body) = cluster.get(id, path);
        if got == status {
            return body;
        }
        assert!(Instant::now() < deadline, "{path} on node {id}: {got} {body}, not {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_node_without_its_quorum_is_live_but_not_ready() {
    let mut cluster = TestCluster::start(3, common::ports::base("probes"), &[]);
    cluster.wait_for_leader(WAIT);
    for id in 1..=3 {
        assert_eq!(cluster.get(id, "/livez").0, 200);
        let body = wait_for(&cluster, id, "/readyz", 200);
        assert_eq!(body["status"], "ok", "{body}");
    }
    cluster.kill(2);
    cluster.kill(3);
    let body = wait_for(&cluster, 1, "/readyz", 503);
    assert_eq!(body["status"], "unavailable", "{body}");
    assert!(body["error"].is_string(), "{body}");
    assert_eq!(cluster.get(1, "/livez").0, 200, "alone, but its loop runs");
    cluster.restart(2);
    wait_for(&cluster, 1, "/readyz", 200);
    wait_for(&cluster, 2, "/readyz", 200);
}

/// The front end listens before the event loop's first round (CI once read
/// `"role": ""` from a joining node there): from the moment a node is open
/// its status says what it recovered, a follower with no leader, and it is
/// not live until a round has run.
#[test]
fn before_its_first_round_a_node_reports_a_follower_not_yet_live() {
    use rdb::node::{InitialMembership, NodeConfig};
    let members = rdb::raft::Membership::voters_only(&[1, 2, 3]);
    for initial in [InitialMembership::Join, InitialMembership::Bootstrap(members)] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = NodeConfig::new(2, initial, dir.path().to_path_buf());
        let (handle, event_loop) = rdb::node::open(config).expect("open");
        let status = handle.status();
        assert_eq!((status.id, status.role, status.leader, status.term), (2, "follower", 0, 0));
        assert!(!status.live(Instant::now()), "not live before the first round");
        drop((handle, event_loop));
    }
}
