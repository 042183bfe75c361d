//! The HTTP front door as real clients use it, over raw sockets against a
//! 3-node cluster: HTTP/1.0 (ApacheBench, haproxy's health checks),
//! HTTP/1.1 without Host, pipelining, chunked bodies, Expect: 100-continue,
//! broken framing, strict JSON decoding through leader and follower, and
//! the configurable body, key and value limits. Each case here failed
//! before rdb served its own connections (async-h1 closed HTTP/1.0 and
//! Host-less connections without a word and dropped pipelined requests).

mod common;

use std::process::Command;
use std::time::Duration;

use common::raw::{post, RawConn};
use common::TestCluster;
use serde_json::json;

/// The limits the cluster runs with: small, to show they are settings.
const LIMITS: [&str; 6] =
    ["--body-bytes-max", "65536", "--key-bytes-max", "64", "--value-bytes-max", "4096"];

fn put_body(collection: &str, key: &str, value: &str) -> String {
    json!({"action": "put", "payload": {"collection": collection, "key": key, "value": value}})
        .to_string()
}

/// The value of `key` as node `id` sees it (linearizable), if any.
fn value_of(cluster: &TestCluster, id: u16, collection: &str, key: &str) -> Option<String> {
    let (status, body) = cluster.command(id, &common::get(collection, key));
    (status == 200).then(|| body["value"].as_str().expect("a value").to_string())
}

#[test]
fn real_clients_get_answers() {
    let cluster = TestCluster::start(3, common::ports::base("http_front_door"), &LIMITS);
    let leader = cluster.wait_for_leader(Duration::from_secs(15));
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    let port = |id: u16| cluster.nodes[usize::from(id - 1)].http_port;

    http_1_0(&cluster, port(follower), port(leader));
    host_rules(&cluster, port(leader));
    pipelining(&cluster, port(follower), port(leader));
    bodies(&cluster, port(follower));
    broken_framing(port(leader));
    strict_json(port(leader), port(follower));
    limits(port(follower));
    error_bodies(port(leader));
    apache_bench(&cluster, port(follower));
    curl_http_1_0(port(follower));
    hostile_heads(&cluster, port(leader));
    bounded_resources(port(follower));
}

