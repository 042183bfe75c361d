//! The clients: concurrent key-addressed put, linearizable get, cas and a
//! cas made of a txn on a few keys through random nodes, each operation recorded with its
//! invocation and completion times and its result.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::checker::{Event, Op};

/// The collection the workload uses.
pub const COLLECTION: &str = "jepsen";
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
}

impl History {
    pub fn new(keys: usize) -> Self {
        History {
            start: Instant::now(),
            keys: Mutex::new(vec![Vec::new(); keys]),
            acknowledged: Mutex::new(Vec::new()),
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
        match rng.u8(0..10) {
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
pub fn final_reads(ports: &[u16], keys: usize, history: &History) {
    let agent = agent();
    for key in 0..keys {
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
        let body =
            json!({"action": "get", "payload": {"collection": COLLECTION, "key": key_name(key)}});
        let value = match send(agent, port, &body) {
            Outcome::Answer(200, body) => Some(body["value"].as_str().map(str::to_string)),
            Outcome::Answer(404, _) => Some(None),
            Outcome::Answer(status, body) => {
                last = format!("{status} {body}");
                None
            }
            Outcome::Lost => {
                last = "no answer".into();
                None
            }
        };
        if let Some(value) = value {
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
