//! `rdb put|get|delete|cas|range|collections|drop` as an operator's script
//! runs them against a real 3-node cluster: the text and `--json` output,
//! the exit codes (0 done, 1 not found or cas mismatch, 2 usage, 3
//! unavailable), a dead endpoint skipped for the next one, and
//! `RDB_ENDPOINTS` instead of the flag.

mod common;

use std::time::Duration;

use common::TestCluster;
use serde_json::Value;

/// Runs `rdb` with `args` (and `env`); its exit code, stdout and stderr.
fn rdb_with(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_rdb"));
    command.args(args).env_remove("RDB_ENDPOINTS");
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().expect("rdb runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim_end().to_string();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// Runs `rdb` against the cluster's `endpoints`.
type Rdb<'a> = &'a dyn Fn(&[&str]) -> (i32, String, String);

#[test]
fn the_key_value_subcommands_answer_with_text_json_and_exit_codes() {
    let base = common::ports::base("cli_kv");
    let cluster = TestCluster::start(3, base, &[]);
    cluster.wait_for_leader(Duration::from_secs(20));
    // Nothing listens on base+9: the client must go on to node 2.
    let endpoints = format!("http://127.0.0.1:{},http://127.0.0.1:{}", base + 9, base + 2);
    let rdb = |args: &[&str]| {
        let all: Vec<&str> = args.iter().copied().chain(["--endpoints", &endpoints]).collect();
        rdb_with(&all, &[])
    };
    puts_and_gets(&rdb);
    compare_and_swap(&rdb);
    revisions(&rdb);
    ranges_deletes_and_drops(&rdb);
    errors(&rdb, base);
}

fn puts_and_gets(rdb: Rdb<'_>) {
    assert_eq!(rdb(&["put", "kv", "color", "blue"]), (0, "color\tblue".into(), String::new()));
    assert_eq!(rdb(&["get", "kv", "color"]), (0, "color\tblue".into(), String::new()));
    let (code, json, _) = rdb(&["get", "kv", "color", "--json", "--consistency", "serializable"]);
    assert_eq!(code, 0);
    let answer: Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(answer["value"], "blue", "{answer}");
    // A value-addressed put prints the key the cluster chose.
    let (code, out, _) = rdb(&["put", "users", "alice"]);
    let (key, value) = out.split_once('\t').expect("KEY<TAB>VALUE");
    assert_eq!((code, key.len(), value), (0, 64, "alice"));
    assert_eq!(rdb(&["get", "users", "--value", "alice"]).1, out);
}

/// Done, then a mismatch naming the current value; on absence likewise.
fn compare_and_swap(rdb: Rdb<'_>) {
    assert_eq!(rdb(&["cas", "kv", "color", "red", "--expected", "blue"]).0, 0);
    let (code, _, err) = rdb(&["cas", "kv", "color", "green", "--expected", "blue"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("\"red\""), "{err}");
    assert_eq!(rdb(&["cas", "kv", "lock", "me", "--absent"]).0, 0);
    assert_eq!(rdb(&["cas", "kv", "lock", "you", "--absent"]).0, 1);
}

/// A cas on the mod_revision a read returned: done once, then a mismatch;
/// a range delete answers how many it removed.
fn revisions(rdb: Rdb<'_>) {
    assert_eq!(rdb(&["put", "rev", "k", "1"]).0, 0);
    let (_, json, _) = rdb(&["get", "rev", "k", "--json"]);
    let read: Value = serde_json::from_str(&json).expect("JSON");
    let revision = read["mod_revision"].as_u64().expect("a mod_revision");
    assert!(revision > 0 && read["version"] == 1, "{read}");
    let revision = revision.to_string();
    let (code, json, err) =
        rdb(&["cas", "rev", "k", "2", "--expected-revision", &revision, "--json"]);
    assert_eq!(code, 0, "{err}");
    let written: Value = serde_json::from_str(&json).expect("JSON");
    assert!(written["mod_revision"].as_u64() > read["mod_revision"].as_u64(), "{written}");
    assert_eq!(
        (written["create_revision"].clone(), written["version"].clone()),
        (read["create_revision"].clone(), 2.into())
    );
    let (code, _, err) = rdb(&["cas", "rev", "k", "3", "--expected-revision", &revision]);
    assert!(code == 1 && err.contains("\"2\""), "stale revision: {code} {err}");
    assert_eq!(rdb(&["cas", "rev", "new", "v", "--expected-revision", "0"]).0, 0);
    assert_eq!(rdb(&["put", "rev", "kk", "v"]).0, 0);
    assert_eq!(rdb(&["delete", "rev", "--prefix", "k"]), (0, "deleted 2".into(), String::new()));
    assert_eq!(rdb(&["range", "rev"]).1, "new\tv");
    assert_eq!(rdb(&["drop", "rev"]).0, 0);
}

fn ranges_deletes_and_drops(rdb: Rdb<'_>) {
    assert_eq!(rdb(&["range", "kv", "--prefix", "co"]).1, "color\tred");
    let (_, out, _) = rdb(&["range", "kv", "--limit", "1"]);
    assert!(out.starts_with("color\tred\n(more"), "{out}");
    assert_eq!(rdb(&["collections"]).1, "kv\nusers");
    assert_eq!(rdb(&["delete", "kv", "color"]).1, "color\tred");
    let (code, _, err) = rdb(&["get", "kv", "color"]);
    assert_eq!((code, err.as_str()), (1, "rdb: key not found"));
    assert_eq!(rdb(&["drop", "users"]).1, "dropped users");
    assert_eq!(rdb(&["drop", "users"]).0, 1);
}

/// Usage errors (the cluster's and the flags'), RDB_ENDPOINTS, no node.
fn errors(rdb: Rdb<'_>, base: u16) {
    let (code, _, err) = rdb(&["put", "", "k", "v"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("collection"), "{err}");
    assert_eq!(rdb(&["cas", "kv", "k", "v"]).0, 2, "--expected or --absent is needed");
    let only_node_3 = format!("http://127.0.0.1:{}", base + 3);
    let (code, out, _) = rdb_with(&["get", "kv", "lock"], &[("RDB_ENDPOINTS", &only_node_3)]);
    assert_eq!((code, out.as_str()), (0, "lock\tme"));
    let dead = format!("http://127.0.0.1:{}", base + 9);
    let (code, _, err) = rdb_with(&["get", "kv", "lock", "--endpoints", &dead], &[]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no endpoint could answer"), "{err}");
}
