//! Fault injection with a linearizability check, the way Jepsen tests etcd,
//! on one machine: real clusters of `rdb serve`, peers connected through
//! test-owned TCP proxies (`jepsen/proxy.rs`) so that partitions need no
//! root, nemeses that kill, pause and cut, concurrent clients recording
//! every operation (`jepsen/workload.rs`), and a Wing & Gong checker per key
//! (`jepsen/checker.rs`). tests/README.md lists the faults and promises.
//!
//! - `RDB_JEPSEN_SECS` (default 10): how long each scenario's faults run.
//! - `RDB_TEST_SEED=<seed>`: replay one seed (a failure prints it).
//! - `RDB_JEPSEN_SOAK=<n>`: run n more random seeds per scenario.

#[path = "jepsen/checker.rs"]
mod checker;
mod common;
#[path = "jepsen/lease_keeper.rs"]
mod lease_keeper;
#[path = "jepsen/proxy.rs"]
mod proxy;
#[path = "jepsen/watchers.rs"]
mod watchers;
#[path = "jepsen/workload.rs"]
mod workload;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use checker::Verdict;
use common::TestCluster;
use proxy::{Link, Mode};

/// Keys the clients share (few, so that operations collide).
const KEYS: usize = 4;
/// Concurrent clients.
const CLIENTS: usize = 5;
/// Watchers beside them.
const WATCHERS: usize = 2;
/// Faults per scenario, at most.
const FAULTS_MAX: usize = 50;
/// Search steps per key before the checker gives up (then the test fails
/// as inconclusive rather than pass).
const CHECK_STEPS_MAX: u64 = 20_000_000;

/// The faults a scenario draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// SIGKILL the leader or a random node, restart it later.
    Kill,
    /// SIGSTOP the leader or a random node, SIGCONT it later.
    Pause,
    /// Cut every link of the leader.
    IsolateLeader,
    /// Cut a random minority off from the rest.
    IsolateMinority,
    /// Blackhole one direction of the leader's links (it hears, is not heard; or the reverse).
    OneWay,
    /// Two sides that cannot see each other, and one node that sees both.
    Bridge,
    /// Slow every link by a random delay.
    Slow,
    /// Kill a follower, let the others snapshot and compact, restart it, and
    /// kill it again while the snapshot is arriving.
    SnapshotCrash,
    /// Remove a random voter (the leader too) through a random node; re-add
    /// it later as a learner and promote it.
    Reconfigure,
}

/// A cluster behind proxies.
struct Rig {
    cluster: TestCluster,
    /// Proxies by (dialer, dialed): one each way for every pair, since the
    /// higher id dials too when no connection came (`rpc::FALLBACK_DIAL_AFTER`).
    links: BTreeMap<(u16, u16), Link>,
    http_ports: Vec<u16>,
    agent: ureq::Agent,
}

