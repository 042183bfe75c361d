//! The replicated state machine in process: parsing refuses bad requests
//! with the right status, and applying the same commands on two replicas
//! gives the same answers and the same state, which matches a model of the
//! key-addressed data.

use std::collections::BTreeMap;
use std::sync::Arc;

use rdb::kv::{apply, Command, Limits, Missing, Outcome, Query, Reply, Request};
use rdb::storage::btree::{Db, Durability, KeyRange, USER_META_BYTES};
use rdb::storage::disk::RealDisk;
use serde_json::json;

fn open(dir: &tempfile::TempDir, name: &str) -> Db {
    Db::open(Arc::new(RealDisk), dir.path().join(name)).expect("state file")
}

fn status_of(body: serde_json::Value) -> u16 {
    match Request::parse(body.to_string().as_bytes(), &Limits::default()) {
        Ok(_) => 200,
        Err(reply) => reply.status,
    }
}

/// The error message for raw `body`, or None if it parses.
fn refusal(body: &str, limits: &Limits) -> Option<(u16, String)> {
    let reply = Request::parse(body.as_bytes(), limits).err()?;
    Some((reply.status, reply.body["error"].as_str().unwrap_or_default().to_string()))
}

/// One well-formed request per action, with every field it takes.
const EVERY_ACTION: &[&str] = &[
    r#""action":"put","payload":{"collection":"c","key":"k","value":"v""#,
    r#""action":"get","payload":{"collection":"c","key":"k","consistency":"serializable""#,
    r#""action":"get","payload":{"collection":"c","value":"v""#,
    r#""action":"delete","payload":{"collection":"c","key":"k""#,
    r#""action":"cas","payload":{"collection":"c","key":"k","expected":null,"value":"v""#,
    r#""action":"drop collection","payload":{"collection":"c""#,
    r#""action":"list collections","payload":{"consistency":"linearizable""#,
    r#""action":"range","payload":{"collection":"c","start":"a","end":"z","prefix":"b","limit":5,"consistency":"serializable""#,
];

