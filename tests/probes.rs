//! `GET /livez` and `GET /readyz`, the probes Kubernetes and etcd name so,
//! against a real cluster: every node live and ready; a node that has lost
//! its quorum is still live (restarting it would not help) but not ready
//! (it cannot serve a linearizable read), and ready again once the quorum
//! is back.

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
