//! The clients: concurrent key-addressed put, linearizable get, cas and a
//! cas made of a txn on a few keys through random nodes, each operation recorded with its
//! invocation and completion times and its result. Beside them, pairs: two
//! keys a txn writes together and a txn reads together, whose
//! reads must never see the two differ.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::checker::{Event, Op};

/// The collection the workload uses.
pub const COLLECTION: &str = "jepsen";
/// Pairs of keys written together, in their own collection (the watchers
/// watch [`COLLECTION`] only).
pub const PAIRS: usize = 2;
/// A client gives up on a request after this (the node's own timeout is 5 s),
/// and counts its outcome as unknown.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(8);

/// Every key's history, shared by the clients.
pub struct History {
    /// When the run started; times are microseconds since.
    pub start: Instant,
    /// Events per key.
    pub keys: Mutex<Vec<Vec<Event>>>,
    /// Writes acknowledged with their revision: (revision, key, value).
    pub acknowledged: Mutex<Vec<(u64, String, String)>>,
    /// Keys below this are single keys; the [`PAIRS`] after them are pairs.
    pub plain_keys: usize,
    /// Pair reads that saw the two keys differ (a txn applied in part).
    pub torn: Mutex<Vec<String>>,
}

impl History {
    /// A history of `plain_keys` single keys and [`PAIRS`] pairs.
    pub fn new(plain_keys: usize) -> Self {
        History {
            start: Instant::now(),
            keys: Mutex::new(vec![Vec::new(); plain_keys + PAIRS]),
            acknowledged: Mutex::new(Vec::new()),
            plain_keys,
            torn: Mutex::new(Vec::new()),
        }
    }

    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn record(&self, key: usize, event: Event) {
        self.keys.lock().expect("history")[key].push(event);
    }

    /// Records a write acknowledged with `body`'s revision.
    fn acknowledge(&self, key: usize, value: &str, body: &Value) {
        if let Some(revision) = body["revision"].as_u64() {
            let write = (revision, key_name(key), value.to_string());
            self.acknowledged.lock().expect("history").push(write);
        }
    }
}

/// How one request ended.
enum Outcome {
    /// A status and body.
    Answer(u16, Value),
    /// No answer (connection error or client timeout): unknown.
    Lost,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(CLIENT_TIMEOUT))
        .build()
        .into()
}

fn send(agent: &ureq::Agent, port: u16, body: &Value) -> Outcome {
    let url = format!("http://127.0.0.1:{port}/command");
    match agent.post(&url).send(body.to_string().as_bytes()) {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let text = response.body_mut().read_to_string().unwrap_or_default();
            Outcome::Answer(status, serde_json::from_str(&text).unwrap_or(Value::Null))
        }
        Err(_) => Outcome::Lost,
    }
}

fn key_name(key: usize) -> String {
    format!("k{key}")
}

/// Runs client `client` until `stop`, on `keys` keys, through `ports`.
pub fn run_client(
    client: usize,
    seed: u64,
    ports: &[u16],
    keys: usize,
    history: &History,
    stop: &AtomicBool,
) {
    let agent = agent();
    let mut rng = fastrand::Rng::with_seed(seed ^ (client as u64).wrapping_mul(0x9e37_79b9));
    let mut last_seen: Vec<Option<String>> = vec![None; keys];
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = rng.usize(..keys);
        let port = ports[rng.usize(..ports.len())];
        let value = format!("c{client}-{n}");
        let call = history.now();
        let pair = (key % PAIRS, history.plain_keys + key % PAIRS);
        match rng.u8(0..12) {
            0..=3 => {
                let body = json!({"action": "put", "payload": {"collection": COLLECTION, "key": key_name(key), "value": value}});
                let outcome = send(&agent, port, &body);
                let ret = history.now();
                match outcome {
                    Outcome::Answer(200, body) => {
                        history.acknowledge(key, &value, &body);
                        history.record(
                            key,
                            Event { client, call, ret: Some(ret), op: Op::Put { value } },
                        );
                    }
                    Outcome::Answer(503, _) => {} // refused: nothing happened
                    Outcome::Answer(504, _) | Outcome::Lost => history
                        .record(key, Event { client, call, ret: None, op: Op::Put { value } }),
                    Outcome::Answer(status, body) => panic!("put answered {status}: {body}"),
                }
            }
            4..=6 => {
                let body = json!({"action": "get", "payload": {"collection": COLLECTION, "key": key_name(key)}});
                let outcome = send(&agent, port, &body);
                let ret = history.now();
                let seen = match outcome {
                    Outcome::Answer(200, body) => Some(body["value"].as_str().map(str::to_string)),
                    Outcome::Answer(404, _) => Some(None),
                    Outcome::Answer(503 | 504, _) | Outcome::Lost => None, // a read that failed tells nothing
                    Outcome::Answer(status, body) => panic!("get answered {status}: {body}"),
                };
                if let Some(value) = seen {
                    last_seen[key].clone_from(&value);
                    history
                        .record(key, Event { client, call, ret: Some(ret), op: Op::Get { value } });
                }
            }
            9 => txn_cas(&agent, (client, port, key), (last_seen[key].clone(), value), history),
            10 => pair_write(&agent, (client, port, pair), value, history),
            11 => pair_get(&agent, (client, port, pair), history),
            _ => {
                let expected = last_seen[key].clone();
                let body = json!({"action": "cas", "payload": {"collection": COLLECTION, "key": key_name(key), "expected": expected, "value": value}});
                let outcome = send(&agent, port, &body);
                let ret = history.now();
                let op = match outcome {
                    Outcome::Answer(200, body) => {
                        history.acknowledge(key, &value, &body);
                        Some((Some(ret), Op::CasOk { expected, value }))
                    }
                    Outcome::Answer(409, body) => {
                        let current = body["value"].as_str().map(str::to_string);
                        last_seen[key].clone_from(&current);
                        Some((Some(ret), Op::CasFail { expected, current }))
                    }
                    Outcome::Answer(503, _) => None,
                    Outcome::Answer(504, _) | Outcome::Lost => {
                        Some((None, Op::CasUnknown { expected, value }))
                    }
                    Outcome::Answer(status, body) => panic!("cas answered {status}: {body}"),
                };
                if let Some((ret, op)) = op {
                    history.record(key, Event { client, call, ret, op });
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rng.u64(0..5)));
    }
}

