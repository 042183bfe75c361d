//! Membership changes on real clusters, the way an operator makes them:
//! a dead member replaced under write load (start a node with `--join`, add
//! it as a learner, promote it, remove the dead one), a cluster grown from
//! three to five and shrunk back with the leader removed, a node added after
//! compaction that learns everything from a snapshot, every node restarted
//! after the changes, and a graceful stop of the leader that hands over.
//! Nothing acknowledged is ever lost.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{get, put, TestCluster};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// Puts through whichever of `targets` answers, until stopped; records
/// every acknowledged write.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeMap<String, String>>>,
    targets: Arc<Mutex<Vec<u16>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(ports: Vec<u16>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(BTreeMap::new()));
        let targets = Arc::new(Mutex::new(ports));
        let (s, a, t) = (stop.clone(), acked.clone(), targets.clone());
        let thread = std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into();
            let mut i = 0u64;
            while !s.load(Ordering::Relaxed) && i < 1_000_000 {
                let ports = t.lock().expect("targets").clone();
                let port = ports[usize::try_from(i).expect("small") % ports.len()];
                let (key, value) = (format!("w{i:06}"), format!("v{i}"));
                let body = put("w", &key, &value).to_string();
                let url = format!("http://127.0.0.1:{port}/command");
                if let Ok(response) = agent.post(&url).send(body.as_bytes()) {
                    if response.status() == 200 {
                        a.lock().expect("acked").insert(key, value);
                    }
                }
                i += 1;
            }
        });
        Writer { stop, acked, targets, thread: Some(thread) }
    }

    /// Waits until `more` writes beyond those acknowledged so far are.
    fn wait_for_more(&self, more: usize) {
        let target = self.acked.lock().expect("acked").len() + more;
        let deadline = Instant::now() + WAIT;
        while self.acked.lock().expect("acked").len() < target {
            assert!(Instant::now() < deadline, "the writer stalled");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn retarget(&self, ports: Vec<u16>) {
        *self.targets.lock().expect("targets") = ports;
    }

    fn finish(mut self) -> BTreeMap<String, String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("writer");
        }
        std::mem::take(&mut *self.acked.lock().expect("acked"))
    }
}

fn port(cluster: &TestCluster, id: u16) -> u16 {
    cluster.nodes[usize::from(id - 1)].http_port
}

