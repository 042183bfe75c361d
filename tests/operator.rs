//! The operator's view of a real 3-node cluster: `rdb status` (one table
//! from any endpoint, a dead member shown as unreachable), the signals
//! /metrics adds for dashboards and alerts, and the space guard
//! (`--state-bytes-max`: puts refused with 507 and the NOSPACE alarm raised
//! while reads and deletes still work, cleared once deletes free space).

mod common;

use std::time::{Duration, Instant};

use common::TestCluster;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// Runs `rdb` with `args`; its exit code, stdout and stderr.
fn rdb(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rdb"))
        .args(args)
        .env_remove("RDB_ENDPOINTS")
        .output()
        .expect("rdb runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim_end().to_string();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// Polls until `check` holds or WAIT passes; the last value seen.
fn wait_until<T: std::fmt::Debug>(
    what: &str,
    mut probe: impl FnMut() -> T,
    check: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = probe();
        if check(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: still {value:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn status_shows_every_member_from_one_endpoint() {
    let mut cluster = TestCluster::start(3, common::ports::base("operator::status"), &[]);
    let leader = cluster.wait_for_leader(WAIT);
    cluster.wait_for_convergence(WAIT);
    let endpoint = cluster.nodes[0].client_url();
    let (code, table, err) = rdb(&["status", "--endpoints", &endpoint]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "header, three members, leader line: {table}");
    for (id, line) in (1..=3).zip(&lines[1..4]) {
        let node = &cluster.nodes[id - 1];
        assert!(line.starts_with(&format!("{id} ")), "{line}");
        assert!(line.contains(&node.peer_addr()) && line.contains(&node.client_url()), "{line}");
        assert!(line.ends_with("yes"), "{line}");
        assert_eq!(line.contains("leader*"), id == usize::from(leader), "{table}");
    }
    assert!(lines[4].starts_with(&format!("* leader: {leader} ")), "{table}");

    let victim = if leader == 3 { 2 } else { 3 };
    cluster.kill(victim);
    let json = wait_until(
        "the killed member unreachable",
        || rdb(&["status", "--json", "--endpoints", &endpoint]).1,
        |out| {
            let answer: Value = serde_json::from_str(out).unwrap_or_default();
            answer["members"][usize::from(victim) - 1]["reachable"] == false
        },
    );
    let answer: Value = serde_json::from_str(&json).expect("JSON");
    let alive = &answer["members"][usize::from(leader) - 1];
    assert_eq!(alive["status"]["role"], "leader", "{answer}");
    assert!(alive["status"]["version"].is_string() && alive["status"]["wal_bytes"].is_u64());
    let dead = &answer["members"][usize::from(victim) - 1];
    assert!(dead["status"].is_null() && dead["error"].is_string(), "{dead}");
    let (_, table, _) = rdb(&["status", "--endpoints", &endpoint]);
    let row = table.lines().nth(usize::from(victim)).expect("a row");
    assert!(row.contains(" no: "), "{table}");
}

#[test]
fn metrics_carry_the_operator_signals() {
    let cluster = TestCluster::start(3, common::ports::base("operator::metrics"), &[]);
    let leader = cluster.wait_for_leader(WAIT);
    assert_eq!(cluster.command(leader, &common::put("m", "k", "v")).0, 200);
    let (status, text) = cluster.get(leader, "/metrics");
    assert_eq!(status, 200);
    let text = text.as_str().expect("text").to_string();
    let value = |name: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}"));
        line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("a number")
    };
    assert!(value("rdb_raft_leader_changes_seen_total") >= 1.0);
    assert!(value("rdb_wal_bytes") > 0.0 && value("rdb_wal_segments") >= 1.0);
    assert!(value("rdb_state_bytes") >= value("rdb_state_used_bytes"));
    assert!(value("rdb_state_used_bytes") > 0.0);
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_open_fds") > 3.0 && value("process_start_time_seconds") > 1.6e9);
    assert!(value("rdb_peer_round_trip_seconds_count{peer=") > 0.0, "the leader sends to peers");
    assert!(text.contains("rdb_build_info{version=\""), "{text}");
    assert_eq!(value("rdb_alarm{alarm=\"NOSPACE\"}"), 0.0);
    let (_, status) = cluster.get(leader, "/status");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
}

/// 4 KiB values, so that a few dozen fill a 256 KiB guard.
fn big_put(key: usize) -> Value {
    json!({"action": "put", "payload": {"collection": "fill", "key": format!("k{key:04}"),
                                        "value": "x".repeat(4096)}})
}

#[test]
fn the_space_guard_refuses_puts_until_deletes_free_space() {
    let cluster = TestCluster::start(
        3,
        common::ports::base("operator::space_guard"),
        &["--state-bytes-max", "262144"],
    );
    let leader = cluster.wait_for_leader(WAIT);
    let follower = if leader == 1 { 2 } else { 1 };
    let mut stored = 0;
    let refusal = loop {
        assert!(stored < 200, "no refusal after {stored} puts of 4 KiB");
        let (status, body) = cluster.command(follower, &big_put(stored));
        match status {
            200 => stored += 1,
            507 => break body,
            other => panic!("put {stored}: {other} {body}"),
        }
    };
    // Each value takes two pages (8 KiB, the value and its overflow
    // header), so about 30 fit; refused only once past the guard.
    assert!(stored >= 20, "refused early, after {stored} puts");
    wait_until(
        "the status to show the live data past the guard",
        || cluster.status(follower).and_then(|s| s["state_used_bytes"].as_u64()),
        |used| used.is_some_and(|used| used > 262_144),
    );
    assert!(refusal["error"].as_str().is_some_and(|e| e.contains("state-bytes-max")), "{refusal}");
    for id in 1..=3 {
        let alarms = wait_until(
            "NOSPACE in /status",
            || cluster.status(id).map(|s| s["alarms"].clone()),
            |alarms| alarms.as_ref().is_some_and(|a| a == &json!(["NOSPACE"])),
        );
        assert!(alarms.is_some());
    }
    let (_, metrics) = cluster.get(follower, "/metrics");
    let metrics = metrics.as_str().expect("text");
    assert!(metrics.contains("rdb_alarm{alarm=\"NOSPACE\"} 1"), "{metrics}");
    assert!(metrics.contains("rdb_proposals_failed_total{reason=\"no_space\"} 1"), "{metrics}");
    // Reads and deletes still work; the CLI says why a put cannot.
    assert_eq!(cluster.command(leader, &common::get("fill", "k0000")).0, 200);
    let endpoint = cluster.nodes[usize::from(leader) - 1].client_url();
    let (code, _, err) = rdb(&["put", "fill", "more", "x", "--endpoints", &endpoint]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("507") && err.contains("NOSPACE"), "{err}");
    for key in 0..stored {
        let delete = json!({"action": "delete", "payload": {"collection": "fill",
                                                            "key": format!("k{key:04}")}});
        assert_eq!(cluster.command(leader, &delete).0, 200, "delete {key}");
    }
    wait_until(
        "the alarm cleared",
        || cluster.status(leader).map(|s| s["alarms"].clone()),
        |alarms| alarms.as_ref().is_some_and(|a| a == &json!([])),
    );
    assert_eq!(cluster.command(leader, &big_put(0)).0, 200, "puts work again");
}