/// A compare-and-set as a txn: compare the value (or absence), put on
/// success, read on failure; recorded as the cas it is, so the per-key
/// checker judges the txn's atomicity and order.
fn txn_cas(
    agent: &ureq::Agent,
    (client, port, key): (usize, u16, usize),
    (expected, value): (Option<String>, String),
    history: &History,
) {
    let mut compare = json!({"collection": COLLECTION, "key": key_name(key)});
    match &expected {
        Some(held) => compare["value"] = json!(held),
        None => compare["absent"] = json!(true),
    }
    let target = json!({"collection": COLLECTION, "key": key_name(key)});
    let mut put = target.clone();
    put["value"] = json!(value);
    let body = json!({"action": "txn", "payload": {"compare": [compare],
        "success": [{"action": "put", "payload": put}],
        "failure": [{"action": "get", "payload": target}]}});
    let call = history.now();
    let outcome = send(agent, port, &body);
    let ret = history.now();
    let op = match outcome {
        Outcome::Answer(200, body) if body["succeeded"] == true => {
            history.acknowledge(key, &value, &body);
            (Some(ret), Op::CasOk { expected, value })
        }
        Outcome::Answer(200, body) => {
            let current = body["results"][0]["value"].as_str().map(str::to_string);
            let current = if body["results"][0]["status"] == 404 { None } else { current };
            (Some(ret), Op::CasFail { expected, current })
        }
        Outcome::Answer(503, _) => return,
        Outcome::Answer(504, _) | Outcome::Lost => (None, Op::CasUnknown { expected, value }),
        Outcome::Answer(status, body) => panic!("txn answered {status}: {body}"),
    };
    history.record(key, Event { client, call, ret: op.0, op: op.1 });
}

/// After healing, reads every key through every node (linearizable reads:
/// a follower must reach the leader) and records the reads in the history.
/// Every node must answer within [`HEALED_READ_DEADLINE`]: a node cut off
/// from the leader after the network healed is a liveness bug, even if the
/// others serve.
pub fn final_reads(ports: &[u16], history: &History) {
    let agent = agent();
    for key in 0..history.plain_keys + PAIRS {
        for &port in ports {
            final_read(&agent, port, key, history, ports);
        }
    }
}

/// The body of a node's /status, or why there is none.
pub fn status(agent: &ureq::Agent, port: u16) -> Result<String, String> {
    let url = format!("http://127.0.0.1:{port}/status");
    let mut response = agent.get(&url).call().map_err(|e| e.to_string())?;
    response.body_mut().read_to_string().map_err(|e| e.to_string())
}

/// Every node's /status, one per line, for failure messages.
fn statuses(agent: &ureq::Agent, ports: &[u16]) -> String {
    let line = |port: u16| {
        let text = status(agent, port).unwrap_or_else(|error| error);
        format!("  {port}: {text}")
    };
    ports.iter().map(|&port| line(port)).collect::<Vec<_>>().join("\n")
}

/// How long after healing a node may take to serve a linearizable read
/// (elections and reconnection backoff included; both take at most a few
/// seconds).
const HEALED_READ_DEADLINE: Duration = Duration::from_secs(20);

