//! The benchmark scripts docs/PERFORMANCE.md gives commands for, run as a
//! reader runs them (on the debug binary, for a second each): `ab-bench.sh`
//! with the state files on tmpfs prints its put and get lines and one line
//! of sync means per node, and leaves nothing in /dev/shm;
//! `fsync-latency.py` prints both of its files' latencies.
//!
//! `ab-bench.sh` starts its cluster on its own fixed ports (HTTP
//! 18081-18083, peers 19081-19083), outside the range the other tests
//! draw from; this is the only test that starts it.

mod common;

use std::path::Path;
use std::process::Command;

/// The names in /dev/shm that `rdb-cluster.sh` makes.
fn bench_dirs_in_shm() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/dev/shm") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("rdb-bench."))
        .collect()
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
    let before = bench_dirs_in_shm();
    let rdb = env!("CARGO_BIN_EXE_rdb");
    let out = Command::new("benches/cluster/ab-bench.sh")
        .args([rdb, "1"])
        .env("LOADER", rdb)
        .env("PLACEMENT", "state")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("bash runs the script");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}{errors}");

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