/// Adds node `id` (started with --join) as a learner through node `via`,
/// waits until it may be promoted, and promotes it.
fn add_and_promote(cluster: &TestCluster, via: u16, id: u16) {
    let node = &cluster.nodes[usize::from(id - 1)];
    let add = json!({"id": id, "peer": node.peer_addr(), "client_url": node.client_url(),
                     "learner": true});
    let (status, body) = admin_retrying(cluster, via, "POST", "/admin/members", Some(&add));
    assert_eq!(status, 200, "add {id}: {body}");
    let added = body["members"].as_array().expect("members").iter().any(|m| m["id"] == id);
    assert!(added && body["leader"].as_u64().is_some(), "{body}");
    let deadline = Instant::now() + WAIT;
    loop {
        let path = format!("/admin/members/{id}/promote");
        let (status, body) = cluster.admin(via, "POST", &path, None);
        if status == 200 {
            return;
        }
        assert!(status == 409 || status == 503, "promote {id}: {status} {body}");
        assert!(Instant::now() < deadline, "{id} never caught up: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn remove(cluster: &TestCluster, via: u16, id: u16) {
    let path = format!("/admin/members/{id}");
    let (status, body) = admin_retrying(cluster, via, "DELETE", &path, None);
    assert_eq!(status, 200, "remove {id}: {body}");
}

/// An admin request, retried while it is answered 503 (nothing happened:
/// no leader yet, say), as a client would.
fn admin_retrying(
    cluster: &TestCluster,
    via: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, answer) = cluster.admin(via, method, path, body);
        if status != 503 || Instant::now() > deadline {
            return (status, answer);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every acknowledged write is on each of `ids`, once they have applied
/// everything committed.
fn check_acked(cluster: &TestCluster, ids: &[u16], acked: &BTreeMap<String, String>) {
    assert!(acked.len() >= 20, "the writer got little through: {}", acked.len());
    cluster.wait_for_convergence_of(ids, WAIT);
    for &id in ids {
        let held: BTreeMap<String, String> = cluster.contents(id, "w").into_iter().collect();
        for (key, value) in acked {
            assert_eq!(held.get(key), Some(value), "node {id} lost acknowledged {key}");
        }
    }
}

#[test]
fn a_dead_member_is_replaced_under_write_load() {
    let mut cluster = TestCluster::start(
        3,
        common::ports::base("cluster_membership::a_dead_member_is_replaced"),
        &[],
    );
    cluster.wait_for_leader(WAIT);
    let writer = Writer::start(vec![port(&cluster, 1), port(&cluster, 2)]);
    writer.wait_for_more(10);
    cluster.kill(3);
    let new = cluster.start_joining();
    // A joining node knows no members and never campaigns.
    let status = cluster.status(new).expect("the new node answers");
    assert_eq!((status["leader"].as_u64(), status["role"].as_str()), (Some(0), Some("follower")));
    add_and_promote(&cluster, 1, new);
    remove(&cluster, 2, 3);
    writer.retarget(vec![port(&cluster, 1), port(&cluster, 2), port(&cluster, new)]);
    writer.wait_for_more(10);
    let acked = writer.finish();
    let survivors = [1, 2, new];
    cluster.wait_for_leader_of(&survivors, WAIT);
    for id in survivors {
        assert_eq!(cluster.members_of(id), (vec![1, 2, 4], vec![]), "node {id}");
    }
    check_acked(&cluster, &survivors, &acked);

    // The membership survives restarts (node 4 has no --peers at all).
    for id in survivors {
        cluster.kill(id);
    }
    for id in survivors {
        cluster.restart(id);
    }
    let leader = cluster.wait_for_leader_of(&survivors, WAIT);
    assert_eq!(cluster.command(new, &put("after", "k", "v")).0, 200);
    assert_eq!(cluster.command(leader, &get("after", "k")).1["value"], "v");
    for id in survivors {
        assert_eq!(cluster.members_of(id), (vec![1, 2, 4], vec![]), "node {id} after restart");
    }
    check_acked(&cluster, &survivors, &acked);
}

#[test]
fn grow_to_five_remove_the_leader_shrink_to_three() {
    let args = ["--snapshot-entries", "50", "--compaction-margin-entries", "0"];
    let mut cluster =
        TestCluster::start(3, common::ports::base("cluster_membership::grow_to_five"), &args);
    let first = cluster.wait_for_leader(WAIT);
    let writer = Writer::start((1..=3).map(|id| port(&cluster, id)).collect());
    writer.wait_for_more(10);
    for _ in 0..2 {
        let id = cluster.start_joining();
        add_and_promote(&cluster, first, id);
    }
    assert_eq!(cluster.members_of(5), (vec![1, 2, 3, 4, 5], vec![]));

    // The leader removes itself: it hands over and steps down.
    let leader = cluster.wait_for_leader(WAIT);
    remove(&cluster, leader, leader);
    let rest: Vec<u16> = (1..=5).filter(|&id| id != leader).collect();
    let successor = cluster.wait_for_leader_of(&rest, WAIT);
    assert_ne!(successor, leader);
    writer.retarget(rest.iter().map(|&id| port(&cluster, id)).collect());
    let removed = cluster.status(leader).expect("the removed node still answers");
    assert_ne!(removed["role"], "leader", "{removed}");
    // ... and shrinks back to three.
    let other = *rest.iter().find(|&&id| id != successor).expect("another");
    remove(&cluster, successor, other);
    let three: Vec<u16> = rest.iter().copied().filter(|&id| id != other).collect();
    writer.retarget(three.iter().map(|&id| port(&cluster, id)).collect());
    writer.wait_for_more(10);
    let acked = writer.finish();
    cluster.wait_for_leader_of(&three, WAIT);
    let expected: Vec<u64> = three.iter().map(|&id| u64::from(id)).collect();
    for &id in &three {
        assert_eq!(cluster.members_of(id).0, expected, "node {id}");
    }
    check_acked(&cluster, &three, &acked);

    // A node added now gets the compacted state as a snapshot, and with it
    // the membership; then every node restarts.
    let mut snapshot = json!(null);
    for &id in &three {
        snapshot = cluster.command_to(id, "/admin/snapshot").1;
    }
    assert!(snapshot["index"].as_u64().is_some_and(|i| i > 50), "{snapshot}");
    let late = cluster.start_joining();
    add_and_promote(&cluster, three[0], late);
    let metrics = cluster.get(late, "/metrics").1;
    let metrics = metrics.as_str().expect("text");
    assert!(metrics.contains("rdb_snapshots_installed_total 1"), "{metrics}");
    let four: Vec<u16> = three.iter().copied().chain([late]).collect();
    for &id in &four {
        cluster.kill(id);
    }
    for &id in &four {
        cluster.restart(id);
    }
    cluster.wait_for_leader_of(&four, WAIT);
    let mut expected: Vec<u64> = four.iter().map(|&id| u64::from(id)).collect();
    expected.sort_unstable();
    for &id in &four {
        assert_eq!(cluster.members_of(id).0, expected, "node {id} after restart");
    }
    check_acked(&cluster, &four, &acked);
}

#[test]
fn bad_admin_requests_change_nothing() {
    let cluster =
        TestCluster::start(3, common::ports::base("cluster_membership::bad_admin_requests"), &[]);
    let leader = cluster.wait_for_leader(WAIT);
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    let before = cluster.members_of(follower);
    let add = |body: Value| cluster.admin(follower, "POST", "/admin/members", Some(&body)).0;
    assert_eq!(add(json!({"id": 2, "peer": "127.0.0.1:1"})), 409, "an id already a member");
    let taken = cluster.nodes[0].peer_addr();
    assert_eq!(add(json!({"id": 9, "peer": taken})), 409, "an address already a member's");
    assert_eq!(add(json!({"id": 9, "peer": "nowhere"})), 400);
    assert_eq!(add(json!({"id": 0, "peer": "127.0.0.1:1"})), 400);
    assert_eq!(add(json!({"id": 9, "peer": "127.0.0.1:1", "lerner": true})), 400);
    let admin = |method: &str, path: &str| cluster.admin(follower, method, path, None).0;
    assert_eq!(admin("DELETE", "/admin/members/9"), 404);
    assert_eq!(admin("POST", "/admin/members/2/promote"), 409, "not a learner");
    assert_eq!(admin("POST", "/admin/members/x/promote"), 400);
    assert_eq!(admin("PUT", "/admin/members"), 405);
    let to = |body: Value| cluster.admin(follower, "POST", "/admin/leader", Some(&body)).0;
    assert_eq!(to(json!({"to": 9})), 404);
    assert_eq!(to(json!({"to": "x"})), 400);
    assert_eq!(cluster.members_of(follower), before);
    // Leadership moves on request, to a chosen voter or the most caught up.
    let (status, body) =
        cluster.admin(follower, "POST", "/admin/leader", Some(&json!({"to": follower})));
    assert_eq!((status, body["leader"].as_u64()), (200, Some(u64::from(follower))), "{body}");
    let (status, body) = cluster.admin(leader, "POST", "/admin/leader", Some(&json!({})));
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["leader"].as_u64(), Some(u64::from(follower)));
}

#[test]
fn a_stopping_leader_hands_over() {
    let mut cluster = TestCluster::start(
        3,
        common::ports::base("cluster_membership::a_stopping_leader_hands_over"),
        &[],
    );
    let leader = cluster.wait_for_leader(WAIT);
    let term = cluster.status(leader).expect("status")["term"].as_u64().expect("term");
    let followers: Vec<u16> = (1..=3).filter(|&id| id != leader).collect();
    let writer = Writer::start(followers.iter().map(|&id| port(&cluster, id)).collect());
    writer.wait_for_more(10);
    assert!(cluster.terminate(leader, WAIT), "SIGTERM: exit status 0");
    let successor = cluster.wait_for_leader_of(&followers, WAIT);
    let status = cluster.status(successor).expect("status");
    // A transfer is one election: the next term, not one after a timeout.
    assert_eq!(status["term"].as_u64(), Some(term + 1), "{status}");
    writer.wait_for_more(10);
    let acked = writer.finish();
    check_acked(&cluster, &followers, &acked);
}

/// Runs `rdb` with `args`; its exit code and standard output.
fn rdb(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rdb"))
        .args(args)
        .env_remove("RDB_ENDPOINTS")
        .output()
        .expect("rdb runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_cli_drives_membership_over_tls_with_client_certificates() {
    let dir = tempfile::tempdir().expect("dir");
    let names = ["rdb1:127.0.0.1", "rdb2:127.0.0.1", "rdb3:127.0.0.1", "rdb4:127.0.0.1"];
    common::tls::gen_certs(dir.path(), &names);
    let certs = dir.path().to_path_buf();
    let client_ca = certs.join("ca.pem").display().to_string();
    let mut cluster = TestCluster::start_each(
        3,
        common::ports::base("cluster_membership::the_cli_over_tls"),
        &["--client-ca", &client_ca],
        |id| common::tls::tls_args(&certs, &format!("rdb{id}")),
    );
    let file = |name: &str| certs.join(name).display().to_string();
    let endpoints = (1..=3)
        .map(|id| format!("https://127.0.0.1:{}", port(&cluster, id)))
        .collect::<Vec<_>>()
        .join(",");
    let tls = [
        "--cacert",
        &file("ca.pem"),
        "--cert",
        &file("client.pem"),
        "--key",
        &file("client-key.pem"),
    ];
    let with = |command: &[&str]| -> Vec<String> {
        command
            .iter()
            .chain(&["--endpoints", endpoints.as_str()])
            .chain(&tls)
            .map(|s| s.to_string())
            .collect()
    };
    let run = |command: &[&str]| {
        let args = with(command);
        rdb(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let deadline = Instant::now() + WAIT;
    while run(&["member", "list", "--json"]).0 != 0 {
        assert!(Instant::now() < deadline, "no endpoint answered over HTTPS");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Without the client certificate the nodes refuse: unavailable (3).
    let bare = ["member", "list", "--endpoints", endpoints.as_str(), "--cacert", &file("ca.pem")];
    assert_eq!(rdb(&bare).0, 3);

    let new = cluster.start_joining_with(common::tls::tls_args(&certs, "rdb4"));
    let node = &cluster.nodes[usize::from(new - 1)];
    let (peer, url) = (node.peer_addr(), node.client_url().replace("http:", "https:"));
    let (code, out) = run(&["member", "add", "4", "--peer", &peer, "--client-url", &url]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("learner"), "{out}");
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, out) = run(&["member", "promote", "4"]);
        if code == 0 {
            break;
        }
        assert_eq!(code, 1, "refused while behind, not {code}: {out}");
        assert!(Instant::now() < deadline, "never promoted");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(run(&["member", "remove", "9"]).0, 1, "no such member: exit 1");
    assert_eq!(run(&["member", "add", "5", "--peer", "nowhere"]).0, 2, "bad input: exit 2");
    let (code, out) = run(&["leader", "transfer", "--to", "4", "--json"]);
    assert_eq!(code, 0, "{out}");
    let answer: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(answer["leader"], 4);
    let (code, out) = run(&["member", "remove", "3"]);
    assert_eq!(code, 0, "{out}");
    let (_, out) = run(&["member", "list", "--json"]);
    let listed: Value = serde_json::from_str(&out).expect("json");
    let ids: Vec<u64> = listed["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids, vec![1, 2, 4]);
}

/// After a restart a node's log still holds what its WAL holds, below the
/// state file's applied index too: a leader restarted since the writes
/// sends them to a new learner (it once had only a snapshot to offer, and
/// none was taken yet, so the learner never caught up).
#[test]
fn a_learner_catches_up_from_a_leader_restarted_since_the_writes() {
    let mut cluster =
        TestCluster::start(3, common::ports::base("cluster_membership::a_learner_catches_up"), &[]);
    let leader = cluster.wait_for_leader(WAIT);
    for i in 0..200 {
        assert_eq!(cluster.command(leader, &put("early", &format!("k{i}"), "v")).0, 200);
    }
    for id in 1..=3 {
        cluster.kill(id);
        cluster.restart(id);
    }
    cluster.wait_for_leader(WAIT);
    let new = cluster.start_joining();
    add_and_promote(&cluster, 1, new);
    cluster.wait_for_convergence_of(&[1, 2, 3, new], WAIT);
    assert_eq!(cluster.contents(new, "early").len(), 200);
    let metrics = cluster.get(new, "/metrics").1;
    let metrics = metrics.as_str().expect("text");
    assert!(metrics.contains("rdb_snapshots_installed_total 0"), "sent as entries: {metrics}");
}
