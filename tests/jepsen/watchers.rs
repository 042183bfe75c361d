//! Watchers beside the clients: each long-polls `watch` on the workload's
//! collection through random nodes, resuming from one past the revision it
//! last reached, through every fault. The checker then demands that every
//! acknowledged write appears in every watcher's stream exactly once, with
//! its key and value, in revision order, unless the watcher was told (410)
//! that the node it asked no longer kept that revision: a gap is allowed
//! only when it was announced, never a silent one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::workload::COLLECTION;

/// How long one poll waits for a change, in milliseconds.
const POLL_WAIT_MS: u64 = 500;

/// What one watcher received.
#[derive(Debug, Default)]
pub struct Stream {
    /// (revision, key, value) of each event, in the order received.
    pub events: Vec<(u64, String, String)>,
    /// Revisions announced gone (from, to exclusive) by a 410.
    pub gaps: Vec<(u64, u64)>,
    /// The next revision it asks for.
    pub next: u64,
    /// An answer that broke the order (for the failure message).
    pub disorder: Option<String>,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(8)))
        .build()
        .into()
}

/// One long poll through `port`; updates `stream`.
fn poll(agent: &ureq::Agent, port: u16, stream: &mut Stream) {
    let body = json!({"action": "watch", "payload": {"collection": COLLECTION,
        "from_revision": stream.next, "wait_ms": POLL_WAIT_MS}});
    let url = format!("http://127.0.0.1:{port}/command");
    let Ok(mut response) = agent.post(&url).send(body.to_string().as_bytes()) else { return };
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    match status {
        200 => {
            for event in answer["events"].as_array().into_iter().flatten() {
                let revision = event["revision"].as_u64().unwrap_or(0);
                if revision < stream.next && stream.disorder.is_none() {
                    stream.disorder = Some(format!(
                        "revision {revision} came after asking from {}: {answer}",
                        stream.next
                    ));
                }
                let key = event["key"].as_str().unwrap_or("").to_string();
                let value = event["value"].as_str().unwrap_or("").to_string();
                if event["type"] == "put" {
                    stream.events.push((revision, key, value));
                }
                stream.next = stream.next.max(revision + 1);
            }
            let reached = answer["revision"].as_u64().unwrap_or(0);
            stream.next = stream.next.max(reached + 1);
        }
        410 => {
            let oldest = answer["oldest_revision"].as_u64().unwrap_or(stream.next);
            if oldest > stream.next {
                stream.gaps.push((stream.next, oldest));
                stream.next = oldest;
            }
        }
        _ => {} // unavailable, busy: ask again
    }
}

/// Runs a watcher through `ports` until `stop`.
pub fn run(seed: u64, ports: &[u16], stream: &Mutex<Stream>, stop: &AtomicBool) {
    let agent = agent();
    let mut rng = fastrand::Rng::with_seed(seed);
    while !stop.load(Ordering::Relaxed) {
        let port = ports[rng.usize(..ports.len())];
        poll(&agent, port, &mut stream.lock().expect("stream"));
    }
}

/// After healing: polls every node in turn until the watcher has reached
/// `revision` (within `deadline`).
pub fn catch_up(ports: &[u16], stream: &Mutex<Stream>, revision: u64, deadline: Duration) {
    let agent = agent();
    let until = Instant::now() + deadline;
    let mut turn = 0;
    while stream.lock().expect("stream").next <= revision {
        assert!(
            Instant::now() < until,
            "a watcher did not reach revision {revision} after healing"
        );
        poll(&agent, ports[turn % ports.len()], &mut stream.lock().expect("stream"));
        turn += 1;
    }
}

/// Every acknowledged write `(revision, key, value)` once in `stream`, in
/// order, or inside an announced gap.
pub fn check(stream: &Stream, acknowledged: &[(u64, String, String)]) -> Result<(), String> {
    if let Some(disorder) = &stream.disorder {
        return Err(disorder.clone());
    }
    if let Some(pair) = stream.events.windows(2).find(|pair| pair[0].0 >= pair[1].0) {
        return Err(format!("events out of order or twice: {pair:?}"));
    }
    let in_gap =
        |revision: u64| stream.gaps.iter().any(|&(from, to)| (from..to).contains(&revision));
    for (revision, key, value) in acknowledged {
        if in_gap(*revision) {
            continue;
        }
        match stream.events.binary_search_by_key(revision, |event| event.0) {
            Ok(at) if stream.events[at].1 == *key && stream.events[at].2 == *value => {}
            Ok(at) => {
                return Err(format!(
                    "revision {revision} acknowledged as {key}={value} was watched as {:?}",
                    stream.events[at]
                ))
            }
            Err(_) => {
                return Err(format!(
                    "acknowledged write {key}={value} at revision {revision} never watched"
                ))
            }
        }
    }
    Ok(())
}
