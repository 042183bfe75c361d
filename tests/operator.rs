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
    // What the alerts and the dashboard query, a node exposes.
    for file in ["prometheus-rules.yml", "grafana-dashboard.json"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(file);
        let deployed = std::fs::read_to_string(path).expect("a deploy file");
        for name in metric_names(&deployed) {
            // A sample, or (for a labelled family with no samples yet) its
            // TYPE line.
            let exposed =
                text.contains(&format!("\n{name}")) || text.contains(&format!("# TYPE {name} "));
            assert!(exposed, "{file} uses {name}, not in /metrics");
        }
    }
}

/// The `rdb_*` and `process_*` metric names in `text`.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for prefix in ["rdb_", "process_"] {
        for (at, _) in text.match_indices(prefix) {
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
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
    // The follower refuses the put if its state already shows the data past
    // the guard, else the leader does: one refusal, counted where it was
    // made.
    let mut refusals = 0;
    for id in 1..=3 {
        let (_, metrics) = cluster.get(id, "/metrics");
        let metrics = metrics.as_str().expect("text");
        assert!(metrics.contains("rdb_alarm{alarm=\"NOSPACE\"} 1"), "node {id}: {metrics}");
        let needle = "rdb_proposals_failed_total{reason=\"no_space\"} ";
        let line = metrics.lines().find(|l| l.starts_with(needle)).expect("the counter");
        refusals += line[needle.len()..].parse::<u64>().expect("a count");
    }
    assert_eq!(refusals, 1, "one put refused, on the follower or the leader");
    // Reads and deletes still work; the CLI says why a put cannot.
    assert_eq!(cluster.command(leader, &common::get("fill", "k0000")).0, 200);
    let endpoint = cluster.nodes[usize::from(leader) - 1].client_url();
    let (code, _, err) = rdb(&["put", "fill", "more", "x", "--endpoints", &endpoint]);
    assert_eq!(code, 1, "refused, not unavailable: {err}");
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

/// Starts a one-node cluster with `args` and `env`, stderr into `log`;
/// waits for the line saying the API is up (a warning-free start logs it at
/// info), then SIGTERMs it; the log's text.
fn serve_and_read_log(
    base: u16,
    log: &std::path::Path,
    args: &[&str],
    env: &[(&str, String)],
) -> String {
    let dir = tempfile::tempdir().expect("a temp dir");
    let stderr = std::fs::File::create(log).expect("a log file");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_rdb"));
    command
        .args(["serve", "--id", "1", "--peers", &format!("1=127.0.0.1:{}", base + 51)])
        .args(["--http", &format!("127.0.0.1:{}", base + 1)])
        .arg("--data-dir")
        .arg(dir.path())
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .stdout(std::process::Stdio::null())
        .stderr(stderr);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("rdb starts");
    let text = wait_until(
        "the start logged",
        || std::fs::read_to_string(log).unwrap_or_default(),
        |text| text.contains("API on"),
    );
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = wait_until("the node to stop", || child.try_wait().ok().flatten(), Option::is_some);
    text
}

#[test]
fn log_lines_carry_priorities_for_journald_and_json_for_shippers() {
    use std::os::unix::fs::MetadataExt as _;
    let base = common::ports::base("operator::logs");
    let dir = tempfile::tempdir().expect("a temp dir");
    // As systemd does: JOURNAL_STREAM names stderr's device and inode.
    let journal = dir.path().join("journal.log");
    std::fs::write(&journal, b"").expect("a file");
    let meta = std::fs::metadata(&journal).expect("metadata");
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let text = serve_and_read_log(base, &journal, &[], &[("JOURNAL_STREAM", stream)]);
    let started = text.lines().find(|l| l.contains("API on")).expect("the start line");
    assert!(started.starts_with("<6>node 1: API on"), "{text}");
    // Another file than stderr: the variable was inherited, not meant for
    // this process; plain text lines.
    let other = dir.path().join("other.log");
    let text = serve_and_read_log(base, &other, &[], &[("JOURNAL_STREAM", "1:2".into())]);
    assert!(text.lines().all(|l| l.starts_with('[')), "{text}");
    let json = dir.path().join("json.log");
    let text = serve_and_read_log(base, &json, &["--log-format", "json"], &[]);
    for line in text.lines() {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(entry["ts"].is_string() && entry["target"].is_string(), "{line}");
    }
    assert!(text.contains("\"level\":\"info\",\"msg\":\"node 1: API on"), "{text}");
}

#[test]
fn a_saved_snapshot_restores_a_whole_cluster() {
    let mut cluster = TestCluster::start(3, common::ports::base("operator::snapshot"), &[]);
    let leader = cluster.wait_for_leader(WAIT);
    // Values that do not compress, so that the file (> 1 MiB) is streamed.
    let mut rng = fastrand::Rng::with_seed(7);
    for key in 0..400 {
        let value: String = (0..4096).map(|_| rng.alphanumeric()).collect();
        assert_eq!(
            cluster.command(leader, &common::put("c", &format!("k{key:03}"), &value)).0,
            200
        );
    }
    let before = cluster.contents(leader, "c");
    let backup = tempfile::tempdir().expect("a temp dir");
    let file = backup.path().join("backup.lz4");
    let file_arg = file.to_str().expect("utf-8");
    // A dead endpoint first: the next one serves it.
    let endpoints = format!("http://127.0.0.1:9,{}", cluster.nodes[0].client_url());
    let (code, out, err) =
        rdb(&["snapshot", "save", file_arg, "--endpoints", &endpoints, "--json"]);
    assert_eq!(code, 0, "{err}");
    let saved: Value = serde_json::from_str(&out).expect("JSON");
    assert!(saved["file_bytes"].as_u64().is_some_and(|b| b > 1 << 20), "{saved}");
    assert_eq!(saved["members"].as_array().map(Vec::len), Some(3), "{saved}");
    assert!(!backup.path().join("backup.lz4.part").exists());
    let (code, out, _) = rdb(&["snapshot", "status", file_arg]);
    assert!(code == 0 && out.contains("verified"), "{out}");
    // A directory for FILE is refused up front (it used to fail at the
    // rename, after the whole download).
    let dir_arg = backup.path().to_str().expect("utf-8");
    let (code, _, err) = rdb(&["snapshot", "save", dir_arg, "--endpoints", &endpoints]);
    assert!(code == 2 && err.contains("is a directory"), "{code} {err}");

    // Every node lost; each data directory restored from the one file.
    for id in 1..=3 {
        cluster.kill(id);
        let data = cluster.nodes[usize::from(id) - 1].data_dir.clone();
        std::fs::remove_dir_all(&data).expect("wipe");
        let data_arg = data.to_str().expect("utf-8");
        let (code, _, err) = rdb(&["snapshot", "restore", file_arg, "--data-dir", data_arg]);
        assert_eq!(code, 0, "{err}");
        let (code, _, err) = rdb(&["snapshot", "restore", file_arg, "--data-dir", data_arg]);
        assert!(code == 2 && err.contains("not empty"), "a second restore: {code} {err}");
    }
    for id in 1..=3 {
        cluster.restart(id);
    }
    let leader = cluster.wait_for_leader(WAIT);
    for id in 1..=3 {
        assert!(cluster.contents(id, "c") == before, "node {id} after the restore");
    }
    assert_eq!(cluster.command(leader, &common::put("c", "new", "v")).0, 200);

    // A damaged file is refused, by status and by restore.
    let mut bytes = std::fs::read(&file).expect("the backup");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    let damaged = backup.path().join("damaged.lz4");
    std::fs::write(&damaged, bytes).expect("a file");
    let damaged_arg = damaged.to_str().expect("utf-8");
    let (code, _, err) = rdb(&["snapshot", "status", damaged_arg]);
    assert!(code == 1 && err.contains("not a valid snapshot"), "{code} {err}");
    let fresh = backup.path().join("fresh");
    let (code, _, _) =
        rdb(&["snapshot", "restore", damaged_arg, "--data-dir", fresh.to_str().expect("utf-8")]);
    assert!(code == 1 && !fresh.exists(), "nothing restored from a damaged file");
}

/// Every file under `dir` with its length and modification time.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("a directory") {
            let entry = entry.expect("an entry");
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                out.push((entry.path(), meta.len(), meta.modified().expect("mtime")));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn inspect_reads_a_data_directory_without_changing_it() {
    let mut cluster = TestCluster::start(3, common::ports::base("operator::inspect"), &[]);
    let leader = cluster.wait_for_leader(WAIT);
    for key in 0..30 {
        let value = format!("value {key}");
        assert_eq!(
            cluster.command(leader, &common::put("fruit", &format!("k{key:02}"), &value)).0,
            200
        );
    }
    assert_eq!(cluster.command(leader, &common::put("veg", "leek", "green")).0, 200);
    assert_eq!(cluster.command_to(leader, "/admin/snapshot").0, 200);
    cluster.wait_for_convergence(WAIT);
    let dir = cluster.nodes[usize::from(leader) - 1].data_dir.clone();
    let dir_arg = dir.to_str().expect("utf-8").to_string();
    let inspect = |args: &[&str]| -> (i32, String, String) {
        let all: Vec<&str> =
            ["inspect", dir_arg.as_str()].iter().copied().chain(args.iter().copied()).collect();
        rdb(&all)
    };
    let stats = inspect_beside_a_running_node(&inspect);
    // Stopped: every command leaves every file as it was.
    cluster.kill(leader);
    let before = files_under(&dir);
    for args in [
        &["stats"][..],
        &["collections"],
        &["keys", "fruit"],
        &["get", "veg", "leek"],
        &["wal"],
        &["check"],
    ] {
        assert_eq!(inspect(args).0, 0, "{args:?}");
    }
    assert_eq!(files_under(&dir), before, "inspect changed the data directory");

    damage_is_found_and_named(&inspect, &stats, &dir);
}

/// Runs `rdb inspect DIR` with the arguments.
type Inspect<'a> = &'a dyn Fn(&[&str]) -> (i32, String, String);

/// Every view, beside the running node; the stats.
fn inspect_beside_a_running_node(inspect: Inspect<'_>) -> Value {
    let (code, out, err) = inspect(&["stats", "--json"]);
    assert_eq!(code, 0, "{err}");
    let stats: Value = serde_json::from_str(&out).expect("JSON");
    let fruit = &stats["state"]["collections"][0];
    assert_eq!(
        (fruit["name"].as_str(), fruit["keys"].as_u64()),
        (Some("fruit"), Some(30)),
        "{stats}"
    );
    assert!(stats["state"]["applied_index"].as_u64().is_some_and(|i| i >= 32), "{stats}");
    assert!(stats["wal"]["last_index"].as_u64().is_some_and(|i| i >= 32), "{stats}");
    assert_eq!(stats["snapshots"].as_array().map(Vec::len), Some(1), "{stats}");
    assert_eq!(inspect(&["collections"]).1, "fruit\nveg");
    assert_eq!(
        inspect(&["keys", "fruit", "--prefix", "k2", "--limit", "2"]).1,
        "k20\tvalue 20\nk21\tvalue 21\n(more: repeat with --start set to the last key, which comes again)"
    );
    assert_eq!(inspect(&["get", "veg", "leek"]), (0, "leek\tgreen".into(), String::new()));
    assert_eq!(inspect(&["get", "veg", "kale"]).0, 1);
    // 1: the first leader's entry; 2: it raises the cluster version.
    let (code, out, _) = inspect(&["wal", "--from", "2", "--limit", "2", "--json"]);
    let wal: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(code, 0);
    assert_eq!(wal["entries"][0]["entry"]["action"], "set cluster version", "{wal}");
    assert_eq!(wal["entries"][1]["index"], 3, "{wal}");
    assert_eq!(wal["entries"][1]["entry"]["payload"]["key"], "k00", "{wal}");
    assert_eq!(inspect(&["check"]).0, 0);

    stats
}

/// A damaged snapshot, then a damaged state file: exit 1 naming the file.
fn damage_is_found_and_named(inspect: Inspect<'_>, stats: &Value, dir: &std::path::Path) {
    let snapshot = stats["snapshots"][0]["file"].as_str().expect("a file").to_string();
    let mut bytes = std::fs::read(&snapshot).expect("the snapshot");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&snapshot, bytes).expect("damaged");
    let (code, _, err) = inspect(&["check"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("damaged") && err.contains("state_"), "{err}");
    std::fs::remove_file(&snapshot).expect("removed");
    let state = dir.join("state").join("state.db");
    let mut bytes = std::fs::read(&state).expect("the state file");
    for byte in &mut bytes[3 * 4096..] {
        *byte ^= 0x5a;
    }
    std::fs::write(&state, bytes).expect("damaged");
    let (code, _, err) = inspect(&["check"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("state.db"), "{err}");
}

/// A rolling upgrade rehearsed: node 3 reports an older binary's cluster
/// version (1), so the cluster stays at 1: no revisions, and cas on a
/// revision is refused with 503 saying why. Node 3 restarted as this binary
/// lets the leader raise the version by itself; revisions start, every
/// replica holds the same items, and a collection made by key from then on
/// keeps no value index while the older one keeps its own.
#[test]
fn the_cluster_version_rises_once_every_member_supports_it() {
    let base = common::ports::base("operator::cluster_version");
    let old = |id: u16| match id {
        3 => vec![(rdb::node::CLUSTER_VERSION_MAX_VAR.to_string(), "1".to_string())],
        _ => Vec::new(),
    };
    let mut cluster = TestCluster::start_with_env(3, base, old);
    let leader = cluster.wait_for_leader_of(&[1, 2], WAIT);
    let (status, put) = cluster.command(leader, &common::put("c", "k", "v1"));
    assert_eq!((status, put["mod_revision"].as_u64()), (200, Some(0)), "no revisions yet: {put}");
    let cas = json!({"action": "cas", "payload": {"collection": "c", "key": "k",
                                                  "expected_revision": 0, "value": "v"}});
    let (status, refused) = cluster.command(leader, &cas);
    assert_eq!(status, 503, "{refused}");
    assert!(refused["error"].as_str().is_some_and(|e| e.contains("version 1")), "{refused}");
    // Still 1 after several upgrade checks.
    std::thread::sleep(rdb::node::UPGRADE_CHECK_INTERVAL * 4);
    assert_eq!(cluster.status(leader).expect("status")["cluster_version"], 1);

    cluster.kill(3);
    cluster.nodes[2].env.clear();
    cluster.restart(3);
    let leader = cluster.wait_for_leader(WAIT); // waits for version 2 on all
                                                // An item written at version 1 has no known creation: 0, as on every
                                                // replica; its next write has a revision.
    let (status, put) = cluster.command(leader, &common::put("c", "k", "v2"));
    let revision = put["mod_revision"].as_u64().expect("a revision");
    assert!(status == 200 && revision > 0 && put["create_revision"] == 0, "{put}");
    let (_, put) = cluster.command(leader, &common::put("c", "fresh", "v"));
    let fresh = put["create_revision"].as_u64().expect("a revision");
    assert!(fresh > revision && put["mod_revision"] == fresh && put["version"] == 1, "{put}");
    let cas = json!({"action": "cas", "payload": {"collection": "c", "key": "k",
                                                  "expected_revision": revision, "value": "v3"}});
    assert_eq!(cluster.command(leader, &cas).0, 200);
    cluster.wait_for_convergence(WAIT);
    let contents = cluster.contents(1, "c");
    for id in 2..=3 {
        assert_eq!(cluster.contents(id, "c"), contents, "node {id}");
    }
    for id in 1..=3 {
        let (_, read) = cluster.command(
            id,
            &json!({"action": "get", "payload": {
            "collection": "c", "key": "k", "consistency": "serializable"}}),
        );
        assert_eq!(read["version"], 2, "node {id}: {read}");
        assert_eq!(read["create_revision"], 0, "node {id}: {read}");
    }
    // "c", made by a key-addressed put at version 1, keeps its value index
    // (kept up to date by the cas since); a collection made by key at
    // version 3 keeps none.
    let by_value = |collection: &str, value: &str| json!({"action": "get", "payload": {"collection": collection, "value": value}});
    let (status, found) = cluster.command(leader, &by_value("c", "v3"));
    assert_eq!((status, found["key"].as_str()), (200, Some("k")), "{found}");
    assert_eq!(cluster.command(leader, &common::put("new", "k", "v")).0, 200);
    let (status, refused) = cluster.command(leader, &by_value("new", "v"));
    assert_eq!(status, 400, "{refused}");
    // The older collection's index can be dropped: it then answers alike.
    let drop = json!({"action": "drop value index", "payload": {"collection": "c"}});
    assert_eq!(cluster.command(leader, &drop).0, 200);
    assert_eq!(cluster.command(leader, &by_value("c", "v3")).0, 400);
    assert_eq!(cluster.command(leader, &common::get("c", "k")).1["value"], "v3");
}
