//! Watches (docs/API.md, "Watch") on a real cluster, the way a client uses
//! them: a stream read with `curl -N` from a follower sees every change of
//! its prefix once, in revision order, with the revisions the writes were
//! answered with; a long poll resumes from a revision; a revision older
//! than the node's history is a 410 naming the oldest kept; a watcher that
//! does not read is cut with an error event instead of holding memory; a
//! follower that installs a snapshot ends its streams with an error event,
//! never a silent jump, and answers a resume from before it with 410.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::TestCluster;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// `curl -sN` posting `body` to `url`: the child and its output's lines.
fn stream(
    url: &str,
    body: &Value,
) -> (Child, std::io::Lines<BufReader<std::process::ChildStdout>>) {
    let mut child = Command::new("curl")
        .args(["-sN", "--max-time", "180", "-d", &body.to_string(), url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl runs");
    let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    (child, lines)
}

fn next_json(lines: &mut std::io::Lines<BufReader<std::process::ChildStdout>>) -> Value {
    let line = lines.next().expect("a line").expect("text");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn watch(payload: Value) -> Value {
    json!({"action": "watch", "payload": payload})
}

#[test]
fn a_stream_sees_every_change_once_in_order_and_a_poll_resumes() {
    if !common::have_tool("curl") {
        return;
    }
    let cluster = TestCluster::start(3, common::ports::base("watch::stream"), &[]);
    let leader = cluster.wait_for_leader(WAIT);
    let follower = if leader == 1 { 2 } else { 1 };
    let url = format!("{}/command", cluster.nodes[usize::from(follower) - 1].client_url());
    let (mut curl, mut lines) = stream(&url, &watch(json!({"collection": "w", "prefix": "a"})));
    let created = next_json(&mut lines);
    assert_eq!(created["type"], "created", "{created}");

    let mut written = Vec::new();
    for (key, value) in [("a1", "x"), ("b1", "not watched"), ("a2", "y"), ("a1", "z")] {
        let (status, body) = cluster.command(leader, &common::put("w", key, value));
        assert_eq!(status, 200, "{body}");
        if key.starts_with('a') {
            written.push((key, value, body["revision"].as_u64().expect("revision")));
        }
    }
    let delete = json!({"action": "delete", "payload": {"collection": "w", "key": "a2"}});
    let (_, deleted) = cluster.command(leader, &delete);
    for (key, value, revision) in &written {
        let event = next_json(&mut lines);
        assert_eq!(
            (event["type"].as_str(), event["key"].as_str()),
            (Some("put"), Some(*key)),
            "{event}"
        );
        assert_eq!(
            (event["value"].as_str(), event["revision"].as_u64()),
            (Some(*value), Some(*revision))
        );
        assert_eq!(event["mod_revision"].as_u64(), Some(*revision));
    }
    let event = next_json(&mut lines);
    assert_eq!(
        (event["type"].as_str(), event["key"].as_str()),
        (Some("delete"), Some("a2")),
        "{event}"
    );
    assert_eq!(event["revision"], deleted["revision"]);
    // A txn's writes are events at the txn's revision.
    let txn = json!({"action": "txn", "payload": {"success": [
        {"action": "put", "payload": {"collection": "w", "key": "a3", "value": "t"}},
        {"action": "put", "payload": {"collection": "w", "key": "b3", "value": "t"}}]}});
    let (_, done) = cluster.command(leader, &txn);
    let event = next_json(&mut lines);
    assert_eq!(
        (event["key"].as_str(), &event["revision"]),
        (Some("a3"), &done["revision"]),
        "{event}"
    );
    let _ = curl.kill();
    let _ = curl.wait();

    let revisions = [written[1].2, written[2].2, revision_of(&deleted), revision_of(&done)];
    long_polls_resume(&cluster, (leader, follower), &url, &revisions);
}

fn revision_of(answer: &Value) -> u64 {
    answer["revision"].as_u64().expect("a revision")
}

/// A long poll from `expected[0]` replays the changes since; one past its
/// answer waits (and a change during the wait ends it).
fn long_polls_resume(
    cluster: &TestCluster,
    (leader, follower): (u16, u16),
    url: &str,
    expected: &[u64],
) {
    // A long poll from the first write's revision replays what followed.
    let from = expected[0];
    let poll =
        watch(json!({"collection": "w", "prefix": "a", "from_revision": from, "wait_ms": 2000}));
    let (status, answer) = cluster.command(follower, &poll);
    assert_eq!(status, 200, "{answer}");
    let revisions: Vec<u64> = answer["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["revision"].as_u64().expect("r"))
        .collect();
    assert_eq!(revisions, expected);
    // Nothing newer: after the wait, no events and the same revision to resume from.
    let next = answer["revision"].as_u64().expect("revision") + 1;
    let poll =
        watch(json!({"collection": "w", "prefix": "a", "from_revision": next, "wait_ms": 300}));
    let (status, empty) = cluster.command(follower, &poll);
    assert_eq!((status, empty["events"].as_array().map(Vec::len)), (200, Some(0)), "{empty}");
    // A write during the wait ends it at once.
    let waiting = std::thread::spawn({
        let url = url.to_string();
        move || {
            let poll = watch(
                json!({"collection": "w", "key": "a9", "from_revision": next, "wait_ms": 10000}),
            );
            let out = Command::new("curl")
                .args(["-s", "-d", &poll.to_string(), &url])
                .output()
                .expect("curl");
            serde_json::from_slice::<Value>(&out.stdout).expect("JSON")
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cluster.command(leader, &common::put("w", "a9", "late")).0, 200);
    let answer = waiting.join().expect("the poll");
    assert_eq!(answer["events"][0]["value"], "late", "{answer}");
}

#[test]
fn an_old_revision_is_gone_and_a_reader_that_stalls_is_cut() {
    if !common::have_tool("curl") {
        return;
    }
    let cluster = TestCluster::start(
        3,
        common::ports::base("watch::limits"),
        &["--watch-history-events", "5"],
    );
    let leader = cluster.wait_for_leader(WAIT);
    let first =
        cluster.command(leader, &common::put("g", "k0", "v")).1["revision"].as_u64().expect("r");
    for n in 1..10 {
        assert_eq!(cluster.command(leader, &common::put("g", &format!("k{n}"), "v")).0, 200);
    }
    let (status, gone) = cluster
        .command(leader, &watch(json!({"collection": "g", "from_revision": first, "wait_ms": 0})));
    assert_eq!(status, 410, "{gone}");
    assert!(gone["oldest_revision"].as_u64().is_some_and(|oldest| oldest > first), "{gone}");

    // A watcher that reads nothing while far more than its buffer comes.
    let url = format!("{}/command", cluster.nodes[usize::from(leader) - 1].client_url());
    let (mut curl, mut lines) = stream(&url, &watch(json!({"collection": "big"})));
    assert_eq!(next_json(&mut lines)["type"], "created");
    // Large values: the bytes waiting cut it (rdb::node::WATCH_BUFFER_BYTES)
    // long before the node's write to it times out.
    let value = "v".repeat(256 << 10);
    // An event counts about twice its value (Event::bytes): twice the
    // events that fill the buffer, and a few more.
    let fill = rdb::node::WATCH_BUFFER_BYTES / (2 * value.len());
    let events = 2 * fill + 8;
    for n in 0..events {
        let (status, body) =
            cluster.command(leader, &common::put("big", &format!("k{n:05}"), &value));
        assert_eq!(status, 200, "{body}");
    }
    // Reading now: what fitted, then the error event, then the end.
    let mut received = 0;
    let mut last = Value::Null;
    for line in lines.by_ref() {
        last = serde_json::from_str(&line.expect("text")).expect("JSON");
        if last["type"] != "put" {
            break;
        }
        received += 1;
    }
    assert_eq!(last["type"], "error", "after {received} events: {last}");
    assert!(received < events, "cut before the end: {received}");
    let _ = curl.kill();
    let _ = curl.wait();

    // A client that goes away while nothing changes is noticed by the
    // progress line and its watcher freed.
    let watchers = |cluster: &TestCluster| -> u64 {
        let (_, metrics) = cluster.get(leader, "/metrics");
        let text = metrics.as_str().unwrap_or_default().to_string();
        let line =
            text.lines().find(|l| l.starts_with("rdb_watchers ")).unwrap_or("rdb_watchers 0");
        line.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    let (mut quiet, mut lines) = stream(&url, &watch(json!({"collection": "quiet"})));
    assert_eq!(next_json(&mut lines)["type"], "created");
    assert_eq!(watchers(&cluster), 1);
    let _ = quiet.kill();
    let _ = quiet.wait();
    let deadline = std::time::Instant::now() + rdb::node::WATCH_PROGRESS_INTERVAL * 3;
    while watchers(&cluster) != 0 {
        assert!(std::time::Instant::now() < deadline, "a vanished watcher was never freed");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The revision an event or answer carries.
fn event_revision(event: &Value) -> u64 {
    event["mod_revision"].as_u64().unwrap_or_else(|| panic!("no mod_revision: {event}"))
}

/// Reads a stream's put events to its end, each after `last_seen`
/// (progress lines skipped): the line that ended it and the last put's
/// revision.
fn stream_end(
    lines: &mut std::io::Lines<BufReader<std::process::ChildStdout>>,
    mut last_seen: u64,
) -> (Value, u64) {
    for line in lines {
        let event: Value = serde_json::from_str(&line.expect("text")).expect("JSON");
        if event["type"] == "progress" {
            continue; // the stream was silent for a while (the node was paused)
        }
        if event["type"] != "put" {
            return (event, last_seen);
        }
        assert!(event_revision(&event) > last_seen, "{event} after revision {last_seen}");
        last_seen = event_revision(&event);
    }
    (Value::Null, last_seen)
}

#[test]
fn a_snapshot_install_ends_a_stream_and_a_resume_from_before_it_is_gone() {
    if !common::have_tool("curl") {
        return;
    }
    let cluster = TestCluster::start(
        3,
        common::ports::base("watch::snapshot_install"),
        &common::SNAPSHOT_ARGS,
    );
    let leader = cluster.wait_for_leader(WAIT);
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    let url = format!("{}/command", cluster.nodes[usize::from(follower) - 1].client_url());
    let (mut curl, mut lines) = stream(&url, &watch(json!({"collection": "s"})));
    assert_eq!(next_json(&mut lines)["type"], "created");
    let mut last_seen = 0;
    for n in 0..5 {
        assert_eq!(cluster.command(leader, &common::put("s", &format!("k{n}"), "v")).0, 200);
        let event = next_json(&mut lines);
        assert!(event_revision(&event) > last_seen, "{event}");
        last_seen = event_revision(&event);
    }

    // The follower sleeps while the others write past it and compact their
    // WALs: when it wakes, the leader can only send it a snapshot.
    cluster.pause(follower, true);
    for n in 0..1_500 {
        let (status, body) = cluster.command(leader, &common::put("s", &format!("m{n:04}"), "v"));
        assert_eq!(status, 200, "{body}");
    }
    let compacted = |id: u16| -> u64 {
        let status = cluster.status(id).unwrap_or(Value::Null);
        status["wal_first_index"].as_u64().unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + WAIT;
    while compacted(leader) <= last_seen + 1 {
        assert!(std::time::Instant::now() < deadline, "the leader never compacted its WAL");
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.pause(follower, false);

    // Whatever the stream still delivers is in order and after what it had;
    // then it ends with an error event, never jumping silently ahead.
    let (last, last_seen) = stream_end(&mut lines, last_seen);
    assert_eq!(last["type"], "error", "the stream ended without an error event: {last}");
    assert!(last["error"].as_str().unwrap_or_default().contains("snapshot"), "{last}");
    let _ = curl.kill();
    let _ = curl.wait();
    cluster.wait_for_convergence(Duration::from_secs(30));
    let (_, metrics) = cluster.get(follower, "/metrics");
    let installed =
        metrics.as_str().unwrap_or_default().lines().any(|l| {
            l.strip_prefix("rdb_snapshots_installed_total ").is_some_and(|n| n.trim() != "0")
        });
    assert!(installed, "the follower installed no snapshot");

    // Resuming from before the snapshot is a 410 naming the oldest revision
    // kept; from there, the watch serves again.
    let resume = json!({"collection": "s", "from_revision": last_seen + 1, "wait_ms": 0});
    let (status, gone) = cluster.command(follower, &watch(resume));
    assert_eq!(status, 410, "{gone}");
    let oldest = gone["oldest_revision"].as_u64().expect("oldest_revision");
    assert!(oldest > last_seen + 1, "{gone}");
    assert_eq!(cluster.command(leader, &common::put("s", "after", "v")).0, 200);
    let again = json!({"collection": "s", "from_revision": oldest, "wait_ms": 5_000});
    let (status, answer) = cluster.command(follower, &watch(again));
    assert_eq!(status, 200, "{answer}");
    let events = answer["events"].as_array().expect("events");
    assert!(events.iter().any(|e| e["key"] == "after"), "{answer}");
}