/// What a hostile or sloppy client sends: a Host that looks like a path, a
/// lowercase method, bytes beyond ASCII, a body cut short.
fn hostile_heads(cluster: &TestCluster, port: u16) {
    // The path comes from the request target only; a Host with a path in
    // it is refused, not routed.
    let body = put_body("smuggle", "k", "v");
    let mut conn = RawConn::open(port);
    conn.send(
        format!(
            "POST /health HTTP/1.1\r\nHost: x/command#\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(conn.response().status, 400);
    assert_eq!(value_of(cluster, 1, "smuggle", "k"), None, "nothing applied");
    let mut conn = RawConn::open(port);
    conn.send(b"GET /nope HTTP/1.0\r\nHost: x/status?\r\n\r\n");
    assert_eq!(conn.response().status, 400);
    // Method names are case-sensitive.
    let mut conn = RawConn::open(port);
    conn.send(b"get /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(conn.response().status, 501);
    // A header with bytes beyond ASCII is no reason to refuse a request.
    let mut conn = RawConn::open(port);
    conn.send(b"GET /health HTTP/1.1\r\nHost: x\r\nUser-Agent: caf\xc3\xa9\r\n\r\n");
    assert_eq!(conn.response().status, 200);
    // A body cut short by a client that half-closes is answered.
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut conn = RawConn::from_stream(stream.try_clone().expect("clone"));
    conn.send(b"POST /command HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}");
    stream.shutdown(std::net::Shutdown::Write).expect("half-close");
    assert_eq!(conn.response().status, 400);
}

/// One client cannot take a node's memory or connections: bodies held at
/// once are bounded (503 past the budget), and connections past the limit
/// are answered 503 rather than closed unanswered.
fn bounded_resources(port: u16) {
    // 64 MiB of bodies at once at most: 1,024 bodies of 64 KiB (this
    // cluster's --body-bytes-max) announced and not sent hold all of it;
    // the next one does not fit.
    let head = "POST /command HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n{";
    let budget = rdb::http::BODY_BUDGET_BYTES / 65536;
    let mut holding: Vec<RawConn> = (0..budget)
        .map(|_| {
            let mut conn = RawConn::open(port);
            conn.send(head.as_bytes());
            conn
        })
        .collect();
    // Once the node holds them all, the next does not fit: it is refused
    // at its head. A probe that still fits (the node has not read every
    // head yet) is kept holding its share, as the others do: a probe that
    // sent its body and went away would leave room that a late head then
    // took and was refused for, and the budget would never fill.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let answer = loop {
        let mut probe = RawConn::open(port);
        probe.send(head.as_bytes());
        if probe.answered_within(Duration::from_millis(500)) {
            break probe.response();
        }
        assert!(std::time::Instant::now() < deadline, "no head refused within 30 s");
        holding.push(probe);
    };
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.header("retry-after"), Some("1"));
    holding.clear();
    std::thread::sleep(Duration::from_millis(300));
    let mut conn = RawConn::open(port);
    conn.send(&post("HTTP/1.1", "", &put_body("budget", "k", "back")));
    assert_eq!(conn.response().status, 200, "the budget is given back");

    // 4,096 connections at most; the next is told 503.
    let idle: Vec<std::net::TcpStream> = (0..rdb::http::HTTP_CONNECTIONS_MAX)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    // Once the node has accepted them all (a probe answered 200 was let in
    // and goes away again), the next is refused.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let answer = loop {
        let mut over = RawConn::open(port);
        over.send(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = over.response();
        if answer.status != 200 || std::time::Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.json()["error"].as_str().expect("error").contains("connections"));
    drop(idle);
    std::thread::sleep(Duration::from_millis(500));
    let mut conn = RawConn::open(port);
    conn.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(conn.response().status, 200, "served again once they are gone");
}

fn http_1_0(cluster: &TestCluster, follower: u16, leader: u16) {
    // No Host, no keep-alive: answered, then closed (haproxy's check).
    let mut conn = RawConn::open(follower);
    conn.send(b"GET /health HTTP/1.0\r\n\r\n");
    let answer = conn.response();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["status"], "ok");
    assert!(conn.closed(), "HTTP/1.0 without keep-alive closes");

    // A put over HTTP/1.0 through a follower is forwarded and applied.
    let mut conn = RawConn::open(follower);
    conn.send(&post("HTTP/1.0", "", &put_body("h10", "k", "via 1.0")));
    let answer = conn.response();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(value_of(cluster, 1, "h10", "k").as_deref(), Some("via 1.0"));

    // HTTP/1.0 keep-alive: two requests on one connection.
    let mut conn = RawConn::open(leader);
    for i in 0..2 {
        let body = put_body("h10", &format!("ka{i}"), "v");
        conn.send(&post("HTTP/1.0", "Connection: keep-alive\r\n", &body));
        let answer = conn.response();
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.header("connection"), Some("keep-alive"));
    }
    assert_eq!(value_of(cluster, 2, "h10", "ka1").as_deref(), Some("v"));
}

fn host_rules(cluster: &TestCluster, leader: u16) {
    let body = put_body("hosts", "k", "v");
    let request = format!("POST /command HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let mut conn = RawConn::open(leader);
    conn.send(request.as_bytes());
    let answer = conn.response();
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.json()["error"].as_str().expect("error").contains("Host"));
    assert!(conn.closed());
    assert_eq!(value_of(cluster, 1, "hosts", "k"), None, "a refused request changes nothing");
}

