//! Every action of API.md against a real 3-node cluster, with each success
//! and error status, through the leader and through followers.

mod common;

use std::time::Duration;

use common::{get, put, TestCluster};
use serde_json::{json, Value};

fn port_base() -> u16 {
    common::ports::base("cluster_api")
}

fn is_key(value: &Value) -> bool {
    value.as_str().is_some_and(|k| {
        k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

#[test]
fn every_action_answers_as_the_api_says() {
    let cluster = TestCluster::start(3, port_base(), &[]);
    let leader = cluster.wait_for_leader(Duration::from_secs(15));
    let followers: Vec<u16> = (1..=3).filter(|&id| id != leader).collect();

    value_addressed_actions(&cluster, leader, &followers);
    key_addressed_actions(&cluster, followers[0]);
    cas_actions(&cluster, followers[1]);
    range_actions(&cluster, leader);
    collections_actions(&cluster, followers[0]);
    error_statuses(&cluster, followers[1]);
    other_endpoints(&cluster, leader);
}

/// The apply thread answers a write as soon as it has applied it, before
/// the state-file transaction holding it commits (src/node/applier.rs). A
/// client's next request to the same node must still see the write: a
/// serializable read returns it, and a lease just granted is found by its
/// keepalive and listed.
#[test]
fn a_client_reads_its_own_writes_at_once() {
    let cluster =
        TestCluster::start(3, common::ports::base("cluster_api::reads_its_own_writes"), &[]);
    let leader = cluster.wait_for_leader(Duration::from_secs(15));
    for i in 0..200 {
        let (key, value) = (format!("k{i}"), format!("v{i}"));
        let (status, body) = cluster.command(leader, &put("own", &key, &value));
        assert_eq!(status, 200, "{body}");
        let read = json!({"action": "get", "payload": {"collection": "own", "key": key,
                          "consistency": "serializable"}});
        let (status, found) = cluster.command(leader, &read);
        assert_eq!((status, found["value"].as_str()), (200, Some(value.as_str())), "{found}");
        if i % 20 == 0 {
            let grant = json!({"action": "lease grant", "payload": {"ttl_ms": 60_000}});
            let (status, granted) = cluster.command(leader, &grant);
            assert_eq!(status, 200, "{granted}");
            let lease = granted["lease"].clone();
            let keepalive = json!({"action": "lease keepalive", "payload": {"lease": lease}});
            let (status, kept) = cluster.command(leader, &keepalive);
            assert_eq!(status, 200, "lease {lease} granted, then: {kept}");
            let (status, listed) = cluster.command(leader, &json!({"action": "leases"}));
            assert_eq!(status, 200, "{listed}");
            let leases = listed["leases"].as_array().expect("a list of leases");
            assert!(leases.iter().any(|l| l["lease"] == lease), "{lease} not in {listed}");
        }
    }
}

fn value_addressed_actions(cluster: &TestCluster, leader: u16, followers: &[u16]) {
    // A put through a follower is forwarded; the leader picks the key.
    let alice = json!({"action": "put", "payload": {"collection": "users", "value": "alice"}});
    let (status, body) = cluster.command(followers[0], &alice);
    assert_eq!(status, 200, "{body}");
    assert!(is_key(&body["key"]), "{body}");
    assert_eq!(
        (body["collection"].as_str(), body["value"].as_str()),
        (Some("users"), Some("alice"))
    );
    let key = body["key"].clone();

    // The same value again, anywhere: the existing key.
    for id in [leader, followers[1]] {
        let (status, again) = cluster.command(id, &alice);
        assert_eq!((status, &again["key"]), (200, &key));
    }

    // Every node stores the same key for the value.
    cluster.wait_for_convergence(Duration::from_secs(10));
    for id in 1..=3 {
        let lookup = json!({"action": "get", "payload": {"collection": "users", "value": "alice",
                            "consistency": "serializable"}});
        let (status, found) = cluster.command(id, &lookup);
        assert_eq!((status, &found["key"]), (200, &key), "node {id}: {found}");
        let (status, by_key) = cluster.command(id, &get("users", key.as_str().expect("key")));
        assert_eq!((status, by_key["value"].as_str()), (200, Some("alice")));
    }

    // Absent values: 404 with the item fields present.
    let missing = json!({"action": "get", "payload": {"collection": "users", "value": "bob"}});
    let (status, body) = cluster.command(leader, &missing);
    assert_eq!(status, 404);
    assert_eq!(
        (body["collection"].as_str(), body["key"].as_str(), body["value"].as_str()),
        (Some("users"), Some(""), Some(""))
    );
    assert!(body["error"].is_string());

    // Delete by value returns what was removed, then 404.
    let delete = json!({"action": "delete", "payload": {"collection": "users", "value": "alice"}});
    let (status, body) = cluster.command(followers[1], &delete);
    assert_eq!((status, &body["key"], body["value"].as_str()), (200, &key, Some("alice")));
    assert_eq!(cluster.command(leader, &delete).0, 404);
    assert_eq!(
        cluster
            .command(
                leader,
                &json!({"action": "get", "payload": {"collection": "users", "value": "alice"}})
            )
            .0,
        404
    );
}

fn key_addressed_actions(cluster: &TestCluster, node: u16) {
    let (status, body) = cluster.command(node, &put("kv", "k1", "v1"));
    assert_eq!(status, 200, "{body}");
    let revision = body["revision"].as_u64().expect("a revision");
    assert_eq!(
        body,
        json!({"collection": "kv", "key": "k1", "value": "v1", "revision": revision,
               "create_revision": revision, "mod_revision": revision, "version": 1})
    );
    assert_eq!(cluster.command(node, &get("kv", "k1")).1["value"], "v1");
    assert_eq!(cluster.command(node, &put("kv", "k1", "v2")).0, 200);
    assert_eq!(cluster.command(node, &get("kv", "k1")).1["value"], "v2");
    // A collection made by a key-addressed put keeps no value index.
    let by_value = json!({"action": "get", "payload": {"collection": "kv", "value": "v2"}});
    assert_eq!(cluster.command(node, &by_value).0, 400);
    let delete = json!({"action": "delete", "payload": {"collection": "kv", "key": "k1"}});
    assert_eq!(
        without_revisions(cluster.command(node, &delete)),
        (200, json!({"collection": "kv", "key": "k1", "value": "v2"}))
    );
    assert_eq!(cluster.command(node, &delete).0, 404);
    assert_eq!(cluster.command(node, &get("kv", "k1")).0, 404);
    assert_eq!(cluster.command(node, &get("no-such-collection", "k1")).0, 404);
}

/// An answer without its revisions (docs/API.md, "Revisions"), which
/// depend on the log's indexes.
fn without_revisions((status, mut body): (u16, Value)) -> (u16, Value) {
    if let Some(fields) = body.as_object_mut() {
        for field in ["revision", "create_revision", "mod_revision", "version"] {
            fields.remove(field);
        }
    }
    (status, body)
}

fn cas_actions(cluster: &TestCluster, node: u16) {
    let cas = |expected: Value, value: &str| json!({"action": "cas", "payload": {"collection": "cas", "key": "c", "expected": expected, "value": value}});
    assert_eq!(cluster.command(node, &cas(Value::Null, "one")).0, 200);
    let (status, body) = cluster.command(node, &cas(Value::Null, "again"));
    assert_eq!((status, body["value"].as_str()), (409, Some("one")), "{body}");
    let (status, body) = cluster.command(node, &cas(json!("wrong"), "two"));
    assert_eq!((status, body["value"].as_str()), (409, Some("one")));
    assert_eq!(
        without_revisions(cluster.command(node, &cas(json!("one"), "two"))),
        (200, json!({"collection": "cas", "key": "c", "value": "two"}))
    );
    assert_eq!(cluster.command(node, &get("cas", "c")).1["value"], "two");
    let missing_expected =
        json!({"action": "cas", "payload": {"collection": "cas", "key": "c", "value": "x"}});
    assert_eq!(cluster.command(node, &missing_expected).0, 400);
}

fn range_actions(cluster: &TestCluster, node: u16) {
    for key in ["a1", "a2", "a3", "b1", "b2"] {
        assert_eq!(cluster.command(node, &put("r", key, &format!("value-{key}"))).0, 200);
    }
    let range = |payload: Value| {
        let (status, body) = cluster.command(node, &json!({"action": "range", "payload": payload}));
        assert_eq!(status, 200, "{body}");
        let keys: Vec<String> = body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["key"].as_str().expect("key").to_string())
            .collect();
        (keys, body["more"].as_bool().expect("more"))
    };
    assert_eq!(
        range(json!({"collection": "r"})),
        (vec!["a1".into(), "a2".into(), "a3".into(), "b1".into(), "b2".into()], false)
    );
    assert_eq!(
        range(json!({"collection": "r", "prefix": "a", "limit": 2})),
        (vec!["a1".into(), "a2".into()], true)
    );
    assert_eq!(
        range(json!({"collection": "r", "start": "a2", "end": "b2"})),
        (vec!["a2".into(), "a3".into(), "b1".into()], false)
    );
    let (_, body) = cluster
        .command(node, &json!({"action": "range", "payload": {"collection": "r", "prefix": "b"}}));
    let item = without_revisions((200, body["items"][0].clone())).1;
    assert_eq!(item, json!({"key": "b1", "value": "value-b1"}));
    assert_eq!(body["items"][0]["version"], 1, "{body}");
    for limit in [json!(0), json!(10_001), json!("ten")] {
        let payload = json!({"collection": "r", "limit": limit});
        assert_eq!(cluster.command(node, &json!({"action": "range", "payload": payload})).0, 400);
    }
    assert_eq!(
        cluster.command(node, &json!({"action": "range", "payload": {"collection": "nope"}})).0,
        404
    );
}

fn collections_actions(cluster: &TestCluster, node: u16) {
    let list = || cluster.command(node, &json!({"action": "list collections"}));
    let (status, body) = list();
    assert_eq!(status, 200);
    let names: Vec<&str> =
        body["collections"].as_array().expect("names").iter().filter_map(Value::as_str).collect();
    assert_eq!(names, ["cas", "kv", "r", "users"]);
    assert_eq!(body["value"], "cas, kv, r, users");
    assert_eq!((body["collection"].as_str(), body["key"].as_str()), (Some(""), Some("")));

    let drop = json!({"action": "drop collection", "payload": {"collection": "r"}});
    assert_eq!(
        without_revisions(cluster.command(node, &drop)),
        (200, json!({"collection": "r", "key": "", "value": "dropped"}))
    );
    let (status, body) = cluster.command(node, &drop);
    assert_eq!((status, body["key"].as_str(), body["value"].as_str()), (404, Some(""), Some("")));
    assert_eq!(list().1["value"], "cas, kv, users");
    assert_eq!(cluster.command(node, &get("r", "a1")).0, 404);
}

fn error_statuses(cluster: &TestCluster, node: u16) {
    let bad: [&[u8]; 12] = [
        b"{not json",
        b"[1, 2]",
        br#"{"payload": {"collection": "c", "value": "v"}}"#,
        br#"{"action": 7, "payload": {}}"#,
        br#"{"action": "frobnicate", "payload": {"collection": "c"}}"#,
        br#"{"action": "put", "payload": {"value": "v"}}"#,
        br#"{"action": "put", "payload": {"collection": "", "value": "v"}}"#,
        br#"{"action": "put", "payload": {"collection": 5, "value": "v"}}"#,
        br#"{"action": "put", "payload": {"collection": "c"}}"#,
        br#"{"action": "put", "payload": {"collection": "c", "value": 12}}"#,
        br#"{"action": "get", "payload": {"collection": "c", "key": "k", "consistency": "eventual"}}"#,
        br#"{"action": "put", "payload": "c"}"#,
    ];
    for body in bad {
        let (status, answer) = cluster.post_raw(node, body);
        assert_eq!(status, 400, "{}: {answer}", String::from_utf8_lossy(body));
        assert!(answer["error"].is_string(), "{answer}");
    }
    let (status, body) = cluster.get(node, "/command");
    assert_eq!(status, 405, "{body}");
    assert!(body["error"].is_string());

    let big_value = "x".repeat(rdb::kv::VALUE_BYTES_MAX + 1);
    assert_eq!(cluster.command(node, &put("c", "k", &big_value)).0, 413);
    let big_key = "k".repeat(rdb::kv::KEY_BYTES_MAX + 1);
    assert_eq!(cluster.command(node, &put("c", &big_key, "v")).0, 413);
    let huge_body = vec![b' '; rdb::kv::BODY_BYTES_MAX + 10];
    assert_eq!(cluster.post_raw(node, &huge_body).0, 413);

    // Nothing above changed anything, and the cluster still works.
    assert_eq!(cluster.command(node, &get("c", "k")).0, 404);
    assert_eq!(cluster.command(node, &put("c", "k", "fine")).0, 200);
}

fn other_endpoints(cluster: &TestCluster, leader: u16) {
    for id in 1..=3 {
        let (status, health) = cluster.get(id, "/health");
        assert_eq!((status, health["status"].as_str()), (200, Some("ok")), "node {id}");
    }
    let status = cluster.status(leader).expect("status");
    for field in [
        "id",
        "term",
        "leader",
        "commit_index",
        "applied_index",
        "last_log_index",
        "snapshot_index",
    ] {
        assert!(status[field].is_u64(), "{field} in {status}");
    }
    assert_eq!(status["role"], "leader");
    let peers = status["peers"].as_array().expect("peers on the leader");
    assert_eq!(peers.len(), 3, "{status}");
    let response = ureq::get(&format!("http://127.0.0.1:{}/metrics", port_base() + leader))
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .expect("text");
    for needle in [
        "rdb_requests_total{action=\"put\",status=\"200\"}",
        "rdb_raft_term ",
        "rdb_raft_role{role=\"leader\"} 1",
        "rdb_wal_sync_seconds_count",
        "rdb_state_commit_seconds_count",
        "rdb_state_sync_seconds_count",
    ] {
        assert!(response.contains(needle), "{needle} missing from /metrics");
    }
}