fn final_read(agent: &ureq::Agent, port: u16, key: usize, history: &History, all: &[u16]) {
    let deadline = Instant::now() + HEALED_READ_DEADLINE;
    let mut last = String::new();
    loop {
        let call = history.now();
        let read = if key < history.plain_keys {
            let body = json!({"action": "get", "payload": {"collection": COLLECTION, "key": key_name(key)}});
            match send(agent, port, &body) {
                Outcome::Answer(200, body) => Ok(body["value"].as_str().map(str::to_string)),
                Outcome::Answer(404, _) => Ok(None),
                Outcome::Answer(status, body) => Err(format!("{status} {body}")),
                Outcome::Lost => Err("no answer".into()),
            }
        } else {
            pair_read(agent, port, key - history.plain_keys, history)
        };
        if let Err(why) = &read {
            last.clone_from(why);
        }
        if let Ok(value) = read {
            let ret = history.now();
            let event = Event { client: usize::MAX, call, ret: Some(ret), op: Op::Get { value } };
            history.record(key, event);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the node at port {port} served no linearizable read of key {key} within \
             {HEALED_READ_DEADLINE:?} of healing; last: {last}\nstatus of every node:\n{}",
            statuses(agent, all)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The collection and the two key names of pair `pair`.
fn pair_keys(pair: usize) -> [Value; 2] {
    let key = format!("p{pair}");
    [
        json!({"collection": PAIRS_COLLECTION, "key": key}),
        json!({"collection": PAIRS_COLLECTION, "key": format!("{key}-twin")}),
    ]
}

/// The collection of the pairs.
const PAIRS_COLLECTION: &str = "jepsen-pairs";

/// Writes `value` to both keys of a pair in one txn (no compares);
/// recorded as a put of the pair's history key (`pair.1`).
fn pair_write(
    agent: &ureq::Agent,
    (client, port, pair): (usize, u16, (usize, usize)),
    value: String,
    history: &History,
) {
    let puts: Vec<Value> = pair_keys(pair.0)
        .into_iter()
        .map(|mut target| {
            target["value"] = json!(value);
            json!({"action": "put", "payload": target})
        })
        .collect();
    let body = json!({"action": "txn", "payload": {"compare": [], "success": puts}});
    let call = history.now();
    let ret = match send(agent, port, &body) {
        Outcome::Answer(200, body) if body["succeeded"] == true => Some(history.now()),
        Outcome::Answer(503, _) => return,
        Outcome::Answer(504, _) | Outcome::Lost => None,
        Outcome::Answer(status, body) => panic!("pair txn answered {status}: {body}"),
    };
    history.record(pair.1, Event { client, call, ret, op: Op::Put { value } });
}

/// A pair read, recorded as a get of the pair's history key (`pair.1`).
fn pair_get(
    agent: &ureq::Agent,
    (client, port, pair): (usize, u16, (usize, usize)),
    history: &History,
) {
    let call = history.now();
    if let Ok(value) = pair_read(agent, port, pair.0, history) {
        let event = Event { client, call, ret: Some(history.now()), op: Op::Get { value } };
        history.record(pair.1, event);
    }
}

/// Reads both keys of pair `pair` in one txn: the value they share (None:
/// both absent), or why there is none. Two that differ are recorded as a
/// torn read (and the first one's value returned, for the checker).
fn pair_read(
    agent: &ureq::Agent,
    port: u16,
    pair: usize,
    history: &History,
) -> Result<Option<String>, String> {
    let gets: Vec<Value> = pair_keys(pair)
        .into_iter()
        .map(|target| json!({"action": "get", "payload": target}))
        .collect();
    let body = json!({"action": "txn", "payload": {"compare": [], "success": gets}});
    let body = match send(agent, port, &body) {
        Outcome::Answer(200, body) => body,
        Outcome::Answer(status @ (503 | 504), body) => return Err(format!("{status} {body}")),
        Outcome::Lost => return Err("no answer".into()),
        Outcome::Answer(status, body) => panic!("pair read answered {status}: {body}"),
    };
    let value_of = |result: &Value| match result["status"].as_u64() {
        Some(200) => Ok(result["value"].as_str().map(str::to_string)),
        Some(404) => Ok(None),
        _ => Err(format!("a pair read's result: {result}")),
    };
    let first = value_of(&body["results"][0]).unwrap_or_else(|why| panic!("{why}"));
    let second = value_of(&body["results"][1]).unwrap_or_else(|why| panic!("{why}"));
    if first != second {
        let torn = format!(
            "pair p{pair} read through port {port} at revision {}: {first:?} and {second:?}",
            body["revision"]
        );
        history.torn.lock().expect("history").push(torn);
    }
    Ok(first)
}