fn pipelining(cluster: &TestCluster, follower: u16, leader: u16) {
    for port in [follower, leader] {
        // Three requests in one write: two puts and a health check.
        let mut conn = RawConn::open(port);
        let mut bytes = post("HTTP/1.1", "", &put_body("pipe", &format!("a{port}"), "1"));
        bytes.extend(post("HTTP/1.1", "", &put_body("pipe", &format!("b{port}"), "2")));
        bytes.extend(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        conn.send(&bytes);
        for expected in ["1", "2"] {
            let answer = conn.response();
            assert_eq!((answer.status, answer.json()["value"].as_str()), (200, Some(expected)));
        }
        assert_eq!(conn.response().json()["status"], "ok");
        assert_eq!(value_of(cluster, 3, "pipe", &format!("b{port}")).as_deref(), Some("2"));
        // Two pipelined GETs, the second asking to close.
        let mut conn = RawConn::open(port);
        conn.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert_eq!(conn.response().status, 200);
        let status = conn.response();
        assert!(status.json()["commit_index"].is_u64(), "{status:?}");
        assert!(conn.closed());
    }
    // HEAD answers the head only; the next request still gets its answer.
    let mut conn = RawConn::open(leader);
    conn.send(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = conn.response_to(true);
    assert_eq!(head.status, 200);
    assert!(head.header("content-length").is_some());
    assert_eq!(conn.response().json()["status"], "ok");
}

fn bodies(cluster: &TestCluster, follower: u16) {
    // A chunked body, split in odd places, with an extension and a trailer.
    let body = put_body("chunks", "k", "chunked");
    let (a, b) = body.split_at(7);
    let request = format!(
        "POST /command HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x};ext=1\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\nX-Trailer: t\r\n\r\n",
        a.len(),
        b.len()
    );
    let mut conn = RawConn::open(follower);
    conn.send(request.as_bytes());
    assert_eq!(conn.response().status, 200);
    assert_eq!(value_of(cluster, 1, "chunks", "k").as_deref(), Some("chunked"));

    // Expect: 100-continue: told to go on, then answered.
    let body = put_body("chunks", "k2", "continued");
    let mut conn = RawConn::open(follower);
    conn.send(
        format!(
            "POST /command HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(conn.response().status, 100);
    conn.send(body.as_bytes());
    assert_eq!(conn.response().status, 200);

    // ... or told at once that the body is too large, without sending it.
    let mut conn = RawConn::open(follower);
    conn.send(b"POST /command HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 70000\r\n\r\n");
    let answer = conn.response();
    assert_eq!(answer.status, 413, "{answer:?}");
    let error = answer.json()["error"].as_str().expect("error").to_string();
    assert!(error.contains("65536") && error.contains("--body-bytes-max"), "{error}");
    assert!(conn.closed());

    // A too-large body sent anyway is read and answered 413, then closed.
    let huge = format!(
        "{{\"action\":\"put\",\"payload\":{{\"collection\":\"c\",\"value\":\"{}\"}}}}",
        "v".repeat(70_000)
    );
    let mut conn = RawConn::open(follower);
    conn.send(&post("HTTP/1.1", "", &huge));
    assert_eq!(conn.response().status, 413);
    assert!(conn.closed());
    // So is a chunked one.
    let mut conn = RawConn::open(follower);
    let chunk = "x".repeat(40_000);
    conn.send(
        format!(
            "POST /command HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len(),
            chunk.len()
        )
        .as_bytes(),
    );
    assert_eq!(conn.response().status, 413);
}

fn broken_framing(port: u16) {
    let cases: [(&[u8], u16); 9] = [
        (b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"POST /command HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST /command HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
        (b"POST /command HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\n", 400),
        (b"POST /command HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST /command HTTP/1.1\r\nHost: x\r\nExpect: 999-what\r\nContent-Length: 2\r\n\r\n{}", 417),
        (b"GET health HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello on the plain port\r\n\r\n", 400),
    ];
    for (request, status) in cases {
        let mut conn = RawConn::open(port);
        conn.send(request);
        let answer = conn.response();
        assert_eq!(answer.status, status, "{:?}: {answer:?}", String::from_utf8_lossy(request));
        assert!(answer.json()["error"].is_string());
        assert!(conn.closed(), "closed after a framing error");
    }
    // A head over 64 KiB is 431.
    let mut conn = RawConn::open(port);
    conn.send(
        format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(70_000))
            .as_bytes(),
    );
    assert_eq!(conn.response().status, 431);
}

fn strict_json(leader: u16, follower: u16) {
    for port in [leader, follower] {
        let mut conn = RawConn::open(port);
        let typo = r#"{"action":"range","payload":{"collection":"c","prefx":"a"}}"#;
        conn.send(&post("HTTP/1.1", "", typo));
        let answer = conn.response();
        assert_eq!(answer.status, 400);
        assert!(answer.json()["error"].as_str().expect("error").contains("\"prefx\""));
        let twice =
            r#"{"action":"put","payload":{"collection":"c","key":"a","key":"b","value":"v"}}"#;
        conn.send(&post("HTTP/1.1", "", twice));
        let answer = conn.response();
        assert_eq!(answer.status, 400);
        assert!(answer.json()["error"]
            .as_str()
            .expect("error")
            .contains("duplicate field \"key\""));
        let top = r#"{"action":"put","payload":{"collection":"c","key":"a","value":"v"},"consistency":"serializable"}"#;
        conn.send(&post("HTTP/1.1", "", top));
        assert_eq!(conn.response().status, 400);
    }
}

fn limits(follower: u16) {
    let mut conn = RawConn::open(follower);
    conn.send(&post("HTTP/1.1", "", &put_body("c", &"k".repeat(65), "v")));
    let answer = conn.response();
    assert_eq!(answer.status, 413);
    assert!(answer.json()["error"].as_str().expect("error").contains("--key-bytes-max"));
    conn.send(&post("HTTP/1.1", "", &put_body("c", "k", &"v".repeat(4097))));
    let answer = conn.response();
    assert_eq!(answer.status, 413);
    assert!(answer.json()["error"].as_str().expect("error").contains("--value-bytes-max"));
    conn.send(&post("HTTP/1.1", "", &put_body("c", &"k".repeat(64), &"v".repeat(4096))));
    assert_eq!(conn.response().status, 200, "at the limits is fine");
}

fn error_bodies(port: u16) {
    let mut conn = RawConn::open(port);
    conn.send(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\nDELETE /health HTTP/1.1\r\nHost: x\r\n\r\nGET /command HTTP/1.1\r\nHost: x\r\n\r\n");
    for (status, allow) in [(404, None), (405, Some("GET, HEAD")), (405, Some("POST"))] {
        let answer = conn.response();
        assert_eq!(answer.status, status, "{answer:?}");
        assert!(answer.json()["error"].is_string(), "{answer:?}");
        assert_eq!(answer.header("allow"), allow, "{answer:?}");
    }
}

fn apache_bench(cluster: &TestCluster, follower: u16) {
    if !common::have_tool("ab") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("body.json");
    std::fs::write(&file, put_body("ab", "k", "from ab")).expect("write");
    let output = Command::new("ab")
        // -l: answers differ in length (each carries its revision).
        .args(["-q", "-l", "-n", "200", "-c", "4", "-T", "application/json", "-p"])
        .arg(&file)
        .arg(format!("http://127.0.0.1:{follower}/command"))
        .output()
        .expect("ab runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("Complete requests:      200"), "{text}");
    assert!(text.contains("Failed requests:        0"), "{text}");
    assert!(!text.contains("Non-2xx"), "{text}");
    assert!(!text.contains("Document Length:        0 bytes"), "{text}");
    assert_eq!(value_of(cluster, 1, "ab", "k").as_deref(), Some("from ab"));
}

fn curl_http_1_0(port: u16) {
    let output = Command::new("curl")
        .args(["-s", "--http1.0", "-w", "\n%{http_code}", "-d"])
        .arg(put_body("curl", "k", "v"))
        .arg(format!("http://127.0.0.1:{port}/command"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.ends_with("\n200"), "{text}");
}
