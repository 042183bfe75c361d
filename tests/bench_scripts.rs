//! The benchmark scripts docs/PERFORMANCE.md gives commands for, run as a
//! reader runs them (on the debug binary, for a second each): `ab-bench.sh`
//! with the state files on tmpfs prints its put and get lines and one line
//! of sync means per node, and leaves nothing in /dev/shm;
//! `fsync-latency.py` prints both of its files' latencies;
//! `snapshots.sh` on rdb alone (no etcd, nothing built) prints its table
//! of runs with backups from the leader and a follower and a learner's
//! join.
//!
//! The cluster scripts start their clusters on their own fixed ports (HTTP
//! 18081-18084, peers 19081-19084), outside the range the other tests
//! draw from; the tests here that start one take [`SCRIPT_PORTS`] first.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

/// Held while a script's cluster holds the fixed ports.
static SCRIPT_PORTS: Mutex<()> = Mutex::new(());

/// The names in /dev/shm that `rdb-cluster.sh` makes.
fn bench_dirs_in_shm() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/dev/shm") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("rdb-bench."))
        .collect()
}

/// Runs a cluster script from the repository's root with `envs`; its
/// standard output, once it has exited with 0.
fn run_cluster_script(script: &str, args: &[&str], envs: &[(&str, &str)]) -> String {
    let out = Command::new(script)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("bash runs the script");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script}: {text}{errors}");
    text
}

/// The number before `unit` in `line`'s words, e.g. `ops/s`.
fn number_before(line: &str, unit: &str) -> f64 {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == unit).unwrap_or_else(|| panic!("{unit} in {line}"));
    words[at - 1].parse().unwrap_or_else(|_| panic!("a number before {unit} in {line}"))
}

#[test]
fn ab_bench_prints_puts_gets_and_each_nodes_sync_means() {
    if !common::have_tool("curl") || !common::have_tool("python3") {
        return;
    }
    if !Path::new("/dev/shm").is_dir() {
        assert!(std::env::var("RDB_REQUIRE_TOOLS").is_err(), "/dev/shm is required");
        eprintln!("SKIPPED: no /dev/shm");
        return;
    }
    let _ports = SCRIPT_PORTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = bench_dirs_in_shm();
    let rdb = env!("CARGO_BIN_EXE_rdb");
    let text = run_cluster_script(
        "benches/cluster/ab-bench.sh",
        &[rdb, "1"],
        &[("LOADER", rdb), ("PLACEMENT", "state")],
    );

    let put = text.lines().find(|l| l.starts_with("put ")).expect("a put line");
    assert!(number_before(put, "ops/s") > 0.0, "{put}");
    let get = text.lines().find(|l| l.starts_with("get ")).expect("a get line");
    assert!(number_before(get, "ops/s") > 0.0, "{get}");
    let nodes: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with("node ")).collect();
    assert_eq!(nodes.len(), 3, "one line per node: {text}");
    assert_eq!(nodes.iter().filter(|l| l.contains("(leader)")).count(), 1, "{text}");
    for line in nodes {
        let wal = line.split("WAL sync ").nth(1).expect("a WAL sync mean");
        let mean: f64 = wal.split_whitespace().next().unwrap().parse().expect("a mean in ms");
        assert!(mean > 0.0, "every node synced its WAL: {line}");
        assert!(line.contains("state commit ") && line.contains("state sync "), "{line}");
    }
    assert_eq!(bench_dirs_in_shm(), before, "the tmpfs directory is removed on exit");
}

#[test]
fn fsync_latency_prints_both_files() {
    if !common::have_tool("python3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("python3")
        .args(["benches/fsync-latency.py", dir.path().to_str().unwrap(), "0.2"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3 runs the script");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for name in ["append", "zeroed"] {
        let line = text.lines().find(|l| l.starts_with(name)).expect(name);
        assert!(number_before(line, "syncs/s") > 0.0, "{line}");
    }
    let left = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(left, 0, "the script removes its files");
}

#[test]
fn snapshots_sh_times_backups_and_a_join_on_rdb_alone() {
    if !common::have_tool("curl") || !common::have_tool("python3") {
        return;
    }
    let _ports = SCRIPT_PORTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let text = run_cluster_script(
        "benches/cluster/snapshots.sh",
        &["2000", "3"],
        &[("ONLY_RDB", "1"), ("RDB_BIN", env!("CARGO_BIN_EXE_rdb"))],
    );

    // | system | during the run | puts/s | p50 | p99 | p99.9 | max | errors | CPU | event s | MB |
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with("| rdb |"))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    let events: Vec<&str> = rows.iter().map(|r| r[1]).collect();
    let expected = [
        "nothing",
        "a backup from the leader",
        "a backup from a follower",
        "nothing",
        "a learner joins",
    ];
    assert_eq!(events, expected, "{text}");
    for row in &rows {
        let puts: f64 = row[2].replace(',', "").parse().expect("puts/s");
        assert!(puts > 0.0 && row[7] == "0", "puts and no errors: {row:?}");
        let timed = row[9].split_whitespace().next().and_then(|s| s.parse::<f64>().ok());
        assert_eq!(timed.is_some(), row[1] != "nothing", "an event's time: {row:?}");
    }
    for backup in &rows[1..3] {
        let megabytes: f64 = backup[10].parse().expect("the backup's size");
        assert!(megabytes > 0.0, "{backup:?}");
    }
}
