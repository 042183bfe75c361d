//! Leases on a real cluster (docs/API.md, "Leases"): a key put with a lease
//! lives while the lease is kept alive and is deleted, on every replica,
//! once it is not; a revoke deletes a lease's keys at once; a leader change
//! gives every lease a full TTL again, so a client that keeps its lease
//! alive through a failover never loses its key; the lock recipe (cas on an
//! absent key with a lease) excludes a second holder, and the shell script
//! docs/API.md gives for it, run as written, excludes and is freed when its
//! holder is killed.

mod common;

use std::time::{Duration, Instant};

use common::TestCluster;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

fn lease_request(action: &str, lease: &str) -> Value {
    json!({"action": action, "payload": {"lease": lease}})
}

fn grant(cluster: &TestCluster, node: u16, ttl_ms: u64) -> String {
    let (status, body) =
        cluster.command(node, &json!({"action": "lease grant", "payload": {"ttl_ms": ttl_ms}}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ttl_ms"], ttl_ms);
    body["lease"].as_str().expect("a lease id").to_string()
}

fn put_leased(cluster: &TestCluster, node: u16, key: &str, lease: &str) -> (u16, Value) {
    cluster.command(
        node,
        &json!({"action": "put", "payload": {"collection": "l", "key": key,
                                                               "value": "held", "lease": lease}}),
    )
}

/// Keeps `lease` alive through `nodes` (the first that answers) every
/// 300 ms for `for_how_long`.
fn keep_alive(cluster: &TestCluster, nodes: &[u16], lease: &str, for_how_long: Duration) {
    let until = Instant::now() + for_how_long;
    while Instant::now() < until {
        let alive = nodes.iter().any(|&node| {
            cluster.post_raw_maybe(
                node,
                lease_request("lease keepalive", lease).to_string().as_bytes(),
            ) == Some(200)
        });
        assert!(alive || Instant::now() + Duration::from_secs(3) < until, "no keepalive answered");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Waits until `key` is gone from every node in `nodes`.
fn wait_gone(cluster: &TestCluster, nodes: &[u16], key: &str) {
    let deadline = Instant::now() + WAIT;
    for &node in nodes {
        loop {
            let read = json!({"action": "get", "payload": {"collection": "l", "key": key,
                                                          "consistency": "serializable"}});
            if cluster.command(node, &read).0 == 404 {
                break;
            }
            assert!(Instant::now() < deadline, "{key} still on node {node}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_kept_lease_holds_its_key_through_a_failover_and_a_dropped_one_does_not() {
    let mut cluster = TestCluster::start(3, common::ports::base("leases::expiry"), &[]);
    let leader = cluster.wait_for_leader(WAIT);
    let others: Vec<u16> = (1..=3).filter(|&id| id != leader).collect();
    let lease = grant(&cluster, others[0], 2_000);
    assert_eq!(put_leased(&cluster, others[0], "k", &lease).0, 200);
    let (_, listed) = cluster.command(others[1], &json!({"action": "leases"}));
    let mine = &listed["leases"][0];
    assert_eq!(
        (mine["lease"].as_str(), mine["keys"][0]["key"].as_str()),
        (Some(lease.as_str()), Some("k")),
        "{listed}"
    );
    // Kept alive for twice its TTL, then through the leader's death.
    keep_alive(&cluster, &others, &lease, Duration::from_secs(4));
    cluster.kill(leader);
    keep_alive(&cluster, &others, &lease, Duration::from_secs(5));
    let read = json!({"action": "get", "payload": {"collection": "l", "key": "k"}});
    let (status, body) = cluster.command(others[0], &read);
    assert_eq!(status, 200, "the key outlived the failover: {body}");
    // Not renewed: gone within a TTL (and a check), on both survivors.
    wait_gone(&cluster, &others, "k");
    let (status, _) = cluster.command(others[0], &lease_request("lease keepalive", &lease));
    assert_eq!(status, 404, "an expired lease cannot be renewed");
}

#[test]
fn revoke_deletes_the_keys_and_the_lock_recipe_excludes() {
    let cluster = TestCluster::start(3, common::ports::base("leases::revoke"), &[]);
    let leader = cluster.wait_for_leader(WAIT);
    let follower = if leader == 1 { 2 } else { 1 };
    let lease = grant(&cluster, leader, 60_000);
    for key in ["a", "b"] {
        assert_eq!(put_leased(&cluster, follower, key, &lease).0, 200);
    }
    // Overwritten without the lease, "b" is no longer the lease's.
    assert_eq!(cluster.command(leader, &common::put("l", "b", "mine")).0, 200);
    let (status, revoked) = cluster.command(follower, &lease_request("lease revoke", &lease));
    assert_eq!((status, revoked["deleted"].as_u64()), (200, Some(1)), "{revoked}");
    wait_gone(&cluster, &[1, 2, 3], "a");
    assert_eq!(cluster.command(leader, &common::get("l", "b")).1["value"], "mine");
    assert_eq!(cluster.command(leader, &lease_request("lease revoke", &lease)).0, 404);

    // The lock: cas on an absent key, with a lease.
    let lock = |lease: &str| {
        json!({"action": "cas", "payload": {"collection": "l", "key": "lock",
        "expected_revision": 0, "value": "me", "lease": lease}})
    };
    let first = grant(&cluster, leader, 60_000);
    let second = grant(&cluster, follower, 60_000);
    assert_eq!(cluster.command(follower, &lock(&first)).0, 200);
    assert_eq!(cluster.command(leader, &lock(&second)).0, 409, "held");
    assert_eq!(cluster.command(leader, &lease_request("lease revoke", &first)).0, 200);
    assert_eq!(cluster.command(leader, &lock(&second)).0, 200, "released with its lease");

    // Bad requests change nothing.
    let bad = [
        json!({"action": "lease grant", "payload": {"ttl_ms": 10}}),
        json!({"action": "lease grant", "payload": {}}),
        lease_request("lease keepalive", "nonsense"),
        json!({"action": "put", "payload": {"collection": "l", "value": "v", "lease": second}}),
        json!({"action": "cas", "payload": {"collection": "l", "key": "x", "expected": null,
                                            "value": "v", "lease": second}}),
    ];
    for body in bad {
        assert_eq!(cluster.command(leader, &body).0, 400, "{body}");
    }
    let (status, _) = put_leased(&cluster, leader, "z", "00000000000000ff");
    assert_eq!(status, 404, "no such lease");
}

/// The lock script of docs/API.md ("Leases"), as written there, aimed at
/// `endpoint`, with its work replaced by `work`.
fn lock_script(endpoint: &str, work: &str) -> String {
    let api = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/API.md"))
        .expect("docs/API.md");
    let after = api.split("A lock a shell script can hold").nth(1).expect("the lock recipe");
    let script = after.split("```sh\n").nth(1).and_then(|s| s.split("```").next()).expect("sh");
    let placeholder = "# ... the work, while holding the lock ...";
    assert!(script.contains(placeholder) && script.contains("EP=http://127.0.0.1:8081/command"));
    script
        .replace("EP=http://127.0.0.1:8081/command", &format!("EP={endpoint}/command"))
        .replace(placeholder, work)
}

/// Starts `script` in its own process group (so that killing the group
/// kills its renewal loop too).
fn spawn_script(script: &str) -> std::process::Child {
    use std::os::unix::process::CommandExt as _;
    std::process::Command::new("sh").args(["-c", script]).process_group(0).spawn().expect("sh runs")
}

fn wait_for_line(log: &std::path::Path, line: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !std::fs::read_to_string(log).unwrap_or_default().lines().any(|l| l == line) {
        assert!(Instant::now() < deadline, "{line:?} never logged");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_shell_lock_recipe_excludes_and_is_freed_when_its_holder_dies() {
    if !common::have_tool("curl") || !common::have_tool("sh") {
        return;
    }
    let cluster = TestCluster::start(3, common::ports::base("leases::lock_recipe"), &[]);
    let leader = cluster.wait_for_leader(WAIT);
    let endpoint = cluster.nodes[usize::from(leader) - 1].client_url();
    let dir = std::env::temp_dir().join(format!("rdb-lock-recipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let log = dir.join("log");
    let work = |name: &str, then: &str| {
        format!("echo {name}-in >> {0}; {then}; echo {name}-out >> {0}", log.display())
    };
    // Two holders in turn: each is in alone, one after the other.
    let a = spawn_script(&lock_script(&endpoint, &work("a", "sleep 2")));
    wait_for_line(&log, "a-in", WAIT);
    let b = spawn_script(&lock_script(&endpoint, &work("b", "sleep 0.2")));
    for mut holder in [a, b] {
        let deadline = Instant::now() + WAIT;
        while holder.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "a lock script never finished");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let lines = std::fs::read_to_string(&log).expect("log");
    assert_eq!(lines, "a-in\na-out\nb-in\nb-out\n", "one holder at a time");

    // A holder killed while in: the lock is freed when its lease expires
    // (10 s), and the next script gets in.
    std::fs::write(&log, "").expect("truncate");
    let mut dying = spawn_script(&lock_script(&endpoint, &work("c", "sleep 600")));
    wait_for_line(&log, "c-in", WAIT);
    let next = spawn_script(&lock_script(&endpoint, &work("d", "true")));
    std::thread::sleep(Duration::from_secs(1));
    let group = format!("-{}", dying.id());
    let killed = std::process::Command::new("kill").args(["-KILL", "--", &group]).status();
    assert!(killed.is_ok_and(|s| s.success()), "kill the holder's process group");
    let _ = dying.wait();
    let killed_at = Instant::now();
    wait_for_line(&log, "d-out", Duration::from_secs(30));
    let waited = killed_at.elapsed();
    assert!(waited >= Duration::from_secs(5), "in after {waited:?}: before the lease expired");
    let mut next = next;
    let _ = next.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
