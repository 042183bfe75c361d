//! The replicated state machine in process: parsing refuses bad requests
//! with the right status, and applying the same commands on two replicas
//! gives the same answers and the same state, which matches a model of the
//! key-addressed data.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use rdb::kv::{
    apply, Applying, Command, Expect, Limits, Missing, Outcome, Query, Reply, Request, Revisions,
};
use rdb::storage::btree::{Db, Durability, KeyRange, USER_META_BYTES};
use rdb::storage::disk::RealDisk;
use serde_json::{json, Value};

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

/// The model: each collection's items with their revisions (the map it
/// derefs to), and the collections that keep no value index.
#[derive(Debug, Default)]
struct Model {
    items: BTreeMap<String, BTreeMap<String, (String, Revisions)>>,
    unindexed: BTreeSet<String>,
}

impl Deref for Model {
    type Target = BTreeMap<String, BTreeMap<String, (String, Revisions)>>;

    fn deref(&self) -> &Self::Target {
        &self.items
    }
}

impl DerefMut for Model {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.items
    }
}

/// The collection a single command writes, and whether it addresses it by
/// key (a txn's operations are checked one by one).
fn written_collection(command: &Command) -> Option<(&str, bool)> {
    match command {
        Command::PutKey { collection, .. }
        | Command::Cas { collection, .. }
        | Command::CasRevision { collection, .. } => Some((collection, true)),
        Command::PutValue { collection, .. }
        | Command::DeleteValue { collection, .. }
        | Command::DropValueIndex { collection } => Some((collection, false)),
        _ => None,
    }
}

/// A seeded random command over a few collections, keys and values; cas
/// on a revision draws its expectation from the model half the time, so
/// that some succeed.
fn random_command(rng: &mut fastrand::Rng, model: &Model) -> Command {
    let collection = format!("c{}", rng.u8(0..3));
    let key = format!("k{}", rng.u8(0..12));
    let value = format!("v{}", rng.u8(0..6));
    match rng.u8(0..19) {
        16..=17 => random_txn(rng, model),
        18 => Command::DropValueIndex { collection },
        0..=3 => Command::PutKey { collection, key, value },
        4..=5 => Command::PutValue { collection, key: format!("{:064x}", rng.u64(..)), value },
        6 => Command::DeleteKey { collection, key },
        7 => Command::DeleteValue { collection, value },
        8..=10 => {
            let expected = rng.bool().then(|| format!("v{}", rng.u8(0..6)));
            Command::Cas { collection, key, expected, value }
        }
        11..=12 => {
            let held = model.get(&collection).and_then(|items| items.get(&key));
            let expected_revision = match (held, rng.bool()) {
                (Some((_, revisions)), true) => revisions.mod_revision,
                _ => rng.u64(0..4),
            };
            Command::CasRevision { collection, key, expected_revision, value }
        }
        13 => {
            let prefix = rng.bool().then(|| format!("k{}", rng.u8(0..2)));
            let start = rng.bool().then(|| format!("k{}", rng.u8(0..12)));
            Command::DeleteRange { collection, start, end: None, prefix }
        }
        _ => Command::Drop { collection },
    }
}

/// A txn comparing one or two keys (on value, revision, version or
/// absence) and putting, deleting or reading in either branch.
fn random_txn(rng: &mut fastrand::Rng, model: &Model) -> Command {
    let collection = format!("c{}", rng.u8(0..3));
    let key = |rng: &mut fastrand::Rng| format!("k{}", rng.u8(0..12));
    let compare: Vec<Value> = (0..rng.usize(1..3))
        .map(|_| {
            let key = key(rng);
            let held = model.get(&collection).and_then(|items| items.get(&key));
            let mut compare = json!({"collection": collection, "key": key});
            match (rng.u8(0..4), held) {
                (0, Some((value, _))) => compare["value"] = json!(value),
                (1, Some((_, revisions))) => {
                    compare["mod_revision"] = json!(revisions.mod_revision)
                }
                (2, _) => compare["version"] = json!(rng.u64(0..3)),
                _ => compare["absent"] = json!(true),
            }
            compare
        })
        .collect();
    let ops = |rng: &mut fastrand::Rng| -> Vec<Value> {
        (0..rng.usize(0..3))
            .map(|_| {
                let payload = json!({"collection": collection, "key": key(rng)});
                match rng.u8(0..3) {
                    0 => {
                        let mut put = payload;
                        put["value"] = json!(format!("v{}", rng.u8(0..6)));
                        json!({"action": "put", "payload": put})
                    }
                    1 => json!({"action": "delete", "payload": payload}),
                    _ => json!({"action": "get", "payload": payload}),
                }
            })
            .collect()
    };
    let body = json!({"action": "txn",
                      "payload": {"compare": compare, "success": ops(rng), "failure": ops(rng)}});
    match Request::parse(body.to_string().as_bytes(), &Limits::default()) {
        Ok(Request::Write(command @ Command::Txn(_))) => command,
        other => panic!("not a txn: {other:?}"),
    }
}

