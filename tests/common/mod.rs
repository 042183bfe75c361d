//! A cluster of real `rdb serve` processes on 127.0.0.1 for integration
//! tests. Each test passes its own port base, so tests running in parallel
//! never share a port (HTTP ports base+id, peer ports base+50+id); data
//! lives in a temporary directory; every process is killed on drop.

#![allow(dead_code)]

pub mod golden;
pub mod ports;
pub mod raw;
pub mod seed;
pub mod tls;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Offset between a node's HTTP port and its peer port.
const PEER_PORT_OFFSET: u16 = 50;

/// One node of a test cluster.
pub struct TestNode {
    pub id: u16,
    pub http_port: u16,
    pub data_dir: PathBuf,
    pub child: Option<Child>,
    /// Arguments for this node only (certificates, say).
    pub args: Vec<String>,
    /// Environment variables for this node's process.
    pub env: Vec<(String, String)>,
    /// Started with `--join` (and its own `--raft`) instead of `--peers`.
    pub join: bool,
}

impl TestNode {
    /// This node's peer address.
    pub fn peer_addr(&self) -> String {
        format!("127.0.0.1:{}", self.http_port + PEER_PORT_OFFSET)
    }

    /// This node's client URL.
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }
}

/// A running test cluster.
pub struct TestCluster {
    pub nodes: Vec<TestNode>,
    pub peers: String,
    extra_args: Vec<String>,
    _dir: tempfile::TempDir,
    agent: ureq::Agent,
}

impl TestCluster {
    /// Starts `count` nodes with ports from `port_base`.
    pub fn start(count: u16, port_base: u16, extra_args: &[&str]) -> Self {
        Self::start_each(count, port_base, extra_args, |_| Vec::new())
    }

    /// Like `start`, with environment variables for each node from
    /// `env_of(id)`.
    pub fn start_with_env(
        count: u16,
        port_base: u16,
        env_of: impl Fn(u16) -> Vec<(String, String)>,
    ) -> Self {
        Self::start_each_with(count, port_base, &[], |_| Vec::new(), env_of)
    }

    /// Like `start`, with arguments for each node from `args_of(id)`.
    pub fn start_each(
        count: u16,
        port_base: u16,
        extra_args: &[&str],
        args_of: impl Fn(u16) -> Vec<String>,
    ) -> Self {
        Self::start_each_with(count, port_base, extra_args, args_of, |_| Vec::new())
    }

    fn start_each_with(
        count: u16,
        port_base: u16,
        extra_args: &[&str],
        args_of: impl Fn(u16) -> Vec<String>,
        env_of: impl Fn(u16) -> Vec<(String, String)>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let peers = (1..=count)
            .map(|id| format!("{id}=127.0.0.1:{}", port_base + PEER_PORT_OFFSET + id))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = (1..=count)
            .map(|id| TestNode {
                id,
                http_port: port_base + id,
                data_dir: dir.path().join(format!("node{id}")),
                child: None,
                args: args_of(id),
                env: env_of(id),
                join: false,
            })
            .collect();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .into();
        let mut cluster = TestCluster {
            nodes,
            peers,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            _dir: dir,
            agent,
        };
        for id in 1..=count {
            cluster.restart(id);
        }
        cluster
    }

    fn node(&mut self, id: u16) -> &mut TestNode {
        &mut self.nodes[usize::from(id - 1)]
    }

    /// Starts the next node (id = nodes so far + 1) with `--join` and an
    /// empty data directory; a leader must add it. Returns its id.
    pub fn start_joining(&mut self) -> u16 {
        let args = self.nodes[0].args.clone();
        self.start_joining_with(args)
    }

