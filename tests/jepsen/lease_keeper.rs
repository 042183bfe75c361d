//! A client holding a lease through every fault: it grants a lease, puts a
//! key with it, and renews it through random nodes every 300 ms. Its
//! promise (docs/API.md, "Leases"): a lease kept alive is never lost, not
//! even when the leader changes (the new leader gives it a full TTL), so no
//! renewal may answer 404 and the key must still be there after healing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The keeper's collection (apart from the clients').
const COLLECTION: &str = "jepsen-lease";
/// The lease's TTL: longer than any one fault (2.5 s) plus an election.
const TTL_MS: u64 = 10_000;
/// Between renewals.
const RENEW_EVERY: Duration = Duration::from_millis(300);

fn send(agent: &ureq::Agent, port: u16, body: &Value) -> Option<(u16, Value)> {
    let url = format!("http://127.0.0.1:{port}/command");
    let mut response = agent.post(&url).send(body.to_string().as_bytes()).ok()?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// Sends `body` through random nodes until one answers 200 (within
/// `deadline`); that answer.
fn until_done(
    agent: &ureq::Agent,
    ports: &[u16],
    body: &Value,
    rng: &mut fastrand::Rng,
    deadline: Duration,
) -> Value {
    let until = Instant::now() + deadline;
    loop {
        if let Some((200, answer)) = send(agent, ports[rng.usize(..ports.len())], body) {
            return answer;
        }
        assert!(Instant::now() < until, "no node did {body} within {deadline:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Holds a lease and its key until `stop`; Err when a renewal found the
/// lease gone. Returns the lease id.
pub fn run(seed: u64, ports: &[u16], stop: &AtomicBool) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(3)))
        .build()
        .into();
    let mut rng = fastrand::Rng::with_seed(seed);
    let grant = json!({"action": "lease grant", "payload": {"ttl_ms": TTL_MS}});
    let lease = until_done(&agent, ports, &grant, &mut rng, Duration::from_secs(20))["lease"]
        .as_str()
        .expect("a lease")
        .to_string();
    let put = json!({"action": "put", "payload": {"collection": COLLECTION, "key": "held",
                                                  "value": "by the keeper", "lease": lease}});
    until_done(&agent, ports, &put, &mut rng, Duration::from_secs(20));
    let renew = json!({"action": "lease keepalive", "payload": {"lease": lease}});
    while !stop.load(Ordering::Relaxed) {
        let port = ports[rng.usize(..ports.len())];
        if let Some((404, answer)) = send(&agent, port, &renew) {
            return Err(format!("a renewal through port {port} found the lease gone: {answer}"));
        }
        std::thread::sleep(RENEW_EVERY);
    }
    Ok(lease)
}

/// After healing: the lease renews and its key is there, through every
/// node.
pub fn check_held(ports: &[u16], lease: &str) -> Result<(), String> {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut rng = fastrand::Rng::with_seed(7);
    let renew = json!({"action": "lease keepalive", "payload": {"lease": lease}});
    until_done(&agent, ports, &renew, &mut rng, Duration::from_secs(20));
    let read = json!({"action": "get", "payload": {"collection": COLLECTION, "key": "held"}});
    for &port in ports {
        match send(&agent, port, &read) {
            Some((200, answer)) if answer["value"] == "by the keeper" => {}
            other => return Err(format!("the kept key, read through port {port}: {other:?}")),
        }
    }
    Ok(())
}
