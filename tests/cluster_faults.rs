//! A real cluster under failures: the leader SIGKILLed, a minority and a
//! majority of a 5-node cluster down, and many concurrent clients. Each test
//! reads as phases of a story; each uses its own ports.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{get, put, TestCluster};
use serde_json::json;

/// The bound for a new leader to serve writes after the old one died.
const FAILOVER_DEADLINE: Duration = Duration::from_secs(3);

#[test]
fn a_killed_leader_is_replaced_quickly_and_loses_nothing() {
    // Phase 1: a healthy cluster takes writes.
    let mut cluster = TestCluster::start(
        3,
        common::ports::base("cluster_faults::a_killed_leader_is_replaced"),
        &[],
    );
    let old_leader = cluster.wait_for_leader(Duration::from_secs(15));
    let mut acked = BTreeMap::new();
    for i in 0..50 {
        let key = format!("before-{i:03}");
        let (status, body) = cluster.command(old_leader, &put("fail", &key, "v"));
        assert_eq!(status, 200, "{body}");
        acked.insert(key, "v".to_string());
    }

    // Phase 2: SIGKILL the leader; a survivor serves a write within the bound.
    cluster.kill(old_leader);
    let killed_at = Instant::now();
    let survivors: Vec<u16> = cluster.running();
    let mut attempt = 0;
    let served_by = loop {
        let node = survivors[attempt % survivors.len()];
        attempt += 1;
        let (status, _) = cluster.command(node, &put("fail", "after-000", "w"));
        if status == 200 {
            break node;
        }
        assert!(
            killed_at.elapsed() < FAILOVER_DEADLINE,
            "no write served within {FAILOVER_DEADLINE:?} of the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        killed_at.elapsed() < FAILOVER_DEADLINE,
        "the first write took {:?}",
        killed_at.elapsed()
    );
    acked.insert("after-000".into(), "w".into());
    for i in 1..50 {
        let key = format!("after-{i:03}");
        assert_eq!(cluster.command(served_by, &put("fail", &key, "w")).0, 200);
        acked.insert(key, "w".into());
    }

    // Phase 3: every acknowledged write is readable (linearizably).
    for (key, value) in &acked {
        let (status, body) = cluster.command(survivors[0], &get("fail", key));
        assert_eq!((status, body["value"].as_str()), (200, Some(value.as_str())), "{key}");
    }

    // Phase 4: the killed node restarts and catches up to identical contents.
    cluster.restart(old_leader);
    cluster.wait_for_leader(Duration::from_secs(15));
    cluster.wait_for_convergence(Duration::from_secs(15));
    let expected: Vec<(String, String)> = acked.into_iter().collect();
    for id in 1..=3 {
        assert_eq!(cluster.contents(id, "fail"), expected, "node {id}");
    }
}

#[test]
fn a_whole_cluster_killed_at_once_recovers_every_acknowledged_write() {
    // Phase 1: writes of every kind are acknowledged, including large values.
    let mut cluster =
        TestCluster::start(3, common::ports::base("cluster_faults::a_whole_cluster_killed"), &[]);
    let leader = cluster.wait_for_leader(Duration::from_secs(15));
    let big = "b".repeat(rdb::kv::VALUE_BYTES_MAX);
    let (status, body) = cluster.command(leader, &put("whole", "big", &big));
    assert_eq!(status, 200, "{body}");
    let mut expected = vec![("big".to_string(), big)];
    for i in 0..200 {
        let key = format!("k{i:04}");
        assert_eq!(cluster.command(leader, &put("whole", &key, "v")).0, 200);
        expected.push((key, "v".to_string()));
    }
    let by_value = json!({"action": "put", "payload": {"collection": "set", "value": "member"}});
    let (status, body) = cluster.command(leader, &by_value);
    assert_eq!(status, 200);
    let key = body["key"].clone();

    // Phase 2: every process is killed at once, mid-flight state and all.
    for id in 1..=3 {
        cluster.kill(id);
    }

    // Phase 3: restarted, each node recovers the state file's applied index
    // and replays its WAL; the cluster holds exactly what was acknowledged.
    for id in 1..=3 {
        cluster.restart(id);
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(15));
    assert_eq!(cluster.command(leader, &by_value).1["key"], key, "the same key after restart");
    cluster.wait_for_convergence(Duration::from_secs(15));
    expected.sort();
    for id in 1..=3 {
        assert_eq!(cluster.contents(id, "whole"), expected, "node {id}");
    }
}

#[test]
fn five_nodes_serve_with_two_down_and_refuse_with_three_down() {
    let mut cluster = TestCluster::start(
        5,
        common::ports::base("cluster_faults::five_nodes"),
        &["--request-timeout-ms", "2000"],
    );
    let leader = cluster.wait_for_leader(Duration::from_secs(15));

    // Two followers down: writes and linearizable reads still succeed.
    let mut down: Vec<u16> = (1..=5).filter(|&id| id != leader).take(2).collect();
    for &id in &down {
        cluster.kill(id);
    }
    let up: Vec<u16> = cluster.running();
    for (i, &node) in up.iter().enumerate() {
        let key = format!("two-down-{i}");
        assert_eq!(cluster.command(node, &put("five", &key, "ok")).0, 200, "via node {node}");
        assert_eq!(cluster.command(node, &get("five", &key)).1["value"], "ok");
    }

    // A third node down, the leader kept: a write it accepts cannot commit,
    // and its outcome is unknown when the timeout expires (504).
    let third = up.iter().copied().find(|&id| id != leader).expect("a follower");
    cluster.kill(third);
    down.push(third);
    let (status, body) = cluster.command(leader, &put("five", "maybe", "x"));
    assert_eq!(status, 504, "{body}");

    // Once the leader has stepped down (check-quorum), writes are refused
    // with 503 and Retry-After, and nothing is applied.
    let stepped_down = Instant::now();
    while cluster.get(leader, "/health").0 != 503 {
        assert!(
            stepped_down.elapsed() < Duration::from_secs(10),
            "the minority leader never stepped down"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for node in cluster.running() {
        let (status, body) = cluster.command(node, &put("five", "refused", "x"));
        assert_eq!(status, 503, "via node {node}: {body}");
    }

    // The majority returns: the refused write is absent, the others present.
    for id in down {
        cluster.restart(id);
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(15));
    assert_eq!(cluster.command(leader, &get("five", "refused")).0, 404);
    assert_eq!(cluster.command(leader, &get("five", "two-down-0")).1["value"], "ok");
}

#[test]
fn concurrent_clients_leave_identical_replicas_holding_every_acknowledged_write() {
    const CLIENTS: u64 = 16;
    const OPS_PER_CLIENT: u64 = 500;
    const KEYS_PER_CLIENT: u64 = 20;
    let cluster =
        TestCluster::start(3, common::ports::base("cluster_faults::concurrent_clients"), &[]);
    cluster.wait_for_leader(Duration::from_secs(15));

    // Each client owns its keys, so its own model says what each must hold.
    let models: Vec<BTreeMap<String, Option<String>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let cluster = &cluster;
                scope.spawn(move || run_client(cluster, client, OPS_PER_CLIENT, KEYS_PER_CLIENT))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("client thread")).collect()
    });

    cluster.wait_for_convergence(Duration::from_secs(20));
    let mut expected: Vec<(String, String)> = models
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| value.map(|value| (key, value)))
        .collect();
    expected.sort();
    let first = cluster.contents(1, "load");
    assert_eq!(first, expected, "node 1 against the clients' acknowledged writes");
    for id in 2..=3 {
        assert_eq!(cluster.contents(id, "load"), first, "node {id} differs from node 1");
    }
}

