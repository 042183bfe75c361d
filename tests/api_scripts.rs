//! The client API as golden scripts: each file in `tests/api_scripts/`
//! drives a fresh 3-node cluster over HTTP, the way curl does, and records
//! each answer (status and JSON body, keys sorted; each 64-hex key chosen
//! by the cluster shown as `<key1>`, `<key2>`, ... and each revision (a
//! Raft log index, which elections shift) as `"<r1>"`, `"<r2>"`, ... in the
//! order the script first sees them, so that the same one reads the same). The format and `RDB_SCRIPTS_REWRITE=1`
//! are `tests/common/golden.rs`'s.
//!
//! Commands (`NODE` is `leader`, `follower`, or a node id):
//!
//! | command | does |
//! |---|---|
//! | `post NODE BODY` | POST /command with BODY (the rest of the line, sent as is) |
//! | `put NODE C K V` / `get NODE C K` / `delete NODE C K` | the key-addressed actions |

mod common;

use std::time::Duration;

use common::TestCluster;
use serde_json::{json, Value};

/// Each script's cluster runs with small limits, to show them.
const ARGS: [&str; 4] = ["--key-bytes-max", "16", "--value-bytes-max", "64"];

/// The node a command names.
fn node(cluster: &TestCluster, word: Option<&&str>) -> Result<u16, String> {
    let leader = || cluster.wait_for_leader(Duration::from_secs(15));
    match word.copied() {
        Some("leader") => Ok(leader()),
        Some("follower") => {
            let leader = leader();
            Ok((1..=3).find(|&id| id != leader).expect("a follower"))
        }
        Some(id) => id.parse().map_err(|_| format!("not a node: {id}")),
        None => Err("a node is needed".into()),
    }
}

/// The status and the body, with the keys and revisions the cluster chose
/// masked.
fn answer(masks: &mut Masks, (status, mut body): (u16, Value)) -> String {
    mask_revisions(&mut masks.revisions, &mut body);
    format!("{status} {}", mask_keys(&mut masks.keys, &body.to_string()))
}

/// What the cluster chose, in the order a script first saw it.
#[derive(Default)]
struct Masks {
    keys: Vec<String>,
    revisions: Vec<u64>,
}

/// The revision fields: Raft log indexes, which depend on elections.
const REVISION_FIELDS: [&str; 3] = ["revision", "create_revision", "mod_revision"];

/// Replaces every revision number but 0 with `"<rN>"`, N its place in
/// `seen` (to which a new one is added), at any depth of `body`.
fn mask_revisions(seen: &mut Vec<u64>, body: &mut Value) {
    match body {
        Value::Object(fields) => {
            for (name, value) in fields.iter_mut() {
                match value.as_u64() {
                    Some(n) if n != 0 && REVISION_FIELDS.contains(&name.as_str()) => {
                        let at = seen.iter().position(|&r| r == n).unwrap_or_else(|| {
                            seen.push(n);
                            seen.len() - 1
                        });
                        *value = Value::String(format!("<r{}>", at + 1));
                    }
                    _ => mask_revisions(seen, value),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| mask_revisions(seen, item)),
        _ => {}
    }
}

/// Replaces each run of exactly 64 lowercase hex digits with `<keyN>`, N
/// its place in `keys` (the keys seen so far, to which a new one is added).
fn mask_keys(keys: &mut Vec<String>, text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    let (mut out, mut at) = (String::new(), 0);
    while at < bytes.len() {
        let run = bytes[at..].iter().take_while(|&&b| hex(b)).count();
        if run == 64 {
            let key = &text[at..at + run];
            let n = keys.iter().position(|k| k == key).unwrap_or_else(|| {
                keys.push(key.to_string());
                keys.len() - 1
            });
            out.push_str(&format!("<key{}>", n + 1));
        } else {
            out.push_str(&text[at..at + run.max(1)]);
        }
        at += run.max(1);
    }
    out
}

fn run(cluster: &TestCluster, keys: &mut Masks, line: &str) -> Result<String, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let id = node(cluster, words.get(1))?;
    let field = |n: usize| words.get(n).copied().ok_or(format!("too few words: {line}"));
    let payload = |action: &str, value: Option<&str>| -> Result<Value, String> {
        let mut payload = json!({"collection": field(2)?, "key": field(3)?});
        if let Some(value) = value {
            payload["value"] = json!(value);
        }
        Ok(json!({"action": action, "payload": payload}))
    };
    match words.first().copied() {
        Some("post") => {
            let body = line.splitn(3, ' ').nth(2).ok_or("no body")?;
            Ok(answer(keys, cluster.post_raw(id, body.as_bytes())))
        }
        Some("put") => Ok(answer(keys, cluster.command(id, &payload("put", Some(field(4)?))?))),
        Some("get") => Ok(answer(keys, cluster.command(id, &payload("get", None)?))),
        Some("delete") => Ok(answer(keys, cluster.command(id, &payload("delete", None)?))),
        _ => Err(format!("unknown command: {line}")),
    }
}

#[test]
fn every_script_prints_what_it_expects() {
    let base = common::ports::base("api_scripts");
    let mut failures = Vec::new();
    for path in common::golden::scripts("tests/api_scripts") {
        let cluster = TestCluster::start(3, base, &ARGS);
        cluster.wait_for_leader(Duration::from_secs(15));
        let mut masks = Masks::default();
        if let Err(why) = common::golden::check(&path, |line| run(&cluster, &mut masks, line)) {
            failures.push(why);
        }
        drop(cluster);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn revisions_are_masked_alike_at_any_depth_and_zero_is_kept() {
    let mut seen = Vec::new();
    let mut body = json!({"revision": 9, "mod_revision": 7, "version": 2, "create_revision": 0,
                          "items": [{"mod_revision": 9, "value": "7"}]});
    mask_revisions(&mut seen, &mut body);
    assert_eq!(
        body,
        json!({"revision": "<r1>", "mod_revision": "<r2>", "version": 2,
                            "create_revision": 0, "items": [{"mod_revision": "<r1>", "value": "7"}]})
    );
}

#[test]
fn keys_the_cluster_chose_are_masked_and_nothing_else() {
    let (one, two) = ("ab".repeat(32), "cd".repeat(32));
    let mut keys = Vec::new();
    let text = format!("\"{one}\" {two} {one}");
    assert_eq!(mask_keys(&mut keys, &text), "\"<key1>\" <key2> <key1>");
    let short = "ab".repeat(31);
    let text = format!("{short} {one}0");
    assert_eq!(mask_keys(&mut keys, &text), text, "not 64 digits");
}