impl Rig {
    fn start(nodes: u16, base: u16, extra: &[&str]) -> Rig {
        let real = |id: u16| SocketAddr::from(([127, 0, 0, 1], base + 50 + id));
        let mut links = BTreeMap::new();
        let mut port = base + 100;
        for a in 1..=nodes {
            for b in (1..=nodes).filter(|&b| b != a) {
                port += 1;
                links
                    .insert((a, b), Link::start(SocketAddr::from(([127, 0, 0, 1], port)), real(b)));
            }
        }
        let peers_of = |id: u16| -> String {
            (1..=nodes)
                .map(|other| {
                    let addr = if other == id { real(id) } else { links[&(id, other)].listen };
                    format!("{other}={addr}")
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        let cluster = TestCluster::start_each(nodes, base, extra, |id| {
            vec!["--peers".into(), peers_of(id), "--raft".into(), real(id).to_string()]
        });
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_millis(500)))
            .build()
            .into();
        let http_ports = (1..=nodes).map(|id| base + id).collect();
        Rig { cluster, links, http_ports, agent }
    }

    /// The leader as some responsive node reports it.
    fn leader(&self) -> Option<u16> {
        for id in self.cluster.running() {
            let port = self.http_ports[usize::from(id - 1)];
            let Ok(text) = workload::status(&self.agent, port) else { continue };
            let status: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if let Some(leader) = status["leader"].as_u64().filter(|&l| l != 0) {
                return u16::try_from(leader).ok();
            }
        }
        None
    }

    fn cut_between(&self, left: &[u16], right: &[u16]) {
        for (&(a, b), link) in &self.links {
            if (left.contains(&a) && right.contains(&b))
                || (left.contains(&b) && right.contains(&a))
            {
                link.set(Mode::Cut, Mode::Cut);
            }
        }
    }

    fn heal(&self) {
        self.links.values().for_each(Link::heal);
    }
}

/// Applies one fault; returns how to undo it.
fn inflict(rig: &mut Rig, fault: Fault, rng: &mut fastrand::Rng) -> Box<dyn FnOnce(&mut Rig)> {
    let nodes = u16::try_from(rig.http_ports.len()).expect("small");
    let all: Vec<u16> = (1..=nodes).collect();
    let leader = rig.leader().unwrap_or(1);
    let victim = if rng.bool() { leader } else { rng.u16(1..=nodes) };
    match fault {
        Fault::Kill => {
            rig.cluster.kill(victim);
            Box::new(move |rig| rig.cluster.restart(victim))
        }
        Fault::Pause => {
            rig.cluster.pause(victim, true);
            Box::new(move |rig| rig.cluster.pause(victim, false))
        }
        Fault::IsolateLeader => {
            let rest: Vec<u16> = all.iter().copied().filter(|&id| id != leader).collect();
            rig.cut_between(&[leader], &rest);
            Box::new(|rig| rig.heal())
        }
        Fault::IsolateMinority => {
            let mut shuffled = all.clone();
            rng.shuffle(&mut shuffled);
            let (minority, majority) = shuffled.split_at(usize::from((nodes - 1) / 2));
            rig.cut_between(minority, majority);
            Box::new(|rig| rig.heal())
        }
        Fault::OneWay => {
            let deaf = rng.bool();
            for (&(a, b), link) in &rig.links {
                if a == leader || b == leader {
                    // "up" is a -> b. Blackhole what the leader sends (or hears).
                    let leader_sends_up = a == leader;
                    let (up, down) = if leader_sends_up != deaf {
                        (Mode::Blackhole, Mode::Pass)
                    } else {
                        (Mode::Pass, Mode::Blackhole)
                    };
                    link.set(up, down);
                }
            }
            Box::new(|rig| rig.heal())
        }
        Fault::Bridge => {
            let mut shuffled = all.clone();
            rng.shuffle(&mut shuffled);
            let half = usize::from(nodes / 2);
            let (left, rest) = shuffled.split_at(half);
            let right = &rest[1..]; // rest[0] is the bridge, which sees both
            rig.cut_between(left, right);
            Box::new(|rig| rig.heal())
        }
        Fault::Slow => {
            let delay = Duration::from_millis(rng.u64(5..60));
            rig.links.values().for_each(|link| link.delay(delay));
            Box::new(|rig| rig.heal())
        }
        Fault::SnapshotCrash => snapshot_crash(rig, leader, nodes),
        Fault::Reconfigure => reconfigure(rig, rng),
    }
}

/// An admin request through random nodes until one answers other than 503
/// (nothing happened) or `tries` are spent; the last status.
fn admin(
    rig: &Rig,
    rng: &mut fastrand::Rng,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    tries: usize,
) -> u16 {
    let mut status = 0;
    for _ in 0..tries {
        let id = rng.u16(1..=u16::try_from(rig.http_ports.len()).expect("small"));
        if !rig.cluster.running().contains(&id) {
            continue;
        }
        status = rig.cluster.admin(id, method, path, body).0;
        if status != 503 {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    status
}

/// Removes a random voter (when more than one votes) and, on undo, adds it
/// back as a learner at the address it had and promotes it.
fn reconfigure(rig: &mut Rig, rng: &mut fastrand::Rng) -> Box<dyn FnOnce(&mut Rig)> {
    let running = rig.cluster.running();
    let Some(&asked) = running.get(rng.usize(..running.len().max(1))) else {
        return Box::new(|_| {});
    };
    let (code, listed) = rig.cluster.admin(asked, "GET", "/admin/members", None);
    let members = listed["members"].as_array().cloned().unwrap_or_default();
    let voters: Vec<&serde_json::Value> = members.iter().filter(|m| m["role"] == "voter").collect();
    if code != 200 || voters.len() < 2 {
        return Box::new(|_| {});
    }
    let victim = voters[rng.usize(..voters.len())].clone();
    let id = victim["id"].as_u64().expect("id");
    if admin(rig, rng, "DELETE", &format!("/admin/members/{id}"), None, 30) != 200 {
        return Box::new(|_| {});
    }
    let mut rng = fastrand::Rng::with_seed(rng.u64(..));
    Box::new(move |rig| {
        let add = serde_json::json!({"id": id, "peer": victim["peer"], "learner": true});
        if admin(rig, &mut rng, "POST", "/admin/members", Some(&add), 30) == 200 {
            admin(rig, &mut rng, "POST", &format!("/admin/members/{id}/promote"), None, 50);
        }
    })
}

fn snapshot_crash(rig: &mut Rig, leader: u16, nodes: u16) -> Box<dyn FnOnce(&mut Rig)> {
    let follower = (1..=nodes).find(|&id| id != leader).expect("a follower");
    rig.cluster.kill(follower);
    std::thread::sleep(Duration::from_millis(1_500));
    rig.cluster.restart(follower);
    let incoming =
        rig.cluster.nodes[usize::from(follower - 1)].data_dir.join("snapshots/incoming.tmp");
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if incoming.exists() {
            rig.cluster.kill(follower);
            return Box::new(move |rig| rig.cluster.restart(follower));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Box::new(|_| {})
}

/// Scenarios run one at a time: on two cores, six clusters at once would
/// test the scheduler more than rdb.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs a scenario with `seed`; panics with an explanation on a violation.
fn run(name: &str, nodes: u16, base: u16, faults: &[Fault], extra: &[&str], seed: u64) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let secs = std::env::var("RDB_JEPSEN_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let mut rig = Rig::start(nodes, base, extra);
    rig.cluster.wait_for_leader(Duration::from_secs(20));
    let history = workload::History::new(KEYS);
    let stop = AtomicBool::new(false);
    let ports = rig.http_ports.clone();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut log = Vec::new();
    let streams: Vec<std::sync::Mutex<watchers::Stream>> = (0..WATCHERS)
        .map(|_| std::sync::Mutex::new(watchers::Stream { next: 1, ..Default::default() }))
        .collect();
    let kept = std::thread::scope(|scope| {
        let (stop_ref, ports_ref) = (&stop, &ports);
        let keeper = scope.spawn(move || lease_keeper::run(seed ^ 0x1ea5e, ports_ref, stop_ref));
        for client in 0..CLIENTS {
            let (history, stop, ports) = (&history, &stop, &ports);
            scope.spawn(move || workload::run_client(client, seed, ports, KEYS, history, stop));
        }
        for (n, stream) in streams.iter().enumerate() {
            let (stop, ports) = (&stop, &ports);
            scope.spawn(move || watchers::run(seed ^ (n as u64 + 77), ports, stream, stop));
        }
        let started = Instant::now();
        for _ in 0..FAULTS_MAX {
            if started.elapsed() >= Duration::from_secs(secs) {
                break;
            }
            std::thread::sleep(Duration::from_millis(rng.u64(200..800)));
            let fault = faults[rng.usize(..faults.len())];
            log.push(format!("{:?} at {:?}", fault, started.elapsed()));
            let undo = inflict(&mut rig, fault, &mut rng);
            std::thread::sleep(Duration::from_millis(rng.u64(500..2_500)));
            undo(&mut rig);
        }
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        keeper.join().expect("the lease keeper")
    });
    rig.heal();
    rig.cluster.wait_for_leader(Duration::from_secs(30));
    workload::final_reads(&ports, &history);
    let torn = history.torn.lock().expect("history").clone();
    assert!(torn.is_empty(), "{name} seed {seed}: txns applied in part: {torn:?}\nfaults: {log:?}");
    let held = kept.and_then(|lease| lease_keeper::check_held(&ports, &lease));
    assert!(
        held.is_ok(),
        "{name} seed {seed}: a kept-alive lease was lost: {held:?}\nfaults: {log:?}"
    );
    check_watchers(name, seed, &ports, &streams, &history, &log);
    let keys = history.keys.into_inner().expect("history");
    let total: usize = keys.iter().map(Vec::len).sum();
    for (key, events) in keys.iter().enumerate() {
        match checker::check(events, None, CHECK_STEPS_MAX) {
            Verdict::Linearizable => {}
            verdict => fail(name, seed, key, events, &verdict, &log),
        }
    }
    eprintln!(
        "{name} seed {seed}: {total} operations on {KEYS} keys and {} pairs linearizable, no torn pair read; faults: {log:?}",
        workload::PAIRS
    );
    assert!(total > 100, "{name}: only {total} operations completed");
}

/// Every watcher caught up after healing, then checked against the writes
/// the clients saw acknowledged.
fn check_watchers(
    name: &str,
    seed: u64,
    ports: &[u16],
    streams: &[std::sync::Mutex<watchers::Stream>],
    history: &workload::History,
    log: &[String],
) {
    let acknowledged = history.acknowledged.lock().expect("history").clone();
    let last = acknowledged.iter().map(|write| write.0).max().unwrap_or(0);
    for (n, stream) in streams.iter().enumerate() {
        watchers::catch_up(ports, stream, last, Duration::from_secs(30));
        let stream = stream.lock().expect("stream");
        if let Err(why) = watchers::check(&stream, &acknowledged) {
            panic!(
                "{name}: watcher {n} with seed {seed}: {why}
gaps announced: {:?}
faults: {log:?}
                 replay: RDB_TEST_SEED={seed} cargo test --release --test jepsen {name}",
                stream.gaps
            );
        }
        eprintln!(
            "{name} seed {seed}: watcher {n} saw {} writes ({} acknowledged), {} announced gaps",
            stream.events.len(),
            acknowledged.len(),
            stream.gaps.len()
        );
    }
}

fn fail(
    name: &str,
    seed: u64,
    key: usize,
    events: &[checker::Event],
    verdict: &Verdict,
    log: &[String],
) -> ! {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("jepsen-{name}-{seed}-k{key}.txt"));
    let mut text =
        format!("{name}, seed {seed}, key k{key}: {verdict:?}\nfaults: {log:?}\n\nhistory:\n");
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|e| e.call);
    for e in &sorted {
        text.push_str(&format!("  client {} [{} .. {:?}] {:?}\n", e.client, e.call, e.ret, e.op));
    }
    let _ = std::fs::write(&path, &text);
    let explanation = match verdict {
        Verdict::Violation(why) => why.clone(),
        Verdict::TooHard(steps) => format!("inconclusive: the search gave up after {steps} steps"),
        Verdict::Linearizable => "linearizable".into(),
    };
    panic!(
        "{name}: key k{key} is not linearizable with seed {seed}.\n{explanation}\nhistory written to {}\n\
         replay: RDB_TEST_SEED={seed} cargo test --release --test jepsen {name}",
        path.display()
    );
}

/// The fixed seed of a scenario, or the replayed one; plus soak seeds.
fn seeds(fixed: u64) -> Vec<u64> {
    if let Some(seed) = common::seed::replay() {
        return vec![seed];
    }
    let soak: u64 = std::env::var("RDB_JEPSEN_SOAK").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    std::iter::once(fixed)
        .chain((0..soak).map(|i| clock.wrapping_mul(31).wrapping_add(i)))
        .collect()
}

#[test]
fn kills() {
    for seed in seeds(1) {
        run("kills", 3, common::ports::base("jepsen::kills"), &[Fault::Kill], &[], seed);
    }
}

#[test]
fn pauses() {
    for seed in seeds(2) {
        run("pauses", 3, common::ports::base("jepsen::pauses"), &[Fault::Pause], &[], seed);
    }
}

#[test]
fn partitions() {
    for seed in seeds(3) {
        run(
            "partitions",
            3,
            common::ports::base("jepsen::partitions"),
            &[Fault::IsolateLeader, Fault::IsolateMinority, Fault::Slow],
            &[],
            seed,
        );
    }
}

#[test]
fn one_way_and_bridges() {
    for seed in seeds(4) {
        run(
            "one_way_and_bridges",
            5,
            common::ports::base("jepsen::one_way_and_bridges"),
            &[Fault::OneWay, Fault::Bridge, Fault::IsolateMinority],
            &[],
            seed,
        );
    }
}

#[test]
fn snapshot_crashes() {
    let extra = [
        "--snapshot-entries",
        "200",
        "--compaction-margin-entries",
        "20",
        "--wal-segment-bytes",
        "8192",
        "--snapshot-chunk-bytes",
        "2048",
    ];
    for seed in seeds(5) {
        run(
            "snapshot_crashes",
            3,
            common::ports::base("jepsen::snapshot_crashes"),
            &[Fault::SnapshotCrash, Fault::Kill],
            &extra,
            seed,
        );
    }
}

/// Members removed (the leader too) and re-added among crashes and pauses.
/// Partitions through the proxies are left out: they are per pair of
/// nodes, while a membership change gives every node the leader's one
/// address per member (the pauses isolate a node instead).
#[test]
fn membership_changes() {
    let faults = [Fault::Reconfigure, Fault::Reconfigure, Fault::Kill, Fault::Pause];
    for seed in seeds(7) {
        run(
            "membership_changes",
            5,
            common::ports::base("jepsen::membership_changes"),
            &faults,
            &[],
            seed,
        );
    }
}

#[test]
fn everything_at_once() {
    let all = [
        Fault::Kill,
        Fault::Pause,
        Fault::IsolateLeader,
        Fault::IsolateMinority,
        Fault::OneWay,
        Fault::Bridge,
        Fault::Slow,
    ];
    for seed in seeds(6) {
        run(
            "everything_at_once",
            5,
            common::ports::base("jepsen::everything_at_once"),
            &all,
            &[],
            seed,
        );
    }
}