    /// Like `start_joining`, with `args` for the new node alone.
    pub fn start_joining_with(&mut self, args: Vec<String>) -> u16 {
        let id = u16::try_from(self.nodes.len() + 1).expect("small");
        let http_port = self.nodes[0].http_port - 1 + id;
        let data_dir = self._dir.path().join(format!("node{id}"));
        self.nodes.push(TestNode {
            id,
            http_port,
            data_dir,
            child: None,
            args,
            env: Vec::new(),
            join: true,
        });
        self.restart(id);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", http_port)).is_err() {
            assert!(Instant::now() < deadline, "node {id} never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        id
    }

    /// Starts node `id` (again).
    pub fn restart(&mut self, id: u16) {
        let peers = self.peers.clone();
        let extra = self.extra_args.clone();
        let node = self.node(id);
        assert!(node.child.is_none(), "node {id} is running");
        // A node's own `--peers` (through proxies, say) replaces the shared
        // list; a joining node has none.
        let own_peers = node.args.iter().any(|arg| arg == "--peers");
        let peers_args = match (node.join, own_peers) {
            (true, _) => vec!["--join".to_string(), "--raft".to_string(), node.peer_addr()],
            (false, true) => Vec::new(),
            (false, false) => vec!["--peers".to_string(), peers],
        };
        let child = Command::new(env!("CARGO_BIN_EXE_rdb"))
            .envs(node.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .arg("serve")
            .args(["--id", &id.to_string()])
            .args(&peers_args)
            .args(["--http", &format!("127.0.0.1:{}", node.http_port)])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(&extra)
            .args(&node.args)
            // Warnings only, unless RDB_TEST_LOG asks for more (`info` shows
            // each node's leader changes, say, when a test flakes).
            .env("RUST_LOG", std::env::var("RDB_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .spawn()
            .expect("rdb starts");
        node.child = Some(child);
    }

    /// SIGKILLs node `id`.
    pub fn kill(&mut self, id: u16) {
        if let Some(mut child) = self.node(id).child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM to node `id` and waits (up to `timeout`) for it to exit;
    /// returns whether it exited with status 0.
    pub fn terminate(&mut self, id: u16, timeout: Duration) -> bool {
        let mut child = self.node(id).child.take().expect("running");
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -TERM failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOPs (true) or SIGCONTs (false) node `id`.
    pub fn pause(&self, id: u16, stop: bool) {
        let child = self.nodes[usize::from(id - 1)].child.as_ref().expect("running");
        let signal = if stop { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").args([signal, &child.id().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill {signal} failed");
    }

    /// Ids of running nodes.
    pub fn running(&self) -> Vec<u16> {
        self.nodes.iter().filter(|n| n.child.is_some()).map(|n| n.id).collect()
    }

    fn url(&self, id: u16, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.nodes[usize::from(id - 1)].http_port)
    }

    fn post(&self, id: u16, body: &[u8]) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        self.agent
            .post(&self.url(id, "/command"))
            .header("Content-Type", "application/json")
            .send(body)
    }

    /// POSTs raw bytes to /command on node `id`.
    pub fn post_raw(&self, id: u16, body: &[u8]) -> (u16, Value) {
        read(self.post(id, body))
    }

    /// POSTs raw bytes to /command on node `id`; None if the node did not
    /// answer (it may be going away).
    pub fn post_raw_maybe(&self, id: u16, body: &[u8]) -> Option<u16> {
        self.post(id, body).ok().map(|r| r.status().as_u16())
    }

    /// POSTs a command to node `id`.
    pub fn command(&self, id: u16, body: &Value) -> (u16, Value) {
        self.post_raw(id, body.to_string().as_bytes())
    }

    /// An admin request (`method` `path`, JSON `body` or none) to node `id`.
    pub fn admin(&self, id: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(id, path))
            .body(body)
            .expect("a request");
        read(self.agent.run(request))
    }

    /// Voter and learner ids as node `id` lists them (GET /admin/members).
    pub fn members_of(&self, id: u16) -> (Vec<u64>, Vec<u64>) {
        let (status, body) = self.admin(id, "GET", "/admin/members", None);
        assert_eq!(status, 200, "{body}");
        let ids = |role: &str| -> Vec<u64> {
            body["members"]
                .as_array()
                .expect("members")
                .iter()
                .filter(|m| m["role"] == role)
                .map(|m| m["id"].as_u64().expect("id"))
                .collect()
        };
        (ids("voter"), ids("learner"))
    }

    /// POSTs an empty body to `path` on node `id`.
    pub fn command_to(&self, id: u16, path: &str) -> (u16, Value) {
        read(self.agent.post(&self.url(id, path)).send(&b""[..]))
    }

    /// GETs `path` on node `id`.
    pub fn get(&self, id: u16, path: &str) -> (u16, Value) {
        read(self.agent.get(&self.url(id, path)).call())
    }

    /// /status of node `id`, if it answers.
    pub fn status(&self, id: u16) -> Option<Value> {
        match self.agent.get(&self.url(id, "/status")).call() {
            Ok(mut response) => {
                let text = response.body_mut().read_to_string().ok()?;
                serde_json::from_str(&text).ok()
            }
            Err(_) => None,
        }
    }

    /// Waits until the running nodes agree on a leader; returns it.
    pub fn wait_for_leader(&self, timeout: Duration) -> u16 {
        self.wait_for_leader_of(&self.running(), timeout)
    }

    /// Waits until nodes `ids` agree on a leader; returns it. When `ids`
    /// are the whole cluster and all run, also until each has applied the
    /// cluster version this binary brings (the leader raises it within a
    /// second of its election), so that tests see revisions from the start.
    pub fn wait_for_leader_of(&self, ids: &[u16], timeout: Duration) -> u16 {
        let deadline = Instant::now() + timeout;
        let whole = ids.len() == self.nodes.len() && self.running().len() == self.nodes.len();
        let upgraded = |id: u16| {
            !whole
                || self.status(id).is_some_and(|s| {
                    s["cluster_version"].as_u64() >= Some(rdb::kv::CLUSTER_VERSION)
                })
        };
        loop {
            let leaders: Vec<u64> = ids
                .iter()
                .map(|&id| self.status(id).map_or(0, |s| s["leader"].as_u64().unwrap_or(0)))
                .collect();
            if leaders.iter().all(|&l| l != 0 && l == leaders[0]) {
                let leader = u16::try_from(leaders[0]).expect("small id");
                if self.status(leader).is_some_and(|s| s["role"] == "leader")
                    && ids.iter().all(|&id| upgraded(id))
                {
                    return leader;
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader within {timeout:?}: {leaders:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every running node has applied the same index as the
    /// leader's commit index.
    pub fn wait_for_convergence(&self, timeout: Duration) {
        self.wait_for_convergence_of(&self.running(), timeout);
    }

    /// Waits until nodes `ids` have applied the highest commit index any of
    /// them knows.
    pub fn wait_for_convergence_of(&self, ids: &[u16], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let applied: Vec<(u64, u64)> = ids
                .iter()
                .map(|&id| {
                    self.status(id).map_or((0, 1), |s| {
                        (
                            s["applied_index"].as_u64().unwrap_or(0),
                            s["commit_index"].as_u64().unwrap_or(1),
                        )
                    })
                })
                .collect();
            let max_commit = applied.iter().map(|a| a.1).max().unwrap_or(0);
            if applied.iter().all(|&(a, _)| a == max_commit) {
                return;
            }
            assert!(Instant::now() < deadline, "nodes did not converge: {applied:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every item of `collection` as node `id` has applied it.
    pub fn contents(&self, id: u16, collection: &str) -> Vec<(String, String)> {
        let mut items = Vec::new();
        let mut start = String::new();
        for _ in 0..1_000 {
            let (status, body) = self.command(
                id,
                &json!({"action": "range", "payload": {"collection": collection, "start": start,
                        "limit": 10000, "consistency": "serializable"}}),
            );
            if status == 404 {
                return items;
            }
            assert_eq!(status, 200, "range on node {id}: {body}");
            for item in body["items"].as_array().expect("items") {
                let key = item["key"].as_str().expect("key").to_string();
                items.push((key, item["value"].as_str().expect("value").to_string()));
            }
            if body["more"] != true {
                return items;
            }
            start = format!("{}\u{0}", items.last().expect("an item").0);
        }
        panic!("range did not end");
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for id in self.running() {
            self.kill(id);
        }
    }
}

fn read(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut response = response.unwrap_or_else(|e| panic!("the node does not answer: {e}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("a body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// Whether `tool` is on PATH. Where CI installs it (`RDB_REQUIRE_TOOLS=1`),
/// a missing tool fails the test instead of skipping it.
pub fn have_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("RDB_REQUIRE_TOOLS").is_err(),
            "{tool} is required (RDB_REQUIRE_TOOLS=1)"
        );
        eprintln!("SKIPPED: {tool} is not installed");
    }
    found
}

/// Flags that make a node compact its WAL (and need snapshots for a
/// follower left behind) after a few hundred entries.
pub const SNAPSHOT_ARGS: [&str; 6] = [
    "--snapshot-entries",
    "300",
    "--compaction-margin-entries",
    "50",
    "--wal-segment-bytes",
    "16384",
];

/// A put command.
pub fn put(collection: &str, key: &str, value: &str) -> Value {
    json!({"action": "put", "payload": {"collection": collection, "key": key, "value": value}})
}

/// A linearizable get by key.
pub fn get(collection: &str, key: &str) -> Value {
    json!({"action": "get", "payload": {"collection": collection, "key": key}})
}