/// One client's seeded mix of puts, gets, deletes and cas through random
/// nodes; returns what each of its keys must hold (None: absent).
fn run_client(
    cluster: &TestCluster,
    client: u64,
    ops: u64,
    keys: u64,
) -> BTreeMap<String, Option<String>> {
    let mut rng = fastrand::Rng::with_seed(0x5eed ^ client);
    let mut model: BTreeMap<String, Option<String>> = BTreeMap::new();
    for op in 0..ops {
        let node = u16::try_from(rng.u64(1..=3)).expect("small");
        let key = format!("c{client:02}-k{:02}", rng.u64(0..keys));
        let value = format!("c{client}-op{op}");
        let current = model.get(&key).cloned().flatten();
        let (request, on_success) = match rng.u8(0..10) {
            0..=4 => (put("load", &key, &value), Some(Some(value.clone()))),
            5..=6 => (get("load", &key), None),
            7 => (
                json!({"action": "delete", "payload": {"collection": "load", "key": key}}),
                Some(None),
            ),
            _ => (
                json!({"action": "cas", "payload": {"collection": "load", "key": key, "expected": current, "value": value}}),
                Some(Some(value.clone())),
            ),
        };
        let (status, body) = cluster.command(node, &request);
        match (status, on_success) {
            (200, Some(new)) => {
                model.insert(key, new);
            }
            (200, None) => assert_eq!(body["value"].as_str(), current.as_deref(), "read of {key}"),
            (404, None) => assert_eq!(current, None, "{key} missing: {body}"),
            (404, Some(None)) => assert_eq!(current, None, "delete of {key}: {body}"),
            other => panic!("client {client} op {op} on node {node}: {other:?} {body}"),
        }
    }
    model
}

/// A follower whose data directory was wiped, started again under its id,
/// is told by the leader's next heartbeat that it holds entries its log
/// does not: it raises the CORRUPT alarm, and /health answers 503 saying to
/// replace the member, rather than 200 while the leader (which counts those
/// entries as held) never sends them again.
#[test]
fn a_follower_started_empty_under_its_id_raises_corrupt_and_is_not_healthy() {
    let mut cluster =
        TestCluster::start(3, common::ports::base("cluster_faults::wiped_follower"), &[]);
    let leader = cluster.wait_for_leader(Duration::from_secs(15));
    for i in 0..20 {
        assert_eq!(cluster.command(leader, &put("wipe", &format!("k{i}"), "v")).0, 200);
    }
    cluster.wait_for_convergence(Duration::from_secs(15));
    let victim = (1..=3).find(|id| *id != leader).expect("a follower");
    cluster.kill(victim);
    std::fs::remove_dir_all(&cluster.nodes[usize::from(victim) - 1].data_dir).expect("wiped");
    cluster.restart(victim);
    let deadline = Instant::now() + Duration::from_secs(15);
    let corrupt = json!(["CORRUPT"]);
    while cluster.status(victim).is_none_or(|s| s["alarms"] != corrupt) {
        assert!(Instant::now() < deadline, "no alarm: {:?}", cluster.status(victim));
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, health) = cluster.get(victim, "/health");
    assert_eq!(status, 503, "{health}");
    assert!(health["error"].as_str().is_some_and(|e| e.contains("CORRUPT")), "{health}");
    let (_, metrics) = cluster.get(victim, "/metrics");
    assert!(metrics.as_str().is_some_and(|m| m.contains("rdb_alarm{alarm=\"CORRUPT\"} 1")));
    // The others are whole and serve on.
    for id in (1..=3).filter(|id| *id != victim) {
        assert_eq!(cluster.get(id, "/health").0, 200, "node {id}");
    }
    assert_eq!(cluster.command(leader, &put("wipe", "after", "v")).0, 200);
}
