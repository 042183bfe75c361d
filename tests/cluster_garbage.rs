//! Input no node may be crashed by: random bytes on the peer port, Cap'n
//! Proto calls that break the peer protocol, and random request bodies on
//! /command. After each attack every node is alive and the cluster works.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, RpcSystem};
use common::{get, put, TestCluster};
use futures::task::LocalSpawnExt;
use rdb::rpc::raft_capnp::peer;

const PEER_PORT_OFFSET: u16 = 50;

fn port_base() -> u16 {
    common::ports::base("cluster_garbage")
}

fn peer_port(id: u16) -> u16 {
    port_base() + PEER_PORT_OFFSET + id
}

fn assert_all_alive_and_working(cluster: &mut TestCluster, round: &str) {
    for node in &mut cluster.nodes {
        let child = node.child.as_mut().expect("started");
        assert!(child.try_wait().expect("wait").is_none(), "node {} died after {round}", node.id);
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(15));
    assert_eq!(cluster.command(leader, &put("g", round, "ok")).0, 200, "{round}");
    for id in 1..=3 {
        assert_eq!(cluster.command(id, &get("g", round)).1["value"], "ok", "{round} on {id}");
    }
}

#[test]
fn garbage_from_peers_and_clients_crashes_nothing() {
    let mut cluster = TestCluster::start(3, port_base(), &[]);
    cluster.wait_for_leader(Duration::from_secs(15));

    // Random bytes on every peer port.
    let mut rng = fastrand::Rng::with_seed(7);
    for round in 0..30 {
        let id = u16::try_from(round % 3 + 1).expect("small");
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", peer_port(id))) {
            let bytes: Vec<u8> = (0..rng.usize(1..4096)).map(|_| rng.u8(..)).collect();
            let _ = stream.write_all(&bytes);
        }
    }
    // A frame header announcing a huge message.
    if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", peer_port(1))) {
        let _ = stream.write_all(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f]);
    }
    assert_all_alive_and_working(&mut cluster, "random-bytes");

    // Well-formed Cap'n Proto that breaks the protocol.
    let refusals = protocol_violations(peer_port(2));
    assert_eq!(refusals, [true, true, true, true], "each violation is refused");
    assert_all_alive_and_working(&mut cluster, "protocol-violations");

    // Without TLS nothing tells an impostor from member 1: its hello is
    // accepted and replaces member 1's connection. Replacing a connection
    // must not hurt the node (it once panicked the task serving the new
    // connection: the old one was closed while the map of connections was
    // still borrowed), and member 1 must get its place back.
    for round in 0..3 {
        assert!(impersonate_member_1(peer_port(2)), "hello accepted in round {round}");
    }
    assert_all_alive_and_working(&mut cluster, "impostor");

    // Random and mangled request bodies: always a 4xx, never a crash.
    let templates = [
        r#"{"action":"put","payload":{"collection":"c","key":"k","value":"v"}}"#,
        r#"{"action":"cas","payload":{"collection":"c","key":"k","expected":null,"value":"v"}}"#,
        r#"{"action":"range","payload":{"collection":"c","limit":5}}"#,
    ];
    for round in 0..300 {
        let mut body = templates[round % templates.len()].as_bytes().to_vec();
        for _ in 0..rng.usize(1..6) {
            let at = rng.usize(..body.len());
            match rng.u8(0..3) {
                0 => body[at] = rng.u8(..),
                1 => {
                    body.remove(at);
                }
                _ => body.insert(at, rng.u8(..)),
            }
        }
        let (status, answer) =
            cluster.post_raw(1 + u16::try_from(round % 3).expect("small"), &body);
        assert!(
            status < 500 || status == 503,
            "{status} for {}: {answer}",
            String::from_utf8_lossy(&body)
        );
    }
    assert_all_alive_and_working(&mut cluster, "random-bodies");
}

/// A peer address where something accepts the connection and hangs up at
/// once (a process of another cluster, a wrong certificate, a proxy): the
/// node must redial with backoff (50 ms doubling to 2 s), not at full rate
/// because the TCP connect itself succeeded.
#[test]
fn a_peer_that_accepts_and_hangs_up_is_redialled_with_backoff() {
    const WATCH: Duration = Duration::from_secs(4);
    let base = common::ports::base("cluster_garbage::redialled_with_backoff");
    let hang_up = std::net::TcpListener::bind(("127.0.0.1", base + 52)).expect("free port");
    hang_up.set_nonblocking(true).expect("nonblocking");
    let peers = format!("1=127.0.0.1:{},2=127.0.0.1:{}", base + 51, base + 52);
    let cluster = TestCluster::start_each(1, base, &[], |_| vec!["--peers".into(), peers.clone()]);
    let started = Instant::now();
    let mut accepted = 0;
    while started.elapsed() < WATCH {
        match hang_up.accept() {
            Ok((stream, _)) => {
                accepted += 1;
                drop(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    drop(cluster);
    // With backoff: dials at about 0, 0.05, 0.15, 0.35, 0.75, 1.55, 3.15 s.
    assert!((1..=12).contains(&accepted), "{accepted} dials in {WATCH:?}");
}

/// Connects to a node's peer port as an impostor and tries three protocol
/// violations, each on a fresh connection; returns whether each was refused.
fn protocol_violations(port: u16) -> Vec<bool> {
    let mut pool = futures::executor::LocalPool::new();
    let spawner = pool.spawner();
    pool.run_until(async move {
        let mut refused = Vec::new();
        // 1. deliver before hello.
        let client = connect(&spawner, port).await;
        let mut request = client.deliver_request();
        request.get().init_messages(0);
        refused.push(request.send().promise.await.is_err());
        // 2. hello from another cluster.
        let client = connect(&spawner, port).await;
        let mut request = client.hello_request();
        request.get().set_from(1);
        request.get().set_cluster("not-rdb");
        refused.push(request.send().promise.await.is_err());
        // 3. an id that is not a member; 4. the receiver's own id.
        for from in [7, 2] {
            let client = connect(&spawner, port).await;
            let mut request = client.hello_request();
            request.get().set_from(from);
            request.get().set_cluster("rdb");
            refused.push(request.send().promise.await.is_err());
        }
        refused
    })
}

/// Says a valid hello to a node's peer port as member 1, holds the
/// connection a moment, and drops it; returns whether hello was accepted.
fn impersonate_member_1(port: u16) -> bool {
    let mut pool = futures::executor::LocalPool::new();
    let spawner = pool.spawner();
    pool.run_until(async move {
        let client = connect(&spawner, port).await;
        let mut request = client.hello_request();
        request.get().set_from(1);
        request.get().set_cluster("rdb");
        let accepted = request.send().promise.await.is_ok();
        async_std::task::sleep(Duration::from_millis(300)).await;
        accepted
    })
}

async fn connect(spawner: &futures::executor::LocalSpawner, port: u16) -> peer::Client {
    let stream = async_std::net::TcpStream::connect(("127.0.0.1", port)).await.expect("peer port");
    let network =
        twoparty::VatNetwork::new(stream.clone(), stream, Side::Client, Default::default());
    let mut system = RpcSystem::new(Box::new(network), None);
    let client: peer::Client = system.bootstrap(Side::Server);
    spawner
        .spawn_local(async move {
            let _ = system.await;
        })
        .expect("spawn");
    client
}
