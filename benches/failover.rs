//! Leadership and membership, measured beside etcd 3.4 on this machine:
//!
//! - the write gap when the leader is stopped gracefully (SIGTERM): the
//!   longest time without an acknowledged write, while writers keep writing
//!   through the other nodes;
//! - the same after a SIGKILL of the leader (failover: election timeout plus
//!   election);
//! - the time from adding a learner to it having caught up with a state of
//!   `RDB_BENCH_KEYS` keys (default 1,000,000).
//!
//! Both systems run 3 nodes on 127.0.0.1 with their defaults (rdb: 50 ms
//! ticks, election timeout 0.5-1 s; etcd: 100 ms heartbeat, 1 s election
//! timeout), and are driven over HTTP/1.1 keep-alive: rdb's POST /command
//! and etcd's JSON gateway (/v3/kv/put), 8 writer threads each, through the
//! nodes that are not stopped. `RDB_BENCH_RUNS` rounds (default 5), medians
//! reported. Needs `etcd` and `etcdctl` (Debian's etcd-server, etcd-client).
//!
//!   cargo bench --bench failover

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const WRITERS: usize = 8;
/// Pause after a round's restart before the next round.
const SETTLE: Duration = Duration::from_secs(4);
const WAIT: Duration = Duration::from_secs(30);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn post(agent: &ureq::Agent, url: &str, body: &Value) -> Option<(u16, Value)> {
    let mut response = agent.post(url).send(body.to_string().as_bytes()).ok()?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// A cluster under test: rdb or etcd, three processes.
trait System {
    fn name(&self) -> &'static str;
    /// The leader's index (0..3), once every running node agrees.
    fn leader(&self) -> usize;
    /// A write of `key` through node `node`: the URL and body.
    fn put(&self, node: usize, key: &str) -> (String, Value);
    fn ok(&self, status: u16, answer: &Value) -> bool;
    fn processes(&self) -> &Processes;
    fn processes_mut(&mut self) -> &mut Processes;
    fn restart(&mut self, node: usize);
    /// Starts a fourth node and adds it as a learner: the leader's commit
    /// index then (what it must reach), and when it was added.
    fn add_learner(&mut self) -> (u64, Instant);
    /// The learner's applied (rdb) or raft (etcd) index.
    fn learner_index(&self) -> u64;
}

/// A cluster's processes by node index (`None`: stopped), killed on drop.
#[derive(Default)]
struct Processes(Vec<Option<Child>>);

impl Processes {
    fn running(&self, node: usize) -> bool {
        self.0.get(node).is_some_and(Option::is_some)
    }

    fn pid(&self, node: usize) -> u32 {
        self.0[node].as_ref().expect("running").id()
    }

    /// Waits for node `node`'s process, which was signalled, to end.
    fn reap(&mut self, node: usize) {
        if let Some(mut child) = self.0[node].take() {
            let _ = child.wait();
        }
    }

    /// Records node `node`'s new process (a new node at the end).
    fn set(&mut self, node: usize, child: Child) {
        if node == self.0.len() {
            self.0.push(None);
        }
        self.0[node] = Some(child);
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self.0.iter_mut().filter_map(Option::as_mut) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Rdb {
    dir: PathBuf,
    children: Processes,
    agent: ureq::Agent,
}

const RDB_HTTP: u16 = 28_081;
const RDB_RAFT: u16 = 29_081;

/// Node `node`'s port from `base`.
fn port(base: u16, node: usize) -> u16 {
    base + u16::try_from(node).expect("a few nodes")
}

impl Rdb {
    fn start(dir: &Path) -> Self {
        let mut rdb =
            Rdb { dir: dir.to_path_buf(), children: Processes::default(), agent: agent() };
        for node in 0..3 {
            rdb.restart(node);
        }
        rdb
    }
}

impl System for Rdb {
    fn name(&self) -> &'static str {
        "rdb"
    }

    fn leader(&self) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            let leaders: Vec<u64> = (0..3)
                .filter(|&n| self.children.running(n))
                .map(|n| {
                    let url = format!("http://127.0.0.1:{}/status", port(RDB_HTTP, n));
                    self.agent
                        .get(&url)
                        .call()
                        .ok()
                        .and_then(|mut r| r.body_mut().read_to_string().ok())
                        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                        .and_then(|s| s["leader"].as_u64())
                        .unwrap_or(0)
                })
                .collect();
            if leaders.iter().all(|&l| l != 0 && l == leaders[0]) {
                return usize::try_from(leaders[0] - 1).expect("small");
            }
            assert!(Instant::now() < deadline, "rdb: no leader: {leaders:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn put(&self, node: usize, key: &str) -> (String, Value) {
        let url = format!("http://127.0.0.1:{}/command", port(RDB_HTTP, node));
        let body = json!({"action": "put", "payload": {"collection": "b", "key": key,
                          "value": "v".repeat(100)}});
        (url, body)
    }

    fn ok(&self, status: u16, _: &Value) -> bool {
        status == 200
    }

    fn processes(&self) -> &Processes {
        &self.children
    }

    fn processes_mut(&mut self) -> &mut Processes {
        &mut self.children
    }

    fn add_learner(&mut self) -> (u64, Instant) {
        let child = Command::new(env!("CARGO_BIN_EXE_rdb"))
            .args([
                "serve",
                "--join",
                "--id",
                "4",
                "--raft",
                &format!("127.0.0.1:{}", RDB_RAFT + 3),
            ])
            .args(["--http", &format!("127.0.0.1:{}", RDB_HTTP + 3)])
            .arg("--data-dir")
            .arg(self.dir.join("n3"))
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rdb starts");
        let node = self.children.0.len();
        self.children.set(node, child);
        std::thread::sleep(Duration::from_millis(300));
        let leader = self.leader();
        let status = |n: usize| rdb_status(&self.agent, n);
        let target = status(leader)["commit_index"].as_u64().expect("commit");
        let add = json!({"id": 4, "peer": format!("127.0.0.1:{}", RDB_RAFT + 3)});
        let url = format!("http://127.0.0.1:{}/admin/members", port(RDB_HTTP, leader));
        let since = Instant::now();
        let (code, answer) = post(&self.agent, &url, &add).expect("added");
        assert_eq!(code, 200, "{answer}");
        (target, since)
    }

    fn learner_index(&self) -> u64 {
        rdb_status(&self.agent, 3)["applied_index"].as_u64().unwrap_or(0)
    }

    fn restart(&mut self, node: usize) {
        let peers = (0..3)
            .map(|n| format!("{}=127.0.0.1:{}", n + 1, port(RDB_RAFT, n)))
            .collect::<Vec<_>>()
            .join(",");
        let child = Command::new(env!("CARGO_BIN_EXE_rdb"))
            .args(["serve", "--id", &(node + 1).to_string(), "--peers", &peers])
            .args(["--http", &format!("127.0.0.1:{}", port(RDB_HTTP, node))])
            .arg("--data-dir")
            .arg(self.dir.join(format!("n{node}")))
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rdb starts");
        self.children.set(node, child);
    }
}

fn rdb_status(agent: &ureq::Agent, node: usize) -> Value {
    let url = format!("http://127.0.0.1:{}/status", port(RDB_HTTP, node));
    agent
        .get(&url)
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

struct Etcd {
    dir: PathBuf,
    children: Processes,
    agent: ureq::Agent,
}

fn etcd_client(node: usize) -> String {
    format!("http://127.0.0.1:{}", 23_379 + node * 10)
}

fn etcd_peer(node: usize) -> String {
    format!("http://127.0.0.1:{}", 23_380 + node * 10)
}

impl Etcd {
    fn start(dir: &Path) -> Self {
        let mut etcd =
            Etcd { dir: dir.to_path_buf(), children: Processes::default(), agent: agent() };
        for node in 0..3 {
            etcd.restart(node);
        }
        etcd
    }

    fn status(&self, node: usize) -> Option<Value> {
        let url = format!("{}/v3/maintenance/status", etcd_client(node));
        post(&self.agent, &url, &json!({})).map(|(_, v)| v)
    }
}

impl System for Etcd {
    fn name(&self) -> &'static str {
        "etcd 3.4"
    }

    fn leader(&self) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut agreed = None;
            let mut all = true;
            for node in (0..3).filter(|&n| self.children.running(n)) {
                let leader =
                    self.status(node).and_then(|s| s["leader"].as_str().map(str::to_string));
                match (&agreed, leader) {
                    (_, None) => all = false,
                    (None, Some(l)) => agreed = Some(l),
                    (Some(a), Some(l)) if *a != l => all = false,
                    _ => {}
                }
            }
            if let (true, Some(leader)) = (all, agreed) {
                for node in (0..3).filter(|&n| self.children.running(n)) {
                    let status = self.status(node).unwrap_or_default();
                    if status["header"]["member_id"].as_str() == Some(leader.as_str()) {
                        return node;
                    }
                }
            }
            assert!(Instant::now() < deadline, "etcd: no leader");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn put(&self, node: usize, key: &str) -> (String, Value) {
        use base64::engine::{general_purpose::STANDARD, Engine as _};
        let encode = |bytes: &[u8]| STANDARD.encode(bytes);
        let url = format!("{}/v3/kv/put", etcd_client(node));
        (url, json!({"key": encode(key.as_bytes()), "value": encode("v".repeat(100).as_bytes())}))
    }

    fn ok(&self, status: u16, answer: &Value) -> bool {
        status == 200 && answer.get("header").is_some()
    }

    fn processes(&self) -> &Processes {
        &self.children
    }

    fn processes_mut(&mut self) -> &mut Processes {
        &mut self.children
    }

    fn add_learner(&mut self) -> (u64, Instant) {
        let leader = self.leader();
        let target = self.status(leader).expect("status")["raftIndex"]
            .as_str()
            .and_then(|i| i.parse().ok())
            .expect("raftIndex");
        // etcd refuses changes until every member has been connected for a
        // while (its strict reconfiguration check): retried until it takes.
        let deadline = Instant::now() + WAIT;
        let since = loop {
            let since = Instant::now();
            let added = Command::new("etcdctl")
                .args(["--endpoints", &etcd_client(leader), "member", "add", "e3", "--learner"])
                .args(["--peer-urls", &etcd_peer(3)])
                .output()
                .expect("etcdctl runs");
            if added.status.success() {
                break since;
            }
            let why = String::from_utf8_lossy(&added.stderr).into_owned();
            assert!(Instant::now() < deadline, "etcdctl member add: {why}");
            std::thread::sleep(Duration::from_millis(200));
        };
        let cluster =
            (0..4).map(|n| format!("e{n}={}", etcd_peer(n))).collect::<Vec<_>>().join(",");
        let child = Command::new("etcd")
            .args(["--name", "e3"])
            .arg("--data-dir")
            .arg(self.dir.join("e3"))
            .args([
                "--listen-client-urls",
                &etcd_client(3),
                "--advertise-client-urls",
                &etcd_client(3),
            ])
            .args([
                "--listen-peer-urls",
                &etcd_peer(3),
                "--initial-advertise-peer-urls",
                &etcd_peer(3),
            ])
            .args(["--initial-cluster", &cluster, "--initial-cluster-state", "existing"])
            .args(["--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts");
        let node = self.children.0.len();
        self.children.set(node, child);
        (target, since)
    }

    fn learner_index(&self) -> u64 {
        self.status(3)
            .and_then(|s| s["raftIndex"].as_str().and_then(|i| i.parse().ok()))
            .unwrap_or(0)
    }

    fn restart(&mut self, node: usize) {
        let cluster =
            (0..3).map(|n| format!("e{n}={}", etcd_peer(n))).collect::<Vec<_>>().join(",");
        let child = Command::new("etcd")
            .args(["--name", &format!("e{node}")])
            .arg("--data-dir")
            .arg(self.dir.join(format!("e{node}")))
            .args([
                "--listen-client-urls",
                &etcd_client(node),
                "--advertise-client-urls",
                &etcd_client(node),
            ])
            .args([
                "--listen-peer-urls",
                &etcd_peer(node),
                "--initial-advertise-peer-urls",
                &etcd_peer(node),
            ])
            .args([
                "--initial-cluster",
                &cluster,
                "--initial-cluster-state",
                "new",
                "--log-level",
                "error",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts");
        self.children.set(node, child);
    }
}

/// Writers through `nodes`, recording when each write was acknowledged.
fn with_writers<S: System + Sync>(
    system: &S,
    nodes: &[usize],
    during: impl FnOnce(),
) -> Vec<Instant> {
    let stop = AtomicBool::new(false);
    let acks = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for writer in 0..WRITERS {
            let (stop, acks) = (&stop, &acks);
            scope.spawn(move || {
                let agent = agent();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let node = nodes[(writer + i) % nodes.len()];
                    let (url, body) = system.put(node, &format!("k{writer}-{i}"));
                    if let Some((status, answer)) = post(&agent, &url, &body) {
                        if system.ok(status, &answer) {
                            acks.lock().expect("acks").push(Instant::now());
                        }
                    }
                    i += 1;
                }
            });
        }
        std::thread::sleep(Duration::from_millis(1_000));
        during();
        std::thread::sleep(Duration::from_millis(3_000));
        stop.store(true, Ordering::Relaxed);
    });
    let mut acks = acks.into_inner().expect("acks");
    acks.sort();
    acks
}

/// The longest time without an acknowledged write after `from`.
fn gap_after(acks: &[Instant], from: Instant) -> Duration {
    let mut last = from;
    let mut longest = Duration::ZERO;
    for &ack in acks.iter().filter(|&&a| a >= from) {
        longest = longest.max(ack - last);
        last = ack;
    }
    longest
}

/// One round: writers write through every node; the leader of that
/// moment (looked up right before, since etcd without pre-vote may have
/// changed leaders when a restarted node rejoined) gets `signal`; the
/// longest time without an acknowledged write after it.
fn round<S: System + Sync>(system: &mut S, signal: &str) -> Duration {
    system.leader();
    let event = Mutex::new(None);
    let acks = with_writers(&*system, &[0, 1, 2], || {
        let leader = system.leader();
        let pid = system.processes().pid(leader);
        *event.lock().expect("event") = Some((Instant::now(), leader));
        Command::new("kill").args([signal, &pid.to_string()]).status().expect("kill");
    });
    let (at, leader) = event.into_inner().expect("event").expect("signalled");
    system.processes_mut().reap(leader);
    let gap = gap_after(&acks, at);
    let after = system.leader();
    eprintln!(
        "  {} {signal}: node {leader} led; node {after} leads after; {} writes acknowledged, gap {} ms",
        system.name(),
        acks.len(),
        ms(gap)
    );
    system.restart(leader);
    system.leader();
    // A restarted etcd node without pre-vote may start an election when it
    // rejoins; let that happen before the next round picks its leader.
    std::thread::sleep(SETTLE);
    system.leader();
    gap
}

/// Loads `keys` keys through every node, then adds a learner and waits
/// until it has applied everything committed when it was added: that time.
fn learner_catch_up<S: System + Sync>(system: &mut S, keys: usize) -> Duration {
    let started = Instant::now();
    load(&*system, keys);
    eprintln!("  {}: {keys} keys loaded in {:?}", system.name(), started.elapsed());
    let (target, since) = system.add_learner();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if system.learner_index() >= target {
            return since.elapsed();
        }
        assert!(Instant::now() < deadline, "{}: the learner never caught up", system.name());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `keys` distinct keys, 32 writers through all three nodes.
fn load<S: System + Sync>(system: &S, keys: usize) {
    const LOADERS: usize = 32;
    std::thread::scope(|scope| {
        for loader in 0..LOADERS {
            scope.spawn(move || {
                let agent = agent();
                for i in (loader..keys).step_by(LOADERS) {
                    let (url, body) = system.put(i % 3, &format!("load-{i:08}"));
                    for _ in 0..20 {
                        if post(&agent, &url, &body).is_some_and(|(s, a)| system.ok(s, &a)) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            });
        }
    });
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e3)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks; nothing to list
    }
    let runs = env_usize("RDB_BENCH_RUNS", 5);
    let keys = env_usize("RDB_BENCH_KEYS", 1_000_000);
    let dir = tempfile::tempdir().expect("dir");
    println!("| system | graceful stop of the leader: write gap, ms (runs) | median | SIGKILL of the leader: write gap, ms (runs) | median |");
    println!("|---|---|---:|---|---:|");
    let mut rdb = Rdb::start(&dir.path().join("rdb"));
    report(&mut rdb, runs);
    let rdb_learner = learner_catch_up(&mut rdb, keys);
    drop(rdb);
    let mut etcd = Etcd::start(&dir.path().join("etcd"));
    report(&mut etcd, runs);
    let etcd_learner = learner_catch_up(&mut etcd, keys);
    drop(etcd);
    println!();
    println!("| system | a learner added to {keys} keys caught up after, ms |");
    println!("|---|---:|");
    println!("| rdb | {} |", ms(rdb_learner));
    println!("| etcd 3.4 | {} |", ms(etcd_learner));
}

fn report<S: System + Sync>(system: &mut S, runs: usize) {
    let graceful: Vec<Duration> = (0..runs).map(|_| round(system, "-TERM")).collect();
    let killed: Vec<Duration> = (0..runs).map(|_| round(system, "-KILL")).collect();
    let list = |v: &[Duration]| v.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ");
    println!(
        "| {} | {} | {} | {} | {} |",
        system.name(),
        list(&graceful),
        ms(median(graceful.clone())),
        list(&killed),
        ms(median(killed.clone()))
    );
}