/// A replica: its state file and the cluster version its applier caches.
struct Replica {
    db: Db,
    version: u64,
}

impl Replica {
    /// Applies a batch of (index, command) in one transaction, as the
    /// apply thread does.
    fn apply_batch(&mut self, entries: &[(u64, Command)]) -> Vec<Reply> {
        let mut txn = self.db.begin_write().expect("writer");
        let mut replies = Vec::new();
        for (index, command) in entries {
            let at = Applying { revision: *index, cluster_version: self.version };
            let outcome = apply(&mut txn, command, at).expect("apply");
            if let Command::SetClusterVersion { version } = command {
                self.version = (*version).max(self.version);
            }
            replies.push(Reply::from(outcome).with_revision(*index));
        }
        txn.commit([0; USER_META_BYTES], Durability::Deferred).expect("commit");
        replies
    }
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

/// Replicas applying the same log in different batchings agree byte for
/// byte, and with a model of the items and their revisions: first at
/// cluster version 1 (no revisions; what needs version 2 is refused alike
/// everywhere), then after the entry that raises it to 2, then to 3 (a
/// collection a key-addressed write makes keeps no value index).
#[test]
fn replicas_applying_the_same_log_agree_with_each_other_and_with_a_model() {
    let dir = tempfile::tempdir().expect("dir");
    let mut a = Replica { db: open(&dir, "a.db"), version: 1 };
    let mut b = Replica { db: open(&dir, "b.db"), version: 1 };
    let mut rng = fastrand::Rng::with_seed(0x6b76);
    let mut model = Model::default();
    let mut index = 0u64;
    for round in 0..400 {
        let mut batch: Vec<(u64, Command)> = (0..rng.usize(1..20))
            .map(|_| {
                index += 1;
                (index, random_command(&mut rng, &model))
            })
            .collect();
        if round == 150 || round == 280 {
            index += 1;
            let version = if round == 150 { 2 } else { 3 };
            batch.push((index, Command::SetClusterVersion { version }));
        }
        let version = a.version;
        let replies = a.apply_batch(&batch);
        let mut replies_b = Vec::new();
        // ... and each entry as the log carries it: encoded, then decoded.
        for chunk in batch.chunks(3) {
            let logged: Vec<(u64, Command)> = chunk
                .iter()
                .map(|(index, command)| {
                    (*index, Command::decode(&command.encode()).expect("decodes"))
                })
                .collect();
            replies_b.extend(b.apply_batch(&logged));
        }
        assert_eq!(replies, replies_b, "round {round}");
        let mut version_now = version;
        for ((index, command), reply) in batch.iter().zip(&replies) {
            check_against_model(&mut model, command, reply, (*index, version_now));
            if let Command::SetClusterVersion { version } = command {
                version_now = *version;
            }
        }
        assert_eq!(dump(&a.db), dump(&b.db), "round {round}");
        assert_eq!(rdb::kv::cluster_version(&a.db.begin_read()).expect("version"), a.version);
        check_reads(&a.db, &model);
    }
    assert_eq!(a.version, 3);
    assert!(!model.unindexed.is_empty(), "some collections were made by key at version 3");
}

/// Reads agree with the model: every value found by value is really held
/// by the key returned, and every item's revisions are the model's.
fn check_reads(db: &Db, model: &Model) {
    let txn = db.begin_read();
    for (collection, items) in model.iter() {
        for (key, (value, revisions)) in items {
            let query = Query::GetKey { collection: collection.clone(), key: key.clone() };
            let reply = Reply::from(query.run(&txn).expect("query"));
            assert_eq!(reply.body["value"], value.as_str());
            assert_eq!(reply.body["mod_revision"], revisions.mod_revision, "{reply:?}");
            assert_eq!(reply.body["create_revision"], revisions.create_revision);
            assert_eq!(reply.body["version"], revisions.version);
            let query = Query::GetValue { collection: collection.clone(), value: value.clone() };
            let reply = Reply::from(query.run(&txn).expect("query"));
            if model.unindexed.contains(collection) {
                assert_eq!(reply.status, 400, "no value index: {reply:?}");
                continue;
            }
            // The index keeps the first key that held a value, while it does.
            if reply.status == 200 {
                let key = reply.body["key"].as_str().expect("key");
                assert_eq!(items.get(key).map(|(v, _)| v), Some(value), "value index points wrong");
            }
        }
    }
}

/// The revisions a write at `index` gives, at cluster `version`.
fn written(previous: Option<Revisions>, (index, version): (u64, u64)) -> Revisions {
    if version >= 2 {
        Revisions::after_write(previous, index)
    } else {
        Revisions::default()
    }
}

/// Checks one command's reply against the model and brings the model up
/// to date, including which collections keep no value index.
fn check_against_model(model: &mut Model, command: &Command, reply: &Reply, at: (u64, u64)) {
    let Some((collection, by_key)) = written_collection(command) else {
        return check_items(model, command, reply, at);
    };
    if let Command::DropValueIndex { .. } = command {
        return check_drop_value_index(model, collection, reply, at);
    }
    if !by_key && model.unindexed.contains(collection) {
        assert_eq!(reply.status, 400, "no value index: {reply:?}");
        return;
    }
    let existed = model.contains_key(collection);
    check_items(model, command, reply, at);
    if by_key && at.1 >= 3 && !existed && model.contains_key(collection) {
        model.unindexed.insert(collection.to_string());
    }
}

/// Needs cluster version 3; drops the index of an existing collection that
/// keeps one, else finds nothing.
fn check_drop_value_index(model: &mut Model, collection: &str, reply: &Reply, at: (u64, u64)) {
    if at.1 < 3 {
        assert_eq!(reply.status, 503, "needs cluster version 3: {reply:?}");
        return;
    }
    let indexed = model.contains_key(collection) && !model.unindexed.contains(collection);
    assert_eq!(reply.status, if indexed { 200 } else { 404 }, "{reply:?}");
    if indexed {
        model.unindexed.insert(collection.to_string());
    }
}

fn check_items(model: &mut Model, command: &Command, reply: &Reply, at: (u64, u64)) {
    let held = |model: &Model, collection: &str, key: &str| {
        model.get(collection).and_then(|items| items.get(key)).cloned()
    };
    match command {
        Command::PutKey { collection, key, value } => {
            assert_eq!(reply.status, 200);
            let revisions = written(held(model, collection, key).map(|(_, r)| r), at);
            assert_eq!(reply.body["mod_revision"], revisions.mod_revision);
            let items = model.entry(collection.clone()).or_default();
            items.insert(key.clone(), (value.clone(), revisions));
        }
        Command::PutValue { collection, value, .. } => {
            assert_eq!(reply.status, 200);
            let key = reply.body["key"].as_str().expect("key").to_string();
            let items = model.entry(collection.clone()).or_default();
            match items.get(&key) {
                Some((held, _)) => assert_eq!(held, value, "{reply:?}"),
                None => {
                    items.insert(key, (value.clone(), written(None, at)));
                }
            }
        }
        Command::DeleteKey { collection, key } => {
            let removed = model.get_mut(collection).and_then(|items| items.remove(key));
            assert_eq!(reply.status, if removed.is_some() { 200 } else { 404 });
            if let Some((value, revisions)) = removed {
                assert_eq!(reply.body["value"], value.as_str());
                assert_eq!(reply.body["mod_revision"], revisions.mod_revision);
            }
        }
        Command::DeleteValue { collection, value } => {
            if reply.status == 200 {
                let key = reply.body["key"].as_str().expect("key");
                let items = model.get_mut(collection).expect("collection");
                assert_eq!(items.remove(key).map(|(v, _)| v).as_ref(), Some(value));
            } else {
                assert_eq!(reply.status, 404);
            }
        }
        Command::Cas { .. } => check_cas(model, command, reply, at),
        Command::CasRevision { .. } => check_cas_revision(model, command, reply, at),
        Command::DeleteRange { .. } => check_delete_range(model, command, reply, at),
        Command::Drop { collection } => {
            assert_eq!(reply.status, if model.remove(collection).is_some() { 200 } else { 404 });
            model.unindexed.remove(collection);
        }
        Command::SetClusterVersion { .. } => assert_eq!(reply.status, 200),
        Command::Txn(text) => {
            check_txn(model, &rdb::kv::parse_txn(text).expect("a txn"), reply, at);
        }
        // Leases have their own test below; a value index drop is checked
        // before this (check_drop_value_index).
        Command::LeaseGrant { .. }
        | Command::LeaseRevoke { .. }
        | Command::PutLeased { .. }
        | Command::DropValueIndex { .. } => {
            panic!("not generated or checked here: {command:?}")
        }
    }
}

/// The compares against the model choose the branch; each operation's
/// result is checked as its own request's would be.
fn check_txn(model: &mut Model, spec: &rdb::kv::Txn, reply: &Reply, at: (u64, u64)) {
    if at.1 < 2 {
        assert_eq!(reply.status, 503, "needs cluster version 2: {reply:?}");
        return;
    }
    let holds = spec.compare.iter().all(|compare| {
        let held = model.get(&compare.collection).and_then(|items| items.get(&compare.key));
        match (&compare.expect, held) {
            (Expect::Absent | Expect::Version(0), held) => held.is_none(),
            (_, None) => false,
            (Expect::Value(value), Some((held, _))) => held == value,
            (Expect::ModRevision(r), Some((_, revisions))) => revisions.mod_revision == *r,
            (Expect::Version(v), Some((_, revisions))) => revisions.version == *v,
        }
    });
    assert_eq!(reply.body["succeeded"], holds, "{reply:?}");
    let ops = if holds { &spec.success } else { &spec.failure };
    let results = reply.body["results"].as_array().expect("results");
    assert_eq!(results.len(), ops.len());
    for (op, result) in ops.iter().zip(results) {
        let status = u16::try_from(result["status"].as_u64().expect("status")).expect("u16");
        let sub = Reply { status, body: result.clone() };
        match op {
            Request::Write(command) => check_against_model(model, command, &sub, at),
            Request::Read { query: Query::GetKey { collection, key }, .. } => {
                match model.get(collection).and_then(|items| items.get(key)) {
                    Some((value, _)) => assert_eq!(result["value"], value.as_str(), "{result}"),
                    None => assert_eq!(status, 404, "{result}"),
                }
            }
            other => panic!("not generated: {other:?}"),
        }
    }
}

fn check_cas(model: &mut Model, command: &Command, reply: &Reply, at: (u64, u64)) {
    let Command::Cas { collection, key, expected, value } = command else { return };
    let current = model.get(collection).and_then(|items| items.get(key)).cloned();
    if current.as_ref().map(|(v, _)| v) == expected.as_ref() {
        assert_eq!(reply.status, 200);
        let revisions = written(current.map(|(_, r)| r), at);
        let items = model.entry(collection.clone()).or_default();
        items.insert(key.clone(), (value.clone(), revisions));
    } else {
        assert_eq!(reply.status, 409);
        assert_eq!(reply.body["value"].as_str(), current.as_ref().map(|(v, _)| v.as_str()));
    }
}

fn check_cas_revision(model: &mut Model, command: &Command, reply: &Reply, at: (u64, u64)) {
    let Command::CasRevision { collection, key, expected_revision, value } = command else {
        return;
    };
    let held = |model: &Model, collection: &str, key: &str| {
        model.get(collection).and_then(|items| items.get(key)).cloned()
    };
    if at.1 < 2 {
        assert_eq!(reply.status, 503, "needs cluster version 2: {reply:?}");
        return;
    }
    let current = held(model, collection, key);
    let matches = match &current {
        None => *expected_revision == 0,
        Some((_, r)) => *expected_revision != 0 && r.mod_revision == *expected_revision,
    };
    if matches {
        assert_eq!(reply.status, 200, "{reply:?}");
        let revisions = written(current.map(|(_, r)| r), at);
        let items = model.entry(collection.clone()).or_default();
        items.insert(key.clone(), (value.clone(), revisions));
    } else {
        assert_eq!(reply.status, 409, "{reply:?}");
        let mod_revision = current.map_or(0, |(_, r)| r.mod_revision);
        assert_eq!(reply.body["mod_revision"], mod_revision);
    }
}

fn check_delete_range(model: &mut Model, command: &Command, reply: &Reply, at: (u64, u64)) {
    let Command::DeleteRange { collection, start, end, prefix } = command else { return };
    if at.1 < 2 {
        assert_eq!(reply.status, 503, "needs cluster version 2: {reply:?}");
        return;
    }
    let Some(items) = model.get_mut(collection) else {
        assert_eq!(reply.status, 404);
        return;
    };
    let doomed: Vec<String> = items
        .keys()
        .filter(|k| start.as_ref().is_none_or(|s| *k >= s))
        .filter(|k| end.as_ref().is_none_or(|e| *k < e))
        .filter(|k| prefix.as_ref().is_none_or(|p| k.starts_with(p.as_str())))
        .cloned()
        .collect();
    doomed.iter().for_each(|k| {
        items.remove(k);
    });
    assert_eq!(reply.body["deleted"], doomed.len() as u64, "{reply:?}");
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
    let at = Applying { revision: 7, cluster_version: 2 };
    let written = Revisions { create_revision: 7, mod_revision: 7, version: 1 };
    assert_eq!(apply(&mut txn, &put, at).expect("put"), Outcome::item_at("c", "k", "v1", written));
    let stale = Command::Cas {
        collection: c.clone(),
        key: k.clone(),
        expected: Some("v0".into()),
        value: "v2".into(),
    };
    let mismatch = apply(&mut txn, &stale, at).expect("cas");
    let current = Some("v1".to_string());
    let (collection, key) = (c.clone(), k.clone());
    assert_eq!(mismatch, Outcome::CasMismatch { collection, key, current, mod_revision: 7 });
    assert_eq!(Reply::from(mismatch.clone()).status, 409);
    let gone = Command::DeleteKey { collection: c.clone(), key: "nope".into() };
    let missing = apply(&mut txn, &gone, at).expect("delete");
    assert_eq!(missing, Outcome::not_found("c", Missing::Key));
    assert_eq!(Reply::from(missing.clone()).status, 404);
    // The largest value a client may send fits with its revisions in front.
    let big = "b".repeat(rdb::kv::VALUE_BYTES_MAX_LIMIT);
    let at_max = Applying { revision: u64::MAX - 1, cluster_version: 2 };
    let put_big = Command::PutKey { collection: c.clone(), key: "big".into(), value: big };
    assert!(matches!(apply(&mut txn, &put_big, at_max), Ok(Outcome::Item { .. })));
    let dropped = apply(&mut txn, &Command::Drop { collection: c.clone() }, at).expect("drop");
    assert_eq!(dropped, Outcome::Dropped { collection: c });
    txn.commit([0; USER_META_BYTES], Durability::Deferred).expect("commit");
    let read = Query::ListCollections.run(&db.begin_read()).expect("query");
    assert_eq!(read, Outcome::Collections(Vec::new()));
}

/// Leases, applied through their log encoding in different batchings:
/// replicas agree byte for byte, and a revoke leaves none of its keys.
#[test]
fn replicas_agree_on_leases_and_a_revoke_leaves_none_of_its_keys() {
    let dir = tempfile::tempdir().expect("dir");
    let mut a = Replica { db: open(&dir, "la.db"), version: 2 };
    let mut b = Replica { db: open(&dir, "lb.db"), version: 2 };
    let mut rng = fastrand::Rng::with_seed(0x1ea5e);
    let mut index = 0;
    for round in 0..200 {
        let batch: Vec<(u64, Command)> = (0..rng.usize(1..12))
            .map(|_| {
                index += 1;
                let (collection, key) =
                    (format!("c{}", rng.u8(0..2)), format!("k{}", rng.u8(0..8)));
                let lease = rng.u64(1..5);
                let command = match rng.u8(0..10) {
                    0..=1 => Command::LeaseGrant { id: lease, ttl_ms: 5_000 },
                    2..=5 => {
                        let expected_revision = rng.bool().then(|| rng.u64(0..3));
                        let value = format!("v{}", rng.u8(0..4));
                        Command::PutLeased { collection, key, value, lease, expected_revision }
                    }
                    6 => Command::PutKey { collection, key, value: "plain".into() },
                    7 => Command::DeleteKey { collection, key },
                    _ => Command::LeaseRevoke { id: lease },
                };
                (index, command)
            })
            .collect();
        let replies = a.apply_batch(&batch);
        let mut replies_b = Vec::new();
        for chunk in batch.chunks(2) {
            let logged: Vec<(u64, Command)> = chunk
                .iter()
                .map(|(i, c)| (*i, Command::decode(&c.encode()).expect("decodes")))
                .collect();
            replies_b.extend(b.apply_batch(&logged));
        }
        assert_eq!(replies, replies_b, "round {round}");
        assert_eq!(dump(&a.db), dump(&b.db), "round {round}");
        // After a successful revoke, no item holds that lease.
        for (at, ((_, command), reply)) in batch.iter().zip(&replies).enumerate() {
            let granted_again = |id: u64| {
                batch[at..].iter().any(
                    |(_, c)| matches!(c, Command::LeaseGrant { id: again, .. } if *again == id),
                )
            };
            if let (Command::LeaseRevoke { id }, 200) = (command, reply.status) {
                if granted_again(*id) {
                    continue;
                }
                let txn = a.db.begin_read();
                for tree in txn.list_trees().expect("trees").iter().filter(|t| t.starts_with("d/"))
                {
                    for item in txn.range(tree, &KeyRange::all()).expect("range") {
                        let (_, stored) = item.expect("item");
                        assert_ne!(rdb::kv::lease::lease_of(stored), *id, "round {round}");
                    }
                }
            }
        }
    }
}

/// A full lease whose keys' collection was dropped takes new keys: the
/// stale attachments are pruned, and the list never shows them.
#[test]
fn a_dropped_collection_frees_its_keys_from_their_lease() {
    let dir = tempfile::tempdir().expect("dir");
    let mut replica = Replica { db: open(&dir, "drop.db"), version: 2 };
    let lease = 9;
    let mut entries = vec![(1, Command::LeaseGrant { id: lease, ttl_ms: 5_000 })];
    let put = |n: usize, collection: &str| Command::PutLeased {
        collection: collection.into(),
        key: format!("k{n}"),
        value: "v".into(),
        lease,
        expected_revision: None,
    };
    entries.extend((0..rdb::kv::lease::LEASE_KEYS_MAX).map(|n| (n as u64 + 2, put(n, "doomed"))));
    let replies = replica.apply_batch(&entries);
    assert!(replies.iter().all(|reply| reply.status == 200), "filled");
    let next = entries.len() as u64 + 1;
    let full = replica.apply_batch(&[(next, put(0, "other"))]);
    assert_eq!(full[0].status, 409, "the lease is full: {:?}", full[0]);
    let dropped = replica.apply_batch(&[(next + 1, Command::Drop { collection: "doomed".into() })]);
    assert_eq!(dropped[0].status, 200);
    let listed = rdb::kv::lease::keys_of(&replica.db.begin_read(), lease, 10).expect("keys");
    assert!(listed.is_empty(), "dropped keys are not listed: {listed:?}");
    let again = replica.apply_batch(&[(next + 2, put(0, "other"))]);
    assert_eq!(again[0].status, 200, "stale attachments pruned: {:?}", again[0]);
    let listed = rdb::kv::lease::keys_of(&replica.db.begin_read(), lease, 10).expect("keys");
    assert_eq!(listed, vec![("other".to_string(), "k0".to_string())]);
}