#[test]
fn unknown_and_duplicate_fields_are_refused_by_name_for_every_action() {
    let limits = Limits::default();
    for action in EVERY_ACTION {
        assert_eq!(refusal(&format!("{{{action}}}}}"), &limits), None, "{action}");
        // A misspelt payload field.
        let (status, error) =
            refusal(&format!("{{{action},\"prefx\":\"a\"}}}}"), &limits).expect("refused");
        assert_eq!(status, 400, "{action}");
        assert!(error.contains("unknown field \"prefx\""), "{action}: {error}");
        // A misspelt top-level field.
        let (status, error) =
            refusal(&format!("{{{action}}},\"paylod\":{{}}}}"), &limits).expect("refused");
        assert!(status == 400 && error.contains("\"paylod\""), "{action}: {error}");
        // A payload field given twice.
        let (status, error) =
            refusal(&format!("{{{action},\"collection\":\"d\"}}}}"), &limits).expect("refused");
        assert_eq!(status, 400, "{action}");
        assert!(error.contains("collection"), "{action}: {error}");
        // The action given twice.
        let twice = format!("{{\"action\":\"get\",{action}}}}}");
        let (status, error) = refusal(&twice, &limits).expect("refused");
        assert!(status == 400 && error.contains("duplicate field \"action\""), "{error}");
    }
    let (_, error) =
        refusal(r#"{"action":"range","payload":{"collection":"c","prefx":"a"}}"#, &limits)
            .expect("refused");
    assert!(error.contains("prefix"), "the refusal lists the fields the action takes: {error}");
}

#[test]
fn key_and_value_limits_are_settings_and_the_413_names_them() {
    let limits = Limits { key_bytes_max: 8, value_bytes_max: 16, ..Limits::default() };
    let put = |key: &str, value: &str| {
        format!(
            r#"{{"action":"put","payload":{{"collection":"c","key":"{key}","value":"{value}"}}}}"#
        )
    };
    assert_eq!(refusal(&put("12345678", &"v".repeat(16)), &limits), None);
    let (status, error) = refusal(&put("123456789", "v"), &limits).expect("refused");
    assert!(
        status == 413 && error.contains("8 bytes") && error.contains("--key-bytes-max"),
        "{error}"
    );
    let (status, error) = refusal(&put("k", &"v".repeat(17)), &limits).expect("refused");
    assert!(
        status == 413 && error.contains("16 bytes") && error.contains("--value-bytes-max"),
        "{error}"
    );
    let range = r#"{"action":"range","payload":{"collection":"c","prefix":"123456789"}}"#;
    assert_eq!(refusal(range, &limits).expect("refused").0, 413);
    // Paging past a key at the limit: start = that key followed by \u0000.
    let page = r#"{"action":"range","payload":{"collection":"c","start":"12345678\u0000"}}"#;
    assert_eq!(refusal(page, &limits), None);
    let past = r#"{"action":"range","payload":{"collection":"c","start":"123456789\u0000"}}"#;
    assert_eq!(refusal(past, &limits).expect("refused").0, 413);
    let cas = r#"{"action":"cas","payload":{"collection":"c","key":"k","expected":"12345678901234567","value":"v"}}"#;
    assert_eq!(refusal(cas, &limits).expect("refused").0, 413);
    // Up to the state file's own key limit when raised.
    let raised = Limits { key_bytes_max: rdb::kv::KEY_BYTES_MAX_LIMIT, ..Limits::default() };
    assert_eq!(refusal(&put(&"k".repeat(rdb::kv::KEY_BYTES_MAX_LIMIT), "v"), &raised), None);
}

#[test]
fn requests_are_checked_before_anything_is_proposed() {
    let ok = [
        json!({"action": "put", "payload": {"collection": "c", "value": "v"}}),
        json!({"action": "put", "payload": {"collection": "c", "key": "k", "value": ""}}),
        json!({"action": "get", "payload": {"collection": "c", "key": "k", "consistency": "serializable"}}),
        json!({"action": "cas", "payload": {"collection": "c", "key": "k", "expected": null, "value": "v"}}),
        json!({"action": "range", "payload": {"collection": "c", "prefix": "a", "limit": 10000}}),
        json!({"action": "list collections"}),
        json!({"action": "drop collection", "payload": {"collection": "c"}}),
    ];
    for body in ok {
        assert_eq!(status_of(body.clone()), 200, "{body}");
    }
    let refused = [
        (json!({"action": "put", "payload": {"collection": "c", "value": ""}}), 400),
        (json!({"action": "put", "payload": {"collection": "c", "key": "", "value": "v"}}), 400),
        (json!({"action": "get", "payload": {"collection": "c"}}), 400),
        (json!({"action": "put", "payload": {"collection": "c", "key": null, "value": "v"}}), 400),
        (json!({"action": "get", "payload": {"collection": "c", "key": null}}), 400),
        (json!({"action": "range", "payload": {"collection": "c", "start": 5}}), 400),
        (json!({"action": "put", "payload": {"collection": "c".repeat(201), "value": "v"}}), 400),
        (
            json!({"action": "put", "payload": {"collection": "c", "key": "k".repeat(1025), "value": "v"}}),
            413,
        ),
        (
            json!({"action": "cas", "payload": {"collection": "c", "key": "k", "expected": 3, "value": "v"}}),
            400,
        ),
        (
            json!({"action": "put", "payload": {"collection": "c", "value": "v".repeat(rdb::kv::VALUE_BYTES_MAX + 1)}}),
            413,
        ),
    ];
    for (body, status) in refused {
        assert_eq!(status_of(body.clone()), status, "{body}");
    }
    // A value-addressed put carries a fresh 64-hex key chosen here.
    let parsed = Request::parse(
        br#"{"action":"put","payload":{"collection":"c","value":"v"}}"#,
        &Limits::default(),
    );
    let Ok(Request::Write(Command::PutValue { key, .. })) = parsed else { panic!("{parsed:?}") };
    assert!(
        key.len() == 64 && key.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
}

/// A seeded random command over a few collections, keys and values.
fn random_command(rng: &mut fastrand::Rng) -> Command {
    let collection = format!("c{}", rng.u8(0..3));
    let key = format!("k{}", rng.u8(0..12));
    let value = format!("v{}", rng.u8(0..6));
    match rng.u8(0..12) {
        0..=3 => Command::PutKey { collection, key, value },
        4..=5 => Command::PutValue { collection, key: format!("{:064x}", rng.u64(..)), value },
        6 => Command::DeleteKey { collection, key },
        7 => Command::DeleteValue { collection, value },
        8..=10 => {
            let expected = rng.bool().then(|| format!("v{}", rng.u8(0..6)));
            Command::Cas { collection, key, expected, value }
        }
        _ => Command::Drop { collection },
    }
}

/// Applies a batch in one transaction, as the apply thread does.
fn apply_batch(db: &Db, commands: &[Command]) -> Vec<Reply> {
    let mut txn = db.begin_write().expect("writer");
    let replies =
        commands.iter().map(|c| Reply::from(apply(&mut txn, c).expect("apply"))).collect();
    txn.commit([0; USER_META_BYTES], Durability::Deferred).expect("commit");
    replies
}

/// Every tree's items, by tree name.
type Dump = BTreeMap<String, Vec<(Vec<u8>, Vec<u8>)>>;

fn dump(db: &Db) -> Dump {
    let txn = db.begin_read();
    let mut out = BTreeMap::new();
    for tree in txn.list_trees().expect("trees") {
        let items = txn
            .range(&tree, &KeyRange::all())
            .expect("range")
            .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("item"))
            .collect();
        out.insert(tree, items);
    }
    out
}

#[test]
fn replicas_applying_the_same_log_agree_with_each_other_and_with_a_model() {
    let dir = tempfile::tempdir().expect("dir");
    let (a, b) = (open(&dir, "a.db"), open(&dir, "b.db"));
    let mut rng = fastrand::Rng::with_seed(0x6b76);
    let mut model: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for round in 0..300 {
        let batch: Vec<Command> = (0..rng.usize(1..20)).map(|_| random_command(&mut rng)).collect();
        // Replica b applies the same entries in different batch sizes.
        let replies = apply_batch(&a, &batch);
        let mut replies_b = Vec::new();
        for chunk in batch.chunks(3) {
            replies_b.extend(apply_batch(&b, chunk));
        }
        assert_eq!(replies, replies_b, "round {round}");
        for (command, reply) in batch.iter().zip(&replies) {
            check_against_model(&mut model, command, reply);
        }
        assert_eq!(dump(&a), dump(&b), "round {round}");
        // Every value found by value is really held by the key returned.
        let txn = a.begin_read();
        for (collection, items) in &model {
            for value in items.values() {
                let query =
                    Query::GetValue { collection: collection.clone(), value: value.clone() };
                let reply = Reply::from(query.run(&txn).expect("query"));
                if reply.status == 200 {
                    let key = reply.body["key"].as_str().expect("key");
                    assert_eq!(items.get(key), Some(value), "value index points at the wrong key");
                }
            }
        }
    }
}

fn check_against_model(
    model: &mut BTreeMap<String, BTreeMap<String, String>>,
    command: &Command,
    reply: &Reply,
) {
    match command {
        Command::PutKey { collection, key, value } => {
            assert_eq!(reply.status, 200);
            model.entry(collection.clone()).or_default().insert(key.clone(), value.clone());
        }
        Command::PutValue { collection, value, .. } => {
            assert_eq!(reply.status, 200);
            let key = reply.body["key"].as_str().expect("key").to_string();
            let items = model.entry(collection.clone()).or_default();
            assert!(items.get(&key).is_none_or(|held| held == value), "{reply:?}");
            items.insert(key, value.clone());
        }
        Command::DeleteKey { collection, key } => {
            let removed = model.get_mut(collection).and_then(|items| items.remove(key));
            assert_eq!(reply.status, if removed.is_some() { 200 } else { 404 });
            if let Some(value) = removed {
                assert_eq!(reply.body["value"], value.as_str());
            }
        }
        Command::DeleteValue { collection, value } => {
            if reply.status == 200 {
                let key = reply.body["key"].as_str().expect("key");
                let items = model.get_mut(collection).expect("collection");
                assert_eq!(items.remove(key).as_ref(), Some(value));
            } else {
                assert_eq!(reply.status, 404);
            }
        }
        Command::Cas { collection, key, expected, value } => {
            let current = model.get(collection).and_then(|items| items.get(key)).cloned();
            if current == *expected {
                assert_eq!(reply.status, 200);
                model.entry(collection.clone()).or_default().insert(key.clone(), value.clone());
            } else {
                assert_eq!(reply.status, 409);
                assert_eq!(reply.body["value"].as_str(), current.as_deref());
            }
        }
        Command::Drop { collection } => {
            assert_eq!(reply.status, if model.remove(collection).is_some() { 200 } else { 404 });
        }
    }
}

/// The state machine answers in outcomes, not statuses; each has one HTTP
/// answer (API.md), given by `Reply::from`.
#[test]
fn commands_and_queries_answer_in_typed_outcomes() {
    let dir = tempfile::tempdir().expect("dir");
    let db = open(&dir, "outcomes.db");
    let mut txn = db.begin_write().expect("writer");
    let (c, k) = ("c".to_string(), "k".to_string());
    let put = Command::PutKey { collection: c.clone(), key: k.clone(), value: "v1".into() };
    assert_eq!(apply(&mut txn, &put).expect("put"), Outcome::item("c", "k", "v1"));
    let stale = Command::Cas {
        collection: c.clone(),
        key: k.clone(),
        expected: Some("v0".into()),
        value: "v2".into(),
    };
    let mismatch = apply(&mut txn, &stale).expect("cas");
    let current = Some("v1".to_string());
    assert_eq!(mismatch, Outcome::CasMismatch { collection: c.clone(), key: k.clone(), current });
    assert_eq!(Reply::from(mismatch.clone()).status, 409);
    let gone = Command::DeleteKey { collection: c.clone(), key: "nope".into() };
    let missing = apply(&mut txn, &gone).expect("delete");
    assert_eq!(missing, Outcome::not_found("c", Missing::Key));
    assert_eq!(Reply::from(missing.clone()).status, 404);
    let dropped = apply(&mut txn, &Command::Drop { collection: c.clone() }).expect("drop");
    assert_eq!(dropped, Outcome::Dropped { collection: c });
    txn.commit([0; USER_META_BYTES], Durability::Deferred).expect("commit");
    let read = Query::ListCollections.run(&db.begin_read()).expect("query");
    assert_eq!(read, Outcome::Collections(Vec::new()));
}
